//! Everything a machine boots, built only when stale: kernel (cached by
//! content key), agent (cargo's own incrementality), initramfs (cached by a
//! key of its inputs: agent, busybox, `/init`, modules and the layout code).

use std::path::PathBuf;

use anyhow::{Context, Result};
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

/// The kernel for a flavour: `own` if given, else Debian's prebuilt one or a build.
pub fn kernel(flavour: KernelFlavour, src: &KernelSource, own: Option<&PathBuf>) -> Result<Kernel> {
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
    let mut paths = src.patches.clone();
    if src.fixes {
        paths.extend(crate::patch::fixes(&repo_root())?);
    }
    let patches = crate::patch::load(&paths)?;
    let built = kernel::build(
        &Flavour::with_debug(flavour, src.debug),
        &source(src),
        &patches,
    )?;
    let mut origin = if built.cached { "cached" } else { "built" }.to_string();
    if src.debug {
        origin.push_str(", debug");
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

/// Builds the agent and the plain initramfs for `arch`; returns its path.
pub fn initramfs(arch: Arch) -> Result<PathBuf> {
    initramfs_with(arch, &[])
}

/// Builds the agent and an initramfs for `arch` carrying `modules`; returns its path.
pub fn initramfs_with(arch: Arch, modules: &[(String, Vec<u8>)]) -> Result<PathBuf> {
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
    let tag = if modules.is_empty() {
        arch.to_string()
    } else {
        let names: Vec<&[u8]> = modules.iter().map(|(_, b)| b.as_slice()).collect();
        format!("{arch}-mod-{}", &crate::cache::key(&names)[..12])
    };
    let init = repo_root().join("images/initramfs/init");
    // Keyed by content: trees with different agents (another checkout, an
    // older commit) must not boot each other's images.
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (agent_bytes, busybox_bytes, init_bytes) = (read(&agent)?, read(&busybox)?, read(&init)?);
    let mut parts: Vec<&[u8]> = vec![
        // How the image is laid out is part of its content too.
        include_str!("initramfs.rs").as_bytes(),
        &agent_bytes,
        &busybox_bytes,
        &init_bytes,
    ];
    parts.extend(
        modules
            .iter()
            .flat_map(|(n, b)| [n.as_bytes(), b.as_slice()]),
    );
    let out = dir.join(format!(
        "initramfs-{tag}-{}.cpio",
        crate::cache::short(&crate::cache::key(&parts))
    ));
    if out.is_file() {
        return Ok(out);
    }
    // A name of this process's own: two commands may build the same image at once.
    let fresh = dir.join(format!("initramfs-{tag}.{}.new", std::process::id()));
    crate::initramfs::build(&busybox, &agent, &init, modules, &fresh)?;
    std::fs::rename(&fresh, &out).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// Kernel + initramfs for `machine`, built as needed; `own` overrides the image.
pub fn for_machine(machine: &Machine, src: &KernelSource, own: Option<&PathBuf>) -> Result<Images> {
    let k = kernel(machine.kernel.flavour, src, own)?;
    Ok(Images {
        kernel: k.image,
        initramfs: initramfs_with(machine.arch, &k.modules)?,
        vmlinux: k.vmlinux,
        patches: k.patches,
    })
}
