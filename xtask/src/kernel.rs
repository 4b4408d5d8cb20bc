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

    /// The build of `kind`: its fragments are `common`, the arch's, the
    /// flavour's own.
    pub fn new(kind: KernelFlavour) -> Flavour {
        let dir = repo_root().join("images/kernel");
        let parts: &[&str] = match kind {
            KernelFlavour::X86_64 => &["common", "x86_64"],
            KernelFlavour::Ppc64le4k => &["common", "ppc64le", "ppc64le-4k"],
            KernelFlavour::Ppc64le64k => &["common", "ppc64le", "ppc64le-64k"],
        };
        Flavour {
            kind,
            arch: kind.arch(),
            fragments: parts
                .iter()
                .map(|p| dir.join(format!("{p}.config")))
                .collect(),
            debug: false,
        }
    }

    /// `kind`'s debug variant if `debug`: its fragments, then `debug.config`,
    /// then `debug-<arch>.config` if the arch has one.
    pub fn with_debug(kind: KernelFlavour, debug: bool) -> Flavour {
        let mut f = Flavour::new(kind);
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

    /// Its name in cache paths and messages: `x86_64`, `x86_64-debug`.
    pub fn name(&self) -> String {
        if self.debug {
            format!("{}-debug", self.kind)
        } else {
            self.kind.to_string()
        }
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
    /// Debian's linux-source-6.12 tarball.
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

fn debian_version(sh: &Shell) -> Result<String> {
    let format = "-f=${Version}";
    cmd!(sh, "dpkg-query -W {format} linux-source-6.12")
        .quiet()
        .ignore_stderr()
        .read()
        .context("linux-source-6.12 is not installed; run `cargo xtask setup`")
}

/// Source directory and identity string.
fn prepare_source(sh: &Shell, src: &Source) -> Result<(PathBuf, String)> {
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
            let v = debian_version(sh)?;
            let dir = cache_dir().join(format!("src/linux-source-6.12_{v}"));
            if !dir.join("Makefile").is_file() {
                let tarball = crate::deps::LINUX_SOURCE;
                let stage = Stage::start(format!("kernel: unpacking {tarball} (once)"));
                let parent = cache_dir().join("src");
                std::fs::create_dir_all(&parent)?;
                let tmp = tempfile::tempdir_in(&parent)?;
                let t = tmp.path();
                stage.run(cmd!(sh, "tar -xJf {tarball} -C {t}"), None)?;
                std::fs::rename(t.join("linux-source-6.12"), &dir)?;
                stage.done();
            }
            Ok((dir, format!("debian:linux-source-6.12:{v}")))
        }
    }
}

/// Debian's unpacked `linux-source-6.12` tree in the cache (unpacked first
/// if needed); never to be written.
pub fn debian_tree() -> Result<PathBuf> {
    Ok(prepare_source(&Shell::new()?, &Source::Debian)?.0)
}

/// Builds (or finds in the cache) the kernel of `flavour` from `src` with `patches`.
pub fn build(flavour: &Flavour, src: &Source, patches: &[Patch]) -> Result<Built> {
    let sh = Shell::new()?;
    crate::deps::require(&["make", "flex", "bison", "bc", flavour.compiler()])?;
    let wants = flavour.wants()?;
    let config = merged(&wants);
    let (srcdir, ident) = prepare_source(&sh, src)?;
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
    fn debug_variants_add_the_debug_fragments_last() {
        for f in KernelFlavour::ALL {
            let fl = Flavour::with_debug(f, true);
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
