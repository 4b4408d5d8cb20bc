//! Every trial's outcome is kept as a [`TrialRecord`] for the JUnit/JSON
//! reports, a panicking one too.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use harness::report::TrialRecord;
use iobench_tests::pool::{self, ScenarioTrial};
use libtest_mimic::{Completion, Failed};

/// Runs a trial body and keeps its record for the JUnit/JSON reports.
pub fn recorded(
    records: &Records,
    name: String,
    body: impl FnOnce() -> (Result<Completion, Failed>, Option<ScenarioTrial>) + Send + 'static,
) -> impl FnOnce() -> Result<Completion, Failed> + Send + 'static {
    let records = records.clone();
    move || {
        let t0 = Instant::now();
        // A panicking trial still gets a record (and so a JUnit entry).
        let (result, trial) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(r) => r,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                (
                    Err(format!("the trial panicked: {}", msg.unwrap_or_default()).into()),
                    None,
                )
            }
        };
        let rec = pool::record(&name, &result, t0.elapsed().as_secs_f64(), trial.as_ref());
        records.lock().unwrap_or_else(|p| p.into_inner()).push(rec);
        result
    }
}

pub type Records = Arc<Mutex<Vec<TrialRecord>>>;

pub trait CloneResult {
    fn clone_result(&self) -> Result<Completion, Failed>;
}

impl CloneResult for Result<Completion, Failed> {
    fn clone_result(&self) -> Result<Completion, Failed> {
        match self {
            Ok(Completion::Completed) => Ok(Completion::Completed),
            Ok(Completion::Ignored { reason }) => Ok(Completion::Ignored {
                reason: reason.clone(),
            }),
            Err(f) => Err(f.message().unwrap_or("failed").into()),
        }
    }
}
