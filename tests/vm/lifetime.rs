//! Process-lifetime trials: `xtask` killed (SIGKILL or SIGTERM) during a
//! build, during a boot, in the middle of a scenario and in the middle of the
//! suite takes its whole process tree with it.
//!
//! Each trial starts the real `xtask` binary (next to this suite in cargo's
//! target dir) with an environment mark of its own and a private `TMPDIR`,
//! waits for the moment (a `rustc`, a QEMU, a step printed, the suite and its
//! QEMU), sends the signal to `xtask` alone, and then requires that within
//! one second no process carrying the mark is alive and the private `TMPDIR`
//! is empty.  What is left is named in the failure and then killed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::manifest::Manifest;
use harness::reaper::{TMP_ROOT_ENV, describe, tmp_root, with_env_mark};
use libtest_mimic::Failed;

/// The environment variable each trial marks its `xtask` with.
const MARK_ENV: &str = "IOBENCH_LIFETIME_TRIAL";

/// How long after the signal the tree must be gone.
const GRACE: Duration = Duration::from_secs(1);

/// When to send the signal.
enum Moment<'a> {
    /// A marked process with this command name (`/proc/PID/comm`) runs.
    Process(&'a str),
    /// All of these marked processes run (by comm prefix).
    Processes(&'a [&'a str]),
    /// `xtask`'s standard output contains this text.
    Output(&'a str),
}

/// Marked live processes whose comm starts with `prefix`.
fn running(mark: &str, prefix: &str) -> Vec<u32> {
    with_env_mark(MARK_ENV, mark)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .collect()
}

/// Runs `xtask ARGS` (in the repo, with `envs`), sends the trial's signal
/// (SIGTERM for `*sigterm*` trials, else SIGKILL) at `moment` and checks
/// that nothing it started is left one second later.
fn kill_at(
    m: &Manifest,
    trial: &str,
    args: &[&str],
    envs: &[(&str, &Path)],
    moment: Moment,
) -> Result<(), Failed> {
    let signal = if trial.contains("sigterm") {
        libc::SIGTERM
    } else {
        libc::SIGKILL
    };
    let mark = format!("{}-{}", std::process::id(), trial.replace("::", "-"));
    // Short paths: the VM's sockets live below this TMPDIR.
    let work = tempfile::Builder::new()
        .prefix("iobench-kill-")
        .tempdir_in(tmp_root())?;
    let tmp = work.path().to_path_buf();
    let log = m.log_root.join(trial.replace("::", "/"));
    std::fs::create_dir_all(&log)?;
    let out_path = log.join("xtask.out");
    let repo = m.scenarios_dir.parent().ok_or("no repo above scenarios/")?;
    let mut cmd = Command::new(crate::support::xtask_binary()?);
    cmd.args(args)
        .current_dir(repo)
        .env(MARK_ENV, &mark)
        .env("TMPDIR", &tmp)
        .env_remove(TMP_ROOT_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log.join("xtask.err"))?);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut xtask = cmd.spawn()?;
    let pid = xtask.id();
    let output = collect_stdout(&mut xtask, out_path.clone());
    let reached = wait_for(
        &mark,
        &moment,
        &output,
        &mut xtask,
        Duration::from_secs(180),
    );
    // SAFETY: a plain kill(2) of our own child, which is not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
    let _ = xtask.wait();
    let killed_at = Instant::now();
    if let Err(e) = reached {
        cleanup(&mark);
        return Err(format!("{e}; xtask's output: {}", out_path.display()).into());
    }
    // Everything marked must go within the grace period, the reaper too.
    let left = loop {
        let left = with_env_mark(MARK_ENV, &mark);
        let files = std::fs::read_dir(&tmp)?.count();
        if left.is_empty() && files == 0 {
            break None;
        }
        if killed_at.elapsed() > GRACE {
            break Some((describe(&left), files));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some((procs, files)) = left {
        cleanup(&mark);
        return Err(format!(
            "{:?} after killing xtask: still alive: {procs:?}; {files} entries left in its TMPDIR {}",
            GRACE,
            tmp.display()
        )
        .into());
    }
    eprintln!(
        "{} to xtask: its tree ended within {:.0?}",
        if signal == libc::SIGKILL {
            "SIGKILL"
        } else {
            "SIGTERM"
        },
        killed_at.elapsed()
    );
    Ok(())
}

/// Copies `xtask`'s stdout to `path` on a thread and keeps it for matching.
fn collect_stdout(xtask: &mut Child, path: PathBuf) -> std::sync::Arc<std::sync::Mutex<String>> {
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = xtask.stdout.take().expect("stdout is piped");
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut t = sink.lock().unwrap_or_else(|p| p.into_inner());
            t.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = std::fs::write(&path, t.as_bytes());
        }
    });
    text
}

/// Waits until `moment`, or fails if `xtask` exits first or time runs out.
fn wait_for(
    mark: &str,
    moment: &Moment,
    output: &std::sync::Mutex<String>,
    xtask: &mut Child,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let reached = match moment {
            Moment::Process(comm) => !running(mark, comm).is_empty(),
            Moment::Processes(comms) => comms.iter().all(|c| !running(mark, c).is_empty()),
            Moment::Output(text) => output
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(text),
        };
        if reached {
            return Ok(());
        }
        if let Ok(Some(status)) = xtask.try_wait() {
            return Err(format!("xtask ended ({status}) before the moment came"));
        }
        if Instant::now() > deadline {
            return Err(format!("the moment did not come within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills whatever a failed trial left, so the next trials start clean.
fn cleanup(mark: &str) {
    for pid in with_env_mark(MARK_ENV, mark) {
        // SAFETY: a plain kill(2); a stale pid only gives ESRCH.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// A scratch directory of the trial's own (removed when dropped).
fn scratch(what: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("iobench-kill-{what}-"))
        .tempdir()
}

/// `xtask agent` compiling the agent from scratch (a fresh cargo target dir).
pub fn during_build(m: &Manifest, _machine: &str, trial: &str) -> Result<(), Failed> {
    let target = scratch("build")?;
    kill_at(
        m,
        trial,
        &["agent", "--arch", "x86_64"],
        &[("CARGO_TARGET_DIR", target.path())],
        Moment::Process("rustc"),
    )
}

/// `xtask run` while QEMU boots the machine.
pub fn during_boot(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    kill_at(
        m,
        trial,
        &["run", "--machine", machine],
        &[],
        Moment::Process("qemu-system-"),
    )
}

/// `xtask run --scenario` after the first step, while the guest sleeps.
pub fn mid_scenario(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let dir = scratch("scenario")?;
    let file = dir.path().join("sleeps.toml");
    std::fs::write(
        &file,
        format!(
            "description = \"allocates, then sleeps for a minute\"\nmachines = [\"{machine}\"]\n\n\
             [[step]]\nop = \"mem.alloc\"\nsize = \"4K\"\nbind = \"b\"\n\n\
             [[step]]\nop = \"debug.sleep\"\nms = 60000\n"
        ),
    )?;
    let file = file.display().to_string();
    kill_at(
        m,
        trial,
        &["run", "--machine", machine, "--scenario", &file],
        &[],
        Moment::Output("mem.alloc"),
    )
}

/// `xtask test` once cargo runs the suite and the suite has booted a machine
/// (the case a user hit: cargo and the suite went on without xtask).
pub fn mid_suite(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let out = scratch("suite")?;
    kill_at(
        m,
        trial,
        &["test", "--machine", machine, &format!("{machine}::")],
        &[("IOBENCH_OUT", out.path())],
        Moment::Processes(&["cargo", "vm-", "qemu-system-"]),
    )
}
