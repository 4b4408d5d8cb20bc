//! A booted machine: QEMU + vsock backend + console + agent, with named
//! boot stages, timeouts and clean-up that cannot be skipped.
//!
//! [`Vm::boot`] starts the vsock backend, listens for the agent, starts
//! QEMU and then watches four things at once until the agent connects:
//! QEMU exiting (with its stderr), a fatal kernel event on the console, the
//! init script reporting that the agent died, and the stage deadlines
//! (QEMU started → kernel printing → agent ready).  Whatever fails is
//! returned as a [`BootError`] naming the cause and the log files.  QEMU and
//! the backend are killed when the [`Vm`] is dropped, whatever happened.

use std::fmt::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent::{Agent, AgentError};
use crate::console::Console;
use crate::machine::{Machine, QemuBuild};
use crate::process::{self, Owned};
use crate::qemu::{self, Accel, BootFiles, BootOptions, GuestMode};
use crate::vsock::{Backend, VsockError};

/// Kernel and initramfs for one architecture.
#[derive(Debug, Clone)]
pub struct Images {
    /// The image QEMU loads (`vmlinux` / `bzImage`).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The unstripped `vmlinux` for gdb, if known.
    pub vmlinux: Option<PathBuf>,
    /// The patches the kernel was built with (file names), for
    /// `harness::known_bug`.
    pub patches: Vec<String>,
}

/// Deadlines of the boot stages and of agent requests.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From spawn until the guest prints its first console byte.
    pub first_output: Duration,
    /// From spawn until the agent has connected and answered hello.
    pub agent_ready: Duration,
    /// Any single agent reply.
    pub agent_reply: Duration,
    /// From the shutdown request until QEMU has exited.
    pub poweroff: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            first_output: Duration::from_secs(30),
            agent_ready: Duration::from_secs(90),
            agent_reply: Duration::from_secs(120),
            poweroff: Duration::from_secs(20),
        }
    }
}

/// How the host reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channel {
    /// vsock if `vhost-device-vsock` is installed, else virtio-serial (said on stderr).
    #[default]
    Auto,
    /// vsock only; a missing backend is an error.
    Vsock,
    /// A virtio-serial port on a unix socket (no host→guest sessions).
    Serial,
}

/// Everything needed to boot one machine.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// The machine definition (overrides applied).
    pub machine: Machine,
    /// Kernel and initramfs.
    pub images: Images,
    /// Per-boot options.
    pub boot: BootOptions,
    /// QEMU binary (name on PATH or path).
    pub qemu: PathBuf,
    /// Where `console.log`, `qemu.stderr` and `vsock.log` go.
    pub log_dir: PathBuf,
    /// Stage deadlines.
    pub timeouts: Timeouts,
    /// Echo the console to stdout.
    pub echo_console: bool,
    /// Host↔agent channel.
    pub channel: Channel,
}

impl VmSpec {
    /// Starts the spec to boot `machine` from `images`, logging into
    /// `log_dir`: the one way `cargo xtask run`, the bench and the VM suite
    /// make theirs.
    pub fn builder(machine: Machine, images: Images, log_dir: PathBuf) -> VmSpecBuilder {
        VmSpecBuilder {
            machine,
            images,
            log_dir,
            boot: BootOptions::default(),
            patched_qemu: None,
        }
    }
}

/// Builds a [`VmSpec`] (see [`VmSpec::builder`]): the accelerator, the guest
/// mode and, for a machine with `build = "patched"`, the patched QEMU; the
/// rest (deadlines, console echo, channel) starts at its default and can be
/// changed on the spec.
#[derive(Debug, Clone)]
#[must_use]
pub struct VmSpecBuilder {
    machine: Machine,
    images: Images,
    log_dir: PathBuf,
    boot: BootOptions,
    patched_qemu: Option<PathBuf>,
}

impl VmSpecBuilder {
    /// The accelerator (default TCG).
    pub fn accel(mut self, accel: Accel) -> Self {
        self.boot.accel = accel;
        self
    }

    /// What the guest runs (default the agent).
    pub fn mode(mut self, mode: GuestMode) -> Self {
        self.boot.mode = mode;
        self
    }

    /// The `qemu-system-ppc64` built by `cargo xtask qemu`, used if the
    /// machine has `build = "patched"` (ignored otherwise).
    pub fn patched_qemu(mut self, binary: Option<PathBuf>) -> Self {
        self.patched_qemu = binary;
        self
    }

    /// The spec, with the QEMU the machine's `build` asks for: the stock
    /// binary on PATH, or the patched one (an error if there is none).
    pub fn build(self) -> Result<VmSpec, VmError> {
        let qemu = match (self.machine.qemu.build, self.patched_qemu) {
            (QemuBuild::Stock, _) => PathBuf::from(self.machine.arch.qemu_binary()),
            (QemuBuild::Patched, Some(binary)) => binary,
            (QemuBuild::Patched, None) => {
                return Err(VmError::PatchedQemuMissing {
                    machine: self.machine.name,
                });
            }
        };
        Ok(VmSpec {
            machine: self.machine,
            images: self.images,
            boot: self.boot,
            qemu,
            log_dir: self.log_dir,
            timeouts: Timeouts::default(),
            echo_console: false,
            channel: Channel::Auto,
        })
    }
}

/// Errors booting or running a machine.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The QEMU binary is not installed.
    #[error("{binary} not found; install QEMU with `cargo xtask setup`")]
    QemuMissing {
        /// The binary looked for.
        binary: PathBuf,
    },
    /// The machine runs on the patched QEMU, and none was given.
    #[error(
        "machine {machine} needs the patched QEMU (build = \"patched\"); build it with `cargo xtask qemu`"
    )]
    PatchedQemuMissing {
        /// The machine's name.
        machine: String,
    },
    /// An image is missing.
    #[error("{what} {path} does not exist; build it with `cargo xtask {xtask}`")]
    ImageMissing {
        /// Kernel or initramfs.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The xtask command that makes it.
        xtask: &'static str,
    },
    /// The vsock layer failed.
    #[error(transparent)]
    Vsock(#[from] VsockError),
    /// Local I/O (temp dir, log files, spawn) failed.
    #[error("{what}")]
    Io {
        /// The operation.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// QEMU exited before the machine was ready.
    #[error("QEMU exited during boot ({status}) at stage \"{stage}\"\n  QEMU said: {stderr}\n  logs: {}", log_dir.display())]
    QemuExited {
        /// Exit status.
        status: String,
        /// The stage reached.
        stage: &'static str,
        /// The tail of QEMU's stderr.
        stderr: String,
        /// Log directory.
        log_dir: PathBuf,
    },
    /// The kernel panicked, oopsed or hit a BUG.
    #[error("{kind} at stage \"{stage}\": {line}\n  console log: {}\n{}", log.display(), indent(tail))]
    Kernel {
        /// `kernel panic`, `kernel Oops`, `kernel BUG`.
        kind: &'static str,
        /// The stage reached.
        stage: &'static str,
        /// The console line.
        line: String,
        /// The console log.
        log: PathBuf,
        /// Last console lines.
        tail: Vec<String>,
    },
    /// A stage did not finish in time.
    #[error("boot hang: stage \"{stage}\" not reached within {timeout:?}\n  console log: {}\n{}", log.display(), indent(tail))]
    Hang {
        /// The stage that was not reached.
        stage: &'static str,
        /// Its deadline.
        timeout: Duration,
        /// The console log.
        log: PathBuf,
        /// Last console lines.
        tail: Vec<String>,
    },
    /// The agent process in the guest died.
    #[error("guest agent crashed ({status})\n  console log: {}\n{}", log.display(), indent(tail))]
    AgentCrashed {
        /// What init reported.
        status: String,
        /// The console log.
        log: PathBuf,
        /// Last console lines.
        tail: Vec<String>,
    },
    /// The agent stopped answering within the reply deadline: the guest hangs
    /// (or one operation runs longer than the deadline).
    #[error(
        "the guest agent gave no answer within {after:?}: the guest hangs, or an operation runs longer than that\n  console log: {}\n{}",
        log.display(),
        indent(tail)
    )]
    Hung {
        /// The reply deadline.
        after: Duration,
        /// The console log.
        log: PathBuf,
        /// The last console lines.
        tail: Vec<String>,
    },
    /// The agent connected but does not answer properly.  The agent's error
    /// (with its causes) is part of the message, before the console's
    /// context, so it is not a `source` as well.
    #[error("guest agent not answering: {}\n  console log: {}\n{}", with_causes(error), log.display(), indent(tail))]
    Agent {
        /// The protocol-level error.
        error: AgentError,
        /// The console log.
        log: PathBuf,
        /// Last console lines.
        tail: Vec<String>,
    },
    /// The machine did not power off in time; it was killed.
    #[error("machine did not power off within {0:?}; QEMU was killed")]
    PoweroffTimeout(Duration),
}

/// `error: cause: cause`, for an error said inside another's message.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut s = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

fn indent(lines: &[String]) -> String {
    let mut s = String::from("  last console lines:");
    for l in lines {
        let _ = write!(s, "\n  | {l}");
    }
    s
}

/// How the agent reaches the host during boot.
enum Link {
    /// vsock: the agent dials the host port; we accept on this listener.
    Vsock(std::os::unix::net::UnixListener),
    /// virtio-serial: QEMU serves this unix socket; we connect and greet.
    Serial(PathBuf),
}

/// How long each boot stage took, from QEMU's spawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootTimings {
    /// Until the guest printed its first byte.
    pub first_output: Option<Duration>,
    /// Until the agent answered hello (boot-to-agent-ready).
    pub agent_ready: Duration,
}

/// A running machine.
#[derive(Debug)]
pub struct Vm {
    // Field order is drop order: QEMU first, then its helpers, then files.
    qemu: Owned,
    backend: Option<Backend>,
    console: Console,
    stdin: Option<ChildStdin>,
    agent: Option<Agent>,
    spec: VmSpec,
    qmp_socket: PathBuf,
    started: Instant,
    /// Stage timings of this boot.
    pub timings: BootTimings,
    _dir: tempfile::TempDir,
}

const STAGE_QEMU: &str = "QEMU started";
const STAGE_KERNEL: &str = "kernel booting";
const STAGE_AGENT: &str = "agent ready";

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

impl Vm {
    /// Boots the machine; in [`GuestMode::Agent`] returns once the agent answered.
    pub fn boot(spec: VmSpec) -> Result<Vm, VmError> {
        let qemu_bin =
            process::which(&spec.qemu.to_string_lossy()).ok_or_else(|| VmError::QemuMissing {
                binary: spec.qemu.clone(),
            })?;
        for (what, path) in [
            ("kernel", &spec.images.kernel),
            ("initramfs", &spec.images.initramfs),
        ] {
            if !path.is_file() {
                let xtask = if what == "kernel" {
                    "kernel"
                } else {
                    "initramfs"
                };
                return Err(VmError::ImageMissing {
                    what,
                    path: path.clone(),
                    xtask,
                });
            }
        }
        std::fs::create_dir_all(&spec.log_dir)
            .map_err(io_err(format!("creating {}", spec.log_dir.display())))?;
        let dir = tempfile::Builder::new()
            .prefix("iobench-vm-")
            .tempdir()
            .map_err(io_err("creating the VM's temp dir"))?;
        let backend = match spec.channel {
            Channel::Serial => None,
            channel => match Backend::start(dir.path(), &spec.log_dir.join("vsock.log")) {
                Ok(b) => Some(b),
                Err(VsockError::Missing) if channel == Channel::Auto => {
                    eprintln!(
                        "note: {} not found; the agent talks over a virtio-serial port instead",
                        crate::vsock::BACKEND
                    );
                    None
                }
                Err(e) => return Err(e.into()),
            },
        };
        let link = match &backend {
            Some(b) => Link::Vsock(b.listen(crate::proto::HOST_PORT)?),
            None => Link::Serial(dir.path().join("agent.sock")),
        };
        let files = BootFiles {
            kernel: spec.images.kernel.clone(),
            initramfs: spec.images.initramfs.clone(),
            vhost_socket: backend.as_ref().map(|b| b.vhost_socket.clone()),
            serial_channel: match &link {
                Link::Serial(sock) => Some(sock.clone()),
                Link::Vsock(_) => None,
            },
            qmp_socket: dir.path().join("qmp.sock"),
        };
        let args = qemu::args(&spec.machine, &files, &spec.boot);
        std::fs::write(
            spec.log_dir.join("qemu.cmdline"),
            shell_words(&qemu_bin, &args),
        )
        .map_err(io_err("writing qemu.cmdline"))?;
        let stderr_path = spec.log_dir.join("qemu.stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(io_err(format!("creating {}", stderr_path.display())))?;
        let mut cmd = Command::new(&qemu_bin);
        cmd.args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let started = Instant::now();
        let mut qemu = process::spawn_owned(cmd, "qemu")
            .map_err(io_err(format!("starting {}", qemu_bin.display())))?;
        let stdout = qemu.child_mut().stdout.take().expect("stdout is piped");
        let stdin = qemu.child_mut().stdin.take();
        let console =
            Console::capture(stdout, &spec.log_dir.join("console.log"), spec.echo_console)
                .map_err(io_err("capturing the console"))?;
        let mut vm = Vm {
            qemu,
            backend,
            console,
            stdin,
            agent: None,
            qmp_socket: files.qmp_socket,
            started,
            timings: BootTimings::default(),
            spec,
            _dir: dir,
        };
        if vm.spec.boot.mode == GuestMode::Shell {
            return Ok(vm);
        }
        let reply = vm.spec.timeouts.agent_reply;
        let agent = match link {
            Link::Vsock(listener) => vm.wait_for(|| match listener.accept() {
                Ok((s, _)) => Agent::over_unix(s, reply).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(AgentError::Io(e)),
            })?,
            Link::Serial(sock) => {
                // The guest end opens late; greet from a thread so the watch loop stays live.
                let ready = vm.spec.timeouts.agent_ready;
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let deadline = Instant::now() + ready;
                    let stream = loop {
                        match UnixStream::connect(&sock) {
                            Ok(s) => break Ok(s),
                            Err(_) if Instant::now() < deadline => {
                                std::thread::sleep(Duration::from_millis(2))
                            }
                            Err(e) => break Err(e),
                        }
                    };
                    let _ = tx.send(
                        stream
                            .map_err(AgentError::Io)
                            .and_then(|s| Agent::over_unix(s, ready)),
                    );
                });
                vm.wait_for(|| match rx.try_recv() {
                    Ok(r) => r.map(Some),
                    Err(_) => Ok(None),
                })?
            }
        };
        vm.timings.agent_ready = started.elapsed();
        vm.timings.first_output = vm.console.first_output().map(|t| t.duration_since(started));
        vm.agent = Some(agent);
        Ok(vm)
    }

    /// Polls `ready` until it yields, watching QEMU, the console and the deadlines.
    fn wait_for<T>(
        &mut self,
        mut ready: impl FnMut() -> Result<Option<T>, AgentError>,
    ) -> Result<T, VmError> {
        let t = self.spec.timeouts;
        loop {
            match ready() {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => {}
                Err(e) => return Err(self.explain(e)),
            }
            let stage = self.stage();
            if self.console.fatal().is_some() {
                // Let the rest of the panic message reach the log.
                let _ = self.qemu.wait_timeout(Duration::from_millis(300));
                self.qemu.kill();
                self.console.finish();
            }
            if let Some(e) = self.console_verdict(stage) {
                return Err(e);
            }
            if let Some(status) = self.qemu.try_wait().map_err(io_err("waiting for QEMU"))? {
                // The console may still hold the reason (panic, agent exit): drain it first.
                self.console.finish();
                if let Some(e) = self.console_verdict(stage) {
                    return Err(e);
                }
                return Err(VmError::QemuExited {
                    status: status.to_string(),
                    stage,
                    stderr: self.qemu_stderr(),
                    log_dir: self.spec.log_dir.clone(),
                });
            }
            let elapsed = self.started.elapsed();
            let (hung, timeout) = match self.console.first_output() {
                None => (STAGE_KERNEL, t.first_output),
                Some(_) => (STAGE_AGENT, t.agent_ready),
            };
            if elapsed > timeout {
                return Err(VmError::Hang {
                    stage: hung,
                    timeout,
                    log: self.console_log(),
                    tail: self.tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn stage(&self) -> &'static str {
        match (self.console.first_output(), &self.agent) {
            (_, Some(_)) => STAGE_AGENT,
            (Some(_), None) => STAGE_KERNEL,
            (None, None) => STAGE_QEMU,
        }
    }

    fn agent_error(&self, source: AgentError) -> VmError {
        if let AgentError::Io(e) = &source
            && matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        {
            return VmError::Hung {
                after: self
                    .agent
                    .as_ref()
                    .and_then(Agent::reply_deadline)
                    .unwrap_or(self.spec.timeouts.agent_reply),
                log: self.console_log(),
                tail: self.tail(),
            };
        }
        VmError::Agent {
            error: source,
            log: self.console_log(),
            tail: self.tail(),
        }
    }

    fn tail(&self) -> Vec<String> {
        self.console.last_lines(30)
    }

    /// The console log file.
    pub fn console_log(&self) -> PathBuf {
        self.console.log_path().to_owned()
    }

    /// The last `n` console lines.
    pub fn console_tail(&self, n: usize) -> Vec<String> {
        self.console.last_lines(n)
    }

    /// The patches the guest kernel was built with (file names).
    pub fn kernel_patches(&self) -> &[String] {
        &self.spec.images.patches
    }

    /// The log directory.
    pub fn log_dir(&self) -> &Path {
        &self.spec.log_dir
    }

    /// The VM's private temp dir (sockets); every helper's argv mentions it.
    pub fn private_dir(&self) -> &Path {
        self._dir.path()
    }

    /// QEMU's pid.
    pub fn qemu_pid(&self) -> u32 {
        self.qemu.pid()
    }

    /// The vsock backend's pid.
    pub fn backend_pid(&self) -> Option<u32> {
        self.backend.as_ref().map(Backend::pid)
    }

    fn qemu_stderr(&self) -> String {
        let s = std::fs::read_to_string(self.spec.log_dir.join("qemu.stderr")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().rev().take(10).collect();
        let s = lines.into_iter().rev().collect::<Vec<_>>().join("\n  ");
        if s.is_empty() {
            "(nothing on stderr)".into()
        } else {
            s
        }
    }

    /// The connected agent (only in [`GuestMode::Agent`]).
    pub fn agent(&mut self) -> Result<&mut Agent, VmError> {
        if self.agent.is_none() {
            return Err(self.agent_error(AgentError::Closed));
        }
        Ok(self.agent.as_mut().expect("checked above"))
    }

    /// Wraps an agent error with this machine's console context.
    pub fn explain(&mut self, source: AgentError) -> VmError {
        // The console may trail the agent stream: give it a moment to say why.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(v) = self.console_verdict("running") {
                return v;
            }
            if let Ok(Some(status)) = self.qemu.try_wait() {
                self.console.finish();
                return self
                    .console_verdict("running")
                    .unwrap_or_else(|| VmError::QemuExited {
                        status: status.to_string(),
                        stage: "running",
                        stderr: self.qemu_stderr(),
                        log_dir: self.spec.log_dir.clone(),
                    });
            }
            if Instant::now() > deadline {
                return self.agent_error(source);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the console says went wrong, if anything: a fatal kernel event
    /// first, else the init script's report that the agent exited.
    fn console_verdict(&self, stage: &'static str) -> Option<VmError> {
        if let Some(f) = self.console.fatal() {
            return Some(VmError::Kernel {
                kind: f.kind,
                stage,
                line: f.line,
                log: self.console_log(),
                tail: self.tail(),
            });
        }
        let status = self.console.agent_exit()?;
        Some(VmError::AgentCrashed {
            status,
            log: self.console_log(),
            tail: self.tail(),
        })
    }

    /// Opens a new host→guest vsock session to the agent's listening port.
    pub fn connect_agent(&self) -> Result<Agent, VmError> {
        let backend = self.backend.as_ref().ok_or(VsockError::Missing)?; // serial channel: one session only
        let s = backend.connect(crate::proto::AGENT_PORT, self.spec.timeouts.agent_reply)?;
        Agent::over_unix(s, self.spec.timeouts.agent_reply).map_err(|e| self.agent_error(e))
    }

    /// Sends bytes to the guest console (for shells and tests).
    pub fn console_write(&mut self, bytes: &[u8]) -> Result<(), VmError> {
        use std::io::Write;
        let stdin = self.stdin.as_mut().ok_or_else(|| VmError::Io {
            what: "console input".into(),
            source: std::io::Error::other("closed"),
        })?;
        stdin
            .write_all(bytes)
            .and_then(|_| stdin.flush())
            .map_err(io_err("writing to the console"))
    }

    /// QEMU's QMP socket (for commands issued while the agent is busy).
    pub fn qmp_socket(&self) -> &Path {
        &self.qmp_socket
    }

    /// Runs a QMP command (raw JSON); returns its `return` value.
    pub fn qmp(
        &self,
        command: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value, VmError> {
        crate::qmp::execute(&self.qmp_socket, command, arguments)
            .map_err(io_err(format!("QMP {command}")))
    }

    /// QEMU's exit status if it has exited (for interactive sessions).
    pub fn try_exit(&mut self) -> Result<Option<String>, VmError> {
        match self.qemu.try_wait().map_err(io_err("waiting for QEMU"))? {
            Some(s) => {
                self.console.finish();
                Ok(Some(s.to_string()))
            }
            None => Ok(None),
        }
    }

    /// Asks the agent to power off and waits for QEMU to exit; returns the time it took.
    pub fn poweroff(mut self) -> Result<Duration, VmError> {
        let t0 = Instant::now();
        if let Some(agent) = self.agent.take() {
            if let Err(e) = agent.shutdown(true) {
                return Err(self.explain(e));
            }
        } else {
            let _ = self.qmp("system_powerdown", serde_json::json!({}));
        }
        match self
            .qemu
            .wait_timeout(self.spec.timeouts.poweroff)
            .map_err(io_err("waiting for QEMU"))?
        {
            Some(_) => {
                self.console.finish();
                Ok(t0.elapsed())
            }
            None => {
                self.qemu.kill();
                Err(VmError::PoweroffTimeout(self.spec.timeouts.poweroff))
            }
        }
    }
}

/// The command line as a copy-pasteable shell string (for the log only).
fn shell_words(bin: &Path, args: &[String]) -> String {
    let quote = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut out = quote(&bin.to_string_lossy());
    for a in args {
        out.push(' ');
        out.push_str(&quote(a));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(name: &str) -> VmSpecBuilder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-configs");
        let images = Images {
            kernel: "/k".into(),
            initramfs: "/i".into(),
            vmlinux: None,
            patches: vec![],
        };
        VmSpec::builder(Machine::find(&dir, name).unwrap(), images, "/logs".into())
    }

    #[test]
    fn messages_say_each_cause_once() {
        let io = || std::io::Error::other("boom");
        let e = VmError::Io {
            what: "writing qemu.cmdline".into(),
            source: io(),
        };
        assert_eq!(e.to_string(), "writing qemu.cmdline");
        assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "boom");
        let e = VmError::Agent {
            error: AgentError::Io(io()),
            log: "/l/console.log".into(),
            tail: vec!["last".into()],
        };
        let text = e.to_string();
        assert!(
            text.starts_with("guest agent not answering: agent stream: boom\n"),
            "{text}"
        );
        assert_eq!(text.matches("boom").count(), 1);
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn the_builder_picks_the_qemu_the_machine_asks_for() {
        let patched = Some(PathBuf::from("/q/qemu-system-ppc64"));
        let e = builder("pseries-eeh").build().unwrap_err().to_string();
        assert!(e.contains("cargo xtask qemu"), "{e}");
        let s = builder("pseries-eeh")
            .patched_qemu(patched.clone())
            .build()
            .unwrap();
        assert_eq!(s.qemu, Path::new("/q/qemu-system-ppc64"));
        let s = builder("pseries")
            .patched_qemu(patched)
            .accel(Accel::Kvm)
            .mode(GuestMode::Shell)
            .build()
            .unwrap();
        assert_eq!(s.qemu, Path::new("qemu-system-ppc64"));
        assert_eq!((s.boot.accel, s.boot.mode), (Accel::Kvm, GuestMode::Shell));
        assert_eq!(s.log_dir, Path::new("/logs"));
        assert_eq!(s.channel, Channel::Auto);
    }
}
