//! Target trials: the scenarios for `cargo xtask test --target NAME` on one
//! reused session, and the trials of the SSH and serial-console sessions
//! against their stand-ins.

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

/// SSH to a real sshd on loopback: unknown and changed host keys are refused,
/// trust-on-first-use records the key, the agent is copied, answers inventory
/// and a scenario honestly, and its directory is gone afterwards.
pub fn ssh_loopback(m: &Manifest, _machine: &str, trial: &str) -> Result<(), Failed> {
    let sshd = iobench_tests::fixture::LoopbackSshd::start()?;
    let agent = m
        .agents
        .get(&harness::machine::Arch::X86_64)
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

/// The pseries console on a unix socket, driven like a board's: shell prompt,
/// printk noise started on purpose, the agent's framed results read back
/// from between the kernel messages, and a real scenario passes that way.
pub fn serial_console(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
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
