//! What a run leaves: for each new finding a self-contained scenario
//! file (the prelude written out, each step with the model's expectation,
//! the closing steps) that `cargo xtask run --machine M --scenario FILE`
//! replays, and one report line; findings the reviewed list of known
//! differences (`model/known-differences.toml`) explains are counted,
//! not reported.
//!
//! The known-differences file:
//!
//! ```toml
//! [[difference]]
//! kind = "result"            # result, data, crash, hang, kernel-report
//! op = "vfio.map_dma"        # the agent op (optional)
//! rule = "map"               # the model's rule at the step (optional)
//! actual = "EINVAL"          # text of what the kernel did (optional)
//! machines = ["pseries"]     # where it holds (optional: everywhere)
//! linux = ["6.12"]           # on which versions (optional: all)
//! reason = "why, and how it was checked"
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use iobench_model::outcome::Outcome;
use serde::Deserialize;

use super::batch::{prelude_steps, teardown_steps};
use super::generate::{Attempts, Item, Sequence};
use super::judge::{Difference, Judged, Kind};
use super::target::Target;

/// One reviewed difference between the kernel and the model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Known {
    /// The kind (`result`, `data`, `crash`, `hang`, `kernel-report`).
    pub kind: String,
    /// The agent op, if it matters.
    #[serde(default)]
    pub op: Option<String>,
    /// The model's rule, if it matters.
    #[serde(default)]
    pub rule: Option<String>,
    /// Text of the kernel's answer (or report), if it matters.
    #[serde(default)]
    pub actual: Option<String>,
    /// Machines it holds on (empty: all).
    #[serde(default)]
    pub machines: Vec<String>,
    /// Kernel versions it holds on (empty: all).
    #[serde(default)]
    pub linux: Vec<String>,
    /// Why, and how it was checked.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownFile {
    #[serde(default)]
    difference: Vec<Known>,
}

/// The reviewed differences.
#[derive(Debug, Clone, Default)]
pub struct KnownDifferences(pub Vec<Known>);

const KINDS: &[&str] = &["result", "data", "crash", "hang", "kernel-report"];

impl KnownDifferences {
    /// Parses the file's text (`path` for messages).
    pub fn parse(text: &str, path: &Path) -> Result<KnownDifferences> {
        let f: KnownFile = toml::from_str(text).map_err(|e| {
            let (line, msg) = harness::toml_error::locate(text, &e);
            anyhow::anyhow!("{}:{line}: {msg}", path.display())
        })?;
        for (i, k) in f.difference.iter().enumerate() {
            let at = format!("{}: difference {}", path.display(), i + 1);
            if k.reason.trim().is_empty() {
                bail!("{at}: a known difference needs its reason");
            }
            if !KINDS.contains(&k.kind.as_str()) {
                bail!("{at}: kind {:?} is not one of {}", k.kind, KINDS.join(", "));
            }
            if let Some(r) = &k.rule
                && !iobench_model::rule::Rule::ALL.iter().any(|x| x.name() == r)
            {
                bail!("{at}: the model has no rule {r:?}");
            }
            for l in &k.linux {
                if harness::linux::Linux::parse(l).is_none() {
                    bail!("{at}: linux {l:?} is not a version iobench builds");
                }
            }
            for m in &k.machines {
                if !super::target::MACHINES.contains(&m.as_str()) {
                    bail!("{at}: the fuzzer knows no machine {m:?}");
                }
            }
        }
        Ok(KnownDifferences(f.difference))
    }

    /// Loads the file (none: nothing known).
    pub fn load(path: &Path) -> Result<KnownDifferences> {
        match std::fs::read_to_string(path) {
            Ok(t) => Self::parse(&t, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The entry that explains `d` on `target`, if one does.
    pub fn explains(&self, target: &Target, d: &Difference) -> Option<&Known> {
        self.0.iter().find(|k| {
            k.kind == d.kind.name()
                && k.op.as_ref().is_none_or(|o| *o == d.op)
                && k.rule
                    .as_ref()
                    .is_none_or(|r| d.rule.is_some_and(|x| x.name() == r))
                && k.actual
                    .as_ref()
                    .is_none_or(|a| d.actual.contains(a.as_str()))
                && (k.machines.is_empty() || k.machines.contains(&target.machine))
                && (k.linux.is_empty() || k.linux.iter().any(|l| l == target.linux.as_str()))
        })
    }
}

/// A finding to write down.
pub struct Finding<'a> {
    /// Where.
    pub target: &'a Target,
    /// The minimized sequence.
    pub seq: &'a Sequence,
    /// Its judgement on a fresh boot (the model's expectations).
    pub judged: &'a Judged,
    /// The difference, as the minimized run showed it.
    pub diff: &'a Difference,
    /// Items of the sequence as generated.
    pub original_len: usize,
    /// The fuzz command that found it.
    pub command: String,
    /// The kernel's options on that command line (`--linux 7.2 --patch
    /// F`), which `cargo xtask run` needs to boot the same kernel.
    pub kernel_flags: String,
}

impl Finding<'_> {
    /// The file name: `<linux>-<kind>-<op>-<rule>-s<seed>-<index>.toml`.
    pub fn file_name(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect()
        };
        format!(
            "{}-{}-{}-{}-s{}-{}.toml",
            self.target.linux.as_str(),
            self.diff.kind.name(),
            clean(&self.diff.op),
            self.diff.rule.map_or("none", |r| r.name()),
            self.seq.seed,
            self.seq.index
        )
    }

    /// The scenario file's text.
    pub fn toml(&self, path_shown: &str) -> String {
        let t = self.target;
        let d = self.diff;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Found by `{}` (sequence {}), minimized from {} to {} steps.",
            self.command,
            self.seq.index,
            self.original_len,
            self.seq.items.len()
        );
        let at = if d.item < self.seq.items.len() {
            format!("step {} ({})", d.item + 1, d.op)
        } else {
            format!("the end ({})", d.op)
        };
        let _ = writeln!(s, "# {} difference at {at}:", d.kind.name());
        let _ = writeln!(s, "#   the model expects: {}", one_line(&d.expected));
        let _ = writeln!(s, "#   the kernel gave:   {}", one_line(&d.actual));
        if let Some(r) = d.rule {
            let _ = writeln!(s, "#   rule {}: {}", r.name(), one_line(r.summary()));
            let _ = writeln!(s, "#   ({})", r.source());
        }
        let _ = writeln!(
            s,
            "# Reproduce: cargo xtask run --machine {}{} --scenario {path_shown}",
            t.machine, self.kernel_flags
        );
        let _ = writeln!(
            s,
            "description = {:?}",
            format!(
                "fuzz: {} {} ({}) differs from the model",
                d.kind.name(),
                d.op,
                d.rule.map_or("no rule", |r| r.name())
            )
        );
        let _ = writeln!(s, "machines = [{:?}]", t.machine);
        let req: Vec<String> = t.requires.iter().map(|r| format!("{r:?}")).collect();
        let _ = writeln!(s, "requires = [{}]", req.join(", "));
        if !self.judged.warnings.is_empty() && d.kind != Kind::KernelReport {
            let _ = writeln!(s, "expect_kernel_warning = \"WARNING:\"");
        }
        let mut a = Attempts::default();
        let _ = writeln!(s, "\n# The objects the steps name.");
        for st in prelude_steps(t, &self.seq.items, true) {
            s.push('\n');
            s.push_str(&st.to_toml(None));
        }
        for (i, it) in self.seq.items.iter().enumerate() {
            s.push('\n');
            if i == d.item {
                let _ = writeln!(
                    s,
                    "# The difference: the kernel gave {}.",
                    one_line(&d.actual)
                );
            }
            let step = it.step(&a);
            match it {
                Item::Op(op) => {
                    let e = self
                        .judged
                        .outcomes
                        .get(i)
                        .and_then(Option::as_ref)
                        .and_then(Outcome::expectation);
                    s.push_str(&step.to_toml(e.as_ref()));
                    a.note(op);
                }
                Item::Check { .. } if self.judged.checks.get(i) != Some(&Some(true)) => {
                    s.push_str(&step.to_toml(None));
                    s.push_str("expect = \"any\"\n");
                }
                _ => s.push_str(&step.to_toml(None)),
            }
        }
        if d.item >= self.seq.items.len() {
            let _ = writeln!(s, "\n# The difference shows when they are closed.");
        } else {
            let _ = writeln!(s, "\n# Closing.");
        }
        for st in teardown_steps(t, &self.seq.items) {
            s.push('\n');
            s.push_str(&st.to_toml(None));
        }
        s
    }

    /// Writes the file into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(self.file_name());
        let shown = path
            .strip_prefix(crate::cache::repo_root())
            .unwrap_or(&path)
            .display()
            .to_string();
        std::fs::write(&path, self.toml(&shown))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One report line for a finding.
pub fn line(target: &Target, d: &Difference, what: &str) -> String {
    format!(
        "{} {} {}: {} {} (rule {}): expected {}; the kernel gave {} → {what}",
        target.machine,
        target.linux.as_str(),
        d.kind.name(),
        d.op,
        if d.item == usize::MAX {
            String::new()
        } else {
            format!("at step {}", d.item + 1)
        },
        d.rule.map_or("-", |r| r.name()),
        one_line(&d.expected),
        one_line(&d.actual)
    )
}

#[cfg(test)]
mod tests {
    use super::{Finding, KnownDifferences};
    use crate::fuzz::generate::{Plan, sequence};
    use crate::fuzz::judge::{Difference, Judged, Kind};
    use crate::fuzz::target::Target;
    use harness::linux::Linux;
    use harness::scenario::ScenarioFile;
    use iobench_model::rule::Rule;
    use std::path::Path;

    fn judged_by_model(t: &Target, items: &[crate::fuzz::generate::Item]) -> Judged {
        // What the judge would say if the kernel did what the model says.
        let mut w = t.world.clone();
        let mut made = crate::fuzz::generate::Made::default();
        let mut shadow = crate::fuzz::shadow::Shadow::default();
        let mut outcomes = Vec::new();
        let mut checks = Vec::new();
        for it in items {
            match it {
                crate::fuzz::generate::Item::Op(op) => {
                    match crate::fuzz::generate::apply(&mut w, &mut made, op) {
                        Some(Ok(o)) => {
                            shadow.apply(&w.mem, op, &o);
                            outcomes.push(Some(o));
                        }
                        _ => outcomes.push(None),
                    }
                    checks.push(None);
                }
                crate::fuzz::generate::Item::Fill {
                    buffer,
                    offset,
                    length,
                    byte,
                } => {
                    shadow.fill(*buffer, *offset, *length, *byte);
                    outcomes.push(None);
                    checks.push(None);
                }
                crate::fuzz::generate::Item::Check {
                    buffer,
                    offset,
                    length,
                    byte,
                } => {
                    outcomes.push(None);
                    checks.push(shadow.expect_check(*buffer, *offset, *length, *byte));
                }
            }
        }
        Judged {
            differences: vec![],
            checked: 0,
            outcomes,
            checks,
            end: w,
            warnings: Vec::new(),
            side_rules: Vec::new(),
        }
    }

    #[test]
    fn repro_files_parse_and_match_the_op_catalogue() {
        for m in ["pseries", "pseries-64k", "q35-mock", "q35"] {
            let t = Target::new(m, Linux::V7_2, Default::default()).unwrap();
            for i in 0..20 {
                let seq = sequence(&t, &Plan::default(), 3, i);
                let judged = judged_by_model(&t, &seq.items);
                let diff = Difference {
                    item: seq.items.len() / 2,
                    kind: Kind::Result,
                    op: "vfio.map_dma".into(),
                    rule: Some(Rule::Map),
                    expected: "ok 0".into(),
                    actual: "EINVAL".into(),
                };
                let f = Finding {
                    target: &t,
                    seq: &seq,
                    judged: &judged,
                    diff: &diff,
                    original_len: seq.items.len(),
                    command: format!("cargo xtask fuzz --machine {m} --seed 3"),
                    kernel_flags: " --linux 7.2".into(),
                };
                let text = f.toml("target/iobench/fuzz/x.toml");
                let path = Path::new("/nonexistent/fuzz.toml");
                let file = ScenarioFile::parse(&text, path, "fuzz::x")
                    .unwrap_or_else(|e| panic!("{m} sequence {i}: {e}\n{text}"));
                assert!(file.applies_to(m));
                // Every item is a step, with the prelude and the closing around.
                let w = &t.world;
                assert_eq!(
                    file.scenario.steps.len(),
                    crate::fuzz::batch::prelude_steps(&t, &seq.items, true).len()
                        + seq.items.len()
                        + crate::fuzz::batch::teardown_steps(&t, &seq.items).len()
                );
                assert!(!w.prelude_steps().is_empty());
                assert!(text.contains("# The difference: the kernel gave EINVAL."));
            }
        }
    }

    #[test]
    fn known_differences_need_reasons_and_match_by_fields() {
        let path = Path::new("model/known-differences.toml");
        let k = KnownDifferences::parse(
            "[[difference]]\nkind = \"result\"\nrule = \"map\"\nmachines = [\"pseries\"]\nreason = \"checked\"\n",
            path,
        )
        .unwrap();
        let t = Target::new("pseries", Linux::V6_12, Default::default()).unwrap();
        let mut d = Difference {
            item: 0,
            kind: Kind::Result,
            op: "vfio.map_dma".into(),
            rule: Some(Rule::Map),
            expected: "ok 0".into(),
            actual: "EINVAL".into(),
        };
        assert!(k.explains(&t, &d).is_some());
        d.rule = Some(Rule::Unmap);
        assert!(k.explains(&t, &d).is_none());
        let q = Target::new("q35", Linux::V6_12, Default::default()).unwrap();
        d.rule = Some(Rule::Map);
        assert!(k.explains(&q, &d).is_none());
        for bad in [
            "[[difference]]\nkind = \"result\"\nreason = \" \"\n",
            "[[difference]]\nkind = \"oops\"\nreason = \"x\"\n",
            "[[difference]]\nkind = \"result\"\nrule = \"no-such-rule\"\nreason = \"x\"\n",
            "[[difference]]\nkind = \"result\"\nreason = \"x\"\ncolour = 1\n",
        ] {
            assert!(KnownDifferences::parse(bad, path).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_repository_list_is_valid() {
        let path = crate::cache::repo_root().join("model/known-differences.toml");
        KnownDifferences::load(&path).unwrap();
    }
}
