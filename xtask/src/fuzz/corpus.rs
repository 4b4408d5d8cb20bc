//! Coverage feedback (`cargo xtask fuzz --kcov`): the sequences that
//! reached kernel code no earlier sequence had are kept, and new ones are
//! made from them.
//!
//! The guest traces each batch with KCOV and says, for every PC, the
//! first step that reached it; [`split`] gives each sequence of the batch
//! the PCs it was first to reach, and [`Guided`] (the run's
//! [`Feedback`]) folds them into a [`Collector`] in batch order.  A
//! sequence that reached a call site (a basic block) for the first time
//! joins the [`Corpus`]: a JSON file per sequence under the cache
//! (`fuzz-corpus/<machine>-<linux>/`, named by a hash of its items), kept
//! across runs.  The plan then hands the corpus to `generate::sequence`,
//! which makes every other sequence as a mutation of one, weighted by how
//! much it found.  Which sequences join depends on the guest's timing-free
//! but run-dependent coverage, so a guided run is not repeatable from its
//! seed; each finding is written out as a self-contained scenario anyway.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::feedback::Feedback;
use super::generate::{Item, Plan, Sequence};
use super::judge::{BatchCoverage, Judged};
use super::target::Target;
use crate::coverage::Collector;

/// The most sequences a corpus keeps (those that found the most stay).
const MOST: usize = 2000;

/// A sequence of the corpus.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// What it does.
    pub items: Vec<Item>,
    /// Call sites it reached first when it joined.
    pub new_sites: usize,
    /// Lines of the studied files among them.
    pub new_lines: usize,
}

impl Entry {
    /// How often it is picked as a parent: by what it found, the studied
    /// files' lines counting most.
    fn weight(&self) -> u32 {
        (1 + self.new_sites.min(200) + 20 * self.new_lines.min(50)) as u32
    }
}

/// The sequences kept for a machine on a kernel version.
#[derive(Debug)]
pub struct Corpus {
    dir: PathBuf,
    /// Each entry with its file's name (without `.json`).
    entries: Vec<(String, Entry)>,
    /// Files of the directory that did not read as entries (written by
    /// another version of the fuzzer?): left alone, not used.
    pub skipped: Vec<PathBuf>,
}

impl Corpus {
    /// Where the corpus of `target` lives under `cache`.
    pub fn dir_for(cache: &Path, target: &Target) -> PathBuf {
        cache
            .join("fuzz-corpus")
            .join(format!("{}-{}", target.machine, target.linux.as_str()))
    }

    /// The corpus in `dir` (empty if there is none yet).  A file that
    /// does not read as an entry is skipped (and named in `skipped`).
    pub fn load(dir: &Path) -> Result<Corpus> {
        let mut c = Corpus {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
            skipped: Vec::new(),
        };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Ok(c);
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            match serde_json::from_str::<Entry>(&text) {
                Ok(e) => c.entries.push((file_stem(&f), e)),
                Err(_) => c.skipped.push(f),
            }
        }
        Ok(c)
    }

    /// Sequences kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps `items` (once: the file is named by their hash); says whether
    /// they are new to the corpus.
    pub fn add(&mut self, items: &[Item], new_sites: usize, new_lines: usize) -> Result<bool> {
        let json = serde_json::to_string(items)?;
        let name = crate::cache::short(&crate::cache::key(&[json.as_bytes()])).to_string();
        if self.entries.iter().any(|(n, _)| *n == name) {
            return Ok(false);
        }
        let e = Entry {
            items: items.to_vec(),
            new_sites,
            new_lines,
        };
        if self.entries.len() >= MOST {
            // Full: it replaces the entry that found least, if it found more.
            let Some((i, (_, least))) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, e))| e.weight())
            else {
                return Ok(false);
            };
            if least.weight() >= e.weight() {
                return Ok(false);
            }
            let (gone, _) = self.entries.swap_remove(i);
            let path = self.dir.join(format!("{gone}.json"));
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&e)?)
            .with_context(|| format!("writing {}", path.display()))?;
        self.entries.push((name, e));
        Ok(true)
    }

    /// The parents a plan draws mutations from.
    pub fn parents(&self) -> Arc<Vec<(Vec<Item>, u32)>> {
        Arc::new(
            self.entries
                .iter()
                .map(|(_, e)| (e.items.clone(), e.weight()))
                .collect(),
        )
    }
}

fn file_stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The PCs each sequence of a batch was the first to reach (`pcs` with
/// their `first` steps, sequence `k`'s steps being `spans[k]`), and those
/// of no sequence's steps (the agent's own end of the run).
pub fn split(pcs: &[u64], first: &[u32], spans: &[Range<usize>]) -> BatchCoverage {
    let mut per_sequence = vec![Vec::new(); spans.len()];
    let mut elsewhere = Vec::new();
    for (&pc, &step) in pcs.iter().zip(first) {
        let step = step as usize;
        match spans.iter().position(|s| s.contains(&step)) {
            Some(k) => per_sequence[k].push(pc),
            None => elsewhere.push(pc),
        }
    }
    BatchCoverage {
        per_sequence,
        elsewhere,
        lost: false,
    }
}

/// Coverage feedback: the run's coverage so far, and its corpus (none
/// when coverage is only measured: `--unguided`).
pub struct Guided {
    /// Everything the run's sequences reached.
    pub collector: Collector,
    /// The sequences kept, if the run is guided.
    pub corpus: Option<Corpus>,
    /// Sequences of this run that reached a block first (each joined the
    /// corpus, if there is one and it did not have it).
    pub found: usize,
    /// Batches whose coverage came back.
    pub batches: usize,
    /// Batches whose trace buffer overflowed (some PCs lost).
    pub lost: usize,
}

impl Guided {
    /// Feedback into `collector`, keeping sequences in `corpus` if given.
    pub fn new(collector: Collector, corpus: Option<Corpus>) -> Guided {
        Guided {
            collector,
            corpus,
            found: 0,
            batches: 0,
            lost: 0,
        }
    }

    /// The plan's parents from the start (a corpus of earlier runs).
    pub fn prime(&self, plan: &mut Plan) {
        if let Some(c) = &self.corpus {
            plan.parents = c.parents();
        }
    }
}

impl Feedback for Guided {
    fn batch(
        &mut self,
        seqs: &[Sequence],
        _: &[Judged],
        coverage: Option<&BatchCoverage>,
        plan: &mut Plan,
    ) -> Result<()> {
        let Some(cov) = coverage else {
            return Ok(());
        };
        self.batches += 1;
        self.lost += usize::from(cov.lost);
        let mut joined = false;
        for (seq, pcs) in seqs.iter().zip(&cov.per_sequence) {
            let new = self.collector.add(pcs);
            if new.sites == 0 {
                continue;
            }
            self.found += 1;
            if let Some(c) = &mut self.corpus {
                joined |= c.add(&seq.items, new.sites, new.lines.len())?;
            }
        }
        // Reached, but by no sequence of its own: counted, credited to none.
        self.collector.add(&cov.elsewhere);
        if let (true, Some(c)) = (joined, &self.corpus) {
            plan.parents = c.parents();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iobench_model::op::Op;

    fn items(n: u64) -> Vec<Item> {
        vec![Item::Op(Op::MemAlloc {
            size: n,
            hugetlb: false,
        })]
    }

    #[test]
    fn a_batch_adds_the_sequences_that_reached_new_code_and_the_plan_gets_them() {
        use crate::coverage::sites::{SiteMap, site};
        let vfio = "drivers/vfio/vfio_iommu_spapr_tce.c";
        let map = SiteMap::from_sites(
            harness::machine::Arch::X86_64,
            [site(0x100, vfio, 10), site(0x200, "mm/memory.c", 3)],
        );
        let dir = tempfile::tempdir().unwrap();
        let mut g = Guided::new(Collector::new(map), Some(Corpus::load(dir.path()).unwrap()));
        let mut plan = Plan::default();
        g.prime(&mut plan);
        assert!(plan.parents.is_empty());
        let seq = |n| Sequence {
            seed: 1,
            index: n,
            items: items(4096 * (n + 1)),
        };
        let seqs = [seq(0), seq(1), seq(2)];
        // Sequence 0 reaches a studied line, 1 nothing new, 2 a block
        // elsewhere.  (PCs are return addresses: 5 bytes after the call.)
        let cov = BatchCoverage {
            per_sequence: vec![vec![0x105], vec![0x105], vec![0x205]],
            elsewhere: vec![],
            lost: false,
        };
        g.batch(&seqs, &[], Some(&cov), &mut plan).unwrap();
        assert_eq!(g.found, 2);
        let w: Vec<(Vec<Item>, u32)> = plan.parents.iter().cloned().collect();
        assert_eq!(
            w,
            vec![(seqs[0].items.clone(), 22), (seqs[2].items.clone(), 2)]
        );
        // The same coverage again finds nothing; no coverage, no change.
        g.batch(&seqs, &[], Some(&cov), &mut plan).unwrap();
        g.batch(&seqs, &[], None, &mut plan).unwrap();
        assert_eq!((g.found, g.batches, plan.parents.len()), (2, 2, 2));
    }

    #[test]
    fn pcs_go_to_the_sequence_that_reached_them_first() {
        let spans = [0..3, 3..5];
        let got = split(&[10, 11, 12, 13], &[0, 4, 2, 9], &spans);
        assert_eq!(got.per_sequence, vec![vec![10, 12], vec![11]]);
        assert_eq!(got.elsewhere, vec![13]);
    }

    #[test]
    fn the_corpus_keeps_each_sequence_once_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Corpus::load(dir.path()).unwrap();
        assert_eq!(c.len(), 0);
        assert!(c.add(&items(4096), 3, 1).unwrap());
        assert!(!c.add(&items(4096), 5, 0).unwrap(), "the same items again");
        assert!(c.add(&items(8192), 1, 0).unwrap());
        let again = Corpus::load(dir.path()).unwrap();
        assert_eq!(again.len(), 2);
        let parents = again.parents();
        let w: Vec<u32> = parents.iter().map(|(_, w)| *w).collect();
        assert!(w.contains(&24) && w.contains(&2), "{w:?}");
        // A file that is not an entry is skipped and named.
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        let c = Corpus::load(dir.path()).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.skipped, vec![dir.path().join("bad.json")]);
    }
}
