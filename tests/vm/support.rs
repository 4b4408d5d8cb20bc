//! What the trials share: the spec to boot a machine of the manifest under
//! a trial's log directory, the check that nothing of a VM is left running,
//! loading a scenario of the catalogue, and the `xtask` binary to run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::agent::{Agent, AgentError};
use harness::linux::Guest;
use harness::manifest::Manifest;
use harness::qemu::GuestMode;
use harness::report::chain;
use harness::vm::{Vm, VmSpec};
use libtest_mimic::Failed;

/// A harness error as a trial failure, with its causes: `?` alone would
/// keep only the outermost message.
pub trait OrFail<T> {
    /// The error as [`Failed`], said with [`chain`].
    fn or_fail(self) -> Result<T, Failed>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> OrFail<T> for Result<T, E> {
    fn or_fail(self) -> Result<T, Failed> {
        self.map_err(|e| chain(&*e.into()).into())
    }
}

/// Asks the VM's agent: `f` on the agent, an error explained by the VM
/// (console, process state) and said with its causes.
pub fn ask<T>(
    vm: &mut Vm,
    f: impl FnOnce(&mut Agent) -> Result<T, AgentError>,
) -> Result<T, Failed> {
    let r = f(vm.agent().or_fail()?);
    r.map_err(|e| vm.explain(e)).or_fail()
}

/// The manifest's spec for `machine` on the run's primary kernel in `mode`,
/// logging under the trial's name, with `cmdline` added to the kernel
/// command line.
pub fn spec(
    m: &Manifest,
    machine: &str,
    trial: &str,
    mode: GuestMode,
    cmdline: &str,
) -> Result<VmSpec, Failed> {
    spec_on(m, &Guest::new(machine, m.primary()), trial, mode, cmdline)
}

/// [`spec`] for a machine on any kernel version.
pub fn spec_on(
    m: &Manifest,
    guest: &Guest,
    trial: &str,
    mode: GuestMode,
    cmdline: &str,
) -> Result<VmSpec, Failed> {
    let mut s = m
        .spec_on(guest, &trial.replace("::", "/"), mode)
        .or_fail()?;
    s.boot.cmdline = cmdline.into();
    Ok(s)
}

/// Fails if any process still mentions the VM's private directory.
pub fn assert_no_leftovers(private_dir: &str) -> Result<(), Failed> {
    // Reaping is synchronous in Drop; allow a moment for /proc to settle.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = harness::process::mentioning(private_dir);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("processes left behind: {left:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn catalogue_scenario(
    m: &Manifest,
    rel: &str,
) -> Result<harness::scenario::ScenarioFile, Failed> {
    harness::scenario::ScenarioFile::load(&m.scenarios_dir.join(rel), Some(&m.scenarios_dir))
        .or_fail()
}

/// The `xtask` binary cargo built next to this suite (`target/debug/`).
pub fn xtask_binary() -> Result<PathBuf, Failed> {
    let exe = std::env::current_exe()?;
    let debug = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the suite binary has no target dir above it")?;
    let x = debug.join("xtask");
    if !x.is_file() {
        return Err(format!(
            "{} is missing: run the suite through `cargo xtask test`",
            x.display()
        )
        .into());
    }
    Ok(x)
}
