//! Known bugs: a scenario that states the correct behaviour, which kernels
//! without a fix get wrong (`known_bug = { id = "0001", reason = "…" }` and
//! `bug = "0001"` on the steps where it shows; see
//! `harness::scenario_file`).  The fix is `kernel-patches/fixes/0001-*.patch`.
//!
//! On a kernel built with the fix (`--patch kernel-patches/fixes/0001-….patch`)
//! such a scenario is judged like any other: it must pass.  Without the fix
//! it must fail at a marked step (a wrong result there, the guest kernel
//! crashing during it, or — when every step passed — a kernel report such
//! as a WARNING during the last step, if that one is marked; see
//! `harness::kernel_log`): that is an *expected failure*, reported as
//! such, never as a pass.  A failure anywhere else is an ordinary failure,
//! and a pass means the bug went away (a tree that has the fix, or a
//! scenario that no longer shows it): reported as a failure too, so
//! nobody mistakes it for the expected outcome.

use std::path::Path;

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
    let Some(bug) = &file.known_bug else {
        return Verdict::AsIs;
    };
    if fixed(&bug.id, patches) {
        return Verdict::AsIs;
    }
    let failed_step = run.results.iter().find(|r| !r.passed);
    // What the kernel said about itself, to add to the expected failure.
    let kernel = run
        .kernel
        .unexpected
        .first()
        .map(|r| format!("the kernel reported {}", r.describe()));
    let what = match (failed_step, &run.outcome) {
        (_, Ok(_)) if run.passed() => return Verdict::Vanished(vanished(bug)),
        (Some(r), _) if file.bug_steps.contains(&r.index) => match &kernel {
            Some(k) => format!("{}; {k}", report::step_outcome(file, r)),
            None => report::step_outcome(file, r),
        },
        // Every step passed, but the kernel reported during the last, marked, one.
        (None, Ok(o))
            if o.passed
                && kernel.is_some()
                && run
                    .results
                    .last()
                    .is_some_and(|r| file.bug_steps.contains(&r.index)) =>
        {
            let r = run.results.last().map_or(0, |r| r.index);
            format!(
                "step {r} (line {}) {}: {}",
                report::origin(file, r),
                file.scenario.steps.get(r).map_or("?", |s| s.op.as_str()),
                kernel.unwrap_or_default()
            )
        }
        // The run broke off (guest kernel crash, hang) in a marked step.
        (None, Err(cause)) if file.bug_steps.contains(&run.results.len()) => {
            let i = run.results.len();
            let op = file.scenario.steps.get(i).map_or("?", |s| s.op.as_str());
            let cause = report::chain(&**cause);
            let first = cause.lines().next().unwrap_or_default();
            format!(
                "step {i} (line {}) {op}: the run broke off: {first}",
                report::origin(file, i)
            )
        }
        _ => return Verdict::AsIs,
    };
    Verdict::Expected(format!(
        "expected failure: known bug {} ({}): {what}",
        bug.id, bug.reason
    ))
}

fn vanished(bug: &KnownBug) -> String {
    format!(
        "known bug {id} did not show ({reason}): the scenario passed on a kernel built \
         without {FIXES_DIR}/{id}-*.patch.  If the tree has the fix, build with \
         `--patch {FIXES_DIR}/{id}-….patch` or drop known_bug; otherwise the scenario \
         no longer shows the bug.",
        id = bug.id,
        reason = bug.reason
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
            kernel: Default::default(),
        }
    }

    #[test]
    fn marked_steps_are_read_and_checked() {
        let f = file();
        assert_eq!(f.known_bug.as_ref().unwrap().id, "0001");
        assert_eq!(f.bug_steps, vec![1]);
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
                .contains("s.toml:3: known_bug needs at least one step"),
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
        let ids: std::collections::BTreeSet<&str> = files
            .iter()
            .filter_map(|f| f.known_bug.as_ref().map(|b| b.id.as_str()))
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
                "{FIXES_DIR}/{f} is no scenario's known_bug"
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
                step(
                    1,
                    true,
                    Actual::Errno {
                        name: "EINVAL".into(),
                        code: 22,
                    },
                ),
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
        let einval = Actual::Errno {
            name: "EINVAL".into(),
            code: 22,
        };
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
