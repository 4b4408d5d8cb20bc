//! What a fuzz run drives: a machine on a kernel version, as the model
//! sees it.  The machine decides the interface (`pseries`, `pseries-64k`:
//! the VFIO sPAPR TCE v2 container; `q35-mock`: an iommufd with the
//! selftest's mock domains; `q35`: an iommufd with the edu device's cdev
//! behind intel-iommu) and how device DMA is probed (edu DMA, or a mock
//! access's reads and writes); the kernel version and its patches decide
//! which of iobench's known bugs the model predicts (`--fixes`, or a fix
//! of `kernel-patches/fixes/` given with `--patch`).

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use harness::linux::Linux;
use iobench_model::ioas::IommufdParams;
use iobench_model::spapr::{Fixes, SpaprParams};
use iobench_model::world::{Backend, World};

/// How a run checks where device accesses land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `edu.dma` into and out of the edu device (pseries, q35).
    Edu,
    /// `mock.access_rw` through a selftest access (q35-mock).
    Access,
}

/// The machines `cargo xtask fuzz` knows.
pub const MACHINES: &[&str] = &["pseries", "pseries-64k", "q35-mock", "q35"];

/// A machine on a kernel, and its model.
#[derive(Debug, Clone)]
pub struct Target {
    /// The machine definition's name.
    pub machine: String,
    /// The kernel version.
    pub linux: Linux,
    /// The model of a fresh boot's first container or iommufd.
    pub world: World,
    /// How device accesses are probed.
    pub probe: Probe,
    /// Guest features a sequence needs (a repro's `requires`).
    pub requires: Vec<&'static str>,
}

/// The numbers (`0001`) of the fixes among the kernel's patch file names:
/// with `--fixes` all of them, else those given with `--patch`.
pub fn fix_ids(patches: &[String]) -> BTreeSet<String> {
    patches
        .iter()
        .filter_map(|p| {
            let id = p.split('-').next()?;
            (id.len() == 4 && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
        })
        .collect()
}

impl Target {
    /// The target for `machine` on `linux`, whose kernel carries `fixes`.
    pub fn new(machine: &str, linux: Linux, fixes: BTreeSet<String>) -> Result<Target> {
        let has = |id: &str| fixes.contains(id);
        let spapr = |page: u64| {
            let released = match linux {
                Linux::V6_12 => Fixes::linux_6_12_95(),
                Linux::V7_2 => Fixes::linux_7_2_13(),
            };
            World::spapr(SpaprParams::qemu(
                page,
                Fixes {
                    fix_0001: released.fix_0001 || has("0001"),
                    fix_0002: released.fix_0002 || has("0002"),
                    ioba_checks_npages: released.ioba_checks_npages || has("0003"),
                },
            ))
        };
        let (world, probe, requires) = match machine {
            "pseries" => (spapr(4096), Probe::Edu, vec!["vfio-spapr-tce-v2"]),
            "pseries-64k" => (spapr(65536), Probe::Edu, vec!["vfio-spapr-tce-v2"]),
            // No vIOMMU: the mock device reaches the mock driver on 6.12
            // too; the mock IO page is PAGE_SIZE / 2 there, 2 KiB on 7.2
            // (the same on x86_64's 4 KiB pages).  THP on 7.2 only.
            "q35-mock" => (
                World::iommufd(match linux {
                    Linux::V6_12 => IommufdParams::q35_mock_6_12(),
                    Linux::V7_2 => IommufdParams::q35_mock_7_2(),
                }),
                Probe::Access,
                vec!["iommufd", "iommufd-test"],
            ),
            "q35" => {
                // Bug 0004: 6.12 offers the mock device to intel-iommu.
                // Bug 0010: 7.2's replace offers the device the mock domain.
                let p = match linux {
                    Linux::V6_12 => IommufdParams::q35_6_12(has("0004")),
                    Linux::V7_2 => IommufdParams {
                        replace_tries_foreign_domains: !has("0010"),
                        ..IommufdParams::q35_7_2()
                    },
                };
                (World::iommufd(p), Probe::Edu, vec!["iommufd", "vfio-cdev"])
            }
            other => bail!(
                "cargo xtask fuzz knows the machines {} (the model has no {other:?})",
                MACHINES.join(", ")
            ),
        };
        Ok(Target {
            machine: machine.to_string(),
            linux,
            world,
            probe,
            requires,
        })
    }

    /// Whether it drives a sPAPR container (else an iommufd).
    pub fn is_spapr(&self) -> bool {
        matches!(self.world.backend, Backend::Spapr(_))
    }

    /// Whether an edu device is there to attach (q35's cdev).
    pub fn has_device(&self) -> bool {
        matches!(&self.world.backend, Backend::Iommufd(f) if f.params().device.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::{Probe, Target, fix_ids};
    use harness::linux::Linux;
    use iobench_model::world::Backend;

    #[test]
    fn machines_map_to_models() {
        let t = Target::new("pseries", Linux::V6_12, Default::default()).unwrap();
        assert!(t.is_spapr() && t.probe == Probe::Edu);
        let Backend::Spapr(c) = &t.world.backend else {
            panic!("spapr")
        };
        assert!(!c.params().fixes.ioba_checks_npages);
        let t = Target::new("pseries", Linux::V6_12, fix_ids(&["0003-x.patch".into()])).unwrap();
        let Backend::Spapr(c) = &t.world.backend else {
            panic!("spapr")
        };
        assert!(c.params().fixes.ioba_checks_npages && !c.params().fixes.fix_0001);
        let q = Target::new("q35", Linux::V6_12, Default::default()).unwrap();
        assert!(q.has_device() && !q.is_spapr());
        assert_eq!(
            Target::new("q35-mock", Linux::V7_2, Default::default())
                .unwrap()
                .probe,
            Probe::Access
        );
        assert!(Target::new("pseries-eeh", Linux::V7_2, Default::default()).is_err());
        assert!(fix_ids(&["planted.patch".into()]).is_empty());
    }
}
