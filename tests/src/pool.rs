//! Scenario trials share machines: each machine definition is booted once
//! and its scenarios run one after another in it, while different machines
//! run in parallel.  A scenario that declares `fresh_vm` gets a machine of
//! its own.  When a run breaks the machine (guest panic, hang, agent crash, or
//! a kernel report such as a WARNING the scenario did not expect),
//! the trial fails with the cause and the next trial boots a fresh one; a
//! machine that cannot boot twice in a row fails its remaining trials at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use harness::known_bug::{self, Verdict};
use harness::linux::Guest;
use harness::proto::StepResult;
use harness::qemu::GuestMode;
use harness::report::{TrialRecord, chain};
use harness::scenario::{AgentHost, ScenarioFile, run_on};
use harness::target::{Session, TargetDef};
use harness::vm::Vm;
use libtest_mimic::{Completion, Failed};

use harness::manifest::Manifest;

struct Slot {
    vm: Option<Vm>,
    features: Vec<String>,
    boots: usize,
    failed_boots: usize,
}

/// Booted machines, by machine definition name and kernel version.
pub struct Pool {
    manifest: Manifest,
    slots: BTreeMap<Guest, Mutex<Slot>>,
}

/// The outcome of a scenario trial, with what the JUnit/JSON record needs.
pub struct ScenarioTrial {
    /// Passed, ignored (missing feature) or failed (with the report).
    pub result: Result<Completion, Failed>,
    /// Where that run's logs are.
    pub log_dir: Option<PathBuf>,
    /// Step results.
    pub steps: Vec<StepResult>,
    /// The run broke off (guest panic, hang, agent crash) or the kernel
    /// reported what the scenario did not expect: the machine is not reusable.
    pub machine_broken: bool,
    /// The scenario's known bug showed as declared (the trial reports as
    /// ignored with this text; the records say expected failure).
    pub expected_failure: Option<String>,
}

impl ScenarioTrial {
    /// A trial that does not run here, and why.
    fn ignored(reason: String, log_dir: Option<PathBuf>) -> ScenarioTrial {
        ScenarioTrial {
            result: Ok(Completion::ignored_with(reason)),
            log_dir,
            steps: Vec::new(),
            machine_broken: false,
            expected_failure: None,
        }
    }
}

impl Pool {
    /// A pool for these machines on every kernel version of the manifest
    /// (none booted yet).
    pub fn new(manifest: Manifest, machines: impl IntoIterator<Item = String>) -> Pool {
        let versions = manifest.versions();
        let slots = machines
            .into_iter()
            .flat_map(|m| versions.iter().map(move |l| Guest::new(m.clone(), *l)))
            .map(|g| {
                (
                    g,
                    Mutex::new(Slot {
                        vm: None,
                        features: Vec::new(),
                        boots: 0,
                        failed_boots: 0,
                    }),
                )
            })
            .collect();
        Pool { manifest, slots }
    }

    fn boot(&self, guest: &Guest, log_name: &str) -> Result<(Vm, Vec<String>), String> {
        let spec = self
            .manifest
            .spec_on(guest, log_name, GuestMode::Agent)
            .map_err(|e| chain(&e))?;
        let mut vm = Vm::boot(spec).map_err(|e| chain(&e))?;
        let inv = match vm.agent() {
            Ok(a) => a.inventory().map_err(|e| chain(&vm.explain(e)))?,
            Err(e) => return Err(chain(&e)),
        };
        Ok((vm, inv.features))
    }

    /// Runs one scenario on `guest` (a machine on a kernel version); a
    /// scenario for newer kernels (`min_linux`) is ignored with the reason.
    pub fn run(&self, guest: &Guest, file: &ScenarioFile) -> ScenarioTrial {
        if let Some(reason) = file.too_old(guest.linux) {
            return ScenarioTrial::ignored(reason, None);
        }
        let trial = format!("{guest}::{}", file.name());
        if file.fresh_vm {
            let log_name = trial.replace("::", "/");
            return match self.boot(guest, &log_name) {
                Ok((mut vm, features)) => {
                    let out = run_scenario(&mut vm, &features, file);
                    let _ = vm.poweroff();
                    out
                }
                Err(e) => failed_boot(e),
            };
        }
        let Some(slot) = self.slots.get(guest) else {
            return failed_boot(format!("machine {guest} is not in this run"));
        };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.vm.is_none() {
            if slot.failed_boots >= 2 {
                return failed_boot(format!("{guest} failed to boot twice; not trying again"));
            }
            slot.boots += 1;
            let log_name = format!("{guest}/shared-{}", slot.boots).replace("::", "/");
            match self.boot(guest, &log_name) {
                Ok((vm, features)) => {
                    slot.vm = Some(vm);
                    slot.features = features;
                    slot.failed_boots = 0;
                }
                Err(e) => {
                    slot.failed_boots += 1;
                    return failed_boot(e);
                }
            }
        }
        let features = slot.features.clone();
        let Some(vm) = slot.vm.as_mut() else {
            return failed_boot("no machine".into());
        };
        let out = run_scenario(vm, &features, file);
        if out.machine_broken {
            // Drop (kill) it; the next trial of this machine boots a fresh one.
            slot.vm = None;
        }
        out
    }

    /// Powers every pooled machine off.
    pub fn shutdown(&self) {
        for slot in self.slots.values() {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(vm) = slot.vm.take() {
                let _ = vm.poweroff();
            }
        }
    }
}

fn failed_boot(e: String) -> ScenarioTrial {
    ScenarioTrial {
        result: Err(e.into()),
        log_dir: None,
        steps: Vec::new(),
        machine_broken: true,
        expected_failure: None,
    }
}

fn run_scenario(vm: &mut dyn AgentHost, features: &[String], file: &ScenarioFile) -> ScenarioTrial {
    let log_dir = Some(vm.log_dir().to_path_buf());
    let missing = file.missing_features(features);
    if !missing.is_empty() {
        let reason = format!("the guest lacks {}", missing.join(", "));
        return ScenarioTrial::ignored(reason, log_dir);
    }
    let run = run_on(vm, file, |_| {});
    let mut expected_failure = None;
    let result = match known_bug::judge(file, &run, vm.kernel_patches()) {
        Verdict::AsIs if run.passed() => Ok(Completion::Completed),
        Verdict::AsIs => Err(run.failure_report(file, vm).into()),
        Verdict::Expected(what) => {
            expected_failure = Some(what.clone());
            Ok(Completion::ignored_with(what))
        }
        Verdict::Vanished(what) => {
            Err(format!("{what}\n{}", harness::report::table(file, &run.results)).into())
        }
    };
    ScenarioTrial {
        result,
        log_dir,
        // After an unexpected kernel report (harness::kernel_log) the kernel is
        // not one to go on with: lockdep turns itself off, a WARN_ONCE stays
        // quiet, an Oops may leave locks held.  The next trial boots afresh.
        machine_broken: run.outcome.is_err() || !run.kernel.unexpected.is_empty(),
        steps: run.results,
        expected_failure,
    }
}

/// A finished trial as a record for the report files.
pub fn record(
    name: &str,
    result: &Result<Completion, Failed>,
    seconds: f64,
    trial: Option<&ScenarioTrial>,
) -> TrialRecord {
    use harness::report::TrialStatus;
    let status = match result {
        _ if trial.is_some_and(|t| t.expected_failure.is_some()) => TrialStatus::ExpectedFailure {
            message: trial
                .and_then(|t| t.expected_failure.clone())
                .unwrap_or_default(),
        },
        Ok(Completion::Completed) => TrialStatus::Passed,
        Ok(Completion::Ignored { reason }) => TrialStatus::Ignored {
            reason: reason.clone(),
        },
        Err(f) => TrialStatus::Failed {
            message: f.message().unwrap_or("failed").to_string(),
        },
    };
    TrialRecord {
        name: name.to_string(),
        status,
        seconds,
        log_dir: trial.and_then(|t| t.log_dir.clone()),
        steps: trial.map(|t| t.steps.clone()).unwrap_or_default(),
    }
}

/// What a target needs running before it can be reached.
enum Fixture {
    Sshd(crate::fixture::LoopbackSshd),
    /// A machine whose console is the target; kept alive while the session lasts.
    Machine {
        _vm: Box<Vm>,
    },
}

struct TargetState {
    fixture: Option<Fixture>,
    session: Option<Session>,
    features: Vec<String>,
    opens: usize,
    /// The machine's state was changed for good (a `fresh_vm` scenario ran, or
    /// a run broke off): reset it before the next session.
    dirty: bool,
}

/// Ends the session, if there is one, and marks the target for a reset
/// before the next.
fn retire(st: &mut TargetState) {
    if let Some(old) = st.session.take() {
        let _ = old.close();
        st.dirty = true;
    }
}

/// One real (or stand-in) target: a session opened on first use and reused
/// by its scenarios; a broken session is dropped (and the target
/// power-cycled, if it can be) so the next trial reconnects.  A `fresh_vm`
/// scenario runs on a machine reset just for it: a machine fixture is
/// rebooted, real hardware power-cycled; a target that can do neither
/// ignores such scenarios and says why.  A scenario that would step outside
/// the target's policy is ignored with the step and the reason, before
/// anything connects.
pub struct TargetPool {
    name: String,
    def: TargetDef,
    policy: harness::proto::policy::Policy,
    manifest: Manifest,
    state: Mutex<TargetState>,
}

impl TargetPool {
    /// A pool for target `name` (nothing started yet).
    pub fn new(manifest: Manifest, name: String, def: TargetDef) -> TargetPool {
        let state = TargetState {
            fixture: None,
            session: None,
            features: Vec::new(),
            opens: 0,
            dirty: false,
        };
        TargetPool {
            policy: def.policy(&name),
            name,
            def,
            manifest,
            state: Mutex::new(state),
        }
    }

    /// Whether the target can be put back into a fresh state.
    fn can_reset(&self) -> bool {
        let machine_fixture =
            matches!(&self.def, TargetDef::Serial(_)) && self.def.fixture().is_some();
        machine_fixture || self.def.has_power_cycle()
    }

    /// Starts the fixture (if any) and opens a session; a dirty target is
    /// reset first (a machine fixture is always booted afresh by `open`).
    fn open(&self, st: &mut TargetState) -> Result<(), String> {
        st.opens += 1;
        let mut wait = std::time::Duration::ZERO;
        if std::mem::take(&mut st.dirty) && self.def.has_power_cycle() {
            eprintln!("power-cycling {} ...", self.name);
            self.def
                .power_cycle()
                .map_err(|e| format!("power cycle of {} failed: {}", self.name, chain(&e)))?;
            wait = self.def.reconnect_timeout();
        }
        let log_dir = self
            .manifest
            .log_root
            .join(format!("{}/session-{}", self.name, st.opens));
        let mut def = self.def.clone();
        let fixture = def.fixture().map(str::to_string);
        match (fixture.as_deref(), &mut def) {
            (Some("loopback-sshd"), TargetDef::Ssh(d)) => {
                if st.fixture.is_none() {
                    st.fixture = Some(Fixture::Sshd(crate::fixture::LoopbackSshd::start()?));
                }
                if let Some(Fixture::Sshd(sshd)) = &st.fixture {
                    let t = sshd.target();
                    (d.port, d.key, d.known_hosts, d.user) = (t.port, t.key, t.known_hosts, t.user);
                }
            }
            (Some(machine), TargetDef::Serial(d)) => {
                let sock = d
                    .console
                    .strip_prefix("unix:")
                    .ok_or("a machine fixture needs a unix: console")?
                    .to_string();
                let sock = self
                    .manifest
                    .machines_dir
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(sock);
                d.console = format!("unix:{}", sock.display());
                st.fixture = None; // a fresh machine for a fresh session
                let spec = self
                    .manifest
                    .spec(
                        machine,
                        &format!("{}/{machine}-{}", self.name, st.opens),
                        GuestMode::Shell,
                    )
                    .map_err(|e| chain(&e))?;
                let vm = crate::fixture::console_machine(spec, &sock)?;
                st.fixture = Some(Fixture::Machine { _vm: Box::new(vm) });
            }
            (Some(other), _) => {
                return Err(format!(
                    "unknown fixture {other:?} for target {}",
                    self.name
                ));
            }
            (None, _) => {}
        }
        let agent = self.manifest.agents.get(&def.arch()).cloned();
        // After a power cycle the target takes a while to come back.
        let deadline = std::time::Instant::now() + wait;
        let mut session = loop {
            match Session::open(&self.name, &def, &log_dir, agent.as_deref()) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() < deadline && e.is_unreachable() => {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                }
                Err(e) => return Err(chain(&e)),
            }
        };
        let inv = match session.agent() {
            Ok(a) => a.inventory().map_err(|e| chain(&*session.explain(e)))?,
            Err(e) => return Err(chain(&*e)),
        };
        st.features = inv.features;
        st.session = Some(session);
        Ok(())
    }

    /// Runs one scenario on the target.
    pub fn run(&self, file: &ScenarioFile) -> ScenarioTrial {
        if let Err(e) = harness::policy::check(file, &self.policy) {
            return ScenarioTrial::ignored(e.to_string(), None);
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if file.fresh_vm {
            if !self.can_reset() {
                let reason = format!(
                    "needs a fresh machine, and target {} has no power_cycle command",
                    self.name
                );
                return ScenarioTrial::ignored(reason, None);
            }
            retire(&mut st);
        }
        if st.session.is_none()
            && let Err(e) = self.open(&mut st)
        {
            return failed_boot(format!("cannot reach target {}: {e}", self.name));
        }
        let features = st.features.clone();
        let Some(session) = st.session.as_mut() else {
            return failed_boot("no session".into());
        };
        let out = run_scenario(session, &features, file);
        if out.machine_broken || file.fresh_vm {
            retire(&mut st);
        }
        out
    }

    /// Ends the session, removes remote files, stops the fixture.
    pub fn shutdown(&self) -> Result<(), String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let closed = st
            .session
            .take()
            .map(Session::close)
            .transpose()
            .map_err(|e| chain(&e));
        st.fixture = None;
        closed.map(|_| ())
    }
}
