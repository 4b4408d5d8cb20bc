//! Lifecycle trials: a machine boots, answers, powers off and leaves nothing
//! behind; a boot that fails (kernel panic, hang, bad QEMU argument, agent
//! crash) or a guest that hangs mid-scenario is reported with its cause; the
//! virtio-serial channel, the gdbstub, and two machines at once.

use std::time::{Duration, Instant};

use harness::linux::{Guest, Linux};
use harness::manifest::Manifest;
use harness::qemu::GuestMode;
use harness::report::chain;
use harness::vm::{Timeouts, Vm, VmError, VmSpec};
use libtest_mimic::Failed;

use crate::support::{OrFail, ask, assert_no_leftovers, catalogue_scenario, spec, spec_on};

/// The private dir of a boot that failed, from the command line QEMU got.
fn private_dir_of(spec: &VmSpec) -> Option<String> {
    let cmdline = std::fs::read_to_string(spec.log_dir.join("qemu.cmdline")).ok()?;
    let i = cmdline.find("iobench-vm-")?;
    let start = cmdline[..i].rfind([' ', ',', '='])? + 1;
    let end = i + cmdline[i..].find('/')?;
    Some(cmdline[start..end].to_string())
}

pub fn boot_and_inventory(m: &Manifest, guest: &Guest, trial: &str) -> Result<(), Failed> {
    let s = spec_on(m, guest, trial, GuestMode::Agent, "")?;
    let expected_arch = s.machine.arch;
    let (edus, pes) = (s.machine.devices.len(), s.machine.pe_count());
    let mut vm = Vm::boot(s).or_fail()?;
    let private = vm.private_dir().display().to_string();
    let (qemu_pid, backend_pid) = (vm.qemu_pid(), vm.backend_pid());
    let hello = vm.agent().or_fail()?.hello().clone();
    let want_machine = match expected_arch {
        harness::machine::Arch::Ppc64le => "ppc64le",
        harness::machine::Arch::X86_64 => "x86_64",
    };
    if hello.machine != want_machine
        || Linux::of_release(&hello.kernel) != Some(guest.linux)
        || hello.protocol != harness::proto::PROTOCOL_VERSION
    {
        return Err(format!("unexpected hello: {hello:?}").into());
    }
    let inv = ask(&mut vm, |a| a.inventory())?;
    let edu: Vec<_> = inv
        .devices
        .iter()
        .filter(|d| (d.vendor, d.device) == (0x1234, 0x11e8))
        .collect();
    if edu.len() != edus {
        return Err(format!(
            "expected {edus} edu devices, inventory has {:?}",
            inv.devices
        )
        .into());
    }
    let mut groups = std::collections::BTreeSet::new();
    for d in &edu {
        if d.driver.as_deref() != Some("vfio-pci") {
            return Err(format!("{} is bound to {:?}, not vfio-pci", d.bdf, d.driver).into());
        }
        let g = d
            .iommu_group
            .ok_or_else(|| format!("{} has no IOMMU group", d.bdf))?;
        groups.insert(g);
        // Nothing else may share the group (one PE / one group per device,
        // or per PHB with its bridge).
        if let Some(other) = inv.devices.iter().find(|o| {
            o.bdf != d.bdf
                && o.iommu_group == Some(g)
                && (o.vendor, o.device) != (0x1234, 0x11e8)
                && o.class >> 8 != 0x0604
        }) {
            return Err(format!("{} shares group {g} with {}", d.bdf, other.bdf).into());
        }
    }
    // One group per PE: per edu, or per PHB with its bridged edus.
    if groups.len() != pes {
        return Err(
            format!("expected {pes} IOMMU groups for the edus, got {groups:?}: {edu:?}").into(),
        );
    }
    if !inv.features.iter().any(|f| f == "vfio-container") {
        return Err(format!("no /dev/vfio/vfio: features {:?}", inv.features).into());
    }
    // A second, host-initiated session on the agent's listening port.
    let second = vm.connect_agent().or_fail()?;
    if second.hello() != &hello {
        return Err("host→guest session greeted differently".into());
    }
    second
        .shutdown(false)
        .map_err(|e| vm.explain(e))
        .or_fail()?;
    let dmesg = ask(&mut vm, |a| a.dmesg())?;
    if !dmesg.iter().any(|l| l.contains("Linux version")) {
        return Err(format!(
            "dmesg lacks the banner; first lines: {:?}",
            &dmesg[..dmesg.len().min(3)]
        )
        .into());
    }
    vm.poweroff().or_fail()?;
    for pid in [Some(qemu_pid), backend_pid].into_iter().flatten() {
        if harness::process::alive(pid) {
            return Err(format!("pid {pid} still alive after poweroff").into());
        }
    }
    assert_no_leftovers(&private)
}

/// How a deliberately failing boot differs from a normal one.
struct Variation<'a> {
    mode: GuestMode,
    cmdline: &'a str,
    qemu_args: &'a [&'a str],
    timeouts: Timeouts,
}

impl Default for Variation<'_> {
    fn default() -> Self {
        Variation {
            mode: GuestMode::Agent,
            cmdline: "",
            qemu_args: &[],
            timeouts: Timeouts::default(),
        }
    }
}

/// Boots expecting failure; `check` judges the error.
fn boot_expecting(
    m: &Manifest,
    machine: &str,
    trial: &str,
    v: Variation,
    check: impl FnOnce(&VmError) -> bool,
) -> Result<(), Failed> {
    let mut s = spec(m, machine, trial, v.mode, v.cmdline)?;
    s.machine
        .qemu
        .extra_args
        .extend(v.qemu_args.iter().map(|a| a.to_string()));
    s.timeouts = v.timeouts;
    let started = Instant::now();
    let result = Vm::boot(s.clone());
    let private = private_dir_of(&s).ok_or("no qemu.cmdline written")?;
    match result {
        Ok(_vm) => Err("the boot succeeded but should have failed".into()),
        Err(e) if check(&e) => {
            eprintln!(
                "    (got, as expected, after {:.1?}): {}",
                started.elapsed(),
                e.to_string().lines().next().unwrap_or("")
            );
            assert_no_leftovers(&private)
        }
        Err(e) => Err(format!("wrong failure: {}", chain(&e)).into()),
    }
}

pub fn panic_detection(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    // No such init: the kernel falls back to mounting a root fs and panics.
    boot_expecting(
        m,
        machine,
        trial,
        Variation {
            cmdline: "rdinit=/does-not-exist",
            ..Default::default()
        },
        |e| matches!(e, VmError::Kernel { kind: "kernel panic", log, .. } if log.is_file()),
    )
}

pub fn hang_detection(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let t = Timeouts {
        agent_ready: Duration::from_secs(8),
        ..Timeouts::default()
    };
    let started = Instant::now();
    boot_expecting(
        m,
        machine,
        trial,
        Variation {
            mode: GuestMode::Hang,
            timeouts: t,
            ..Default::default()
        },
        |e| matches!(e, VmError::Hang { stage: "agent ready", tail, .. } if tail.iter().any(|l| l.contains("hanging on purpose"))),
    )?;
    let took = started.elapsed();
    if took > Duration::from_secs(12) {
        return Err(format!("hang detected only after {took:?} (deadline 8 s)").into());
    }
    Ok(())
}

pub fn qemu_bad_argument(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    boot_expecting(
        m,
        machine,
        trial,
        Variation {
            qemu_args: &["-device", "no-such-device"],
            ..Default::default()
        },
        |e| matches!(e, VmError::QemuExited { stderr, .. } if stderr.contains("no-such-device")),
    )
}

pub fn agent_crash(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    // A malformed agent option makes the agent exit 2; init reports it.
    boot_expecting(
        m,
        machine,
        trial,
        Variation {
            cmdline: "iobench.listen=notaport",
            ..Default::default()
        },
        |e| matches!(e, VmError::AgentCrashed { status, .. } if status.contains("status 2")),
    )
}

pub fn serial_channel(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let mut s = spec(m, machine, trial, GuestMode::Agent, "")?;
    s.channel = harness::vm::Channel::Serial;
    let mut vm = Vm::boot(s).or_fail()?;
    let private = vm.private_dir().display().to_string();
    if vm.backend_pid().is_some() {
        return Err("a vsock backend was started for a serial-channel boot".into());
    }
    let inv = ask(&mut vm, |a| a.inventory())?;
    if !inv
        .devices
        .iter()
        .any(|d| d.driver.as_deref() == Some("vfio-pci"))
    {
        return Err(format!(
            "no vfio-pci device over the serial channel: {:?}",
            inv.devices
        )
        .into());
    }
    vm.poweroff().or_fail()?;
    assert_no_leftovers(&private)
}

pub fn gdbstub(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    use std::io::{Read, Write};
    // A free port: bind to 0, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut s = spec(m, machine, trial, GuestMode::Shell, "")?;
    s.boot.gdb_port = Some(port);
    let vm = Vm::boot(s).or_fail()?;
    let private = vm.private_dir().display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("gdbstub on port {port}: {e}").into()),
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    // "Why did the target stop?" — a halted QEMU answers with a stop reply.
    conn.write_all(b"$?#3f")?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    // A packet ends with '#' and two checksum digits.
    let complete = |g: &[u8]| {
        g.iter()
            .position(|&b| b == b'#')
            .is_some_and(|i| g.len() >= i + 3)
    };
    while !complete(&got) && got.len() < 64 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    if !(text.contains("$T") || text.contains("$S")) {
        return Err(format!("no stop reply from the gdbstub: {text:?}").into());
    }
    if !vm.console_tail(5).iter().all(|l| l.trim().is_empty()) {
        return Err("the guest ran although QEMU should be halted (-S)".into());
    }
    drop(conn);
    drop(vm);
    assert_no_leftovers(&private)
}

pub fn two_at_once(m: &Manifest, _machine: &str, trial: &str) -> Result<(), Failed> {
    let specs = [
        spec(m, "pseries", &format!("{trial}::a"), GuestMode::Agent, "")?,
        spec(m, "q35", &format!("{trial}::b"), GuestMode::Agent, "")?,
    ];
    let handles: Vec<_> = specs
        .into_iter()
        .map(|s| {
            std::thread::spawn(move || -> Result<(String, String), String> {
                let mut vm = Vm::boot(s).map_err(|e| chain(&e))?;
                let private = vm.private_dir().display().to_string();
                let kernel = vm.agent().map_err(|e| chain(&e))?.hello().machine.clone();
                vm.poweroff().map_err(|e| chain(&e))?;
                Ok((private, kernel))
            })
        })
        .collect();
    let mut seen = Vec::new();
    for h in handles {
        let r = h.join().map_err(|_| "boot thread panicked")??;
        assert_no_leftovers(&r.0)?;
        seen.push(r);
    }
    if seen[0].0 == seen[1].0 || seen[0].1 == seen[1].1 {
        return Err(format!("the two VMs collided: {seen:?}").into());
    }
    Ok(())
}

/// A guest that hangs mid-scenario (paused over QMP after the first step):
/// the run ends at the reply deadline with a named cause, the finished step
/// is kept, and nothing is left behind.
pub fn hang_mid_scenario(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let file = catalogue_scenario(m, "_host/hang_mid_scenario.toml")?;
    let mut s = spec(m, machine, trial, GuestMode::Agent, "")?;
    s.timeouts.agent_reply = Duration::from_secs(4);
    let mut vm = Vm::boot(s).or_fail()?;
    let private = vm.private_dir().display().to_string();
    let qmp = vm.qmp_socket().to_path_buf();
    let mut paused = Ok(serde_json::Value::Null);
    let t0 = Instant::now();
    let run = harness::scenario::run_on(&mut vm, &file, |r| {
        if r.index == 0 {
            paused = harness::qmp::execute(&qmp, "stop", serde_json::json!({}));
        }
    });
    paused.map_err(|e| format!("QMP stop: {e}"))?;
    let waited = t0.elapsed();
    let Err(cause) = &run.outcome else {
        return Err("the run finished although the guest was paused".into());
    };
    let report = run.failure_report(&file, &vm);
    if run.results.len() != 1 || !run.results[0].passed {
        return Err(format!("the step before the hang was not kept: {:?}", run.results).into());
    }
    if !cause.to_string().contains("no answer within 4s") {
        return Err(format!("the cause does not say the guest hangs: {cause}").into());
    }
    if waited > Duration::from_secs(15) {
        return Err(format!("the hang was noticed only after {waited:?}").into());
    }
    if !report.contains(&vm.log_dir().display().to_string()) {
        return Err(format!("the report does not name the logs:\n{report}").into());
    }
    eprintln!("hang noticed after {waited:.1?}: {cause}");
    drop(vm);
    assert_no_leftovers(&private)
}
