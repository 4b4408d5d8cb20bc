//! Runs a scenario: resolves each step's `$references`, dispatches the
//! operation, compares the result with the expectation, and streams one
//! result per step.  The run stops at the first failed step (later steps
//! depend on earlier state), and everything the scenario opened is closed
//! when it ends.

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
            break;
        }
    }
    Ok(ScenarioOutcome {
        name: scenario.name.clone(),
        steps_run,
        passed: passed && steps_run == scenario.steps.len(),
    })
}
