//! Where the seed's windowed IOAS and the kernel's sPAPR container answer
//! differently, found by a bounded breadth-first search: both models start
//! from the same prelude (a container holding the edu's group, two 64 KiB
//! buffers, both registered), every candidate op drawn from the
//! [`crate::points`] of both states runs on both, and a step whose outcomes
//! (reply, or where a DMA lands) differ shows the pair of rules that
//! decided them.  Each pair (kernel rule, seed rule) is reported once,
//! with the shortest sequence that shows it (breadth first, candidates in
//! a fixed order), preferring one whose earlier steps agreed; sequences go
//! on after a difference (the models' states then differ, which the table
//! says), except after a kernel crash.  Sequences that reach a pair of
//! states seen before are not extended (unless now reached with all steps
//! agreeing).  [`markdown`] writes the table checked in as
//! `docs/seed-vs-kernel.md`.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use crate::dma::Direction;
use crate::mem::{BufferId, BufferRange};
use crate::op::Op;
use crate::outcome::Outcome;
use crate::platform::Hardware;
use crate::points::{self, Points};
use crate::rule::{Family, Rule};
use crate::spapr::{Fixes, SpaprParams};
use crate::world::World;

/// How far and from where to search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The machine both models run on.
    pub hw: Hardware,
    /// The kernel's fixes.
    pub fixes: Fixes,
    /// Longest sequence (after the prelude).
    pub depth: usize,
}

impl Search {
    /// pseries with 4K pages under QEMU 10.0, the given fixes, depth 3.
    pub fn pseries(fixes: Fixes) -> Search {
        Search {
            hw: Hardware::qemu_pseries(4096),
            fixes,
            depth: 3,
        }
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The kernel's deciding rule at the last step.
    pub kernel_rule: Rule,
    /// The seed's.
    pub seed_rule: Rule,
    /// The ops after the prelude; the last one is where they differ.
    pub ops: Vec<Op>,
    /// How many of the earlier ops already had different outcomes (0: the
    /// models agreed until the last step).
    pub earlier: usize,
    /// The kernel's outcome of the last op.
    pub kernel: Outcome,
    /// The seed's.
    pub seed: Outcome,
}

/// What a search did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One difference per pair of rules, in the order found (each with the
    /// best sequence found for it: fewest earlier differences, then
    /// shortest).
    pub divergences: Vec<Divergence>,
    /// How many sequences ran (one op each on both models).
    pub sequences: usize,
    /// How many distinct state pairs were reached.
    pub states: usize,
}

/// The ops both models start with.
pub fn prelude() -> Vec<Op> {
    let a = BufferId(0);
    let b = BufferId(1);
    vec![
        Op::MemAlloc {
            size: 0x10000,
            hugetlb: false,
        },
        Op::MemAlloc {
            size: 0x10000,
            hugetlb: false,
        },
        Op::Register(BufferRange::whole(a)),
        Op::Register(BufferRange::whole(b)),
    ]
}

fn state_hash(k: &World, s: &World) -> u64 {
    let mut h = DefaultHasher::new();
    k.hash(&mut h);
    s.hash(&mut h);
    h.finish()
}

/// The candidate ops of a pair of states, in a fixed order: creates,
/// removes, maps, unmaps, (un)registers, DMAs.
pub fn candidates(p: &Points, hw: &Hardware) -> Vec<Op> {
    let mut v = Vec::new();
    let a = BufferId(0);
    let b = BufferId(1);
    let min = p.page_shifts.first().copied().unwrap_or(12);
    // Creates: every page shift at 16M; sizes around the limits with the
    // smallest page; two levels.
    for ps in &p.page_shifts {
        v.push(Op::CreateWindow {
            page_shift: *ps,
            window_size: 16 << 20,
            levels: None,
        });
    }
    for size in &p.window_sizes {
        if *size != 16 << 20 {
            v.push(Op::CreateWindow {
                page_shift: min,
                window_size: *size,
                levels: None,
            });
        }
    }
    v.push(Op::CreateWindow {
        page_shift: min,
        window_size: 16 << 20,
        levels: Some(2),
    });
    for addr in &p.window_addrs {
        v.push(Op::RemoveWindow { start_addr: *addr });
    }
    // Maps: all of buffer 0 (64 KiB) and the first page of buffer 1 at
    // every IOVA point; one without a direction.
    for iova in &p.iovas {
        v.push(Op::MapDma {
            iova: *iova,
            range: BufferRange::whole(a),
            read: true,
            write: true,
        });
        v.push(Op::MapDma {
            iova: *iova,
            range: BufferRange::part(b, 0, hw.page_size),
            read: true,
            write: false,
        });
    }
    v.push(Op::MapDma {
        iova: hw.dma32_start + 0x10000,
        range: BufferRange::whole(a),
        read: false,
        write: false,
    });
    for iova in &p.iovas {
        for length in [0x1000, 0x10000] {
            v.push(Op::UnmapDma {
                iova: *iova,
                length,
            });
        }
    }
    v.push(Op::Unregister(BufferRange::whole(a)));
    v.push(Op::Register(BufferRange::whole(a)));
    v.push(Op::Register(BufferRange::part(a, 0, hw.page_size)));
    v.push(Op::Register(BufferRange::part(a, 0, 0)));
    for iova in [hw.dma32_start + 0x10000, hw.dma64_base] {
        v.push(Op::EduDma {
            iova,
            count: 4096,
            direction: Direction::Write,
        });
    }
    v
}

fn differ(k: &Outcome, s: &Outcome) -> bool {
    k.reply != s.reply || k.dma != s.dma
}

/// Runs the search.
pub fn search(cfg: &Search) -> Report {
    let params = SpaprParams {
        hw: cfg.hw.clone(),
        fixes: cfg.fixes,
        ddw_disabled_at_start: false,
    };
    let mut k0 = World::spapr(params);
    let mut s0 = World::seed(cfg.hw.clone());
    for op in prelude() {
        k0.apply(&op).expect("prelude");
        s0.apply(&op).expect("prelude");
    }
    // State pairs reached, and whether some path to them agreed all along.
    let mut seen: HashMap<u64, bool> = HashMap::new();
    seen.insert(state_hash(&k0, &s0), true);
    // Per rule pair: its index in `divergences`.
    let mut found: BTreeMap<(Rule, Rule), usize> = BTreeMap::new();
    let mut divergences: Vec<Divergence> = Vec::new();
    let mut sequences = 0;
    let mut queue = VecDeque::from([(k0, s0, Vec::<Op>::new(), 0usize)]);
    while let Some((k, s, ops, earlier)) = queue.pop_front() {
        if ops.len() >= cfg.depth {
            continue;
        }
        let pts = points::for_world(&k).merge(points::for_world(&s));
        for op in candidates(&pts, &cfg.hw) {
            sequences += 1;
            let mut k1 = k.clone();
            let mut s1 = s.clone();
            let (Ok(ko), Ok(so)) = (k1.apply(&op), s1.apply(&op)) else {
                continue;
            };
            let mut seq = ops.clone();
            seq.push(op);
            let differs = differ(&ko, &so);
            if differs {
                let d = Divergence {
                    kernel_rule: ko.rule,
                    seed_rule: so.rule,
                    ops: seq.clone(),
                    earlier,
                    kernel: ko.clone(),
                    seed: so.clone(),
                };
                match found.get(&(ko.rule, so.rule)) {
                    None => {
                        found.insert((ko.rule, so.rule), divergences.len());
                        divergences.push(d);
                    }
                    // Fewer earlier differences beat a shorter sequence.
                    Some(i) if divergences[*i].earlier > earlier => divergences[*i] = d,
                    Some(_) => {}
                }
            }
            // A crashed kernel answers nothing more.
            if matches!(ko.reply, crate::outcome::Reply::Crash) {
                continue;
            }
            let clean = earlier == 0 && !differs;
            let h = state_hash(&k1, &s1);
            let extend = match seen.get(&h) {
                None => true,
                Some(was_clean) => clean && !was_clean,
            };
            if extend {
                seen.insert(h, clean);
                queue.push_back((k1, s1, seq, earlier + usize::from(differs)));
            }
        }
    }
    Report {
        divergences,
        sequences,
        states: seen.len(),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn outcome_cell(o: &Outcome) -> String {
    let mut s = o.to_string();
    if !o.dma.is_empty() && o.is_ok() {
        let parts: Vec<String> = o
            .dma
            .iter()
            .map(|seg| match seg.target {
                crate::dma::Target::Buffer { buffer, offset } => {
                    format!(
                        "{:#x}+{:#x} → {}+{offset:#x}",
                        seg.iova,
                        seg.len,
                        buffer.name()
                    )
                }
                crate::dma::Target::Unknown => format!("{:#x}+{:#x} → ?", seg.iova, seg.len),
                crate::dma::Target::Fault => format!("{:#x}+{:#x} faults", seg.iova, seg.len),
            })
            .collect();
        s = format!("DMA {}", parts.join(", "));
    }
    cell(&s)
}

impl Report {
    /// The rows of the table: every rule of either side that decides a
    /// difference, each with its best sequence.  Pairs are taken in the
    /// order (fewest earlier differences, shortest, first found), and a
    /// pair is kept when its kernel rule or its seed rule has no row yet.
    pub fn rows(&self) -> Vec<&Divergence> {
        let mut order: Vec<(usize, &Divergence)> = self.divergences.iter().enumerate().collect();
        order.sort_by_key(|(i, d)| (d.earlier, d.ops.len(), *i));
        let mut covered = std::collections::BTreeSet::new();
        let mut rows = Vec::new();
        for (_, d) in order {
            let new_k = covered.insert(d.kernel_rule);
            let new_s = covered.insert(d.seed_rule);
            if new_k || new_s {
                rows.push(d);
            }
        }
        rows
    }
}

fn table(out: &mut String, world: &World, r: &Report) {
    let _ = writeln!(
        out,
        "| # | kernel rule | seed rule | shortest sequence (after the prelude) | earlier steps | kernel | seed |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let rows = r.rows();
    for (i, d) in rows.iter().enumerate() {
        // Name the steps as a scenario would (buffers already exist).
        let steps: Vec<String> = d
            .ops
            .iter()
            .enumerate()
            .map(|(n, op)| format!("{}. `{}`", n + 1, world.step(op).inline()))
            .collect();
        let _ = writeln!(
            out,
            "| {} | `{}` | `{}` | {} | {} | {} | {} |",
            i + 1,
            d.kernel_rule.name(),
            d.seed_rule.name(),
            cell(&steps.join("<br>")),
            if d.earlier == 0 {
                "agree".to_string()
            } else {
                format!("{} differ", d.earlier)
            },
            outcome_cell(&d.kernel),
            outcome_cell(&d.seed),
        );
    }
    let _ = writeln!(
        out,
        "\n{} rows for {} pairs of differing rules; {} sequences run, {} distinct state pairs.",
        rows.len(),
        r.divergences.len(),
        r.sequences,
        r.states
    );
}

fn rules_used(r: &Report, family: Family) -> Vec<Rule> {
    let mut v: Vec<Rule> = r
        .rows()
        .into_iter()
        .flat_map(|d| [d.kernel_rule, d.seed_rule])
        .filter(|x| x.family() == family)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The markdown of `docs/seed-vs-kernel.md`.
pub fn markdown() -> String {
    let released = Search::pseries(Fixes::linux_7_2_13());
    let old = Search::pseries(Fixes::linux_6_12_95());
    let fixed = Search::pseries(Fixes::all());
    let r1 = search(&released);
    let r0 = search(&old);
    let r2 = search(&fixed);
    let world = World::seed(released.hw.clone());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The seed's windowed IOAS against the kernel's sPAPR container\n"
    );
    let _ = writeln!(
        out,
        "Generated by `iobench_model::divergence::markdown()` (`model/src/divergence.rs`); do not edit.\n\
         Regenerate with `UPDATE_EXPECT=1 cargo test -p iobench-model seed_vs_kernel`.\n"
    );
    let _ = writeln!(
        out,
        "The seed document (Gibson, kvm@vger, 2 May 2022) proposes IOAS with explicit IOVA windows. \
         `iobench_model::seed` models it on the same operations as the VFIO sPAPR TCE v2 container \
         (`iobench_model::spapr`, over pseries and QEMU 10.0, `iobench_model::platform`), and a \
         breadth-first search over sequences of those operations, their arguments drawn from both \
         models' interesting points (`iobench_model::points`), stops at the first step where the two \
         answer differently (reply, or where an edu DMA lands), and notes which rule of each model \
         decided it. Every rule that decides a difference has a row, with the best sequence found for \
         it: fewest earlier steps that already differed, then shortest (most window operations differ \
         at once, because the kernel's default window exists on demand and the seed's IOAS starts \
         empty, so later rows build on that). The rules' sources are listed at the end; where the \
         seed is silent the model's choice is named in the rule (\"seed: silent\").\n"
    );
    let _ = writeln!(out, "## Setup\n");
    let _ = writeln!(
        out,
        "Machine: pseries, 4K pages, QEMU 10.0 defaults (default window {:#x}+{:#x} with 4K pages, \
         DDW at {:#x}, page sizes {:#x}, largest block 2^37 TCEs, TCE counts truncated to 32 bits). \
         Depth {}.\n",
        released.hw.dma32_start,
        released.hw.dma32_size,
        released.hw.dma64_base,
        released.hw.pgsizes,
        released.depth
    );
    let _ = writeln!(
        out,
        "Prelude, on both (after `_common/spapr_container.toml`, which leaves the kernel's default window pending):\n"
    );
    let mut w = World::seed(released.hw.clone());
    for op in prelude() {
        let _ = writeln!(out, "- `{}`", w.step(&op).inline());
        w.apply(&op).expect("prelude");
    }
    let _ = writeln!(out, "\n## Linux 7.2.13 as released (bugs 0001, 0002)\n");
    table(&mut out, &world, &r1);
    let _ = writeln!(
        out,
        "\n## Linux 6.12.95 as released (bugs 0001, 0002, 0003)\n"
    );
    table(&mut out, &world, &r0);
    let _ = writeln!(out, "\n## With kernel-patches/fixes 0001–0003\n");
    table(&mut out, &world, &r2);
    let _ = writeln!(out, "\n## Rules\n");
    let _ = writeln!(out, "| rule | says | source |\n|---|---|---|");
    let mut all = Vec::new();
    for r in [&r1, &r0, &r2] {
        all.extend(rules_used(r, Family::Spapr));
        all.extend(rules_used(r, Family::Seed));
    }
    all.sort();
    all.dedup();
    for r in all {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            r.name(),
            cell(r.summary()),
            cell(r.source())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Search, markdown, search};
    use crate::rule::Rule;
    use crate::spapr::Fixes;

    #[test]
    fn the_search_finds_the_documented_differences() {
        let r = search(&Search {
            depth: 1,
            ..Search::pseries(Fixes::linux_7_2_13())
        });
        let has = |k: Rule| r.divergences.iter().any(|d| d.kernel_rule == k);
        // The kernel's default window exists on demand; the seed has none.
        assert!(
            r.divergences
                .iter()
                .any(|d| d.seed_rule == Rule::SeedOutsideWindows)
        );
        assert!(has(Rule::MisalignedIovaReturnsOne) || has(Rule::Map));
        for d in &r.divergences {
            assert_eq!(d.ops.len(), 1);
        }
    }

    /// docs/seed-vs-kernel.md is what `markdown()` writes.
    #[test]
    fn seed_vs_kernel_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/seed-vs-kernel.md");
        let want = markdown();
        if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
            std::fs::write(path, &want).expect("write docs/seed-vs-kernel.md");
            return;
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/seed-vs-kernel.md is out of date: regenerate it with\n  \
             UPDATE_EXPECT=1 cargo test -p iobench-model seed_vs_kernel"
        );
    }
}
