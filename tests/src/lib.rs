//! Shared pieces of the VM test suite: the image manifest that
//! `cargo xtask test` writes and the suite reads, and the [`pool`] of booted
//! machines the scenario trials share.

pub mod fixture;
pub mod pool;

use std::collections::BTreeMap;
use std::path::PathBuf;

use harness::qemu::{Accel, BootOptions, GuestMode};
use harness::vm::{Images, VmSpec};
use serde::{Deserialize, Serialize};

/// Environment variable naming the manifest.
pub const MANIFEST_ENV: &str = "IOBENCH_IMAGES";

/// Images and accelerator per kernel flavour, plus where logs go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Per kernel flavour (`x86_64`, `ppc64le-4k`, …).
    pub flavours: BTreeMap<String, FlavourImages>,
    /// Root of the per-trial log directories.
    pub log_root: PathBuf,
    /// The repository's `qemu-configs/`.
    pub machines_dir: PathBuf,
    /// The repository's `scenarios/`.
    pub scenarios_dir: PathBuf,
    /// Only these machine definitions (empty: all).
    #[serde(default)]
    pub machines: Vec<String>,
    /// Write a JUnit XML report here.
    #[serde(default)]
    pub junit: Option<PathBuf>,
    /// Write a JSON report here.
    #[serde(default)]
    pub json: Option<PathBuf>,
    /// Static agent binaries by architecture (`x86_64`, `ppc64le`), for SSH targets.
    #[serde(default)]
    pub agents: BTreeMap<String, PathBuf>,
    /// Run on this target of a targets file instead of the QEMU machines.
    #[serde(default)]
    pub target: Option<TargetRun>,
    /// `qemu-system-ppc64` built by `cargo xtask qemu`, for machines with
    /// `build = "patched"`.
    #[serde(default)]
    pub patched_qemu: Option<PathBuf>,
}

/// `cargo xtask test --target NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetRun {
    /// The target's name.
    pub name: String,
    /// The targets file.
    pub file: PathBuf,
}

impl Manifest {
    /// The spec to boot `machine` in `mode`, logging under `log_name`.
    pub fn spec(&self, machine: &str, log_name: &str, mode: GuestMode) -> Result<VmSpec, String> {
        let m = harness::machine::Machine::find(&self.machines_dir, machine)
            .map_err(|e| e.to_string())?;
        let f = self.flavours.get(&m.kernel.flavour).ok_or_else(|| {
            format!(
                "no images for kernel flavour {} in the manifest",
                m.kernel.flavour
            )
        })?;
        let accel = if f.accel == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        let images = Images {
            kernel: f.kernel.clone(),
            initramfs: f.initramfs.clone(),
            vmlinux: f.vmlinux.clone(),
        };
        let boot = BootOptions {
            accel,
            mode,
            ..Default::default()
        };
        let qemu = harness::qemu::binary(&m, self.patched_qemu.as_deref())?;
        let mut spec = VmSpec::new(m, images, boot, self.log_root.join(log_name));
        spec.qemu = qemu;
        Ok(spec)
    }
}

/// What one flavour boots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlavourImages {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Unstripped vmlinux.
    pub vmlinux: Option<PathBuf>,
    /// Initramfs.
    pub initramfs: PathBuf,
    /// `tcg` or `kvm`.
    pub accel: String,
}
