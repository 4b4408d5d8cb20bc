//! vsock between host and guest through a per-VM `vhost-device-vsock`.
//!
//! Each VM gets its own backend process with a unique guest CID and its
//! sockets in a private 0700 temporary directory, so two VMs never collide.
//! Guest→host: the agent connects to CID 2, port P, and the backend
//! connects to our listener at `<uds>_<P>` ([`Backend::listen`]).
//! Host→guest: connect to `<uds>`, send `CONNECT <port>\n`, wait for `OK`
//! ([`Backend::connect`]).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::process::{self, Owned};

/// The backend program.
pub const BACKEND: &str = "vhost-device-vsock";

/// Errors of the vsock layer.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The backend is not installed.
    #[error("{BACKEND} not found on PATH; install it with `cargo xtask setup`")]
    Missing,
    /// The backend failed to start or to create its socket.
    #[error("{BACKEND} did not start: {reason} (log: {log})")]
    Start {
        /// What happened.
        reason: String,
        /// The backend's stderr.
        log: PathBuf,
    },
    /// A socket operation failed.
    #[error("vsock {what}")]
    Io {
        /// The operation.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The backend refused a host→guest connection.
    #[error("vsock connect to guest port {port}: {reply}")]
    Refused {
        /// The guest port.
        port: u32,
        /// What the backend said (empty: it closed the connection).
        reply: String,
    },
}

/// A running backend for one VM.
#[derive(Debug)]
pub struct Backend {
    proc: Owned,
    /// The guest's CID.
    pub cid: u32,
    /// vhost-user socket for QEMU's `vhost-user-vsock-pci`.
    pub vhost_socket: PathBuf,
    /// The hybrid-vsock unix socket.
    pub uds: PathBuf,
}

/// A CID no other VM of this process uses (and unlikely in other processes).
pub fn unique_cid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    3 + ((std::process::id().wrapping_mul(64)).wrapping_add(n) % 0x3fff_0000)
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VsockError {
    let what = what.into();
    move |source| VsockError::Io { what, source }
}

impl Backend {
    /// Starts a backend with sockets in `dir` and its log in `log`.
    pub fn start(dir: &Path, log: &Path) -> Result<Backend, VsockError> {
        let bin = process::which(BACKEND).ok_or(VsockError::Missing)?;
        let cid = unique_cid();
        let vhost_socket = dir.join("vhost.sock");
        let uds = dir.join("vsock.sock");
        let logf = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
        let mut cmd = Command::new(bin);
        cmd.arg("--vm")
            .arg(format!(
                "guest-cid={cid},socket={},uds-path={}",
                vhost_socket.display(),
                uds.display()
            ))
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(io("log"))?)
            .stderr(logf);
        let mut proc = process::spawn_owned(cmd, BACKEND).map_err(|e| VsockError::Start {
            reason: e.to_string(),
            log: log.to_owned(),
        })?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !vhost_socket.exists() {
            if let Ok(Some(status)) = proc.try_wait() {
                return Err(VsockError::Start {
                    reason: format!("exited with {status}"),
                    log: log.to_owned(),
                });
            }
            if Instant::now() > deadline {
                return Err(VsockError::Start {
                    reason: "no socket after 5 s".into(),
                    log: log.to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(Backend {
            proc,
            cid,
            vhost_socket,
            uds,
        })
    }

    /// The backend's pid.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Listens for guest connections to host port `port`.
    pub fn listen(&self, port: u32) -> Result<UnixListener, VsockError> {
        let path = PathBuf::from(format!("{}_{port}", self.uds.display()));
        let l = UnixListener::bind(&path).map_err(io(format!("listen on {}", path.display())))?;
        l.set_nonblocking(true).map_err(io("set_nonblocking"))?;
        Ok(l)
    }

    /// Connects to guest port `port` (the guest must be listening).
    pub fn connect(&self, port: u32, timeout: Duration) -> Result<UnixStream, VsockError> {
        let mut s = UnixStream::connect(&self.uds)
            .map_err(io(format!("connect {}", self.uds.display())))?;
        s.set_read_timeout(Some(timeout)).map_err(io("timeout"))?;
        s.write_all(format!("CONNECT {port}\n").as_bytes())
            .map_err(io("CONNECT"))?;
        // Read the reply byte by byte: nothing after it may be consumed.
        let mut reply = Vec::new();
        let mut r = BufReader::with_capacity(1, &s);
        r.read_until(b'\n', &mut reply)
            .map_err(io("reading CONNECT reply"))?;
        let reply = String::from_utf8_lossy(&reply).trim().to_string();
        if !reply.starts_with("OK") {
            return Err(VsockError::Refused { port, reply });
        }
        s.set_read_timeout(None).map_err(io("timeout"))?;
        Ok(s)
    }

    /// Stops the backend.
    pub fn stop(&mut self) {
        self.proc.kill();
    }
}
