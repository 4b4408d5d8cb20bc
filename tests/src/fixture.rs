//! Stand-ins for lab hardware, so the hardware-in-the-loop paths run for
//! real in CI: an OpenSSH server on loopback with generated host and user
//! keys (for `ssh` targets), and a QEMU machine whose console is a unix
//! socket (for `serial` targets).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::machine::Arch;
use harness::process::{Owned, spawn_owned};
use harness::report::chain;
use harness::target::SshDef;
use harness::vm::{Vm, VmSpec};

/// A private `sshd` on 127.0.0.1, killed on drop.
pub struct LoopbackSshd {
    proc: Owned,
    /// Its directory: keys, config, known_hosts, log.
    pub dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
}

/// Generates an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) -> Result<(), String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "iobench", "-f"])
        .arg(path)
        .output()
        .map_err(|e| format!("ssh-keygen: {e} (install openssh-client: `cargo xtask setup`)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The known_hosts line for the public key in `pub_file`, served on
/// 127.0.0.1:`port`.
pub fn known_hosts_line(pub_file: &Path, port: u16) -> Result<String, String> {
    let text = std::fs::read_to_string(pub_file)
        .map_err(|e| format!("reading {}: {e}", pub_file.display()))?;
    let entry = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(format!("[127.0.0.1]:{port} {entry}\n"))
}

/// Boots `spec` with its console on the unix socket `sock` (a stale socket
/// file is removed first) and waits up to 10 s for QEMU to create it.
pub fn console_machine(mut spec: VmSpec, sock: &Path) -> Result<Vm, String> {
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(sock);
    spec.boot.console_socket = Some(sock.to_path_buf());
    let vm = Vm::boot(spec).map_err(|e| chain(&e))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(vm)
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Starts `sshd -D` with the config in `d` and waits until it listens on `port`.
fn serve(sshd: &Path, d: &Path, port: u16) -> Result<Owned, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("sshd.log"))
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(sshd);
    cmd.args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut proc = spawn_owned(cmd, "sshd").map_err(|e| format!("starting sshd: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = proc.try_wait() {
            let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
            return Err(format!("sshd exited ({status}):\n{log}"));
        }
        if Instant::now() > deadline {
            return Err("sshd did not listen within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(proc)
}

impl LoopbackSshd {
    /// Generates keys and starts `sshd -D` on a free loopback port.
    pub fn start() -> Result<LoopbackSshd, String> {
        let sshd = harness::process::which("sshd")
            .or_else(|| Some(PathBuf::from("/usr/sbin/sshd")).filter(|p| p.is_file()))
            .ok_or("sshd not found (install openssh-server: `cargo xtask setup`)")?;
        let dir = tempfile::Builder::new()
            .prefix("iobench-sshd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        keygen(&d.join("host_key"))?;
        keygen(&d.join("id_ed25519"))?;
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys"))
            .map_err(|e| e.to_string())?;
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let port = free_port()?;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nStrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).map_err(|e| e.to_string())?;
        let proc = serve(&sshd, d, port)?;
        std::fs::write(
            d.join("known_hosts"),
            known_hosts_line(&d.join("host_key.pub"), port)?,
        )
        .map_err(|e| e.to_string())?;
        Ok(LoopbackSshd { proc, dir, port })
    }

    /// Stops the server, gives it a new host key and starts it again on
    /// the same port: what a reinstalled (or impersonated) machine looks
    /// like.  `known_hosts` keeps the old key.
    pub fn restart_with_new_host_key(&mut self) -> Result<(), String> {
        self.proc.kill();
        let d = self.dir.path();
        for f in ["host_key", "host_key.pub"] {
            std::fs::remove_file(d.join(f)).map_err(|e| format!("{f}: {e}"))?;
        }
        keygen(&d.join("host_key"))?;
        let sshd = harness::process::which("sshd").unwrap_or_else(|| "/usr/sbin/sshd".into());
        self.proc = serve(&sshd, d, self.port)?;
        Ok(())
    }

    /// A target definition that reaches this server as the current user.
    pub fn target(&self) -> SshDef {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into());
        SshDef {
            description: "OpenSSH on loopback started by the test (stands in for a lab machine)"
                .into(),
            arch: Arch::X86_64,
            host: "127.0.0.1".into(),
            port: self.port,
            user,
            key: Some(self.dir.path().join("id_ed25519")),
            password_env: None,
            known_hosts: Some(self.dir.path().join("known_hosts")),
            trust_on_first_use: false,
            sudo: false,
            timeout_s: 60,
            power_cycle: None,
            fixture: None,
            runs: Vec::new(),
            devices: Vec::new(),
            writable: None,
            allow_system_devices: Vec::new(),
        }
    }
}
