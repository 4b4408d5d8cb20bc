//! Everything a machine boots, built only when stale: kernel (cached by
//! content key), agent (cargo's own incrementality), initramfs (cached by a
//! key of its inputs: agent, busybox, `/init`, modules and the layout code).

use std::path::PathBuf;

use anyhow::{Context, Result};
use harness::linux::Linux;
use harness::machine::{Arch, KernelFlavour, Machine};
use harness::vm::Images;

use crate::cache::{cache_dir, repo_root};
use crate::flags::KernelSource;
use crate::kernel::{self, Flavour, Source};

/// The kernel source chosen on the command line.
pub fn source(s: &KernelSource) -> Source {
    match &s.src {
        Some(d) => Source::Dir(d.clone()),
        None => Source::Debian,
    }
}

/// A kernel to boot, with the modules its initramfs must carry.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// What QEMU boots.
    pub image: PathBuf,
    /// Unstripped vmlinux, when there is one (for gdb).
    pub vmlinux: Option<PathBuf>,
    /// Modules to load at boot, dependencies first (only for prebuilt kernels).
    pub modules: Vec<(String, Vec<u8>)>,
    /// Where it came from, for people: `built`, `cached`, a Debian package, `given`.
    pub origin: String,
    /// The patches it was built with (file names).
    pub patches: Vec<String>,
}

/// The kernel for a flavour on `linux`: `own` if given, else Debian's
/// prebuilt one or a build.
pub fn kernel(
    flavour: KernelFlavour,
    linux: Linux,
    src: &KernelSource,
    own: Option<&PathBuf>,
) -> Result<Kernel> {
    if let Some(k) = own {
        // `--kernel IMAGE --patch F`: the image was built with F (known-bug
        // verdicts count its fixes), e.g. by `cargo xtask bisect`.
        let mut patches: Vec<String> = src
            .patches
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if src.fixes {
            patches.extend(
                crate::patch::fixes(&repo_root())?
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
            );
        }
        return Ok(Kernel {
            image: k.clone(),
            vmlinux: None,
            modules: Vec::new(),
            origin: "given".into(),
            patches,
        });
    }
    if src.prebuilt.is_some() {
        let p = crate::prebuilt::debian(flavour)?;
        return Ok(Kernel {
            image: p.image,
            vmlinux: None,
            modules: p.modules,
            origin: p.package,
            patches: Vec::new(),
        });
    }
    if src.kcov && linux != Linux::V7_2 {
        anyhow::bail!(
            "--kcov builds Linux 7.2 only (images/kernel/kcov.config is checked \
             against 7.2's Kconfig); add --linux 7.2"
        );
    }
    let patches = patches(src, linux)?;
    let built = kernel::build(
        &Flavour::variant(flavour, linux, src.debug, src.kcov),
        &source(src),
        &patches,
    )?;
    let mut origin = if built.cached { "cached" } else { "built" }.to_string();
    if src.debug {
        origin.push_str(", debug");
    }
    if src.kcov {
        origin.push_str(", kcov");
    }
    if !patches.is_empty() {
        let names: Vec<&str> = patches.iter().map(|p| p.name.as_str()).collect();
        origin.push_str(&format!(", patched with {}", names.join(", ")));
    }
    Ok(Kernel {
        image: built.image,
        vmlinux: Some(built.vmlinux),
        modules: Vec::new(),
        origin,
        patches: patches.into_iter().map(|p| p.name).collect(),
    })
}

/// The versions `src` builds: the one `--linux` gives, the `--src` tree's,
/// the default one for prebuilt kernels, else every version if `all` (for
/// `test`) or the default one.
pub fn versions(src: &KernelSource, all: bool) -> Result<Vec<Linux>> {
    Ok(match (src.linux, &src.src) {
        (Some(l), _) => vec![l.into()],
        (None, Some(dir)) => vec![kernel::tree_version(dir)?],
        (None, None) if all && src.prebuilt.is_none() => Linux::ALL.to_vec(),
        (None, None) => vec![Linux::DEFAULT],
    })
}

/// The one version a single build or boot from `src` uses.
pub fn version(src: &KernelSource) -> Result<Linux> {
    Ok(versions(src, false)?[0])
}

/// The unpatched tree a build of `linux` from `src` starts from.
pub fn tree(src: &KernelSource, linux: Linux) -> Result<PathBuf> {
    match &src.src {
        Some(d) => Ok(d.clone()),
        None => kernel::debian_tree(linux),
    }
}

/// The patches a build of `linux` from `src` applies: `--patch`, then with
/// `--fixes` every fix of `kernel-patches/fixes/` the tree does not already
/// have (a fix that went upstream in that release is left out, and said so).
pub fn patches(src: &KernelSource, linux: Linux) -> Result<Vec<crate::patch::Patch>> {
    let mut paths = src.patches.clone();
    if src.fixes {
        let base = tree(src, linux)?;
        let release = kernel::tree_release(&base)?;
        let upstream = fixed_upstream()?;
        let limits = crate::patch::version_limits(&repo_root())?;
        for fix in crate::patch::fixes(&repo_root())? {
            let name = fix.file_name().unwrap_or_default().to_string_lossy();
            let id = name.split('-').next().unwrap_or_default();
            let released = upstream
                .get(id)
                .is_some_and(|f| harness::release::released_with_fix(&release, f));
            if limits.get(id).is_some_and(|l| !l.contains(&linux)) {
                // Said by kernel-patches/fixes/applies.toml; nothing to print.
            } else if released || crate::patch::already_in(&base, &fix)? {
                say_once(format!(
                    "kernel: {name} is already in Linux {release} (not applied)"
                ));
            } else {
                paths.push(fix);
            }
        }
    }
    crate::patch::load(&paths)
}

/// Prints `line` unless this process printed it already (the kernel and
/// its selftests ask for the same tree's patches).
fn say_once(line: String) {
    static SAID: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.insert(line.clone()) {
        println!("{line}");
    }
}

/// The tree (and patches) the selftests of `linux` come from: the kernel's.
pub fn selftest_tree(src: &KernelSource, linux: Linux) -> Result<crate::selftests::Tree> {
    let base = tree(src, linux)?;
    let ident = match &src.src {
        Some(d) => crate::source::tree_identity(d)?,
        None => format!("debian:{}", base.display()),
    };
    Ok(crate::selftests::Tree {
        base,
        ident,
        patches: patches(src, linux)?,
    })
}

/// Each known bug's `fixed_in` releases, from the scenario catalogue: a
/// fix that went upstream (a backport for an older series) is not applied
/// to a tree that has it.
fn fixed_upstream() -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let files = harness::scenario::load_dir(&repo_root().join("scenarios"))?;
    Ok(files
        .iter()
        .flat_map(|f| f.known_bugs.iter())
        .filter(|b| !b.fixed_in.is_empty())
        .map(|b| (b.id.clone(), b.fixed_in.clone()))
        .collect())
}

/// Builds the agent and the plain initramfs for `arch`; returns its path.
pub fn initramfs(arch: Arch) -> Result<PathBuf> {
    initramfs_with(arch, &[], &[])
}

/// Builds the agent and an initramfs for `arch` carrying `modules` and
/// `selftests` (programs for `/selftests/`); returns its path.
pub fn initramfs_with(
    arch: Arch,
    modules: &[(String, Vec<u8>)],
    selftests: &[(String, Vec<u8>)],
) -> Result<PathBuf> {
    let agent = crate::agent::build(arch)?;
    let busybox = crate::cache::busybox(arch.as_str());
    if !busybox.is_file() {
        anyhow::bail!(
            "static busybox for {arch} is missing at {}; run `cargo xtask setup`",
            busybox.display()
        );
    }
    let dir = cache_dir().join("images");
    std::fs::create_dir_all(&dir)?;
    let blobs = |files: &[(String, Vec<u8>)]| -> Vec<u8> {
        files
            .iter()
            .flat_map(|(n, b)| [n.as_bytes(), b.as_slice()])
            .flat_map(|part| crate::cache::key(&[part]).into_bytes())
            .collect()
    };
    let mut tag = arch.to_string();
    if !modules.is_empty() {
        tag.push_str(&format!(
            "-mod-{}",
            &crate::cache::key(&[&blobs(modules)])[..12]
        ));
    }
    if !selftests.is_empty() {
        tag.push_str("-selftests");
    }
    let init = repo_root().join("images/initramfs/init");
    // Keyed by content: trees with different agents (another checkout, an
    // older commit) must not boot each other's images.
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (agent_bytes, busybox_bytes, init_bytes) = (read(&agent)?, read(&busybox)?, read(&init)?);
    let (module_key, selftest_key) = (blobs(modules), blobs(selftests));
    let parts: Vec<&[u8]> = vec![
        // How the image is laid out is part of its content too.
        include_str!("initramfs.rs").as_bytes(),
        &agent_bytes,
        &busybox_bytes,
        &init_bytes,
        &module_key,
        &selftest_key,
    ];
    let out = dir.join(format!(
        "initramfs-{tag}-{}.cpio",
        crate::cache::short(&crate::cache::key(&parts))
    ));
    if out.is_file() {
        return Ok(out);
    }
    // A name of this process's own: two commands may build the same image at once.
    let fresh = dir.join(format!("initramfs-{tag}.{}.new", std::process::id()));
    crate::initramfs::build(&busybox, &agent, &init, modules, selftests, &fresh)?;
    std::fs::rename(&fresh, &out).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// Kernel + initramfs for `machine`, built as needed; `own` overrides the image.
pub fn for_machine(machine: &Machine, src: &KernelSource, own: Option<&PathBuf>) -> Result<Images> {
    let linux = version(src)?;
    let k = kernel(machine.kernel.flavour, linux, src, own)?;
    // The upstream selftests from the same tree, so `selftest.run` works here too.
    let selftests =
        if own.is_none() && src.prebuilt.is_none() && crate::selftests::IN_SUITE.contains(&linux) {
            crate::selftests::files(&crate::selftests::build(
                linux,
                machine.arch,
                &selftest_tree(src, linux)?,
            )?)?
        } else {
            Vec::new()
        };
    Ok(Images {
        kernel: k.image,
        initramfs: initramfs_with(machine.arch, &k.modules, &selftests)?,
        vmlinux: k.vmlinux,
        patches: k.patches,
    })
}
