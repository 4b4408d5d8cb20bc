//! `cargo xtask bisect`: the first commit of a kernel tree's history where
//! a trial breaks.
//!
//! The user's tree is only read: its revisions are resolved there, and the
//! walk happens in a private clone under the cache (`git clone --shared
//! --no-checkout`: its objects are the user's, through alternates), one per
//! source tree, kept between runs and locked while one runs.  `git bisect
//! start --no-checkout` in that clone picks the revisions (merges and
//! skips as git does them); each one is checked out there with `git
//! checkout -f` (only the files that differ are written, so make stays
//! incremental in the clone's one build directory per flavour), the
//! `--patch`es are applied, the kernel of each trial's machine is built
//! (`xtask::kernel`, cached by commit), and the trials run through this
//! same binary's `test --kernel IMAGE --exact TRIAL --json F`.  BAD is
//! tested first: a trial that does not fail there leaves nothing to find.
//! GOOD is taken on trust, except when the answer would be its child
//! (every revision tested was bad): then it is tested too.
//!
//! A revision is *bad* when a trial fails (an expected failure of a
//! `known_bug` scenario counts: the behaviour it checks is broken) in
//! every one of `--runs N` runs, *good* when every trial passes every run,
//! and *skipped* (`git bisect skip`) when it cannot be decided: the tree
//! does not build, a patch does not apply, a scenario trial's machine did
//! not boot (no step ran: a boot failure is not the scenario's subject;
//! bisect a `::boot` trial for that), the trial was ignored, or it is
//! *flaky* (passed some runs, failed others).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use harness::machine::{KernelFlavour, Machine};

use crate::cache::{cache_dir, key, out_dir, repo_root, short};
use crate::flags::AccelFlag;
use crate::kernel::{Flavour, Source};
use crate::patch::Patch;

/// What to bisect.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The user's git tree (a work tree or a bare repository).
    pub src: PathBuf,
    /// A revision where the trials pass.
    pub good: String,
    /// A later revision (GOOD is its ancestor) where they fail.
    pub bad: String,
    /// Full trial names, `machine::dir::scenario`.
    pub trials: Vec<String>,
    /// Patches applied to every revision (`-p1`).
    pub patches: Vec<PathBuf>,
    /// Runs of each trial per revision.
    pub runs: usize,
    /// Accelerator for the trials' machines.
    pub accel: AccelFlag,
}

/// What a revision was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every trial passed every run.
    Good,
    /// A trial failed every run.
    Bad,
    /// Undecidable here (build, patch, boot, ignored, flaky): `git bisect skip`.
    Skip,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Good => "good",
            Verdict::Bad => "bad",
            Verdict::Skip => "skip",
        }
    }
}

/// One revision tested.
#[derive(Debug, Clone)]
pub struct Step {
    /// Full commit id.
    pub rev: String,
    /// Its subject line.
    pub subject: String,
    /// Time spent checking out, patching and building.
    pub build: Duration,
    /// Whether every kernel came from the cache.
    pub cached: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in a line.
    pub note: String,
}

/// A commit, for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Full commit id.
    pub id: String,
    /// Subject line.
    pub subject: String,
}

/// How a bisection ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The first bad commit, if git could name one.
    pub first_bad: Option<Commit>,
    /// When skips hide it: the commits it could be.
    pub candidates: Vec<Commit>,
    /// Commits in GOOD..BAD.
    pub range: usize,
    /// Each revision tested, in order (BAD first).
    pub steps: Vec<Step>,
    /// Where the logs are.
    pub log_dir: PathBuf,
}

impl Outcome {
    /// ⌈log2(N)⌉ + 1: the builds a bisection of N commits needs at most
    /// when nothing is skipped (BAD's test, then halving).
    pub fn build_bound(&self) -> usize {
        let n = self.range.max(1);
        (usize::BITS - (n - 1).leading_zeros()) as usize + 1
    }
}

/// One run of one trial, as far as bisect cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// It passed.
    Pass,
    /// It failed (or failed as its known bug expects), with the first line why.
    Fail(String),
    /// It says nothing about this revision: no boot, ignored, no record.
    Unclear(String),
}

/// A trial's record (from `--json`) as a [`RunResult`]; `scenario`: the
/// trial is a scenario trial (a failure before any step is a boot failure).
pub fn judge_record(record: Option<&serde_json::Value>, scenario: bool, why: &str) -> RunResult {
    let Some(r) = record else {
        return RunResult::Unclear(why.to_string());
    };
    let text = ["message", "reason"]
        .iter()
        .find_map(|k| r[*k].as_str())
        .unwrap_or_default();
    let first = gist(text);
    match r["status"].as_str().unwrap_or("missing") {
        "passed" => RunResult::Pass,
        "expected_failure" => RunResult::Fail(format!("expected failure: {first}")),
        "failed" => {
            let no_step = r["steps"].as_array().is_none_or(|s| s.is_empty());
            if scenario && no_step && r["log_dir"].is_null() {
                RunResult::Unclear(format!("machine did not boot: {first}"))
            } else {
                RunResult::Fail(first)
            }
        }
        "ignored" => RunResult::Unclear(format!("ignored: {first}")),
        other => RunResult::Unclear(format!("status {other}: {first}")),
    }
}

/// A failure message in a line: the failing step with its expected and
/// actual values, else the first line that says something.
fn gist(message: &str) -> String {
    let lines: Vec<&str> = message.lines().collect();
    if let Some(i) = lines.iter().position(|l| l.starts_with("step ")) {
        let mut s = lines[i].to_string();
        for l in lines.iter().skip(i + 1).take(2) {
            let l = l.trim();
            if let Some(v) = l.strip_prefix("expected:") {
                s += &format!(": expected {}", v.trim());
            } else if let Some(v) = l.strip_prefix("actual:") {
                s += &format!(", actual {}", v.trim());
            }
        }
        return s;
    }
    lines
        .iter()
        .find(|l| !l.trim().is_empty() && !l.starts_with('=') && !l.starts_with("file: "))
        .unwrap_or(&"")
        .to_string()
}

/// A trial's verdict over its runs: bad only if every run failed, good only
/// if every run passed; both seen is flaky, anything unclear a skip.
pub fn judge_runs(runs: &[RunResult]) -> (Verdict, String) {
    let fails = runs
        .iter()
        .filter(|r| matches!(r, RunResult::Fail(_)))
        .count();
    let passes = runs.iter().filter(|r| **r == RunResult::Pass).count();
    if let Some(RunResult::Unclear(why)) = runs.iter().find(|r| matches!(r, RunResult::Unclear(_)))
    {
        return (Verdict::Skip, why.clone());
    }
    match (passes, fails) {
        (_, 0) if passes > 0 => (Verdict::Good, format!("passed {passes}/{}", runs.len())),
        (0, _) if fails > 0 => {
            let why = runs
                .iter()
                .find_map(|r| match r {
                    RunResult::Fail(w) => Some(w.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            (
                Verdict::Bad,
                format!("failed {fails}/{}: {why}", runs.len()),
            )
        }
        _ => (
            Verdict::Skip,
            format!(
                "flaky: passed {passes}, failed {fails} of {} runs",
                runs.len()
            ),
        ),
    }
}

/// Whether more runs can change the verdict: not after both a pass and a
/// failure, nor after an unclear run.
fn settled(runs: &[RunResult]) -> bool {
    runs.iter().any(|r| matches!(r, RunResult::Unclear(_)))
        || (runs.contains(&RunResult::Pass) && runs.iter().any(|r| matches!(r, RunResult::Fail(_))))
}

/// A revision's verdict from its trials': bad if one is bad, good if all
/// are good, else skip.
pub fn combine(trials: &[(String, Verdict, String)]) -> (Verdict, String) {
    if let Some((t, _, why)) = trials.iter().find(|(_, v, _)| *v == Verdict::Bad) {
        return (Verdict::Bad, format!("{t} {why}"));
    }
    if let Some((t, _, why)) = trials.iter().find(|(_, v, _)| *v == Verdict::Skip) {
        return (Verdict::Skip, format!("{t}: {why}"));
    }
    let said: Vec<String> = trials
        .iter()
        .map(|(t, _, why)| format!("{t} {why}"))
        .collect();
    (Verdict::Good, said.join("; "))
}

/// `git -C dir ARGS`: its stdout, trimmed; an error names the command and
/// git's own message.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `REV` of `src` as a full commit id, or an error naming it.
fn resolve(src: &Path, what: &str, rev: &str) -> Result<String> {
    git(
        src,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .map_err(|_| anyhow::anyhow!("{what} {rev:?} is not a commit of {}", src.display()))
}

fn subject(dir: &Path, rev: &str) -> String {
    git(dir, &["log", "-1", "--format=%s", rev]).unwrap_or_default()
}

/// The trial names the VM suite has (`--list`, no manifest needed), with
/// whether each is a scenario trial.
fn suite_trials() -> Result<Vec<(String, bool)>> {
    let out = Command::new("cargo")
        .current_dir(repo_root())
        .args([
            "test",
            "--quiet",
            "-p",
            "iobench-tests",
            "--test",
            "vm",
            "--",
            "--list",
        ])
        .env_remove(harness::manifest::MANIFEST_ENV)
        .stdin(Stdio::null())
        .output()
        .context("listing the VM suite's trials")?;
    if !out.status.success() {
        bail!(
            "listing the VM suite's trials failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.strip_suffix(": test")?;
            let (kind, name) = l.strip_prefix('[')?.split_once("] ")?;
            Some((name.to_string(), kind == "scenario"))
        })
        .collect())
}

/// A trial to run: its name, machine, kernel flavour, and kind.
#[derive(Debug, Clone)]
struct Trial {
    name: String,
    machine: String,
    flavour: KernelFlavour,
    scenario: bool,
}

/// Checks the trial names against the suite and the machine definitions.
fn trials(names: &[String]) -> Result<Vec<Trial>> {
    if names.is_empty() {
        bail!("name the trial(s) to bisect, e.g. pseries::regress::tce_info_fields");
    }
    let known = suite_trials()?;
    let dir = repo_root().join("qemu-configs");
    names
        .iter()
        .map(|n| {
            let machine = n.split("::").next().unwrap_or_default();
            let m = Machine::find(&dir, machine).map_err(|e| {
                anyhow::anyhow!(
                    "trial {n:?}: its first part names no machine ({e}); a trial is `machine::dir::scenario`"
                )
            })?;
            let Some((_, scenario)) = known.iter().find(|(k, _)| k == n) else {
                let last = n.rsplit("::").next().unwrap_or(n);
                let like: Vec<&str> = known
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .filter(|k| k.ends_with(&format!("::{last}")))
                    .collect();
                bail!(
                    "no machine has a trial named {n:?}{}",
                    if like.is_empty() {
                        " (`cargo xtask test --list` lists them)".to_string()
                    } else {
                        format!("; did you mean {}?", like.join(", "))
                    }
                );
            };
            Ok(Trial {
                name: n.clone(),
                machine: machine.to_string(),
                flavour: m.kernel.flavour,
                scenario: *scenario,
            })
        })
        .collect()
}

/// The private clone of `src`, locked while it lives.
struct PrivateClone {
    dir: PathBuf,
    _lock: std::fs::File,
}

/// Makes (once) or reopens the private clone of `src` under the cache.
fn private_clone(src: &Path) -> Result<PrivateClone> {
    let base = cache_dir().join(format!(
        "bisect/{}",
        short(&key(&[src.to_string_lossy().as_bytes()]))
    ));
    std::fs::create_dir_all(&base)?;
    let lock = std::fs::File::create(base.join("lock"))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another bisect of {} is running (lock {})",
            src.display(),
            base.join("lock").display()
        )
    })?;
    let dir = base.join("tree");
    if dir.exists() && git(&dir, &["rev-parse", "--git-dir"]).is_err() {
        std::fs::remove_dir_all(&dir)?;
    }
    if !dir.exists() {
        let tmp = base.join("tree.new");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        let out = Command::new("git")
            .args(["clone", "--quiet", "--shared", "--no-checkout"])
            .arg(src)
            .arg(&tmp)
            .stdin(Stdio::null())
            .output()
            .context("running git clone")?;
        if !out.status.success() {
            bail!(
                "git clone --shared {}: {}",
                src.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::rename(&tmp, &dir)?;
    }
    // A bisection an earlier run left (killed) is forgotten.
    let _ = git(&dir, &["bisect", "reset", "--quiet", "HEAD"]);
    Ok(PrivateClone { dir, _lock: lock })
}

/// The bisection's run: the clone, the binary that runs the trials, logs.
struct Walk<'a> {
    plan: &'a Plan,
    trials: Vec<Trial>,
    patches: Vec<Patch>,
    clone: PrivateClone,
    exe: PathBuf,
    log_dir: PathBuf,
    steps: Vec<Step>,
}

impl Walk<'_> {
    /// Checks out, patches, builds and tests `rev`; prints and keeps its step.
    fn test(&mut self, rev: &str) -> Result<Verdict> {
        let n = self.steps.len() + 1;
        let subject = subject(&self.clone.dir, rev);
        println!("bisect: step {n}: {} {subject}", &rev[..12]);
        let step_dir = self.log_dir.join(format!("step-{n:02}-{}", &rev[..12]));
        std::fs::create_dir_all(&step_dir)?;
        let started = Instant::now();
        let built = self.build(rev, &step_dir);
        let build = started.elapsed();
        let (verdict, note, cached) = match built {
            Err(e) => {
                let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
                let text = chain.join(": ");
                std::fs::write(step_dir.join("build-error.txt"), &text)?;
                let first = text.lines().next().unwrap_or_default().to_string();
                (Verdict::Skip, format!("not built: {first}"), false)
            }
            Ok((images, cached)) => {
                let mut per_trial = Vec::new();
                for t in &self.trials {
                    let image = images
                        .iter()
                        .find(|(f, _)| *f == t.flavour)
                        .map(|(_, i)| i.clone())
                        .unwrap_or_default();
                    let mut runs = Vec::new();
                    for r in 1..=self.plan.runs {
                        let dir = step_dir.join(format!("{}-run{r}", t.name.replace("::", "-")));
                        let result = self.run_trial(t, &image, &dir)?;
                        println!("  {} run {r}: {}", t.name, describe(&result));
                        runs.push(result);
                        if settled(&runs) {
                            break;
                        }
                    }
                    let (v, why) = judge_runs(&runs);
                    per_trial.push((t.name.clone(), v, why));
                }
                let (v, why) = combine(&per_trial);
                (v, why, cached)
            }
        };
        println!(
            "  → {} (build {}{})",
            verdict.word(),
            secs(build),
            if cached { ", cached" } else { "" }
        );
        self.steps.push(Step {
            rev: rev.to_string(),
            subject,
            build,
            cached,
            verdict,
            note,
        });
        Ok(verdict)
    }

    /// `rev` checked out in the clone, patched, and each flavour built:
    /// the images and whether all came from the cache.
    fn build(&self, rev: &str, step_dir: &Path) -> Result<(Vec<(KernelFlavour, PathBuf)>, bool)> {
        let dir = &self.clone.dir;
        let stage = crate::progress::Stage::start(format!("bisect: checking out {}", &rev[..12]));
        git(dir, &["checkout", "--quiet", "--force", "--detach", rev])?;
        git(dir, &["clean", "--quiet", "--force", "-d"])?;
        stage.done();
        for p in &self.patches {
            crate::patch::apply(dir, p)?;
        }
        let mut flavours: Vec<KernelFlavour> = self.trials.iter().map(|t| t.flavour).collect();
        flavours.sort();
        flavours.dedup();
        let mut images = Vec::new();
        let mut all_cached = true;
        for f in flavours {
            let b = crate::kernel::build(&Flavour::new(f), &Source::Dir(dir.clone()), &[])
                .with_context(|| format!("building {f} at {}", &rev[..12]))?;
            all_cached &= b.cached;
            std::fs::write(
                step_dir.join(format!("kernel-{f}.txt")),
                format!("{}\n", b.image.display()),
            )?;
            images.push((f, b.image));
        }
        Ok((images, all_cached))
    }

    /// One `xtask test --exact` run of `t` on `image`, its record judged.
    fn run_trial(&self, t: &Trial, image: &Path, out: &Path) -> Result<RunResult> {
        std::fs::create_dir_all(out)?;
        let json = out.join("results.json");
        let log = out.join("xtask-test.log");
        let mut cmd = Command::new(&self.exe);
        cmd.current_dir(repo_root())
            .env("IOBENCH_OUT", out)
            .args(["test", "--machine", &t.machine, "--kernel"])
            .arg(image)
            .args(["--accel", accel_word(self.plan.accel), "--exact", "--json"])
            .arg(&json);
        for p in &self.plan.patches {
            cmd.arg("--patch").arg(p);
        }
        cmd.arg(&t.name);
        let logf = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        let status = cmd.status().context("running xtask test")?;
        let records: Vec<serde_json::Value> = match std::fs::read(&json) {
            Ok(b) => {
                serde_json::from_slice(&b).with_context(|| format!("reading {}", json.display()))?
            }
            Err(_) => {
                return Ok(RunResult::Unclear(format!(
                    "`xtask test` exited with {status} before the trial ran; see {}",
                    log.display()
                )));
            }
        };
        let record = records
            .iter()
            .find(|r| r["name"].as_str() == Some(t.name.as_str()));
        Ok(judge_record(
            record,
            t.scenario,
            &format!("no trial {} ran; see {}", t.name, log.display()),
        ))
    }
}

fn describe(r: &RunResult) -> String {
    match r {
        RunResult::Pass => "passed".into(),
        RunResult::Fail(w) => format!("failed: {w}"),
        RunResult::Unclear(w) => format!("unclear: {w}"),
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn accel_word(a: AccelFlag) -> &'static str {
    match a {
        AccelFlag::Auto => "auto",
        AccelFlag::Tcg => "tcg",
        AccelFlag::Kvm => "kvm",
    }
}

/// The commit ids in git bisect's answer: `<id> is the first bad commit`,
/// or the list after "could be any of:".
fn parse_answer(text: &str) -> Option<(Option<String>, Vec<String>)> {
    if let Some(line) = text
        .lines()
        .find(|l| l.ends_with(" is the first bad commit"))
    {
        return Some((line.split_whitespace().next().map(String::from), Vec::new()));
    }
    let (_, rest) = text.split_once("The first bad commit could be any of:")?;
    let ids = rest
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("We cannot bisect more"))
        .filter(|l| l.len() >= 40 && l.chars().take(40).all(|c| c.is_ascii_hexdigit()))
        .map(|l| l[..40].to_string())
        .collect();
    Some((None, ids))
}

/// `git bisect ARGS` in the clone: its whole output (git exits non-zero
/// when only skipped commits are left, which is an answer too).
fn bisect_cmd(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .arg("bisect")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running git bisect")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && parse_answer(&text).is_none() {
        bail!(
            "git bisect {} in {}: {}",
            args.join(" "),
            dir.display(),
            text.trim()
        );
    }
    Ok(text)
}

/// Bisects; an error when it cannot start (bad arguments, BAD not bad).
pub fn bisect(plan: &Plan) -> Result<Outcome> {
    if plan.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let src = plan
        .src
        .canonicalize()
        .with_context(|| format!("kernel tree {}", plan.src.display()))?;
    git(&src, &["rev-parse", "--git-dir"])
        .map_err(|_| anyhow::anyhow!("{} is not a git tree", src.display()))?;
    let good = resolve(&src, "GOOD", &plan.good)?;
    let bad = resolve(&src, "BAD", &plan.bad)?;
    if good == bad {
        bail!(
            "GOOD ({}) and BAD ({}) are the same commit {}",
            plan.good,
            plan.bad,
            &good[..12]
        );
    }
    if git(&src, &["merge-base", "--is-ancestor", &good, &bad]).is_err() {
        bail!(
            "GOOD {} ({}) is not an ancestor of BAD {} ({}): nothing between them to bisect",
            plan.good,
            &good[..12],
            plan.bad,
            &bad[..12]
        );
    }
    let range: usize = git(&src, &["rev-list", "--count", &format!("{good}..{bad}")])?
        .parse()
        .context("counting the commits")?;
    let patches = crate::patch::load(&plan.patches)?;
    let trials = trials(&plan.trials)?;
    let clone = private_clone(&src)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let log_dir = std::path::absolute(out_dir().join(format!(
        "bisect/{stamp}-{}-{}",
        &good[..12],
        &bad[..12]
    )))?;
    std::fs::create_dir_all(&log_dir)?;
    // A private copy of this binary runs the trials: a `cargo build`
    // elsewhere in the checkout may replace the original meanwhile.
    let exe = log_dir.join("xtask");
    let me = std::env::current_exe().context("finding this xtask binary")?;
    std::fs::copy(&me, &exe).with_context(|| format!("copying {}", me.display()))?;
    println!(
        "bisect: {} commits in {}..{} of {}; trials {}; {} run(s) each; logs {}",
        range,
        &good[..12],
        &bad[..12],
        src.display(),
        plan.trials.join(", "),
        plan.runs,
        log_dir.display()
    );
    let mut walk = Walk {
        plan,
        trials,
        patches,
        clone,
        exe: exe.clone(),
        log_dir: log_dir.clone(),
        steps: Vec::new(),
    };
    let dir = walk.clone.dir.clone();
    let result = walk_range(&dir, &good, &bad, &mut |rev| {
        let v = walk.test(rev)?;
        let note = walk
            .steps
            .last()
            .map(|s| s.note.clone())
            .unwrap_or_default();
        Ok((v, note))
    });
    let _ = git(&dir, &["bisect", "reset", "--quiet", "HEAD"]);
    let _ = std::fs::remove_file(&exe);
    let (first_bad, candidates) = result?;
    let commit = |id: &String| Commit {
        id: id.clone(),
        subject: subject(&src, id),
    };
    let outcome = Outcome {
        first_bad: first_bad.as_ref().map(commit),
        candidates: candidates.iter().map(commit).collect(),
        range,
        steps: walk.steps,
        log_dir,
    };
    std::fs::write(outcome.log_dir.join("summary.txt"), summary(&outcome))?;
    Ok(outcome)
}

/// BAD first, then git bisect's picks in the clone `dir` until it
/// answers; `test` judges a revision (verdict and why).
fn walk_range(
    dir: &Path,
    good: &str,
    bad: &str,
    test: &mut dyn FnMut(&str) -> Result<(Verdict, String)>,
) -> Result<(Option<String>, Vec<String>)> {
    match test(bad)? {
        (Verdict::Bad, _) => {}
        (v, note) => bail!(
            "the trials do not fail at BAD {} ({}: {note}); nothing to bisect",
            &bad[..12],
            v.word()
        ),
    }
    let mut text = bisect_cmd(dir, &["start", "--no-checkout", bad, good])?;
    loop {
        if let Some(answer) = parse_answer(&text) {
            // Every revision tested was bad: GOOD itself may be bad too
            // (it is taken on trust otherwise).
            if let (Some(first), _) = &answer
                && git(dir, &["rev-list", "--count", &format!("{good}..{first}")])? == "1"
            {
                match test(good)? {
                    (Verdict::Good, _) => {}
                    (v, note) => bail!(
                        "the answer would be GOOD's child {}, but GOOD {} is not good either ({}: {note})",
                        &first[..12],
                        &good[..12],
                        v.word()
                    ),
                }
            }
            return Ok(answer);
        }
        let rev = git(dir, &["rev-parse", "BISECT_HEAD"])?;
        let (v, _) = test(&rev)?;
        text = bisect_cmd(dir, &[v.word(), &rev])?;
    }
}

/// The answer and the steps, as printed.
pub fn summary(o: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "step  rev           build     verdict  note");
    for (i, st) in o.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>4}  {}  {:>8}  {:<7}  {} — {}",
            i + 1,
            &st.rev[..12],
            secs(st.build) + if st.cached { "*" } else { "" },
            st.verdict.word(),
            st.subject,
            st.note
        );
    }
    let _ = writeln!(
        s,
        "revisions built and tested: {} of {} commits (bound ⌈log2 N⌉+1 = {}; * kernel from the cache)",
        o.steps.len(),
        o.range,
        o.build_bound()
    );
    match (&o.first_bad, o.candidates.as_slice()) {
        (Some(c), _) => {
            let _ = writeln!(s, "first bad commit: {} {}", c.id, c.subject);
        }
        (None, cands) => {
            let _ = writeln!(s, "undecided: skipped commits hide it; it is one of:");
            for c in cands {
                let _ = writeln!(s, "  {} {}", c.id, c.subject);
            }
        }
    }
    let _ = writeln!(s, "logs: {}", o.log_dir.display());
    s
}

/// `cargo xtask bisect …`: prints the answer; an error when there is none.
pub fn run(plan: &Plan) -> Result<()> {
    let o = bisect(plan)?;
    print!("{}", summary(&o));
    if o.first_bad.is_none() {
        bail!(
            "cannot decide the first bad commit among {} (skipped: unbuildable, unbootable or flaky); logs {}",
            o.candidates.len(),
            o.log_dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(status: &str, msg: &str, steps: bool, log: bool) -> serde_json::Value {
        let mut v = serde_json::json!({ "name": "m::d::s", "status": status, "message": msg, "seconds": 1.0 });
        if steps {
            v["steps"] = serde_json::json!([{ "index": 1 }]);
        }
        v["log_dir"] = if log {
            serde_json::json!("/x")
        } else {
            serde_json::Value::Null
        };
        v
    }

    #[test]
    fn a_record_becomes_pass_fail_or_unclear() {
        let j = |v: &serde_json::Value, s| judge_record(Some(v), s, "");
        assert_eq!(j(&rec("passed", "", true, true), true), RunResult::Pass);
        assert_eq!(
            j(&rec("failed", "step 3 EINVAL", true, true), true),
            RunResult::Fail("step 3 EINVAL".into())
        );
        assert!(matches!(
            j(&rec("expected_failure", "known bug 0001", true, true), true),
            RunResult::Fail(_)
        ));
        // No step ran and no log: the machine did not boot.
        assert!(matches!(
            j(&rec("failed", "boot: kernel panic", false, false), true),
            RunResult::Unclear(w) if w.contains("did not boot")
        ));
        // …which is the subject of a lifecycle trial.
        assert!(matches!(
            j(&rec("failed", "boot: kernel panic", false, false), false),
            RunResult::Fail(_)
        ));
        assert!(matches!(
            j(
                &rec("ignored", "the guest lacks iommufd", false, true),
                true
            ),
            RunResult::Unclear(_)
        ));
        assert!(
            matches!(judge_record(None, true, "no report"), RunResult::Unclear(w) if w == "no report")
        );
    }

    #[test]
    fn a_failure_is_said_in_a_line() {
        let m = "===== scenario regress::tce_info_fields failed =====\nfile: /x.toml\nstep 4 (line spapr_container:21): vfio.set_iommu\n  expected: ok\n  actual:   EINVAL (22)\n    #  line\n";
        assert_eq!(
            gist(m),
            "step 4 (line spapr_container:21): vfio.set_iommu: expected ok, actual EINVAL (22)"
        );
        assert_eq!(
            gist("=====\nfile: /x\nkernel: the kernel reported WARNING\n"),
            "kernel: the kernel reported WARNING"
        );
    }

    #[test]
    fn runs_decide_bad_good_or_flaky() {
        let f = || RunResult::Fail("x".into());
        assert_eq!(judge_runs(&[f(), f(), f()]).0, Verdict::Bad);
        assert_eq!(
            judge_runs(&[RunResult::Pass, RunResult::Pass]).0,
            Verdict::Good
        );
        let (v, why) = judge_runs(&[RunResult::Pass, f()]);
        assert_eq!(v, Verdict::Skip);
        assert!(why.starts_with("flaky"), "{why}");
        assert_eq!(
            judge_runs(&[f(), RunResult::Unclear("no boot".into())]).0,
            Verdict::Skip
        );
        assert!(!settled(&[f(), f()]));
        assert!(settled(&[f(), RunResult::Pass]));
        assert!(settled(&[RunResult::Unclear(String::new())]));
    }

    #[test]
    fn one_bad_trial_makes_the_revision_bad() {
        let t = |v| ("t".to_string(), v, String::new());
        assert_eq!(
            combine(&[t(Verdict::Good), t(Verdict::Bad)]).0,
            Verdict::Bad
        );
        assert_eq!(
            combine(&[t(Verdict::Good), t(Verdict::Skip)]).0,
            Verdict::Skip
        );
        assert_eq!(
            combine(&[t(Verdict::Good), t(Verdict::Good)]).0,
            Verdict::Good
        );
    }

    #[test]
    fn git_bisects_answers_are_read() {
        let id = "b15913fca150d07fd58bb9a0a521b820c2a7a9c6";
        let (first, _) =
            parse_answer(&format!("{id} is the first bad commit\ncommit {id}\n")).unwrap();
        assert_eq!(first.as_deref(), Some(id));
        let (first, cands) = parse_answer(&format!(
            "There are only 'skip'ped commits left to test.\nThe first bad commit could be any of:\n{id}\n{}\nWe cannot bisect more!\n",
            "f953b0ad15cce5f674cf15fdc713b4f4accdc475"
        ))
        .unwrap();
        assert!(first.is_none());
        assert_eq!(cands.len(), 2);
        assert!(
            parse_answer("Bisecting: 2 revisions left to test after this (roughly 2 steps)")
                .is_none()
        );
    }

    #[test]
    fn the_build_bound_is_log2_plus_one() {
        let o = |range| Outcome {
            first_bad: None,
            candidates: vec![],
            range,
            steps: vec![],
            log_dir: PathBuf::new(),
        };
        assert_eq!(o(1).build_bound(), 1);
        assert_eq!(o(2).build_bound(), 2);
        assert_eq!(o(6).build_bound(), 4);
        assert_eq!(o(8).build_bound(), 4);
        assert_eq!(o(9).build_bound(), 5);
    }

    /// Runs git in `dir`; panics on failure; its trimmed output.
    fn git_in(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A linear history of `n` commits after a root, in a fresh repository.
    fn history(dir: &Path, n: usize) -> Vec<String> {
        let g = |args: &[&str]| git_in(dir, args);
        std::fs::create_dir_all(dir).unwrap();
        g(&["init", "-q"]);
        (0..=n)
            .map(|i| {
                g(&["commit", "-q", "--allow-empty", "-m", &format!("c{i}")]);
                g(&["rev-parse", "HEAD"])
            })
            .collect()
    }

    /// git bisect in a clone, driven by a tester: the first bad commit in
    /// ⌈log2 N⌉+1 tests, skips around it leave candidates, BAD must be bad.
    #[test]
    fn the_walk_finds_the_first_bad_commit_or_the_candidates() {
        let tmp = tempfile::tempdir().unwrap();
        let c = history(&tmp.path().join("r"), 12);
        let clone = tmp.path().join("clone");
        let out = Command::new("git")
            .args(["clone", "-q", "--shared", "--no-checkout"])
            .arg(tmp.path().join("r"))
            .arg(&clone)
            .output()
            .unwrap();
        assert!(out.status.success());
        let index = |rev: &str| c.iter().position(|x| x == rev).unwrap();
        for first_bad in 1..=12 {
            let mut tested = 0;
            let (found, _) = walk_range(&clone, &c[0], &c[12], &mut |rev| {
                tested += 1;
                let v = if index(rev) >= first_bad {
                    Verdict::Bad
                } else {
                    Verdict::Good
                };
                Ok((v, String::new()))
            })
            .unwrap();
            let _ = git(&clone, &["bisect", "reset", "--quiet", "HEAD"]);
            assert_eq!(
                found.as_deref(),
                Some(c[first_bad].as_str()),
                "first bad c{first_bad}"
            );
            // ⌈log2 12⌉+1, and GOOD when the answer is its child.
            let bound = if first_bad == 1 { 6 } else { 5 };
            assert!(tested <= bound, "{tested} tests for 12 commits");
        }
        // c5 is the first bad one, but c4 and c5 cannot be judged.
        let (found, cands) = walk_range(&clone, &c[0], &c[12], &mut |rev| {
            Ok(match index(rev) {
                4 | 5 => (Verdict::Skip, "flaky".into()),
                i if i >= 5 => (Verdict::Bad, String::new()),
                _ => (Verdict::Good, String::new()),
            })
        })
        .unwrap();
        let _ = git(&clone, &["bisect", "reset", "--quiet", "HEAD"]);
        assert!(found.is_none());
        let mut cands: Vec<usize> = cands.iter().map(|r| index(r)).collect();
        cands.sort();
        assert_eq!(cands, vec![4, 5, 6]);
        // All bad, GOOD too: said, not answered with GOOD's child.
        let e = walk_range(&clone, &c[0], &c[12], &mut |_| {
            Ok((Verdict::Bad, "failed".into()))
        })
        .unwrap_err()
        .to_string();
        let _ = git(&clone, &["bisect", "reset", "--quiet", "HEAD"]);
        assert!(
            e.contains("GOOD") && e.contains("is not good either"),
            "{e}"
        );
        let e = walk_range(&clone, &c[0], &c[12], &mut |_| {
            Ok((Verdict::Good, "passed".into()))
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("do not fail at BAD") && e.contains("passed"),
            "{e}"
        );
    }

    /// Errors name the cause before anything is built: not a git tree, an
    /// unknown revision, GOOD == BAD, GOOD not an ancestor of BAD.
    #[test]
    fn bad_arguments_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = |src: &Path, good: &str, bad: &str| Plan {
            src: src.to_path_buf(),
            good: good.into(),
            bad: bad.into(),
            trials: vec!["pseries::regress::tce_info_fields".into()],
            patches: vec![],
            runs: 1,
            accel: AccelFlag::Tcg,
        };
        let err = |p: Plan| bisect(&p).unwrap_err().to_string();
        let e = err(plan(tmp.path(), "a", "b"));
        assert!(e.contains("is not a git tree"), "{e}");
        let repo = tmp.path().join("r");
        std::fs::create_dir_all(&repo).unwrap();
        let g = |args: &[&str]| {
            git_in(&repo, args);
        };
        g(&["init", "-q"]);
        g(&["commit", "-q", "--allow-empty", "-m", "one"]);
        g(&["branch", "one"]);
        g(&["commit", "-q", "--allow-empty", "-m", "two"]);
        g(&["branch", "two"]);
        g(&["checkout", "-q", "--orphan", "other"]);
        g(&["commit", "-q", "--allow-empty", "-m", "unrelated"]);
        let e = err(plan(&repo, "one", "nosuchrev"));
        assert!(e.contains("BAD \"nosuchrev\" is not a commit of"), "{e}");
        let e = err(plan(&repo, "one", "one"));
        assert!(e.contains("are the same commit"), "{e}");
        let e = err(plan(&repo, "two", "one"));
        assert!(e.contains("is not an ancestor of BAD"), "{e}");
        let e = err(plan(&repo, "other", "two"));
        assert!(e.contains("is not an ancestor of BAD"), "{e}");
    }
}
