//! `cargo xtask fuzz`: model-based fuzzing of the IOMMU interfaces a
//! machine offers.  Op sequences are drawn on the host from a seed
//! ([`generate`], arguments from the model's interesting points), run in
//! the guest in batches the agent runs without stopping at the first
//! unexpected result ([`batch`]; every sequence on a fresh agent state:
//! its own container or iommufd, closed at its end), and every result is
//! compared with `iobench_model`'s prediction ([`judge`], with the bytes
//! device accesses move tracked by [`shadow`]) on a guest [`exec`] boots
//! and reboots as needed.  Each new difference (a result, a probe's
//! bytes, a crash, a hang, a kernel report) is minimized ([`minimize`])
//! and written as a scenario file with one report line ([`report`]);
//! the reviewed known differences (`model/known-differences.toml`) are
//! counted, not reported.  With a `--kcov` kernel the guest traces each
//! batch and the run is guided by coverage ([`corpus`], through the
//! [`feedback::Feedback`] hook): sequences that reach new kernel code are
//! kept and mutated.

pub mod batch;
pub mod corpus;
pub mod exec;
pub mod feedback;
pub mod generate;
pub mod judge;
pub mod minimize;
pub mod report;
pub mod rng;
pub mod shadow;
pub mod target;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use harness::qemu::GuestMode;

use crate::cache::repo_root;
use crate::flags::FuzzArgs;
use corpus::{Corpus, Guided};
use exec::{Stats, VmRunner};
use feedback::{Feedback, NoFeedback};
use generate::{Plan, Sequence};
use judge::{Fresh, Runner};
use report::{Finding, KnownDifferences};
use target::Target;

/// Steps a batch aims at (the agent runs them in one go).
const BATCH_STEPS: usize = 1500;
/// Most sequences in a batch.
const BATCH_SEQUENCES: usize = 64;

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// After this many sequences.
    Sequences(u64),
    /// After this long.
    Time(Duration),
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Sequences judged.
    pub sequences: u64,
    /// Report lines of new findings (with their scenario files).
    pub new: Vec<String>,
    /// Known differences seen, by entry reason, with their counts.
    pub known: BTreeMap<String, u64>,
    /// Differences that did not show again when their sequence ran alone.
    pub unconfirmed: Vec<String>,
    /// Repeats of a finding already reported this run.
    pub repeats: u64,
    /// Model rules that decided some op.
    pub rules: BTreeSet<&'static str>,
    /// What it cost.
    pub stats: Stats,
}

/// A fuzz run's settings.
pub struct Run<'a> {
    /// What is fuzzed.
    pub target: &'a Target,
    /// The run's seed.
    pub seed: u64,
    /// How sequences are drawn.
    pub plan: Plan,
    /// When to stop.
    pub budget: Budget,
    /// Whether to minimize and write findings (the benchmark only counts).
    pub minimize: bool,
    /// Where findings go.
    pub out: std::path::PathBuf,
    /// The command line that reproduces the run, for the files.
    pub command: String,
    /// Its kernel options (`--linux 7.2 --patch F`), for `cargo xtask run`.
    pub kernel_flags: String,
    /// The reviewed differences.
    pub known: &'a KnownDifferences,
}

/// Whether the model says the sequence crashes the guest or disables DDW
/// until reboot (it goes last in its batch: the guest reboots after it).
fn ends_batch(target: &Target, seq: &Sequence) -> bool {
    let mut w = target.world.clone();
    let mut made = generate::Made::default();
    let crash = seq.items.iter().any(|it| match it {
        generate::Item::Op(op) => matches!(
            generate::apply(&mut w, &mut made, op),
            Some(Ok(o)) if o.reply == iobench_model::outcome::Reply::Crash
        ),
        _ => false,
    });
    let _ = w.release();
    crash || generate::ddw_disabled(&w)
}

/// Runs sequences on `runner` until the budget is spent.
pub fn fuzz(
    run: &Run<'_>,
    runner: &mut dyn Runner,
    feedback: &mut dyn Feedback,
) -> Result<Outcome> {
    let started = Instant::now();
    let mut plan = run.plan.clone();
    let mut out = Outcome::default();
    let mut queue: VecDeque<Sequence> = VecDeque::new();
    let mut next = 0u64;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let more = |next: u64, judged: u64| match run.budget {
        Budget::Sequences(n) => next < n && judged < n,
        Budget::Time(t) => started.elapsed() < t,
    };
    loop {
        // A batch: sequences left over from a broken run first.
        let mut batch: Vec<Sequence> = Vec::new();
        let mut steps = 0;
        while steps < BATCH_STEPS && batch.len() < BATCH_SEQUENCES {
            let seq = match queue.pop_front() {
                Some(s) => s,
                None if more(next, out.sequences) => {
                    next += 1;
                    generate::sequence(run.target, &plan, run.seed, next - 1)
                }
                None => break,
            };
            steps += seq.items.len() + 12;
            let last = ends_batch(run.target, &seq);
            batch.push(seq);
            if last {
                break;
            }
        }
        if batch.is_empty() {
            break;
        }
        let judged = runner.run(&batch, Fresh::No)?;
        let covered = runner.take_coverage();
        feedback.batch(&batch[..judged.len()], &judged, covered.as_ref(), &mut plan)?;
        for s in batch.iter().skip(judged.len()) {
            queue.push_back(s.clone());
        }
        for (seq, j) in batch.iter().zip(&judged) {
            out.sequences += 1;
            out.rules
                .extend(j.outcomes.iter().flatten().map(|o| o.rule.name()));
            out.rules.extend(j.side_rules.iter().map(|r| r.name()));
            let Some(d) = j.differences.first() else {
                continue;
            };
            if let Some(k) = run.known.explains(run.target, d) {
                *out.known.entry(k.reason.clone()).or_default() += 1;
                continue;
            }
            let sig = d.signature();
            if !seen.insert(sig) {
                out.repeats += 1;
                continue;
            }
            if !run.minimize {
                out.new.push(report::line(run.target, d, "not minimized"));
                continue;
            }
            println!(
                "fuzz: sequence {}: {}; minimizing",
                seq.index,
                report::line(run.target, d, "…")
            );
            match minimize::shrink(runner, seq, d)? {
                Some(s) => {
                    let f = Finding {
                        target: run.target,
                        seq: &s.seq,
                        judged: &s.judged,
                        diff: &s.diff,
                        original_len: seq.items.len(),
                        command: run.command.clone(),
                        kernel_flags: run.kernel_flags.clone(),
                    };
                    let path = f.write(&run.out)?;
                    let shown = path
                        .strip_prefix(repo_root())
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    let line = report::line(run.target, &s.diff, &shown);
                    println!(
                        "fuzz: NEW {line} ({} steps, {} runs to minimize)",
                        s.seq.items.len(),
                        s.runs
                    );
                    out.new.push(line);
                }
                None => {
                    let line = report::line(
                        run.target,
                        d,
                        &format!("sequence {} alone does not show it again", seq.index),
                    );
                    println!("fuzz: unconfirmed {line}");
                    out.unconfirmed.push(line);
                }
            }
        }
        if !more(next, out.sequences) && queue.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// The machine's VM spec and model, from the command line's options.
fn setup(a: &FuzzArgs) -> Result<(Target, harness::vm::VmSpec)> {
    let m = crate::run::machine(&a.machine, &a.opts)?;
    if m.qemu.build == harness::machine::QemuBuild::Stock {
        crate::deps::require(&[m.arch.qemu_binary()])?;
    }
    crate::deps::require(&[harness::vsock::BACKEND])?;
    let linux = crate::images::version(&a.opts.source)?;
    let out = crate::cache::out_dir().join("fuzz").join(&a.machine);
    let mut spec = crate::run::spec(m, &a.opts, GuestMode::Agent, out.join("vm"))?;
    // A step may take long (an edu DMA polls up to 10 s; a batch's
    // results are held at most until the step after); 20 silent seconds
    // are a hang (every try of a hang's minimization waits that long).
    spec.timeouts.agent_reply = Duration::from_secs(20);
    if a.opts.source.kcov {
        // A call in every basic block: under TCG the kernel boots slower,
        // as the debug kernels do.
        spec.timeouts.first_output *= harness::manifest::DEBUG_BOOT_FACTOR;
        spec.timeouts.agent_ready *= harness::manifest::DEBUG_BOOT_FACTOR;
        // And every step runs slower.
        spec.timeouts.agent_reply *= 2;
    }
    let target = Target::new(&a.machine, linux, target::fix_ids(&spec.images.patches))?;
    Ok((target, spec))
}

/// The kernel options of a run's command line: the version, `--fixes`,
/// `--kcov`, each `--patch`.
fn kernel_flags(a: &FuzzArgs, target: &Target) -> String {
    let mut c = format!(" --linux {}", target.linux.as_str());
    if a.opts.source.fixes {
        c.push_str(" --fixes");
    }
    if a.opts.source.kcov {
        c.push_str(" --kcov");
    }
    for p in &a.opts.source.patches {
        let _ = write!(c, " --patch {}", p.display());
    }
    c
}

/// The command line that reproduces a run (for the files it writes).
fn command(a: &FuzzArgs, target: &Target) -> String {
    let mut c = format!(
        "cargo xtask fuzz --machine {}{} --seed {}",
        a.machine,
        kernel_flags(a, target),
        a.seed
    );
    if a.probes != 1 {
        let _ = write!(c, " --probes {}", a.probes);
    }
    c
}

/// Coverage feedback for a `--kcov` run: the kernel's call sites, and
/// the corpus of earlier runs of the machine; with the kernel's tree.
fn guided(
    a: &FuzzArgs,
    target: &Target,
    spec: &harness::vm::VmSpec,
) -> Result<(Guided, std::path::PathBuf)> {
    let vmlinux = spec
        .images
        .vmlinux
        .as_ref()
        .context("--kcov: the kernel has no vmlinux to map PCs with (leave --kernel out)")?;
    let tree = crate::images::tree(&a.opts.source, target.linux)?;
    let collector = crate::coverage::collect(vmlinux, spec.machine.arch, &tree)?;
    let corpus = if a.unguided {
        None
    } else {
        let c = Corpus::load(&Corpus::dir_for(&crate::cache::cache_dir(), target))?;
        for f in &c.skipped {
            eprintln!(
                "fuzz: {} is no corpus entry of this fuzzer; left out",
                f.display()
            );
        }
        Some(c)
    };
    Ok((Guided::new(collector, corpus), tree))
}

/// Runs `cargo xtask fuzz`: guided by coverage with `--kcov` (the
/// coverage report then goes to `coverage/<machine>-fuzz/`).
pub fn run(a: &FuzzArgs) -> Result<()> {
    let (target, spec) = setup(a)?;
    let known = KnownDifferences::load(&repo_root().join("model/known-differences.toml"))?;
    let out_dir = crate::cache::out_dir().join("fuzz").join(&a.machine);
    let budget = match (a.sequences, a.time) {
        (Some(n), _) => Budget::Sequences(n),
        (None, Some(t)) => Budget::Time(t),
        (None, None) => Budget::Time(Duration::from_secs(60)),
    };
    let cmd = command(a, &target);
    let (mut guided, tree) = if a.opts.source.kcov {
        let (g, tree) = guided(a, &target, &spec)?;
        (Some(g), Some(tree))
    } else {
        (None, None)
    };
    println!(
        "fuzz: {} on Linux {} ({}), seed {}, {}{}",
        a.machine,
        target.linux.as_str(),
        spec.boot.accel.as_str(),
        a.seed,
        match budget {
            Budget::Sequences(n) => format!("{n} sequences"),
            Budget::Time(t) => format!("{} s", t.as_secs()),
        },
        match &guided {
            Some(Guided {
                collector,
                corpus: Some(c),
                ..
            }) => format!(
                ", guided by KCOV ({} call sites; corpus of {} sequences)",
                collector.site_count(),
                c.len()
            ),
            Some(g) => format!(
                ", KCOV measured but not guiding ({} call sites)",
                g.collector.site_count()
            ),
            None => String::new(),
        }
    );
    let mut plan = Plan {
        probes: a.probes,
        ..Plan::default()
    };
    if let Some(g) = &guided {
        g.prime(&mut plan);
    }
    let run = Run {
        target: &target,
        seed: a.seed,
        plan,
        budget,
        minimize: true,
        out: out_dir.clone(),
        command: cmd.clone(),
        kernel_flags: kernel_flags(a, &target),
        known: &known,
    };
    let started = Instant::now();
    let mut runner = VmRunner::new(target.clone(), spec);
    let result = match &mut guided {
        Some(g) => {
            runner = runner.with_coverage();
            fuzz(&run, &mut runner, g)
        }
        None => fuzz(&run, &mut runner, &mut NoFeedback),
    };
    runner.power_off();
    let mut o = result?;
    o.stats = runner.stats.clone();
    let mut text = summary(&target, &cmd, &o, started.elapsed());
    if let (Some(g), Some(tree)) = (&guided, &tree) {
        let suffix = if a.unguided { "fuzz-unguided" } else { "fuzz" };
        let dir = crate::coverage::report_dir(&format!("{}-{suffix}", a.machine));
        let files = g.collector.write_report(
            &dir,
            tree,
            &format!("fuzz on {} (Linux {})", a.machine, target.linux.as_str()),
        )?;
        let corpus = match &g.corpus {
            None => format!("{} sequences reached new blocks", g.found),
            Some(c) => format!(
                "{} sequences reached new blocks; corpus of {} sequences in {}",
                g.found,
                c.len(),
                Corpus::dir_for(&crate::cache::cache_dir(), &target).display()
            ),
        };
        let _ = writeln!(
            text,
            "  coverage: {} kernel blocks reached; {corpus}; {} of {} batches overflowed the trace buffer\n{}  HTML: {}",
            g.collector.sites_hit(),
            g.lost,
            g.batches,
            files,
            dir.join("index.html").display()
        );
        text.push_str(&crate::coverage::never_entered(&g.collector.files()));
    }
    print!("{text}");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("report.txt"), &text)?;
    if !o.new.is_empty() {
        bail!(
            "{} new difference(s) between the kernel and the model; scenarios in {}",
            o.new.len(),
            out_dir.display()
        );
    }
    Ok(())
}

/// Runs `cargo xtask coverage --fuzz T`: a guided fuzz run of one
/// machine on its `--kcov` kernel, its coverage reported.
pub fn coverage(a: &crate::flags::CoverageArgs) -> Result<()> {
    let (Some(time), [machine]) = (a.fuzz, a.machine.as_slice()) else {
        bail!("--fuzz: one --machine at a time (a fuzz run drives one machine)");
    };
    if a.scenarios.is_some() {
        bail!("--fuzz runs no scenarios: leave --scenarios out");
    }
    let mut opts = a.opts.clone();
    opts.source.kcov = true;
    opts.source
        .linux
        .get_or_insert(crate::flags::LinuxFlag::V7_2);
    run(&FuzzArgs {
        machine: machine.clone(),
        seed: 1,
        time: Some(time),
        sequences: None,
        probes: 1,
        unguided: false,
        opts,
    })
}

/// The run's report.
fn summary(target: &Target, cmd: &str, o: &Outcome, wall: Duration) -> String {
    let s = &o.stats;
    let mut t = String::new();
    let _ = writeln!(t, "{cmd}");
    let _ = writeln!(
        t,
        "  {} sequences, {} checked ops in {:.1} s of batches ({:.0} checked ops/s without the probes' {:.1} s; {:.0}% of that the steps' own time in the guest), {} steps, {} batches, {} boots, {:.0} s in all",
        o.sequences,
        s.checked,
        s.seconds,
        s.rate(),
        s.probe_seconds,
        100.0 * s.op_share(),
        s.steps,
        s.batches,
        s.boots,
        wall.as_secs_f64()
    );
    let family = if target.is_spapr() {
        iobench_model::rule::Family::Spapr
    } else {
        iobench_model::rule::Family::Iommufd
    };
    let all: Vec<&str> = iobench_model::rule::Rule::ALL
        .iter()
        .filter(|r| r.family() == family)
        .map(|r| r.name())
        .collect();
    let unseen: Vec<&str> = all
        .iter()
        .copied()
        .filter(|r| !o.rules.contains(r))
        .collect();
    let _ = writeln!(
        t,
        "  {} of the model's {} {family:?} rules decided an op; not reached: {}",
        all.len() - unseen.len(),
        all.len(),
        unseen.join(", ")
    );
    let _ = writeln!(t, "  new differences: {}", o.new.len());
    for l in &o.new {
        let _ = writeln!(t, "    NEW {l}");
    }
    for (reason, n) in &o.known {
        let _ = writeln!(t, "    known ×{n}: {reason}");
    }
    for l in &o.unconfirmed {
        let _ = writeln!(t, "    unconfirmed {l}");
    }
    if o.repeats > 0 {
        let _ = writeln!(t, "    {} repeats of findings above", o.repeats);
    }
    t
}

/// The checked-ops rate on `machine` (no probes, no crashes): what
/// `cargo xtask bench` reports.
pub fn throughput(
    machine: &str,
    opts: &crate::flags::MachineOpts,
    sequences: u64,
) -> Result<Stats> {
    let a = FuzzArgs {
        machine: machine.into(),
        seed: 1,
        time: None,
        sequences: Some(sequences),
        probes: 0,
        unguided: false,
        opts: opts.clone(),
    };
    let (target, spec) = setup(&a)?;
    let known = KnownDifferences::load(&repo_root().join("model/known-differences.toml"))?;
    let run = Run {
        target: &target,
        seed: 1,
        plan: Plan {
            probes: 0,
            crash_one_in: 0,
            ..Plan::default()
        },
        budget: Budget::Sequences(sequences),
        minimize: false,
        out: crate::cache::out_dir().join("fuzz").join(machine),
        command: command(&a, &target),
        kernel_flags: kernel_flags(&a, &target),
        known: &known,
    };
    let mut runner = VmRunner::new(target.clone(), spec);
    // A first batch boots the machine; the rate counts batches only.
    let o = fuzz(&run, &mut runner, &mut NoFeedback);
    runner.power_off();
    o?;
    Ok(runner.stats.clone())
}
