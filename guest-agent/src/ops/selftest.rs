//! Upstream kernel selftests in the guest (`selftest.run`): a program of the
//! initramfs's `/selftests/` directory (the kselftest-harness binaries
//! `cargo xtask` built from the kernel's own tree) run with a deadline,
//! stdout and stderr interleaved in one pipe as the test wrote them.  The
//! host turns the output into one trial per test case; the agent only runs
//! the program and reports how it ended.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::Args;
use crate::ctx::Ctx;
use crate::outcome::{OpError, OpResult};

mod tasks;

/// Where the initramfs puts the selftest programs.
pub const DIR: &str = "/selftests";

/// Output kept per run: the whole of a normal run; a runaway program's
/// start and end (the protocol's lines are at most 1 MiB).
const KEEP: usize = 768 * 1024;

/// `selftest.run`: runs `/selftests/<program> <args…> [<device address>]`
/// in its own process group, killed at `timeout` seconds; yields
/// `{exit, signal, timed_out, seconds, output, truncated, orphaned}`
/// (`orphaned`: something it started still held its output open, e.g. a
/// test case stuck in the kernel).  A run that times out or leaves orphans
/// ends its output with where each of its tasks was in the kernel
/// ([`tasks`]), as kselftest diagnostic lines.
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
    let write2 = write
        .try_clone()
        .map_err(|e| OpError::Error(e.to_string()))?;
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
    let out = Arc::new(Mutex::new(Output::default()));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(read);
            let mut buf = [0u8; 16384];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(&buf[..n]);
            }
            let _ = done_tx.send(());
        });
    }
    let mut timed_out = false;
    let mut stuck = String::new();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() >= timeout => {
                timed_out = true;
                stuck.push_str(&tasks::snapshot(pgid, "at the deadline"));
                // SAFETY: kill(2) on our child's own process group.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                break child.wait().map_err(|e| OpError::Error(e.to_string()))?;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(OpError::Error(format!("waiting for {program}: {e}"))),
        }
    };
    // Whatever the program forked and left in its group goes too.
    // SAFETY: as above; ESRCH when the group is already gone.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    // The kselftest harness runs each case in a process group of its own:
    // a case stuck in the kernel (D state) outlives the program and keeps
    // the pipe open.  Its output so far is what there is.
    let orphaned = done_rx.recv_timeout(Duration::from_secs(2)).is_err();
    if orphaned {
        stuck.push_str(&tasks::snapshot_all(&path, "after SIGKILL"));
    }
    let Output {
        kept,
        tail,
        dropped,
    } = std::mem::take(&mut *out.lock().unwrap_or_else(|p| p.into_inner()));
    let mut output = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        output.push_str(&format!("\n[... {dropped} bytes of output dropped ...]\n"));
    }
    output.push_str(&String::from_utf8_lossy(&Vec::from(tail)));
    output.push_str(&stuck);
    Ok(json!({
        "exit": status.code(),
        "signal": status.signal(),
        "timed_out": timed_out,
        "seconds": started.elapsed().as_secs_f64(),
        "output": output,
        "truncated": dropped > 0,
        "orphaned": orphaned,
    }))
}

/// Output as it comes: the start, and a window of the end once the start is full.
#[derive(Default)]
struct Output {
    kept: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: usize,
}

impl Output {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.kept.len() < KEEP / 2 {
                self.kept.push(b);
            } else {
                self.tail.push_back(b);
                if self.tail.len() > KEEP / 2 {
                    self.tail.pop_front();
                    self.dropped += 1;
                }
            }
        }
    }
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
