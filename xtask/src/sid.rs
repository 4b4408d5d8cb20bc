//! Linux 7.2's source from Debian sid, without adding sid to the machine's
//! apt sources (an upgrade would then pull the whole system to sid).
//!
//! A private apt configuration lives in the cache (`apt-sid/`: its own
//! sources file, lists and archive cache); `apt-get update` and
//! `apt-get download` run with `-o Dir::…` options pointing there, so the
//! system's apt state is only read (keyrings, apt.conf).  The `.deb` is
//! checked against the SHA256 of the Packages index apt just verified, and
//! only a checked file is moved to `debs/`, where it is kept: when sid
//! moves on to a newer kernel and drops `linux-source-7.2`, the cached
//! package is still used, and a machine without one is told so plainly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

use crate::cache::cache_dir;
use crate::progress::Stage;

/// The package.
pub const PACKAGE: &str = "linux-source-7.2";
/// The tarball inside it.
pub const TARBALL: &str = "usr/src/linux-source-7.2.tar.xz";

const SOURCES: &str = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: sid\nComponents: main\nArchitectures: amd64\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

/// Where verified packages are kept.
fn debs() -> PathBuf {
    cache_dir().join("debs")
}

/// The cached, verified package and its Debian version, newest first.
pub fn cached() -> Option<(PathBuf, String)> {
    let prefix = format!("{PACKAGE}_");
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir(debs())
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix(&prefix)?.strip_suffix("_all.deb")?;
            Some((e.path(), version.replace("%3a", ":")))
        })
        .collect();
    found.sort_by(|a, b| b.1.cmp(&a.1));
    found.into_iter().next()
}

/// The `-o` options that make apt use the private configuration in `dir`.
fn apt_options(dir: &Path) -> Vec<String> {
    vec![
        format!(
            "-oDir::Etc::sourcelist={}",
            dir.join("sid.sources").display()
        ),
        "-oDir::Etc::sourceparts=/dev/null".into(),
        format!("-oDir::State::Lists={}", dir.join("lists").display()),
        format!("-oDir::Cache={}", dir.join("cache").display()),
        "-oAPT::Architectures=amd64".into(),
        "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
        "-oAPT::Sandbox::User=root".into(),
    ]
}

/// The `SHA256` and `Version` of the candidate in `apt-cache show` output.
fn field<'a>(show: &'a str, name: &str) -> Option<&'a str> {
    // `apt-cache show` prints one stanza per version; the candidate comes
    // first for a `pkg=version` query.
    show.split("\n\n")
        .next()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .map(str::trim)
}

/// The package, fetched and verified if no cached one exists.
pub fn fetch() -> Result<(PathBuf, String)> {
    if let Some(c) = cached() {
        return Ok(c);
    }
    let sh = Shell::new()?;
    let dir = cache_dir().join("apt-sid");
    for d in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::write(dir.join("sid.sources"), SOURCES)?;
    let o = &apt_options(&dir);
    let stage = Stage::start(format!(
        "setup: fetching {PACKAGE} from Debian sid (private apt configuration in {})",
        dir.display()
    ));
    stage
        .run(cmd!(sh, "apt-get {o...} -q update"), None)
        .context("apt-get update of the private sid configuration")?;
    let policy = cmd!(sh, "apt-cache {o...} policy {PACKAGE}")
        .quiet()
        .read()?;
    let candidate = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|v| *v != "(none)")
        .map(str::to_string);
    let Some(version) = candidate else {
        let newer = cmd!(
            sh,
            "apt-cache {o...} search --names-only ^linux-source-[0-9.]+$"
        )
        .quiet()
        .read()
        .unwrap_or_default();
        bail!(
            "Debian sid no longer serves {PACKAGE} (it has: {}), and none is cached in {}; \
             copy a {PACKAGE}_*_all.deb there from a machine that has one",
            newer
                .lines()
                .map(|l| l.split(' ').next().unwrap_or(l))
                .collect::<Vec<_>>()
                .join(", "),
            debs().display()
        );
    };
    let spec = format!("{PACKAGE}={version}");
    let show = cmd!(sh, "apt-cache {o...} show {spec}").quiet().read()?;
    let want = field(&show, "SHA256")
        .with_context(|| format!("no SHA256 for {spec} in sid's Packages index"))?
        .to_string();
    let tmp = tempfile::tempdir_in(&dir)?;
    {
        let _cd = sh.push_dir(tmp.path());
        stage
            .run(cmd!(sh, "apt-get {o...} -q download {spec}"), None)
            .with_context(|| format!("apt-get download {spec}"))?;
    }
    let deb = crate::cache::downloaded_deb(tmp.path(), &spec)?;
    let got = sha256_file(&deb)?;
    if got != want {
        bail!(
            "{}: SHA256 {got} does not match sid's Packages index ({want})",
            deb.display()
        );
    }
    std::fs::create_dir_all(debs())?;
    let name = deb.file_name().context("no file name")?;
    let kept = debs().join(name);
    std::fs::rename(&deb, &kept)?;
    stage.done();
    println!(
        "setup: {PACKAGE} {version} verified (SHA256 {want}) → {}",
        kept.display()
    );
    Ok((kept, version))
}

fn sha256_file(p: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_the_first_stanza() {
        let show = "Package: linux-source-7.2\nVersion: 7.2.13-1\nSHA256: abc\n\nPackage: linux-source-7.2\nVersion: 7.2.12-1\nSHA256: def\n";
        assert_eq!(field(show, "SHA256"), Some("abc"));
        assert_eq!(field(show, "Version"), Some("7.2.13-1"));
        assert_eq!(field(show, "MD5sum"), None);
    }

    #[test]
    fn the_private_configuration_never_names_the_system_sources() {
        let o = apt_options(Path::new("/c/apt-sid"));
        assert!(o.contains(&"-oDir::Etc::sourcelist=/c/apt-sid/sid.sources".to_string()));
        assert!(o.contains(&"-oDir::Etc::sourceparts=/dev/null".to_string()));
        assert!(
            o.iter()
                .any(|x| x == "-oDir::State::Lists=/c/apt-sid/lists")
        );
        assert!(SOURCES.contains("Suites: sid\n"));
    }
}
