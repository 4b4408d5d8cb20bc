//! Patched kernel trees (`--patch FILE`, repeatable): the patches are
//! applied, in order, to a private copy of the source tree, never to the
//! tree itself (Debian's unpacked tree in the cache, or the user's `--src`).
//!
//! The copy is made once per source tree, with hard links (`cp -al`), and
//! kept: each build re-syncs it.  Files the previous patch set touched are
//! restored as fresh copies (new mtime, so make rebuilds what depends on
//! them); files the new set touches are un-linked (copied) before `patch`
//! writes them, so the shared inodes of the source tree never change.  One
//! build directory per flavour goes with the copy, so going from one patch
//! set to the next recompiles only what the patches reach.  The patches'
//! names and bytes are part of the kernel's cache key.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cache::{cache_dir, key, short};

/// One patch file, read.
#[derive(Debug, Clone)]
pub struct Patch {
    /// As given on the command line.
    pub path: PathBuf,
    /// Its file name, e.g. `0001-vfio-spapr_tce-….patch`.
    pub name: String,
    /// Its bytes (part of the cache key).
    pub bytes: Vec<u8>,
    /// Tree-relative paths it touches (`-p1`).
    pub touched: Vec<String>,
}

/// The fixes iobench proposes (`kernel-patches/fixes/*.patch`), in order.
pub fn fixes(repo: &Path) -> Result<Vec<PathBuf>> {
    let dir = repo.join(harness::known_bug::FIXES_DIR);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    out.retain(|p| p.extension().is_some_and(|x| x == "patch"));
    out.sort();
    Ok(out)
}

/// `kernel-patches/fixes/applies.toml`: one entry of it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Applies {
    linux: Vec<String>,
    #[allow(dead_code)]
    why: String,
}

/// The fixes (by id) that apply to some kernel versions only, and those
/// versions (`kernel-patches/fixes/applies.toml`; errors name the line).
pub fn version_limits(
    repo: &Path,
) -> Result<std::collections::BTreeMap<String, Vec<harness::linux::Linux>>> {
    let path = repo
        .join(harness::known_bug::FIXES_DIR)
        .join("applies.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Default::default());
    };
    let raw: std::collections::BTreeMap<String, Applies> = toml::from_str(&text).map_err(|e| {
        let (line, msg) = harness::toml_error::locate(&text, &e);
        anyhow::anyhow!("{}:{line}: {msg}", path.display())
    })?;
    raw.into_iter()
        .map(|(id, a)| {
            let versions = a
                .linux
                .iter()
                .map(|v| {
                    harness::linux::Linux::parse(v).with_context(|| {
                        format!(
                            "{}: fix {id}: {v:?} is not a kernel version iobench builds",
                            path.display()
                        )
                    })
                })
                .collect::<Result<_>>()?;
            Ok((id, versions))
        })
        .collect()
}

/// Whether `tree` already has the change of `patch` (it reverse-applies
/// cleanly), e.g. a fix that went upstream in the tree's release.
pub fn already_in(tree: &Path, patch: &Path) -> Result<bool> {
    let status = std::process::Command::new("patch")
        .args(["-p1", "-R", "--dry-run", "--batch", "--force", "-s", "-d"])
        .arg(tree)
        .arg("-i")
        .arg(std::path::absolute(patch)?)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running patch (is it installed? `cargo xtask setup`)")?;
    Ok(status.success())
}

/// Reads the patches named on the command line.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Patch>> {
    paths
        .iter()
        .map(|p| {
            let bytes =
                std::fs::read(p).with_context(|| format!("reading patch {}", p.display()))?;
            let touched = touched_files(&String::from_utf8_lossy(&bytes));
            if touched.is_empty() {
                bail!(
                    "{}: no file to patch in it (not a unified diff with a/ and b/ paths?)",
                    p.display()
                );
            }
            Ok(Patch {
                path: p.clone(),
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes,
                touched,
            })
        })
        .collect()
}

/// The tree paths a unified diff touches (`--- a/x` / `+++ b/x`, either
/// side `/dev/null` for new and deleted files), first component stripped.
pub fn touched_files(diff: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in diff.lines() {
        let Some(rest) = line
            .strip_prefix("--- ")
            .or_else(|| line.strip_prefix("+++ "))
        else {
            continue;
        };
        let path = rest.split('\t').next().unwrap_or_default().trim_end();
        if path == "/dev/null" {
            continue;
        }
        let Some((_, rel)) = path.split_once('/') else {
            continue;
        };
        if !rel.is_empty() && !rel.split('/').any(|c| c == "..") && !out.iter().any(|p| p == rel) {
            out.push(rel.to_string());
        }
    }
    out
}

/// What the patches add to a source tree's identity (names and bytes).
pub fn identity(patches: &[Patch]) -> String {
    patches
        .iter()
        .map(|p| format!("\npatch {} {}", p.name, short(&key(&[&p.bytes]))))
        .collect()
}

/// A patched copy of a source tree, locked for this process while it lives.
pub struct WorkTree {
    /// The copy, patched.
    pub dir: PathBuf,
    _lock: File,
}

/// Where the copy of `base` lives under the cache root `cache`.
pub fn work_dir(cache: &Path, base: &Path) -> PathBuf {
    cache.join(format!(
        "src/work-{}",
        short(&key(&[base.to_string_lossy().as_bytes()]))
    ))
}

/// The file in the copy that lists what the last patch set touched.
const STATE: &str = ".iobench-patched";

/// Makes (or re-syncs) the copy of `base` in the cache and applies `patches` to it.
pub fn work_tree(base: &Path, patches: &[Patch]) -> Result<WorkTree> {
    work_tree_in(&cache_dir(), base, patches)
}

fn work_tree_in(cache: &Path, base: &Path, patches: &[Patch]) -> Result<WorkTree> {
    let dir = work_dir(cache, base);
    std::fs::create_dir_all(dir.parent().unwrap_or(&dir))?;
    let lock = File::create(dir.with_extension("lock"))?;
    lock.lock()
        .with_context(|| format!("locking {}", dir.display()))?;
    if !dir.join("Makefile").is_file() {
        link_copy(base, &dir)?;
    }
    let state = dir.join(STATE);
    let before: Vec<String> = std::fs::read_to_string(&state)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    // Back to the source tree's content for everything the last set touched.
    for rel in &before {
        restore(base, &dir, rel)?;
    }
    std::fs::write(&state, "")?;
    let mut touched: Vec<String> = Vec::new();
    for p in patches {
        for rel in &p.touched {
            if !touched.contains(rel) {
                unlink(&dir, rel)?;
                touched.push(rel.clone());
            }
        }
        // Record first, so a failed apply is undone by the next sync too.
        std::fs::write(&state, touched.join("\n"))?;
        if let Err(e) = apply(&dir, p) {
            for rel in &touched {
                restore(base, &dir, rel)?;
            }
            std::fs::write(&state, "")?;
            return Err(e);
        }
    }
    Ok(WorkTree { dir, _lock: lock })
}

/// `cp -al base dir` without `.git`, through a temporary name.
fn link_copy(base: &Path, dir: &Path) -> Result<()> {
    println!(
        "kernel: making a private copy of {} for patching (hard links, once)",
        base.display()
    );
    let tmp = dir.with_extension("new");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    for e in std::fs::read_dir(base)? {
        let e = e?;
        if e.file_name() == ".git" {
            continue;
        }
        let status = std::process::Command::new("cp")
            .arg("-al")
            .arg(e.path())
            .arg(&tmp)
            .status()
            .context("running cp")?;
        if !status.success() {
            bail!(
                "cp -al {} {} failed ({status})",
                e.path().display(),
                tmp.display()
            );
        }
    }
    std::fs::rename(&tmp, dir)?;
    Ok(())
}

/// Puts the source tree's `rel` back into the copy as a fresh file (or
/// removes it if the source tree has none): a new mtime, so make sees it.
fn restore(base: &Path, dir: &Path, rel: &str) -> Result<()> {
    let target = dir.join(rel);
    let _ = std::fs::remove_file(&target);
    let src = base.join(rel);
    if src.is_file() {
        std::fs::copy(&src, &target).with_context(|| format!("restoring {}", target.display()))?;
    }
    Ok(())
}

/// Gives `rel` an inode of its own, so patching it leaves the source tree alone.
fn unlink(dir: &Path, rel: &str) -> Result<()> {
    let target = dir.join(rel);
    if !target.is_file() {
        return Ok(());
    }
    let tmp = target.with_extension("iobench-unlink");
    std::fs::copy(&target, &tmp)?;
    std::fs::rename(&tmp, &target)?;
    Ok(())
}

/// Runs `patch -p1`; on failure says which file and hunk did not apply.
pub fn apply(dir: &Path, p: &Patch) -> Result<()> {
    let out = std::process::Command::new("patch")
        .args([
            "-p1",
            "--batch",
            "--forward",
            "--no-backup-if-mismatch",
            "-r",
            "-",
            "-d",
        ])
        .arg(dir)
        .arg("-i")
        .arg(std::path::absolute(&p.path)?)
        .output()
        .context("running patch (is it installed? `cargo xtask setup`)")?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    bail!("{}", does_not_apply(&p.path, &text))
}

/// `patch`'s output turned into which hunks of which files failed.
fn does_not_apply(patch: &Path, output: &str) -> String {
    let mut file = String::new();
    let mut failures = Vec::new();
    for line in output.lines() {
        if let Some(f) = line.strip_prefix("patching file ") {
            file = f.trim_matches(['\'', '"']).to_string();
        } else if let Some(rest) = line.strip_prefix("Hunk #") {
            if let Some((n, at)) = rest.split_once(" FAILED at ") {
                failures.push(format!(
                    "hunk #{n} of {file} (at line {})",
                    at.trim_end_matches('.')
                        .split_whitespace()
                        .next()
                        .unwrap_or("?")
                ));
            }
        } else if line.contains("can't find file to patch") || line.contains("No file to patch") {
            failures.push("a file it patches is not in the tree".into());
        } else if line.contains("Reversed (or previously applied) patch detected") {
            failures.push(format!(
                "{file} already has this change (reversed or applied before)"
            ));
        }
    }
    let detail = output
        .lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    if failures.is_empty() {
        format!("patch {} does not apply:\n{detail}", patch.display())
    } else {
        format!(
            "patch {} does not apply: {}\n{detail}",
            patch.display(),
            failures.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_shipped_version_limits_parse() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let limits = version_limits(&repo).unwrap();
        assert_eq!(limits["0006"], [harness::linux::Linux::V7_2]);
        for id in limits.keys() {
            assert!(
                fixes(&repo).unwrap().iter().any(|f| f
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{id}-"))),
                "applies.toml names fix {id}, which does not exist"
            );
        }
    }
    use super::*;

    const DIFF: &str = "From abc\nSubject: x\n---\n a/b | 2 +-\n\ndiff --git a/drivers/x.c b/drivers/x.c\nindex 1..2 100644\n--- a/drivers/x.c\n+++ b/drivers/x.c\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/new.h b/new.h\nnew file mode 100644\n--- /dev/null\n+++ b/new.h\n@@ -0,0 +1 @@\n+c\n";

    #[test]
    fn touched_files_come_from_the_diff_headers() {
        assert_eq!(touched_files(DIFF), vec!["drivers/x.c", "new.h"]);
        assert!(touched_files("--- a/../etc/passwd\n").is_empty());
    }

    #[test]
    fn a_failed_hunk_is_named() {
        let out = "patching file arch/powerpc/include/asm/iommu.h\nHunk #2 FAILED at 305.\n1 out of 2 hunks FAILED\n";
        let m = does_not_apply(Path::new("fixes/0001-x.patch"), out);
        assert!(
            m.starts_with("patch fixes/0001-x.patch does not apply: hunk #2 of arch/powerpc/include/asm/iommu.h (at line 305)"),
            "{m}"
        );
    }

    /// A real tree: patches apply to the copy only, a new set undoes the
    /// old one, and a patch that does not apply leaves the copy clean.
    #[test]
    fn the_copy_follows_the_patch_set_and_the_source_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let base = tmp.path().join("linux");
        std::fs::create_dir_all(base.join("drivers")).unwrap();
        std::fs::write(base.join("Makefile"), "all:\n").unwrap();
        std::fs::write(base.join("drivers/x.c"), "a\n").unwrap();
        let patch = tmp.path().join("0001-x.patch");
        std::fs::write(&patch, DIFF).unwrap();
        let bad = tmp.path().join("0002-bad.patch");
        std::fs::write(&bad, DIFF.replace("-a\n+b", "-zz\n+b")).unwrap();

        let w = work_tree_in(&cache, &base, &load(std::slice::from_ref(&patch)).unwrap()).unwrap();
        assert_eq!(
            std::fs::read_to_string(w.dir.join("drivers/x.c")).unwrap(),
            "b\n"
        );
        assert_eq!(std::fs::read_to_string(w.dir.join("new.h")).unwrap(), "c\n");
        assert_eq!(
            std::fs::read_to_string(base.join("drivers/x.c")).unwrap(),
            "a\n"
        );
        assert!(!base.join("new.h").exists());
        let dir = w.dir.clone();
        drop(w);

        let w = work_tree_in(&cache, &base, &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("drivers/x.c")).unwrap(),
            "a\n"
        );
        assert!(!dir.join("new.h").exists());
        drop(w);

        let e = work_tree_in(&cache, &base, &load(std::slice::from_ref(&bad)).unwrap())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("0002-bad.patch does not apply: hunk #1 of drivers/x.c"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("drivers/x.c")).unwrap(),
            "a\n"
        );
        assert!(!dir.join("new.h").exists());
        assert_eq!(
            std::fs::read_to_string(base.join("drivers/x.c")).unwrap(),
            "a\n"
        );
    }
}
