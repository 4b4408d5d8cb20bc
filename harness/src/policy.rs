//! A lab target's policy on the host side: the keys a `[target.NAME]`
//! table declares it with, and the check of a scenario against it before
//! the scenario runs.
//!
//! ```toml
//! devices = ["0000:01:00.0", { id = "1234:11e8", count = 2 }]
//! writable = ["/sys/bus/pci/", "/sys/kernel/debug/"]   # default: DEFAULT_WRITABLE
//! allow_system_devices = ["0000:00:1f.2"]              # rarely: take the boot disk's controller
//! ```
//!
//! A target without `devices` lets scenarios take no device.  [`check`]
//! refuses a scenario whose literal arguments step outside the policy and
//! says which step (its `file:line`) and why; what only the machine can
//! tell (which function a `vendor:device` is, which one holds the root
//! filesystem) the agent checks as it runs (`iobench_proto::policy`).

use std::path::PathBuf;

use iobench_proto::ops::{self, ArgKind};
use iobench_proto::policy::{self, DeviceRule, DeviceSpec, Policy, Static};
use serde::Deserialize;
use serde_json::Value;

use crate::scenario_file::ScenarioFile;

/// A scenario that would step outside a target's policy.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: step {step} ({op}): {why}")]
pub struct PolicyError {
    /// The file the step is written in (a fragment, if it was included).
    pub path: PathBuf,
    /// 1-based line of the step.
    pub line: usize,
    /// 1-based step number in the scenario.
    pub step: usize,
    /// The step's operation.
    pub op: String,
    /// Why the policy refuses it.
    pub why: String,
}

/// One entry of `devices`: `"0000:01:00.0"`, `"1234:11e8"`, or
/// `{ id = "1234:11e8", count = 2 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawDevice")]
pub struct DeviceDecl(pub DeviceRule);

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDevice {
    Spec(String),
    Counted { id: String, count: u32 },
}

impl TryFrom<RawDevice> for DeviceDecl {
    type Error = String;
    fn try_from(raw: RawDevice) -> Result<DeviceDecl, String> {
        let (spec, count) = match raw {
            RawDevice::Spec(s) => (s, None),
            RawDevice::Counted { id, count } => (id, Some(count)),
        };
        let device = DeviceSpec::parse(&spec).map_err(|e| format!("devices: {e}"))?;
        if count.is_some() && matches!(device, DeviceSpec::Address(_)) {
            return Err(format!(
                "devices: {spec:?} is an address; count goes with vendor:device"
            ));
        }
        Ok(DeviceDecl(DeviceRule { device, count }))
    }
}

/// One entry of `writable`: an absolute path prefix, never under /etc, /boot or /dev.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Writable(pub String);

impl TryFrom<String> for Writable {
    type Error = String;
    fn try_from(s: String) -> Result<Writable, String> {
        policy::check_writable(&s).map_err(|e| format!("writable: {e}"))?;
        Ok(Writable(s))
    }
}

/// One entry of `allow_system_devices`: a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Address(pub String);

impl TryFrom<String> for Address {
    type Error = String;
    fn try_from(s: String) -> Result<Address, String> {
        if policy::is_address(&s) {
            Ok(Address(s.to_ascii_lowercase()))
        } else {
            Err(format!(
                "allow_system_devices: {s:?} is not a PCI address like \"0000:00:1f.2\""
            ))
        }
    }
}

/// The policy of target `name` from its declarations.
pub fn build(
    name: &str,
    devices: &[DeviceDecl],
    writable: Option<&[Writable]>,
    allow_system_devices: &[Address],
) -> Policy {
    Policy {
        target: name.to_string(),
        devices: devices.iter().map(|d| d.0.clone()).collect(),
        writable: match writable {
            Some(w) => w.iter().map(|w| w.0.clone()).collect(),
            None => policy::DEFAULT_WRITABLE
                .iter()
                .map(|s| s.to_string())
                .collect(),
        },
        allow_system_devices: allow_system_devices.iter().map(|a| a.0.clone()).collect(),
        link_addr: None,
    }
}

/// A literal string argument (not a `$reference`).
fn literal(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.starts_with('$'))
}

/// Checks every step of `file` against `policy`: the devices its literal
/// arguments name, the paths it writes.
pub fn check(file: &ScenarioFile, policy: &Policy) -> Result<(), PolicyError> {
    for (i, step) in file.scenario.steps.iter().enumerate() {
        let refuse = |why: String| {
            let (path, line) = match file.step_origins.get(i) {
                Some((Some(inc), line)) => {
                    (file.path.parent().unwrap_or(&file.path).join(inc), *line)
                }
                Some((None, line)) => (file.path.clone(), *line),
                None => (file.path.clone(), 0),
            };
            PolicyError {
                path,
                line,
                step: i + 1,
                op: step.op.clone(),
                why,
            }
        };
        let index = step
            .args
            .get("index")
            .and_then(|v| ops::parse_u64(v).ok())
            .unwrap_or(0);
        let device_args = ops::op(&step.op)
            .map(|o| o.args)
            .unwrap_or_default()
            .iter()
            .filter(|a| a.kind == ArgKind::Device);
        for arg in device_args {
            let Some(spec) = literal(step.args.get(arg.name)) else {
                continue;
            };
            let spec = DeviceSpec::parse(spec).map_err(&refuse)?;
            if let Static::Refused(why) = policy.static_device(&spec, index) {
                return Err(refuse(why));
            }
        }
        if step.op == "file.write" {
            let Some(path) = literal(step.args.get("path")) else {
                continue;
            };
            policy.path_allowed(path).map_err(&refuse)?;
            let data = literal(step.args.get("data")).unwrap_or_default();
            for spec in policy::named_devices(path, data) {
                match policy.static_device(&spec, 0) {
                    Static::Refused(why) => return Err(refuse(format!("writing {path}: {why}"))),
                    // A driver's new_id takes every such function, present or to come.
                    Static::AgentDecides if matches!(spec, DeviceSpec::Id { .. }) => {
                        return Err(refuse(policy.refusal(format_args!(
                            "writing {path}: {spec} is not declared as vendor:device"
                        ))));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
