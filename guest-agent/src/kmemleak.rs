//! Leak checks on a kernel with kmemleak (iobench's debug kernels,
//! `--debug`): after each scenario the agent has the kernel scan for
//! unreferenced objects and hands the new ones, with their backtraces, to
//! the host as kernel log lines, where `harness::kernel_log` fails the
//! scenario on them like on any other kernel report.
//!
//! The debug kernels have no scan thread (`DEBUG_KMEMLEAK_AUTO_SCAN` off):
//! every scan is this module's `echo scan > /sys/kernel/debug/kmemleak`.
//! The scan prints `kmemleak: N new suspected memory leaks` to the kernel
//! log; the objects themselves are read from the file, and `echo clear`
//! then greys them, so each scenario sees only its own leaks.  kmemleak
//! never reports an object younger than five seconds at the scan's start
//! (`MSECS_MIN_AGE`), so a scan waits until [`MIN_AGE`] has passed since the
//! scenario ended.  What boot leaves unreferenced (false positives right
//! after boot) is scanned for and cleared once ([`prime`]), when the agent
//! starts and before it connects, so it counts for no scenario and no
//! request waits for it (the debug kernels' boot to agent-ready includes it).
//!
//! kmemleak also scans every live task's whole kernel stack, where a
//! scenario's ioctls leave stale pointers to what they allocated, so on such
//! a kernel `session` runs each scenario in a thread that ends with it.
//!
//! Nothing here imports the rest of the crate.

use std::io::Write as _;
use std::time::{Duration, Instant};

/// kmemleak's control file.
pub const PATH: &str = "/sys/kernel/debug/kmemleak";

/// kmemleak's minimum object age (5 s), and a margin.
pub const MIN_AGE: Duration = Duration::from_millis(5500);

/// The most report lines handed on per scan.
const MAX_LINES: usize = 400;

/// The leak checker of one session, when the kernel has kmemleak.
pub struct Kmemleak {
    /// When the last scenario ended, if no scan followed it yet.
    ran: Option<Instant>,
}

impl Kmemleak {
    /// A checker, if the kernel has kmemleak (and debugfs is mounted).
    pub fn detect() -> Option<Kmemleak> {
        std::path::Path::new(PATH)
            .exists()
            .then_some(Kmemleak { ran: None })
    }

    /// A scenario just ended: the next [`Kmemleak::before_dmesg`] scans.
    pub fn ran(&mut self) {
        self.ran = Some(Instant::now());
    }

    /// Called before a kernel log delta is read: after a scenario, scans
    /// and returns the new unreferenced objects as log lines (`[uptime]
    /// unreferenced object …` and its indented details), or a line saying
    /// why it could not.
    pub fn before_dmesg(&mut self) -> Vec<String> {
        let Some(ended) = self.ran.take() else {
            return Vec::new();
        };
        if let Some(wait) = MIN_AGE.checked_sub(ended.elapsed()) {
            std::thread::sleep(wait);
        }
        match scan().and_then(|_| read()).and_then(|r| clear().map(|_| r)) {
            Ok(report) => lines(&report),
            Err(e) => vec![stamp(&format!("iobench: kmemleak scan failed: {e}"))],
        }
    }
}

/// Scans for and clears what boot left unreferenced, once everything boot
/// allocated is old enough to be reported; an error says why it could not.
pub fn prime() -> std::io::Result<()> {
    std::thread::sleep(MIN_AGE);
    scan()?;
    clear()
}

fn write(cmd: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(PATH)?
        .write_all(cmd.as_bytes())
}

fn scan() -> std::io::Result<()> {
    write("scan")
}

fn clear() -> std::io::Result<()> {
    write("clear")
}

fn read() -> std::io::Result<String> {
    std::fs::read_to_string(PATH)
}

/// The report's lines, stamped like `/dev/kmsg`'s, at most [`MAX_LINES`].
pub fn lines(report: &str) -> Vec<String> {
    let all: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out: Vec<String> = all.iter().take(MAX_LINES).map(|l| stamp(l)).collect();
    if all.len() > MAX_LINES {
        out.push(stamp(&format!(
            "iobench: kmemleak report cut after {MAX_LINES} of {} lines",
            all.len()
        )));
    }
    out
}

/// `[seconds.micros] text`, on the kernel log's clock (monotonic since boot).
fn stamp(text: &str) -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    format!("[{:5}.{:06}] {text}", ts.tv_sec, ts.tv_nsec / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_keep_their_indentation_and_are_bounded() {
        let r = "unreferenced object 0xc000000004a1b2c0 (size 65536):\n  comm \"guest-agent\", pid 95, jiffies 4294937296\n  backtrace (crc 5b8a3f12):\n    __vmalloc_node_range_noprof+0x1a0/0x850\n\n";
        let l = lines(r);
        assert_eq!(l.len(), 4);
        let (_, text) = l[0].split_once("] ").unwrap();
        assert_eq!(text, "unreferenced object 0xc000000004a1b2c0 (size 65536):");
        assert!(l[3].ends_with("]     __vmalloc_node_range_noprof+0x1a0/0x850"));
        assert!(l[0].starts_with('['));
        let big = "  x\n".repeat(MAX_LINES + 5);
        let l = lines(&big);
        assert_eq!(l.len(), MAX_LINES + 1);
        assert!(l[MAX_LINES].contains("cut after 400 of 405 lines"));
    }
}
