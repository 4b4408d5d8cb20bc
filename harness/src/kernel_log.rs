//! What the kernel said about itself during a run: the reports its own
//! self-checks print when something is wrong — a `WARNING:` (WARN_ON), a
//! `BUG:` or `kernel BUG at`, an Oops, a panic, a lockdep splat ("WARNING:
//! possible circular locking dependency detected", "BUG: sleeping function
//! called from invalid context", …), a KASAN ("BUG: KASAN: …") or UBSAN
//! ("UBSAN: …") report, a kmemleak report ("unreferenced object …"), an RCU
//! stall ("rcu: INFO: … stall", "detected stalls") or a hung task.
//!
//! [`reports`] finds them in kernel log lines, with or without printk
//! timestamps (`[    5.123456] …`), with or without a caller id
//! (`[  T95] …`, `CONFIG_PRINTK_CALLER`; lines of other callers interleaved
//! into a report are left out of it), in x86 and ppc64 formats.  A report
//! runs from its first line (with the `[ cut here ]` or `=====` line just
//! before it) to its end marker (`---[ end trace …`, `---[ end Kernel panic
//! …`, KASAN's closing `=====`), or else to the end of its call trace, or
//! else over its indented detail lines; never more than [`MAX_LINES`].
//!
//! [`check`] is the verdict a scenario run gets from its kernel log: any
//! report fails it, unless the scenario declares it expected
//! (`expect_kernel_warning = "text"`, a substring of the report), and then
//! the expected report must be there.

use std::fmt::Write as _;

/// The most lines a report takes.
pub const MAX_LINES: usize = 100;

/// What kind of self-check report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `WARNING: CPU: 0 PID: 95 at file:line func` (WARN_ON), or another `WARNING:` line.
    Warning,
    /// `BUG: …` or `kernel BUG at …` (followed by its Oops, if any).
    Bug,
    /// `Oops: …` on its own.
    Oops,
    /// `Kernel panic - not syncing: …`.
    Panic,
    /// A lockdep (or might_sleep) splat.
    Lockdep,
    /// `BUG: KASAN: …`.
    Kasan,
    /// `UBSAN: …`.
    Ubsan,
    /// `unreferenced object …`, or kmemleak's count of new suspected leaks.
    Kmemleak,
    /// An RCU CPU stall warning.
    RcuStall,
    /// `INFO: task … blocked for more than … seconds`.
    HungTask,
}

impl Kind {
    /// How the kind reads in a sentence ("the kernel reported a …").
    pub fn name(self) -> &'static str {
        match self {
            Kind::Warning => "WARNING",
            Kind::Bug => "BUG",
            Kind::Oops => "Oops",
            Kind::Panic => "panic",
            Kind::Lockdep => "lockdep splat",
            Kind::Kasan => "KASAN report",
            Kind::Ubsan => "UBSAN report",
            Kind::Kmemleak => "kmemleak report",
            Kind::RcuStall => "RCU stall",
            Kind::HungTask => "hung task report",
        }
    }
}

/// One self-check report, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What kind.
    pub kind: Kind,
    /// Its lines as they were logged (timestamps and all).
    pub lines: Vec<String>,
    /// Which of `lines` is its first line proper (after a `[ cut here ]` line).
    head: usize,
}

impl Report {
    /// The first line proper, without timestamp: `WARNING: CPU: 0 PID: 95 at …`.
    pub fn title(&self) -> &str {
        self.lines
            .get(self.head)
            .map_or("", |l| parse(l).msg.trim())
    }

    /// The report in a phrase: `WARNING: CPU: 0 PID: 95 at …`, `a lockdep splat: WARNING: possible …`.
    pub fn describe(&self) -> String {
        let (kind, title) = (self.kind.name(), self.title());
        if title.starts_with(kind) {
            title.to_string()
        } else {
            format!("a {kind}: {title}")
        }
    }

    /// True if one of its lines contains `text`.
    pub fn contains(&self, text: &str) -> bool {
        self.lines.iter().any(|l| l.contains(text))
    }
}

/// One log line taken apart.
struct Line<'a> {
    /// `T95`, `C0` from `[  T95]` or a /dev/kmsg `caller=` field.
    caller: Option<&'a str>,
    /// The message, leading blanks kept (x86 call trace lines are indented).
    msg: &'a str,
}

/// Takes `[    5.123456][  T95] msg`, `<4>[ 5.1] msg`, `4,123,5123456,-,caller=T95;msg` or `msg` apart.
fn parse(raw: &str) -> Line<'_> {
    let mut s = raw.trim_end_matches(['\r', '\n']);
    let mut caller = None;
    // A raw /dev/kmsg record: `prio,seq,usec,flags[,caller=T1];msg`.
    if let Some((hdr, msg)) = s.split_once(';') {
        let mut fields = hdr.split(',');
        let numeric = |f: Option<&str>| {
            f.is_some_and(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        };
        if numeric(fields.next()) && numeric(fields.next()) && numeric(fields.next()) {
            caller = hdr.split(',').find_map(|f| f.strip_prefix("caller="));
            return Line { caller, msg };
        }
    }
    // A syslog level: `<4>`.
    if let Some(rest) = s.strip_prefix('<')
        && let Some((lvl, rest)) = rest.split_once('>')
        && !lvl.is_empty()
        && lvl.bytes().all(|b| b.is_ascii_digit())
    {
        s = rest;
    }
    // The timestamp: `[    5.123456]`.
    if let Some(rest) = s.strip_prefix('[')
        && let Some((ts, rest)) = rest.split_once(']')
        && ts.trim_start().contains('.')
        && ts
            .trim_start()
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
    {
        s = rest;
        // The caller: `[  T95]`, `[    C0]`.
        if let Some(rest) = s.strip_prefix('[')
            && let Some((c, rest)) = rest.split_once(']')
        {
            let c = c.trim_start();
            if c.len() > 1
                && c.starts_with(['T', 'C'])
                && c[1..].bytes().all(|b| b.is_ascii_digit())
            {
                caller = Some(c);
                s = rest;
            }
        }
        s = s.strip_prefix(' ').unwrap_or(s);
    }
    Line { caller, msg: s }
}

/// Lockdep's (and might_sleep's) headlines.
const LOCKDEP: &[&str] = &[
    "WARNING: possible circular locking dependency",
    "WARNING: possible recursive locking",
    "WARNING: inconsistent lock state",
    "WARNING: possible irq lock inversion dependency",
    "WARNING: bad unlock balance",
    "WARNING: bad contention detected",
    "WARNING: suspicious RCU usage",
    "WARNING: held lock freed",
    "WARNING: lock held when returning to user space",
    "WARNING: Nested lock was not taken",
    "BUG: sleeping function called from invalid context",
    "BUG: Invalid wait context",
    "BUG: scheduling while atomic",
    "BUG: workqueue leaked lock",
];

/// The kind of report `msg` starts, if it starts one.
fn head(msg: &str) -> Option<Kind> {
    // `watchdog: BUG: soft lockup`, `rcu: INFO: …`: a subsystem prefix.
    let bare = match msg.split_once(": ") {
        Some((sub, rest))
            if !sub.is_empty()
                && sub.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && (rest.starts_with("BUG: ") || rest.starts_with("INFO: ")) =>
        {
            rest
        }
        _ => msg,
    };
    if LOCKDEP.iter().any(|p| bare.starts_with(p))
        || (bare.starts_with("WARNING: ")
            && bare.contains("-safe -> ")
            && bare.contains("-unsafe lock order"))
    {
        return Some(Kind::Lockdep);
    }
    let kind = if bare.starts_with("WARNING:") {
        Kind::Warning
    } else if bare.starts_with("BUG: KASAN:") {
        Kind::Kasan
    } else if bare.starts_with("BUG: ") || bare.starts_with("kernel BUG at") {
        Kind::Bug
    } else if bare.starts_with("Oops") {
        Kind::Oops
    } else if bare.starts_with("Kernel panic - not syncing") {
        Kind::Panic
    } else if bare.starts_with("UBSAN:") {
        Kind::Ubsan
    } else if bare.starts_with("unreferenced object 0x")
        || (msg.starts_with("kmemleak: ") && msg.contains("new suspected memory leak"))
    {
        Kind::Kmemleak
    } else if (bare.starts_with("INFO: ") && bare.contains("stall"))
        || (msg.starts_with("rcu: ") && msg.contains("detected stalls"))
    {
        Kind::RcuStall
    } else if bare.starts_with("INFO: task ") && bare.contains(" blocked for more than ") {
        Kind::HungTask
    } else {
        return None;
    };
    Some(kind)
}

/// `---[ end trace 0000000000000000 ]---`, `---[ end Kernel panic - not syncing: … ]---`.
fn end_marker(msg: &str) -> bool {
    msg.starts_with("---[ end trace") || msg.starts_with("---[ end Kernel panic")
}

/// A line of `=` (lockdep and KASAN frame their reports with them).
fn rule(msg: &str) -> bool {
    msg.len() >= 10 && msg.bytes().all(|b| b == b'=')
}

fn cut_here(msg: &str) -> bool {
    msg.contains("[ cut here ]")
}

/// A line of a call trace or register dump: x86 frames (` ? f+0x1/0x2`,
/// ` <TASK>`), ppc frames (`[c000…] [c000…] f+0x1/0x2`, `--- interrupt: 700
/// at …`), register lines (`NIP:  …`, `GPR00: …`, `RIP: 0033:…`, `LR […]`).
fn trace_line(msg: &str) -> bool {
    if msg.starts_with([' ', '\t', '[', '<'])
        || msg.starts_with("\\x09")
        || msg.starts_with("---")
        || msg.starts_with("LR [")
        || msg.starts_with("NIP [")
        || [
            "Code:",
            "Modules linked in:",
            "Instruction dump:",
            "Hardware name:",
            "Workqueue:",
        ]
        .iter()
        .any(|p| msg.starts_with(p))
    {
        return true;
    }
    // `GPR00: …`, `MSR:  …`, `RAX: …`
    let word = msg.split([':', ' ']).next().unwrap_or_default();
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && msg[word.len()..].starts_with(':')
}

/// The self-check reports in `log`, in the order they started.
pub fn reports<S: AsRef<str>>(log: &[S]) -> Vec<Report> {
    let lines: Vec<Line<'_>> = log.iter().map(|l| parse(l.as_ref())).collect();
    let mut taken = vec![false; lines.len()];
    let mut out = Vec::new();
    for i in 0..lines.len() {
        if taken[i] {
            continue;
        }
        let Some(kind) = head(lines[i].msg) else {
            continue;
        };
        let caller = lines[i].caller;
        // Lines of this report: the same caller's, when callers are known.
        let mine = |j: usize| !taken[j] && (caller.is_none() || lines[j].caller == caller);
        let mut idx = Vec::new();
        if let Some(prev) = (0..i).rev().find(|&j| mine(j))
            && (cut_here(lines[prev].msg) || rule(lines[prev].msg))
            && prev + 3 >= i
        {
            idx.push(prev);
        }
        let head_at = idx.len();
        idx.push(i);
        let later: Vec<usize> = (i + 1..lines.len())
            .filter(|&j| mine(j))
            .take(MAX_LINES - idx.len())
            .collect();
        // Up to the next report's start (an Oops right after its BUG line belongs to it).
        let stop = later
            .iter()
            .position(|&j| match head(lines[j].msg) {
                Some(Kind::Oops) if kind == Kind::Bug => false,
                Some(_) => true,
                None => false,
            })
            .unwrap_or(later.len());
        let later = &later[..stop];
        let marker = later
            .iter()
            .position(|&j| end_marker(lines[j].msg) || (kind == Kind::Kasan && rule(lines[j].msg)));
        let trace = later
            .iter()
            .position(|&j| lines[j].msg.trim_start().starts_with("Call Trace:"));
        let len = match (marker, trace) {
            (Some(m), _) => m + 1,
            // The call trace's last line.
            (None, Some(t)) => {
                t + 1
                    + later[t + 1..]
                        .iter()
                        .position(|&j| !trace_line(lines[j].msg))
                        .unwrap_or(later.len() - t - 1)
            }
            // Indented detail lines (kmemleak's hex dump and backtrace).
            (None, None) => later
                .iter()
                .position(|&j| !lines[j].msg.starts_with([' ', '\t']))
                .unwrap_or(later.len()),
        };
        idx.extend_from_slice(&later[..len]);
        for &j in &idx {
            taken[j] = true;
        }
        out.push(Report {
            kind,
            lines: idx.iter().map(|&j| log[j].as_ref().to_string()).collect(),
            head: head_at,
        });
    }
    out
}

/// The kernel log's verdict on a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Reports the scenario did not declare: each fails it.
    pub unexpected: Vec<Report>,
    /// Reports that contain the declared `expect_kernel_warning` text.
    pub expected: Vec<Report>,
    /// The declared text, if no report contains it.
    pub missing: Option<String>,
}

impl Verdict {
    /// True if the kernel log does not fail the run.
    pub fn is_clean(&self) -> bool {
        self.unexpected.is_empty() && self.missing.is_none()
    }

    /// Why the kernel log fails the run, in a sentence, if it does.
    pub fn headline(&self) -> Option<String> {
        if let Some(first) = self.unexpected.first() {
            let more = match self.unexpected.len() {
                1 => String::new(),
                n => format!(
                    " (and {} more report{})",
                    n - 1,
                    if n == 2 { "" } else { "s" }
                ),
            };
            let missing = match &self.missing {
                Some(text) => format!(" (and none contains {text:?}, the expect_kernel_warning)"),
                None => String::new(),
            };
            return Some(format!(
                "the kernel reported {}{more}{missing}",
                first.describe()
            ));
        }
        self.missing.as_ref().map(|text| {
            format!(
                "the scenario expects a kernel report containing {text:?} \
                 (expect_kernel_warning), and the kernel reported none"
            )
        })
    }

    /// The unexpected reports' lines, each report after a `# <kind>` line.
    pub fn details(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.unexpected {
            let mut title = String::new();
            let _ = write!(title, "# {}", r.kind.name());
            if r.lines.len() >= MAX_LINES {
                let _ = write!(title, " (first {MAX_LINES} lines)");
            }
            out.push(title);
            out.extend(r.lines.iter().cloned());
        }
        out
    }
}

/// Judges a run's kernel `log`; `expect` is the scenario's
/// `expect_kernel_warning`: reports containing it are expected, and one must be there.
pub fn check<S: AsRef<str>>(log: &[S], expect: Option<&str>) -> Verdict {
    let (expected, unexpected): (Vec<Report>, Vec<Report>) = reports(log)
        .into_iter()
        .partition(|r| expect.is_some_and(|t| r.contains(t)));
    let missing = expect.filter(|_| expected.is_empty()).map(str::to_string);
    Verdict {
        unexpected,
        expected,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lkdtm's WARNING on x86_64 (6.12, q35), from /dev/kmsg through the agent.
    const X86_WARN: &str = "\
[   12.301245] lkdtm: Performing direct entry WARNING
[   12.301302] ------------[ cut here ]------------
[   12.301320] WARNING: CPU: 1 PID: 97 at drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING+0x15/0x20
[   12.301401] Modules linked in:
[   12.301420] CPU: 1 UID: 0 PID: 97 Comm: guest-agent Not tainted 6.12.95 #1
[   12.301455] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[   12.301478] RIP: 0010:lkdtm_WARNING+0x15/0x20
[   12.301502] Code: 90 90 90 90 90 90 90 90 8b 05 d5 5e 1e 01 ff c0 89 05 cd 5e 1e 01 <0f> 0b c3 cc cc cc cc
[   12.301530] RSP: 0018:ffffc900003c7dc8 EFLAGS: 00010202
[   12.301551] RAX: 0000000000000001 RBX: ffffffff8248e6c0 RCX: 0000000000000000
[   12.301577] Call Trace:
[   12.301585]  <TASK>
[   12.301594]  ? __warn+0x81/0x130
[   12.301610]  ? lkdtm_WARNING+0x15/0x20
[   12.301625]  ? report_bug+0x16d/0x1a0
[   12.301641]  lkdtm_do_action+0x11/0x30
[   12.301655]  direct_entry+0x98/0xe0
[   12.301671]  full_proxy_write+0x51/0x80
[   12.301688]  vfs_write+0xf7/0x450
[   12.301704]  ksys_write+0x6b/0xe0
[   12.301719]  do_syscall_64+0x5d/0x170
[   12.301735]  entry_SYSCALL_64_after_hwframe+0x76/0x7e
[   12.301752] RIP: 0033:0x4b1a2d
[   12.301766] RSP: 002b:00007ffe3a1c1e48 EFLAGS: 00000246 ORIG_RAX: 0000000000000001
[   12.301790]  </TASK>
[   12.301799] ---[ end trace 0000000000000000 ]---
[   12.301900] vfio-pci 0000:00:03.0: enabling device (0000 -> 0002)";

    /// lkdtm's WARNING on ppc64le (pseries), as the console prints it (no
    /// timestamps here: `printk.time=0` or a serial log stripped of them).
    const PPC_WARN: &str = "\
lkdtm: Performing direct entry WARNING
------------[ cut here ]------------
WARNING: CPU: 0 PID: 95 at drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING+0x28/0x40
Modules linked in:
CPU: 0 UID: 0 PID: 95 Comm: guest-agent Not tainted 6.12.95 #1
Hardware name: IBM pSeries (emulated by qemu) POWER9 (architected) 0x4e1202 0xf000005 of:SLOF,HEAD pSeries
NIP:  c000000000a8c1e8 LR: c000000000a8b2d4 CTR: c000000000a8c1c0
REGS: c00000000453f9c0 TRAP: 0700   Not tainted  (6.12.95)
MSR:  8000000000029033 <SF,EE,ME,IR,DR,RI,LE>  CR: 28002228  XER: 20000000
CFAR: c000000000a8b2d0 IRQMASK: 0
GPR00: c000000000a8b2d4 c00000000453fc60 c0000000019c8100 c000000002a91e28
GPR04: 0000000000000001 0000000000000000 0000000000000000 0000000000000000
NIP [c000000000a8c1e8] lkdtm_WARNING+0x28/0x40
LR [c000000000a8b2d4] lkdtm_do_action+0x34/0x60
Call Trace:
[c00000000453fc60] [c000000000a8b2c4] lkdtm_do_action+0x24/0x60 (unreliable)
[c00000000453fc80] [c000000000a8b5a8] direct_entry+0x128/0x1c0
[c00000000453fcd0] [c000000000616f24] full_proxy_write+0x94/0x100
[c00000000453fd20] [c0000000004f1a30] vfs_write+0x100/0x4f0
[c00000000453fdf0] [c0000000004f2084] ksys_write+0x84/0x140
[c00000000453fe40] [c00000000002f3b8] system_call_exception+0x138/0x2d0
[c00000000453fe50] [c00000000000cedc] system_call_vectored_common+0x15c/0x2ec
--- interrupt: 3000 at 0x10034a64
NIP:  0000000010034a64 LR: 0000000010034a64 CTR: 0000000000000000
REGS: c00000000453fe80 TRAP: 3000   Not tainted  (6.12.95)
--- interrupt: 3000
Code: 60000000 3d22ff8e 39495d28 812a0000 39290001 912a0000 7d290034 5529d97e <0b090000> 4e800020 3c4c00f4 3842c020
---[ end trace 0000000000000000 ]---";

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn x86_warn_from_cut_here_to_end_trace() {
        let r = reports(&lines(X86_WARN));
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(r[0].kind, Kind::Warning);
        assert_eq!(
            r[0].title(),
            "WARNING: CPU: 1 PID: 97 at drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING+0x15/0x20"
        );
        assert!(r[0].lines[0].ends_with("------------[ cut here ]------------"));
        assert!(
            r[0].lines
                .last()
                .unwrap()
                .ends_with("---[ end trace 0000000000000000 ]---")
        );
        assert_eq!(r[0].lines.len(), 25);
    }

    #[test]
    fn ppc_warn_without_timestamps() {
        let r = reports(&lines(PPC_WARN));
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(r[0].kind, Kind::Warning);
        assert!(
            r[0].title()
                .starts_with("WARNING: CPU: 0 PID: 95 at drivers/misc/lkdtm/bugs.c:112")
        );
        assert_eq!(r[0].lines.len(), PPC_WARN.lines().count() - 1);
        assert!(r[0].contains("lkdtm_WARNING"));
    }

    #[test]
    fn other_kernel_lines_are_no_report() {
        let log = lines(
            "[    3.1] vfio-pci 0000:00:03.0: WARNING: not a splat\n\
             [    3.2] iommu: Default domain type: Translated\n\
             [    3.3] DMAR: DRHD: handling fault status reg 2\n\
             [    3.4] some driver says BUG: in the middle",
        );
        assert!(reports(&log).is_empty());
        assert!(check(&log, None).is_clean());
    }

    /// Two CPUs print at once; with caller ids the other CPU's lines stay
    /// out of the report (and its own WARNING is a report of its own).
    #[test]
    fn interleaved_lines_with_caller_ids() {
        let log = lines(
            "[   20.000001][   T95] ------------[ cut here ]------------
[   20.000002][   T95] WARNING: CPU: 0 PID: 95 at drivers/iommu/iommufd/io_pagetable.c:1234 iopt_unmap_iova_range+0x1f0/0x230
[   20.000003][  T101] vfio-pci 0000:00:03.0: resetting
[   20.000004][   T95] Modules linked in:
[   20.000005][    C1] ------------[ cut here ]------------
[   20.000006][   T95] Call Trace:
[   20.000007][    C1] WARNING: CPU: 1 PID: 0 at kernel/time/timer.c:1 run_timer+0x1/0x2
[   20.000008][   T95]  <TASK>
[   20.000009][    C1] ---[ end trace 0000000000000001 ]---
[   20.000010][   T95]  iommufd_ioas_unmap+0x8d/0x120
[   20.000011][   T95]  </TASK>
[   20.000012][   T95] ---[ end trace 0000000000000000 ]---",
        );
        let r = reports(&log);
        assert_eq!(r.len(), 2, "{r:#?}");
        assert!(r[0].title().contains("iopt_unmap_iova_range"));
        assert_eq!(r[0].lines.len(), 8);
        assert!(r[0].lines.iter().all(|l| l.contains("T95]")));
        assert!(r[1].title().contains("run_timer"));
        assert_eq!(r[1].lines.len(), 3);
    }

    /// Without caller ids an interleaved line is part of the report (there
    /// is no telling), and the report still ends at its marker.
    #[test]
    fn interleaved_lines_without_caller_ids() {
        let mut log = lines(X86_WARN);
        log.insert(10, "[   12.301560] vfio-pci 0000:00:03.0: resetting".into());
        let r = reports(&log);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].lines.len(), 26);
        assert!(r[0].lines.last().unwrap().contains("end trace"));
    }

    #[test]
    fn x86_page_fault_bug_with_its_oops() {
        let log = lines(
            "[   30.1] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   30.1] #PF: supervisor read access in kernel mode
[   30.1] #PF: error_code(0x0000) - not-present page
[   30.1] PGD 0 P4D 0
[   30.1] Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI
[   30.1] CPU: 0 UID: 0 PID: 95 Comm: guest-agent Not tainted 6.12.95 #1
[   30.1] RIP: 0010:vfio_iommu_type1_ioctl+0x2a/0x9b0
[   30.1] Call Trace:
[   30.1]  <TASK>
[   30.1]  __x64_sys_ioctl+0x94/0xd0
[   30.1]  </TASK>
[   30.1] Modules linked in:
[   30.1] CR2: 0000000000000008
[   30.1] ---[ end trace 0000000000000000 ]---
[   30.2] RIP: 0010:vfio_iommu_type1_ioctl+0x2a/0x9b0
[   30.2] Kernel panic - not syncing: Fatal exception
[   30.2] Kernel Offset: disabled
[   30.2] ---[ end Kernel panic - not syncing: Fatal exception ]---",
        );
        let r = reports(&log);
        assert_eq!(r.len(), 2, "{r:#?}");
        assert_eq!(r[0].kind, Kind::Bug);
        assert_eq!(r[0].lines.len(), 14);
        assert_eq!(r[1].kind, Kind::Panic);
        assert_eq!(r[1].lines.len(), 3);
    }

    #[test]
    fn ppc_null_dereference_oops() {
        let log = lines(
            "[   41.5] BUG: Kernel NULL pointer dereference on read at 0x00000010
[   41.5] Faulting instruction address: 0xc000000000ab1234
[   41.5] Oops: Kernel access of bad area, sig: 11 [#1]
[   41.5] LE PAGE_SIZE=64K MMU=Radix  SMP NR_CPUS=2048 NUMA pSeries
[   41.5] NIP:  c000000000ab1234 LR: c000000000ab1200 CTR: 0000000000000000
[   41.5] NIP [c000000000ab1234] tce_iommu_unuse_page_v2+0x44/0x120
[   41.5] Call Trace:
[   41.5] [c00000000453fa00] [c000000000ab1400] tce_iommu_clear+0x90/0x1a0
[   41.5] Code: 7c0802a6 fbc1fff0 <e9230010>
[   41.5] ---[ end trace 0000000000000000 ]---",
        );
        let r = reports(&log);
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(r[0].kind, Kind::Bug);
        assert_eq!(r[0].lines.len(), 10);
    }

    /// A lockdep splat has no end marker: it ends with its call trace.
    #[test]
    fn lockdep_splat_ends_with_its_trace() {
        let log = lines(
            "[    8.0]
[    8.0] ======================================================
[    8.0] WARNING: possible circular locking dependency detected
[    8.0] 6.12.95 #1 Not tainted
[    8.0] ------------------------------------------------------
[    8.0] guest-agent/95 is trying to acquire lock:
[    8.0] c000000002f0a0d8 (&container->group_lock){++++}-{3:3}, at: tce_iommu_ioctl+0x80/0x7a0
[    8.0]
[    8.0] but task is already holding lock:
[    8.0] c000000004b1e070 (&tbl->lock){+.+.}-{2:2}, at: iommu_take_ownership+0x30/0x160
[    8.0]
[    8.0] stack backtrace:
[    8.0] CPU: 0 UID: 0 PID: 95 Comm: guest-agent Not tainted 6.12.95 #1
[    8.0] Call Trace:
[    8.0] [c00000000453f5a0] [c000000001234560] dump_stack_lvl+0x88/0xc4 (unreliable)
[    8.0] [c00000000453f5d0] [c0000000002345f0] print_circular_bug+0x2d8/0x310
[    8.0] --- interrupt: 3000 at 0x10034a64
[    8.0] NIP:  0000000010034a64 LR: 0000000010034a64 CTR: 0000000000000000
[    8.0] --- interrupt: 3000
[    8.1] vfio-pci 0000:00:02.0: enabling device",
        );
        let r = reports(&log);
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(r[0].kind, Kind::Lockdep);
        assert!(r[0].lines[0].ends_with("====="));
        assert!(r[0].lines.last().unwrap().ends_with("--- interrupt: 3000"));
        assert_eq!(r[0].lines.len(), 18);
    }

    #[test]
    fn might_sleep_kasan_ubsan_kmemleak_rcu() {
        let log = lines(
            "[    9.0] BUG: sleeping function called from invalid context at mm/slab.h:1234
[    9.0] in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 95, name: guest-agent
[    9.0] CPU: 0 UID: 0 PID: 95 Comm: guest-agent Tainted: G        W          6.12.95 #1
[    9.0] Call Trace:
[    9.0]  <TASK>
[    9.0]  __might_resched+0x15a/0x1a0
[    9.0]  </TASK>
[   10.0] ==================================================================
[   10.0] BUG: KASAN: slab-use-after-free in iopt_area_unpin+0x30/0x90
[   10.0] Read of size 8 at addr ffff888004a1b2c0 by task guest-agent/95
[   10.0] Call Trace:
[   10.0]  <TASK>
[   10.0]  kasan_report+0xb5/0xf0
[   10.0]  </TASK>
[   10.0] Allocated by task 95:
[   10.0]  kasan_save_stack+0x1c/0x40
[   10.0] ==================================================================
[   11.0] ------------[ cut here ]------------
[   11.0] UBSAN: shift-out-of-bounds in drivers/vfio/vfio_iommu_spapr_tce.c:812:15
[   11.0] shift exponent 64 is too large for 64-bit type 'long unsigned int'
[   11.0] CPU: 0 UID: 0 PID: 95 Comm: guest-agent Not tainted 6.12.95 #1
[   11.0] Call Trace:
[   11.0] ---[ end trace ]---
[   12.0] kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
[   12.0] unreferenced object 0xffff888004a1b2c0 (size 64):
[   12.0]   comm \"guest-agent\", pid 95, jiffies 4294937296
[   12.0]   backtrace (crc 5b8a3f12):
[   12.0]     kmemleak_alloc+0x4a/0x80
[   12.0] iommufd: something unrelated
[   13.0] rcu: INFO: rcu_sched self-detected stall on CPU
[   13.0] rcu: \\x090-....: (2099 ticks this GP) idle=1234/1/0x4000000000000002
[   13.0] CPU: 0 UID: 0 PID: 95 Comm: guest-agent Not tainted 6.12.95 #1
[   13.0] Call Trace:
[   13.0] [c00000000453f5a0] [c000000001234560] dump_stack_lvl+0x88/0xc4
[   13.0] iommufd: after the stall
[   14.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[   15.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [guest-agent:95]",
        );
        let kinds: Vec<(Kind, usize)> = reports(&log)
            .iter()
            .map(|r| (r.kind, r.lines.len()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Lockdep, 7),
                (Kind::Kasan, 10),
                (Kind::Ubsan, 6),
                (Kind::Kmemleak, 1),
                (Kind::Kmemleak, 4),
                (Kind::RcuStall, 5),
                (Kind::RcuStall, 1),
                (Kind::Bug, 1),
            ]
        );
    }

    #[test]
    fn hung_task() {
        let log = lines(
            "[  123.0] INFO: task guest-agent:95 blocked for more than 120 seconds.\n\
             [  123.0]       Not tainted 6.12.95 #1",
        );
        let r = reports(&log);
        assert_eq!((r[0].kind, r[0].lines.len()), (Kind::HungTask, 2));
    }

    /// A report never runs on past MAX_LINES.
    #[test]
    fn reports_are_bounded() {
        let mut log = vec!["WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x1".to_string()];
        log.extend((0..500).map(|i| format!("  line {i}")));
        let r = reports(&log);
        assert_eq!(r[0].lines.len(), MAX_LINES);
        assert!(check(&log, None).details()[0].contains("first 100 lines"));
    }

    #[test]
    fn raw_kmsg_records_and_syslog_levels() {
        let log = [
            "4,812,12301320,-,caller=T97;WARNING: CPU: 1 PID: 97 at x.c:1 f+0x0/0x1",
            "4,813,12301330,-,caller=T98;vfio-pci 0000:00:03.0: resetting",
            "4,814,12301340,-,caller=T97;---[ end trace 0000000000000000 ]---",
            "<4>[   12.3] BUG: scheduling while atomic: guest-agent/97/0x00000002",
        ];
        let r = reports(&log);
        assert_eq!(r.len(), 2, "{r:#?}");
        assert_eq!(r[0].lines.len(), 2);
        assert_eq!(r[1].kind, Kind::Lockdep);
    }

    #[test]
    fn verdicts() {
        let log = lines(X86_WARN);
        let v = check(&log, None);
        assert!(!v.is_clean());
        assert_eq!(
            v.headline().unwrap(),
            "the kernel reported WARNING: CPU: 1 PID: 97 at \
             drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING+0x15/0x20"
        );
        assert_eq!(v.details()[0], "# WARNING");
        assert_eq!(v.details().len(), 26);

        let v = check(&log, Some("lkdtm_WARNING"));
        assert!(v.is_clean(), "{v:?}");
        assert_eq!(v.expected.len(), 1);
        assert_eq!(v.headline(), None);

        // Declared, and the kernel did not warn: a failure too.
        let quiet = lines("[    1.0] lkdtm: Performing direct entry WARNING");
        let v = check(&quiet, Some("lkdtm_WARNING"));
        assert!(!v.is_clean());
        assert!(v.headline().unwrap().contains(
            "expects a kernel report containing \"lkdtm_WARNING\" (expect_kernel_warning), and the kernel reported none"
        ));

        // Declared, and a different report: that one fails (the declared one is missing too).
        let v = check(&log, Some("iopt_unmap"));
        assert_eq!(
            (v.unexpected.len(), v.missing.as_deref()),
            (1, Some("iopt_unmap"))
        );
        let h = v.headline().unwrap();
        assert!(h.starts_with("the kernel reported WARNING: CPU: 1"), "{h}");
        assert!(
            h.ends_with("(and none contains \"iopt_unmap\", the expect_kernel_warning)"),
            "{h}"
        );
    }
}
