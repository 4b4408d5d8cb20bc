//! The VM suite: real QEMU, real kernels, real vsock.
//!
//! Run through `cargo xtask test`, which builds what is stale and points
//! `IOBENCH_IMAGES` at a manifest.  Without it (plain `cargo test`) every
//! trial is ignored with the reason printed; without QEMU likewise.  Each
//! trial checks, besides its own subject, that no QEMU or helper process
//! of its VM is left behind.

mod fuzz;
mod kselftest;
mod lifecycle;
mod lifetime;
mod record;
mod scenarios;
mod support;
mod targets;

use std::path::Path;
use std::sync::Arc;

use harness::linux::{Guest, Linux};
use harness::manifest::{MANIFEST_ENV, Manifest};
use harness::report::TrialRecord;
use iobench_tests::pool::{self, Pool};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

use lifecycle::{
    agent_crash, boot_and_inventory, gdbstub, hang_detection, hang_mid_scenario, panic_detection,
    qemu_bad_argument, serial_channel, two_at_once,
};
use record::{Records, recorded};
use scenarios::{
    crash_mid_scenario, failure_report, host_qmp_freeze, kernel_warning, scenario_trials,
};
use targets::{
    serial_console, serial_policy, ssh_host_key_changed, ssh_loopback, ssh_policy, target_trials,
};

/// A trial body: the manifest, the machine, the trial's name.
type Check = fn(&Manifest, &str, &str) -> Result<(), Failed>;

const TRIALS: &[(&str, &str, Check)] = &[
    (
        "pseries::lifecycle::panic_detection",
        "pseries",
        panic_detection,
    ),
    ("q35::lifecycle::panic_detection", "q35", panic_detection),
    (
        "pseries::lifecycle::hang_detection",
        "pseries",
        hang_detection,
    ),
    (
        "q35::lifecycle::qemu_bad_argument",
        "q35",
        qemu_bad_argument,
    ),
    ("pseries::lifecycle::agent_crash", "pseries", agent_crash),
    (
        "pseries::lifecycle::hang_mid_scenario",
        "pseries",
        hang_mid_scenario,
    ),
    (
        "q35::channel::virtio_serial_fallback",
        "q35",
        serial_channel,
    ),
    ("pseries::lifecycle::gdbstub", "pseries", gdbstub),
    ("harness::two_vms_at_once", "pseries", two_at_once),
    ("q35::scenario::failure_report", "q35", failure_report),
    ("q35::scenario::kernel_warning", "q35", kernel_warning),
    (
        "pseries::scenario::kernel_warning",
        "pseries",
        kernel_warning,
    ),
    (
        "pseries::scenario::crash_mid_scenario",
        "pseries",
        crash_mid_scenario,
    ),
    ("harness::target::ssh_loopback", "pseries", ssh_loopback),
    ("pseries::target::serial_console", "pseries", serial_console),
    (
        "harness::target::ssh_host_key_changed",
        "pseries",
        ssh_host_key_changed,
    ),
    ("harness::target::ssh_policy", "pseries", ssh_policy),
    ("pseries::target::serial_policy", "pseries", serial_policy),
    (
        "pseries-eeh::eeh::host_qmp_freeze",
        "pseries-eeh",
        host_qmp_freeze,
    ),
    ("pseries::fuzz::short_run", "pseries", fuzz::short_run),
    ("q35-mock::fuzz::short_run", "q35-mock", fuzz::short_run),
    (
        "harness::lifetime::sigkill_during_build",
        "pseries",
        lifetime::during_build,
    ),
    (
        "harness::lifetime::sigterm_during_build",
        "pseries",
        lifetime::during_build,
    ),
    (
        "pseries::lifetime::sigkill_during_boot",
        "pseries",
        lifetime::during_boot,
    ),
    (
        "q35::lifetime::sigterm_during_boot",
        "q35",
        lifetime::during_boot,
    ),
    (
        "pseries::lifetime::sigkill_mid_scenario",
        "pseries",
        lifetime::mid_scenario,
    ),
    (
        "pseries::lifetime::sigterm_mid_scenario",
        "pseries",
        lifetime::mid_scenario,
    ),
    (
        "pseries::lifetime::sigkill_mid_suite",
        "pseries",
        lifetime::mid_suite,
    ),
    (
        "q35::lifetime::sigterm_mid_suite",
        "q35",
        lifetime::mid_suite,
    ),
];

/// `{guest}::boot` for every machine on every kernel version of the run:
/// it boots, the agent answers with the version's kernel, the inventory
/// matches the machine definition.
fn boot_trials(manifest: Option<&Arc<Manifest>>, records: &Records, skip: bool) -> Vec<Trial> {
    let dir = manifest.map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-configs"),
        |m| m.machines_dir.clone(),
    );
    let versions = match manifest.map(|m| m.versions()) {
        Some(v) if !v.is_empty() => v,
        _ => vec![Linux::DEFAULT],
    };
    let mut out = Vec::new();
    for machine in harness::machine::available(&dir) {
        if manifest.is_some_and(|m| !m.machines.is_empty() && !m.machines.contains(&machine)) {
            continue;
        }
        for &linux in &versions {
            let guest = Guest::new(machine.as_str(), linux);
            let name = format!("{guest}::boot");
            let m = manifest.cloned();
            let trial = name.clone();
            let body = recorded(records, name.clone(), move || {
                let r = match m {
                    Some(m) => {
                        boot_and_inventory(&m, &guest, &trial).map(|()| Completion::Completed)
                    }
                    None => Ok(Completion::Completed),
                };
                (r, None)
            });
            out.push(
                Trial::ignorable_test(name, body)
                    .with_kind("vm")
                    .with_ignored_flag(skip),
            );
        }
    }
    out
}

fn main() {
    // First, before any thread: whatever the suite starts ends with it.
    harness::reaper::guard();
    let args = Arguments::from_args();
    let manifest: Result<Manifest, String> = match std::env::var_os(MANIFEST_ENV) {
        None => Err(format!(
            "{MANIFEST_ENV} is not set; `cargo xtask test` builds the images and runs this suite"
        )),
        Some(p) => std::fs::read(&p)
            .map_err(|e| format!("{}: {e}", Path::new(&p).display()))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("manifest: {e}"))),
    };
    let missing_qemu: Vec<&str> = [
        "qemu-system-ppc64",
        "qemu-system-x86_64",
        harness::vsock::BACKEND,
    ]
    .into_iter()
    .filter(|b| harness::process::which(b).is_none())
    .collect();
    let skip = match (&manifest, missing_qemu.is_empty()) {
        (Err(reason), _) => Some(reason.clone()),
        (Ok(_), false) => Some(format!(
            "cannot run VMs: {} not installed (`cargo xtask setup`)",
            missing_qemu.join(", ")
        )),
        _ => None,
    };
    if let Some(reason) = &skip {
        eprintln!("VM suite skipped: {reason}");
    }
    let manifest = manifest.ok().map(Arc::new);
    let records: Records = Arc::default();
    let wanted = |machine: &str| {
        manifest
            .as_ref()
            .is_none_or(|m| m.machines.is_empty() || m.machines.iter().any(|x| x == machine))
    };
    let mut trials: Vec<Trial> = TRIALS
        .iter()
        .filter(|(name, machine, _)| {
            wanted(machine)
                && (!name.starts_with("harness::")
                    || manifest.as_ref().is_none_or(|m| m.machines.is_empty()))
        })
        .map(|&(name, machine, check)| {
            let m = manifest.clone();
            let body = recorded(&records, name.to_string(), move || {
                let r = match m {
                    Some(m) => check(&m, machine, name).map(|()| Completion::Completed),
                    None => Ok(Completion::Completed),
                };
                (r, None)
            });
            Trial::ignorable_test(name, body)
                .with_kind("vm")
                .with_ignored_flag(skip.is_some())
        })
        .collect();
    trials.extend(boot_trials(manifest.as_ref(), &records, skip.is_some()));
    if manifest.as_ref().is_none_or(|m| m.target.is_none()) {
        trials.extend(kselftest::trials(
            manifest.as_ref(),
            &records,
            skip.is_some(),
        ));
    }
    let mut target_pool = None;
    let target_mode = manifest.as_ref().is_some_and(|m| m.target.is_some());
    if let Some((m, run)) = manifest
        .as_ref()
        .and_then(|m| m.target.clone().map(|r| (m, r)))
    {
        let (t, p) = target_trials(m, &run, &records);
        trials = t;
        target_pool = p;
    }
    let pool = manifest.as_ref().filter(|_| !target_mode).map(|m| {
        let machines = harness::machine::available(&m.machines_dir);
        Arc::new(Pool::new((**m).clone(), machines))
    });
    match (&manifest, &pool) {
        (Some(m), Some(p)) => trials.extend(scenario_trials(m, p, &records, skip.is_some())),
        _ if target_mode => {}
        _ => {
            // Without a manifest the catalogue is still listed (and ignored).
            let m = Manifest {
                log_root: std::env::temp_dir(),
                machines_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-configs"),
                scenarios_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios"),
                ..Default::default()
            };
            let p = Arc::new(Pool::new(m.clone(), Vec::new()));
            trials.extend(scenario_trials(&Arc::new(m), &p, &records, true));
        }
    }
    if let Some(part) = manifest.as_ref().and_then(|m| m.partition) {
        trials.retain(|t| harness::manifest::in_partition(t.name(), part));
    }
    // Trials ignored up front never run; record them as skipped.
    let static_skips: Vec<TrialRecord> = trials
        .iter()
        .filter(|t| !args.is_filtered_out(t) && args.is_ignored(t))
        .map(|t| {
            pool::record(
                t.name(),
                &Ok(Completion::Ignored {
                    reason: skip.clone().or(Some("disabled".into())),
                }),
                0.0,
                None,
            )
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(p) = &pool {
        p.shutdown();
    }
    if let Some(p) = &target_pool
        && let Err(e) = p.shutdown()
    {
        eprintln!("closing the target session: {e}");
    }
    if let (Some(m), false) = (&manifest, args.list) {
        let mut all = records.lock().unwrap_or_else(|p| p.into_inner()).clone();
        all.extend(static_skips);
        all.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(summary) = harness::report::expected_failures(&all) {
            eprintln!("{summary}");
        }
        if let Some(path) = &m.junit {
            match harness::report::write_junit(path, "iobench", &all) {
                Ok(()) => eprintln!("JUnit report: {}", path.display()),
                Err(e) => eprintln!("writing {}: {e}", path.display()),
            }
        }
        if let Some(path) = &m.json {
            match harness::report::write_json(path, &all) {
                Ok(()) => eprintln!("JSON report: {}", path.display()),
                Err(e) => eprintln!("writing {}: {e}", path.display()),
            }
        }
    }
    conclusion.exit();
}
