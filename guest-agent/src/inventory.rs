//! What the guest has: PCI functions with IOMMU groups and drivers, and
//! which IOMMU user interfaces the kernel offers.  Also binds devices to
//! vfio-pci through `driver_override`.

use std::fs;
use std::path::Path;

use iobench_proto::{Inventory, PciDevice};

const PCI: &str = "/sys/bus/pci/devices";

fn read_hex(path: &Path) -> Option<u32> {
    let s = fs::read_to_string(path).ok()?;
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

fn link_name(path: &Path) -> Option<String> {
    fs::read_link(path).ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Every PCI function in sysfs, sorted by address.
pub fn pci_devices() -> Vec<PciDevice> {
    let Ok(dir) = fs::read_dir(PCI) else { return Vec::new() };
    let mut out: Vec<PciDevice> = dir
        .flatten()
        .map(|e| {
            let p = e.path();
            PciDevice {
                bdf: e.file_name().to_string_lossy().into_owned(),
                vendor: read_hex(&p.join("vendor")).unwrap_or(0) as u16,
                device: read_hex(&p.join("device")).unwrap_or(0) as u16,
                class: read_hex(&p.join("class")).unwrap_or(0),
                driver: link_name(&p.join("driver")),
                iommu_group: link_name(&p.join("iommu_group")).and_then(|g| g.parse().ok()),
            }
        })
        .collect();
    out.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    out
}

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
    has("iommufd-fail-nth", Path::new("/sys/kernel/debug/fail_iommufd").exists());
    let eeh = fs::read_to_string("/proc/powerpc/eeh").unwrap_or_default();
    has("eeh", eeh.contains("EEH Subsystem is enabled"));
    has("eeh-debugfs", Path::new("/sys/kernel/debug/powerpc/eeh_dev_break").exists());
    f
}

/// The whole inventory.
pub fn collect() -> Inventory {
    Inventory { devices: pci_devices(), features: features() }
}

/// Binds every `vendor:device` function to vfio-pci; returns their addresses.
pub fn bind_vfio(vendor: u16, device: u16) -> Result<Vec<String>, String> {
    let mut bound = Vec::new();
    for d in pci_devices().into_iter().filter(|d| d.vendor == vendor && d.device == device) {
        if d.driver.as_deref() == Some("vfio-pci") {
            bound.push(d.bdf);
            continue;
        }
        let dev = Path::new(PCI).join(&d.bdf);
        let w = |p: &Path, v: &str| fs::write(p, v).map_err(|e| format!("{}: {e}", p.display()));
        w(&dev.join("driver_override"), "vfio-pci")?;
        if d.driver.is_some() {
            w(&dev.join("driver/unbind"), &d.bdf)?;
        }
        w(Path::new("/sys/bus/pci/drivers_probe"), &d.bdf)?;
        match link_name(&dev.join("driver")) {
            Some(drv) if drv == "vfio-pci" => bound.push(d.bdf),
            other => return Err(format!("{} is bound to {other:?} after probing", d.bdf)),
        }
    }
    Ok(bound)
}
