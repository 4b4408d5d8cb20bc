//! `cargo xtask report`: one report from the shards of a run.
//!
//! CI runs the VM suite in shards (a kernel version and a group of
//! machines, or `--partition K/N`), each writing its trials' records with
//! `cargo xtask test --json F`.  [`merge`] reads those files
//! (`harness::report::read_json`) and refuses a trial that is in two of
//! them, naming both: shards are disjoint, so a trial run twice means the
//! shards were cut wrong.  [`run`] writes the merged records as one JUnit
//! file (`harness::report::write_junit`) and optionally one JSON file,
//! prints a [`Summary`] line (the outcomes per kernel version, read from a
//! trial name's `N.N::` prefix; a name without one is on the default
//! version, `harness::linux::Linux::DEFAULT`) and fails if a trial failed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use harness::linux::Linux;
use harness::report::{TrialRecord, TrialStatus};

use crate::flags::ReportArgs;

/// Duplicated trials named in the error before "and N more".
const DUPLICATES_SHOWN: usize = 10;

/// The records of every file, sorted by trial name; a trial in two files
/// (or twice in one) is an error naming the trial and both files.
pub fn merge(files: &[PathBuf]) -> Result<Vec<TrialRecord>> {
    let mut seen: BTreeMap<String, (&Path, TrialRecord)> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for file in files {
        let records = harness::report::read_json(file)
            .with_context(|| format!("reading the report {}", file.display()))?;
        for r in records {
            match seen.get(&r.name) {
                Some((first, _)) => duplicates.push(format!(
                    "{} is in {} and {}",
                    r.name,
                    first.display(),
                    file.display()
                )),
                None => {
                    seen.insert(r.name.clone(), (file, r));
                }
            }
        }
    }
    if !duplicates.is_empty() {
        let more = duplicates.len().saturating_sub(DUPLICATES_SHOWN);
        duplicates.truncate(DUPLICATES_SHOWN);
        if more > 0 {
            duplicates.push(format!("and {more} more"));
        }
        bail!(
            "the shards overlap (each trial must be in one report):\n  {}",
            duplicates.join("\n  ")
        );
    }
    Ok(seen.into_values().map(|(_, r)| r).collect())
}

/// The kernel version a trial ran on: its name's `N.N::` prefix
/// (`7.2::q35::boot`), else the default version (`pseries::boot`).
pub fn version(trial: &str) -> (u32, u32) {
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    trial
        .split_once("::")
        .and_then(|(front, _)| front.split_once('.'))
        .and_then(|(major, minor)| Some((number(major)?, number(minor)?)))
        .unwrap_or(Linux::DEFAULT.number())
}

/// How many trials of one kernel version ended each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Ignored (not run).
    pub ignored: usize,
    /// Known bugs that showed as declared.
    pub expected_failures: usize,
}

/// The outcomes of a merged run, per kernel version, oldest first.
#[derive(Debug, Default)]
pub struct Summary {
    /// Reports merged.
    pub files: usize,
    /// Counts per `(major, minor)` version.
    pub versions: BTreeMap<(u32, u32), Counts>,
}

impl Summary {
    /// Counts `records`, merged from `files` reports.
    pub fn of(records: &[TrialRecord], files: usize) -> Summary {
        let mut versions: BTreeMap<(u32, u32), Counts> = BTreeMap::new();
        for r in records {
            let c = versions.entry(version(&r.name)).or_default();
            match r.status {
                TrialStatus::Passed => c.passed += 1,
                TrialStatus::Failed { .. } => c.failed += 1,
                TrialStatus::Ignored { .. } => c.ignored += 1,
                TrialStatus::ExpectedFailure { .. } => c.expected_failures += 1,
            }
        }
        Summary { files, versions }
    }

    /// Failed trials, all versions.
    pub fn failed(&self) -> usize {
        self.versions.values().map(|c| c.failed).sum()
    }
}

/// One line: `12 trials from 4 reports; 6.12: 5 passed, 1 failed, …; 7.2: …`.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trials: usize = self
            .versions
            .values()
            .map(|c| c.passed + c.failed + c.ignored + c.expected_failures)
            .sum();
        write!(
            f,
            "{} from {}",
            plural(trials, "trial"),
            plural(self.files, "report")
        )?;
        for ((major, minor), c) in &self.versions {
            write!(
                f,
                "; {major}.{minor}: {} passed, {} failed, {} ignored, {}",
                c.passed,
                c.failed,
                c.ignored,
                plural(c.expected_failures, "expected failure")
            )?;
        }
        Ok(())
    }
}

/// `1 trial`, `3 trials`.
fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `path`'s directory, made if missing.
fn parent_made(path: &Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
        }
        None => Ok(()),
    }
}

/// `cargo xtask report`: merge, write the reports, print the summary; an
/// error if a trial failed (after the reports are written).
pub fn run(a: &ReportArgs) -> Result<()> {
    let records = merge(&a.files)?;
    parent_made(&a.junit)?;
    harness::report::write_junit(&a.junit, "iobench", &records)
        .with_context(|| format!("writing {}", a.junit.display()))?;
    eprintln!("JUnit report: {}", a.junit.display());
    if let Some(json) = &a.json {
        parent_made(json)?;
        harness::report::write_json(json, &records)
            .with_context(|| format!("writing {}", json.display()))?;
        eprintln!("JSON report: {}", json.display());
    }
    let summary = Summary::of(&records, a.files.len());
    println!("{summary}");
    if summary.failed() > 0 {
        let failed: Vec<&str> = records
            .iter()
            .filter(|r| matches!(r.status, TrialStatus::Failed { .. }))
            .map(|r| r.name.as_str())
            .collect();
        bail!(
            "{} failed: {}",
            plural(failed.len(), "trial"),
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, status: TrialStatus) -> TrialRecord {
        TrialRecord {
            name: name.into(),
            status,
            seconds: 2.0,
            log_dir: Some(format!("/logs/{}", name.replace("::", "/")).into()),
            steps: vec![],
        }
    }

    fn failed(message: &str) -> TrialStatus {
        TrialStatus::Failed {
            message: message.into(),
        }
    }

    fn ignored() -> TrialStatus {
        TrialStatus::Ignored {
            reason: Some("the guest lacks eeh".into()),
        }
    }

    fn expected() -> TrialStatus {
        TrialStatus::ExpectedFailure {
            message: "expected failure: known bug 0001".into(),
        }
    }

    /// Writes each shard's records as `test --json` does.
    fn shards(dir: &Path, shards: &[(&str, Vec<TrialRecord>)]) -> Vec<PathBuf> {
        shards
            .iter()
            .map(|(name, records)| {
                let path = dir.join(name);
                harness::report::write_json(&path, records).unwrap();
                path
            })
            .collect()
    }

    fn args(files: Vec<PathBuf>, dir: &Path) -> ReportArgs {
        ReportArgs {
            files,
            junit: dir.join("out/junit.xml"),
            json: Some(dir.join("out/results.json")),
        }
    }

    #[test]
    fn versions_come_from_the_name_prefix() {
        assert_eq!(version("pseries::boot"), (6, 12));
        assert_eq!(version("harness::two_vms_at_once"), (6, 12));
        assert_eq!(version("7.2::pseries-64k::windows::page_64k"), (7, 2));
        assert_eq!(
            version("7.2::q35::kselftest::iommufd::iommufd::simple_close"),
            (7, 2)
        );
        assert_eq!(version("10.1::q35::boot"), (10, 1));
        for not_one in ["7.2x::q35::boot", "7.::q35", ".2::q35", "7.2", ""] {
            assert_eq!(version(not_one), Linux::DEFAULT.number(), "{not_one}");
        }
    }

    #[test]
    fn disjoint_shards_merge_into_one_report() {
        let dir = tempfile::tempdir().unwrap();
        let files = shards(
            dir.path(),
            &[
                (
                    "6.12-pseries.json",
                    vec![
                        rec("pseries::windows::b", TrialStatus::Passed),
                        rec("pseries::boot", TrialStatus::Passed),
                        rec("pseries::eeh::x", ignored()),
                    ],
                ),
                (
                    "6.12-q35.json",
                    vec![
                        rec("q35::boot", TrialStatus::Passed),
                        rec("q35::d", expected()),
                    ],
                ),
                (
                    "7.2-q35.json",
                    vec![
                        rec("7.2::q35::boot", TrialStatus::Passed),
                        rec("7.2::q35::kselftest::iommufd::a", TrialStatus::Passed),
                        rec("7.2::q35::kselftest::iommufd::b", expected()),
                        rec("7.2::q35::kselftest::iommufd::c", expected()),
                    ],
                ),
                ("7.2-empty.json", vec![]),
            ],
        );
        let a = args(files, dir.path());
        run(&a).unwrap();

        let merged = harness::report::read_json(a.json.as_ref().unwrap()).unwrap();
        let names: Vec<&str> = merged.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "7.2::q35::boot",
                "7.2::q35::kselftest::iommufd::a",
                "7.2::q35::kselftest::iommufd::b",
                "7.2::q35::kselftest::iommufd::c",
                "pseries::boot",
                "pseries::eeh::x",
                "pseries::windows::b",
                "q35::boot",
                "q35::d",
            ]
        );
        assert_eq!(merged[5].status, ignored());
        assert_eq!(
            merged[0].log_dir.as_deref(),
            Some(Path::new("/logs/7.2/q35/boot"))
        );

        let xml = std::fs::read_to_string(&a.junit).unwrap();
        assert_eq!(junit_counts(&xml), (9, 0), "{xml}");

        let summary = Summary::of(&merged, 4);
        assert_eq!(
            summary.to_string(),
            "9 trials from 4 reports; \
             6.12: 3 passed, 0 failed, 1 ignored, 1 expected failure; \
             7.2: 2 passed, 0 failed, 0 ignored, 2 expected failures"
        );
    }

    /// Test cases and failures in a JUnit file (the harness's tests check
    /// the format itself).
    fn junit_counts(xml: &str) -> (usize, usize) {
        (
            xml.matches("<testcase ").count(),
            xml.matches("<failure").count(),
        )
    }

    #[test]
    fn a_failed_trial_fails_the_command_after_the_reports_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let files = shards(
            dir.path(),
            &[
                (
                    "a.json",
                    vec![rec("pseries::a", failed("=== x ===\nstep 3"))],
                ),
                (
                    "b.json",
                    vec![
                        rec("7.2::pseries::a", failed("=== y ===\nstep 4")),
                        rec("7.2::pseries::b", TrialStatus::Passed),
                    ],
                ),
            ],
        );
        let a = args(files, dir.path());
        let e = run(&a).unwrap_err().to_string();
        assert_eq!(e, "2 trials failed: 7.2::pseries::a, pseries::a");
        assert_eq!(
            junit_counts(&std::fs::read_to_string(&a.junit).unwrap()),
            (3, 2)
        );
        let merged = harness::report::read_json(a.json.as_ref().unwrap()).unwrap();
        let summary = Summary::of(&merged, 2);
        assert_eq!(summary.failed(), 2);
        assert_eq!(
            summary.versions[&(7, 2)],
            Counts {
                passed: 1,
                failed: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_trial_in_two_shards_is_an_error_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = shards(
            dir.path(),
            &[
                (
                    "6.12-pseries.json",
                    vec![
                        rec("pseries::boot", TrialStatus::Passed),
                        rec("pseries::lifecycle::gdbstub", TrialStatus::Passed),
                    ],
                ),
                (
                    "7.2-q35.json",
                    vec![rec("7.2::q35::boot", TrialStatus::Passed)],
                ),
                (
                    "7.2-pseries.json",
                    vec![
                        rec("7.2::pseries::boot", TrialStatus::Passed),
                        rec("pseries::lifecycle::gdbstub", failed("x")),
                    ],
                ),
            ],
        );
        let a = args(files, dir.path());
        let e = run(&a).unwrap_err().to_string();
        let p = |n: &str| dir.path().join(n).display().to_string();
        assert_eq!(
            e,
            format!(
                "the shards overlap (each trial must be in one report):\n  \
                 pseries::lifecycle::gdbstub is in {} and {}",
                p("6.12-pseries.json"),
                p("7.2-pseries.json")
            )
        );
        assert!(
            !a.junit.exists(),
            "nothing is written for overlapping shards"
        );
    }

    #[test]
    fn many_duplicates_are_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let twice: Vec<TrialRecord> = (0..13)
            .map(|i| rec(&format!("q35::t{i:02}"), TrialStatus::Passed))
            .collect();
        let files = shards(dir.path(), &[("a.json", twice.clone()), ("b.json", twice)]);
        let e = merge(&files).unwrap_err().to_string();
        assert_eq!(e.lines().count(), 1 + DUPLICATES_SHOWN + 1, "{e}");
        assert!(
            e.contains("q35::t09 is in") && !e.contains("q35::t10 is in"),
            "{e}"
        );
        assert!(e.ends_with("\n  and 3 more"), "{e}");
    }

    #[test]
    fn an_unreadable_report_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("7.2-pseries.json");
        std::fs::write(&bad, "[{\"name\": \"pseries::boot\"}]").unwrap();
        let missing = dir.path().join("6.12-q35.json");
        for (file, why) in [(&bad, "missing field"), (&missing, "No such file")] {
            let e = merge(std::slice::from_ref(file)).unwrap_err();
            let text = format!("{e:#}");
            assert!(
                text.starts_with(&format!("reading the report {}: ", file.display()))
                    && text.contains(why),
                "{text}"
            );
        }
    }
}
