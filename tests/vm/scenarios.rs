//! Scenario trials: one per (machine, scenario) of the catalogue on the
//! shared [`Pool`], and the trials that check how scenario runs are reported
//! (a failure report, a kernel warning, an agent crash mid-run, a host
//! action mid-run).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use harness::linux::{Guest, Linux};
use harness::manifest::Manifest;
use harness::qemu::GuestMode;
use harness::report::chain;
use harness::vm::Vm;
use iobench_tests::pool::Pool;
use libtest_mimic::{Failed, Trial};

use crate::record::{CloneResult, Records, recorded};
use crate::support::{OrFail, catalogue_scenario, spec};

/// A scenario written in the trial itself (not part of the catalogue).
fn inline_scenario(
    machine: &str,
    name: &str,
    steps: &str,
) -> Result<harness::scenario::ScenarioFile, Failed> {
    let text = format!("description = \"{name}\"\nmachines = [\"{machine}\"]\n{steps}");
    harness::scenario::ScenarioFile::parse(&text, Path::new(&format!("inline/{name}.toml")), name)
        .or_fail()
}

/// A pool of its own for a trial, with `machine` on the default kernel.
fn pool_for(m: &Manifest, machine: &str, trial: &str) -> (Pool, Guest) {
    let mut own = m.clone();
    own.log_root = m.log_root.join(trial.replace("::", "/"));
    (
        Pool::new(own, [machine.to_string()]),
        Guest::new(machine, m.primary()),
    )
}

/// A deliberately wrong expectation gives the framed report: step, line,
/// expected vs actual, the kernel log and console tail, the log directory.
pub fn failure_report(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let file = inline_scenario(
        machine,
        "broken",
        "[[step]]\nop = \"mem.alloc\"\nsize = \"4K\"\n\n[[step]]\nop = \"file.read\"\npath = \"/no/such/file\"\nexpect = { value = \"x\" }\n\n[[step]]\nop = \"close\"\nhandle = \"$never\"\nexpect = \"any\"\n",
    );
    // The third step refers to a name no step binds: rejected before boot.
    match file {
        Err(e)
            if e.message().is_some_and(|m| {
                m.contains("inline/broken.toml:14") && m.contains("$never is not bound")
            }) => {}
        other => {
            return Err(format!(
                "expected a host-side validation error, got {:?}",
                other.map(|_| ()).map_err(|e| e.message().map(String::from))
            )
            .into());
        }
    }
    let file = inline_scenario(
        machine,
        "broken",
        "[[step]]\nop = \"mem.alloc\"\nsize = \"4K\"\n\n[[step]]\nop = \"file.read\"\npath = \"/no/such/file\"\nexpect = { value = \"x\" }\n",
    )?;
    let (pool, guest) = pool_for(m, machine, trial);
    let t = pool.run(&guest, &file);
    pool.shutdown();
    let report = match &t.result {
        Err(f) => f.message().unwrap_or_default().to_string(),
        Ok(_) => return Err("a scenario with a wrong expectation passed".into()),
    };
    let log_dir = t
        .log_dir
        .as_ref()
        .ok_or("no log dir")?
        .display()
        .to_string();
    for needle in [
        "scenario broken failed",
        "step 1 (line 7): file.read",
        "expected: = \"x\"",
        "actual:   ENOENT (2)",
        "--- last console lines ---",
        &format!("full logs: {log_dir}"),
    ] {
        if !report.contains(needle) {
            return Err(format!("failure report lacks {needle:?}:\n{report}").into());
        }
    }
    if t.steps.len() != 2 || !t.steps[0].passed || t.machine_broken {
        return Err(format!(
            "unexpected step results {:?} (broken: {})",
            t.steps, t.machine_broken
        )
        .into());
    }
    Ok(())
}

/// The kernel warns during a scenario (lkdtm's WARNING, through
/// `/sys/kernel/debug/provoke-crash/DIRECT`): the trial fails with the
/// splat in its report, and the next trial gets a fresh machine; declared
/// with `expect_kernel_warning`, the same scenario passes; declared and
/// not shown, it fails.
pub fn kernel_warning(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    const WARN: &str = "[[step]]\nop = \"file.write\"\npath = \"/sys/kernel/debug/provoke-crash/DIRECT\"\ndata = \"WARNING\"\n";
    const EXPECT: &str = "expect_kernel_warning = \"lkdtm_WARNING\"\n";
    let missing = inline_scenario(
        machine,
        "quiet",
        &format!("{EXPECT}[[step]]\nop = \"mem.alloc\"\nsize = \"4K\"\n"),
    )?;
    let expected = inline_scenario(machine, "expected_warning", &format!("{EXPECT}{WARN}"))?;
    let unexpected = inline_scenario(machine, "warning", WARN)?;
    let (pool, guest) = pool_for(m, machine, trial);
    let quiet = pool.run(&guest, &missing);
    let declared = pool.run(&guest, &expected);
    let warned = pool.run(&guest, &unexpected);
    pool.shutdown();
    let message = |t: &iobench_tests::pool::ScenarioTrial| match &t.result {
        Ok(_) => None,
        Err(f) => Some(f.message().unwrap_or_default().to_string()),
    };
    match message(&quiet) {
        Some(r)
            if r.contains(
                "kernel: the scenario expects a kernel report containing \"lkdtm_WARNING\" \
                 (expect_kernel_warning), and the kernel reported none",
            ) => {}
        other => {
            return Err(format!(
                "a declared warning that did not show was not a failure: {other:?}"
            )
            .into());
        }
    }
    if let Some(r) = message(&declared) {
        return Err(format!("the declared warning failed the scenario:\n{r}").into());
    }
    let report = message(&warned).ok_or("a scenario during which the kernel warned passed")?;
    for needle in [
        "scenario warning failed",
        "kernel: the kernel reported WARNING: ",
        "--- kernel reports ---",
        "# WARNING",
        "[ cut here ]",
        "lkdtm_WARNING+0x",
        "Call Trace:",
        "---[ end trace ",
    ] {
        if !report.contains(needle) {
            return Err(format!("failure report lacks {needle:?}:\n{report}").into());
        }
    }
    if !warned.machine_broken || warned.steps.len() != 1 || !warned.steps[0].passed {
        return Err(format!(
            "expected one passed step and a machine not to reuse, got {:?} (broken: {})",
            warned.steps, warned.machine_broken
        )
        .into());
    }
    eprintln!("{report}");
    Ok(())
}

/// The agent dies mid-scenario: the finished steps survive, the trial names
/// the cause, and the pool's next scenario runs on a freshly booted machine.
pub fn crash_mid_scenario(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let crash = inline_scenario(
        machine,
        "crash",
        "[[step]]\nop = \"mem.alloc\"\nsize = \"4K\"\n\n[[step]]\nop = \"debug.abort\"\n",
    )?;
    let fine = inline_scenario(
        machine,
        "fine",
        "[[step]]\nop = \"mem.alloc\"\nsize = \"4K\"\nfill = \"seq:2\"\nbind = \"b\"\n\n[[step]]\nop = \"mem.check\"\nbuffer = \"$b\"\npattern = \"seq:2\"\n",
    )?;
    let (pool, guest) = pool_for(m, machine, trial);
    let first = pool.run(&guest, &crash);
    let second = pool.run(&guest, &fine);
    pool.shutdown();
    let report = first
        .result
        .err()
        .and_then(|f| f.message().map(String::from))
        .ok_or("the crashing scenario passed")?;
    if !report.contains("agent exited")
        || !first.machine_broken
        || first.steps.len() != 1
        || !first.steps[0].passed
    {
        return Err(format!(
            "crash not reported as such (steps {:?}):\n{report}",
            first.steps
        )
        .into());
    }
    if let Err(e) = second.result {
        return Err(format!(
            "the scenario after the crash failed: {}",
            e.message().unwrap_or_default()
        )
        .into());
    }
    let dir = second.log_dir.ok_or("no log dir")?;
    if !dir.ends_with(format!("{machine}/shared-2")) {
        return Err(format!("expected a second boot, ran in {}", dir.display()).into());
    }
    Ok(())
}

/// The host freezes the PE over QMP (`x-spapr-eeh-inject phb1 freeze`) while the
/// agent sleeps inside a scenario; the guest then sees it stopped through
/// VFIO, its MMIO reads all-ones, and recovery brings DMA back.
pub fn host_qmp_freeze(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let file = catalogue_scenario(m, "_host/host_qmp_freeze.toml")?;
    let sleep_step = file
        .scenario
        .steps
        .iter()
        .position(|s| s.op == "debug.sleep")
        .ok_or("no sleep step")?;
    let mut vm = Vm::boot(spec(m, machine, trial, GuestMode::Agent, "")?).or_fail()?;
    let qmp = vm.qmp_socket().to_path_buf();
    let mut frozen = Ok(serde_json::Value::Null);
    let run = harness::scenario::run_on(&mut vm, &file, |r| {
        // The step before the sleep is done: freeze while the agent sleeps.
        if r.index + 1 == sleep_step {
            frozen = harness::qmp::execute(
                &qmp,
                "x-spapr-eeh-inject",
                serde_json::json!({"phb": "phb1", "kind": "freeze"}),
            );
        }
    });
    frozen.map_err(|e| format!("QMP x-spapr-eeh-inject: {e}"))?;
    if !run.passed() {
        return Err(run.failure_report(&file, &vm).into());
    }
    vm.poweroff().or_fail()?;
    Ok(())
}

/// One trial per (machine, kernel version, scenario), interleaved by
/// machine so parallel test threads tend to work on different machines.
pub fn scenario_trials(
    m: &Arc<Manifest>,
    pool: &Arc<Pool>,
    records: &Records,
    skip: bool,
) -> Vec<Trial> {
    let files = match harness::scenario::load_dir(&m.scenarios_dir) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("the scenario catalogue does not load: {}", chain(&e));
            return vec![
                Trial::test("scenarios::load", move || Err(msg.into())).with_kind("scenario"),
            ];
        }
    };
    // Names that are not machine definitions are targets (`--target NAME`).
    let qemu_machines = harness::machine::available(&m.machines_dir);
    // Without a manifest (plain `cargo test`) the default version is listed.
    let versions = match m.versions() {
        v if v.is_empty() => vec![Linux::DEFAULT],
        v => v,
    };
    let mut by_machine: BTreeMap<Guest, Vec<Trial>> = BTreeMap::new();
    for file in files {
        let file = Arc::new(file);
        for machine in &file.machines {
            if !qemu_machines.contains(machine)
                || (!m.machines.is_empty() && !m.machines.contains(machine))
            {
                continue;
            }
            for &linux in &versions {
                let guest = Guest::new(machine.as_str(), linux);
                let name = format!("{guest}::{}", file.name());
                let (pool, f, g) = (pool.clone(), file.clone(), guest.clone());
                let body = recorded(records, name.clone(), move || {
                    let t = pool.run(&g, &f);
                    (t.result.clone_result(), Some(t))
                });
                let trial = Trial::ignorable_test(name, body)
                    .with_kind("scenario")
                    .with_ignored_flag(skip || file.disabled.is_some());
                by_machine.entry(guest).or_default().push(trial);
            }
        }
    }
    let mut queues: Vec<std::vec::IntoIter<Trial>> =
        by_machine.into_values().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    while !queues.is_empty() {
        queues.retain_mut(|q| match q.next() {
            Some(t) => {
                out.push(t);
                true
            }
            None => false,
        });
    }
    out
}
