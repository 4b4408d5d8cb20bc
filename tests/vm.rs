//! The VM suite: real QEMU, real kernels, real vsock.
//!
//! Run through `cargo xtask test`, which builds what is stale and points
//! `IOBENCH_IMAGES` at a manifest.  Without it (plain `cargo test`) every
//! trial is ignored with the reason printed; without QEMU likewise.  Each
//! trial checks, besides its own subject, that no QEMU or helper process
//! of its VM is left behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::qemu::GuestMode;
use harness::report::TrialRecord;
use harness::scenario::AgentHost;
use harness::target::{SerialDef, Session, TargetDef, TargetError};
use harness::vm::{Timeouts, Vm, VmError, VmSpec};
use iobench_tests::pool::{self, Pool, ScenarioTrial, TargetPool};
use iobench_tests::{MANIFEST_ENV, Manifest};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

type Check = fn(&Manifest, &str, &str) -> Result<(), Failed>;

fn spec(
    m: &Manifest,
    machine: &str,
    trial: &str,
    mode: GuestMode,
    cmdline: &str,
) -> Result<VmSpec, Failed> {
    let mut s = m.spec(machine, &trial.replace("::", "/"), mode)?;
    s.boot.cmdline = cmdline.into();
    Ok(s)
}

/// Fails if any process still mentions the VM's private directory.
fn assert_no_leftovers(private_dir: &str) -> Result<(), Failed> {
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

/// The private dir of a boot that failed, from the command line QEMU got.
fn private_dir_of(spec: &VmSpec) -> Option<String> {
    let cmdline = std::fs::read_to_string(spec.log_dir.join("qemu.cmdline")).ok()?;
    let i = cmdline.find("iobench-vm-")?;
    let start = cmdline[..i].rfind([' ', ',', '='])? + 1;
    let end = i + cmdline[i..].find('/')?;
    Some(cmdline[start..end].to_string())
}

fn boot_and_inventory(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let s = spec(m, machine, trial, GuestMode::Agent, "")?;
    let expected_arch = s.machine.arch;
    let edus = s.machine.devices.len();
    let mut vm = Vm::boot(s)?;
    let private = vm.private_dir().display().to_string();
    let (qemu_pid, backend_pid) = (vm.qemu_pid(), vm.backend_pid());
    let hello = vm.agent()?.hello().clone();
    let want_machine = match expected_arch {
        harness::machine::Arch::Ppc64le => "ppc64le",
        harness::machine::Arch::X86_64 => "x86_64",
    };
    if hello.machine != want_machine
        || !hello.kernel.starts_with("6.")
        || hello.protocol != harness::proto::PROTOCOL_VERSION
    {
        return Err(format!("unexpected hello: {hello:?}").into());
    }
    let inv = vm.agent()?.inventory().map_err(|e| vm.explain(e))?;
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
        if !groups.insert(g) {
            return Err(format!("edu devices share IOMMU group {g}: {edu:?}").into());
        }
        // Nothing else may share the group (one PE / one group per device).
        if let Some(other) = inv
            .devices
            .iter()
            .find(|o| o.bdf != d.bdf && o.iommu_group == Some(g))
        {
            return Err(format!("{} shares group {g} with {}", d.bdf, other.bdf).into());
        }
    }
    if !inv.features.iter().any(|f| f == "vfio-container") {
        return Err(format!("no /dev/vfio/vfio: features {:?}", inv.features).into());
    }
    // A second, host-initiated session on the agent's listening port.
    let second = vm.connect_agent()?;
    if second.hello() != &hello {
        return Err("host→guest session greeted differently".into());
    }
    second.shutdown(false).map_err(|e| vm.explain(e))?;
    let dmesg = vm.agent()?.dmesg().map_err(|e| vm.explain(e))?;
    if !dmesg.iter().any(|l| l.contains("Linux version")) {
        return Err(format!(
            "dmesg lacks the banner; first lines: {:?}",
            &dmesg[..dmesg.len().min(3)]
        )
        .into());
    }
    vm.poweroff()?;
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
        Err(e) => Err(format!("wrong failure: {e}").into()),
    }
}

fn panic_detection(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
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

fn hang_detection(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
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

fn qemu_bad_argument(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
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

fn agent_crash(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
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

fn serial_channel(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let mut s = spec(m, machine, trial, GuestMode::Agent, "")?;
    s.channel = harness::vm::Channel::Serial;
    let mut vm = Vm::boot(s)?;
    let private = vm.private_dir().display().to_string();
    if vm.backend_pid().is_some() {
        return Err("a vsock backend was started for a serial-channel boot".into());
    }
    let inv = vm.agent()?.inventory().map_err(|e| vm.explain(e))?;
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
    vm.poweroff()?;
    assert_no_leftovers(&private)
}

fn gdbstub(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    use std::io::{Read, Write};
    // A free port: bind to 0, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut s = spec(m, machine, trial, GuestMode::Shell, "")?;
    s.boot.gdb_port = Some(port);
    let vm = Vm::boot(s)?;
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

fn two_at_once(m: &Manifest, _machine: &str, trial: &str) -> Result<(), Failed> {
    let specs = [
        spec(m, "pseries", &format!("{trial}::a"), GuestMode::Agent, "")?,
        spec(m, "q35", &format!("{trial}::b"), GuestMode::Agent, "")?,
    ];
    let handles: Vec<_> = specs
        .into_iter()
        .map(|s| {
            std::thread::spawn(move || -> Result<(String, String), String> {
                let mut vm = Vm::boot(s).map_err(|e| e.to_string())?;
                let private = vm.private_dir().display().to_string();
                let kernel = vm
                    .agent()
                    .map_err(|e| e.to_string())?
                    .hello()
                    .machine
                    .clone();
                vm.poweroff().map_err(|e| e.to_string())?;
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

/// A scenario written in the trial itself (not part of the catalogue).
fn inline_scenario(
    machine: &str,
    name: &str,
    steps: &str,
) -> Result<harness::scenario::ScenarioFile, Failed> {
    let text = format!("description = \"{name}\"\nmachines = [\"{machine}\"]\n{steps}");
    harness::scenario::ScenarioFile::parse(&text, Path::new(&format!("inline/{name}.toml")), name)
        .map_err(|e| e.to_string().into())
}

fn pool_for(m: &Manifest, machine: &str, trial: &str) -> Pool {
    let mut own = m.clone();
    own.log_root = m.log_root.join(trial.replace("::", "/"));
    Pool::new(own, [machine.to_string()])
}

/// A deliberately wrong expectation gives the framed report: step, line,
/// expected vs actual, the kernel log and console tail, the log directory.
fn failure_report(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
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
    let pool = pool_for(m, machine, trial);
    let t = pool.run(machine, &file);
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

/// The agent dies mid-scenario: the finished steps survive, the trial names
/// the cause, and the pool's next scenario runs on a freshly booted machine.
fn crash_mid_scenario(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
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
    let pool = pool_for(m, machine, trial);
    let first = pool.run(machine, &crash);
    let second = pool.run(machine, &fine);
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

/// The host freezes the PE over QMP (`qom-set phb1 x-eeh-freeze`) while the
/// agent sleeps inside a scenario; the guest then sees it stopped through
/// VFIO, its MMIO reads all-ones, and recovery brings DMA back.
fn host_qmp_freeze(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let file = catalogue_scenario(m, "_host/host_qmp_freeze.toml")?;
    let sleep_step = file
        .scenario
        .steps
        .iter()
        .position(|s| s.op == "debug.sleep")
        .ok_or("no sleep step")?;
    let mut vm = Vm::boot(spec(m, machine, trial, GuestMode::Agent, "")?)?;
    let qmp = vm.qmp_socket().to_path_buf();
    let mut frozen = Ok(serde_json::Value::Null);
    let run = harness::scenario::run_on(&mut vm, &file, |r| {
        // The step before the sleep is done: freeze while the agent sleeps.
        if r.index + 1 == sleep_step {
            frozen = harness::qmp::execute(
                &qmp,
                "qom-set",
                serde_json::json!({"path": "/machine/peripheral/phb1", "property": "x-eeh-freeze", "value": true}),
            );
        }
    });
    frozen.map_err(|e| format!("QMP qom-set x-eeh-freeze: {e}"))?;
    if !run.passed() {
        return Err(run.failure_report(&file, &vm).into());
    }
    vm.poweroff()?;
    Ok(())
}

/// A guest that hangs mid-scenario (paused over QMP after the first step):
/// the run ends at the reply deadline with a named cause, the finished step
/// is kept, and nothing is left behind.
fn hang_mid_scenario(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let file = catalogue_scenario(m, "_host/hang_mid_scenario.toml")?;
    let mut s = spec(m, machine, trial, GuestMode::Agent, "")?;
    s.timeouts.agent_reply = Duration::from_secs(4);
    let mut vm = Vm::boot(s)?;
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

fn catalogue_scenario(m: &Manifest, rel: &str) -> Result<harness::scenario::ScenarioFile, Failed> {
    harness::scenario::ScenarioFile::load(&m.scenarios_dir.join(rel), Some(&m.scenarios_dir))
        .map_err(|e| e.to_string().into())
}

fn expect_refused(
    r: Result<Session, TargetError>,
    what: &str,
    ok: impl Fn(&TargetError) -> bool,
) -> Result<(), Failed> {
    match r {
        Err(e) if ok(&e) => Ok(()),
        Err(e) => Err(format!("{what}: wrong error: {e}").into()),
        Ok(_) => Err(format!("{what}: the connection was accepted").into()),
    }
}

/// SSH to a real sshd on loopback: unknown and changed host keys are refused,
/// trust-on-first-use records the key, the agent is copied, answers inventory
/// and a scenario honestly, and its directory is gone afterwards.
fn ssh_loopback(m: &Manifest, _machine: &str, trial: &str) -> Result<(), Failed> {
    let sshd = iobench_tests::fixture::LoopbackSshd::start()?;
    let agent = m
        .agents
        .get("x86_64")
        .ok_or("no x86_64 agent in the manifest")?;
    let log_dir = m.log_root.join(trial.replace("::", "/"));
    let open = |d: harness::target::SshDef| {
        Session::open("ssh-loopback", &TargetDef::Ssh(d), &log_dir, Some(agent))
    };
    let dir = sshd.dir.path();
    let mut unknown = sshd.target();
    unknown.known_hosts = Some(dir.join("empty_known_hosts"));
    expect_refused(open(unknown.clone()), "unknown host key", |e| {
        matches!(e, TargetError::UnknownHostKey { .. })
    })?;
    let other = dir.join("other_key");
    iobench_tests::fixture::keygen(&other)?;
    std::fs::write(
        dir.join("wrong_known_hosts"),
        iobench_tests::fixture::known_hosts_line(&other.with_extension("pub"), sshd.port)?,
    )?;
    let mut changed = sshd.target();
    changed.known_hosts = Some(dir.join("wrong_known_hosts"));
    expect_refused(open(changed), "changed host key", |e| {
        e.to_string().contains("HOST KEY MISMATCH")
    })?;
    let mut tofu = unknown;
    tofu.trust_on_first_use = true;
    open(tofu)?.close()?;
    let recorded = std::fs::read_to_string(dir.join("empty_known_hosts"))?;
    if !recorded.contains(&format!("[127.0.0.1]:{}", sshd.port)) {
        return Err(format!("trust_on_first_use did not record the key: {recorded:?}").into());
    }
    let mut session = open(sshd.target())?;
    let remote = session.remote_dir().ok_or("no remote dir")?.to_string();
    let hello = session.agent()?.hello().clone();
    let inv = session.agent()?.inventory()?;
    if hello.machine != "x86_64"
        || inv
            .features
            .iter()
            .any(|f| f.starts_with("vfio") || f.starts_with("iommufd"))
    {
        return Err(format!(
            "unexpected agent view of the host: {hello:?} {:?}",
            inv.features
        )
        .into());
    }
    let file = catalogue_scenario(m, "hil/unsupported_without_iommu.toml")?;
    let run = harness::scenario::run_on(&mut session, &file, |_| {});
    if !run.passed() {
        return Err(run.failure_report(&file, &session).into());
    }
    if !Path::new(&remote).join("guest-agent").is_file() {
        return Err(format!("the agent was not where the session said: {remote}").into());
    }
    session.close()?;
    if Path::new(&remote).exists() {
        return Err(format!("{remote} is left on the target").into());
    }
    Ok(())
}

/// The pseries console on a unix socket, driven like a board's: shell prompt,
/// printk noise started on purpose, the agent's framed results read back
/// from between the kernel messages, and a real scenario passes that way.
fn serial_console(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let dir = tempfile::Builder::new()
        .prefix("iobench-serial-")
        .tempdir()?;
    let sock = dir.path().join("console.sock");
    let s = spec(m, machine, trial, GuestMode::Shell, "")?;
    let log_dir = s.log_dir.clone();
    let vm = iobench_tests::fixture::console_machine(s, &sock)?;
    let def = SerialDef {
        description: "pseries console".into(),
        arch: harness::machine::Arch::Ppc64le,
        console: format!("unix:{}", sock.display()),
        prompt: r"[#$] ".into(),
        login: None,
        password_env: None,
        prepare: Some(
            "(while :; do echo iobench-printk-noise > /dev/kmsg; usleep 2000; done) &".into(),
        ),
        agent: "/sbin/guest-agent".into(),
        timeout_s: 60,
        power_cycle: None,
        fixture: None,
        runs: vec![],
    };
    let mut session = Session::open(
        "serial-pseries",
        &TargetDef::Serial(def),
        &log_dir.join("serial"),
        None,
    )?;
    let inv = session.agent()?.inventory()?;
    if !inv.features.iter().any(|f| f == "vfio-spapr-tce-v2") {
        return Err(format!("inventory over the console lacks VFIO: {:?}", inv.features).into());
    }
    let file = catalogue_scenario(m, "seed/userspace_driver.toml")?;
    let run = harness::scenario::run_on(&mut session, &file, |_| {});
    if !run.passed() {
        return Err(run.failure_report(&file, &session).into());
    }
    session.close()?;
    let console = std::fs::read_to_string(log_dir.join("serial/console.log"))?;
    let noise = console.matches("iobench-printk-noise").count();
    let frames = console.matches("@@IOB ").count();
    // Frames the console split with a kernel line ("\r\n" before the frame's own "\n").
    let split = console
        .split("@@IOB ")
        .skip(1)
        .filter(|f| {
            let end = f.find('\n').unwrap_or(f.len());
            f[..end].contains('\r')
        })
        .count();
    // Splits are likely at this noise rate but not certain; every frame,
    // split or not, was read back (the scenario passed).
    eprintln!(
        "serial console: {noise} noise lines, {frames} frames, {split} split by a kernel line and recovered"
    );
    if noise < 5 || frames < 20 {
        return Err(format!(
            "expected printk noise between frames, saw {noise} noise lines and {frames} frames"
        )
        .into());
    }
    drop(vm);
    Ok(())
}

const TRIALS: &[(&str, &str, Check)] = &[
    ("pseries::boot", "pseries", boot_and_inventory),
    ("pseries-2pe::boot", "pseries-2pe", boot_and_inventory),
    ("q35::boot", "q35", boot_and_inventory),
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
    (
        "pseries::scenario::crash_mid_scenario",
        "pseries",
        crash_mid_scenario,
    ),
    ("harness::target::ssh_loopback", "pseries", ssh_loopback),
    ("pseries::target::serial_console", "pseries", serial_console),
    (
        "pseries-eeh::eeh::host_qmp_freeze",
        "pseries-eeh",
        host_qmp_freeze,
    ),
];

/// Runs a trial body and keeps its record for the JUnit/JSON reports.
fn recorded(
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

type Records = Arc<Mutex<Vec<TrialRecord>>>;

/// One trial per (machine, scenario), interleaved by machine so parallel
/// test threads tend to work on different machines.
fn scenario_trials(
    m: &Arc<Manifest>,
    pool: &Arc<Pool>,
    records: &Records,
    skip: bool,
) -> Vec<Trial> {
    let files = match harness::scenario::load_dir(&m.scenarios_dir) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("the scenario catalogue does not load: {e}");
            return vec![
                Trial::test("scenarios::load", move || Err(msg.into())).with_kind("scenario"),
            ];
        }
    };
    // Names that are not machine definitions are targets (`--target NAME`).
    let qemu_machines = harness::machine::available(&m.machines_dir);
    let mut by_machine: BTreeMap<String, Vec<Trial>> = BTreeMap::new();
    for file in files {
        let file = Arc::new(file);
        for machine in &file.machines {
            if !qemu_machines.contains(machine)
                || (!m.machines.is_empty() && !m.machines.contains(machine))
            {
                continue;
            }
            let name = format!("{machine}::{}", file.name());
            let (pool, f, mach) = (pool.clone(), file.clone(), machine.clone());
            let body = recorded(records, name.clone(), move || {
                let t = pool.run(&mach, &f);
                (t.result.clone_result(), Some(t))
            });
            let trial = Trial::ignorable_test(name, body)
                .with_kind("scenario")
                .with_ignored_flag(skip || file.disabled.is_some());
            by_machine.entry(machine.clone()).or_default().push(trial);
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

trait CloneResult {
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

/// `cargo xtask test --target NAME`: the scenarios for that target (its own
/// name or a machine it `runs`), on one reused session.
fn target_trials(
    m: &Arc<Manifest>,
    run: &iobench_tests::TargetRun,
    records: &Records,
) -> (Vec<Trial>, Option<Arc<TargetPool>>) {
    let fail = |msg: String| {
        (
            vec![
                Trial::test(format!("{}::setup", run.name), move || Err(msg.into()))
                    .with_kind("target"),
            ],
            None,
        )
    };
    let def = match TargetDef::load(&run.file, &run.name) {
        Ok(d) => d,
        Err(e) => return fail(e.to_string()),
    };
    let files = match harness::scenario::load_dir(&m.scenarios_dir) {
        Ok(f) => f,
        Err(e) => return fail(format!("the scenario catalogue does not load: {e}")),
    };
    let wanted: Vec<String> = std::iter::once(run.name.clone())
        .chain(def.runs().iter().cloned())
        .collect();
    let pool = Arc::new(TargetPool::new((**m).clone(), run.name.clone(), def));
    let mut trials = Vec::new();
    for file in files
        .into_iter()
        .filter(|f| f.machines.iter().any(|x| wanted.contains(x)))
    {
        let name = format!("{}::{}", run.name, file.name());
        let (p, disabled) = (pool.clone(), file.disabled.is_some());
        let body = recorded(records, name.clone(), move || {
            let t = p.run(&file);
            (t.result.clone_result(), Some(t))
        });
        trials.push(
            Trial::ignorable_test(name, body)
                .with_kind("target")
                .with_ignored_flag(disabled),
        );
    }
    if trials.is_empty() {
        return fail(format!(
            "no scenario names {} (or a machine it runs) in `machines`",
            wanted.join(" or ")
        ));
    }
    (trials, Some(pool))
}

fn main() {
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
