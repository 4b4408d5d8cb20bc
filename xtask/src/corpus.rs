//! `cargo xtask corpus`: iobench's power measured on real upstream bugs.
//!
//! `bugs/NN-name/` holds one bug each: `bug.toml` (the upstream fix, the
//! kernels it affects, the trials that must fail without it and the text
//! their failure must contain, or why none can) and `reintroduce.patch`,
//! a `-p1` patch that undoes just the fix in Debian's 6.12.95 tree.  For
//! each bug this runs every named trial twice through this same binary's
//! `test` command — with the patch (`--patch`, only the kernel flavour
//! of the trial's machine is built) it must fail with the signature, and
//! without it pass — reading the suite's JSON records, then prints a table
//! and writes JUnit.  A bug whose trials do not show it both ways fails
//! the command.  Each run keeps its logs apart under
//! `target/iobench/corpus/<bug>/` (`IOBENCH_OUT`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use harness::report::{TrialRecord, TrialStatus};
use harness::toml_error::{line_of_first, locate};
use serde::Deserialize;

use crate::cache::{out_dir, repo_root};
use crate::flags::{AccelFlag, CorpusArgs};

/// `bug.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BugFile {
    /// The upstream fix's commit id (12 or more hex digits).
    pub commit: String,
    /// Its subject line.
    pub subject: String,
    /// Its CVE, if it has one.
    #[serde(default)]
    pub cve: Option<String>,
    /// The kernels that have the bug (introduced by, fixed in, stable backports).
    pub affected: String,
    /// For a finer variant of an upstream bug: what exactly it undoes.
    #[serde(default)]
    pub variant: Option<String>,
    /// What goes wrong without the fix, in a sentence or two.
    pub symptom: String,
    /// The trials that must fail with the patch (and pass without it).
    #[serde(default, rename = "trial")]
    pub trials: Vec<TrialSpec>,
    /// Instead of trials: why emulation cannot show the bug, and what was tried.
    #[serde(default)]
    pub undetectable: Option<String>,
}

/// One trial that shows a bug.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialSpec {
    /// Full trial name, `machine::dir::scenario`.
    pub name: String,
    /// Text the trial's failure message must contain with the patch applied
    /// (a step's expected/actual, an errno, a kernel report's first line).
    pub signature: String,
}

impl TrialSpec {
    /// The machine the trial runs on: its name up to the first `::`.
    pub fn machine(&self) -> &str {
        self.name.split("::").next().unwrap_or_default()
    }
}

/// A bug of the corpus: its directory and file.
#[derive(Debug)]
pub struct Bug {
    /// Directory name, `NN-short-name`: the bug's id.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its `bug.toml`.
    pub file: BugFile,
}

impl Bug {
    /// The patch that re-introduces it.
    pub fn patch(&self) -> PathBuf {
        self.dir.join("reintroduce.patch")
    }

    /// Whether `want` names this bug: its directory, its number (`08a`),
    /// or a prefix (7+ digits) of its commit id.
    pub fn matches(&self, want: &str) -> bool {
        self.id == want
            || self.id.split('-').next() == Some(want)
            || (want.len() >= 7 && self.file.commit.starts_with(want))
    }
}

/// Reads and checks one `bug.toml`; errors name `file:line`.
pub fn load_bug(dir: &Path) -> Result<Bug> {
    let path = dir.join("bug.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: BugFile = toml::from_str(&text).map_err(|e| {
        let (line, msg) = locate(&text, &e);
        anyhow::anyhow!("{}:{line}: {msg}", path.display())
    })?;
    let at = |needle: &str, msg: String| {
        anyhow::anyhow!("{}:{}: {msg}", path.display(), line_of_first(&text, needle))
    };
    if file.commit.len() < 12 || !file.commit.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(at(
            "commit",
            format!(
                "commit must be 12 or more hex digits, not {:?}",
                file.commit
            ),
        ));
    }
    match (&file.undetectable, file.trials.is_empty()) {
        (None, true) => {
            return Err(at(
                "commit",
                "give the [[trial]]s that show the bug, or undetectable = \"why\"".into(),
            ));
        }
        (Some(_), false) => {
            return Err(at(
                "undetectable",
                "a bug with trials is not undetectable".into(),
            ));
        }
        _ => {}
    }
    for t in &file.trials {
        let parts: Vec<&str> = t.name.split("::").collect();
        if parts.len() < 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(at(
                &t.name,
                format!("trial {:?} is not `machine::dir::scenario`", t.name),
            ));
        }
        if t.signature.trim().is_empty() {
            return Err(at(
                &t.name,
                format!("trial {:?} has an empty signature", t.name),
            ));
        }
    }
    let bug = Bug {
        id: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir: dir.to_owned(),
        file,
    };
    if !bug.patch().is_file() {
        bail!("{}: no reintroduce.patch next to it", path.display());
    }
    Ok(bug)
}

/// Every bug under `root` (`bugs/`), by id.
pub fn load_all(root: &Path) -> Result<Vec<Bug>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bug.toml").is_file())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load_bug(d)).collect()
}

/// A bug in a few lines, for `--list`.
fn describe(b: &Bug) -> String {
    let f = &b.file;
    let mut s = format!("{}  {} \"{}\"", b.id, &f.commit[..12], f.subject);
    if let Some(cve) = &f.cve {
        s += &format!(" ({cve})");
    }
    s += &format!(
        "\n    affected: {}\n    symptom: {}\n",
        f.affected, f.symptom
    );
    if let Some(v) = &f.variant {
        s += &format!("    variant: {v}\n");
    }
    for t in &f.trials {
        s += &format!("    trial: {}  signature: {:?}\n", t.name, t.signature);
    }
    if let Some(why) = &f.undetectable {
        s += &format!("    undetectable: {why}\n");
    }
    s
}

/// How one run of a trial ended, for the table.
#[derive(Debug, Clone)]
struct Outcome {
    ok: bool,
    /// Why not, or what it showed.
    note: String,
    seconds: f64,
}

/// Runs `xtask test` for one trial (with or without the patch) and reads
/// its record from the JSON report.
fn run_trial(
    exe: &Path,
    trial: &TrialSpec,
    patch: Option<&Path>,
    out: &Path,
    accel: AccelFlag,
) -> Result<TrialRun> {
    std::fs::create_dir_all(out)?;
    let json = out.join("results.json");
    let _ = std::fs::remove_file(&json);
    let log = out.join("xtask-test.log");
    let mut cmd = Command::new(exe);
    cmd.current_dir(repo_root())
        .env("IOBENCH_OUT", out)
        // The corpus' re-introducing patches are written against 6.12.95.
        .args(["test", "--linux", "6.12", "--machine", trial.machine()])
        .args(["--exact", "--json"])
        .arg(&json)
        .args(["--accel", accel_word(accel)]);
    if let Some(p) = patch {
        cmd.arg("--patch").arg(p);
    }
    cmd.arg(&trial.name);
    let logfile =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(logfile.try_clone()?)
        .stderr(logfile);
    let start = Instant::now();
    let status = cmd.status().context("running xtask test")?;
    let seconds = start.elapsed().as_secs_f64();
    let records: Vec<serde_json::Value> = match std::fs::read(&json) {
        Ok(b) => {
            serde_json::from_slice(&b).with_context(|| format!("reading {}", json.display()))?
        }
        Err(_) => {
            return Ok(TrialRun {
                record: None,
                why: format!(
                    "no report: `xtask test` exited with {status} before running the trial; see {}",
                    log.display()
                ),
                seconds,
            });
        }
    };
    let record = records
        .into_iter()
        .find(|r| r["name"].as_str() == Some(trial.name.as_str()));
    let why = if record.is_none() {
        format!("no trial named {} ran; see {}", trial.name, log.display())
    } else {
        String::new()
    };
    Ok(TrialRun {
        record,
        why,
        seconds,
    })
}

/// One `xtask test` run's record of the trial.
#[derive(Debug, Clone)]
struct TrialRun {
    record: Option<serde_json::Value>,
    why: String,
    seconds: f64,
}

impl TrialRun {
    fn status(&self) -> &str {
        self.record
            .as_ref()
            .and_then(|r| r["status"].as_str())
            .unwrap_or("missing")
    }

    fn text(&self) -> String {
        let r = match &self.record {
            Some(r) => r,
            None => return self.why.clone(),
        };
        ["message", "reason"]
            .iter()
            .find_map(|k| r[*k].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// With the patch: it must fail, with the signature in its message.
    fn red(&self, signature: &str) -> Outcome {
        let text = self.text();
        let (ok, note) = match self.status() {
            "failed" if text.contains(signature) => (true, format!("failed with {signature:?}")),
            "failed" => (
                false,
                format!("failed without {signature:?}: {}", first_line(&text)),
            ),
            "missing" => (false, text),
            other => (false, format!("{other} (the bug did not show)")),
        };
        Outcome {
            ok,
            note,
            seconds: self.seconds,
        }
    }

    /// Without the patch: it must pass.
    fn green(&self) -> Outcome {
        let (ok, note) = match self.status() {
            "passed" => (true, "passed".into()),
            "missing" => (false, self.text()),
            other => (false, format!("{other}: {}", first_line(&self.text()))),
        };
        Outcome {
            ok,
            note,
            seconds: self.seconds,
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('='))
        .unwrap_or(s)
}

fn accel_word(a: AccelFlag) -> &'static str {
    match a {
        AccelFlag::Auto => "auto",
        AccelFlag::Tcg => "tcg",
        AccelFlag::Kvm => "kvm",
    }
}

/// One row of the table.
struct Row {
    bug: String,
    commit: String,
    trial: String,
    red: Option<Outcome>,
    green: Option<Outcome>,
    skipped: Option<String>,
}

impl Row {
    fn detected(&self) -> bool {
        self.skipped.is_some()
            || (self.red.as_ref().is_some_and(|o| o.ok)
                && self.green.as_ref().is_some_and(|o| o.ok))
    }

    fn seconds(&self) -> f64 {
        self.red.as_ref().map_or(0.0, |o| o.seconds)
            + self.green.as_ref().map_or(0.0, |o| o.seconds)
    }
}

fn mark(o: &Option<Outcome>) -> &'static str {
    match o {
        Some(o) if o.ok => "✓",
        Some(_) => "✗",
        None => "-",
    }
}

/// `cargo xtask corpus [ID…]`.
pub fn run(a: &CorpusArgs) -> Result<()> {
    let root = repo_root();
    let all = load_all(&root.join("bugs"))?;
    let bugs: Vec<&Bug> = if a.ids.is_empty() {
        all.iter().collect()
    } else {
        let mut picked = Vec::new();
        for id in &a.ids {
            let found: Vec<&Bug> = all.iter().filter(|b| b.matches(id)).collect();
            if found.is_empty() {
                let known: Vec<&str> = all.iter().map(|b| b.id.as_str()).collect();
                bail!("no bug {id:?} in bugs/ (there are: {})", known.join(", "));
            }
            picked.extend(found);
        }
        picked
    };
    if a.list {
        for b in &bugs {
            print!("{}", describe(b));
        }
        return Ok(());
    }
    let base = out_dir().join("corpus");
    // A private copy of this binary runs the trials: `cargo xtask …`
    // elsewhere in the checkout may rebuild (replace) it meanwhile.
    std::fs::create_dir_all(&base)?;
    let exe_dir = tempfile::tempdir_in(&base)?;
    let exe = exe_dir.path().join("xtask");
    let me = std::env::current_exe().context("finding this xtask binary")?;
    std::fs::copy(&me, &exe).with_context(|| format!("copying {}", me.display()))?;
    let mut greens: BTreeMap<String, TrialRun> = BTreeMap::new();
    let mut rows = Vec::new();
    for b in &bugs {
        let commit = b.file.commit[..12].to_string();
        if let Some(why) = &b.file.undetectable {
            println!("{}: undetectable: {why}", b.id);
            rows.push(Row {
                bug: b.id.clone(),
                commit,
                trial: "-".into(),
                red: None,
                green: None,
                skipped: Some(why.clone()),
            });
            continue;
        }
        for t in &b.file.trials {
            println!("{} ({commit}): {} with reintroduce.patch …", b.id, t.name);
            let safe = t.name.replace("::", "-");
            let red = run_trial(
                &exe,
                t,
                Some(&b.patch()),
                &base.join(&b.id).join(&safe),
                a.accel,
            )?
            .red(&t.signature);
            println!(
                "  red   {} {} ({:.0} s)",
                mark(&Some(red.clone())),
                red.note,
                red.seconds
            );
            let green_run = match greens.get(&t.name) {
                // The same trial without the patch already ran for another bug.
                Some(g) => TrialRun {
                    seconds: 0.0,
                    ..g.clone()
                },
                None => {
                    println!("{}: {} without the patch …", b.id, t.name);
                    let g = run_trial(&exe, t, None, &base.join("unpatched").join(&safe), a.accel)?;
                    greens.insert(t.name.clone(), g.clone());
                    g
                }
            };
            let green = green_run.green();
            println!(
                "  green {} {} ({:.0} s)",
                mark(&Some(green.clone())),
                green.note,
                green.seconds
            );
            rows.push(Row {
                bug: b.id.clone(),
                commit: commit.clone(),
                trial: t.name.clone(),
                red: Some(red),
                green: Some(green),
                skipped: None,
            });
        }
    }
    print!("{}", table(&rows));
    let junit = a.junit.clone().unwrap_or_else(|| base.join("junit.xml"));
    std::fs::create_dir_all(junit.parent().unwrap_or(Path::new(".")))?;
    harness::report::write_junit(&junit, "corpus", &records(&rows))
        .with_context(|| format!("writing {}", junit.display()))?;
    println!("JUnit: {}", junit.display());
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.detected())
        .map(|r| r.bug.as_str())
        .collect();
    if !missed.is_empty() {
        bail!(
            "{} of {} trials do not show their bug both ways: {}",
            missed.len(),
            rows.len(),
            missed.join(", ")
        );
    }
    Ok(())
}

/// The table: bug, commit, trial, red with the patch, green without, time.
fn table(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let w =
        |f: fn(&Row) -> usize, head: &str| rows.iter().map(f).max().unwrap_or(0).max(head.len());
    let (wb, wt) = (w(|r| r.bug.len(), "bug"), w(|r| r.trial.len(), "trial"));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<wb$}  {:<12}  {:<wt$}  {:^5}  {:^5}  {:>6}",
        "bug", "commit", "trial", "red", "green", "time"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<wb$}  {:<12}  {:<wt$}  {:^5}  {:^5}  {:>5.0}s{}",
            r.bug,
            r.commit,
            r.trial,
            mark(&r.red),
            mark(&r.green),
            r.seconds(),
            if r.skipped.is_some() {
                "  (undetectable)"
            } else {
                ""
            }
        );
    }
    s
}

/// JUnit records: one test case per (bug, trial), named `bug::trial`.
fn records(rows: &[Row]) -> Vec<TrialRecord> {
    rows.iter()
        .map(|r| {
            let status = if let Some(why) = &r.skipped {
                TrialStatus::Ignored {
                    reason: Some(format!("undetectable: {why}")),
                }
            } else if r.detected() {
                TrialStatus::Passed
            } else {
                let say = |o: &Option<Outcome>| o.as_ref().map_or("not run".to_string(), |o| o.note.clone());
                TrialStatus::Failed {
                    message: format!(
                        "{} ({}) not shown both ways by {}\nwith reintroduce.patch: {}\nwithout: {}",
                        r.bug,
                        r.commit,
                        r.trial,
                        say(&r.red),
                        say(&r.green)
                    ),
                }
            };
            TrialRecord {
                name: format!("{}::{}", r.bug, r.trial),
                status,
                seconds: r.seconds(),
                log_dir: None,
                steps: vec![],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, toml: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("bug.toml"), toml).unwrap();
        std::fs::write(dir.join("reintroduce.patch"), "").unwrap();
    }

    const GOOD: &str = r#"
commit = "afb47765f9235181fddc61c8633b5a8cfae29fd2"
subject = "iommufd: Make vfio_compats unmap succeed if the range is already empty"
affected = "v6.2 .. v6.15"
symptom = "ENOENT"

[[trial]]
name = "q35::regress::compat_unmap_empty"
signature = "ENOENT"
"#;

    #[test]
    fn a_bug_is_found_by_dir_number_or_commit() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("09-compat-unmap-empty"), GOOD);
        let b = load_bug(&tmp.path().join("09-compat-unmap-empty")).unwrap();
        assert_eq!(b.file.trials[0].machine(), "q35");
        assert!(b.matches("09") && b.matches("09-compat-unmap-empty") && b.matches("afb47765f923"));
        assert!(!b.matches("0") && !b.matches("afb"));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("x");
        write(
            &d,
            &GOOD.replace(
                "signature = \"ENOENT\"",
                "signature = \"ENOENT\"\nsignatur = 1",
            ),
        );
        let e = load_bug(&d).unwrap_err().to_string();
        assert!(e.contains("bug.toml:10:"), "{e}");
        write(
            &d,
            &GOOD.replace("q35::regress::compat_unmap_empty", "compat_unmap_empty"),
        );
        let e = load_bug(&d).unwrap_err().to_string();
        assert!(
            e.contains("bug.toml:8:") && e.contains("machine::dir::scenario"),
            "{e}"
        );
        let none = GOOD.split("[[trial]]").next().unwrap();
        write(&d, none);
        assert!(
            load_bug(&d)
                .unwrap_err()
                .to_string()
                .contains("undetectable")
        );
        write(&d, &format!("{none}undetectable = \"no hardware\"\n"));
        assert!(load_bug(&d).unwrap().file.undetectable.is_some());
    }

    #[test]
    fn the_corpus_parses_and_names_existing_scenarios_and_machines() {
        let root = repo_root();
        let bugs = load_all(&root.join("bugs")).unwrap();
        assert!(bugs.len() >= 7, "{} bugs", bugs.len());
        for b in &bugs {
            for t in &b.file.trials {
                let machine = root
                    .join("qemu-configs")
                    .join(format!("{}.toml", t.machine()));
                assert!(machine.is_file(), "{}: no machine {}", b.id, t.machine());
                let rest = t.name.split_once("::").unwrap().1.replace("::", "/");
                let scenario = root.join("scenarios").join(format!("{rest}.toml"));
                assert!(scenario.is_file(), "{}: no {}", b.id, scenario.display());
            }
        }
    }

    #[test]
    fn every_reintroduce_patch_applies_to_debians_tree() {
        // Debian's unpacked tree, if `cargo xtask setup`/a build put it in
        // the cache (a dry run writes nothing).
        let src = crate::cache::cache_dir().join("src");
        let tree = std::fs::read_dir(&src)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("linux-source-6.12_"))
                    && p.join("Makefile").is_file()
            });
        let Some(tree) = tree else {
            eprintln!("no linux-source-6.12 tree under {}: skipped", src.display());
            return;
        };
        for b in load_all(&repo_root().join("bugs")).unwrap() {
            let out = Command::new("patch")
                .args(["-p1", "--dry-run", "--force", "-s", "-d"])
                .arg(&tree)
                .arg("-i")
                .arg(b.patch())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} does not apply to {}: {}",
                b.patch().display(),
                tree.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    fn run_of(status: &str, message: &str) -> TrialRun {
        TrialRun {
            record: Some(
                serde_json::json!({ "name": "m::d::s", "status": status, "message": message }),
            ),
            why: String::new(),
            seconds: 1.0,
        }
    }

    #[test]
    fn red_needs_the_signature_and_green_a_pass() {
        assert!(
            run_of("failed", "step 7: actual ENOENT (2)")
                .red("ENOENT (2)")
                .ok
        );
        assert!(
            !run_of("failed", "step 7: actual EBUSY (16)")
                .red("ENOENT (2)")
                .ok
        );
        assert!(!run_of("passed", "").red("ENOENT").ok);
        assert!(run_of("passed", "").green().ok);
        assert!(!run_of("expected_failure", "known bug").green().ok);
    }
}
