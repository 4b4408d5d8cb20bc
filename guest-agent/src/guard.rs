//! The target's policy, enforced on the machine: a session greeted with an
//! `iobench_proto::policy::Policy` gets a [`Guard`], and every operation
//! that takes a PCI function (bind, group/device/cdev open, reset) or
//! writes a file asks it first; a refusal is the step's error, naming the
//! policy, and the session goes on.
//!
//! What only the machine knows is found here, once per session: the PCI
//! functions the root filesystem hangs off (the block device of `/`,
//! through device-mapper and md slaves, up to its PCI ancestors) and the
//! ones the host's connection goes through (the interface holding the
//! address the host connected to, through bonds, VLANs and bridges).  They
//! are refused even if declared, unless the policy lists them in
//! `allow_system_devices`.

use std::ffi::CStr;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use iobench_proto::PciDevice;
use iobench_proto::policy::{self, DeviceSpec, NEVER_WRITABLE, Policy, Protected, Static};

use crate::pci;

/// A session's policy with the machine's protected functions.
#[derive(Debug, Clone)]
pub struct Guard {
    policy: Policy,
    protected: Vec<Protected>,
}

impl Guard {
    /// The policy, and the functions of this machine it protects.
    pub fn new(policy: Policy) -> Guard {
        let mut protected = Vec::new();
        root_filesystem(&mut protected);
        if let Some(addr) = link_addr(&policy) {
            connection(addr, &mut protected);
        }
        protected.sort_by(|a, b| a.bdf.cmp(&b.bdf));
        protected.dedup_by(|a, b| a.bdf == b.bdf);
        Guard { policy, protected }
    }

    /// The functions refused even if declared.
    pub fn protected(&self) -> &[Protected] {
        &self.protected
    }

    /// Whether `f` may be taken (bound, opened, reset).
    pub fn device(&self, f: &PciDevice) -> Result<(), String> {
        self.policy
            .check_device(f, &pci::devices(), &self.protected)
    }

    /// Whether `f`'s IOMMU group may be opened: every function in it may be
    /// taken (a container's EEH resets act on the whole group).
    pub fn group(&self, f: &PciDevice) -> Result<(), String> {
        let all = pci::devices();
        self.policy.check_device(f, &all, &self.protected)?;
        let Some(group) = f.iommu_group else {
            return Ok(());
        };
        for m in all
            .iter()
            .filter(|d| d.iommu_group == Some(group) && d.bdf != f.bdf)
        {
            self.policy
                .check_device(m, &all, &self.protected)
                .map_err(|e| format!("{e} (it is in IOMMU group {group} with {})", f.bdf))?;
        }
        Ok(())
    }

    /// Whether `data` may be written to `path`: under a writable prefix, not
    /// leading (through symlinks) under /etc, /boot or /dev, not a block
    /// device, and every PCI function the write names may be taken.
    pub fn write(&self, path: &str, data: &str) -> Result<(), String> {
        self.policy.path_allowed(path)?;
        if let Ok(real) = fs::canonicalize(path) {
            if let Some(never) = NEVER_WRITABLE.iter().find(|n| real.starts_with(n)) {
                return Err(self.policy.refusal(format_args!(
                    "writing {path}: it leads to {} (nothing under {never})",
                    real.display()
                )));
            }
        }
        if fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device()) {
            return Err(self
                .policy
                .refusal(format_args!("writing {path}: a block device")));
        }
        let all = pci::devices();
        for spec in policy::named_devices(path, data) {
            let named: Vec<&PciDevice> = all.iter().filter(|d| spec.names(d)).collect();
            let is_id = matches!(spec, DeviceSpec::Id { .. });
            if is_id && self.policy.static_device(&spec, 0) != Static::Allowed {
                // A driver's new_id takes every such function, present or to come.
                return Err(self.policy.refusal(format_args!(
                    "writing {path}: {spec} is not declared as vendor:device"
                )));
            }
            if named.is_empty() {
                return Err(self.policy.refusal(format_args!(
                    "writing {path}: it names {spec}, which is no function of this machine"
                )));
            }
            for f in named {
                self.policy
                    .check_device(f, &all, &self.protected)
                    .map_err(|e| format!("{e} (writing {path})"))?;
            }
        }
        Ok(())
    }
}

/// The PCI addresses in a sysfs device path, the root port first.
pub fn pci_ancestors(real: &Path) -> Vec<String> {
    real.components()
        .filter_map(|c| c.as_os_str().to_str())
        .filter(|c| policy::is_address(c))
        .map(str::to_string)
        .collect()
}

fn major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

/// The functions the root filesystem is below.
fn root_filesystem(out: &mut Vec<Protected>) {
    let Ok(root) = fs::metadata("/") else {
        return;
    };
    let mut dev = root.dev();
    let mut sys = PathBuf::from(format!("/sys/dev/block/{}:{}", major(dev), minor(dev)));
    if !sys.exists() {
        // btrfs and friends report an anonymous device: ask the mount table.
        let Some(source) = root_source() else {
            return;
        };
        match fs::metadata(&source) {
            Ok(m) if m.file_type().is_block_device() => dev = m.rdev(),
            _ => return,
        }
        sys = PathBuf::from(format!("/sys/dev/block/{}:{}", major(dev), minor(dev)));
    }
    let name = fs::canonicalize(&sys)
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|n| format!("/dev/{}", n.to_string_lossy()))
        })
        .unwrap_or_else(|| format!("block device {}:{}", major(dev), minor(dev)));
    let mut bdfs = Vec::new();
    block_ancestors(&sys, 0, &mut bdfs);
    for bdf in bdfs {
        out.push(Protected {
            bdf,
            why: format!("the root filesystem ({name}) is below it"),
        });
    }
}

/// The source of the last mount on `/` in /proc/self/mountinfo.
fn root_source() -> Option<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines()
        .filter(|l| l.split(' ').nth(4) == Some("/"))
        .filter_map(|l| l.split(" - ").nth(1)?.split(' ').nth(1))
        .next_back()
        .map(str::to_string)
}

/// PCI ancestors of a block device, and of the devices below it (dm, md).
fn block_ancestors(sys: &Path, depth: usize, out: &mut Vec<String>) {
    let Ok(real) = fs::canonicalize(sys) else {
        return;
    };
    out.extend(pci_ancestors(&real));
    if depth > 6 {
        return;
    }
    // A partition's slaves are its disk's.
    for dir in [real.join("slaves"), real.join("../slaves")] {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            block_ancestors(
                &Path::new("/sys/class/block").join(e.file_name()),
                depth + 1,
                out,
            );
        }
    }
}

/// The address the host connected to: the policy's, else sshd's view.
fn link_addr(policy: &Policy) -> Option<IpAddr> {
    let from_env = std::env::var("SSH_CONNECTION")
        .ok()
        .and_then(|c| c.split_whitespace().nth(2).map(str::to_string));
    let addr: IpAddr = policy.link_addr.clone().or(from_env)?.parse().ok()?;
    match addr {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(addr, IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// The functions the host's connection to `addr` goes through.
fn connection(addr: IpAddr, out: &mut Vec<Protected>) {
    for ifname in interfaces_with(addr) {
        let mut bdfs = Vec::new();
        nic_ancestors(&ifname, 0, &mut bdfs);
        for bdf in bdfs {
            out.push(Protected {
                bdf,
                why: format!("the host's connection ({addr} on {ifname}) goes through it"),
            });
        }
    }
}

/// PCI ancestors of a network interface, and of the ones below it (bond, VLAN, bridge).
fn nic_ancestors(ifname: &str, depth: usize, out: &mut Vec<String>) {
    let dir = Path::new("/sys/class/net").join(ifname);
    if let Ok(real) = fs::canonicalize(dir.join("device")) {
        out.extend(pci_ancestors(&real));
    }
    if depth > 4 {
        return;
    }
    let lower = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("lower_").map(str::to_string)
        });
    let ports = fs::read_dir(dir.join("brif"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned());
    for below in lower.chain(ports).collect::<Vec<_>>() {
        nic_ancestors(&below, depth + 1, out);
    }
}

/// The interfaces holding `addr`.
fn interfaces_with(addr: IpAddr) -> Vec<String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut names = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let ip = match family {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        if ip == addr {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            names.push(name.to_string_lossy().into_owned());
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    names
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn pci_ancestors_are_the_addresses_in_the_path() {
        let p = Path::new(
            "/sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0/nvme/nvme0/nvme0n1/nvme0n1p2",
        );
        assert_eq!(
            super::pci_ancestors(p),
            vec!["0000:00:1c.0".to_string(), "0000:02:00.0".to_string()]
        );
        assert!(super::pci_ancestors(Path::new("/sys/devices/virtual/net/lo")).is_empty());
    }

    #[test]
    fn device_numbers_split_like_the_kernel() {
        // makedev(259, 65538)
        let dev = (259u64 & 0xfff) << 8 | (65538 & 0xff) | ((65538 & !0xff) << 12);
        assert_eq!((super::major(dev), super::minor(dev)), (259, 65538));
    }
}
