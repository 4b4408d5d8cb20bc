//! Running a checked scenario on whatever hosts an agent: a booted
//! [`Vm`] or a real machine's session (`harness::target::Session`), both an
//! [`AgentHost`].  [`run_on`] sends the scenario, collects the step results
//! as they stream in and the kernel log written meanwhile, and keeps why a
//! run broke off (guest panic, agent crash, hang) for the failure report.
//! It also performs the scenario's host steps ([`host_step`]: `host.qmp`,
//! a QMP command on the machine's monitor) where they come, the agent
//! waiting for each.
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
    /// Its QMP monitor, for `host.qmp` steps (a QEMU machine's only).
    fn qmp_socket(&self) -> Option<&Path> {
        None
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
    fn qmp_socket(&self) -> Option<&Path> {
        Some(Vm::qmp_socket(self))
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

/// Runs a scenario on a machine's agent, calling `on_step` as each result
/// arrives.  Its host steps run here: `host.qmp` on the machine's QMP
/// monitor ([`host_step`]).
pub fn run_on(
    host: &mut dyn AgentHost,
    file: &ScenarioFile,
    mut on_step: impl FnMut(&StepResult),
) -> RunResult {
    let mut results = Vec::new();
    let kernel_release = host.agent().ok().map(|a| a.hello().kernel.clone());
    let qmp = host.qmp_socket().map(Path::to_path_buf);
    let outcome = (|| {
        let agent = host.agent()?;
        if let Err(e) = agent.dmesg() {
            return Err(host.explain(e)); // the kernel log delta starts here
        }
        let agent = host.agent()?;
        let usual = agent.reply_deadline();
        if let (Some(d), Some(u)) = (file.reply_deadline, usual)
            && d < u
            && let Err(e) = agent.set_reply_deadline(d)
        {
            return Err(host.explain(e));
        }
        let run = agent.run_hosted(
            &file.scenario,
            |s| host_step(s, qmp.as_deref()),
            |r| {
                on_step(r);
                results.push(r.clone());
            },
        );
        // The machine's own deadline again.  (A run that broke leaves an
        // agent every caller drops: nothing to give it back to.)
        let outcome = run.map_err(|e| host.explain(e))?;
        if let (Some(_), Some(u)) = (file.reply_deadline, usual) {
            let agent = host.agent()?;
            agent.set_reply_deadline(u).map_err(|e| host.explain(e))?;
        }
        Ok(outcome)
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

/// Performs a host step whose request (the agent's result for it) is
/// `step.actual`: `host.qmp` runs `{"execute", "arguments"}` on `qmp`, the
/// machine's monitor, and yields QMP's `return`.
pub fn host_step(step: &StepResult, qmp: Option<&Path>) -> Result<serde_json::Value, String> {
    let iobench_proto::Actual::Value(request) = &step.actual else {
        return Err(format!("{}: no request from the agent", step.op));
    };
    match step.op.as_str() {
        "host.qmp" => {
            let socket =
                qmp.ok_or("host.qmp: this host has no QMP monitor (QEMU machines only)")?;
            let (Some(command), Some(arguments)) = (
                request.get("execute").and_then(|c| c.as_str()),
                request.get("arguments"),
            ) else {
                return Err(format!("host.qmp: malformed request {request}"));
            };
            crate::qmp::execute(socket, command, arguments.clone()).map_err(|e| {
                let e = e.to_string();
                if e.starts_with("QMP ") {
                    e
                } else {
                    format!("QMP {command}: {e}")
                }
            })
        }
        other => Err(format!("{other}: no such host step")),
    }
}
