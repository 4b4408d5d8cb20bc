//! `cargo xtask run`: boot one machine and talk to it.
//!
//! Default: boot, greet the agent, print its inventory, power off, print
//! boot timings.  `--scenario FILE`: also run scenario files (checked before
//! the boot) and print a table of expected vs actual per step.  `--shell`: the guest console on this terminal.  `--gdb`:
//! QEMU's gdbstub, halted at start, with the gdb command to attach.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use harness::known_bug::{self, Verdict};
use harness::machine::{Machine, Overrides, QemuBuild, Size};
use harness::qemu::GuestMode;
use harness::report;
use harness::scenario::{ScenarioFile, run_on};
use harness::vm::{Vm, VmSpec};

use crate::cache::repo_root;
use crate::flags::{MachineOpts, RunArgs};

/// Loads a machine definition and applies the command-line overrides.
pub fn machine(name: &str, o: &MachineOpts) -> Result<Machine> {
    let mut m = Machine::find(&repo_root().join("qemu-configs"), name)?;
    let memory = o
        .memory
        .as_deref()
        .map(Size::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    m.apply(&Overrides {
        memory,
        cpus: o.cpus,
        extra_args: o.qemu_args.clone(),
        cmdline: o.append.clone(),
    });
    Ok(m)
}

/// A VM spec for `m` with images built as needed.
pub fn spec(m: Machine, o: &MachineOpts, mode: GuestMode, log_dir: PathBuf) -> Result<VmSpec> {
    let images = crate::images::for_machine(&m, &o.source, o.kernel.as_ref())?;
    let accel = crate::accel::choose(o.accel, m.arch, &images.kernel)?;
    let patched = (m.qemu.build == QemuBuild::Patched)
        .then(|| crate::qemu::build(None))
        .transpose()?;
    let mut spec = VmSpec::builder(m, images, log_dir)
        .accel(accel)
        .mode(mode)
        .patched_qemu(patched)
        .build()?;
    if o.source.debug && o.kernel.is_none() {
        // As the suite's manifest gives a debug kernel's machines.
        spec.timeouts.first_output *= harness::manifest::DEBUG_BOOT_FACTOR;
        spec.timeouts.agent_ready *= harness::manifest::DEBUG_BOOT_FACTOR;
    }
    Ok(spec)
}

/// Runs `cargo xtask run`.
pub fn run(a: &RunArgs) -> Result<()> {
    let m = machine(&a.machine, &a.opts)?;
    let scenarios = load_scenarios(&a.scenario, &m.name, a.any_machine)?;
    if m.qemu.build == QemuBuild::Stock {
        crate::deps::require(&[m.arch.qemu_binary()])?;
    }
    crate::deps::require(&[harness::vsock::BACKEND])?;
    let log_dir = crate::cache::out_dir().join("run").join(&m.name);
    let mode = if a.shell || a.gdb {
        GuestMode::Shell
    } else {
        GuestMode::Agent
    };
    let mut spec = spec(m, &a.opts, mode, log_dir)?;
    if a.gdb {
        let port = 1234;
        spec.boot.gdb_port = Some(port);
        let vmlinux = spec
            .images
            .vmlinux
            .clone()
            .unwrap_or_else(|| spec.images.kernel.clone());
        println!(
            "QEMU is halted; attach with:\n  gdb {} -ex 'target remote 127.0.0.1:{port}'",
            vmlinux.display()
        );
    }
    if mode == GuestMode::Shell {
        spec.echo_console = true;
        return interactive(spec);
    }
    let name = spec.machine.name.clone();
    let mut vm = Vm::boot(spec)?;
    let ready = vm.timings.agent_ready;
    let agent = vm.agent()?;
    let h = agent.hello().clone();
    let inv = agent.inventory().map_err(|e| vm.explain(e))?;
    println!(
        "{name}: agent {} (protocol {}) on Linux {} {} (page size {})",
        h.agent_version, h.protocol, h.kernel, h.machine, h.page_size
    );
    println!("  features: {}", inv.features.join(", "));
    println!(
        "  {:<14} {:<10} {:<8} {:<6} driver",
        "pci", "id", "class", "group"
    );
    for d in &inv.devices {
        let group = d
            .iommu_group
            .map(|g| g.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "  {:<14} {:04x}:{:04x}  {:06x}   {:<6} {}",
            d.bdf,
            d.vendor,
            d.device,
            d.class,
            group,
            d.driver.as_deref().unwrap_or("-")
        );
    }
    let mut failed = Vec::new();
    let mut broken = false;
    for (i, file) in scenarios.iter().enumerate() {
        let (passed, broke) = run_one(&mut vm, file, &inv.features);
        if !passed {
            failed.push(file.name().to_string());
        }
        if broke {
            // The guest is gone (panic, hang, agent crash): nothing else can run.
            broken = true;
            failed.extend(
                scenarios[i + 1..]
                    .iter()
                    .map(|f| format!("{} (not run)", f.name())),
            );
            break;
        }
    }
    let log = vm.console_log();
    if broken {
        drop(vm);
        println!("  the guest broke; console log: {}", log.display());
    } else {
        let off = vm.poweroff()?;
        println!(
            "  boot-to-agent-ready {:.3} s, poweroff {:.3} s; console log: {}",
            ready.as_secs_f64(),
            off.as_secs_f64(),
            log.display()
        );
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} scenarios failed: {}",
            failed.len(),
            scenarios.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Loads and checks scenario files before anything boots.
fn load_scenarios(
    paths: &[PathBuf],
    machine: &str,
    any_machine: bool,
) -> Result<Vec<ScenarioFile>> {
    let root = repo_root().join("scenarios");
    let mut out = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).with_context(|| format!("{}", p.display()))?;
        let file = ScenarioFile::load(&abs, abs.starts_with(&root).then_some(root.as_path()))?;
        if !any_machine && !file.applies_to(machine) {
            bail!(
                "{}: scenario {} is for machines [{}], not {machine} (pick one with --machine, or force with --any-machine)",
                p.display(),
                file.name(),
                file.machines.join(", ")
            );
        }
        out.push(file);
    }
    Ok(out)
}

/// Runs one scenario, printing each step as it arrives; true if it passed
/// (steps, and no unexpected kernel report: `harness::kernel_log`) or was skipped.
fn run_one(vm: &mut Vm, file: &ScenarioFile, features: &[String]) -> (bool, bool) {
    println!("\nscenario {} — {}", file.name(), file.description);
    let missing = file.missing_features(features);
    if !missing.is_empty() {
        println!("  skipped: the guest lacks {}", missing.join(", "));
        return (true, false);
    }
    println!("{}", report::header());
    let result = run_on(vm, file, |r| println!("{}", report::row(file, r)));
    let broke = result.outcome.is_err();
    for r in &result.kernel.expected {
        println!(
            "  the kernel reported, as the scenario expects: {}",
            r.describe()
        );
    }
    let passed = match known_bug::judge(file, &result, vm.kernel_patches()) {
        Verdict::AsIs if result.passed() => {
            println!("  passed ({} steps)", result.results.len());
            true
        }
        Verdict::AsIs => {
            eprintln!("{}", result.failure_report(file, vm));
            false
        }
        Verdict::Expected(what) => {
            println!("  {what}");
            true
        }
        Verdict::Vanished(what) => {
            eprintln!("  {what}");
            false
        }
    };
    (passed, broke)
}

/// The guest console on this terminal until the guest powers off.
fn interactive(spec: VmSpec) -> Result<()> {
    use std::io::Read;
    let raw = std::process::Command::new("stty")
        .args(["raw", "-echo"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let result = (|| -> Result<String> {
        let mut vm = Vm::boot(spec)?;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        loop {
            while let Ok(bytes) = rx.try_recv() {
                vm.console_write(&bytes)?;
            }
            if let Some(status) = vm.try_exit()? {
                return Ok(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    })();
    if raw {
        let _ = std::process::Command::new("stty").arg("sane").status();
    }
    let status = result?;
    println!("\r\nQEMU exited ({status})");
    Ok(())
}
