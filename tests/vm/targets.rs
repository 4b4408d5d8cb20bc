//! Target trials: the scenarios for `cargo xtask test --target NAME` on one
//! reused session, and the trials of the SSH and serial-console sessions
//! against their stand-ins: host keys, and the targets' policies at both
//! layers (the host's check before a run, the agent's refusal when a
//! scenario is forced past it).

use std::path::Path;
use std::sync::Arc;

use harness::manifest::Manifest;
use harness::qemu::GuestMode;
use harness::report::chain;
use harness::scenario::AgentHost;
use harness::target::{SerialDef, Session, TargetDef, TargetError};
use iobench_tests::pool::TargetPool;
use libtest_mimic::{Failed, Trial};

use crate::record::{CloneResult, Records, recorded};
use crate::support::{OrFail, catalogue_scenario, spec};

fn expect_refused(
    r: Result<Session, TargetError>,
    what: &str,
    ok: impl Fn(&TargetError) -> bool,
) -> Result<(), Failed> {
    match r {
        Err(e) if ok(&e) => Ok(()),
        Err(e) => Err(format!("{what}: wrong error: {}", chain(&e)).into()),
        Ok(_) => Err(format!("{what}: the connection was accepted").into()),
    }
}

/// Opens sessions to an SSH stand-in with the manifest's x86_64 agent,
/// logging under the trial's directory.
fn ssh_opener(
    m: &Manifest,
    trial: &str,
) -> Result<impl Fn(harness::target::SshDef) -> Result<Session, TargetError>, Failed> {
    let agent = m
        .agents
        .get(&harness::machine::Arch::X86_64)
        .ok_or("no x86_64 agent in the manifest")?
        .clone();
    let log_dir = m.log_root.join(trial.replace("::", "/"));
    Ok(move |d| Session::open("ssh-loopback", &TargetDef::Ssh(d), &log_dir, Some(&agent)))
}

/// SSH to a real sshd on loopback: unknown and changed host keys are refused,
/// trust-on-first-use records the key, the agent is copied, answers inventory
/// and a scenario honestly, and its directory is gone afterwards.
pub fn ssh_loopback(m: &Manifest, _machine: &str, trial: &str) -> Result<(), Failed> {
    let sshd = iobench_tests::fixture::LoopbackSshd::start()?;
    let open = ssh_opener(m, trial)?;
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
    open(tofu).or_fail()?.close().or_fail()?;
    let recorded = std::fs::read_to_string(dir.join("empty_known_hosts"))?;
    if !recorded.contains(&format!("[127.0.0.1]:{}", sshd.port)) {
        return Err(format!("trust_on_first_use did not record the key: {recorded:?}").into());
    }
    let mut session = open(sshd.target()).or_fail()?;
    let remote = session.remote_dir().ok_or("no remote dir")?.to_string();
    let hello = session.agent().or_fail()?.hello().clone();
    let inv = session.agent().or_fail()?.inventory().or_fail()?;
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
    session.close().or_fail()?;
    if Path::new(&remote).exists() {
        return Err(format!("{remote} is left on the target").into());
    }
    Ok(())
}

/// A machine booted with its console on a unix socket, for a serial session.
struct ConsoleVm {
    /// Holds the socket; removed when dropped.
    _dir: tempfile::TempDir,
    sock: std::path::PathBuf,
    log_dir: std::path::PathBuf,
    vm: harness::vm::Vm,
}

fn console_vm(m: &Manifest, machine: &str, trial: &str) -> Result<ConsoleVm, Failed> {
    let dir = tempfile::Builder::new()
        .prefix("iobench-serial-")
        .tempdir()?;
    let sock = dir.path().join("console.sock");
    let s = spec(m, machine, trial, GuestMode::Shell, "")?;
    let log_dir = s.log_dir.clone();
    let vm = iobench_tests::fixture::console_machine(s, &sock)?;
    Ok(ConsoleVm {
        _dir: dir,
        sock,
        log_dir,
        vm,
    })
}

/// The pseries console on a unix socket, driven like a board's: shell prompt,
/// printk noise started on purpose, the agent's framed results read back
/// from between the kernel messages, and a real scenario passes that way.
pub fn serial_console(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let ConsoleVm {
        _dir,
        sock,
        log_dir,
        vm,
    } = console_vm(m, machine, trial)?;
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
        devices: vec![decl("1234:11e8", Some(1)).map_err(|e| format!("{e:?}"))?],
        writable: None,
        allow_system_devices: vec![],
    };
    let mut session = Session::open(
        "serial-pseries",
        &TargetDef::Serial(def),
        &log_dir.join("serial"),
        None,
    )
    .or_fail()?;
    let inv = session.agent().or_fail()?.inventory().or_fail()?;
    if !inv.features.iter().any(|f| f == "vfio-spapr-tce-v2") {
        return Err(format!("inventory over the console lacks VFIO: {:?}", inv.features).into());
    }
    let file = catalogue_scenario(m, "seed/userspace_driver.toml")?;
    let run = harness::scenario::run_on(&mut session, &file, |_| {});
    if !run.passed() {
        return Err(run.failure_report(&file, &session).into());
    }
    session.close().or_fail()?;
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

/// `cargo xtask test --target NAME`: the scenarios for that target (its own
/// name or a machine it `runs`), on one reused session.
pub fn target_trials(
    m: &Arc<Manifest>,
    run: &harness::manifest::TargetRun,
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
        Err(e) => return fail(chain(&e)),
    };
    let files = match harness::scenario::load_dir(&m.scenarios_dir) {
        Ok(f) => f,
        Err(e) => {
            return fail(format!(
                "the scenario catalogue does not load: {}",
                chain(&e)
            ));
        }
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

/// A stand-in sshd restarted with a new host key (a reinstalled or
/// impersonated machine) is refused, trust-on-first-use or not.
pub fn ssh_host_key_changed(m: &Manifest, _machine: &str, trial: &str) -> Result<(), Failed> {
    let mut sshd = iobench_tests::fixture::LoopbackSshd::start()?;
    let open = ssh_opener(m, trial)?;
    open(sshd.target()).or_fail()?.close().or_fail()?;
    let before = std::fs::read_to_string(sshd.dir.path().join("known_hosts"))?;
    sshd.restart_with_new_host_key()?;
    expect_refused(open(sshd.target()), "host key changed by a restart", |e| {
        matches!(e, TargetError::HostKeyMismatch { .. })
    })?;
    let mut tofu = sshd.target();
    tofu.trust_on_first_use = true;
    expect_refused(
        open(tofu),
        "changed host key with trust_on_first_use",
        |e| matches!(e, TargetError::HostKeyMismatch { .. }),
    )?;
    let after = std::fs::read_to_string(sshd.dir.path().join("known_hosts"))?;
    if after != before {
        return Err(format!("known_hosts was changed: {before:?} → {after:?}").into());
    }
    Ok(())
}

/// A scenario of `steps`, checked against the catalogue only (not the
/// policy): what a forced run sends.
fn forced(name: &str, steps: &str) -> Result<harness::scenario::ScenarioFile, Failed> {
    let text =
        format!("description = \"forced past the policy check\"\nmachines = [\"x\"]\n{steps}");
    harness::scenario::ScenarioFile::parse(
        &text,
        Path::new(&format!("policy/{name}.toml")),
        &format!("policy::{name}"),
    )
    .or_fail()
}

/// Runs `file` on `session`: its last step must fail with an agent error
/// containing `needle` (a refusal, not an errno), and the session must go on.
fn refused_by_agent(
    session: &mut Session,
    file: &harness::scenario::ScenarioFile,
    needle: &str,
) -> Result<String, Failed> {
    let run = harness::scenario::run_on(session, file, |_| {});
    if let Err(e) = &run.outcome {
        return Err(format!("{}: the session broke: {}", file.name(), chain(&**e)).into());
    }
    match run.results.last().map(|r| &r.actual) {
        Some(harness::proto::Actual::Error(e)) if e.contains(needle) => {
            eprintln!("{}: {e}", file.name());
            Ok(e.clone())
        }
        _ => Err(format!(
            "{}: expected the agent to refuse with {needle:?}\n{}",
            file.name(),
            harness::report::table(file, &run.results)
        )
        .into()),
    }
}

/// A `devices` entry, as the targets file would declare it.
fn decl(spec: &str, count: Option<u32>) -> Result<harness::policy::DeviceDecl, Failed> {
    Ok(harness::policy::DeviceDecl(
        harness::proto::policy::DeviceRule {
            device: harness::proto::policy::DeviceSpec::parse(spec)?,
            count,
        },
    ))
}

/// The PCI function this host's root filesystem is on, as sysfs says.
fn root_disk_function() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").ok()?.dev();
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let real = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    real.components()
        .filter_map(|c| c.as_os_str().to_str())
        .rfind(|c| harness::proto::policy::is_address(c))
        .map(str::to_string)
}

/// The `ssh-loopback` policy at both layers: the shipped target ignores a
/// scenario that steps outside it before connecting, naming the step; forced
/// past that check, the agent refuses writes outside `writable`, undeclared
/// devices, and the root disk's controller even when declared — each as a
/// step error, the session going on.
pub fn ssh_policy(m: &Manifest, _machine: &str, trial: &str) -> Result<(), Failed> {
    // Layer 1: the pool of the shipped target refuses before it connects.
    let lab = m
        .scenarios_dir
        .parent()
        .ok_or("no repository root")?
        .join("targets/lab.toml");
    let def = TargetDef::load(&lab, "ssh-loopback").or_fail()?;
    let pool = TargetPool::new(m.clone(), "ssh-loopback".into(), def);
    let outside = forced(
        "bind_undeclared",
        "[[step]]\nop = \"mem.alloc\"\nsize = \"4K\"\n\n[[step]]\nop = \"pci.bind_vfio\"\ndevice = \"8086:1521\"\n",
    )?;
    let t = pool.run(&outside);
    match &t.result {
        Ok(libtest_mimic::Completion::Ignored { reason })
            if reason.as_deref().is_some_and(|r| r.starts_with("policy/bind_undeclared.toml:7: step 2 (pci.bind_vfio): refused by target ssh-loopback's policy: 8086:1521 is not a declared device (it declares no devices)")) =>
        {
            eprintln!("ignored: {reason:?}");
        }
        other => {
            let got = match other {
                Ok(libtest_mimic::Completion::Ignored { reason }) => format!("ignored: {reason:?}"),
                Ok(_) => "completed".into(),
                Err(e) => format!("failed: {e:?}"),
            };
            return Err(format!("the pool did not refuse the scenario as expected: {got}").into());
        }    }
    pool.shutdown()
        .map_err(|e| format!("nothing should have started: {e}"))?;

    // Layer 2: the agent, under a policy that declares the root disk.
    let sshd = iobench_tests::fixture::LoopbackSshd::start()?;
    let open = ssh_opener(m, trial)?;
    let root_disk = root_disk_function();
    let mut d = sshd.target();
    d.devices = root_disk
        .iter()
        .map(|b| decl(b, None))
        .collect::<Result<_, _>>()?;
    let mut session = open(d).or_fail()?;
    let scratch = std::env::temp_dir().join(format!("iobench-policy-{}", std::process::id()));
    let write = forced(
        "write_outside",
        &format!(
            "[[step]]\nop = \"file.write\"\npath = \"{}\"\ndata = \"x\"\n",
            scratch.display()
        ),
    )?;
    refused_by_agent(&mut session, &write, "none of the writable paths")?;
    if scratch.exists() {
        return Err(format!("{} was written", scratch.display()).into());
    }
    let etc = forced(
        "write_etc",
        "[[step]]\nop = \"file.write\"\npath = \"/sys/bus/pci/../../../etc/iobench-policy\"\ndata = \"x\"\n",
    )?;
    refused_by_agent(&mut session, &etc, "`.` and `..` are not allowed")?;
    let undeclared = std::fs::read_dir("/sys/bus/pci/devices")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|b| Some(b) != root_disk.as_ref());
    if let Some(bdf) = &undeclared {
        // group_open refuses before it looks at the driver: harmless if it did not.
        let open = forced(
            "group_undeclared",
            &format!("[[step]]\nop = \"vfio.group_open\"\ndevice = \"{bdf}\"\n"),
        )?;
        refused_by_agent(&mut session, &open, "is not a declared device")?;
    }
    match &root_disk {
        Some(bdf) => {
            let hello = session.agent().or_fail()?.hello().clone();
            if !hello.protected.iter().any(|p| &p.bdf == bdf) {
                return Err(format!(
                    "the agent does not protect the root disk's {bdf}: {:?}",
                    hello.protected
                )
                .into());
            }
            // Only ops that do nothing to a device the agent failed to refuse.
            let cdev = forced(
                "cdev_root_disk",
                &format!("[[step]]\nop = \"vfio.cdev_open\"\ndevice = \"{bdf}\"\n"),
            )?;
            refused_by_agent(&mut session, &cdev, "the root filesystem")?;
            let unbind = forced(
                "unbind_root_disk",
                &format!(
                    "[[step]]\nop = \"file.write\"\npath = \"/sys/bus/pci/drivers/iobench-none/unbind\"\ndata = \"{bdf}\"\n"
                ),
            )?;
            refused_by_agent(&mut session, &unbind, "the root filesystem")?;
        }
        None => eprintln!("this host's root filesystem is not on PCI: its check is skipped"),
    }
    // The session goes on: the catalogue's scenario for this host passes.
    let file = catalogue_scenario(m, "hil/unsupported_without_iommu.toml")?;
    let run = harness::scenario::run_on(&mut session, &file, |_| {});
    if !run.passed() {
        return Err(run.failure_report(&file, &session).into());
    }
    session.close().or_fail()?;
    Ok(())
}

/// The `serial-pseries` policy: the host cannot know how many edu the VM
/// has, so a policy expecting two lets the catalogue's userspace driver
/// through, and the agent refuses its bind; with no devices declared, the
/// host refuses it at once, naming the step.
pub fn serial_policy(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let ConsoleVm {
        _dir,
        sock,
        log_dir,
        vm,
    } = console_vm(m, machine, trial)?;
    let lab = m
        .scenarios_dir
        .parent()
        .ok_or("no repository root")?
        .join("targets/lab.toml");
    let TargetDef::Serial(mut def) = TargetDef::load(&lab, "serial-pseries").or_fail()? else {
        return Err("serial-pseries is not a serial target".into());
    };
    def.console = format!("unix:{}", sock.display());
    def.fixture = None;
    def.prepare = None;
    def.devices = vec![decl("1234:11e8", Some(2))?];
    let target = TargetDef::Serial(def);
    let driver = catalogue_scenario(m, "seed/userspace_driver.toml")?;
    harness::policy::check(&driver, &target.policy("serial-pseries")).or_fail()?;
    let mut session =
        Session::open("serial-pseries", &target, &log_dir.join("serial"), None).or_fail()?;
    refused_by_agent(
        &mut session,
        &driver,
        "it declares 2 function(s) 1234:11e8, the machine has 1",
    )?;
    let etc = forced(
        "write_etc",
        "[[step]]\nop = \"file.write\"\npath = \"/etc/iobench-policy\"\ndata = \"x\"\n",
    )?;
    refused_by_agent(&mut session, &etc, "nothing under /etc")?;
    let mem = forced(
        "memory_only",
        "[[step]]\nop = \"mem.alloc\"\nsize = \"4K\"\nfill = \"seq:3\"\nbind = \"b\"\n\n[[step]]\nop = \"mem.check\"\nbuffer = \"$b\"\npattern = \"seq:3\"\n",
    )?;
    let run = harness::scenario::run_on(&mut session, &mem, |_| {});
    if !run.passed() {
        return Err(run.failure_report(&mem, &session).into());
    }
    session.close().or_fail()?;
    drop(vm);
    // With no devices declared, the host refuses the bind at its line.
    let none = harness::policy::build("serial-pseries", &[], None, &[]);
    let e = harness::policy::check(&driver, &none)
        .err()
        .ok_or("a policy with no devices let the userspace driver through")?;
    let want = "seed/userspace_driver.toml:9: step 1 (pci.bind_vfio): refused by target serial-pseries's policy: 1234:11e8 is not a declared device (it declares no devices)";
    if !e.to_string().ends_with(want) {
        return Err(format!("expected …{want}\ngot {e}").into());
    }
    Ok(())
}
