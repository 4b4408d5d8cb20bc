//! Delta debugging (Zeller and Hildebrandt's `ddmin`): the smallest
//! subsequence of a failing sequence that still fails, found by trying
//! to drop chunks of it, halving the chunks while nothing can be dropped,
//! down to single items (the result is 1-minimal: dropping any one item
//! makes it pass).  The test is the caller's: for the fuzzer, running
//! the candidate on a fresh agent state (a fresh boot for a crash or a
//! kernel report) and looking for the same difference.  Each candidate
//! is tried once (answers are remembered).

use std::collections::HashMap;
use std::hash::Hash;

use anyhow::Result;

use super::generate::{Item, Sequence, valid};
use super::judge::{Difference, Fresh, Judged, Runner};

/// The smallest subsequence of `items` (in order) on which `fails` holds,
/// as ddmin finds it; `fails(items)` is taken to hold.  `fails` may give
/// up with an error, which ends the search.
pub fn ddmin<T: Clone + Eq + Hash, E>(
    items: &[T],
    mut fails: impl FnMut(&[T]) -> Result<bool, E>,
) -> Result<Vec<T>, E> {
    let mut seen: HashMap<Vec<T>, bool> = HashMap::new();
    let mut test = |c: &[T]| -> Result<bool, E> {
        if let Some(v) = seen.get(c) {
            return Ok(*v);
        }
        let v = fails(c)?;
        seen.insert(c.to_vec(), v);
        Ok(v)
    };
    let mut cur = items.to_vec();
    let mut n = 2usize;
    while cur.len() >= 2 {
        let chunk = cur.len().div_ceil(n);
        let parts: Vec<Vec<T>> = cur.chunks(chunk).map(<[T]>::to_vec).collect();
        let mut reduced = false;
        // A chunk alone.
        for p in &parts {
            if test(p)? {
                cur = p.clone();
                n = 2;
                reduced = true;
                break;
            }
        }
        if !reduced && parts.len() > 2 {
            // Everything but a chunk.
            for i in 0..parts.len() {
                let rest: Vec<T> = parts
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != i)
                    .flat_map(|(_, p)| p.iter().cloned())
                    .collect();
                if test(&rest)? {
                    cur = rest;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if n >= cur.len() {
                break;
            }
            n = (2 * n).min(cur.len());
        }
    }
    Ok(cur)
}

/// A minimized finding.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The shortest sequence found that still shows the difference.
    pub seq: Sequence,
    /// Its judgement on a fresh boot.
    pub judged: Judged,
    /// The difference as that run showed it.
    pub diff: Difference,
    /// Sequences run to get there.
    pub runs: usize,
}

/// Shortens `seq`, whose run showed `diff`, to the fewest items that
/// still show a difference of the same signature, each try on a fresh
/// agent state (a fresh boot when the difference needs one), then runs
/// the result once more on a fresh boot.  `None` when the sequence does
/// not show the difference again when run alone (it needed what ran
/// before it in the batch, or it is flaky).
pub fn shrink(
    runner: &mut dyn Runner,
    seq: &Sequence,
    diff: &Difference,
) -> Result<Option<Shrunk>> {
    let sig = diff.signature();
    let fresh = if diff.kind.needs_fresh_boot() {
        Fresh::Boot
    } else {
        Fresh::Process
    };
    // Items after the difference cannot matter to it (a kernel report or
    // the closing may come from anywhere).
    let cut = if diff.item < seq.items.len() && diff.kind != super::judge::Kind::KernelReport {
        diff.item + 1
    } else {
        seq.items.len()
    };
    let mut runs = 0;
    let mut try_items = |items: &[Item], fresh: Fresh| -> Result<Option<(Judged, Difference)>> {
        if items.is_empty() || !valid(items) {
            return Ok(None);
        }
        runs += 1;
        let candidate = Sequence {
            items: items.to_vec(),
            ..seq.clone()
        };
        let judged = runner.run(std::slice::from_ref(&candidate), fresh)?;
        Ok(judged.into_iter().next().and_then(|j| {
            let d = j.differences.iter().find(|d| d.signature() == sig)?.clone();
            Some((j, d))
        }))
    };
    if try_items(&seq.items[..cut], fresh)?.is_none() {
        return Ok(None);
    }
    let min = ddmin(&seq.items[..cut], |c| {
        Ok::<_, anyhow::Error>(try_items(c, fresh)?.is_some())
    })?;
    let Some((judged, diff)) = try_items(&min, Fresh::Boot)? else {
        return Ok(None);
    };
    Ok(Some(Shrunk {
        seq: Sequence {
            items: min,
            ..seq.clone()
        },
        judged,
        diff,
        runs,
    }))
}

#[cfg(test)]
mod tests {
    use super::{ddmin, shrink};
    use crate::fuzz::generate::{Item, Sequence};
    use crate::fuzz::judge::{Difference, Fresh, Judged, Kind, Runner};
    use crate::fuzz::target::Target;
    use harness::linux::Linux;
    use iobench_model::mem::{BufferId, BufferRange};
    use iobench_model::op::Op;

    /// A stand-in guest that "fails" when two given ops are both in a
    /// sequence: the second of them shows a result difference.
    struct Pair {
        a: Op,
        b: Op,
        runs: usize,
        fresh: Vec<Fresh>,
        target: Target,
    }

    impl Runner for Pair {
        fn run(&mut self, seqs: &[Sequence], fresh: Fresh) -> anyhow::Result<Vec<Judged>> {
            self.runs += 1;
            self.fresh.push(fresh);
            Ok(seqs
                .iter()
                .map(|s| {
                    let has = |op: &Op| s.items.iter().position(|i| *i == Item::Op(op.clone()));
                    let differences = match (has(&self.a), has(&self.b)) {
                        (Some(_), Some(j)) => vec![Difference {
                            item: j,
                            kind: Kind::Result,
                            op: self.b.name().into(),
                            rule: None,
                            expected: "ok 0".into(),
                            actual: "EINVAL".into(),
                        }],
                        _ => vec![],
                    };
                    Judged {
                        differences,
                        checked: s.items.len(),
                        outcomes: vec![None; s.items.len()],
                        checks: vec![None; s.items.len()],
                        end: self.target.world.clone(),
                        warnings: Vec::new(),
                        side_rules: Vec::new(),
                    }
                })
                .collect())
        }
    }

    #[test]
    fn finds_the_two_items_that_fail_together() {
        let items: Vec<u32> = (0..40).collect();
        let mut runs = 0;
        let got = ddmin(&items, |c: &[u32]| -> Result<bool, ()> {
            runs += 1;
            Ok(c.contains(&7) && c.contains(&31))
        })
        .unwrap();
        assert_eq!(got, vec![7, 31]);
        assert!(runs < 120, "{runs} runs");
    }

    #[test]
    fn keeps_order_and_single_culprits() {
        let items = vec!["a", "b", "c", "d", "e"];
        let got = ddmin(&items, |c: &[&str]| -> Result<bool, ()> {
            Ok(c.contains(&"d"))
        })
        .unwrap();
        assert_eq!(got, vec!["d"]);
        // Order matters: "c" must come before "a" (never, after a split).
        let got = ddmin(&items, |c: &[&str]| -> Result<bool, ()> {
            Ok(c.windows(2).any(|w| w == ["b", "c"]) || c == ["b", "e"])
        })
        .unwrap();
        assert!(got == vec!["b", "c"] || got == vec!["b", "e"], "{got:?}");
    }

    #[test]
    fn a_fake_guest_failing_on_two_ops_shrinks_to_them() {
        let target = Target::new("pseries", Linux::V7_2, Default::default()).unwrap();
        let seq = crate::fuzz::generate::sequence(
            &target,
            &crate::fuzz::generate::Plan::default(),
            11,
            4,
        );
        // Two ops the sequence can take anywhere: the alloc it starts with
        // and an info query appended, with noise around.
        let a = Op::MemAlloc {
            size: 0x10000,
            hugetlb: false,
        };
        let b = Op::TceInfo;
        let mut items = vec![Item::Op(a.clone())];
        items.extend(seq.items.iter().cloned());
        items.push(Item::Op(Op::Register(BufferRange::whole(BufferId(0)))));
        items.push(Item::Op(b.clone()));
        items.push(Item::Op(Op::UnmapDma {
            iova: 0,
            length: 0x1000,
        }));
        let seq = Sequence { items, ..seq };
        let mut guest = Pair {
            a: a.clone(),
            b: b.clone(),
            runs: 0,
            fresh: vec![],
            target: target.clone(),
        };
        let first = guest.run(std::slice::from_ref(&seq), Fresh::No).unwrap();
        let diff = first[0].differences[0].clone();
        let got = shrink(&mut guest, &seq, &diff).unwrap().unwrap();
        assert_eq!(got.seq.items, vec![Item::Op(a), Item::Op(b)]);
        assert_eq!(got.diff.item, 1);
        // Each try on a fresh agent state, the last on a fresh boot.
        assert!(
            guest.fresh[1..guest.fresh.len() - 1]
                .iter()
                .all(|f| *f == Fresh::Process)
        );
        assert_eq!(guest.fresh.last(), Some(&Fresh::Boot));
        assert!(got.runs > 2 && got.runs < 200, "{}", got.runs);
    }

    #[test]
    fn an_error_ends_the_search() {
        let items = vec![1, 2, 3];
        assert_eq!(ddmin(&items, |_: &[i32]| Err("boom")), Err("boom"));
    }
}
