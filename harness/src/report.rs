//! Results, for people and for CI: the per-step table (expected vs actual)
//! printed while a scenario streams in, the framed failure report with the
//! failing step, the kernel's own reports (`harness::kernel_log`), the
//! console tail, the kernel log and where the full logs are, the JUnit XML and JSON files of a test run, and [`chain`], how an
//! error reads in any of them (with its causes).
//!
//! It knows scenario files ([`crate::scenario_file`]), not how they are run:
//! the runner (`harness::scenario`) calls in here.

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;

use iobench_proto::StepResult;

use crate::scenario_file::ScenarioFile;

/// An error with its causes, `outer: cause: root cause`, for reports and
/// trial results (an error's own message never repeats its source; the
/// chain says it once).  A cause whose text the message already holds is
/// not said again.
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !s.contains(&text) {
            let _ = write!(s, ": {text}");
        }
        cause = c.source();
    }
    s
}

/// A JSON value for people: numbers of 64 KiB and more in hex (addresses, sizes, registers).
pub fn pretty(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(x) if x >= 0x10000 => format!("{x:#x}"),
            _ => n.to_string(),
        },
        Value::Array(a) => format!("[{}]", a.iter().map(pretty).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, x)| format!("{k}: {}", pretty(x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn show_expected(e: &iobench_proto::Expect) -> String {
    match e {
        iobench_proto::Expect::Value(v) => format!("= {}", pretty(v)),
        other => other.to_string(),
    }
}

fn show_actual(a: &iobench_proto::Actual) -> String {
    match a {
        iobench_proto::Actual::Value(serde_json::Value::Null) => "ok".into(),
        iobench_proto::Actual::Value(v) => format!("ok = {}", pretty(v)),
        other => other.to_string(),
    }
}

/// One failed step in a sentence: `step 12 (line 20) vfio.map_dma: expected EINVAL, actual ok = 1`.
pub fn step_outcome(file: &ScenarioFile, r: &StepResult) -> String {
    format!(
        "step {} (line {}) {}: expected {}, actual {}",
        r.index,
        origin(file, r.index),
        r.op,
        show_expected(&r.expected),
        show_actual(&r.actual)
    )
}

/// The table header matching [`row`].
pub fn header() -> String {
    format!(
        "  {:>3} {:>20}  {:<26} {:<22} {:<34} {:>9}",
        "#", "line", "op", "expected", "actual", "time"
    )
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// Where step `i` was written: its line, prefixed by the fragment's name if it was included.
pub fn origin(file: &ScenarioFile, i: usize) -> String {
    match file.step_origins.get(i) {
        Some((None, line)) => line.to_string(),
        Some((Some(inc), line)) => format!(
            "{}:{line}",
            Path::new(inc)
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
        ),
        None => "?".into(),
    }
}

/// One step as a table row; the actual value is shown whole on a second line if it is long.
pub fn row(file: &ScenarioFile, r: &StepResult) -> String {
    let line = origin(file, r.index);
    let mark = if r.passed { "ok" } else { "FAIL" };
    let actual = show_actual(&r.actual);
    let time = if r.micros >= 10_000 {
        format!("{} ms", r.micros / 1000)
    } else {
        format!("{} µs", r.micros)
    };
    let mut s = format!(
        "  {:>3} {:>20}  {:<26} {:<22} {:<34} {:>9}  {mark}",
        r.index,
        line,
        clip(&r.op, 26),
        clip(&show_expected(&r.expected), 22),
        clip(&actual, 34),
        time
    );
    if actual.chars().count() > 34 {
        let _ = write!(s, "\n  {:>26}= {actual}", "");
    }
    s
}

/// The whole table.
pub fn table(file: &ScenarioFile, results: &[StepResult]) -> String {
    let mut s = header();
    for r in results {
        s.push('\n');
        s.push_str(&row(file, r));
    }
    s
}

/// What went wrong with a scenario run, for the failure report.
pub struct Failure<'a> {
    /// The scenario.
    pub file: &'a ScenarioFile,
    /// The steps that finished.
    pub results: &'a [StepResult],
    /// Why it failed when no step result says so (guest panic, agent crash, …).
    pub cause: Option<String>,
    /// The console's last lines.
    pub console_tail: Vec<String>,
    /// Kernel log lines logged during the scenario.
    pub dmesg: Vec<String>,
    /// Why the kernel log fails the run, if it does (`harness::kernel_log`).
    pub kernel: Option<String>,
    /// The kernel's reports that fail it, their lines.
    pub kernel_reports: Vec<String>,
    /// Where the full logs are.
    pub log_dir: &'a Path,
}

/// The framed failure report.
pub fn failure(f: &Failure<'_>) -> String {
    let mut s = String::new();
    let bar = "=".repeat(30);
    let _ = writeln!(s, "{bar} scenario {} failed {bar}", f.file.name());
    let _ = writeln!(s, "file: {}", f.file.path.display());
    if let Some(bad) = f.results.iter().find(|r| !r.passed) {
        let _ = writeln!(
            s,
            "step {} (line {}): {}",
            bad.index,
            origin(f.file, bad.index),
            bad.op
        );
        let _ = writeln!(s, "  expected: {}", show_expected(&bad.expected));
        let _ = writeln!(s, "  actual:   {}", show_actual(&bad.actual));
    } else if f.results.len() < f.file.scenario.steps.len() {
        let next = f.results.len();
        let op = f
            .file
            .scenario
            .steps
            .get(next)
            .map(|st| st.op.as_str())
            .unwrap_or("?");
        let _ = writeln!(s, "stopped before step {next} ({op}) finished");
    }
    if let Some(cause) = &f.cause {
        let _ = writeln!(s, "cause: {cause}");
    }
    if let Some(kernel) = &f.kernel {
        let _ = writeln!(s, "kernel: {kernel}");
    }
    let _ = writeln!(s, "{}", table(f.file, f.results));
    section(&mut s, "kernel reports", &f.kernel_reports);
    section(&mut s, "kernel log during the scenario", &f.dmesg);
    section(&mut s, "last console lines", &f.console_tail);
    let _ = writeln!(s, "full logs: {}", f.log_dir.display());
    let _ = write!(s, "{}", "=".repeat(bar.len() * 2 + 22));
    s
}

fn section(s: &mut String, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(s, "--- {title} ---");
    for l in lines {
        let _ = writeln!(s, "  {l}");
    }
}

/// How one trial ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TrialStatus {
    /// It passed.
    Passed,
    /// It failed; the message is the (framed) failure report.
    Failed {
        /// What went wrong.
        message: String,
    },
    /// It did not run.
    Ignored {
        /// Why, if known.
        reason: Option<String>,
    },
    /// A known bug showed as declared (`harness::known_bug`): not a pass,
    /// not a failure.
    ExpectedFailure {
        /// Which bug, where it showed and what happened.
        message: String,
    },
}

impl TrialStatus {
    /// The one-word status the JSON file and summaries use.
    pub fn word(&self) -> &'static str {
        match self {
            TrialStatus::Passed => "passed",
            TrialStatus::Failed { .. } => "failed",
            TrialStatus::Ignored { .. } => "ignored",
            TrialStatus::ExpectedFailure { .. } => "expected_failure",
        }
    }
}

/// The closing summary of expected failures, if there were any: a line
/// with their count, then one line per trial.
pub fn expected_failures(records: &[TrialRecord]) -> Option<String> {
    let lines: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.status {
            TrialStatus::ExpectedFailure { message } => Some(format!("  {}: {message}", r.name)),
            _ => None,
        })
        .collect();
    (!lines.is_empty()).then(|| {
        format!(
            "expected failures (known bugs, no fix applied): {}\n{}",
            lines.len(),
            lines.join("\n")
        )
    })
}

/// One trial's result, for the JUnit and JSON files.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrialRecord {
    /// Full trial name, e.g. `pseries::windows::map_outside_window`.
    pub name: String,
    /// How it ended.
    #[serde(flatten)]
    pub status: TrialStatus,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Directory with its console and QEMU logs, if it booted anything.
    pub log_dir: Option<std::path::PathBuf>,
    /// Per-step results of a scenario trial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
}

/// A trial's JUnit class: the machine it ran on, with the kernel version
/// in front when the name has one (`7.2::q35::…` → `7.2::q35`).
fn classname(name: &str) -> Option<&str> {
    let first = name.split("::").next()?;
    if crate::linux::Linux::parse(first).is_none() {
        return Some(first);
    }
    let second = name[first.len()..].strip_prefix("::")?.split("::").next()?;
    Some(&name[..first.len() + 2 + second.len()])
}

/// Writes a JUnit XML report: one test suite, one test case per trial
/// (class name = the machine, with the kernel version when not the
/// default one: [`classname`]).
pub fn write_junit(path: &Path, suite: &str, records: &[TrialRecord]) -> std::io::Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut ts = TestSuite::new(suite);
    let mut total = 0.0;
    for r in records {
        let status = match &r.status {
            TrialStatus::Passed => TestCaseStatus::success(),
            TrialStatus::Failed { message } => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(
                    message
                        .lines()
                        .find(|l| !l.starts_with('='))
                        .unwrap_or("failed"),
                );
                s.set_description(message.as_str());
                s
            }
            TrialStatus::Ignored { reason } => {
                let mut s = TestCaseStatus::skipped();
                if let Some(reason) = reason {
                    s.set_message(reason.as_str());
                }
                s
            }
            // JUnit has no expected failure: a skip whose type says so.
            TrialStatus::ExpectedFailure { message } => {
                let mut s = TestCaseStatus::skipped();
                s.set_type("expected_failure");
                s.set_message(message.as_str());
                s
            }
        };
        let mut tc = TestCase::new(r.name.as_str(), status);
        tc.set_classname(classname(&r.name).unwrap_or(suite));
        tc.set_time(std::time::Duration::from_secs_f64(r.seconds));
        if let Some(dir) = &r.log_dir {
            tc.set_system_out(format!("logs: {}", dir.display()));
        }
        total += r.seconds;
        ts.add_test_case(tc);
    }
    ts.set_time(std::time::Duration::from_secs_f64(total));
    let mut report = Report::new("iobench");
    report.add_test_suite(ts);
    let xml = report.to_string().map_err(std::io::Error::other)?;
    std::fs::write(path, xml)
}

/// Writes the records as a JSON array.
pub fn write_json(path: &Path, records: &[TrialRecord]) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(records).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

/// Reads a file [`write_json`] wrote (a malformed one is an
/// [`std::io::ErrorKind::InvalidData`] error saying where).
pub fn read_json(path: &Path) -> std::io::Result<Vec<TrialRecord>> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<TrialRecord> {
        let rec = |name: &str, status| TrialRecord {
            name: name.into(),
            status,
            seconds: 1.5,
            log_dir: None,
            steps: vec![],
        };
        vec![
            rec("pseries::windows::a", TrialStatus::Passed),
            rec(
                "q35::ioas::b",
                TrialStatus::Failed {
                    message: "=== x ===\nstep 3 (line 9): ioas.map\n  expected: ok <&>".into(),
                },
            ),
            rec(
                "pseries::windows::c",
                TrialStatus::Ignored {
                    reason: Some("the guest lacks eeh".into()),
                },
            ),
            rec(
                "pseries::windows::d",
                TrialStatus::ExpectedFailure {
                    message: "expected failure: known bug 0001 (x): step 4".into(),
                },
            ),
        ]
    }

    #[test]
    fn chain_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading {0}")]
        struct Outer(&'static str, #[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("agent on x: {0}")]
        struct Repeats(#[source] std::io::Error);
        let io = || std::io::Error::other("disk on fire");
        assert_eq!(
            chain(&Outer("a.toml", io())),
            "reading a.toml: disk on fire"
        );
        assert_eq!(chain(&Repeats(io())), "agent on x: disk on fire");
        assert_eq!(chain(&io()), "disk on fire");
    }

    #[test]
    fn junit_is_valid_and_counts_each_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        write_junit(&path, "iobench", &records()).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        let suite = &report.test_suites[0];
        let skipped = suite
            .test_cases
            .iter()
            .filter(|t| matches!(t.status, quick_junit::TestCaseStatus::Skipped { .. }))
            .count();
        assert_eq!((suite.tests, suite.failures, skipped), (4, 1, 2));
        assert!(
            xml.contains("type=\"expected_failure\"")
                && xml.contains("expected failure: known bug 0001 (x): step 4"),
            "{xml}"
        );
        assert!(xml.contains("classname=\"q35\""), "{xml}");
        assert_eq!(classname("7.2::q35::boot"), Some("7.2::q35"));
        assert_eq!(classname("pseries::windows::x"), Some("pseries"));
        assert!(xml.contains("step 3 (line 9): ioas.map"), "{xml}");
    }

    #[test]
    fn json_has_status_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_json(&path, &records()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v[1]["status"], "failed");
        assert_eq!(v[2]["reason"], "the guest lacks eeh");
        assert_eq!(v[3]["status"], "expected_failure");
        assert_eq!(
            v[3]["message"],
            "expected failure: known bug 0001 (x): step 4"
        );
        let summary = expected_failures(&records()).unwrap();
        assert!(summary.starts_with("expected failures (known bugs, no fix applied): 1\n  pseries::windows::d: expected failure"), "{summary}");
        assert!(expected_failures(&records()[..3]).is_none());
        assert_eq!(v[0]["seconds"], 1.5);
    }

    #[test]
    fn json_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let mut written = records();
        written[0].log_dir = Some("/logs/pseries/windows/a".into());
        written[1].steps = vec![StepResult {
            index: 3,
            op: "ioas.map".into(),
            expected: iobench_proto::Expect::Value(serde_json::json!(0)),
            actual: iobench_proto::Actual::Value(serde_json::json!(1)),
            passed: false,
            micros: 12,
        }];
        write_json(&path, &written).unwrap();
        let read = read_json(&path).unwrap();
        assert_eq!(read.len(), written.len());
        for (r, w) in read.iter().zip(&written) {
            assert_eq!(
                (&r.name, &r.status, r.seconds, &r.log_dir, &r.steps),
                (&w.name, &w.status, w.seconds, &w.log_dir, &w.steps)
            );
        }
        std::fs::write(&path, r#"[{"name": "q35::x", "status": "sideways"}]"#).unwrap();
        let e = read_json(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    }
}
