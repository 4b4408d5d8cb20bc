//! Scenario trials share machines: each machine definition is booted once
//! and its scenarios run one after another in it, while different machines
//! run in parallel.  A scenario that declares `fresh_vm` gets a machine of
//! its own.  When a run breaks the machine (guest panic, hang, agent crash),
//! the trial fails with the cause and the next trial boots a fresh one; a
//! machine that cannot boot twice in a row fails its remaining trials at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use harness::proto::StepResult;
use harness::qemu::{Accel, BootOptions, GuestMode};
use harness::report::TrialRecord;
use harness::scenario::{ScenarioFile, run_on};
use harness::vm::{Images, Vm, VmSpec};
use libtest_mimic::{Completion, Failed};

use crate::Manifest;

struct Slot {
    vm: Option<Vm>,
    features: Vec<String>,
    boots: usize,
    failed_boots: usize,
}

/// Booted machines, by machine definition name.
pub struct Pool {
    manifest: Manifest,
    slots: BTreeMap<String, Mutex<Slot>>,
}

/// The outcome of a scenario trial, with what the JUnit/JSON record needs.
pub struct ScenarioTrial {
    /// Passed, ignored (missing feature) or failed (with the report).
    pub result: Result<Completion, Failed>,
    /// Where that run's logs are.
    pub log_dir: Option<PathBuf>,
    /// Step results.
    pub steps: Vec<StepResult>,
    /// The run broke off (guest panic, hang, agent crash): the machine is not reusable.
    pub machine_broken: bool,
}

impl Pool {
    /// A pool for these machines (none booted yet).
    pub fn new(manifest: Manifest, machines: impl IntoIterator<Item = String>) -> Pool {
        let slots = machines
            .into_iter()
            .map(|m| (m, Mutex::new(Slot { vm: None, features: Vec::new(), boots: 0, failed_boots: 0 })))
            .collect();
        Pool { manifest, slots }
    }

    /// The spec to boot `machine`, logging under `log_name`.
    pub fn spec(&self, machine: &str, log_name: &str) -> Result<VmSpec, String> {
        let m = harness::machine::Machine::find(&self.manifest.machines_dir, machine).map_err(|e| e.to_string())?;
        let f = self
            .manifest
            .flavours
            .get(&m.kernel.flavour)
            .ok_or_else(|| format!("no images for kernel flavour {} in the manifest", m.kernel.flavour))?;
        let accel = if f.accel == "kvm" { Accel::Kvm } else { Accel::Tcg };
        let images = Images { kernel: f.kernel.clone(), initramfs: f.initramfs.clone(), vmlinux: f.vmlinux.clone() };
        let boot = BootOptions { accel, mode: GuestMode::Agent, ..Default::default() };
        Ok(VmSpec::new(m, images, boot, self.manifest.log_root.join(log_name)))
    }

    fn boot(&self, machine: &str, log_name: &str) -> Result<(Vm, Vec<String>), String> {
        let mut vm = Vm::boot(self.spec(machine, log_name)?).map_err(|e| e.to_string())?;
        let inv = match vm.agent() {
            Ok(a) => a.inventory().map_err(|e| vm.explain(e).to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        Ok((vm, inv.features))
    }

    /// Runs one scenario on `machine`.
    pub fn run(&self, machine: &str, file: &ScenarioFile) -> ScenarioTrial {
        let trial = format!("{machine}::{}", file.name());
        if file.fresh_vm {
            let log_name = trial.replace("::", "/");
            return match self.boot(machine, &log_name) {
                Ok((mut vm, features)) => {
                    let out = run_scenario(&mut vm, &features, file);
                    let _ = vm.poweroff();
                    out
                }
                Err(e) => failed_boot(e),
            };
        }
        let Some(slot) = self.slots.get(machine) else {
            return failed_boot(format!("machine {machine} is not in this run"));
        };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.vm.is_none() {
            if slot.failed_boots >= 2 {
                return failed_boot(format!("{machine} failed to boot twice; not trying again"));
            }
            slot.boots += 1;
            match self.boot(machine, &format!("{machine}/shared-{}", slot.boots)) {
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
        let Some(vm) = slot.vm.as_mut() else { return failed_boot("no machine".into()) };
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
    ScenarioTrial { result: Err(e.into()), log_dir: None, steps: Vec::new(), machine_broken: true }
}

fn run_scenario(vm: &mut Vm, features: &[String], file: &ScenarioFile) -> ScenarioTrial {
    let log_dir = Some(vm.log_dir().to_path_buf());
    let missing = file.missing_features(features);
    if !missing.is_empty() {
        let reason = format!("the guest lacks {}", missing.join(", "));
        return ScenarioTrial { result: Ok(Completion::ignored_with(reason)), log_dir, steps: Vec::new(), machine_broken: false };
    }
    let run = run_on(vm, file, |_| {});
    let result = if run.passed() { Ok(Completion::Completed) } else { Err(run.failure_report(file, vm).into()) };
    ScenarioTrial { result, log_dir, machine_broken: run.outcome.is_err(), steps: run.results }
}

/// A finished trial as a record for the report files.
pub fn record(name: &str, result: &Result<Completion, Failed>, seconds: f64, trial: Option<&ScenarioTrial>) -> TrialRecord {
    use harness::report::TrialStatus;
    let status = match result {
        Ok(Completion::Completed) => TrialStatus::Passed,
        Ok(Completion::Ignored { reason }) => TrialStatus::Ignored { reason: reason.clone() },
        Err(f) => TrialStatus::Failed { message: f.message().unwrap_or("failed").to_string() },
    };
    TrialRecord {
        name: name.to_string(),
        status,
        seconds,
        log_dir: trial.and_then(|t| t.log_dir.clone()),
        steps: trial.map(|t| t.steps.clone()).unwrap_or_default(),
    }
}
