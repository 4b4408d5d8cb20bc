//! Sequences as one scenario the agent runs without stopping
//! (`keep_going`): for each sequence its prelude (the objects its ops
//! name: the edu bound to vfio-pci, a container with the group and
//! device, or an iommufd), its items, the `close` steps that give
//! everything back (the next sequence starts from a fresh agent state:
//! its own container or iommufd), and, when the run's kernel log must be
//! cut per sequence, a marker step whose answer counts the kernel log
//! lines so far (`kernel.log_contains` of a text the kernel never prints
//! says how many lines it saw).
//!
//! A batch of several sequences is `keep_going`: the agent runs every
//! step and sends the results in bulk.  Names are suffixed per sequence (`$c_3`, `$buf0_3`): a step whose
//! object an earlier failure left unmade refers to nothing, never to the
//! previous sequence's object of that name.  Every step but the prelude
//! expects `any`: the host judges the results with the model.

use std::ops::Range;

use harness::proto::{Expect, Scenario, Step as ProtoStep};
use iobench_model::mem::BufferId;
use iobench_model::op::{AccessId, Arg, Op, Step};
use serde_json::{Value, json};

use super::generate::{Attempts, Item, Sequence};
use super::target::Target;

/// Text no kernel prints: the marker step's `kernel.log_contains` fails,
/// saying how many log lines the run has seen.
pub const MARKER_TEXT: &str = "iobench-fuzz: never logged";

/// What a step of the batch is to its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Makes the objects the items name (must succeed).
    Prelude,
    /// Item N of the sequence.
    Item(usize),
    /// Gives the objects back.
    Teardown,
    /// Counts the kernel log lines.
    Marker,
}

/// The batch scenario and where each sequence's steps are.
#[derive(Debug, Clone)]
pub struct Batch {
    /// What the agent runs.
    pub scenario: Scenario,
    /// Each step's sequence (index into the batch) and role.
    pub roles: Vec<(usize, Role)>,
    /// The steps of each sequence.
    pub spans: Vec<Range<usize>>,
}

/// `r` (a reference without `$`: `name`, `name.field`, `name+0x10`)
/// with `suffix` after its name.
fn renamed(r: &str, suffix: &str) -> String {
    let end = r.find(['.', '+', '-']).unwrap_or(r.len());
    format!("{}{suffix}{}", &r[..end], &r[end..])
}

/// An argument as JSON, references renamed.
fn arg_json(a: &Arg, suffix: &str) -> Value {
    match a {
        Arg::U64(n) => json!(n),
        Arg::Bool(b) => json!(b),
        Arg::Word(w) => json!(w),
        Arg::Text(t) => json!(t),
        Arg::Ref(r) => json!(format!("${}", renamed(r, suffix))),
        Arg::Ranges(v) => Value::Array(v.iter().map(|(s, l)| json!([s, l])).collect()),
    }
}

/// The model's step as the protocol's, names suffixed.
pub fn proto_step(s: &Step, suffix: &str, expect: Expect) -> ProtoStep {
    ProtoStep {
        op: s.op.to_string(),
        args: s
            .args
            .iter()
            .map(|(k, a)| (k.to_string(), arg_json(a, suffix)))
            .collect(),
        expect,
        bind: s.bind.as_ref().map(|b| renamed(b, suffix)),
    }
}

/// Whether the items need the edu device's file: a sPAPR sequence opens
/// it only for its DMA probes (opening and closing it resets the
/// function, which costs more than most sequences' ops); q35's cdev is
/// what attaches, so it is always there.
fn needs_device(target: &Target, items: &[Item]) -> bool {
    !target.is_spapr()
        || items
            .iter()
            .any(|i| matches!(i, Item::Op(Op::EduDma { .. })))
}

/// The prelude of a sequence (the model's, written out): without the
/// device when it is not needed, and without binding the edu to vfio-pci
/// unless `bind` (a batch binds it once, in its first sequence).
pub fn prelude_steps(target: &Target, items: &[Item], bind: bool) -> Vec<Step> {
    let device = needs_device(target, items);
    target
        .world
        .prelude_steps()
        .into_iter()
        .filter(|s| bind || s.op != "pci.bind_vfio")
        .filter(|s| device || s.op != "vfio.device_open")
        .collect()
}

/// The `close` steps after `items`: every access tried, the device,
/// group and container (or iommufd) in the model's order, every buffer;
/// newest first.
pub fn teardown_steps(target: &Target, items: &[Item]) -> Vec<Step> {
    let mut a = Attempts::default();
    for it in items {
        if let Item::Op(op) = it {
            a.note(op);
        }
    }
    let device = needs_device(target, items);
    let close = |name: String| Step::new("close").arg("handle", Arg::Ref(name));
    let mut v: Vec<Step> = (0..a.accesses)
        .rev()
        .map(|i| close(AccessId(i).name()))
        .collect();
    // A fresh world has no buffers or accesses: its closing is the rest.
    v.extend(target.world.teardown_steps().into_iter().filter(|s| {
        device || !matches!(&s.args[..], [(_, Arg::Ref(r))] if r == iobench_model::op::DEVICE)
    }));
    v.extend((0..a.buffers).rev().map(|i| close(BufferId(i).name())));
    v
}

/// The steps of one sequence: prelude, items, teardown (model steps, by
/// role); `bind` as for [`prelude_steps`].
pub fn sequence_steps(target: &Target, items: &[Item], bind: bool) -> Vec<(Role, Step)> {
    let mut a = Attempts::default();
    let mut out: Vec<(Role, Step)> = prelude_steps(target, items, bind)
        .into_iter()
        .map(|s| (Role::Prelude, s))
        .collect();
    for (i, it) in items.iter().enumerate() {
        out.push((Role::Item(i), it.step(&a)));
        if let Item::Op(op) = it {
            a.note(op);
        }
    }
    out.extend(
        teardown_steps(target, items)
            .into_iter()
            .map(|s| (Role::Teardown, s)),
    );
    out
}

/// The batch of `seqs` on `target`; with `markers`, each sequence ends
/// in a marker step (they cost a read of the whole kernel log each, so a
/// batch has them only when its log must be cut per sequence).
pub fn build(target: &Target, seqs: &[Sequence], name: &str, markers: bool) -> Batch {
    let mut steps = Vec::new();
    let mut roles = Vec::new();
    let mut spans = Vec::new();
    for (k, seq) in seqs.iter().enumerate() {
        let suffix = format!("_{k}");
        let start = steps.len();
        for (role, s) in sequence_steps(target, &seq.items, k == 0) {
            let expect = match role {
                Role::Prelude => Expect::Ok,
                _ => Expect::Any,
            };
            steps.push(proto_step(&s, &suffix, expect));
            roles.push((k, role));
        }
        if markers {
            let marker = Step::new("kernel.log_contains").arg("text", Arg::Word(MARKER_TEXT));
            steps.push(proto_step(&marker, &suffix, Expect::Any));
            roles.push((k, Role::Marker));
        }
        spans.push(start..steps.len());
    }
    Batch {
        scenario: Scenario {
            name: name.to_string(),
            steps,
            // A lone sequence runs as a plain scenario: its results come
            // one by one (a batch's come in bulk, so a crash may swallow
            // the last ones), and only a failed prelude step stops it.
            keep_going: seqs.len() > 1,
        },
        roles,
        spans,
    }
}

/// How many kernel log lines the marker's answer says the run has seen.
pub fn marker_lines(actual: &harness::proto::Actual) -> Option<usize> {
    let harness::proto::Actual::Error(e) = actual else {
        return None;
    };
    let (_, tail) = e.rsplit_once('(')?;
    tail.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{Role, build, marker_lines, renamed};
    use crate::fuzz::generate::{Plan, sequence};
    use crate::fuzz::target::Target;
    use harness::linux::Linux;
    use harness::proto::{Actual, Expect};

    #[test]
    fn names_are_suffixed_and_roles_cover_every_step() {
        assert_eq!(renamed("mock0.stdev_id", "_3"), "mock0_3.stdev_id");
        assert_eq!(renamed("win+0x1000", "_0"), "win_0+0x1000");
        let t = Target::new("pseries", Linux::V6_12, Default::default()).unwrap();
        let seqs: Vec<_> = (0..3)
            .map(|i| sequence(&t, &Plan::default(), 5, i))
            .collect();
        let b = build(&t, &seqs, "fuzz::batch", true);
        assert!(b.scenario.keep_going);
        assert!(
            !build(&t, &seqs[..1], "fuzz::one", false)
                .scenario
                .keep_going
        );
        assert_eq!(b.roles.len(), b.scenario.steps.len());
        assert_eq!(b.spans.len(), 3);
        assert_eq!(b.spans[2].end, b.scenario.steps.len());
        // The edu is bound once, by the first sequence.
        assert_eq!(b.scenario.steps[0].op, "pci.bind_vfio");
        assert_ne!(b.scenario.steps[b.spans[1].start].op, "pci.bind_vfio");
        assert!(
            b.scenario.steps[b.spans[1].clone()]
                .iter()
                .any(|s| s.bind.as_deref() == Some("c_1"))
        );
        let items = b
            .roles
            .iter()
            .filter(|(_, r)| matches!(r, Role::Item(_)))
            .count();
        assert_eq!(items, seqs.iter().map(|s| s.items.len()).sum::<usize>());
        assert!(
            b.scenario
                .steps
                .iter()
                .zip(&b.roles)
                .all(|(s, (_, r))| (*r == Role::Prelude) == (s.expect == Expect::Ok))
        );
        assert_eq!(
            marker_lines(&Actual::Error(
                "no kernel log line since the scenario began contains \"x\" (42 lines seen)".into()
            )),
            Some(42)
        );
    }
}
