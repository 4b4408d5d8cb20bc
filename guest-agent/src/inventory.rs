//! What the guest has, for the host to decide which scenarios apply: its
//! PCI functions (with IOMMU groups and drivers) and the IOMMU user
//! interfaces the kernel offers, some found by their files, some by asking
//! an ioctl.

use std::fs;
use std::path::Path;

use iobench_proto::Inventory;

use crate::ops::{iommufd, vfio};
use crate::pci;

/// Kernel interfaces present, by name.
pub fn features() -> Vec<String> {
    let mut f = Vec::new();
    let mut has = |name: &str, present: bool| {
        if present {
            f.push(name.to_string());
        }
    };
    has("vfio-container", Path::new("/dev/vfio/vfio").exists());
    has("vfio-cdev", Path::new("/dev/vfio/devices").exists());
    has("iommufd", Path::new("/dev/iommu").exists());
    has(
        "iommufd-fail-nth",
        Path::new("/sys/kernel/debug/fail_iommufd").exists(),
    );
    let eeh = fs::read_to_string("/proc/powerpc/eeh").unwrap_or_default();
    has("eeh", eeh.contains("EEH Subsystem is enabled"));
    has(
        "eeh-debugfs",
        Path::new("/sys/kernel/debug/powerpc/eeh_dev_break").exists(),
    );
    has("kmemleak", Path::new(crate::kmemleak::PATH).exists());
    f.extend(probed_features().into_iter().map(String::from));
    f.sort();
    f
}

/// Feature names that need an ioctl to find out.
fn probed_features() -> Vec<&'static str> {
    let mut out = Vec::new();
    if let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/vfio/vfio")
    {
        let fd = std::os::fd::AsFd::as_fd(&f);
        if vfio::container_has(fd, "type1v2") {
            out.push("vfio-type1v2");
        }
        if vfio::container_has(fd, "spapr-v2") {
            out.push("vfio-spapr-tce-v2");
        }
    }
    if iommufd::selftest_present() {
        out.push("iommufd-test");
    }
    out
}

/// The whole inventory.
pub fn collect() -> Inventory {
    Inventory {
        devices: pci::devices(),
        features: features(),
    }
}
