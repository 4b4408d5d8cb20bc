//! The bisect fixture (`cargo xtask bisect --fixture`): a small git
//! history made from Debian's 6.12.95 tree, one commit of which
//! re-introduces a bug of the corpus, and a check that `xtask::bisect`
//! names that commit within ⌈log2 N⌉+1 builds.
//!
//! The history is written by code, never committed: a bare repository
//! under the cache (`bisect-fixture/<key>.git`, the key covering this
//! recipe, the Debian version and the bug's patch) whose first commit is
//! Debian's tree as it is (`git add -f` with the tree as work tree, read
//! only) and whose next commits are made in an index of its own (`git
//! apply --cached`, `git update-index`), with fixed authors and dates: the
//! same inputs give the same commit ids, and the tree is never written.
//! The planted commit is `bugs/08-tce-info/reintroduce.patch` (a v2 sPAPR
//! container refuses the group: `pseries::regress::tce_info_fields`
//! fails at `vfio.set_iommu`); the others add comments, some to files
//! the pseries kernel compiles, so each step rebuilds something.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::bisect::{Plan, bisect, summary};
use crate::cache::{cache_dir, key, repo_root, short};
use crate::flags::AccelFlag;

/// The trial that shows the planted bug.
pub const TRIAL: &str = "pseries::regress::tce_info_fields";

/// The corpus bug the planted commit re-introduces.
const BUG: &str = "bugs/08-tce-info";

/// One commit after the base: an appended line, or the bug.
enum Change {
    /// Appends `text` to `path`.
    Append(&'static str, &'static str),
    /// Applies the bug's `reintroduce.patch`.
    Bug,
}

/// The commits after Debian's tree, in order (subject, change).
const COMMITS: &[(&str, Change)] = &[
    (
        "vfio/spapr_tce: say where the window checks live",
        Change::Append(
            "drivers/vfio/vfio_iommu_spapr_tce.c",
            "/* iobench fixture: the window checks are iommu_tce_*_param_check(). */\n",
        ),
    ),
    (
        "powerpc/iommu: a note on the TCE parameter checks",
        Change::Append(
            "arch/powerpc/kernel/iommu.c",
            "/* iobench fixture: iommu_tce_put_param_check() returns 0 or -EINVAL. */\n",
        ),
    ),
    ("", Change::Bug),
    (
        "README: a line for the bisect fixture",
        Change::Append("README", "\n(iobench bisect fixture)\n"),
    ),
    (
        "powerpc/pseries/iommu: a comment at the end",
        Change::Append(
            "arch/powerpc/platforms/pseries/iommu.c",
            "/* iobench fixture: end of pseries/iommu.c. */\n",
        ),
    ),
    (
        "vfio: a comment in vfio_main.c",
        Change::Append(
            "drivers/vfio/vfio_main.c",
            "/* iobench fixture: end of vfio_main.c. */\n",
        ),
    ),
];

/// The fixture history: its repository and the commits that matter.
pub struct History {
    /// The bare repository.
    pub repo: PathBuf,
    /// Debian's tree (GOOD).
    pub good: String,
    /// The last commit (BAD).
    pub bad: String,
    /// The commit that re-introduces the bug.
    pub planted: String,
}

/// `git ARGS` on the fixture repository, with its index and fixed
/// identities; `input` goes to stdin; its output trimmed.
fn git(repo: &Path, args: &[&str], input: Option<&[u8]>, date: &str) -> Result<String> {
    git_raw(repo, args, input, date).map(|s| s.trim().to_string())
}

/// [`git`], its output as it is.
fn git_raw(repo: &Path, args: &[&str], input: Option<&[u8]>, date: &str) -> Result<String> {
    use std::io::Write as _;
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_DIR", repo)
        .env("GIT_INDEX_FILE", repo.join("fixture-index"))
        .env("GIT_AUTHOR_NAME", "iobench fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@iobench.invalid")
        .env("GIT_COMMITTER_NAME", "iobench fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@iobench.invalid")
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("running git")?;
    if let Some(bytes) = input {
        child
            .stdin
            .take()
            .context("git's stdin")?
            .write_all(bytes)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The subject of the planted commit: the patch's first line, without
/// its `Re-introduce: ` prefix.
fn bug_subject(patch: &str) -> String {
    let first = patch.lines().next().unwrap_or("re-introduce a bug");
    first
        .strip_prefix("Re-introduce: ")
        .unwrap_or(first)
        .to_string()
}

/// Makes the fixture history (once; cached by its inputs).
pub fn history() -> Result<History> {
    let debian = crate::kernel::debian_tree(harness::linux::Linux::V6_12)?;
    let patch = repo_root().join(BUG).join("reintroduce.patch");
    let patch_bytes =
        std::fs::read(&patch).with_context(|| format!("reading {}", patch.display()))?;
    let recipe: Vec<String> = COMMITS
        .iter()
        .map(|(s, c)| match c {
            Change::Append(p, t) => format!("{s}\n{p}\n{t}"),
            Change::Bug => "bug".into(),
        })
        .collect();
    let k = key(&[
        b"iobench-bisect-fixture-v1",
        debian.to_string_lossy().as_bytes(),
        &patch_bytes,
        recipe.join("\0").as_bytes(),
    ]);
    let repo = cache_dir().join(format!("bisect-fixture/{}.git", short(&k)));
    let rev = |r: &str| git(&repo, &["rev-parse", "--verify", r], None, "");
    if let (Ok(good), Ok(bad), Ok(planted)) = (rev("good"), rev("main"), rev("planted")) {
        return Ok(History {
            repo,
            good,
            bad,
            planted,
        });
    }
    let tmp = repo.with_extension(format!("new-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let stage = crate::progress::Stage::start(format!(
        "bisect fixture: committing {} (once)",
        debian.display()
    ));
    let date = |i: usize| format!("2025-06-01T12:{i:02}:00+0000");
    let g = |args: &[&str], input: Option<&[u8]>, i: usize| git(&tmp, args, input, &date(i));
    g(
        &["init", "--quiet", "--bare", "--initial-branch=main"],
        None,
        0,
    )?;
    // Debian's tree as it is (ignored files too), read only.
    let out = Command::new("git")
        .current_dir(&debian)
        .env("GIT_DIR", &tmp)
        .env("GIT_WORK_TREE", &debian)
        .env("GIT_INDEX_FILE", tmp.join("fixture-index"))
        .args(["add", "--all", "--force", "."])
        .stdin(Stdio::null())
        .output()
        .context("running git add")?;
    if !out.status.success() {
        bail!(
            "git add of {}: {}",
            debian.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let tree = g(&["write-tree"], None, 0)?;
    let mut head = g(
        &[
            "commit-tree",
            &tree,
            "-m",
            "Debian's linux-source-6.12 tree",
        ],
        None,
        0,
    )?;
    g(&["tag", "good", &head], None, 0)?;
    stage.done();
    let text = String::from_utf8_lossy(&patch_bytes).into_owned();
    let mut planted = None;
    for (i, (subject, change)) in COMMITS.iter().enumerate() {
        let i = i + 1;
        let subject = match change {
            Change::Append(path, line) => {
                let entry = g(&["ls-files", "--stage", "--", path], None, i)?;
                let mode = entry
                    .split_whitespace()
                    .next()
                    .unwrap_or("100644")
                    .to_string();
                let old = git_raw(&tmp, &["cat-file", "blob", &format!(":{path}")], None, "")
                    .with_context(|| format!("{path} is not in Debian's tree"))?;
                let new = format!("{old}{line}");
                let oid = g(&["hash-object", "-w", "--stdin"], Some(new.as_bytes()), i)?;
                g(
                    &[
                        "update-index",
                        "--cacheinfo",
                        &format!("{mode},{oid},{path}"),
                    ],
                    None,
                    i,
                )?;
                subject.to_string()
            }
            Change::Bug => {
                let p = patch.to_string_lossy();
                g(&["apply", "--cached", "-p1", &p], None, i).with_context(|| {
                    format!("{} does not apply to the fixture", patch.display())
                })?;
                bug_subject(&text)
            }
        };
        let tree = g(&["write-tree"], None, i)?;
        let message = if matches!(change, Change::Bug) {
            format!("{subject}\n\nPlanted by iobench's bisect fixture: {BUG}/reintroduce.patch.")
        } else {
            subject
        };
        head = g(
            &["commit-tree", &tree, "-p", &head, "-m", &message],
            None,
            i,
        )?;
        if matches!(change, Change::Bug) {
            g(&["tag", "planted", &head], None, i)?;
            planted = Some(head.clone());
        }
    }
    g(&["update-ref", "refs/heads/main", &head], None, 0)?;
    let _ = std::fs::remove_file(tmp.join("fixture-index"));
    if repo.exists() {
        std::fs::remove_dir_all(&repo)?;
    }
    std::fs::rename(&tmp, &repo)?;
    let good = rev("good")?;
    Ok(History {
        repo,
        good,
        bad: head,
        planted: planted.context("no planted commit")?,
    })
}

/// `cargo xtask bisect --fixture`: bisects the fixture and checks that
/// the planted commit is named within the bound.
pub fn run(runs: usize, accel: AccelFlag) -> Result<()> {
    let started = Instant::now();
    let h = history()?;
    println!(
        "bisect fixture: {} ({} commits after Debian's tree; planted {})",
        h.repo.display(),
        COMMITS.len(),
        &h.planted[..12]
    );
    let o = bisect(&Plan {
        src: h.repo.clone(),
        good: h.good.clone(),
        bad: h.bad.clone(),
        trials: vec![TRIAL.to_string()],
        patches: Vec::new(),
        runs,
        accel,
    })?;
    print!("{}", summary(&o));
    let found = o.first_bad.as_ref().map(|c| c.id.as_str());
    if found != Some(h.planted.as_str()) {
        bail!(
            "bisect named {} instead of the planted commit {}",
            found.unwrap_or("no commit"),
            h.planted
        );
    }
    if o.steps.len() > o.build_bound() {
        bail!(
            "bisect took {} builds for {} commits; at most {} were allowed",
            o.steps.len(),
            o.range,
            o.build_bound()
        );
    }
    println!(
        "bisect fixture: found the planted commit in {} builds (bound {}), {:.0} s in all",
        o.steps.len(),
        o.build_bound(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_planted_commit_is_named_for_its_bug() {
        let text =
            std::fs::read_to_string(repo_root().join(BUG).join("reintroduce.patch")).unwrap();
        assert_eq!(
            bug_subject(&text),
            "powerpc/pseries/iommu: GET_INFO without the DDW capabilities"
        );
        assert_eq!(
            COMMITS
                .iter()
                .filter(|(_, c)| matches!(c, Change::Bug))
                .count(),
            1
        );
        // The trial is one the corpus names for that bug.
        let toml = std::fs::read_to_string(repo_root().join(BUG).join("bug.toml")).unwrap();
        assert!(toml.contains(&format!("name = \"{TRIAL}\"")));
    }
}
