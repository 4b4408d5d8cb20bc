//! Host ↔ guest-agent protocol of iobench.
//!
//! One JSON object per line, in both directions, over whatever byte stream
//! connects the two sides (vsock, an SSH channel, a virtio-serial port).  The
//! first exchange is always [`HostMsg::Hello`] / [`AgentMsg::Hello`]; a
//! protocol version mismatch is reported by both sides as an error, never
//! guessed around.  Results of a scenario stream one [`StepResult`] per step,
//! so a guest that dies mid-scenario still leaves the finished steps behind.
//!
//! Decoding never panics: malformed input, over-long lines and unknown
//! message types become a [`DecodeError`].  The crate keeps
//! `rust-version = "1.85"` because the ppc64le agent is built with Debian's
//! rustc 1.85.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

pub mod framing;
pub mod ops;
pub mod parts;
pub mod policy;
pub mod values;

/// Version of this protocol; bumped on any incompatible change.
///
/// 2: [`HostMsg::Hello`] carries the target's [`policy::Policy`]; an agent
/// of version 1 would ignore it and take any device, so it must refuse.
pub const PROTOCOL_VERSION: u32 = 3;

/// vsock port the host listens on; the agent connects to it (CID 2) at boot.
pub const HOST_PORT: u32 = 1025;

/// vsock port the agent listens on for host-initiated sessions.
pub const AGENT_PORT: u32 = 1024;

/// The longest line either side accepts (1 MiB); longer input is an error.
pub const MAX_LINE: usize = 1 << 20;

/// A message from the host to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMsg {
    /// Opens a session; the agent answers [`AgentMsg::Hello`].
    Hello {
        /// The host's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// On a lab target, what scenarios may touch; the agent refuses
        /// the rest for the whole session.  None in QEMU guests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<policy::Policy>,
    },
    /// Asks for the PCI devices, IOMMU groups and kernel features.
    Inventory,
    /// Runs a scenario; the agent streams [`AgentMsg::Step`] then [`AgentMsg::Done`].
    Run {
        /// The scenario, already validated by the host.
        scenario: Scenario,
    },
    /// Asks for kernel log lines newer than the last `Dmesg` of this session.
    Dmesg,
    /// Turns kernel coverage (KCOV) of the session's later runs on or off:
    /// while on, each run ends with [`AgentMsg::Coverage`] before
    /// [`AgentMsg::Done`].  The agent answers an empty
    /// [`AgentMsg::Coverage`], or [`AgentMsg::Error`] on a kernel without
    /// KCOV.  Only a host that sends this gets the new answer, and an older
    /// agent answers it with an error, so no version bump.
    Coverage {
        /// Coverage on (true) or off.
        on: bool,
    },
    /// Asks for the next part of a long message ([`AgentMsg::Part`]).
    More,
    /// Ends the session; with `poweroff`, the agent also shuts the machine down.
    Shutdown {
        /// Power the machine off after answering [`AgentMsg::Bye`].
        poweroff: bool,
    },
}

/// A message from the agent to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMsg {
    /// Answer to [`HostMsg::Hello`].
    Hello(AgentHello),
    /// Answer to [`HostMsg::Inventory`].
    Inventory(Inventory),
    /// One finished step of a running scenario.
    Step(StepResult),
    /// The scenario has finished (all steps run, or stopped at the first failure).
    Done(ScenarioOutcome),
    /// Answer to [`HostMsg::Dmesg`].
    Dmesg {
        /// Kernel log lines, oldest first.
        lines: Vec<String>,
    },
    /// A request could not be served at all.
    Error {
        /// What went wrong.
        message: String,
    },
    /// Answer to [`HostMsg::Shutdown`]; the agent closes the stream after it.
    Bye,
    /// The kernel code a run's thread executed (while [`HostMsg::Coverage`]
    /// is on, before [`AgentMsg::Done`]), and the answer to
    /// [`HostMsg::Coverage`] (empty).
    Coverage {
        /// Unique KCOV PCs (return addresses of the
        /// `__sanitizer_cov_trace_pc` calls, KASLR offset taken off), sorted.
        pcs: Vec<u64>,
        /// For each PC, the index of the first step that reached it (the
        /// trace is drained after every step), so a host running several
        /// sequences as one scenario can say which one reached what;
        /// `u32::MAX` for what ran after the last step.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        first_step: Vec<u32>,
        /// The trace buffer filled up between two drains: PCs were lost.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lost: bool,
        /// Why there is no coverage of this run, if there is none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A piece of a message longer than [`parts::PART`]: its JSON text, in
    /// order; the host answers [`HostMsg::More`] to all but the last.
    Part {
        /// The next piece of the message's JSON line.
        data: String,
        /// This piece ends the message.
        last: bool,
    },
}

/// Who the agent is and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHello {
    /// The agent's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The agent's crate version.
    pub agent_version: String,
    /// `uname -r` of the kernel the agent runs on.
    pub kernel: String,
    /// `uname -m`.
    pub machine: String,
    /// The kernel's page size in bytes.
    pub page_size: u64,
    /// Under a policy: the functions it refuses even if declared (the root
    /// filesystem's, the host connection's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<policy::Protected>,
}

/// Devices and kernel features the agent can see.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Inventory {
    /// Every PCI function in sysfs.
    pub devices: Vec<PciDevice>,
    /// Interfaces present: `vfio-container`, `iommufd`, `vfio-cdev`, `iommufd-test`, `eeh`, ….
    pub features: Vec<String>,
}

/// One PCI function as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDevice {
    /// Domain:bus:device.function, e.g. `0001:00:01.0`.
    pub bdf: String,
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// PCI class code (24 bits).
    pub class: u32,
    /// The bound driver, if any.
    pub driver: Option<String>,
    /// The IOMMU group number, if the device is in one.
    pub iommu_group: Option<u32>,
}

/// A scenario as sent to the agent: already parsed and checked by the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Scenario name, e.g. `windows::map_outside_window`.
    pub name: String,
    /// Steps, run in order.
    pub steps: Vec<Step>,
    /// Run every step even after one fails (a fuzzer's batch: every
    /// result is recorded, each judged by the host); by default the run
    /// stops at the first failed step.  An agent without this field
    /// would stop early, never run steps wrongly, so no version bump.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_going: bool,
}

/// One operation with its arguments and what the scenario expects of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The operation's name (see the agent's op table).
    pub op: String,
    /// Arguments; strings of the form `$name` refer to earlier bindings.
    #[serde(default)]
    pub args: BTreeMap<String, serde_json::Value>,
    /// What the step must produce.
    #[serde(default)]
    pub expect: Expect,
    /// Name under which the step's value is kept for later steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}

/// The expected outcome of a step.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The operation succeeds (any value).
    #[default]
    Ok,
    /// The operation fails with this errno name, e.g. `ENXIO`.
    Errno(String),
    /// The operation succeeds with exactly this value.
    Value(serde_json::Value),
    /// Nothing is expected: the step records what happened (kernel quirks).
    Any,
}

/// What actually happened in one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Index of the step in the scenario.
    pub index: usize,
    /// The operation's name.
    pub op: String,
    /// The expectation, as the scenario said it.
    pub expected: Expect,
    /// What happened.
    pub actual: Actual,
    /// Whether `actual` satisfies `expected`.
    pub passed: bool,
    /// Wall time of the operation, in microseconds.
    pub micros: u64,
}

/// The observed result of an operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actual {
    /// Success, with the operation's value (`null` if it has none).
    Value(serde_json::Value),
    /// Failure with an errno.
    Errno {
        /// Symbolic name, e.g. `EINVAL`.
        name: String,
        /// Raw number.
        code: i32,
    },
    /// The agent could not run the operation (bad binding, missing device, …).
    Error(String),
}

/// Summary after the last step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioOutcome {
    /// Scenario name.
    pub name: String,
    /// Steps that ran.
    pub steps_run: usize,
    /// True if every step that ran passed and all steps ran.
    pub passed: bool,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Ok => f.write_str("ok"),
            Expect::Errno(e) => f.write_str(e),
            Expect::Value(v) => write!(f, "= {v}"),
            Expect::Any => f.write_str("any"),
        }
    }
}

impl fmt::Display for Actual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actual::Value(serde_json::Value::Null) => f.write_str("ok"),
            Actual::Value(v) => write!(f, "ok = {v}"),
            Actual::Errno { name, code } => write!(f, "{name} ({code})"),
            Actual::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// Why a line could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// The underlying stream failed.
    Io(io::Error),
    /// A line exceeded [`MAX_LINE`] bytes.
    TooLong(usize),
    /// The line is not a valid message.
    Malformed {
        /// serde's description.
        reason: String,
        /// The start of the offending line, lossily decoded.
        line: String,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Io(e) => write!(f, "reading the agent stream: {e}"),
            DecodeError::TooLong(n) => {
                write!(f, "message line longer than {MAX_LINE} bytes ({n}+)")
            }
            DecodeError::Malformed { reason, line } => {
                write!(f, "malformed message ({reason}): {line:?}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Serializes a message as one line, newline included.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these types cannot fail: every map key is a string.
    let mut out = serde_json::to_vec(msg).unwrap_or_else(|e| {
        format!("{{\"type\":\"error\",\"message\":\"encode: {e}\"}}").into_bytes()
    });
    out.push(b'\n');
    out
}

/// Writes one message and flushes.
pub fn send<T: Serialize, W: Write>(w: &mut W, msg: &T) -> io::Result<()> {
    w.write_all(&encode(msg))?;
    w.flush()
}

/// Decodes one line (with or without its newline).
pub fn decode<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, DecodeError> {
    if line.len() > MAX_LINE {
        return Err(DecodeError::TooLong(line.len()));
    }
    serde_json::from_slice(line).map_err(|e| DecodeError::Malformed {
        reason: e.to_string(),
        line: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
    })
}

/// Reads the next message; `Ok(None)` at a clean end of stream.
///
/// Blank lines are skipped.  At most [`MAX_LINE`] bytes are buffered.
pub fn recv<T: for<'de> Deserialize<'de>, R: BufRead>(r: &mut R) -> Result<Option<T>, DecodeError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = <&mut R as io::Read>::take(&mut *r, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(DecodeError::Io)?;
        if n == 0 {
            return Ok(None);
        }
        if line.len() > MAX_LINE {
            return Err(DecodeError::TooLong(line.len()));
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        return decode(&line).map(Some);
    }
}

/// Checks the peer's protocol version against ours.
pub fn check_version(peer: u32) -> Result<(), String> {
    if peer == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "protocol version mismatch: this side speaks {PROTOCOL_VERSION}, the peer speaks {peer}; \
             rebuild the guest agent and the harness from the same tree"
        ))
    }
}

#[cfg(test)]
mod tests;
