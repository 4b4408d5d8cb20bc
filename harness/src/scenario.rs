//! Running a checked scenario on whatever hosts an agent: a booted
//! [`Vm`] or a real machine's session (`harness::target::Session`), both an
//! [`AgentHost`].  [`run_on`] sends the scenario, collects the step results
//! as they stream in and the kernel log written meanwhile, and keeps why a
//! run broke off (guest panic, agent crash, hang) for the failure report.
//! A run passes when every step passed and the kernel reported nothing it
//! should not have ([`crate::kernel_log::check`], with the scenario's
//! `expect_kernel_warning`).
//!
//! The file format and its checks are [`crate::scenario_file`] (re-exported
//! here, so `harness::scenario::ScenarioFile` keeps working); the texts for
//! people are [`crate::report`].

use std::path::Path;

use iobench_proto::{ScenarioOutcome, StepResult};

use crate::kernel_log;
use crate::report;
pub use crate::scenario_file::{ScenarioError, ScenarioFile, load_dir, name_for};
use crate::vm::Vm;

/// An error from whatever runs the agent, already explained (cause, logs).
pub type HostError = Box<dyn std::error::Error + Send + Sync>;

/// What a scenario runs on: a booted [`Vm`] or a real machine's session
/// (`harness::target::Session`), anything with an agent and logs.
pub trait AgentHost {
    /// The agent session.
    fn agent(&mut self) -> Result<&mut crate::agent::Agent, HostError>;
    /// Turns an agent error into one that names the cause (console, process state).
    fn explain(&mut self, e: crate::agent::AgentError) -> HostError;
    /// The last `n` console lines, if there is a console.
    fn console_tail(&self, n: usize) -> Vec<String>;
    /// Where this host's logs are.
    fn log_dir(&self) -> &Path;
    /// The patches its kernel was built with (file names; none known for a
    /// real machine), for `harness::known_bug`.
    fn kernel_patches(&self) -> &[String] {
        &[]
    }
}

impl AgentHost for Vm {
    fn agent(&mut self) -> Result<&mut crate::agent::Agent, HostError> {
        Vm::agent(self).map_err(Into::into)
    }
    fn explain(&mut self, e: crate::agent::AgentError) -> HostError {
        Box::new(Vm::explain(self, e))
    }
    fn console_tail(&self, n: usize) -> Vec<String> {
        Vm::console_tail(self, n)
    }
    fn log_dir(&self) -> &Path {
        Vm::log_dir(self)
    }
    fn kernel_patches(&self) -> &[String] {
        Vm::kernel_patches(self)
    }
}

/// What running one scenario on a machine gave.
#[derive(Debug)]
pub struct RunResult {
    /// Step results, in order, as they streamed in.
    pub results: Vec<StepResult>,
    /// The agent's summary, or why the run broke off (guest panic, agent crash, hang).
    pub outcome: Result<ScenarioOutcome, HostError>,
    /// Kernel log lines logged while the scenario ran.
    pub dmesg: Vec<String>,
    /// The kernel's release as the agent reported it (`uname -r`), if known.
    pub kernel_release: Option<String>,
    /// The kernel's own reports in `dmesg` (WARNING, BUG, lockdep, …),
    /// judged against the scenario's `expect_kernel_warning`; clean when
    /// the run broke off (the cause and console tail say what happened).
    pub kernel: kernel_log::Verdict,
}

impl RunResult {
    /// True if every step ran and passed, and the kernel reported nothing unexpected.
    pub fn passed(&self) -> bool {
        matches!(&self.outcome, Ok(o) if o.passed) && self.kernel.is_clean()
    }

    /// The framed failure report (see [`report::failure`]); the cause is
    /// given with its whole chain.
    pub fn failure_report(&self, file: &ScenarioFile, host: &dyn AgentHost) -> String {
        report::failure(&report::Failure {
            file,
            results: &self.results,
            cause: self.outcome.as_ref().err().map(|e| report::chain(&**e)),
            console_tail: host.console_tail(30),
            dmesg: self.dmesg.clone(),
            kernel: self.kernel.headline(),
            kernel_reports: self.kernel.details(),
            log_dir: host.log_dir(),
        })
    }
}

/// Runs a scenario on a machine's agent, calling `on_step` as each result arrives.
pub fn run_on(
    host: &mut dyn AgentHost,
    file: &ScenarioFile,
    mut on_step: impl FnMut(&StepResult),
) -> RunResult {
    let mut results = Vec::new();
    let kernel_release = host.agent().ok().map(|a| a.hello().kernel.clone());
    let outcome = (|| {
        let agent = host.agent()?;
        if let Err(e) = agent.dmesg() {
            return Err(host.explain(e)); // the kernel log delta starts here
        }
        let agent = host.agent()?;
        let run = agent.run(&file.scenario, |r| {
            on_step(r);
            results.push(r.clone());
        });
        run.map_err(|e| host.explain(e))
    })();
    let dmesg = match (&outcome, host.agent()) {
        (Ok(_), Ok(agent)) => agent.dmesg().unwrap_or_default(),
        _ => Vec::new(),
    };
    let kernel = match &outcome {
        Ok(_) => kernel_log::check(&dmesg, file.expect_kernel_warning.as_deref()),
        Err(_) => kernel_log::Verdict::default(),
    };
    RunResult {
        results,
        outcome,
        dmesg,
        kernel_release,
        kernel,
    }
}
