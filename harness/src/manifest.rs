//! The image manifest: what `cargo xtask test` built (kernel, initramfs and
//! accelerator per kernel flavour, the agents, the patched QEMU) and where
//! the VM suite finds machines and scenarios and puts its logs and reports.
//! xtask writes it as JSON and points [`MANIFEST_ENV`] at it; the suite
//! reads it and asks it for the [`VmSpec`] of each machine it boots.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::machine::{Arch, KernelFlavour, Machine, MachineError};
use crate::qemu::{Accel, GuestMode};
use crate::vm::{Images, VmError, VmSpec};

/// Environment variable naming the manifest.
pub const MANIFEST_ENV: &str = "IOBENCH_IMAGES";

/// Images and accelerator per kernel flavour, plus where logs go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Per kernel flavour (`x86_64`, `ppc64le-4k`, …).
    pub flavours: BTreeMap<KernelFlavour, FlavourImages>,
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
    pub agents: BTreeMap<Arch, PathBuf>,
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
    pub accel: Accel,
    /// The patches the kernel was built with (`--patch`), as file names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<String>,
    /// A debug kernel (`--debug`: kmemleak, lockdep, UBSAN, KASAN on
    /// x86_64): its machines get longer boot deadlines.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debug: bool,
}

/// How much longer a debug kernel may take to boot (KASAN, lockdep and
/// kmemleak under TCG).
pub const DEBUG_BOOT_FACTOR: u32 = 3;

/// Why the manifest cannot give a machine's spec.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The machine definition does not load.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// Nothing was built for the machine's kernel flavour.
    #[error("no images for kernel flavour {0} in the manifest")]
    NoImages(KernelFlavour),
    /// The spec cannot be made (a patched QEMU is needed but missing).
    #[error(transparent)]
    Vm(#[from] VmError),
}

impl Manifest {
    /// The spec to boot `machine` in `mode`, logging under `log_name`.
    pub fn spec(
        &self,
        machine: &str,
        log_name: &str,
        mode: GuestMode,
    ) -> Result<VmSpec, ManifestError> {
        let m = Machine::find(&self.machines_dir, machine)?;
        let f = self
            .flavours
            .get(&m.kernel.flavour)
            .ok_or(ManifestError::NoImages(m.kernel.flavour))?;
        let images = Images {
            kernel: f.kernel.clone(),
            initramfs: f.initramfs.clone(),
            vmlinux: f.vmlinux.clone(),
            patches: f.patches.clone(),
        };
        let mut spec = VmSpec::builder(m, images, self.log_root.join(log_name))
            .accel(f.accel)
            .mode(mode)
            .patched_qemu(self.patched_qemu.clone())
            .build()?;
        if f.debug {
            spec.timeouts.first_output *= DEBUG_BOOT_FACTOR;
            spec.timeouts.agent_ready *= DEBUG_BOOT_FACTOR;
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_spellings_stay_as_they_were() {
        let json = r#"{
            "flavours": {
                "ppc64le-4k": {"kernel": "/k4", "vmlinux": null, "initramfs": "/i", "accel": "tcg"},
                "x86_64": {"kernel": "/kx", "vmlinux": "/v", "initramfs": "/i", "accel": "kvm"}
            },
            "log_root": "/logs",
            "machines_dir": "/m",
            "scenarios_dir": "/s",
            "agents": {"x86_64": "/a", "ppc64le": "/b"}
        }"#;
        let m: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(m.flavours[&KernelFlavour::X86_64].accel, Accel::Kvm);
        assert_eq!(m.flavours[&KernelFlavour::Ppc64le4k].accel, Accel::Tcg);
        assert_eq!(m.agents[&Arch::Ppc64le], PathBuf::from("/b"));
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["flavours"]["x86_64"]["accel"], "kvm");
        assert!(back["flavours"].get("ppc64le-4k").is_some());
        assert_eq!(back["agents"]["ppc64le"], "/b");
        let unknown = json.replace("\"x86_64\": {", "\"riscv\": {");
        assert!(serde_json::from_str::<Manifest>(&unknown).is_err());
    }

    #[test]
    fn a_spec_comes_from_the_flavours_images() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let images = FlavourImages {
            kernel: "/k".into(),
            vmlinux: None,
            initramfs: "/i".into(),
            accel: Accel::Kvm,
            patches: vec![],
            debug: false,
        };
        let mut m = Manifest {
            flavours: [(KernelFlavour::X86_64, images)].into(),
            log_root: "/logs".into(),
            machines_dir: dir.join("qemu-configs"),
            scenarios_dir: dir.join("scenarios"),
            ..Default::default()
        };
        let s = m.spec("q35", "q35/boot", GuestMode::Agent).unwrap();
        assert_eq!(s.images.kernel, PathBuf::from("/k"));
        assert_eq!(s.boot.accel, Accel::Kvm);
        assert_eq!(s.log_dir, PathBuf::from("/logs/q35/boot"));
        assert_eq!(s.qemu, PathBuf::from("qemu-system-x86_64"));
        let normal = s.timeouts.agent_ready;
        m.flavours.get_mut(&KernelFlavour::X86_64).unwrap().debug = true;
        let s = m.spec("q35", "q35/boot", GuestMode::Agent).unwrap();
        assert_eq!(s.timeouts.agent_ready, normal * DEBUG_BOOT_FACTOR);
        let e = m.spec("pseries", "p", GuestMode::Agent).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no images for kernel flavour ppc64le-4k in the manifest"
        );
        m.flavours.clear();
        assert!(m.spec("no-such-machine", "x", GuestMode::Agent).is_err());
    }
}
