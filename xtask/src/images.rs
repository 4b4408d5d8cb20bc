//! Everything a machine boots, built only when stale: kernel (cached by
//! content key), agent (cargo's own incrementality), initramfs (rewritten
//! only when its bytes would change).

use std::path::PathBuf;

use anyhow::Result;
use harness::machine::{Arch, Machine};
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

/// Builds the agent and the initramfs for `arch`; returns the initramfs path.
pub fn initramfs(arch: Arch) -> Result<PathBuf> {
    let agent = crate::agent::build(arch)?;
    let busybox = crate::setup::busybox(arch.as_str());
    if !busybox.is_file() {
        anyhow::bail!("static busybox for {arch} is missing at {}; run `cargo xtask setup`", busybox.display());
    }
    let dir = cache_dir().join("images");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("initramfs-{arch}.cpio"));
    let init = repo_root().join("images/initramfs/init");
    let fresh = dir.join(format!("initramfs-{arch}.new"));
    crate::initramfs::build(&busybox, &agent, &init, &fresh)?;
    if std::fs::read(&out).ok() != std::fs::read(&fresh).ok() {
        std::fs::rename(&fresh, &out)?;
    } else {
        std::fs::remove_file(&fresh)?;
    }
    Ok(out)
}

/// Kernel + initramfs for `machine`, built as needed; `kernel` overrides the image.
pub fn for_machine(machine: &Machine, src: &KernelSource, kernel: Option<&PathBuf>) -> Result<Images> {
    let (image, vmlinux) = match kernel {
        Some(k) => (k.clone(), None),
        None => {
            let built = kernel::build(&Flavour::named(&machine.kernel.flavour)?, &source(src))?;
            (built.image, Some(built.vmlinux))
        }
    };
    Ok(Images { kernel: image, initramfs: initramfs(machine.arch)?, vmlinux })
}
