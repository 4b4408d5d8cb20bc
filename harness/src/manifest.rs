//! The image manifest: what `cargo xtask test` built (kernel, initramfs and
//! accelerator per kernel flavour, the agents, the patched QEMU) and where
//! the VM suite finds machines and scenarios and puts its logs and reports.
//! xtask writes it as JSON and points [`MANIFEST_ENV`] at it; the suite
//! reads it and asks it for the [`VmSpec`] of each machine it boots.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::linux::{Guest, Linux};
use crate::machine::{Arch, KernelFlavour, Machine, MachineError};
use crate::qemu::{Accel, GuestMode};
use crate::vm::{Images, VmError, VmSpec};

/// Environment variable naming the manifest.
pub const MANIFEST_ENV: &str = "IOBENCH_IMAGES";

/// Images and accelerator per kernel flavour, plus where logs go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Per kernel version (`6.12`, `7.2`) and flavour (`x86_64`,
    /// `ppc64le-4k`, …): the versions built are the versions the run covers.
    pub kernels: BTreeMap<Linux, BTreeMap<KernelFlavour, FlavourImages>>,
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
    /// Run only shard K of N (`--partition K/N`).
    #[serde(default)]
    pub partition: Option<(u32, u32)>,
}

/// Whether trial `name` belongs to shard `k` of `n` (1-based): a stable
/// FNV-1a hash of its name, or for an upstream selftest case of its
/// program's run (`…::kselftest::<program>`), which runs once per shard
/// that has any of its cases.
pub fn in_partition(name: &str, (k, n): (u32, u32)) -> bool {
    let key = match name.find("::kselftest::") {
        Some(i) => {
            let rest = &name[i + "::kselftest::".len()..];
            &name[..i + "::kselftest::".len() + rest.find("::").unwrap_or(rest.len())]
        }
        None => name,
    };
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    n > 0 && h % u64::from(n) == u64::from(k - 1)
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
    /// The upstream selftest programs in its initramfs (`/selftests/`),
    /// each with the test cases it lists.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selftests: BTreeMap<String, Vec<String>>,
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
    #[error("no images for kernel flavour {0} of Linux {1} in the manifest")]
    NoImages(KernelFlavour, Linux),
    /// The spec cannot be made (a patched QEMU is needed but missing).
    #[error(transparent)]
    Vm(#[from] VmError),
}

impl Manifest {
    /// The kernel versions this run covers, oldest first.
    pub fn versions(&self) -> Vec<Linux> {
        self.kernels.keys().copied().collect()
    }

    /// The images of `flavour` on `linux`, if built.
    pub fn images(&self, linux: Linux, flavour: KernelFlavour) -> Option<&FlavourImages> {
        self.kernels.get(&linux)?.get(&flavour)
    }

    /// The version trials that are not about a kernel version (lifecycle,
    /// targets) boot: the default one, or the run's only one (`--linux 7.2`).
    pub fn primary(&self) -> Linux {
        match self.kernels.keys().next() {
            Some(&first) if !self.kernels.contains_key(&Linux::DEFAULT) => first,
            _ => Linux::DEFAULT,
        }
    }

    /// The spec to boot `machine` on the [`primary`](Self::primary) kernel
    /// version in `mode`, logging under `log_name`.
    pub fn spec(
        &self,
        machine: &str,
        log_name: &str,
        mode: GuestMode,
    ) -> Result<VmSpec, ManifestError> {
        self.spec_on(&Guest::new(machine, self.primary()), log_name, mode)
    }

    /// The spec to boot `guest` (a machine on a kernel version) in `mode`,
    /// logging under `log_name`.
    pub fn spec_on(
        &self,
        guest: &Guest,
        log_name: &str,
        mode: GuestMode,
    ) -> Result<VmSpec, ManifestError> {
        let m = Machine::find(&self.machines_dir, &guest.machine)?;
        let f = self
            .images(guest.linux, m.kernel.flavour)
            .ok_or(ManifestError::NoImages(m.kernel.flavour, guest.linux))?;
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
    fn the_json_spellings_are_versions_then_flavours() {
        let json = r#"{
            "kernels": {"6.12": {
                "ppc64le-4k": {"kernel": "/k4", "vmlinux": null, "initramfs": "/i", "accel": "tcg"},
                "x86_64": {"kernel": "/kx", "vmlinux": "/v", "initramfs": "/i", "accel": "kvm"}
            }, "7.2": {
                "x86_64": {"kernel": "/k7", "vmlinux": "/v", "initramfs": "/i", "accel": "kvm"}
            }},
            "log_root": "/logs",
            "machines_dir": "/m",
            "scenarios_dir": "/s",
            "agents": {"x86_64": "/a", "ppc64le": "/b"}
        }"#;
        let m: Manifest = serde_json::from_str(json).unwrap();
        let x86 = |l| m.images(l, KernelFlavour::X86_64).unwrap();
        assert_eq!(x86(Linux::V6_12).accel, Accel::Kvm);
        assert_eq!(x86(Linux::V7_2).kernel, PathBuf::from("/k7"));
        assert!(m.images(Linux::V7_2, KernelFlavour::Ppc64le4k).is_none());
        assert_eq!(m.versions(), [Linux::V6_12, Linux::V7_2]);
        assert_eq!(m.agents[&Arch::Ppc64le], PathBuf::from("/b"));
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["kernels"]["6.12"]["x86_64"]["accel"], "kvm");
        assert!(back["kernels"]["6.12"].get("ppc64le-4k").is_some());
        assert_eq!(back["agents"]["ppc64le"], "/b");
        let unknown = json.replace(
            "\"x86_64\": {\"kernel\": \"/kx\"",
            "\"riscv\": {\"kernel\": \"/kx\"",
        );
        assert!(serde_json::from_str::<Manifest>(&unknown).is_err());
        let version = json.replace("\"7.2\"", "\"7.9\"");
        assert!(serde_json::from_str::<Manifest>(&version).is_err());
    }

    #[test]
    fn partitions_deal_each_trial_to_one_shard() {
        let names: Vec<String> = (0..200).map(|i| format!("pseries::t{i}")).collect();
        let mut sizes = [0; 3];
        for n in &names {
            let shards: Vec<u32> = (1..=3).filter(|&k| in_partition(n, (k, 3))).collect();
            assert_eq!(shards.len(), 1, "{n}");
            sizes[shards[0] as usize - 1] += 1;
        }
        assert!(sizes.iter().all(|&s| s > 40), "{sizes:?}");
        // Stable across runs and builds: FNV-1a, not the std hasher.
        assert!(in_partition("q35::boot", (1, 1)));
        let shard = |n: &str| (1..=4).find(|&k| in_partition(n, (k, 4)));
        assert_eq!(
            shard("7.2::q35::kselftest::iommufd::iommufd_ioas::mock_domain::area"),
            shard("7.2::q35::kselftest::iommufd::iommufd::simple_close")
        );
        assert_eq!(
            shard("7.2::q35::kselftest::iommufd::kernel_reports"),
            shard("7.2::q35::kselftest::iommufd")
        );
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
            selftests: BTreeMap::new(),
        };
        let mut m = Manifest {
            kernels: [(
                Linux::V6_12,
                [(KernelFlavour::X86_64, images.clone())].into(),
            )]
            .into(),
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
        assert_eq!(m.primary(), Linux::V6_12);
        let seven = Guest::new("q35", Linux::V7_2);
        let e = m.spec_on(&seven, "x", GuestMode::Agent).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no images for kernel flavour x86_64 of Linux 7.2 in the manifest"
        );
        let mut own = images.clone();
        own.kernel = "/k7".into();
        m.kernels
            .insert(Linux::V7_2, [(KernelFlavour::X86_64, own)].into());
        let s = m.spec_on(&seven, "7.2/q35/boot", GuestMode::Agent).unwrap();
        assert_eq!(s.images.kernel, PathBuf::from("/k7"));
        let x86 = m.kernels.get_mut(&Linux::V6_12).unwrap();
        x86.get_mut(&KernelFlavour::X86_64).unwrap().debug = true;
        let s = m.spec("q35", "q35/boot", GuestMode::Agent).unwrap();
        assert_eq!(s.timeouts.agent_ready, normal * DEBUG_BOOT_FACTOR);
        let e = m.spec("pseries", "p", GuestMode::Agent).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no images for kernel flavour ppc64le-4k of Linux 6.12 in the manifest"
        );
        m.kernels.clear();
        assert!(m.spec("no-such-machine", "x", GuestMode::Agent).is_err());
    }
}
