//! Sequences run in a guest: one booted machine (`crate::run::spec`, the
//! images `cargo xtask run` boots) runs batches of sequences through its
//! agent ([`super::batch`]), and each sequence is judged in order
//! ([`super::judge`]) from the state the previous one left (the model's
//! `World::successor`).  The machine is rebooted when that state is one
//! the model cannot go on from or should not (a crash, DDW disabled for
//! the PE, many regions left pinned), when a run showed a difference (the
//! kernel is in a state the model does not know), and when a caller asks
//! for a fresh boot (minimizing a crash or a once-per-boot warning).
//! Every machine is powered off (or killed) when the runner is dropped.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::proto::StepResult;
use harness::vm::{Vm, VmError, VmSpec};
use iobench_model::world::{Backend, World};

use super::batch::{self, Role};
use super::generate::Sequence;
use super::judge::{BatchCoverage, Broke, Fresh, Judged, Observed, Runner, judge};
use super::target::Target;

/// What the runs cost and covered.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Ops compared with the model.
    pub checked: u64,
    /// Steps the agent ran.
    pub steps: u64,
    /// Wall time of the batches (the agent's runs, results streamed in).
    pub seconds: f64,
    /// Of which the probes' DMA, fills and checks (their steps' own time).
    pub probe_seconds: f64,
    /// Of which the other steps' own time in the guest (each step's
    /// `micros`: the syscalls and the kernel's work); the rest of the
    /// batches' time is the agent's and the transport's.
    pub op_seconds: f64,
    /// Machines booted.
    pub boots: u64,
    /// Batches run.
    pub batches: u64,
}

impl Stats {
    /// The share of the batches' time (probes left out) the steps spent
    /// in their own work in the guest.
    pub fn op_share(&self) -> f64 {
        let t = self.seconds - self.probe_seconds;
        if t > 0.0 { self.op_seconds / t } else { 0.0 }
    }

    /// Checked ops per second of batch time, the probes' steps left out.
    pub fn rate(&self) -> f64 {
        let t = self.seconds - self.probe_seconds;
        if t > 0.0 {
            self.checked as f64 / t
        } else {
            0.0
        }
    }
}

/// Whether the guest should be rebooted before going on from `w`.
fn worn(w: &World) -> bool {
    match &w.backend {
        Backend::Spapr(c) => c.crashed() || c.ddw_disabled() || c.mm_regions().len() > 8,
        _ => false,
    }
}

/// A guest that runs sequences.
pub struct VmRunner {
    target: Target,
    spec: VmSpec,
    vm: Option<Vm>,
    carry: World,
    dirty: bool,
    /// Trace each batch's kernel code (a `--kcov` kernel).
    coverage: bool,
    /// The last run's coverage.
    covered: Option<BatchCoverage>,
    /// What it cost so far.
    pub stats: Stats,
}

impl VmRunner {
    /// A runner booting `spec` (lazily, on the first run).
    pub fn new(target: Target, spec: VmSpec) -> VmRunner {
        let carry = target.world.clone();
        VmRunner {
            target,
            spec,
            vm: None,
            carry,
            dirty: false,
            coverage: false,
            covered: None,
            stats: Stats::default(),
        }
    }

    /// Has every batch traced with KCOV (the kernel must have it).
    pub fn with_coverage(mut self) -> VmRunner {
        self.coverage = true;
        self
    }

    fn boot(&mut self) -> Result<()> {
        self.power_off();
        let mut last = None;
        for _ in 0..2 {
            match Vm::boot(self.spec.clone()) {
                Ok(mut vm) => {
                    if self.coverage {
                        let on = match vm.agent() {
                            Ok(a) => a.set_coverage(true).map_err(|e| vm.explain(e)),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = on {
                            let _ = vm.poweroff();
                            return Err(e).context("turning KCOV on in the guest");
                        }
                    }
                    self.vm = Some(vm);
                    self.carry = self.target.world.clone();
                    self.dirty = false;
                    self.stats.boots += 1;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("two tries")).context(format!("booting {}", self.spec.machine.name))
    }

    /// Powers the machine off (kills it if it does not go).
    pub fn power_off(&mut self) {
        if let Some(vm) = self.vm.take() {
            let _ = vm.poweroff();
        }
    }

    /// Runs `seqs` as one batch.  Without `markers` a batch's kernel log
    /// is checked as a whole (a lone sequence's is its own); a report the
    /// model does not explain makes the batch run again on a fresh boot
    /// with markers, to say which sequence it came from.
    fn run_once(&mut self, seqs: &[Sequence], fresh: Fresh, markers: bool) -> Result<Vec<Judged>> {
        let reboot = self.vm.is_none()
            || self.dirty
            || fresh == Fresh::Boot
            || (fresh == Fresh::Process && !self.carry.pristine())
            || worn(&self.carry);
        if reboot {
            self.boot()?;
        }
        self.covered = None;
        let markers = markers && seqs.len() > 1;
        let b = batch::build(&self.target, seqs, "fuzz::batch", markers);
        let vm = self.vm.as_mut().expect("booted above");
        let mut results: Vec<StepResult> = Vec::with_capacity(b.scenario.steps.len());
        let t0 = Instant::now();
        let run = (|| {
            let agent = vm.agent()?;
            agent.dmesg().map_err(|e| vm.explain(e))?;
            let agent = vm.agent()?;
            agent
                .run(&b.scenario, |r| results.push(r.clone()))
                .map_err(|e| vm.explain(e))
        })();
        let elapsed = t0.elapsed();
        let (broke, why) = match &run {
            Ok(_) => (None, String::new()),
            Err(e) => (
                Some(match e {
                    VmError::Hung { .. } => Broke::Hang,
                    _ => Broke::Crash,
                }),
                e.to_string().lines().next().unwrap_or_default().to_string(),
            ),
        };
        let log = match (&broke, self.vm.as_mut()) {
            (None, Some(vm)) => vm.agent()?.dmesg().unwrap_or_default(),
            _ => Vec::new(),
        };
        let covered = match (&broke, self.vm.as_mut()) {
            (None, Some(vm)) => vm.agent()?.take_coverage(),
            _ => None,
        }
        .filter(|c| {
            let whole = c.error.is_none() && c.first_step.len() == c.pcs.len();
            if !whole {
                eprintln!(
                    "fuzz: the batch's coverage is unusable ({}): an agent without first steps?",
                    c.error
                        .as_deref()
                        .unwrap_or("PCs without their first steps")
                );
            }
            whole
        })
        .map(|c| BatchCoverage {
            lost: c.lost,
            ..super::corpus::split(&c.pcs, &c.first_step, &b.spans)
        });
        // The last batch's steps, for people (and for timing them).
        let _ = std::fs::write(self.spec.log_dir.join("last-batch.txt"), {
            let mut t = format!(
                "# {} steps in {:.3} s ({} sequences)\n",
                results.len(),
                elapsed.as_secs_f64(),
                seqs.len()
            );
            for (r, (seq, role)) in results.iter().zip(&b.roles) {
                let _ = writeln!(
                    t,
                    "{:>6} seq {:<3} {:<10} {:<26} {:>8} µs  {}",
                    r.index,
                    seq,
                    format!("{role:?}"),
                    r.op,
                    r.micros,
                    r.actual
                );
            }
            t
        });
        let _ = std::fs::write(self.spec.log_dir.join("last-batch.dmesg"), log.join("\n"));
        self.stats.batches += 1;
        self.stats.steps += results.len() as u64;
        self.stats.seconds += elapsed.as_secs_f64();
        for r in &results {
            let t = Duration::from_micros(r.micros).as_secs_f64();
            if matches!(r.op.as_str(), "edu.dma" | "mem.fill" | "mem.check") {
                self.stats.probe_seconds += t;
            } else {
                self.stats.op_seconds += t;
            }
        }
        // Each sequence's share of the kernel log, by the markers' counts
        // (without markers: a lone sequence's is all of it; a batch's is
        // checked as a whole below).
        let mut cuts = Vec::new();
        for span in &b.spans {
            let marker = span.end - 1;
            cuts.push(if markers {
                results
                    .get(marker)
                    .and_then(|r| batch::marker_lines(&r.actual))
            } else {
                None
            });
        }
        let whole = !markers && seqs.len() > 1;
        let mut out = Vec::new();
        let mut from = 0;
        for (k, seq) in seqs.iter().enumerate() {
            let span = b.spans[k].clone();
            if broke.is_some() && results.len() <= span.start {
                break; // never reached: the caller runs it again
            }
            let mut obs = Observed::default();
            for i in span.clone() {
                let r = results.get(i).cloned();
                match b.roles[i].1 {
                    Role::Prelude => obs.prelude.push(r),
                    Role::Item(_) => obs.items.push(r),
                    Role::Teardown => obs.teardown.push(r),
                    Role::Marker => {}
                }
            }
            // A plain scenario (a lone sequence) ends at a step the agent
            // could not run; what follows did not run.
            obs.cut = broke.is_none() && !b.scenario.keep_going && results.len() < span.end;
            let broke_here = broke.is_some() && results.len() < span.end;
            if broke_here {
                obs.broke = broke;
                obs.why = why.clone();
                obs.lossy = b.scenario.keep_going;
            }
            if !whole {
                let to = match cuts[k] {
                    Some(n) if k + 1 < seqs.len() => n.min(log.len()),
                    _ => log.len(),
                };
                obs.log = log[from.min(to)..to].to_vec();
                from = to;
            }
            let j = judge(&self.carry, seq, &obs)?;
            if broke_here && obs.lossy && !j.differences.is_empty() {
                // The batch's results came in bulk: the break cannot be
                // placed.  The sequence alone, results one by one, on a
                // fresh boot says where it is; the ones after it run again
                // in a later batch.
                self.dirty = true;
                self.vm = None;
                let alone = self.run_once(std::slice::from_ref(seq), Fresh::Boot, false)?;
                out.extend(alone);
                self.covered = None;
                return Ok(out);
            }
            if !j.differences.is_empty() {
                self.dirty = true;
                self.log_differences(seq, &obs, &j);
            }
            self.carry = j.end.successor();
            self.stats.checked += j.checked as u64;
            out.push(j);
            if broke_here {
                break;
            }
        }
        if broke.is_some() {
            // The guest is gone (or hangs): the next run boots another.
            self.dirty = true;
            self.vm = None;
        }
        if whole {
            let warnings: Vec<&str> = out
                .iter()
                .flat_map(|j| j.warnings.iter().copied())
                .collect();
            if !super::judge::unexpected_reports(&log, &warnings, 0).is_empty() {
                eprintln!(
                    "fuzz: the kernel reported something in a batch of {} sequences; running it again with markers to say which",
                    seqs.len()
                );
                self.dirty = true;
                return self.run_once(seqs, Fresh::Boot, true);
            }
        }
        self.covered = covered;
        Ok(out)
    }
}

impl VmRunner {
    /// Appends a sequence that showed differences to `differences.log`
    /// in the log directory: each step, what the guest said, what the
    /// model predicted.
    fn log_differences(&self, seq: &Sequence, obs: &Observed, j: &Judged) {
        let mut t = format!("== sequence {} of seed {}\n", seq.index, seq.seed);
        let mut a = super::generate::Attempts::default();
        for (i, it) in seq.items.iter().enumerate() {
            let got = obs
                .items
                .get(i)
                .and_then(Option::as_ref)
                .map_or("-".to_string(), |r| r.actual.to_string());
            let want = match j.outcomes.get(i).and_then(Option::as_ref) {
                Some(o) => format!("{o} [{}]", o.rule.name()),
                None => j
                    .checks
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or(String::new(), |c| {
                        if c { "passes".into() } else { "fails".into() }
                    }),
            };
            let mark = if j.differences.iter().any(|d| d.item == i) {
                "!!"
            } else {
                "  "
            };
            let _ = writeln!(
                t,
                "{mark} {i:>3} {:<80} got {got:<40} model {want}",
                it.step(&a).inline()
            );
            if let super::generate::Item::Op(op) = it {
                a.note(op);
            }
        }
        for d in &j.differences {
            let _ = writeln!(t, "   difference: {}", d.signature());
        }
        if !obs.log.is_empty() {
            let _ = writeln!(t, "   kernel log:\n{}", obs.log.join("\n"));
        }
        let path = self.spec.log_dir.join("differences.log");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = std::io::Write::write_all(&mut f, t.as_bytes());
        }
    }
}

impl Runner for VmRunner {
    fn run(&mut self, seqs: &[Sequence], fresh: Fresh) -> Result<Vec<Judged>> {
        match self.run_once(seqs, fresh, false) {
            Ok(j) => Ok(j),
            Err(e) if e.is::<super::judge::Infra>() => {
                // The agent could not set a sequence up (a previous one
                // left something behind): once more on a fresh boot.
                eprintln!("fuzz: {e}; rebooting and running the batch again");
                self.dirty = true;
                self.run_once(seqs, Fresh::Boot, false)
                    .context("the batch failed to set up twice, the second time on a fresh boot")
            }
            Err(e) => Err(e),
        }
    }

    fn take_coverage(&mut self) -> Option<BatchCoverage> {
        self.covered.take()
    }
}

impl Drop for VmRunner {
    fn drop(&mut self) {
        self.power_off();
    }
}
