//! Upstream kernel selftests in the guest (`selftest.run`): a program of the
//! initramfs's `/selftests/` directory (the kselftest-harness binaries
//! `cargo xtask` built from the kernel's own tree) run with a deadline,
//! stdout and stderr interleaved in one pipe as the test wrote them.  The
//! host turns the output into one trial per test case; the agent only runs
//! the program and reports how it ended.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::Args;
use crate::ctx::Ctx;
use crate::outcome::{OpError, OpResult};

/// Where the initramfs puts the selftest programs.
pub const DIR: &str = "/selftests";

/// Output kept per run: the whole of a normal run; a runaway program's
/// start and end (the protocol's lines are at most 1 MiB).
const KEEP: usize = 768 * 1024;

/// `selftest.run`: runs `/selftests/<program> <args…> [<device address>]`
/// in its own process group, killed at `timeout` seconds; yields
/// `{exit, signal, timed_out, seconds, output, truncated}`.
pub fn run(_ctx: &mut Ctx, args: &Args) -> OpResult {
    let program = args.str("program")?;
    if program.is_empty() || program.contains('/') || program.starts_with('.') {
        return Err(OpError::Error(format!(
            "program {program:?} must be a file name under {DIR}"
        )));
    }
    let path = std::path::Path::new(DIR).join(program);
    if !path.is_file() {
        return Err(OpError::Error(format!(
            "{} is not in this initramfs (built without the selftests?)",
            path.display()
        )));
    }
    let mut argv: Vec<String> = match args.opt("args") {
        Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
        _ => Vec::new(),
    };
    if args.opt("device").is_some() {
        let d = crate::pci::find(args.str("device")?, 0).map_err(OpError::Error)?;
        argv.push(d.bdf);
    }
    let timeout = Duration::from_secs(args.u64_or("timeout", 600)?);
    let (read, write) = pipe()?;
    let write2 = write.try_clone().map_err(|e| OpError::Error(e.to_string()))?;
    let started = Instant::now();
    let mut child = Command::new(&path)
        .args(&argv)
        .current_dir(DIR)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write2))
        .process_group(0)
        .spawn()
        .map_err(|e| OpError::Error(format!("starting {}: {e}", path.display())))?;
    let pgid = child.id() as i32;
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::from(read);
        let mut kept = Vec::new();
        let mut tail = std::collections::VecDeque::new();
        let mut dropped = 0usize;
        let mut buf = [0u8; 16384];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if kept.len() < KEEP / 2 {
                    kept.push(b);
                } else {
                    tail.push_back(b);
                    if tail.len() > KEEP / 2 {
                        tail.pop_front();
                        dropped += 1;
                    }
                }
            }
        }
        (kept, Vec::from(tail), dropped)
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() >= timeout => {
                timed_out = true;
                // SAFETY: kill(2) on our child's own process group.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                break child.wait().map_err(|e| OpError::Error(e.to_string()))?;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(OpError::Error(format!("waiting for {program}: {e}"))),
        }
    };
    // Whatever the program forked and left behind goes too (it holds the pipe).
    // SAFETY: as above; ESRCH when the group is already gone.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let (kept, tail, dropped) = reader
        .join()
        .map_err(|_| OpError::Error("output reader panicked".into()))?;
    let mut output = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        output.push_str(&format!("\n[... {dropped} bytes of output dropped ...]\n"));
    }
    output.push_str(&String::from_utf8_lossy(&tail));
    Ok(json!({
        "exit": status.code(),
        "signal": status.signal(),
        "timed_out": timed_out,
        "seconds": started.elapsed().as_secs_f64(),
        "output": output,
        "truncated": dropped > 0,
    }))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), OpError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success; each is owned once.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(OpError::Errno(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    // SAFETY: fresh descriptors from pipe2, not owned elsewhere.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
