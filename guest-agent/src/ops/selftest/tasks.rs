//! Where a selftest's tasks are in the kernel: for a run that hit its
//! deadline or left a task behind, each task's state, wait channel and
//! kernel stack (`/proc/<pid>/{stat,wchan,stack}`), written as kselftest
//! diagnostic lines (`# …`) so they land in the output of the case that was
//! running.  A task that survives SIGKILL is stuck in the kernel, and its
//! stack names the function it waits in.

use std::collections::BTreeMap;
use std::path::Path;

/// One task as `/proc` shows it.
struct Task {
    pid: i32,
    ppid: i32,
    comm: String,
    state: char,
}

fn tasks() -> Vec<Task> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) S ppid …": comm may hold spaces and parentheses.
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let comm = stat[open + 1..close].to_string();
            let mut rest = stat[close + 1..].split_whitespace();
            let state = rest.next()?.chars().next()?;
            let ppid = rest.next()?.parse().ok()?;
            Some(Task {
                pid,
                ppid,
                comm,
                state,
            })
        })
        .collect()
}

fn describe(t: &Task) -> String {
    let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", t.pid)).unwrap_or_default();
    let mut s = format!(
        "# iobench: pid {} ({}) state {} wchan {}\n",
        t.pid,
        t.comm,
        t.state,
        if wchan.is_empty() || wchan == "0" {
            "-"
        } else {
            wchan.trim()
        }
    );
    match std::fs::read_to_string(format!("/proc/{}/stack", t.pid)) {
        Ok(stack) if !stack.trim().is_empty() => {
            for line in stack.lines() {
                s.push_str(&format!("#   {line}\n"));
            }
        }
        Ok(_) => s.push_str("#   (no kernel stack: running in user space)\n"),
        Err(e) => s.push_str(&format!("#   (no /proc/{}/stack: {e})\n", t.pid)),
    }
    s
}

fn report(when: &str, found: &[&Task]) -> String {
    if found.is_empty() {
        return String::new();
    }
    let mut s = format!("# iobench: {} task(s) {when}:\n", found.len());
    for t in found {
        s.push_str(&describe(t));
    }
    s
}

/// The program's process (`root`) and everything it started.
pub fn snapshot(root: i32, when: &str) -> String {
    let all = tasks();
    let parent: BTreeMap<i32, i32> = all.iter().map(|t| (t.pid, t.ppid)).collect();
    let descends = |mut pid: i32| {
        for _ in 0..64 {
            if pid == root {
                return true;
            }
            match parent.get(&pid) {
                Some(&p) if p > 0 => pid = p,
                _ => return false,
            }
        }
        false
    };
    report(
        when,
        &all.iter().filter(|t| descends(t.pid)).collect::<Vec<_>>(),
    )
}

/// Every task still running `program` (orphans are re-parented, so their
/// ancestry no longer leads to the program).
pub fn snapshot_all(program: &Path, when: &str) -> String {
    let all = tasks();
    let found: Vec<&Task> = all
        .iter()
        .filter(|t| {
            std::fs::read(format!("/proc/{}/cmdline", t.pid)).is_ok_and(|c| {
                c.split(|&b| b == 0).next() == Some(program.as_os_str().as_encoded_bytes())
            })
        })
        .collect();
    report(when, &found)
}
