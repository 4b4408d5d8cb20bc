//! PCI functions in sysfs: listing them, finding one by `vendor:device`
//! (and index) or by address, and binding functions to vfio-pci through
//! `driver_override`.

use std::fs;
use std::path::{Path, PathBuf};

use iobench_proto::PciDevice;

const PCI: &str = "/sys/bus/pci/devices";

fn read_hex(path: &Path) -> Option<u32> {
    let s = fs::read_to_string(path).ok()?;
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

fn link_name(path: &Path) -> Option<String> {
    fs::read_link(path)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// A function's sysfs directory.
pub fn dir(bdf: &str) -> PathBuf {
    Path::new(PCI).join(bdf)
}

/// Every PCI function in sysfs, sorted by address.
pub fn devices() -> Vec<PciDevice> {
    let Ok(entries) = fs::read_dir(PCI) else {
        return Vec::new();
    };
    let mut out: Vec<PciDevice> = entries
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

/// Binds every `vendor:device` function to vfio-pci; returns their addresses.
pub fn bind_vfio(vendor: u16, device: u16) -> Result<Vec<String>, String> {
    let mut bound = Vec::new();
    for d in devices()
        .into_iter()
        .filter(|d| d.vendor == vendor && d.device == device)
    {
        bind_one(&d)?;
        bound.push(d.bdf);
    }
    Ok(bound)
}

/// Binds one function to vfio-pci through `driver_override` (nothing to do if it already is).
pub fn bind_one(d: &PciDevice) -> Result<(), String> {
    if d.driver.as_deref() == Some("vfio-pci") {
        return Ok(());
    }
    let dev = dir(&d.bdf);
    let w = |p: &Path, v: &str| fs::write(p, v).map_err(|e| format!("{}: {e}", p.display()));
    w(&dev.join("driver_override"), "vfio-pci")?;
    if d.driver.is_some() {
        w(&dev.join("driver/unbind"), &d.bdf)?;
    }
    w(Path::new("/sys/bus/pci/drivers_probe"), &d.bdf)?;
    match link_name(&dev.join("driver")) {
        Some(drv) if drv == "vfio-pci" => Ok(()),
        other => Err(format!("{} is bound to {other:?} after probing", d.bdf)),
    }
}

/// Finds a function by `"vvvv:dddd"` (the `index`-th match, by address) or by full address.
pub fn find(spec: &str, index: u64) -> Result<PciDevice, String> {
    let all = devices();
    if spec.matches(':').count() == 1 && !spec.contains('.') {
        let (v, d) = spec.split_once(':').unwrap_or_default();
        let (v, d) = (u16::from_str_radix(v, 16), u16::from_str_radix(d, 16));
        let (Ok(v), Ok(d)) = (v, d) else {
            return Err(format!("{spec:?} is not vendor:device"));
        };
        let matching: Vec<PciDevice> = all
            .into_iter()
            .filter(|p| p.vendor == v && p.device == d)
            .collect();
        let n = matching.len();
        return matching
            .into_iter()
            .nth(index as usize)
            .ok_or_else(|| format!("no PCI function {spec} #{index} (the guest has {n})"));
    }
    all.into_iter()
        .find(|p| p.bdf == spec)
        .ok_or_else(|| format!("no PCI function at {spec}"))
}
