//! Runs a scenario: resolves each step's `$references`, dispatches the
//! operation, compares the result with the expectation, and streams one
//! result per step.  The run stops at the first failed step (later steps
//! depend on earlier state) unless the scenario says `keep_going` (a
//! fuzzer's batch: every step runs and is reported, a step whose
//! `$reference` an earlier failure left unbound reports that as its
//! error), and everything the scenario opened is closed when it ends.

use std::collections::BTreeMap;
use std::time::Instant;

use iobench_proto::{Actual, Expect, Scenario, ScenarioOutcome, StepResult, ops};
use serde_json::Value;

use crate::args::{Args, resolve_value};
use crate::ctx::Ctx;
use crate::guard::Guard;
use crate::outcome::OpError;

/// Runs a scenario under `guard` (a lab target's policy, if any),
/// passing each step's result to `emit` as it finishes.
pub fn run(
    scenario: &Scenario,
    guard: Option<&Guard>,
    mut emit: impl FnMut(&StepResult) -> Result<(), String>,
) -> Result<ScenarioOutcome, String> {
    let mut ctx = Ctx::new(guard.cloned());
    // Results of steps with `bind = "name"`, for later `$name` references.
    let mut bound: BTreeMap<String, Value> = BTreeMap::new();
    let mut passed = true;
    let mut steps_run = 0;
    for (index, step) in scenario.steps.iter().enumerate() {
        let start = Instant::now();
        let mut outcome = match Args::resolve(step, &bound) {
            Ok(args) => crate::ops::dispatch(&mut ctx, &step.op, &args),
            Err(e) => Err(OpError::Error(e)),
        };
        let micros = start.elapsed().as_micros() as u64;
        // An expected value may refer to earlier results too (`value = "$hwpt"`).
        let expected = match &step.expect {
            Expect::Value(v) => match resolve_value(v, &bound) {
                Ok(r) => Expect::Value(r),
                Err(e) => {
                    outcome = Err(OpError::Error(format!("expect: {e}")));
                    step.expect.clone()
                }
            },
            other => other.clone(),
        };
        let actual = match outcome {
            Ok(v) => Actual::Value(v),
            Err(OpError::Errno(code)) => Actual::Errno {
                name: ops::errno_name(code),
                code,
            },
            Err(OpError::Error(e)) => Actual::Error(e),
        };
        let ok = ops::satisfies(&expected, &actual);
        if let (Some(name), Actual::Value(v)) = (&step.bind, &actual) {
            bound.insert(name.clone(), v.clone());
        }
        steps_run += 1;
        emit(&StepResult {
            index,
            op: step.op.clone(),
            expected,
            actual,
            passed: ok,
            micros,
        })?;
        if !ok {
            passed = false;
            if !scenario.keep_going {
                break;
            }
        }
    }
    Ok(ScenarioOutcome {
        name: scenario.name.clone(),
        steps_run,
        passed: passed && steps_run == scenario.steps.len(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use iobench_proto::{Actual, Expect, Scenario, Step};
    use serde_json::json;

    fn step(op: &str, args: serde_json::Value, expect: Expect, bind: Option<&str>) -> Step {
        let args: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(args).expect("an object");
        Step {
            op: op.into(),
            args,
            expect,
            bind: bind.map(String::from),
        }
    }

    /// A failed check, a step naming what a failed step never bound, and
    /// a passing step: with `keep_going` all three run and report.
    fn scenario(keep_going: bool) -> Scenario {
        Scenario {
            name: "keep_going".into(),
            steps: vec![
                step("check", json!({"value": 1, "eq": 2}), Expect::Ok, Some("x")),
                step("check", json!({"value": "$x"}), Expect::Ok, None),
                step("check", json!({"value": 3, "eq": 3}), Expect::Ok, None),
            ],
            keep_going,
        }
    }

    #[test]
    fn stops_at_the_first_failure_unless_told_to_keep_going() {
        let mut seen = Vec::new();
        let done = super::run(&scenario(false), None, |r| {
            seen.push(r.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!((done.steps_run, done.passed, seen.len()), (1, false, 1));
        seen.clear();
        let done = super::run(&scenario(true), None, |r| {
            seen.push(r.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!((done.steps_run, done.passed), (3, false));
        let passed: Vec<bool> = seen.iter().map(|r| r.passed).collect();
        assert_eq!(passed, [false, false, true]);
        assert!(
            matches!(&seen[1].actual, Actual::Error(e) if e.contains("never bound")),
            "{:?}",
            seen[1].actual
        );
    }
}
