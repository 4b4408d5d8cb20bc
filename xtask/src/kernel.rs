//! Guest kernels: merge our config fragments onto `allnoconfig`, check that
//! Kconfig kept every requested option, build out of tree, and cache the
//! image under a key of (source identity, merged config, toolchain).
//!
//! Flavours: `x86_64` (q35), `ppc64le-4k` and `ppc64le-64k` (pseries).  The
//! default source is Debian's `linux-source-6.12`, unpacked once into the
//! cache; `--src DIR` builds any tree (its build directory is kept, so make
//! stays incremental, and the tree's state is part of the key).  With
//! `--patch FILE` the build runs in a patched private copy of the tree
//! (`xtask::patch`), and the patches are part of the key; Debian's tree
//! always builds in its copy, so a patched build after an unpatched one
//! (or the other way round) recompiles only what the patches touch.
//!
//! `--debug` builds each flavour's debug variant: `debug.config` (kmemleak,
//! lockdep, DEBUG_LIST, UBSAN) and `debug-<arch>.config` where there is one
//! (KASAN on x86_64) merged last.  The merged config is in the key anyway;
//! the variant also gets its own name (`x86_64-debug`) for its cache entry
//! and its own build dir, so switching between the two never rebuilds the
//! world.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use harness::linux::Linux;
use harness::machine::{Arch, KernelFlavour};
use xshell::{Shell, cmd};

use crate::cache::{cache_dir, key, repo_root, short};
use crate::patch::Patch;
use crate::progress::Stage;

/// A kernel to build.
#[derive(Debug, Clone)]
pub struct Flavour {
    /// `x86_64`, `ppc64le-4k`, `ppc64le-64k`.
    pub kind: KernelFlavour,
    /// Architecture.
    pub arch: Arch,
    /// Fragment files, in merge order.
    pub fragments: Vec<PathBuf>,
    /// The debug variant (`--debug`): the debug fragments come last.
    pub debug: bool,
    /// The coverage variant (`--kcov`): `kcov.config` comes last of all.
    pub kcov: bool,
    /// The kernel version: `linux-<version>.config` follows the flavour's
    /// own fragment where the version has one.
    pub linux: Linux,
}

impl Flavour {
    /// The options its fragments ask for, read and merged in order (errors
    /// name the fragment, relative to the repository, and the line).
    pub fn wants(&self) -> Result<Vec<Want>> {
        let frags: Vec<(String, String)> = self
            .fragments
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading fragment {}", p.display()))?;
                Ok((
                    p.strip_prefix(repo_root())
                        .unwrap_or(p)
                        .display()
                        .to_string(),
                    text,
                ))
            })
            .collect::<Result<_>>()?;
        parse_fragments(&frags)
    }

    /// The build of `kind` on Linux 6.12: its fragments are `common`, the
    /// arch's, the flavour's own.
    pub fn new(kind: KernelFlavour) -> Flavour {
        Flavour::on(kind, Linux::DEFAULT)
    }

    /// The build of `kind` on `linux`: `common`, the arch's, the flavour's
    /// own, then `linux-<version>.config` and `linux-<version>-<flavour>.config`
    /// where they exist (what the version renamed or newly needs).
    pub fn on(kind: KernelFlavour, linux: Linux) -> Flavour {
        let dir = repo_root().join("images/kernel");
        let parts: &[&str] = match kind {
            KernelFlavour::X86_64 => &["common", "x86_64"],
            KernelFlavour::Ppc64le4k => &["common", "ppc64le", "ppc64le-4k"],
            KernelFlavour::Ppc64le64k => &["common", "ppc64le", "ppc64le-64k"],
        };
        let mut fragments: Vec<PathBuf> = parts
            .iter()
            .map(|p| dir.join(format!("{p}.config")))
            .collect();
        for own in [
            format!("linux-{linux}.config"),
            format!("linux-{linux}-{kind}.config"),
        ] {
            let own = dir.join(own);
            if own.is_file() {
                fragments.push(own);
            }
        }
        Flavour {
            kind,
            arch: kind.arch(),
            fragments,
            debug: false,
            kcov: false,
            linux,
        }
    }

    /// `kind`'s debug variant on `linux` if `debug`: its fragments, then
    /// `debug.config`, then `debug-<arch>.config` if the arch has one.
    pub fn with_debug(kind: KernelFlavour, linux: Linux, debug: bool) -> Flavour {
        let mut f = Flavour::on(kind, linux);
        if debug {
            let dir = repo_root().join("images/kernel");
            f.fragments.push(dir.join("debug.config"));
            let own = dir.join(format!("debug-{}.config", f.arch));
            if own.is_file() {
                f.fragments.push(own);
            }
            f.debug = true;
        }
        f
    }

    /// `kind` on `linux` with the debug fragments if `debug` and then, if
    /// `kcov`, `kcov.config` (KCOV and DWARF line tables, for `cargo xtask
    /// coverage`).
    pub fn variant(kind: KernelFlavour, linux: Linux, debug: bool, kcov: bool) -> Flavour {
        let mut f = Flavour::with_debug(kind, linux, debug);
        if kcov {
            f.fragments
                .push(repo_root().join("images/kernel/kcov.config"));
            f.kcov = true;
        }
        f
    }

    /// Its name in cache paths and messages: `x86_64`, `x86_64-debug`,
    /// `x86_64-kcov`, `x86_64-7.2` (the version when it is not the default
    /// one).
    pub fn name(&self) -> String {
        let mut n = self.kind.to_string();
        if self.debug {
            n.push_str("-debug");
        }
        if self.kcov {
            n.push_str("-kcov");
        }
        if self.linux != Linux::DEFAULT {
            n.push('-');
            n.push_str(self.linux.as_str());
        }
        n
    }

    fn make_env(&self) -> Vec<String> {
        match self.arch {
            Arch::X86_64 => vec!["ARCH=x86".into()],
            Arch::Ppc64le => vec![
                "ARCH=powerpc".into(),
                "CROSS_COMPILE=powerpc64le-linux-gnu-".into(),
            ],
        }
    }

    /// The make target and the file QEMU boots.
    fn image(&self) -> (&'static str, &'static str) {
        match self.arch {
            Arch::X86_64 => ("bzImage", "arch/x86/boot/bzImage"),
            Arch::Ppc64le => ("vmlinux", "vmlinux"),
        }
    }

    fn compiler(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "gcc",
            Arch::Ppc64le => "powerpc64le-linux-gnu-gcc",
        }
    }
}

/// One requested option: `CONFIG_X=value`, or `None` for "is not set".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// `CONFIG_…`.
    pub name: String,
    /// The value, or None for "must not be set".
    pub value: Option<String>,
    /// Where it was asked for (`file:line`).
    pub origin: String,
}

/// Parses fragments; later fragments override earlier ones.  Errors name file and line.
pub fn parse_fragments(frags: &[(String, String)]) -> Result<Vec<Want>> {
    let mut wants: Vec<Want> = Vec::new();
    for (file, text) in frags {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let origin = format!("{file}:{}", i + 1);
            let want = if let Some(rest) = line.strip_prefix("# CONFIG_") {
                let Some(name) = rest.strip_suffix(" is not set") else {
                    continue;
                };
                Want {
                    name: format!("CONFIG_{name}"),
                    value: None,
                    origin,
                }
            } else if line.is_empty() || line.starts_with('#') {
                continue;
            } else if let Some((name, value)) = line.split_once('=') {
                if !name.starts_with("CONFIG_")
                    || name.len() == 7
                    || !name[7..]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    || value.is_empty()
                {
                    bail!("{origin}: not a Kconfig assignment: {raw:?}");
                }
                Want {
                    name: name.into(),
                    value: Some(value.into()),
                    origin,
                }
            } else {
                bail!("{origin}: not a Kconfig assignment: {raw:?}");
            };
            wants.retain(|w| w.name != want.name);
            wants.push(want);
        }
    }
    Ok(wants)
}

/// The merged fragment handed to `KCONFIG_ALLCONFIG`.
pub fn merged(wants: &[Want]) -> String {
    let mut out = String::from("# generated by cargo xtask kernel\n");
    for w in wants {
        match &w.value {
            Some(v) => out.push_str(&format!("{}={v}\n", w.name)),
            None => out.push_str(&format!("# {} is not set\n", w.name)),
        }
    }
    out
}

/// Options Kconfig dropped or changed: `(want, what .config says)`.
pub fn verify(wants: &[Want], dotconfig: &str) -> Vec<(Want, String)> {
    let mut actual = std::collections::HashMap::new();
    for line in dotconfig.lines() {
        if let Some((k, v)) = line.split_once('=')
            && k.starts_with("CONFIG_")
        {
            actual.insert(k, v);
        }
    }
    wants
        .iter()
        .filter_map(|w| {
            let got = actual.get(w.name.as_str()).copied();
            let ok = match (&w.value, got) {
                (Some(v), Some(g)) => v == g,
                (Some(v), None) => v == "n",
                (None, g) => g.is_none() || g == Some("n"),
            };
            (!ok).then(|| {
                (
                    w.clone(),
                    got.map(|g| format!("{}={g}", w.name))
                        .unwrap_or_else(|| "not set".into()),
                )
            })
        })
        .collect()
}

/// Where the source comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Debian's `linux-source-X.Y` tarball of the flavour's version: 6.12
    /// from bookworm-backports, 7.2 from sid (see [`crate::sid`]).
    Debian,
    /// A user's tree.
    Dir(PathBuf),
}

/// A built kernel.
#[derive(Debug, Clone)]
pub struct Built {
    /// What QEMU boots.
    pub image: PathBuf,
    /// Unstripped vmlinux (for gdb).
    pub vmlinux: PathBuf,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// Debian's package of `linux`'s source: its version, and a command that
/// writes the source tarball (`.tar.xz`) to stdout.
fn debian_package(sh: &Shell, linux: Linux) -> Result<(String, String)> {
    match linux {
        Linux::V6_12 => {
            let format = "-f=${Version}";
            let v = cmd!(sh, "dpkg-query -W {format} linux-source-6.12")
                .quiet()
                .ignore_stderr()
                .read()
                .context("linux-source-6.12 is not installed; run `cargo xtask setup`")?;
            Ok((v, format!("cat {}", crate::deps::LINUX_SOURCE)))
        }
        Linux::V7_2 => {
            let (deb, v) = crate::sid::cached().with_context(|| {
                format!(
                    "{} (Debian sid) is not in the cache; run `cargo xtask setup`",
                    crate::sid::PACKAGE
                )
            })?;
            let tarball = crate::sid::TARBALL;
            Ok((
                v,
                format!(
                    "dpkg-deb --fsys-tarfile '{}' | tar -xO ./{tarball}",
                    deb.display()
                ),
            ))
        }
    }
}

/// Source directory and identity string.
fn prepare_source(sh: &Shell, src: &Source, linux: Linux) -> Result<(PathBuf, String)> {
    match src {
        Source::Dir(d) => {
            let d = d
                .canonicalize()
                .with_context(|| format!("kernel source {}", d.display()))?;
            if !d.join("Makefile").is_file() || !d.join("Kconfig").is_file() {
                bail!(
                    "{} does not look like a kernel tree (no Makefile/Kconfig)",
                    d.display()
                );
            }
            let ident = crate::source::tree_identity(&d)?;
            Ok((d, ident))
        }
        Source::Debian => {
            let (v, tarball) = debian_package(sh, linux)?;
            let package = format!("linux-source-{linux}");
            let dir = cache_dir().join(format!("src/{package}_{v}"));
            if !dir.join("Makefile").is_file() {
                let stage = Stage::start(format!("kernel: unpacking {package} {v} (once)"));
                let parent = cache_dir().join("src");
                std::fs::create_dir_all(&parent)?;
                let tmp = tempfile::tempdir_in(&parent)?;
                let t = tmp.path();
                let unpack = format!("{tarball} | tar -xJ -C '{}'", t.display());
                stage.run(cmd!(sh, "sh -c {unpack}"), None)?;
                std::fs::rename(t.join(&package), &dir)?;
                stage.done();
            }
            Ok((dir, format!("debian:{package}:{v}")))
        }
    }
}

/// Debian's unpacked `linux-source-X.Y` tree of `linux` in the cache
/// (unpacked first if needed); never to be written.
pub fn debian_tree(linux: Linux) -> Result<PathBuf> {
    Ok(prepare_source(&Shell::new()?, &Source::Debian, linux)?.0)
}

/// A kernel tree's release, `VERSION.PATCHLEVEL.SUBLEVEL` of its Makefile.
pub fn tree_release(dir: &Path) -> Result<String> {
    let path = dir.join("Makefile");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('='))
            .map(str::trim)
            .unwrap_or("0")
            .to_string()
    };
    Ok(format!(
        "{}.{}.{}",
        get("VERSION"),
        get("PATCHLEVEL"),
        get("SUBLEVEL")
    ))
}

/// The version line of a kernel tree, from its Makefile's `VERSION` and
/// `PATCHLEVEL` (for `--src`: which fragments fit it).
pub fn tree_version(dir: &Path) -> Result<Linux> {
    let path = dir.join("Makefile");
    let release = tree_release(dir)?;
    Linux::of_release(&release).with_context(|| {
        format!(
            "{}: Linux {release} is older than every version iobench builds",
            path.display()
        )
    })
}

/// Builds (or finds in the cache) the kernel of `flavour` from `src` with `patches`.
pub fn build(flavour: &Flavour, src: &Source, patches: &[Patch]) -> Result<Built> {
    let sh = Shell::new()?;
    crate::deps::require(&["make", "flex", "bison", "bc", flavour.compiler()])?;
    let wants = flavour.wants()?;
    let config = merged(&wants);
    let (srcdir, ident) = prepare_source(&sh, src, flavour.linux)?;
    let ident = ident + &crate::patch::identity(patches);
    let cc = flavour.compiler();
    let toolchain = cmd!(sh, "{cc} --version").quiet().read()?;
    let (target, image_rel) = flavour.image();
    let k = key(&[
        b"iobench-kernel-v1",
        ident.as_bytes(),
        config.as_bytes(),
        toolchain.lines().next().unwrap_or("").as_bytes(),
        target.as_bytes(),
    ]);
    let out = cache_dir().join(format!("kernel/{}-{}", flavour.name(), short(&k)));
    let image_name = Path::new(image_rel).file_name().unwrap_or_default();
    let image = out.join(image_name);
    if image.is_file() && out.join("vmlinux").is_file() {
        return Ok(Built {
            image,
            vmlinux: out.join("vmlinux"),
            cached: true,
        });
    }
    // Debian's tree, and any patched tree, build in a private copy (locked
    // until the build is done) with one build dir per flavour, so going
    // between patch sets, or back to none, is an incremental build.  A
    // user's unpatched tree builds in place.
    let work = (!patches.is_empty() || matches!(src, Source::Debian))
        .then(|| crate::patch::work_tree(&srcdir, patches))
        .transpose()?;
    let srcdir = work.as_ref().map_or(srcdir, |w| w.dir.clone());
    let build_dir = cache_dir().join(format!(
        "kernel/build/{}-{}",
        flavour.name(),
        short(&key(&[srcdir.to_string_lossy().as_bytes()]))
    ));
    std::fs::create_dir_all(&build_dir)?;
    std::fs::create_dir_all(&out)?;
    let merged_path = out.join("fragment.config");
    std::fs::write(&merged_path, &config)?;
    let log_path = out.join("build.log");
    let env = flavour.make_env();
    let o = format!("O={}", build_dir.display());
    let allconfig = format!("KCONFIG_ALLCONFIG={}", merged_path.display());
    let started = Instant::now();
    run_make(
        &srcdir,
        &[o.clone(), allconfig, "allnoconfig".into()],
        &env,
        &log_path,
        &format!("configuring {}", flavour.name()),
    )?;
    let dotconfig = std::fs::read_to_string(build_dir.join(".config"))?;
    let dropped = verify(&wants, &dotconfig);
    if !dropped.is_empty() {
        let mut msg = format!(
            "Kconfig dropped {} requested option(s) for {}:\n",
            dropped.len(),
            flavour.name()
        );
        for (w, got) in &dropped {
            let asked = w
                .value
                .as_ref()
                .map(|v| format!("{}={v}", w.name))
                .unwrap_or_else(|| format!("{} unset", w.name));
            msg.push_str(&format!("  {asked} (asked at {}) → {got}\n", w.origin));
        }
        msg.push_str("Usually an unmet dependency: add it to the fragment.  .config: ");
        msg.push_str(&build_dir.join(".config").display().to_string());
        bail!(msg);
    }
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    );
    run_make(
        &srcdir,
        &[o, jobs, target.into()],
        &env,
        &log_path,
        &format!("building {} {target}", flavour.name()),
    )?;
    std::fs::copy(build_dir.join(image_rel), &image)?;
    std::fs::copy(build_dir.join("vmlinux"), out.join("vmlinux")).ok();
    if !out.join("vmlinux").is_file() {
        std::fs::copy(build_dir.join(image_rel), out.join("vmlinux"))?;
    }
    std::fs::copy(build_dir.join(".config"), out.join("config"))?;
    std::fs::write(
        out.join("identity.txt"),
        format!("{ident}\n{}\n", toolchain.lines().next().unwrap_or("")),
    )?;
    println!(
        "kernel: {} built in {:.0?} → {}",
        flavour.name(),
        started.elapsed(),
        image.display()
    );
    Ok(Built {
        image,
        vmlinux: out.join("vmlinux"),
        cached: false,
    })
}

/// Runs make as the stage `kernel: {what}` (a spinner on a terminal, a
/// line with its time in a log); the full output goes to `log`.
fn run_make(src: &Path, args: &[String], env: &[String], log: &Path, what: &str) -> Result<()> {
    let mut cmd = Command::new("make");
    cmd.current_dir(src).args(env).args(args);
    crate::progress::run(format!("kernel: {what}"), cmd, Some(log))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(name: &str, text: &str) -> (String, String) {
        (name.to_string(), text.to_string())
    }

    #[test]
    fn later_fragments_override_and_unset_is_kept() {
        let w = parse_fragments(&[
            frag("common", "CONFIG_A=y\n# comment\nCONFIG_B=y\n"),
            frag("arch", "# CONFIG_B is not set\nCONFIG_C=\"x\"\n"),
        ])
        .unwrap();
        let names: Vec<_> = w
            .iter()
            .map(|w| (w.name.as_str(), w.value.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("CONFIG_A", Some("y")),
                ("CONFIG_B", None),
                ("CONFIG_C", Some("\"x\""))
            ]
        );
        assert_eq!(w[1].origin, "arch:1");
        let m = merged(&w);
        assert!(
            m.contains("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n"),
            "{m}"
        );
    }

    #[test]
    fn broken_fragment_names_file_and_line() {
        let e = parse_fragments(&[frag("images/kernel/common.config", "CONFIG_A=y\nVFIO=y\n")])
            .unwrap_err();
        assert!(
            e.to_string().starts_with("images/kernel/common.config:2:"),
            "{e}"
        );
        assert!(parse_fragments(&[frag("f", "CONFIG_=y\n")]).is_err());
        assert!(parse_fragments(&[frag("f", "CONFIG_A=\n")]).is_err());
    }

    #[test]
    fn verify_reports_dropped_and_unwanted_options() {
        let w = parse_fragments(&[frag(
            "f",
            "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=n\nCONFIG_E=0x10\n",
        )])
        .unwrap();
        let dotconfig = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_E=0x20\n";
        let bad: Vec<_> = verify(&w, dotconfig)
            .into_iter()
            .map(|(w, got)| (w.name, got))
            .collect();
        assert_eq!(
            bad,
            vec![
                ("CONFIG_B".to_string(), "not set".to_string()),
                ("CONFIG_C".to_string(), "CONFIG_C=y".to_string()),
                ("CONFIG_E".to_string(), "CONFIG_E=0x20".to_string()),
            ]
        );
    }

    #[test]
    fn shipped_fragments_parse_and_differ_per_flavour() {
        let mut keys = Vec::new();
        for f in KernelFlavour::ALL {
            let fl = Flavour::new(f);
            let w = fl.wants().unwrap();
            assert!(w.iter().any(|w| w.name == "CONFIG_IOMMUFD_TEST"), "{f}");
            if fl.arch == Arch::Ppc64le {
                assert!(
                    w.iter()
                        .any(|w| w.name == "CONFIG_VFIO_DEVICE_CDEV" && w.value.is_none())
                );
            }
            keys.push(key(&[merged(&w).as_bytes()]));
        }
        keys.dedup();
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn linux_7_2_adds_its_fragment_last_and_its_own_cache_name() {
        for f in KernelFlavour::ALL {
            let old = Flavour::on(f, Linux::V6_12);
            let new = Flavour::on(f, Linux::V7_2);
            assert_eq!(&new.fragments[..old.fragments.len()], &old.fragments[..]);
            assert!(new.fragments[old.fragments.len()].ends_with("linux-7.2.config"));
            assert_eq!(old.name(), f.as_str());
            assert_eq!(new.name(), format!("{f}-7.2"));
            let w = new.wants().unwrap();
            // IOMMUFD_TEST needs the generic page table's AMDv1 format in 7.2.
            assert!(w.iter().any(|w| w.name == "CONFIG_IOMMU_PT_AMDV1"));
            assert!(
                !old.wants()
                    .unwrap()
                    .iter()
                    .any(|w| w.name == "CONFIG_IOMMU_PT_AMDV1")
            );
        }
        assert_eq!(
            Flavour::with_debug(KernelFlavour::X86_64, Linux::V7_2, true).name(),
            "x86_64-debug-7.2"
        );
    }

    #[test]
    fn tree_versions_come_from_the_makefile() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("Makefile"),
            "VERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 13\n",
        )
        .unwrap();
        assert_eq!(tree_version(d.path()).unwrap(), Linux::V7_2);
        std::fs::write(d.path().join("Makefile"), "VERSION = 6\nPATCHLEVEL = 12\n").unwrap();
        assert_eq!(tree_version(d.path()).unwrap(), Linux::V6_12);
        std::fs::write(d.path().join("Makefile"), "VERSION = 5\nPATCHLEVEL = 15\n").unwrap();
        let e = tree_version(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("Linux 5.15.0 is older than every version iobench builds"),
            "{e}"
        );
        assert_eq!(tree_release(d.path()).unwrap(), "5.15.0");
    }

    #[test]
    fn kcov_variants_add_kcov_last_with_their_own_name() {
        for f in KernelFlavour::ALL {
            let fl = Flavour::variant(f, Linux::V7_2, false, true);
            assert_eq!(fl.name(), format!("{f}-kcov-7.2"));
            assert!(fl.fragments.last().unwrap().ends_with("kcov.config"));
            let w = fl.wants().unwrap();
            for n in [
                "CONFIG_KCOV",
                "CONFIG_DEBUG_FS",
                "CONFIG_DEBUG_INFO_REDUCED",
            ] {
                assert!(
                    w.iter()
                        .any(|w| w.name == n && w.value.as_deref() == Some("y")),
                    "{f}: {n}"
                );
            }
            let both = Flavour::variant(f, Linux::V7_2, true, true);
            assert_eq!(both.name(), format!("{f}-debug-kcov-7.2"));
            assert!(!Flavour::variant(f, Linux::V7_2, false, false).kcov);
        }
    }

    #[test]
    fn debug_variants_add_the_debug_fragments_last() {
        for f in KernelFlavour::ALL {
            let fl = Flavour::with_debug(f, Linux::DEFAULT, true);
            assert_eq!(fl.name(), format!("{f}-debug"));
            let w = fl.wants().unwrap();
            let has = |n: &str| {
                w.iter()
                    .any(|w| w.name == n && w.value.as_deref() == Some("y"))
            };
            for n in [
                "CONFIG_DEBUG_KMEMLEAK",
                "CONFIG_PROVE_LOCKING",
                "CONFIG_DEBUG_LIST",
                "CONFIG_UBSAN",
            ] {
                assert!(has(n), "{f}: {n}");
            }
            assert!(
                w.iter()
                    .any(|w| w.name == "CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN" && w.value.is_none())
            );
            assert_eq!(has("CONFIG_KASAN"), fl.arch == Arch::X86_64, "{f}");
            // Everything the normal flavour asks for is still asked for.
            let normal = Flavour::new(f);
            assert_eq!(
                &fl.fragments[..normal.fragments.len()],
                &normal.fragments[..]
            );
            assert!(!normal.debug && normal.name() == f.as_str());
        }
    }
}
