//! The whole process tree of a command ends with the command.
//!
//! [`crate::process::spawn_owned`] gives the children the harness forks
//! itself `PR_SET_PDEATHSIG`, but not the grandchildren that other programs
//! fork: `xtask` starts `cargo test`, which starts the VM suite, which boots
//! QEMU.  Killed by SIGKILL, `xtask` runs no code, and the rest would go on
//! booting machines with no parent.  So the top process of a command calls
//! [`guard`] first thing: it marks its environment with a session id that
//! every descendant inherits (a list, so nested commands keep the outer
//! marks), points `TMPDIR` at a session directory, and starts a *reaper* —
//! a copy of its own executable in a session of its own, holding the read end
//! of a pipe whose write end only the top process has.  When the top process
//! dies, by any signal or by returning, the pipe reaches end-of-file; the
//! reaper then kills every process whose environment carries the mark, until
//! none is left, and removes the session directory.  Finding a job's
//! processes by an environment cookie is how Jenkins' process-tree killer
//! does it too; unlike process groups it survives `setsid` and job control.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that carries the session marks, `:`-separated,
/// outermost first.
pub const SESSIONS_ENV: &str = "IOBENCH_SESSIONS";

/// The environment variable naming the directory that session directories
/// go in: the first command's `TMPDIR`, so nested sessions sit side by side
/// rather than inside each other (unix socket paths must stay short).
pub const TMP_ROOT_ENV: &str = "IOBENCH_TMP_ROOT";

/// The first argument that turns an executable into a reaper.
const REAPER_ARG: &str = "__iobench-reaper";

/// How long the reaper keeps killing newly forked processes before it gives
/// up and says which ones are left.
const KILL_DEADLINE: Duration = Duration::from_secs(5);

/// Makes the calling process the top of a reaped session, or runs as the
/// reaper if this is one.  Call it first thing in `main`, before any thread
/// starts (it sets environment variables).  A reaper that cannot start is a
/// warning, not an error: the command still works, it only loses the guard.
pub fn guard() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(OsStr::new(REAPER_ARG)) {
        let id = args.next().and_then(|s| s.into_string().ok());
        let dir = args.next().map(PathBuf::from);
        match (id, dir) {
            (Some(id), Some(dir)) => reap(&id, &dir),
            _ => eprintln!("iobench reaper: usage: {REAPER_ARG} ID DIR"),
        }
        std::process::exit(0);
    }
    if let Err(e) = start() {
        eprintln!("warning: no reaper for this command's processes: {e}");
    }
}

/// Marks the environment, makes the session directory and spawns the reaper.
fn start() -> std::io::Result<()> {
    let id = format!("{:x}-{:x}", std::process::id(), nanos() & 0xffff_ffff);
    let root = tmp_root();
    let dir = root.join(format!("iob-{id}"));
    std::fs::create_dir(&dir)?;
    let marks = match std::env::var(SESSIONS_ENV) {
        Ok(outer) if !outer.is_empty() => format!("{outer}:{id}"),
        _ => id.clone(),
    };
    // SAFETY: `guard` runs first in `main`, before any other thread exists,
    // so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var(SESSIONS_ENV, &marks);
        std::env::set_var(TMP_ROOT_ENV, &root);
        std::env::set_var("TMPDIR", &dir);
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    // Unmarked itself: an outer session's reaper must leave this one alone
    // to remove its directory once this command is gone.
    cmd.arg(REAPER_ARG)
        .arg(&id)
        .arg(&dir)
        .env_remove(SESSIONS_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    // SAFETY: setsid is async-signal-safe.  A session of its own keeps the
    // reaper out of the terminal's Ctrl-C and of a kill of the process group.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // The write end must stay open exactly as long as this process lives:
    // it is close-on-exec, so no other program holds it.
    let stdin = child.stdin;
    std::mem::forget(stdin);
    Ok(())
}

/// Where session directories go (see [`TMP_ROOT_ENV`]).
pub fn tmp_root() -> PathBuf {
    std::env::var_os(TMP_ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Nanoseconds of the wall clock, to make session ids unique across pid reuse.
fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The reaper: waits for the top process to go, then ends what it left.
fn reap(id: &str, dir: &Path) {
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    // Nothing is ever written: read returns 0 (end-of-file) when the top
    // process is gone, however it ended.
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    let (killed, left) = kill_marked(id, KILL_DEADLINE);
    if !killed.is_empty() {
        eprintln!(
            "iobench: ended {} process(es) the command left behind: {}",
            killed.len(),
            killed.join(", ")
        );
    }
    if !left.is_empty() {
        eprintln!(
            "iobench: could not end {} process(es): {}",
            left.len(),
            describe(&left).join(", ")
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Kills every live process marked with session `id` (other than this one)
/// until a scan finds none or `deadline` passes.  Returns what it killed, as
/// `name (pid N)`, and the pids still alive at the deadline.
pub fn kill_marked(id: &str, deadline: Duration) -> (Vec<String>, Vec<u32>) {
    let until = Instant::now() + deadline;
    let mut killed = Vec::new();
    loop {
        let victims = marked(id);
        if victims.is_empty() || Instant::now() >= until {
            return (killed, victims);
        }
        for pid in victims {
            let name = describe(&[pid]).pop().unwrap_or_default();
            // SAFETY: plain syscall on a pid; a stale pid only gives ESRCH.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0
                && !killed.contains(&name)
            {
                killed.push(name);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Live processes, other than this one, whose initial environment has
/// `env=value` with `value` among the `:`-separated marks, or equal to
/// `mark` when `env` is not a list.
pub fn with_env_mark(env: &str, mark: &str) -> Vec<u32> {
    let me = std::process::id();
    let prefix = format!("{env}=");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || !crate::process::alive(pid) {
            continue;
        }
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let hit = environ
            .split(|b| *b == 0)
            .filter_map(|kv| kv.strip_prefix(prefix.as_bytes()))
            .any(|v| v.split(|b| *b == b':').any(|m| m == mark.as_bytes()));
        if hit {
            out.push(pid);
        }
    }
    out
}

/// Live processes of session `id`.
fn marked(id: &str) -> Vec<u32> {
    with_env_mark(SESSIONS_ENV, id)
}

/// `name (pid N)` for each pid, from `/proc/N/comm`.
pub fn describe(pids: &[u32]) -> Vec<String> {
    pids.iter()
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{} (pid {pid})", comm.trim())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child started with a mark is found by it, and killed.
    #[test]
    fn finds_and_kills_marked_processes() {
        let mark = format!("t{}", nanos());
        let mut child = Command::new("sleep")
            .arg("30")
            .env(SESSIONS_ENV, format!("outer:{mark}"))
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !marked(&mark).contains(&pid) {
            assert!(Instant::now() < deadline, "the marked child was never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(marked("outer").contains(&pid), "an outer mark matches too");
        assert!(!marked("t").contains(&pid), "a mark is matched whole");
        // Reap it from another thread so it does not linger as a zombie.
        let waiter = std::thread::spawn(move || child.wait());
        let (killed, left) = kill_marked(&mark, Duration::from_secs(5));
        assert!(left.is_empty(), "left: {left:?}");
        assert_eq!(killed, vec![format!("sleep (pid {pid})")]);
        assert!(!waiter.join().unwrap().unwrap().success());
    }
}
