//! `cargo xtask test`: build what is stale, then run the VM suite.
//!
//! Builds the kernels the suite's machines need, on every kernel version
//! of the run (Linux 6.12 and 7.2 unless `--linux` names one), and the
//! initramfs images,
//! picks the accelerator per architecture, writes the image manifest
//! (`target/iobench/images.json`) and runs `tests/vm/` through cargo with
//! `IOBENCH_IMAGES` pointing at it; libtest arguments pass through.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use harness::linux::Linux;
use harness::machine::{Arch, KernelFlavour, QemuBuild};
use harness::manifest::{FlavourImages, MANIFEST_ENV, Manifest, TargetRun};
use xshell::{Shell, cmd};

use crate::cache::repo_root;
use crate::flags::TestArgs;

/// The architecture a kernel image is for: an ELF's machine, or an x86 bzImage.
fn kernel_arch(path: &std::path::Path) -> Result<Arch> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the kernel {}", path.display()))?;
    if bytes.starts_with(b"\x7fELF") && bytes.len() > 20 {
        match u16::from_le_bytes([bytes[18], bytes[19]]) {
            21 => return Ok(Arch::Ppc64le),
            62 => return Ok(Arch::X86_64),
            m => bail!(
                "{}: ELF machine {m} is neither ppc64 nor x86_64",
                path.display()
            ),
        }
    }
    if bytes.get(0x202..0x206) == Some(b"HdrS") {
        return Ok(Arch::X86_64);
    }
    bail!(
        "{}: neither an ELF vmlinux nor an x86 bzImage",
        path.display()
    )
}

/// The patched QEMU, built (or found in the cache) if a machine of this run
/// needs it.
fn patched_qemu(root: &std::path::Path, only: &[String]) -> Result<Option<std::path::PathBuf>> {
    let dir = root.join("qemu-configs");
    let names = if only.is_empty() {
        harness::machine::available(&dir)
    } else {
        only.to_vec()
    };
    for n in names {
        if harness::machine::Machine::find(&dir, &n)?.qemu.build == QemuBuild::Patched {
            return crate::qemu::build(None).map(Some);
        }
    }
    Ok(None)
}

/// Runs the suite.
pub fn run(t: &TestArgs) -> Result<()> {
    crate::deps::require(&[
        "qemu-system-ppc64",
        "qemu-system-x86_64",
        harness::vsock::BACKEND,
    ])?;
    let root = repo_root();
    let (machines, wanted) = if t.machine == "all" || t.target.is_some() {
        (Vec::new(), KernelFlavour::ALL.to_vec())
    } else {
        // One machine: only its kernel is needed (a --patch build is not
        // made for flavours nobody boots).
        let m = harness::machine::Machine::find(&root.join("qemu-configs"), &t.machine)?;
        (vec![t.machine.clone()], vec![m.kernel.flavour])
    };
    if let Some(name) = &t.target {
        // An unknown target or a broken targets file stops here, before any build.
        harness::target::TargetDef::load(&t.targets, name)?;
    }
    let own_kernel = t
        .kernel
        .as_ref()
        .map(|k| kernel_arch(k).map(|a| (a, k.clone())))
        .transpose()?;
    let versions = if own_kernel.is_some() || t.target.is_some() {
        // A given image, or a lab target, is one kernel.
        vec![crate::images::version(&t.source)?]
    } else {
        crate::images::versions(&t.source, true)?
    };
    let mut kernels: BTreeMap<Linux, BTreeMap<KernelFlavour, FlavourImages>> = BTreeMap::new();
    for &linux in &versions {
        for &f in &wanted {
            let arch = f.arch();
            let own = own_kernel
                .as_ref()
                .filter(|(a, _)| *a == arch)
                .map(|(_, k)| k);
            let k = crate::images::kernel(f, linux, &t.source, own)?;
            // The upstream selftests come from the tree the kernel was built from.
            let selftests = if own.is_none()
                && t.source.prebuilt.is_none()
                && crate::selftests::IN_SUITE.contains(&linux)
            {
                crate::selftests::build(
                    linux,
                    arch,
                    &crate::images::selftest_tree(&t.source, linux)?,
                )?
            } else {
                Default::default()
            };
            let initramfs = crate::images::initramfs_with(
                arch,
                &k.modules,
                &crate::selftests::files(&selftests)?,
            )?;
            let accel = crate::accel::choose(t.accel, arch, &k.image)?;
            kernels.entry(linux).or_default().insert(
                f,
                FlavourImages {
                    kernel: k.image,
                    vmlinux: k.vmlinux,
                    initramfs,
                    accel,
                    patches: k.patches,
                    debug: t.source.debug && own.is_none(),
                    selftests: selftests.cases,
                },
            );
        }
    }
    let out = crate::cache::out_dir();
    std::fs::create_dir_all(&out)?;
    let absolute = |p: &Option<std::path::PathBuf>| p.as_ref().map(std::path::absolute).transpose();
    let patched_qemu = patched_qemu(&root, &machines)?;
    let manifest = Manifest {
        kernels,
        log_root: out.join("logs"),
        machines_dir: root.join("qemu-configs"),
        scenarios_dir: root.join("scenarios"),
        machines,
        agents: [Arch::X86_64, Arch::Ppc64le]
            .into_iter()
            .map(|a| Ok((a, crate::agent::build(a)?)))
            .collect::<Result<_>>()?,
        target: t.target.as_ref().map(|name| TargetRun {
            name: name.clone(),
            file: absolute(&Some(t.targets.clone()))
                .ok()
                .flatten()
                .unwrap_or_default(),
        }),
        patched_qemu,
        partition: t.partition,
        junit: absolute(&t.junit)?,
        json: absolute(&t.json)?,
    };
    let path = out.join("images.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    let sh = Shell::new()?;
    sh.change_dir(&root);
    let _env = sh.push_env(MANIFEST_ENV, &path);
    let rest = t.libtest_args();
    cmd!(
        sh,
        "cargo test --quiet -p iobench-tests --test vm -- {rest...}"
    )
    .quiet()
    .run()?;
    Ok(())
}
