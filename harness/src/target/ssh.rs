//! SSH targets: verified host key, key/agent/password-from-env auth, the
//! agent copied by SFTP into a private directory, run with `--stdio`.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use ssh2::{CheckResult, HashType, KnownHostFileKind, Session as SshSession};

use iobench_proto::policy::Policy;

use super::{Session, SshDef, TargetError, TcpStream, ToSocketAddrs, io, shell_quote};
use crate::agent::Agent;

fn err(target: &str, what: &str) -> impl FnOnce(ssh2::Error) -> TargetError {
    let (target, what) = (target.to_string(), what.to_string());
    move |e| TargetError::Ssh {
        target,
        what,
        reason: e.to_string(),
    }
}

fn fingerprint(s: &SshSession) -> String {
    s.host_key_hash(HashType::Sha256)
        .map(|h| h.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_else(|| "?".into())
}

/// Connects, verifies the host key and authenticates.
pub(super) fn connect(name: &str, d: &SshDef) -> Result<SshSession, TargetError> {
    let addr = (d.host.as_str(), d.port)
        .to_socket_addrs()
        .map_err(io(format!("resolving {}", d.host)))?
        .next()
        .ok_or_else(|| TargetError::Ssh {
            target: name.into(),
            what: "resolve".into(),
            reason: format!("{} has no address", d.host),
        })?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(io(format!("connecting to {}:{}", d.host, d.port)))?;
    let mut s = SshSession::new().map_err(err(name, "session"))?;
    s.set_tcp_stream(tcp);
    s.set_timeout((d.timeout_s * 1000) as u32);
    s.handshake().map_err(err(name, "handshake"))?;
    verify_host_key(name, d, &s)?;
    authenticate(name, d, &s)?;
    Ok(s)
}

fn verify_host_key(name: &str, d: &SshDef, s: &SshSession) -> Result<(), TargetError> {
    let path = match &d.known_hosts {
        Some(p) => p.clone(),
        None => std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".ssh/known_hosts"))
            .unwrap_or_else(|| "/root/.ssh/known_hosts".into()),
    };
    let (key, key_type) = s.host_key().ok_or_else(|| TargetError::Ssh {
        target: name.into(),
        what: "host key".into(),
        reason: "the server offered none".into(),
    })?;
    let mut kh = s.known_hosts().map_err(err(name, "known_hosts"))?;
    if path.is_file() {
        kh.read_file(&path, KnownHostFileKind::OpenSSH)
            .map_err(err(name, &format!("reading {}", path.display())))?;
    }
    let shown = path.display().to_string();
    match kh.check_port(&d.host, d.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(TargetError::HostKeyMismatch {
            host: d.host.clone(),
            port: d.port,
            fingerprint: fingerprint(s),
            known_hosts: shown,
        }),
        CheckResult::NotFound if d.trust_on_first_use => {
            let host = if d.port == 22 {
                d.host.clone()
            } else {
                format!("[{}]:{}", d.host, d.port)
            };
            kh.add(
                &host,
                key,
                "added by iobench (trust_on_first_use)",
                key_type.into(),
            )
            .map_err(err(name, "recording the host key"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
            }
            kh.write_file(&path, KnownHostFileKind::OpenSSH)
                .map_err(err(name, &format!("writing {}", path.display())))
        }
        CheckResult::NotFound => Err(TargetError::UnknownHostKey {
            host: d.host.clone(),
            port: d.port,
            fingerprint: fingerprint(s),
            known_hosts: shown,
        }),
        CheckResult::Failure => Err(TargetError::Ssh {
            target: name.into(),
            what: "host key check".into(),
            reason: "libssh2 could not check it".into(),
        }),
    }
}

fn authenticate(name: &str, d: &SshDef, s: &SshSession) -> Result<(), TargetError> {
    if let Some(key) = &d.key {
        s.userauth_pubkey_file(&d.user, None, key, None)
            .map_err(err(name, &format!("key {}", key.display())))?;
    } else if let Some(var) = &d.password_env {
        let pw = std::env::var(var).map_err(|_| TargetError::Ssh {
            target: name.into(),
            what: "password".into(),
            reason: format!("environment variable {var} is not set"),
        })?;
        s.userauth_password(&d.user, &pw)
            .map_err(err(name, "password"))?;
    } else {
        s.userauth_agent(&d.user).map_err(err(name, "ssh-agent"))?;
    }
    if s.authenticated() {
        Ok(())
    } else {
        Err(TargetError::Ssh {
            target: name.into(),
            what: "auth".into(),
            reason: "not authenticated".into(),
        })
    }
}

/// Runs a command (already quoted) to completion; returns stdout, fails on a non-zero status.
pub(super) fn exec(name: &str, s: &SshSession, command: &str) -> Result<String, TargetError> {
    let mut ch = s.channel_session().map_err(err(name, "channel"))?;
    ch.exec(command).map_err(err(name, command))?;
    let mut out = String::new();
    ch.read_to_string(&mut out)
        .map_err(io(format!("reading the output of {command}")))?;
    let mut errs = String::new();
    let _ = ch.stderr().read_to_string(&mut errs);
    ch.wait_close().map_err(err(name, command))?;
    match ch.exit_status().map_err(err(name, command))? {
        0 => Ok(out),
        code => Err(TargetError::Ssh {
            target: name.into(),
            what: command.into(),
            reason: format!("exit status {code}: {}", errs.trim()),
        }),
    }
}

pub(super) fn open(
    name: &str,
    d: &SshDef,
    log_dir: &Path,
    agent_binary: Option<&Path>,
    mut policy: Policy,
) -> Result<Session, TargetError> {
    let binary = agent_binary.ok_or_else(|| TargetError::Ssh {
        target: name.into(),
        what: "deploy".into(),
        reason: format!("no agent binary for {} was given", d.arch),
    })?;
    let s = connect(name, d)?;
    let dir = exec(name, &s, "mktemp -d /tmp/iobench-agent.XXXXXXXX")?
        .trim()
        .to_string();
    if !dir.starts_with("/tmp/iobench-agent.") {
        return Err(TargetError::Ssh {
            target: name.into(),
            what: "mktemp".into(),
            reason: format!("unexpected directory {dir:?}"),
        });
    }
    let remote = format!("{dir}/guest-agent");
    let bytes = std::fs::read(binary).map_err(io(format!("reading {}", binary.display())))?;
    let sftp = s.sftp().map_err(err(name, "sftp"))?;
    {
        let mut f = sftp
            .create(Path::new(&remote))
            .map_err(err(name, &format!("creating {remote}")))?;
        f.write_all(&bytes)
            .map_err(io(format!("uploading {remote}")))?;
    }
    let stat = ssh2::FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: Some(0o700),
        atime: None,
        mtime: None,
    };
    sftp.setstat(Path::new(&remote), stat)
        .map_err(err(name, "chmod"))?;
    drop(sftp);
    let log = std::fs::File::create(log_dir.join("ssh.log")).map_err(io("creating ssh.log"))?;
    let mut ch = s.channel_session().map_err(err(name, "channel"))?;
    let sudo = if d.sudo { "sudo -n " } else { "" };
    let command = format!(
        "{sudo}{} --stdio 2>>{}",
        shell_quote(&remote),
        shell_quote(&format!("{dir}/agent.stderr"))
    );
    ch.exec(&command).map_err(err(name, &command))?;
    let _ = writeln!(&log, "{command}");
    let reader = BufReader::new(ch.stream(0));
    // The agent protects the NIC the host reaches it through.
    policy.link_addr = (d.host.as_str(), d.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip().to_string());
    let agent =
        Agent::handshake_under(reader, ch, Some(policy)).map_err(|source| TargetError::Agent {
            target: name.into(),
            source,
        })?;
    let (cleanup_name, cleanup_dir) = (name.to_string(), dir.clone());
    let cleanup = move || -> Result<(), TargetError> {
        let stderr = exec(
            &cleanup_name,
            &s,
            &format!(
                "cat {}",
                shell_quote(&format!("{cleanup_dir}/agent.stderr"))
            ),
        )
        .unwrap_or_default();
        let _ = writeln!(&log, "agent stderr:\n{stderr}");
        exec(
            &cleanup_name,
            &s,
            &format!("rm -rf -- {}", shell_quote(&cleanup_dir)),
        )
        .map(|_| ())
    };
    Ok(Session {
        name: name.into(),
        remote_dir: Some(dir),
        agent: Some(agent),
        log_dir: log_dir.to_owned(),
        console: None,
        cleanup: Some(Box::new(cleanup)),
    })
}
