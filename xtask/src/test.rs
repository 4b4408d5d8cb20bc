//! `cargo xtask test`: build what is stale, then run the VM suite.
//!
//! Builds the kernels the suite's machines need and both initramfs images,
//! picks the accelerator per architecture, writes the image manifest
//! (`target/iobench/images.json`) and runs `tests/vm.rs` through cargo with
//! `IOBENCH_IMAGES` pointing at it; libtest arguments pass through.

use std::collections::BTreeMap;

use anyhow::Result;
use harness::machine::Arch;
use iobench_tests_manifest::{FlavourImages, Manifest};
use xshell::{Shell, cmd};

use crate::cache::repo_root;
use crate::flags::TestArgs;
use crate::kernel::{self, Flavour};

/// The kernel flavours the suite boots.
pub const FLAVOURS: &[&str] = &["ppc64le-4k", "x86_64"];

/// Runs the suite.
pub fn run(t: &TestArgs) -> Result<()> {
    crate::setup::require(&["qemu-system-ppc64", "qemu-system-x86_64", harness::vsock::BACKEND])?;
    let root = repo_root();
    let src = crate::images::source(&t.source);
    let mut initramfs = BTreeMap::new();
    for arch in [Arch::Ppc64le, Arch::X86_64] {
        initramfs.insert(arch, crate::images::initramfs(arch)?);
    }
    let mut flavours = BTreeMap::new();
    for f in FLAVOURS {
        let fl = Flavour::named(f)?;
        let built = kernel::build(&fl, &src)?;
        let accel = crate::accel::choose(t.accel, fl.arch, &built.image)?;
        flavours.insert(
            f.to_string(),
            FlavourImages { kernel: built.image, vmlinux: Some(built.vmlinux), initramfs: initramfs[&fl.arch].clone(), accel: accel.as_str().into() },
        );
    }
    let out = root.join("target/iobench");
    std::fs::create_dir_all(&out)?;
    let manifest = Manifest { flavours, log_root: out.join("logs"), machines_dir: root.join("qemu-configs") };
    let path = out.join("images.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    let sh = Shell::new()?;
    sh.change_dir(&root);
    let _env = sh.push_env(iobench_tests_manifest::MANIFEST_ENV, &path);
    let rest = &t.rest;
    cmd!(sh, "cargo test --quiet -p iobench-tests --test vm -- {rest...}").quiet().run()?;
    Ok(())
}
