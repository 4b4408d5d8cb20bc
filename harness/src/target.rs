//! Where scenarios run besides QEMU: real machines reached over SSH or
//! through a serial console, defined in a targets file (`targets/lab.toml`).
//!
//! A [`Session`] is the same thing a booted [`crate::vm::Vm`] is to the
//! scenario runner — an [`Agent`] plus logs — so a scenario written once runs
//! on emulation and on a real POWER or x86 box with the same result format.
//!
//! * `ssh` (ssh2): the host key is checked against `known_hosts` (unknown or
//!   changed = refused, unless `trust_on_first_use`), authentication is by key
//!   file, ssh-agent, or a password taken from an environment variable (never
//!   from the file).  The agent binary for the target's architecture is copied
//!   over SFTP into a private `mktemp -d` directory, run with `--stdio` (its
//!   path single-quoted), and the directory is removed when the session ends.
//! * `serial` (rexpect): a console on a unix socket (`unix:PATH`), a console
//!   server (`tcp:HOST:PORT`) or a tty device.  rexpect finds the shell prompt
//!   (logging in if asked), the tty goes raw, and the installed agent runs with
//!   `--frames`; results are picked out of the console by their checksummed
//!   frames, whatever printk writes in between.
//!
//! `power_cycle` (an argv run on this host, e.g. a PDU script) is how a hung
//! target is recovered.
//!
//! `devices`, `writable` and `allow_system_devices` are the target's
//! policy ([`crate::policy`]): sent to the agent in its hello, so the agent
//! refuses any other device or path for the whole session.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::agent::{Agent, AgentError};
use crate::machine::Arch;
use crate::policy::{Address, DeviceDecl, Writable};
use crate::scenario::{AgentHost, HostError};
use crate::toml_error;

/// Errors reaching or using a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The targets file is not valid.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No target of that name.
    #[error("no target {name:?} in {path} (it has: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The file.
        path: PathBuf,
        /// The names it has.
        known: String,
    },
    /// The host key is not in known_hosts.
    #[error(
        "{host}:{port}: host key {fingerprint} is not in {known_hosts}; check it and add it (ssh-keyscan -p {port} {host} >> {known_hosts}), or set trust_on_first_use = true"
    )]
    UnknownHostKey {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// SHA-256 of the offered key, hex.
        fingerprint: String,
        /// The file checked.
        known_hosts: String,
    },
    /// The host key differs from the one recorded: refuse.
    #[error(
        "{host}:{port}: HOST KEY MISMATCH: the key offered ({fingerprint}) differs from the one in {known_hosts}; refusing to connect"
    )]
    HostKeyMismatch {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// SHA-256 of the offered key, hex.
        fingerprint: String,
        /// The file checked.
        known_hosts: String,
    },
    /// SSH failed (connect, handshake, auth, sftp, exec).
    #[error("ssh {target}: {what}: {reason}")]
    Ssh {
        /// Target name.
        target: String,
        /// The step.
        what: String,
        /// The error.
        reason: String,
    },
    /// The serial console did not behave.
    #[error("serial {target}: {what} (console log: {log})")]
    Serial {
        /// Target name.
        target: String,
        /// What went wrong.
        what: String,
        /// The console log.
        log: PathBuf,
    },
    /// Talking to the agent failed.
    #[error("agent on {target}")]
    Agent {
        /// Target name.
        target: String,
        /// The error.
        source: AgentError,
    },
    /// A local file or command failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl TargetError {
    /// The target could not be reached (yet): no TCP connection, no SSH
    /// handshake, no answer on the console.  Worth retrying after a power cycle.
    pub fn is_unreachable(&self) -> bool {
        match self {
            TargetError::Io { what, .. } => {
                what.starts_with("connecting") || what.starts_with("resolving")
            }
            TargetError::Ssh { what, .. } => what == "handshake" || what == "session",
            TargetError::Serial { .. } => true,
            _ => false,
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TargetError {
    let what = what.into();
    move |source| TargetError::Io { what, source }
}

/// A targets file: `[target.NAME]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsFile {
    /// Targets by name.
    pub target: BTreeMap<String, TargetDef>,
}

/// One target.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetDef {
    /// A machine reached over SSH.
    Ssh(SshDef),
    /// A serial console.
    Serial(SerialDef),
}

fn default_port() -> u16 {
    22
}

fn default_prompt() -> String {
    r"[#$] ".into()
}

fn default_agent() -> String {
    "/sbin/guest-agent".into()
}

fn default_timeout() -> u64 {
    120
}

/// `kind = "ssh"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshDef {
    /// What it is.
    pub description: String,
    /// Its CPU architecture (which agent binary to copy).
    pub arch: Arch,
    /// Host name or address.
    pub host: String,
    /// Port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User to log in as.
    pub user: String,
    /// Private key file (else ssh-agent, else `password_env`).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Environment variable holding a password (the file never holds one).
    #[serde(default)]
    pub password_env: Option<String>,
    /// known_hosts file (default `~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Accept and record an unknown host key (never a changed one).
    #[serde(default)]
    pub trust_on_first_use: bool,
    /// Run the agent through `sudo -n` (it needs root for VFIO).
    #[serde(default)]
    pub sudo: bool,
    /// Reply timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Command (argv) that power-cycles the machine.
    #[serde(default)]
    pub power_cycle: Option<Vec<String>>,
    /// A test fixture the harness starts first (`loopback-sshd`).
    #[serde(default)]
    pub fixture: Option<String>,
    /// Machine definitions whose scenarios also apply here.
    #[serde(default)]
    pub runs: Vec<String>,
    /// The devices scenarios may take (none if not given).
    #[serde(default)]
    pub devices: Vec<DeviceDecl>,
    /// Path prefixes scenarios may write under (default [`iobench_proto::policy::DEFAULT_WRITABLE`]).
    #[serde(default)]
    pub writable: Option<Vec<Writable>>,
    /// Declared devices scenarios may take although the root filesystem or
    /// the host's connection hangs off them.
    #[serde(default)]
    pub allow_system_devices: Vec<Address>,
}

/// `kind = "serial"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialDef {
    /// What it is.
    pub description: String,
    /// Its CPU architecture.
    pub arch: Arch,
    /// `unix:PATH`, `tcp:HOST:PORT`, or a tty device path.
    pub console: String,
    /// Regex of the shell prompt.
    #[serde(default = "default_prompt")]
    pub prompt: String,
    /// Log in as this user if a `login:` prompt appears.
    #[serde(default)]
    pub login: Option<String>,
    /// Environment variable holding the login password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A shell line run before the agent starts (load modules, start a noise source, …).
    #[serde(default)]
    pub prepare: Option<String>,
    /// The agent's path on the target.
    #[serde(default = "default_agent")]
    pub agent: String,
    /// Reply timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Command (argv) that power-cycles the board.
    #[serde(default)]
    pub power_cycle: Option<Vec<String>>,
    /// A machine definition the harness boots with its console on `console` (a stand-in board).
    #[serde(default)]
    pub fixture: Option<String>,
    /// Machine definitions whose scenarios also apply here.
    #[serde(default)]
    pub runs: Vec<String>,
    /// The devices scenarios may take (none if not given).
    #[serde(default)]
    pub devices: Vec<DeviceDecl>,
    /// Path prefixes scenarios may write under (default [`iobench_proto::policy::DEFAULT_WRITABLE`]).
    #[serde(default)]
    pub writable: Option<Vec<Writable>>,
    /// Declared devices scenarios may take although the root filesystem or
    /// the host's connection hangs off them.
    #[serde(default)]
    pub allow_system_devices: Vec<Address>,
}

impl TargetsFile {
    /// Reads and parses a targets file.
    pub fn load(path: &Path) -> Result<TargetsFile, TargetError> {
        let text =
            std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
        toml::from_str(&text).map_err(|e| {
            let (mut line, message) = toml_error::locate(&text, &e);
            // A policy key's error is located at its table: point at the key.
            if let Some((key, _)) = message.split_once(": ")
                && matches!(key, "devices" | "writable" | "allow_system_devices")
                && let Some(at) = text.lines().skip(line - 1).position(|l| {
                    l.trim_start()
                        .strip_prefix(key)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                })
            {
                line += at;
            }
            TargetError::Parse {
                path: path.to_owned(),
                line,
                message,
            }
        })
    }
}

impl TargetDef {
    /// Loads `name` from a targets file.
    pub fn load(path: &Path, name: &str) -> Result<TargetDef, TargetError> {
        let file = TargetsFile::load(path)?;
        let known = file.target.keys().cloned().collect::<Vec<_>>().join(", ");
        file.target
            .get(name)
            .cloned()
            .ok_or_else(|| TargetError::Unknown {
                name: name.into(),
                path: path.to_owned(),
                known,
            })
    }

    /// Its architecture.
    pub fn arch(&self) -> Arch {
        match self {
            TargetDef::Ssh(s) => s.arch,
            TargetDef::Serial(s) => s.arch,
        }
    }

    /// The fixture the harness must start first, if any.
    pub fn fixture(&self) -> Option<&str> {
        match self {
            TargetDef::Ssh(s) => s.fixture.as_deref(),
            TargetDef::Serial(s) => s.fixture.as_deref(),
        }
    }

    /// Machine definitions whose scenarios apply here besides the target's own name.
    pub fn runs(&self) -> &[String] {
        match self {
            TargetDef::Ssh(s) => &s.runs,
            TargetDef::Serial(s) => &s.runs,
        }
    }

    /// What scenarios may touch on this target, named `name`.
    pub fn policy(&self, name: &str) -> iobench_proto::policy::Policy {
        let (devices, writable, allowed) = match self {
            TargetDef::Ssh(s) => (&s.devices, &s.writable, &s.allow_system_devices),
            TargetDef::Serial(s) => (&s.devices, &s.writable, &s.allow_system_devices),
        };
        crate::policy::build(name, devices, writable.as_deref(), allowed)
    }

    /// Whether a power-cycle command is configured.
    pub fn has_power_cycle(&self) -> bool {
        match self {
            TargetDef::Ssh(s) => s.power_cycle.is_some(),
            TargetDef::Serial(s) => s.power_cycle.is_some(),
        }
    }

    /// How long to keep trying to reconnect after a power cycle.
    pub fn reconnect_timeout(&self) -> std::time::Duration {
        let s = match self {
            TargetDef::Ssh(s) => s.timeout_s,
            TargetDef::Serial(s) => s.timeout_s,
        };
        std::time::Duration::from_secs(s.max(300))
    }

    /// Runs the power-cycle command, if there is one.
    pub fn power_cycle(&self) -> Result<bool, TargetError> {
        let argv = match self {
            TargetDef::Ssh(s) => &s.power_cycle,
            TargetDef::Serial(s) => &s.power_cycle,
        };
        let Some((prog, args)) = argv.as_ref().and_then(|a| a.split_first()) else {
            return Ok(false);
        };
        let status = std::process::Command::new(prog)
            .args(args)
            .status()
            .map_err(io(format!("running {prog}")))?;
        if !status.success() {
            return Err(TargetError::Io {
                what: format!("power cycle {prog}"),
                source: std::io::Error::other(status.to_string()),
            });
        }
        Ok(true)
    }
}

/// A connected agent on a target, with what must happen when it ends.
pub struct Session {
    name: String,
    remote_dir: Option<String>,
    agent: Option<Agent>,
    log_dir: PathBuf,
    console: Option<Arc<Mutex<ConsoleTail>>>,
    cleanup: Option<Box<dyn FnOnce() -> Result<(), TargetError> + Send>>,
}

impl Session {
    /// Connects to `name` as `def` says; logs go to `log_dir`; `agent_binary` is
    /// copied to SSH targets.
    pub fn open(
        name: &str,
        def: &TargetDef,
        log_dir: &Path,
        agent_binary: Option<&Path>,
    ) -> Result<Session, TargetError> {
        std::fs::create_dir_all(log_dir).map_err(io(format!("creating {}", log_dir.display())))?;
        let policy = def.policy(name);
        match def {
            TargetDef::Ssh(s) => ssh::open(name, s, log_dir, agent_binary, policy),
            TargetDef::Serial(s) => serial::open(name, s, log_dir, policy),
        }
    }

    /// The private directory the agent was copied to (SSH targets).
    pub fn remote_dir(&self) -> Option<&str> {
        self.remote_dir.as_deref()
    }

    /// Ends the agent and cleans up (removes remote files, restores the tty).
    pub fn close(mut self) -> Result<(), TargetError> {
        let name = self.name.clone();
        if let Some(agent) = self.agent.take() {
            agent.shutdown(false).map_err(|source| TargetError::Agent {
                target: name,
                source,
            })?;
        }
        match self.cleanup.take() {
            Some(c) => c(),
            None => Ok(()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.agent.take());
        if let Some(c) = self.cleanup.take() {
            let _ = c();
        }
    }
}

impl AgentHost for Session {
    fn agent(&mut self) -> Result<&mut Agent, HostError> {
        let name = self.name.clone();
        self.agent
            .as_mut()
            .ok_or_else(|| format!("the agent session on {name} has ended").into())
    }
    fn explain(&mut self, e: AgentError) -> HostError {
        Box::new(TargetError::Agent {
            target: self.name.clone(),
            source: e,
        })
    }
    fn console_tail(&self, n: usize) -> Vec<String> {
        self.console
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).last(n))
            .unwrap_or_default()
    }
    fn log_dir(&self) -> &Path {
        &self.log_dir
    }
}

/// The last lines of a console, kept while it is logged.
#[derive(Default)]
struct ConsoleTail {
    lines: std::collections::VecDeque<String>,
    partial: String,
}

impl ConsoleTail {
    fn push(&mut self, bytes: &[u8]) {
        for ch in String::from_utf8_lossy(bytes).chars() {
            match ch {
                '\n' => {
                    let line = std::mem::take(&mut self.partial);
                    self.lines
                        .push_back(line.trim_end_matches('\r').to_string());
                    if self.lines.len() > 200 {
                        self.lines.pop_front();
                    }
                }
                c => self.partial.push(c),
            }
        }
    }

    fn last(&self, n: usize) -> Vec<String> {
        self.lines
            .iter()
            .skip(self.lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// Single-quotes a word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub mod serial;
pub mod ssh;

#[cfg(test)]
mod tests;
