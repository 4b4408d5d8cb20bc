//! What a scenario may touch on a lab target: the devices it may take and
//! the paths it may write, as the target's file declares them, and the
//! checks both sides make with that [`Policy`].
//!
//! The host sends the policy in its [`crate::HostMsg::Hello`]; an agent
//! greeted with one refuses, as a step error naming the policy, any step
//! that would bind, open, reset or write to a PCI function the policy does
//! not declare, and any write outside the declared paths.  The host checks
//! the same rules on a scenario's literal arguments before running it
//! ([`Policy::static_device`], [`Policy::path_allowed`],
//! [`named_devices`]); what only the machine knows (which function a
//! `vendor:device` is, which one holds the root filesystem) the agent
//! decides ([`Policy::check_device`]).  In QEMU guests there is no policy,
//! and nothing is refused.
//!
//! Everything here is pure: no file is read, so both sides and the unit
//! tests share the exact rules.

use std::fmt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::PciDevice;

/// Where scenarios may write on a target whose file does not say.
pub const DEFAULT_WRITABLE: &[&str] = &[
    "/sys/bus/pci/",
    "/sys/kernel/debug/",
    "/proc/sys/",
    "/sys/module/",
];

/// What no policy may open for writing (nor any block device, anywhere).
pub const NEVER_WRITABLE: &[&str] = &["/etc", "/boot", "/dev"];

/// A PCI function as a policy or a scenario names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DeviceSpec {
    /// A full address, `0000:01:00.0`.
    Address(String),
    /// `vendor:device`, e.g. `1234:11e8`.
    Id {
        /// PCI vendor id.
        vendor: u16,
        /// PCI device id.
        device: u16,
    },
}

impl DeviceSpec {
    /// Parses `"vvvv:dddd"` or `"dddd:bb:dd.f"` (hex, any case).
    pub fn parse(s: &str) -> Result<DeviceSpec, String> {
        let hex = |t: &str, n: usize| t.len() == n && t.chars().all(|c| c.is_ascii_hexdigit());
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [v, d] if hex(v, 4) && hex(d, 4) => Ok(DeviceSpec::Id {
                vendor: u16::from_str_radix(v, 16).unwrap_or_default(),
                device: u16::from_str_radix(d, 16).unwrap_or_default(),
            }),
            [_, _, _] if is_address(s) => Ok(DeviceSpec::Address(s.to_ascii_lowercase())),
            _ => Err(format!(
                "{s:?} is neither vendor:device (\"1234:11e8\") nor an address (\"0000:00:05.0\")"
            )),
        }
    }

    /// Whether this names `f`.
    pub fn names(&self, f: &PciDevice) -> bool {
        match self {
            DeviceSpec::Address(a) => a.eq_ignore_ascii_case(&f.bdf),
            DeviceSpec::Id { vendor, device } => f.vendor == *vendor && f.device == *device,
        }
    }
}

/// Whether `s` is a PCI address `dddd:bb:dd.f`.
pub fn is_address(s: &str) -> bool {
    let hex = |t: &str, n: usize| t.len() == n && t.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [dom, bus, devfn] => {
            hex(dom, 4)
                && hex(bus, 2)
                && devfn
                    .split_once('.')
                    .is_some_and(|(d, f)| hex(d, 2) && matches!(f.as_bytes(), [b'0'..=b'7']))
        }
        _ => false,
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Address(a) => f.write_str(a),
            DeviceSpec::Id { vendor, device } => write!(f, "{vendor:04x}:{device:04x}"),
        }
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;
    fn try_from(s: String) -> Result<DeviceSpec, String> {
        DeviceSpec::parse(&s)
    }
}

/// One declared device: an address, or a `vendor:device` with the number
/// of such functions the machine must have (if given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// Which function(s).
    pub device: DeviceSpec,
    /// For a `vendor:device`: how many the machine has; another number is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            Some(n) => write!(f, "{} ×{n}", self.device),
            None => write!(f, "{}", self.device),
        }
    }
}

/// A function the agent refuses even if declared: the root filesystem or
/// the host's connection depends on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protected {
    /// Its address.
    pub bdf: String,
    /// What depends on it, e.g. `the root filesystem (/dev/vda) is below it`.
    pub why: String,
}

/// What scenarios may touch on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The target's name, for messages.
    pub target: String,
    /// The devices scenarios may take (bind, open, reset).
    pub devices: Vec<DeviceRule>,
    /// Path prefixes scenarios may write under (`/sys/bus/pci/`, …).
    pub writable: Vec<String>,
    /// Addresses the target explicitly lets scenarios take although the
    /// root filesystem or the host's connection hangs off them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_system_devices: Vec<String>,
    /// The target's address the host connected to (its NIC is protected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_addr: Option<String>,
}

/// What the host can tell about a step's device without the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Static {
    /// The policy declares it.
    Allowed,
    /// No function of the machine could make it allowed.
    Refused(String),
    /// Only the machine can tell (the agent checks).
    AgentDecides,
}

impl Policy {
    /// The policy's refusal of `what`, naming the target.
    pub fn refusal(&self, what: impl fmt::Display) -> String {
        format!("refused by target {}'s policy: {what}", self.target)
    }

    fn declared(&self) -> String {
        if self.devices.is_empty() {
            "it declares no devices".into()
        } else {
            let all: Vec<String> = self.devices.iter().map(|d| d.to_string()).collect();
            format!("it declares {}", all.join(", "))
        }
    }

    /// Whether a step naming `spec` (its `index`-th match) may run, as far
    /// as the host can tell without the machine.
    pub fn static_device(&self, spec: &DeviceSpec, index: u64) -> Static {
        let by_address = self
            .devices
            .iter()
            .any(|r| matches!(r.device, DeviceSpec::Address(_)));
        let by_id = self
            .devices
            .iter()
            .any(|r| matches!(r.device, DeviceSpec::Id { .. }));
        if let Some(rule) = self.devices.iter().find(|r| &r.device == spec) {
            return match rule.count {
                Some(n) if index >= u64::from(n) => Static::Refused(self.refusal(format_args!(
                    "{spec} #{index}: it declares {n} such function(s)"
                ))),
                _ => Static::Allowed,
            };
        }
        let could = match spec {
            DeviceSpec::Address(_) => by_id,
            DeviceSpec::Id { .. } => by_address,
        };
        if could {
            Static::AgentDecides
        } else {
            Static::Refused(self.refusal(format_args!(
                "{spec} is not a declared device ({})",
                self.declared()
            )))
        }
    }

    /// Whether `f` may be taken on a machine whose functions are `present`
    /// and whose `protected` functions hold the root filesystem or the
    /// host's connection.
    pub fn check_device(
        &self,
        f: &PciDevice,
        present: &[PciDevice],
        protected: &[Protected],
    ) -> Result<(), String> {
        let name = format!("{} ({:04x}:{:04x})", f.bdf, f.vendor, f.device);
        let rule = self
            .devices
            .iter()
            .find(|r| r.device.names(f))
            .ok_or_else(|| {
                self.refusal(format_args!(
                    "{name} is not a declared device ({})",
                    self.declared()
                ))
            })?;
        if let Some(n) = rule.count {
            let have = present.iter().filter(|p| rule.device.names(p)).count();
            if have != n as usize {
                return Err(self.refusal(format_args!(
                    "it declares {n} function(s) {}, the machine has {have}: not the machine the policy describes",
                    rule.device
                )));
            }
        }
        let allowed = self
            .allow_system_devices
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&f.bdf));
        if let Some(p) = protected
            .iter()
            .find(|p| !allowed && p.bdf.eq_ignore_ascii_case(&f.bdf))
        {
            return Err(self.refusal(format_args!(
                "{name}: {} (list it in allow_system_devices to take it anyway)",
                p.why
            )));
        }
        Ok(())
    }

    /// Whether `path` is under a writable prefix (lexically: absolute, no
    /// `.` or `..`, never under [`NEVER_WRITABLE`]).
    pub fn path_allowed(&self, path: &str) -> Result<(), String> {
        let clean = clean_path(path).map_err(|e| self.refusal(format_args!("writing {e}")))?;
        if let Some(never) = NEVER_WRITABLE.iter().find(|n| under(&clean, n)) {
            return Err(self.refusal(format_args!("writing {path}: nothing under {never}")));
        }
        if self.writable.iter().any(|w| under(&clean, w)) {
            Ok(())
        } else {
            Err(self.refusal(format_args!(
                "writing {path}: it is under none of the writable paths ({})",
                self.writable.join(", ")
            )))
        }
    }
}

/// `path` if absolute, without `.`/`..` components (else why not).
fn clean_path(path: &str) -> Result<String, String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{path:?}: not an absolute path"));
    }
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("{path:?}: `.` and `..` are not allowed"));
    }
    Ok(path.to_string())
}

/// Whether `path` is `prefix` or below it (by whole components).
fn under(path: &str, prefix: &str) -> bool {
    let (p, q) = (Path::new(path), Path::new(prefix));
    p.starts_with(q)
}

/// Checks a declared writable prefix: absolute, no `.`/`..`, not under
/// [`NEVER_WRITABLE`].
pub fn check_writable(prefix: &str) -> Result<(), String> {
    clean_path(prefix)?;
    match NEVER_WRITABLE
        .iter()
        .find(|n| under(prefix, n) || under(n, prefix))
    {
        Some(n) => Err(format!(
            "{prefix:?}: scenarios may never write under {n} (nor /etc, /boot, /dev)"
        )),
        None => Ok(()),
    }
}

/// The PCI functions a write to `path` with `data` acts on: addresses in
/// the path (`/sys/bus/pci/devices/0000:01:00.0/remove`), an address as
/// the data (`drivers/*/unbind`, `drivers_probe`, debugfs EEH knobs), the
/// `vendor device` a driver's `new_id`/`remove_id` is given.
pub fn named_devices(path: &str, data: &str) -> Vec<DeviceSpec> {
    let mut out: Vec<DeviceSpec> = Path::new(path)
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .filter(|c| is_address(c))
        .map(|c| DeviceSpec::Address(c.to_ascii_lowercase()))
        .collect();
    let words: Vec<&str> = data.split_whitespace().collect();
    let file = Path::new(path)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    if matches!(file, "new_id" | "remove_id") {
        if let [v, d, ..] = words.as_slice() {
            let id = format!("{v:0>4}:{d:0>4}");
            match DeviceSpec::parse(&id) {
                Ok(spec) => out.push(spec),
                // Not an id the kernel would take either; name it so it is refused.
                Err(_) => out.push(DeviceSpec::Address(data.trim().to_string())),
            }
        }
    }
    // The first word, or its first `dddd:bb:dd.f` part (EEH knobs take `addr:pe`).
    if let Some(first) = words.first() {
        let candidate = first.get(..12).unwrap_or(first);
        if is_address(candidate) {
            out.push(DeviceSpec::Address(candidate.to_ascii_lowercase()));
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
