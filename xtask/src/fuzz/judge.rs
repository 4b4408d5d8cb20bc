//! A sequence's run against the model: each op's report replayed through
//! `World::replay` (which also takes each buffer's real address), each
//! `mem.check` against the [`Shadow`] the predictions leave, the closing
//! against `World::release`, and the kernel's own reports (WARNING, BUG,
//! …; `harness::kernel_log`) in the sequence's share of the kernel log
//! against the warnings the model predicts.  What differs is a
//! [`Difference`]; the world after the sequence's release is what the
//! process's next sequence starts from (`World::successor`).

use harness::proto::{Actual, StepResult};
use iobench_model::op::Op;
use iobench_model::outcome::{Datum, Outcome, Reply, Reported, Verdict};
use iobench_model::rule::Rule;
use iobench_model::world::World;

use super::generate::{Item, Made, Sequence};
use super::shadow::Shadow;

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An op's result differs from the prediction.
    Result,
    /// A probe's bytes are not where the model sends the access.
    Data,
    /// The guest kernel crashed (or the agent died) where the model
    /// predicts none, or did not where it predicts one.
    Crash,
    /// The guest stopped answering.
    Hang,
    /// The kernel reported something (WARNING, BUG, …) the model does not predict.
    KernelReport,
}

impl Kind {
    /// Its name in reports and file names.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Result => "result",
            Kind::Data => "data",
            Kind::Crash => "crash",
            Kind::Hang => "hang",
            Kind::KernelReport => "kernel-report",
        }
    }

    /// Whether a run showing it leaves nothing to go on with: every try
    /// of a shortened sequence needs a freshly booted guest (a crash, or a
    /// report the kernel prints once per boot).
    pub fn needs_fresh_boot(self) -> bool {
        matches!(self, Kind::Crash | Kind::Hang | Kind::KernelReport)
    }
}

/// One difference between the kernel and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Which item (the sequence's length: its closing).
    pub item: usize,
    /// What kind.
    pub kind: Kind,
    /// The agent op (`vfio.map_dma`, `mem.check`, `close`, `kernel log`).
    pub op: String,
    /// The rule behind the prediction, if one was made.
    pub rule: Option<Rule>,
    /// What the model predicts.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

impl Difference {
    /// What makes two differences the same finding: kind, op, rule (and
    /// for a kernel report its first line without the numbers).
    pub fn signature(&self) -> String {
        let mut s = format!(
            "{} {} {}",
            self.kind.name(),
            self.op,
            self.rule.map_or("-", Rule::name)
        );
        if self.kind == Kind::KernelReport {
            let title: String = self
                .actual
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .collect();
            s.push(' ');
            s.push_str(&title);
        }
        s
    }
}

/// How a run broke off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broke {
    /// The kernel crashed, or the agent died.
    Crash,
    /// The agent stopped answering.
    Hang,
}

/// What the guest did for one sequence.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The results of its steps, by role, in order: prelude, items, teardown.
    pub prelude: Vec<Option<StepResult>>,
    /// One per item (`None`: not run, the run broke off before).
    pub items: Vec<Option<StepResult>>,
    /// Its closing steps.
    pub teardown: Vec<Option<StepResult>>,
    /// How the run broke off, if it did during this sequence.
    pub broke: Option<Broke>,
    /// Why, in a line (the console's panic line, the harness's error).
    pub why: String,
    /// Results came in bulk: when the run broke, the last ones before the
    /// break may be lost, so a missing result is not yet the break.
    pub lossy: bool,
    /// The agent stopped after the last result it sent (a lone sequence
    /// runs as a plain scenario, which ends at a step the agent could not
    /// run, e.g. one naming an object whose making failed): the rest did
    /// not run, and says nothing.
    pub cut: bool,
    /// Its share of the kernel log (empty when the run's log was not cut
    /// per sequence: the runner then checks it for the whole batch).
    pub log: Vec<String>,
}

/// The judgement of one sequence.
#[derive(Debug, Clone)]
pub struct Judged {
    /// What differs, in order.
    pub differences: Vec<Difference>,
    /// Ops compared with a prediction (probe accesses not counted).
    pub checked: usize,
    /// The prediction of each item that is an op.
    pub outcomes: Vec<Option<Outcome>>,
    /// For each check: whether it should pass (None: not known).
    pub checks: Vec<Option<bool>>,
    /// The world after the sequence was closed.
    pub end: World,
    /// The kernel warnings the model predicts in it (texts a report contains).
    pub warnings: Vec<&'static str>,
    /// Rules that fired besides the deciding ones (`also`), and the closing's.
    pub side_rules: Vec<Rule>,
}

/// A failure of the harness, not of the kernel: the prelude did not make
/// its objects (or the model cannot take the sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Infra(pub String);

impl std::fmt::Display for Infra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Infra {}

/// The agent's report as the model takes it.
pub fn reported(r: Option<&StepResult>) -> Reported {
    match r.map(|r| &r.actual) {
        None => Reported::Broken,
        Some(Actual::Value(v)) => {
            Reported::Value(serde_json::from_value::<Datum>(v.clone()).unwrap_or(Datum::Null))
        }
        Some(Actual::Errno { name, .. }) => Reported::Errno(name.clone()),
        Some(Actual::Error(e)) => Reported::Error(e.clone()),
    }
}

/// Something that runs sequences and judges them: a guest (`exec`), or
/// a stand-in in tests.
pub trait Runner {
    /// Runs `seqs` one after another, each on a fresh agent state (its
    /// own container or iommufd), after a fresh boot if `fresh` asks for
    /// one, and judges each; a sequence the run did not reach (the guest
    /// broke in an earlier one) has no judgement, so the answer may be
    /// shorter than `seqs`.
    fn run(&mut self, seqs: &[Sequence], fresh: Fresh) -> anyhow::Result<Vec<Judged>>;

    /// The kernel coverage of the last run, if the guest traced it.
    fn take_coverage(&mut self) -> Option<BatchCoverage> {
        None
    }
}

/// The kernel code a batch reached, by sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCoverage {
    /// For each sequence of the batch, the KCOV PCs it was the first of
    /// the batch to reach.
    pub per_sequence: Vec<Vec<u64>>,
    /// PCs reached outside every sequence's steps (the end of the run).
    pub elsewhere: Vec<u64>,
    /// The guest's trace buffer overflowed: some PCs were lost.
    pub lost: bool,
}

/// What state a run must start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Whatever the guest is in (the model carries it over).
    No,
    /// A process and PE as a fresh boot leaves them (the guest is
    /// rebooted unless the model says they are).
    Process,
    /// A freshly booted guest.
    Boot,
}

fn broken_kind(b: Option<Broke>) -> Kind {
    match b {
        Some(Broke::Hang) => Kind::Hang,
        _ => Kind::Crash,
    }
}

/// Judges `seq`'s run `obs`, starting from `start`.
pub fn judge(start: &World, seq: &Sequence, obs: &Observed) -> Result<Judged, Infra> {
    for (i, r) in obs.prelude.iter().enumerate() {
        match r {
            Some(r) if r.passed => {}
            Some(r) => {
                return Err(Infra(format!(
                    "sequence {}: prelude step {i} ({}) gave {}",
                    seq.index, r.op, r.actual
                )));
            }
            None if obs.broke.is_some() => {
                return Err(Infra(format!(
                    "sequence {}: the guest broke in the prelude (step {i})",
                    seq.index
                )));
            }
            None => {
                return Err(Infra(format!(
                    "sequence {}: prelude step {i} has no result",
                    seq.index
                )));
            }
        }
    }
    let mut w = start.clone();
    let mut made = Made::default();
    let mut shadow = Shadow::default();
    let mut j = Judged {
        differences: Vec::new(),
        checked: 0,
        outcomes: vec![None; seq.items.len()],
        checks: vec![None; seq.items.len()],
        end: start.clone(),
        warnings: Vec::new(),
        side_rules: Vec::new(),
    };
    let mut warnings: Vec<&'static str> = Vec::new();
    let mut last_access: Option<(String, Rule)> = None;
    let mut stopped = false;
    for (i, it) in seq.items.iter().enumerate() {
        let r = obs.items.get(i).and_then(Option::as_ref);
        if r.is_none() && obs.cut && obs.broke.is_none() {
            stopped = true;
            break;
        }
        match it {
            Item::Op(op) if r.is_none() && obs.lossy && obs.broke.is_some() => {
                // Lost or never run: only a predicted crash settles it.
                let Some(model_op) = made.to_model(op) else {
                    continue;
                };
                let before = w.clone();
                let o = w
                    .apply(&model_op)
                    .map_err(|e| Infra(format!("sequence {}: item {i}: {e}", seq.index)))?;
                made.note(op, &before, matches!(o.reply, Reply::Value(_)));
                shadow.apply(&w.mem, &model_op, &o);
                let crash = o.reply == Reply::Crash;
                j.outcomes[i] = Some(o);
                if crash {
                    stopped = true;
                    break;
                }
            }
            Item::Fill { .. } | Item::Check { .. }
                if r.is_none() && obs.lossy && obs.broke.is_some() =>
            {
                if let Item::Fill {
                    buffer,
                    offset,
                    length,
                    byte,
                } = it
                {
                    shadow.fill(*buffer, *offset, *length, *byte);
                }
            }
            Item::Op(op) => {
                let rep = reported(r);
                let Some(model_op) = made.to_model(op) else {
                    // It names an object whose making the model says
                    // failed: unbound in the guest too, unless the kernel
                    // made it (a difference of its own, reported there).
                    if rep == Reported::Broken {
                        j.differences.push(broke_at(i, op.name(), obs));
                        stopped = true;
                        break;
                    }
                    continue;
                };
                let before = w.clone();
                let (o, v) = w
                    .replay(&model_op, &rep)
                    .map_err(|e| Infra(format!("sequence {}: item {i}: {e}", seq.index)))?;
                made.note(op, &before, matches!(o.reply, Reply::Value(_)));
                if it.is_checked_op() {
                    j.checked += 1;
                }
                if let Some(t) = o.kernel_warning {
                    warnings.push(t);
                }
                j.side_rules.extend(o.also.iter().copied());
                if let Verdict::Mismatch {
                    expected,
                    actual,
                    rule,
                } = v
                {
                    let kind = if rep == Reported::Broken {
                        broken_kind(obs.broke)
                    } else if o.reply == Reply::Crash {
                        Kind::Crash
                    } else {
                        Kind::Result
                    };
                    j.differences.push(Difference {
                        item: i,
                        kind,
                        op: op.name().to_string(),
                        rule: Some(rule),
                        expected,
                        actual: if rep == Reported::Broken && !obs.why.is_empty() {
                            obs.why.clone()
                        } else {
                            actual
                        },
                    });
                }
                shadow.apply(&w.mem, &model_op, &o);
                if matches!(op, Op::EduDma { .. } | Op::MockAccessRw { .. }) {
                    last_access = Some((op.name().to_string(), o.rule));
                }
                let ended = o.reply == Reply::Crash || rep == Reported::Broken;
                j.outcomes[i] = Some(o);
                if ended {
                    stopped = true;
                    break;
                }
            }
            Item::Fill {
                buffer,
                offset,
                length,
                byte,
            } => {
                shadow.fill(*buffer, *offset, *length, *byte);
                if r.is_none() {
                    j.differences.push(broke_at(i, "mem.fill", obs));
                    stopped = true;
                    break;
                }
            }
            Item::Check {
                buffer,
                offset,
                length,
                byte,
            } => {
                let want = shadow.expect_check(*buffer, *offset, *length, *byte);
                j.checks[i] = want;
                let Some(r) = r else {
                    j.differences.push(broke_at(i, "mem.check", obs));
                    stopped = true;
                    break;
                };
                let got = matches!(r.actual, Actual::Value(_));
                if let Some(want) = want
                    && want != got
                {
                    let (op, rule) = last_access
                        .clone()
                        .map_or(("mem.check".to_string(), None), |(o, r)| (o, Some(r)));
                    let what = format!("{}+{offset:#x}..+{length:#x}", buffer.name());
                    j.differences.push(Difference {
                        item: i,
                        kind: Kind::Data,
                        op,
                        rule,
                        expected: if want {
                            format!("{what} holds {byte:#04x}")
                        } else {
                            format!("{what} does not hold only {byte:#04x}")
                        },
                        actual: match &r.actual {
                            Actual::Error(e) => e.clone(),
                            _ => format!("{what} holds {byte:#04x}"),
                        },
                    });
                }
            }
        }
    }
    if !stopped && obs.lossy && obs.broke.is_some() {
        // The guest broke where the model sees no reason: somewhere after
        // the last result that came (the runner runs it again alone).
        let first = obs
            .items
            .iter()
            .position(Option::is_none)
            .unwrap_or(seq.items.len());
        j.differences.push(broke_at(first, "unknown", obs));
        stopped = true;
    }
    if !stopped {
        // The closing: the model's release against the teardown's fate.
        let o = w.release();
        j.side_rules.push(o.rule);
        if let Some(t) = o.kernel_warning {
            warnings.push(t);
        }
        let broke = obs.teardown.iter().any(Option::is_none) && !(obs.cut && obs.broke.is_none());
        let crash = o.reply == Reply::Crash;
        if broke != crash {
            j.differences.push(Difference {
                item: seq.items.len(),
                kind: if broke {
                    broken_kind(obs.broke)
                } else {
                    Kind::Crash
                },
                op: "close".into(),
                rule: Some(o.rule),
                expected: o.to_string(),
                actual: if broke {
                    obs.why.clone()
                } else {
                    "closed".into()
                },
            });
        }
    }
    // The kernel's own reports.
    j.differences
        .extend(unexpected_reports(&obs.log, &warnings, seq.items.len()));
    j.warnings = warnings;
    j.end = w;
    Ok(j)
}

/// The kernel's reports in `log` none of the predicted `warnings`
/// explains, as differences at item `item`.
pub fn unexpected_reports(log: &[String], warnings: &[&str], item: usize) -> Vec<Difference> {
    harness::kernel_log::reports(log)
        .into_iter()
        .filter(|rep| !warnings.iter().any(|t| rep.contains(t)))
        .map(|rep| Difference {
            item,
            kind: Kind::KernelReport,
            op: "kernel log".into(),
            rule: None,
            expected: "no kernel report".into(),
            actual: rep.title().to_string(),
        })
        .collect()
}

fn broke_at(item: usize, op: &str, obs: &Observed) -> Difference {
    Difference {
        item,
        kind: broken_kind(obs.broke),
        op: op.into(),
        rule: None,
        expected: "ok".into(),
        actual: if obs.why.is_empty() {
            "the guest broke".into()
        } else {
            obs.why.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{Kind, Observed, judge};
    use crate::fuzz::generate::{Item, Sequence};
    use harness::proto::{Actual, Expect, StepResult};
    use iobench_model::mem::{BufferId, BufferRange};
    use iobench_model::op::Op;
    use iobench_model::spapr::{Fixes, SpaprParams};
    use iobench_model::world::World;
    use serde_json::json;

    fn res(op: &str, actual: Actual) -> Option<StepResult> {
        Some(StepResult {
            index: 0,
            op: op.into(),
            expected: Expect::Any,
            actual,
            passed: true,
            micros: 1,
        })
    }

    #[test]
    fn results_are_replayed_and_differences_named() {
        let w = World::spapr(SpaprParams::qemu(4096, Fixes::linux_7_2_13()));
        let seq = Sequence {
            seed: 1,
            index: 0,
            items: vec![
                Item::Op(Op::MemAlloc {
                    size: 0x10000,
                    hugetlb: false,
                }),
                Item::Op(Op::Register(BufferRange::whole(BufferId(0)))),
                Item::Op(Op::MapDma {
                    iova: 0x10800,
                    range: BufferRange::whole(BufferId(0)),
                    read: true,
                    write: true,
                }),
            ],
        };
        let alloc = res(
            "mem.alloc",
            Actual::Value(
                json!({"handle": 7, "kind": "buffer", "size": 65536, "addr": 0x7fff_0000_0000u64}),
            ),
        );
        let obs = Observed {
            prelude: vec![],
            items: vec![
                alloc.clone(),
                res("spapr.register_memory", Actual::Value(json!(0))),
                res("vfio.map_dma", Actual::Value(json!(1))),
            ],
            teardown: vec![res("close", Actual::Value(json!(null)))],
            broke: None,
            why: String::new(),
            lossy: false,
            cut: false,
            log: vec![],
        };
        let j = judge(&w, &seq, &obs).unwrap();
        assert!(j.differences.is_empty(), "{:?}", j.differences);
        assert_eq!(j.checked, 3);
        // The kernel says EINVAL (fix 0001): a result difference, named by rule.
        let mut obs2 = obs.clone();
        obs2.items[2] = res(
            "vfio.map_dma",
            Actual::Errno {
                name: "EINVAL".into(),
                code: 22,
            },
        );
        obs2.log = vec!["[    5.1] WARNING: CPU: 0 PID: 95 at foo.c:12 bar+0x1/0x2".into()];
        let j = judge(&w, &seq, &obs2).unwrap();
        assert_eq!(j.differences.len(), 2);
        assert_eq!(j.differences[0].kind, Kind::Result);
        assert_eq!(
            j.differences[0].signature(),
            "result vfio.map_dma misaligned-iova-returns-one"
        );
        assert_eq!(j.differences[1].kind, Kind::KernelReport);
        // The guest broke at the map: a crash the model does not predict.
        let mut obs3 = obs;
        obs3.items[2] = None;
        obs3.teardown = vec![None];
        obs3.broke = Some(super::Broke::Crash);
        let j = judge(&w, &seq, &obs3.clone()).unwrap();
        assert_eq!(j.differences.len(), 1);
        assert_eq!(j.differences[0].kind, Kind::Crash);
        // Results in bulk: a lost result is no break yet; the model sees
        // no crash in what is left, so the break is still a difference.
        obs3.lossy = true;
        obs3.items[1] = None;
        let j = judge(&w, &seq, &obs3).unwrap();
        assert_eq!(j.differences.len(), 1);
        assert_eq!(
            (j.differences[0].item, j.differences[0].kind),
            (1, Kind::Crash)
        );
    }

    #[test]
    fn a_predicted_crash_explains_lost_results() {
        // bug 0002 on 4K pages: a map across the default window's end.
        let w = World::spapr(SpaprParams::qemu(4096, Fixes::linux_7_2_13()));
        let buf = BufferRange::whole(BufferId(0));
        let seq = Sequence {
            seed: 1,
            index: 0,
            items: vec![
                Item::Op(Op::MemAlloc {
                    size: 0x10000,
                    hugetlb: false,
                }),
                Item::Op(Op::Register(buf)),
                Item::Op(Op::MapDma {
                    iova: 0x3fff_f000,
                    range: buf,
                    read: true,
                    write: true,
                }),
            ],
        };
        let obs = Observed {
            items: vec![
                res(
                    "mem.alloc",
                    Actual::Value(json!({"addr": 0x7fff_0000_0000u64, "size": 65536})),
                ),
                None,
                None,
            ],
            teardown: vec![None, None, None, None],
            broke: Some(super::Broke::Crash),
            lossy: true,
            ..Observed::default()
        };
        let j = judge(&w, &seq, &obs).unwrap();
        assert!(j.differences.is_empty(), "{:?}", j.differences);
    }
}
