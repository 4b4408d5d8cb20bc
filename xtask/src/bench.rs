//! `cargo xtask bench`: the performance goals, measured side by side.
//!
//! Per machine: a **bare** QEMU boot of the same kernel and initramfs with
//! the same machine arguments but no harness (no vsock backend, console to a
//! pipe nobody watches, init powering off at once; spawn → exit), against the
//! **harness** boot (spawn → agent connected and greeted).  Also the no-op
//! image build, unless `--no-suite` the warm VM suite, and in-guest op rates
//! (the `bench.*` scenarios under `scenarios/_bench/`), and the fuzzer's
//! checked ops per second on pseries and q35-mock (`cargo xtask fuzz`
//! without probes).  Medians of `--runs`
//! boots; a table on stdout and `target/iobench/bench.json`.  With
//! `--debug`, the cost of the debug kernels: each machine's boot to
//! agent-ready on its debug kernel against the normal one (interleaved), and
//! the warm suite on the debug kernels (`cargo xtask test --debug`, where the
//! agent also scans for leaks after each scenario).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use harness::qemu::{self, BootFiles, BootOptions, GuestMode};
use harness::vm::Vm;

use crate::cache::repo_root;
use crate::flags::{AccelFlag, BenchArgs, KernelSource, LinuxFlag, MachineOpts};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The options of a machine on kernel version `linux` (`--linux`, else
/// the default one).
fn opts(linux: Option<LinuxFlag>) -> MachineOpts {
    let source = KernelSource {
        linux,
        ..KernelSource::default()
    };
    MachineOpts {
        accel: AccelFlag::Auto,
        memory: None,
        cpus: None,
        qemu_args: vec![],
        append: None,
        kernel: None,
        source,
    }
}

/// The options of a machine on its debug kernel.
fn debug_opts(linux: Option<LinuxFlag>) -> MachineOpts {
    let mut o = opts(linux);
    o.source.debug = true;
    o
}

/// Times `cargo xtask test ARGS -- --quiet` into `log`: (seconds, verdict).
fn suite(args: &[&str], log: &std::path::Path) -> Result<(f64, String)> {
    let logf = std::fs::File::create(log)?;
    let t0 = Instant::now();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["xtask", "test"])
        .args(args)
        .args(["--", "--quiet"])
        .current_dir(repo_root())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .status()
        .context("running the suite")?;
    let verdict = if status.success() {
        "passed".to_string()
    } else {
        format!("FAILED, see {}", log.display())
    };
    Ok((t0.elapsed().as_secs_f64(), verdict))
}

/// Each machine's boot to agent-ready, normal kernel against debug kernel
/// (interleaved): table rows and JSON.
fn debug_boots(runs: usize, linux: Option<LinuxFlag>) -> Result<(Vec<String>, serde_json::Value)> {
    let out = crate::cache::out_dir();
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    for name in ["pseries", "q35"] {
        let spec_of = |o: &MachineOpts, tag: &str| {
            crate::run::spec(
                crate::run::machine(name, o)?,
                o,
                GuestMode::Agent,
                out.join(format!("bench/{name}-{tag}")),
            )
        };
        let (normal, debug) = (
            spec_of(&opts(linux), "normal")?,
            spec_of(&debug_opts(linux), "debug")?,
        );
        let (mut n, mut d) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            for (spec, times) in [(&normal, &mut n), (&debug, &mut d)] {
                let vm = Vm::boot(spec.clone())?;
                times.push(vm.timings.agent_ready);
                vm.poweroff()?;
            }
        }
        let (n, d) = (median(n).as_secs_f64(), median(d).as_secs_f64());
        rows.push(format!(
            "{name:<8} boot→agent-ready normal {n:>7.3} s   debug {d:>7.3} s   ratio {:.2}× ({})",
            d / n,
            debug.boot.accel.as_str()
        ));
        json.insert(
            name.into(),
            serde_json::json!({"normal_s": n, "debug_s": d, "ratio": d / n, "accel": debug.boot.accel.as_str(), "runs": runs}),
        );
    }
    Ok((rows, json.into()))
}

/// One bare boot: QEMU alone, init powers off immediately.
fn bare_boot(spec: &harness::vm::VmSpec) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let files = BootFiles {
        kernel: spec.images.kernel.clone(),
        initramfs: spec.images.initramfs.clone(),
        vhost_socket: None,
        serial_channel: None,
        qmp_socket: dir.path().join("qmp.sock"),
    };
    let boot = BootOptions {
        mode: GuestMode::Poweroff,
        ..spec.boot.clone()
    };
    let args = qemu::args(&spec.machine, &files, &boot);
    let mut cmd = Command::new(spec.machine.arch.qemu_binary());
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t0 = Instant::now();
    let mut child = harness::process::spawn_owned(cmd, "qemu (bare)")?;
    match child.wait_timeout(Duration::from_secs(120))? {
        Some(s) if s.success() => Ok(t0.elapsed()),
        Some(s) => bail!("bare boot of {} failed ({s})", spec.machine.name),
        None => bail!(
            "bare boot of {} did not power off in 120 s",
            spec.machine.name
        ),
    }
}

/// In-guest op rates: (label, machine, scenario under `scenarios/_bench/`).
const OP_RATES: &[(&str, &str, &str)] = &[
    (
        "IOAS map+unmap pairs (mock domain, 64 KiB)",
        "q35-mock",
        "ioas_map_unmap",
    ),
    (
        "sPAPR window map+unmap pairs (64 KiB)",
        "pseries",
        "spapr_map_unmap",
    ),
    (
        "edu DMA round trips (4 KiB, sPAPR)",
        "pseries",
        "edu_round_trips",
    ),
];

/// Sequences of the fuzz throughput rows.
const FUZZ_SEQUENCES: u64 = 300;

/// Boots `machine`, runs the bench scenario and returns its `bench.*` step's rate.
fn op_rate(machine: &str, file: &str, linux: Option<LinuxFlag>) -> Result<f64> {
    let path = repo_root()
        .join("scenarios/_bench")
        .join(format!("{file}.toml"));
    let scenario = harness::scenario::ScenarioFile::load(&path, None)?;
    let m = crate::run::machine(machine, &opts(linux))?;
    let spec = crate::run::spec(
        m,
        &opts(linux),
        GuestMode::Agent,
        crate::cache::out_dir().join("bench").join(file),
    )?;
    let mut vm = Vm::boot(spec)?;
    let run = harness::scenario::run_on(&mut vm, &scenario, |_| {});
    if !run.passed() {
        bail!(
            "benchmark scenario failed:\n{}",
            run.failure_report(&scenario, &vm)
        );
    }
    let _ = vm.poweroff();
    run.results
        .iter()
        .find(|r| r.op.starts_with("bench."))
        .and_then(|r| match &r.actual {
            harness::proto::Actual::Value(v) => {
                v.get("per_second").and_then(serde_json::Value::as_f64)
            }
            _ => None,
        })
        .with_context(|| format!("{}: no bench.* step with a rate", path.display()))
}

/// Runs the benchmark.
pub fn run(b: &BenchArgs) -> Result<()> {
    let linux = b.linux;
    let runs = b.runs.max(1);
    let out = crate::cache::out_dir();
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    for name in ["pseries", "q35"] {
        let m = crate::run::machine(name, &opts(linux))?;
        let spec = crate::run::spec(
            m,
            &opts(linux),
            GuestMode::Agent,
            out.join(format!("bench/{name}")),
        )?;
        let mut bare = Vec::new();
        let mut harness = Vec::new();
        // Interleave so drift in machine load hits both equally.
        for _ in 0..runs {
            bare.push(bare_boot(&spec)?);
            let vm = Vm::boot(spec.clone())?;
            harness.push(vm.timings.agent_ready);
            vm.poweroff()?;
        }
        let (b_med, h_med) = (median(bare), median(harness));
        let ratio = h_med.as_secs_f64() / b_med.as_secs_f64();
        rows.push(format!("{name:<8} bare boot→poweroff {:>7.3} s   harness boot→agent-ready {:>7.3} s   ratio {ratio:.2}× ({})", b_med.as_secs_f64(), h_med.as_secs_f64(), spec.boot.accel.as_str()));
        json.insert(name.into(), serde_json::json!({"bare_s": b_med.as_secs_f64(), "harness_s": h_med.as_secs_f64(), "ratio": ratio, "accel": spec.boot.accel.as_str(), "runs": runs}));
    }
    let t0 = Instant::now();
    for arch in [
        harness::machine::Arch::Ppc64le,
        harness::machine::Arch::X86_64,
    ] {
        crate::images::initramfs(arch)?;
    }
    let version = crate::images::version(&opts(linux).source)?;
    for f in harness::machine::KernelFlavour::ALL {
        crate::kernel::build(
            &crate::kernel::Flavour::on(f, version),
            &crate::kernel::Source::Debian,
            &[],
        )?;
    }
    let noop = t0.elapsed();
    rows.push(format!(
        "no-op image build ({} kernels, 2 agents, 2 initramfs): {:.3} s",
        harness::machine::KernelFlavour::ALL.len(),
        noop.as_secs_f64()
    ));
    json.insert("noop_build_s".into(), noop.as_secs_f64().into());
    if b.debug {
        let (r, j) = debug_boots(runs, linux)?;
        rows.extend(r);
        json.insert("debug_boot".into(), j);
    }
    if !b.no_suite {
        let version_args: Vec<&str> = match linux {
            Some(LinuxFlag::V6_12) => vec!["--linux", "6.12"],
            Some(LinuxFlag::V7_2) => vec!["--linux", "7.2"],
            None => vec![],
        };
        let (secs, verdict) = suite(&version_args, &out.join("bench-suite.log"))?;
        rows.push(format!(
            "warm VM suite (`cargo xtask test`, {verdict}): {secs:.1} s"
        ));
        json.insert("warm_suite_s".into(), secs.into());
        if b.debug {
            let (d, verdict) = suite(
                &[version_args.as_slice(), &["--debug"]].concat(),
                &out.join("bench-suite-debug.log"),
            )?;
            rows.push(format!(
                "warm VM suite on the debug kernels (`cargo xtask test --debug`, {verdict}): {d:.1} s ({:.2}×)",
                d / secs
            ));
            json.insert("warm_suite_debug_s".into(), d.into());
        }
    }
    for (label, machine, file) in OP_RATES {
        let per_second = op_rate(machine, file, linux)?;
        rows.push(format!(
            "{label:<44} {per_second:>10.1} /s  ({machine}, scenarios/_bench/{file}.toml)"
        ));
        json.insert(format!("rate_{file}_per_s"), per_second.into());
    }
    // The fuzzer's checked ops (each an agent op whose result is compared
    // with the model's prediction; no DMA probes) per second of batch time.
    for machine in ["pseries", "q35-mock"] {
        let s = crate::fuzz::throughput(machine, &opts(linux), FUZZ_SEQUENCES)?;
        rows.push(format!(
            "{:<44} {:>10.1} /s  ({machine}, {} ops in {:.1} s, {:.0}% of it the ops' own time in the guest, cargo xtask fuzz)",
            "fuzz: checked ops",
            s.rate(),
            s.checked,
            s.seconds,
            100.0 * s.op_share()
        ));
        json.insert(format!("fuzz_{machine}_checked_ops_per_s"), s.rate().into());
        json.insert(format!("fuzz_{machine}_op_share"), s.op_share().into());
    }
    println!("iobench bench ({runs} runs, medians)");
    for r in &rows {
        println!("  {r}");
    }
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_vec_pretty(&serde_json::Value::Object(json))?,
    )?;
    println!("  → {}", out.join("bench.json").display());
    Ok(())
}
