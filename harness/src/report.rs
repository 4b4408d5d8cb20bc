//! Human-readable results: the per-step table (expected vs actual) printed
//! while a scenario streams in, and the framed failure report with the
//! failing step, the console tail, the kernel log and where the full logs are.

use std::fmt::Write as _;
use std::path::Path;

use iobench_proto::StepResult;

use crate::scenario::ScenarioFile;

/// The table header matching [`row`].
pub fn header() -> String {
    format!("  {:>3} {:>20}  {:<26} {:<22} {:<34} {:>9}", "#", "line", "op", "expected", "actual", "time")
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

/// Where step `i` was written: its line, prefixed by the fragment's name if it was included.
pub fn origin(file: &ScenarioFile, i: usize) -> String {
    match file.step_origins.get(i) {
        Some((None, line)) => line.to_string(),
        Some((Some(inc), line)) => format!("{}:{line}", Path::new(inc).file_stem().unwrap_or_default().to_string_lossy()),
        None => "?".into(),
    }
}

/// One step as a table row; the actual value is shown whole on a second line if it is long.
pub fn row(file: &ScenarioFile, r: &StepResult) -> String {
    let line = origin(file, r.index);
    let mark = if r.passed { "ok" } else { "FAIL" };
    let actual = r.actual.to_string();
    let time = if r.micros >= 10_000 { format!("{} ms", r.micros / 1000) } else { format!("{} µs", r.micros) };
    let mut s = format!(
        "  {:>3} {:>20}  {:<26} {:<22} {:<34} {:>9}  {mark}",
        r.index,
        line,
        clip(&r.op, 26),
        clip(&r.expected.to_string(), 22),
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
        let _ = writeln!(s, "step {} (line {}): {}", bad.index, origin(f.file, bad.index), bad.op);
        let _ = writeln!(s, "  expected: {}", bad.expected);
        let _ = writeln!(s, "  actual:   {}", bad.actual);
    } else if f.results.len() < f.file.scenario.steps.len() {
        let next = f.results.len();
        let op = f.file.scenario.steps.get(next).map(|st| st.op.as_str()).unwrap_or("?");
        let _ = writeln!(s, "stopped before step {next} ({op}) finished");
    }
    if let Some(cause) = &f.cause {
        let _ = writeln!(s, "cause: {cause}");
    }
    let _ = writeln!(s, "{}", table(f.file, f.results));
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
