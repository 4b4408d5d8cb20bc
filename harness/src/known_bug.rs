//! Known bugs: a scenario that states the correct behaviour, which kernels
//! without a fix get wrong (`known_bug = { id = "0001", reason = "…" }` and
//! `bug = "0001"` on the steps where it shows; see
//! `harness::scenario_file`).  The fix is `kernel-patches/fixes/0001-*.patch`.
//!
//! On a kernel built with the fix (`--patch kernel-patches/fixes/0001-….patch`),
//! or a release that has it upstream (`fixed_in = ["7.2.8"]`: that release of
//! its stable series and later ones, and every newer series), such a
//! scenario is judged like any other: it must pass.  Without the fix
//! it must fail at a marked step (a wrong result there, the guest kernel
//! crashing during it, or — when every step passed — a kernel report such
//! as a WARNING during the last step, if that one is marked; see
//! `harness::kernel_log`): that is an *expected failure*, reported as
//! such, never as a pass.  A failure anywhere else is an ordinary failure,
//! and a pass means the bug went away (a tree that has the fix, or a
//! scenario that no longer shows it): reported as a failure too, so
//! nobody mistakes it for the expected outcome.

use std::path::Path;

use crate::release::released_with_fix;
use crate::report;
use crate::scenario::RunResult;
use crate::scenario_file::{KnownBug, ScenarioFile};

/// Where the fix patches live, relative to the repository.
pub const FIXES_DIR: &str = "kernel-patches/fixes";

/// How a run of a scenario is to be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// As it is: no known bug, or the kernel has the fix.
    AsIs,
    /// The known bug showed where the scenario says it does.
    Expected(String),
    /// The kernel lacks the fix, yet the bug did not show.
    Vanished(String),
}

/// True if one of the kernel's `patches` (file names or paths) is the fix of `id`.
pub fn fixed(id: &str, patches: &[String]) -> bool {
    let prefix = format!("{id}-");
    patches.iter().any(|p| {
        Path::new(p)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".patch"))
    })
}

/// Judges `run` of `file` on a kernel built with `patches`.
pub fn judge(file: &ScenarioFile, run: &RunResult, patches: &[String]) -> Verdict {
    // The scenario's bugs this kernel still has: no fix patch, no release
    // with the fix upstream.
    let unfixed: Vec<&KnownBug> = file
        .known_bugs
        .iter()
        .filter(|b| {
            !fixed(&b.id, patches)
                && !run
                    .kernel_release
                    .as_deref()
                    .is_some_and(|k| released_with_fix(k, &b.fixed_in))
        })
        .collect();
    if unfixed.is_empty() {
        return Verdict::AsIs;
    }
    if run.passed() {
        return Verdict::Vanished(vanished(&unfixed));
    }
    // The unfixed bugs marked on step `i`.
    let shown_at = |i: usize| -> Vec<&KnownBug> {
        let marked = file
            .bug_steps
            .iter()
            .find(|(s, _)| *s == i)
            .map(|(_, ids)| ids.as_slice())
            .unwrap_or_default();
        unfixed
            .iter()
            .copied()
            .filter(|b| marked.contains(&b.id))
            .collect()
    };
    // What the kernel said about itself, to add to the expected failure.
    let kernel = run
        .kernel
        .unexpected
        .first()
        .map(|r| format!("the kernel reported {}", r.describe()));
    let failed_step = run.results.iter().find(|r| !r.passed);
    let (step, what) = match (failed_step, &run.outcome) {
        (Some(r), _) => (
            r.index,
            match &kernel {
                Some(k) => format!("{}; {k}", report::step_outcome(file, r)),
                None => report::step_outcome(file, r),
            },
        ),
        // Every step passed, but the kernel reported during the last one.
        (None, Ok(o)) if o.passed && kernel.is_some() => {
            let r = run.results.last().map_or(0, |r| r.index);
            (
                r,
                format!(
                    "step {r} (line {}) {}: {}",
                    report::origin(file, r),
                    file.scenario.steps.get(r).map_or("?", |s| s.op.as_str()),
                    kernel.unwrap_or_default()
                ),
            )
        }
        // The run broke off (guest kernel crash, hang) in the step after the last result.
        (None, Err(cause)) => {
            let i = run.results.len();
            let op = file.scenario.steps.get(i).map_or("?", |s| s.op.as_str());
            let cause = report::chain(&**cause);
            let first = cause.lines().next().unwrap_or_default();
            (
                i,
                format!(
                    "step {i} (line {}) {op}: the run broke off: {first}",
                    report::origin(file, i)
                ),
            )
        }
        _ => return Verdict::AsIs,
    };
    let shown = shown_at(step);
    if shown.is_empty() {
        return Verdict::AsIs;
    }
    let bugs: Vec<String> = shown
        .iter()
        .map(|b| format!("known bug {} ({})", b.id, b.reason))
        .collect();
    Verdict::Expected(format!("expected failure: {}: {what}", bugs.join(" or ")))
}

fn vanished(unfixed: &[&KnownBug]) -> String {
    let ids: Vec<&str> = unfixed.iter().map(|b| b.id.as_str()).collect();
    let reasons: Vec<&str> = unfixed.iter().map(|b| b.reason.as_str()).collect();
    let patches: Vec<String> = ids
        .iter()
        .map(|id| format!("{FIXES_DIR}/{id}-*.patch"))
        .collect();
    format!(
        "known bug {} did not show ({}): the scenario passed on a kernel built \
         without {} and released without the fix.  If the tree has the fix, build \
         with `--patch …` (or `--fixes`) or add the release to fixed_in; otherwise \
         the scenario no longer shows the bug.",
        ids.join(", "),
        reasons.join("; "),
        patches.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario_file::ScenarioFile;
    use iobench_proto::{Actual, Expect, ScenarioOutcome, StepResult};

    const TEXT: &str = r#"description = "misaligned map"
machines = ["pseries"]
known_bug = { id = "0001", reason = "MAP_DMA returns 1" }

[[step]]
op = "mem.alloc"
size = "4K"
bind = "b"

[[step]]
op = "debug.sleep"
ms = 1
expect = { errno = "EINVAL" }
bug = "0001"
"#;

    fn file() -> ScenarioFile {
        ScenarioFile::parse(TEXT, Path::new("s.toml"), "s").unwrap()
    }

    fn step(index: usize, passed: bool, actual: Actual) -> StepResult {
        StepResult {
            index,
            op: if index == 0 {
                "mem.alloc"
            } else {
                "debug.sleep"
            }
            .into(),
            expected: if index == 0 {
                Expect::Ok
            } else {
                Expect::Errno("EINVAL".into())
            },
            actual,
            passed,
            micros: 1,
        }
    }

    fn einval() -> Actual {
        Actual::Errno {
            name: "EINVAL".into(),
            code: 22,
        }
    }

    fn run(results: Vec<StepResult>, outcome: Result<bool, &str>) -> RunResult {
        RunResult {
            outcome: outcome
                .map(|passed| ScenarioOutcome {
                    name: "s".into(),
                    passed,
                    steps_run: results.len(),
                })
                .map_err(|e| e.into()),
            results,
            dmesg: vec![],
            kernel_release: Some("6.12.95".into()),
            kernel: Default::default(),
        }
    }

    #[test]
    fn marked_steps_are_read_and_checked() {
        let f = file();
        assert_eq!(f.known_bugs[0].id, "0001");
        assert_eq!(f.bug_steps, vec![(1, vec!["0001".to_string()])]);
        // Several bugs: one table each, a step may show either.
        let two = TEXT
            .replace(
                "known_bug = { id = \"0001\", reason = \"MAP_DMA returns 1\" }",
                "known_bug = [{ id = \"0001\", reason = \"a\" }, { id = \"0003\", reason = \"b\" }]",
            )
            .replace("bug = \"0001\"", "bug = [\"0001\", \"0003\"]");
        let f2 = ScenarioFile::parse(&two, Path::new("s.toml"), "s").unwrap();
        assert_eq!(f2.known_bugs.len(), 2);
        assert_eq!(
            f2.bug_steps,
            vec![(1, vec!["0001".to_string(), "0003".to_string()])]
        );
        let unmarked = two.replace("bug = [\"0001\", \"0003\"]", "bug = \"0001\"");
        let e = ScenarioFile::parse(&unmarked, Path::new("s.toml"), "s").unwrap_err();
        assert!(
            e.to_string()
                .contains("known bug \"0003\" needs at least one step"),
            "{e}"
        );
        let other = TEXT.replace("bug = \"0001\"", "bug = \"0002\"");
        let e = ScenarioFile::parse(&other, Path::new("s.toml"), "s").unwrap_err();
        assert!(
            e.to_string().contains("s.toml:14: bug = \"0002\", but"),
            "{e}"
        );
        let unmarked = TEXT.replace("bug = \"0001\"\n", "");
        let e = ScenarioFile::parse(&unmarked, Path::new("s.toml"), "s").unwrap_err();
        assert!(
            e.to_string()
                .contains("s.toml:3: known bug \"0001\" needs at least one step"),
            "{e}"
        );
        let bad_id = TEXT.replace("id = \"0001\"", "id = \"one\"");
        let e = ScenarioFile::parse(&bad_id, Path::new("s.toml"), "s").unwrap_err();
        assert!(e.to_string().contains("must be the four digits"), "{e}");
        let orphan = TEXT.replace(
            "known_bug = { id = \"0001\", reason = \"MAP_DMA returns 1\" }\n",
            "",
        );
        let e = ScenarioFile::parse(&orphan, Path::new("s.toml"), "s").unwrap_err();
        assert!(e.to_string().contains("needs known_bug"), "{e}");
    }

    /// unmap_crossing_window_end: 0003 (fixed upstream in 7.2.8) and 0001
    /// (the `||` turning EINVAL into 1) both show at the same step.
    #[test]
    fn two_bugs_at_one_step() {
        let text = TEXT
            .replace(
                "known_bug = { id = \"0001\", reason = \"MAP_DMA returns 1\" }",
                "known_bug = [{ id = \"0001\", reason = \"returns 1\" }, { id = \"0003\", reason = \"returns 0\", fixed_in = [\"7.2.8\"] }]",
            )
            .replace("bug = \"0001\"", "bug = [\"0001\", \"0003\"]");
        let f = ScenarioFile::parse(&text, Path::new("s.toml"), "s").unwrap();
        let ok = Actual::Value(serde_json::Value::Null);
        let on = |release: &str, actual: serde_json::Value| {
            let mut r = run(
                vec![
                    step(0, true, ok.clone()),
                    step(1, false, Actual::Value(actual)),
                ],
                Ok(false),
            );
            r.kernel_release = Some(release.into());
            r
        };
        let p = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let expected = |v: Verdict| match v {
            Verdict::Expected(m) => m,
            v => panic!("{v:?}"),
        };
        // 6.12, nothing applied: returns 0, both bugs are still there.
        let m = expected(judge(&f, &on("6.12.95", serde_json::json!(0)), &[]));
        assert!(
            m.contains("known bug 0001 (returns 1) or known bug 0003 (returns 0)"),
            "{m}"
        );
        // 6.12 with 0003 only: returns 1, that is 0001.
        let m = expected(judge(
            &f,
            &on("6.12.95", serde_json::json!(1)),
            &p(&["0003-x.patch"]),
        ));
        assert!(
            m.starts_with("expected failure: known bug 0001 (returns 1): step 1"),
            "{m}"
        );
        // 7.2.13 has 0003 upstream: returns 1, that is 0001.
        let m = expected(judge(&f, &on("7.2.13", serde_json::json!(1)), &[]));
        assert!(
            m.starts_with("expected failure: known bug 0001 (returns 1): step 1"),
            "{m}"
        );
        // 7.2.13 with 0001: nothing left to expect.
        assert_eq!(
            judge(
                &f,
                &on("7.2.13", serde_json::json!(1)),
                &p(&["0001-x.patch"])
            ),
            Verdict::AsIs
        );
        // 6.12 with 0001 only, passing: 0003 did not show.
        let mut passed = run(
            vec![step(0, true, ok.clone()), step(1, true, einval())],
            Ok(true),
        );
        passed.kernel_release = Some("6.12.95".into());
        assert!(
            matches!(judge(&f, &passed, &p(&["0001-x.patch"])), Verdict::Vanished(m) if m.starts_with("known bug 0003 did not show"))
        );
    }

    #[test]
    fn fixed_in_must_name_releases() {
        let text = TEXT.replace(
            "reason = \"MAP_DMA returns 1\" }",
            "reason = \"MAP_DMA returns 1\", fixed_in = [\"7.2.x\"] }",
        );
        let e = ScenarioFile::parse(&text, Path::new("s.toml"), "s").unwrap_err();
        assert!(
            e.to_string()
                .contains("s.toml:3: known_bug fixed_in \"7.2.x\""),
            "{e}"
        );
    }

    #[test]
    fn the_fix_is_found_by_its_number() {
        let p = |s: &str| vec![s.to_string()];
        assert!(fixed(
            "0001",
            &p("kernel-patches/fixes/0001-vfio-spapr.patch")
        ));
        assert!(fixed("0001", &p("0001-x.patch")));
        assert!(!fixed("0001", &p("0010-x.patch")));
        assert!(!fixed("0001", &p("fixes/0001-x.txt")));
        assert!(!fixed("0001", &[]));
    }

    /// Every known bug of the catalogue has its fix patch, and every fix
    /// patch is some scenario's known bug.
    #[test]
    fn the_catalogue_and_the_fixes_match() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = crate::scenario_file::load_dir(&repo.join("scenarios")).unwrap();
        let mut fixes: Vec<String> = std::fs::read_dir(repo.join(FIXES_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".patch"))
            .collect();
        fixes.sort();
        // A fix is shown by a scenario's known_bug, or by upstream selftest
        // cases declared to fail without it (selftests/expectations.toml).
        let expectations = crate::kselftest::expectations::Expectations::load(
            &repo.join(crate::kselftest::expectations::FILE),
        )
        .unwrap();
        let ids: std::collections::BTreeSet<&str> = files
            .iter()
            .flat_map(|f| f.known_bugs.iter().map(|b| b.id.as_str()))
            .chain(expectations.entries.iter().filter_map(|e| e.bug.as_deref()))
            .collect();
        for id in &ids {
            assert!(
                fixed(id, &fixes),
                "known bug {id} has no {FIXES_DIR}/{id}-*.patch"
            );
        }
        for f in &fixes {
            assert!(
                ids.iter().any(|id| f.starts_with(&format!("{id}-"))),
                "{FIXES_DIR}/{f} is no scenario's known_bug and no expectation's bug"
            );
        }
        assert!(ids.len() >= 3, "{ids:?}");
    }

    #[test]
    fn verdicts() {
        let f = file();
        let wrong = Actual::Value(serde_json::json!(1));
        let at_bug = run(
            vec![
                step(0, true, Actual::Value(serde_json::Value::Null)),
                step(1, false, wrong.clone()),
            ],
            Ok(false),
        );
        match judge(&f, &at_bug, &[]) {
            Verdict::Expected(m) => assert!(
                m.contains("known bug 0001 (MAP_DMA returns 1): step 1 (line 10) debug.sleep: expected EINVAL, actual ok = 1"),
                "{m}"
            ),
            v => panic!("{v:?}"),
        }
        // On a release that has the fix upstream, it is an ordinary failure too.
        let mut upstream = run(at_bug.results.clone(), Ok(false));
        upstream.kernel_release = Some("7.2.13".into());
        let with_upstream_fix = ScenarioFile::parse(
            &TEXT.replace("returns 1\" }", "returns 1\", fixed_in = [\"7.2.8\"] }"),
            Path::new("s.toml"),
            "s",
        )
        .unwrap();
        assert_eq!(judge(&with_upstream_fix, &upstream, &[]), Verdict::AsIs);
        assert!(matches!(judge(&f, &upstream, &[]), Verdict::Expected(_)));
        // With the fix, the same run is an ordinary failure.
        assert_eq!(
            judge(&f, &at_bug, &["0001-fix.patch".into()]),
            Verdict::AsIs
        );
        // A failure in an unmarked step is not the known bug.
        let early = run(vec![step(0, false, wrong)], Ok(false));
        assert_eq!(judge(&f, &early, &[]), Verdict::AsIs);
        // A crash during the marked step is.
        let crash = run(
            vec![step(0, true, Actual::Value(serde_json::Value::Null))],
            Err("kernel BUG at stage \"running\": Unable to handle kernel data access\nmore"),
        );
        match judge(&f, &crash, &[]) {
            Verdict::Expected(m) => assert!(
                m.ends_with("step 1 (line 10) debug.sleep: the run broke off: kernel BUG at stage \"running\": Unable to handle kernel data access"),
                "{m}"
            ),
            v => panic!("{v:?}"),
        }
        // A crash in an unmarked step is not.
        let early_crash = run(vec![], Err("agent exited"));
        assert_eq!(judge(&f, &early_crash, &[]), Verdict::AsIs);
        // Passing without the fix: the bug went away.
        let passed = run(
            vec![
                step(0, true, Actual::Value(serde_json::Value::Null)),
                step(1, true, einval()),
            ],
            Ok(true),
        );
        assert!(
            matches!(judge(&f, &passed, &[]), Verdict::Vanished(m) if m.contains("did not show"))
        );
        assert_eq!(
            judge(&f, &passed, &["0001-fix.patch".into()]),
            Verdict::AsIs
        );
    }

    /// Every step passed, but the kernel warned: during the last step, if
    /// it is marked, that is the known bug showing.
    #[test]
    fn a_kernel_report_during_the_marked_step() {
        let f = file();
        let ok = Actual::Value(serde_json::Value::Null);
        let einval = einval();
        let warn = [
            "[    7.000001] ------------[ cut here ]------------",
            "[    7.000002] WARNING: CPU: 0 PID: 95 at drivers/vfio/vfio_iommu_spapr_tce.c:812 tce_iommu_ioctl+0x5c4/0x7a0",
            "[    7.000003] ---[ end trace 0000000000000000 ]---",
        ];
        let mut warned = run(
            vec![step(0, true, ok.clone()), step(1, true, einval.clone())],
            Ok(true),
        );
        warned.kernel = crate::kernel_log::check(&warn, None);
        assert!(!warned.passed());
        match judge(&f, &warned, &[]) {
            Verdict::Expected(m) => assert!(
                m.ends_with("known bug 0001 (MAP_DMA returns 1): step 1 (line 10) debug.sleep: the kernel reported WARNING: CPU: 0 PID: 95 at drivers/vfio/vfio_iommu_spapr_tce.c:812 tce_iommu_ioctl+0x5c4/0x7a0"),
                "{m}"
            ),
            v => panic!("{v:?}"),
        }
        // With the fix it is an ordinary failure (the report fails the run).
        assert_eq!(judge(&f, &warned, &["0001-x.patch".into()]), Verdict::AsIs);
        // A wrong result at the marked step says what the kernel reported too.
        let mut both = run(
            vec![step(0, true, ok.clone()), step(1, false, ok.clone())],
            Ok(false),
        );
        both.kernel = crate::kernel_log::check(&warn, None);
        assert!(
            matches!(judge(&f, &both, &[]), Verdict::Expected(m) if m.contains("actual ok; the kernel reported WARNING: CPU: 0"))
        );
        // A report when the last step run is not marked is not the known bug.
        let mut early = run(vec![step(0, true, ok)], Ok(true));
        early.kernel = crate::kernel_log::check(&warn, None);
        assert_eq!(judge(&f, &early, &[]), Verdict::AsIs);
        // An expected warning is no report: the run passed, the bug did not show.
        let mut declared = run(
            vec![
                step(0, true, Actual::Value(serde_json::Value::Null)),
                step(1, true, einval),
            ],
            Ok(true),
        );
        declared.kernel = crate::kernel_log::check(&warn, Some("tce_iommu_ioctl"));
        assert!(matches!(judge(&f, &declared, &[]), Verdict::Vanished(_)));
    }
}
