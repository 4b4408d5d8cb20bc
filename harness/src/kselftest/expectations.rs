//! The reviewed list of upstream kselftest cases that do not pass
//! somewhere, `selftests/expectations.toml`, and the [`verdict`] on a case
//! with it:
//!
//! ```toml
//! [[expectation]]
//! suite = "iommufd"                           # the program
//! test = "iommufd_ioas.*.ioas_option_huge_pages"  # dotted case name; `*` matches any text
//! machine = "pseries-64k"                     # optional: only on this machine (or target)
//! linux = "7.2"                               # optional: only on 7.2.x (or "7.2.13": that release)
//! expect = "fail"                             # or "skip", or "any" (with bug)
//! bug = "0007"                                # optional: only without kernel-patches/fixes/0007-*.patch
//! reason = "why, and where it is reported"    # required
//! ```
//!
//! `bug = "NNNN"` ties an entry to one of iobench's kernel fixes: it
//! applies to kernels built without that fix only (`--fixes`, `--patch`),
//! so with the fix the case must pass, as a scenario's `known_bug` does.
//!
//! `expect = "fail"`: the case fails there; a failure is an expected
//! failure, a pass is a failure of the trial (the entry is stale: remove
//! it).  `expect = "skip"`: the case cannot mean anything there (it needs
//! hugepages, a device the machine lacks): its trial is ignored with the
//! entry's reason whatever the case did (no option of the harness leaves
//! out one full case name, so it runs anyway).  Without an entry, an
//! upstream skip is ignored with upstream's reason, an upstream expected
//! failure (`XFAIL`) is an expected failure, a pass (or `XPASS`) passes,
//! and a failure fails.  The first entry that applies decides; two entries
//! for the same case, machine and release, unknown keys and empty reasons
//! are errors, each with the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Case, Status, is_name_char};
use crate::release::is_release;
use crate::toml_error::{line_of, locate};

/// The file, relative to the repository.
pub const FILE: &str = "selftests/expectations.toml";

/// An expectations file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ExpectationsError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid expectations file.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// What an entry expects of its cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Ignore the case's outcome: it cannot run meaningfully there.
    Skip,
    /// The case fails there.
    Fail,
    /// The case may fail there, while a kernel bug with a broad effect is
    /// unfixed (`bug` is required): a failure is an expected failure, a
    /// pass a pass.  With the fix the entry does not apply, so the case
    /// must pass.
    Any,
}

/// One `[[expectation]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The program (`iommufd`, `iommufd_fail_nth`, `vfio_dma_mapping_test`).
    pub suite: String,
    /// The dotted case name, or a pattern where `*` matches any text.
    pub test: String,
    /// Only on this machine (or target), if given.
    pub machine: Option<String>,
    /// Only on this kernel series (`7.2`) or release (`7.2.13`), if given.
    pub linux: Option<String>,
    /// What it expects.
    pub expect: Expect,
    /// Only on kernels without this fix (`bug = "0007"`, the number of
    /// `kernel-patches/fixes/0007-*.patch`): with the fix the case must pass.
    pub bug: Option<String>,
    /// Why.
    pub reason: String,
    /// 1-based line of its `test` key.
    pub line: usize,
}

/// A loaded expectations file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The file it came from (in reasons, so a reader finds the entry).
    pub path: PathBuf,
    /// The entries, in file order.
    pub entries: Vec<Expectation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    expectation: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    suite: Spanned<String>,
    test: Spanned<String>,
    #[serde(default)]
    machine: Option<Spanned<String>>,
    #[serde(default)]
    linux: Option<Spanned<String>>,
    expect: Expect,
    #[serde(default)]
    bug: Option<Spanned<String>>,
    reason: Spanned<String>,
}

impl Expectations {
    /// Reads and checks an expectations file.
    pub fn load(path: &Path) -> Result<Expectations, ExpectationsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExpectationsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Expectations::from_toml(&text, path)
    }

    /// Parses and checks expectations text; `path` is used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Expectations, ExpectationsError> {
        let invalid = |line: usize, message: String| ExpectationsError::Invalid {
            path: path.to_owned(),
            line,
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let (line, message) = locate(text, &e);
            invalid(line, message)
        })?;
        let line = |s: &Spanned<String>| line_of(text, s.span().start);
        // Each value's problem, if it has one.
        let check = |key: &str, s: &Spanned<String>, ok: fn(&str) -> bool, want: &str| {
            let v = s.get_ref();
            if ok(v) {
                Ok(v.clone())
            } else {
                Err(invalid(line(s), format!("{key} = {v:?}: {want}")))
            }
        };
        let mut seen: BTreeMap<(String, String, Option<String>, Option<String>), usize> =
            BTreeMap::new();
        let mut entries = Vec::new();
        let word = |s: &str| !s.is_empty() && s.chars().all(|c| is_name_char(c) || c == '.');
        for e in raw.expectation {
            let suite = check(
                "suite",
                &e.suite,
                word,
                "want a program's name, like \"iommufd\"",
            )?;
            let test = check(
                "test",
                &e.test,
                |s| !s.is_empty() && s.chars().all(|c| is_name_char(c) || c == '.' || c == '*'),
                "want a dotted case name like \"fixture.variant.test\", `*` for any text",
            )?;
            let machine = e
                .machine
                .as_ref()
                .map(|m| check("machine", m, word, "want a machine or target name"))
                .transpose()?;
            let linux = e
                .linux
                .as_ref()
                .map(|l| {
                    check(
                        "linux",
                        l,
                        is_release,
                        "want a series like \"7.2\" or a release like \"7.2.13\"",
                    )
                })
                .transpose()?;
            let bug = e
                .bug
                .as_ref()
                .map(|b| {
                    check(
                        "bug",
                        b,
                        |s| s.len() == 4 && s.bytes().all(|c| c.is_ascii_digit()),
                        "want the four digits of a fix, kernel-patches/fixes/NNNN-*.patch",
                    )
                })
                .transpose()?;
            let reason = check(
                "reason",
                &e.reason,
                |s| !s.trim().is_empty(),
                "say why the case does not pass there",
            )?;
            let at = line(&e.test);
            if e.expect == Expect::Any && bug.is_none() {
                return Err(invalid(
                    at,
                    "expect = \"any\" needs bug = \"NNNN\": the fix with which the case must pass"
                        .into(),
                ));
            }
            let key = (suite.clone(), test.clone(), machine.clone(), linux.clone());
            if let Some(first) = seen.insert(key, at) {
                return Err(invalid(
                    at,
                    format!("suite {suite:?}, test {test:?}: already declared at line {first}"),
                ));
            }
            entries.push(Expectation {
                suite,
                test,
                machine,
                linux,
                expect: e.expect,
                bug,
                reason: reason.trim().to_string(),
                line: at,
            });
        }
        Ok(Expectations {
            path: path.to_owned(),
            entries,
        })
    }

    /// The first entry that applies to case `case` of `suite` on `machine`
    /// with a kernel built with `patches` (file names; see [`Expectation::bug`])
    /// running kernel release `linux` (`uname -r`, or only the series,
    /// `7.2`, which entries for one release then do not match; unknown:
    /// entries that name a series or release do not apply).
    pub fn find(
        &self,
        suite: &str,
        case: &str,
        machine: &str,
        linux: Option<&str>,
        patches: &[String],
    ) -> Option<&Expectation> {
        self.entries
            .iter()
            .find(|e| e.applies(suite, case, machine, linux, patches))
    }

    /// The entries of `suite` whose `test` matches none of the `listed`
    /// cases (a renamed or removed upstream test).
    pub fn stale(&self, suite: &str, listed: &[String]) -> Vec<&Expectation> {
        self.entries
            .iter()
            .filter(|e| e.suite == suite && !listed.iter().any(|n| glob_match(&e.test, n)))
            .collect()
    }
}

impl Expectation {
    /// True if this entry is about case `case` of `suite` on `machine`
    /// with kernel release `linux`, built with `patches` (file names).
    pub fn applies(
        &self,
        suite: &str,
        case: &str,
        machine: &str,
        linux: Option<&str>,
        patches: &[String],
    ) -> bool {
        self.bug
            .as_deref()
            .is_none_or(|id| !crate::known_bug::fixed(id, patches))
            && self.suite == suite
            && glob_match(&self.test, case)
            && self.machine.as_deref().is_none_or(|m| m == machine)
            && self
                .linux
                .as_deref()
                .is_none_or(|l| linux.is_some_and(|k| in_release(k, l)))
    }

    /// Its reason and where it is written.
    fn cited(&self, path: &Path) -> String {
        format!("{} [{}:{}]", self.reason, path.display(), self.line)
    }
}

/// True if kernel release `release` (`7.2.13`, `7.2.13-amd64`) is series
/// or release `linux` (`7.2`, `7.2.13`): its leading numbers are those.
fn in_release(release: &str, linux: &str) -> bool {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    linux.split('.').all(|want| numbers.next() == Some(want))
}

/// True if `name` matches `pattern`, where `*` stands for any text
/// (dots included) and every other character for itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    // The last `*` seen and where in `name` its match ends for now.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            // Let that `*` take one more character.
            star = Some((si, sj + 1));
            i = si + 1;
            j = sj + 1;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

/// How a case is to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passed (an upstream `XPASS` too).
    Pass,
    /// Ignored, with why: an upstream skip, or an `expect = "skip"` entry.
    Skipped {
        /// Upstream's reason, or the entry's with its `file:line`.
        reason: String,
    },
    /// Failed as declared (an `expect = "fail"` entry, or upstream's `XFAIL`).
    ExpectedFailure {
        /// The entry's reason with its `file:line`, or upstream's.
        reason: String,
    },
    /// Passed although an entry says it fails: a failure, so the entry gets removed.
    UnexpectedPass {
        /// The entry's reason with its `file:line`.
        reason: String,
    },
    /// Failed, and nothing says it may.
    Failed {
        /// What the case printed (with a last line saying so if the
        /// program stopped while it ran).
        output: String,
    },
}

impl Verdict {
    /// True for the verdicts that fail a trial.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Verdict::UnexpectedPass { .. } | Verdict::Failed { .. }
        )
    }
}

/// The verdict on `case` of program `suite`, run on `machine` with kernel
/// release `linux` (`uname -r`, if known), by `expectations`.
pub fn verdict(
    case: &Case,
    expectations: &Expectations,
    suite: &str,
    machine: &str,
    linux: Option<&str>,
    patches: &[String],
) -> Verdict {
    let entry = expectations.find(suite, &case.name, machine, linux, patches);
    let path = &expectations.path;
    match (entry, &case.status) {
        (Some(e), status) if e.expect == Expect::Skip => {
            let outcome = match status {
                Status::Skip { .. } => None,
                Status::Pass | Status::XPass => Some("passed"),
                Status::Fail | Status::XFail { .. } => Some("failed"),
            };
            let reason = e.cited(path);
            Verdict::Skipped {
                reason: match outcome {
                    Some(o) => format!("{reason} (it ran and {o})"),
                    None => reason,
                },
            }
        }
        (Some(e), Status::Fail | Status::XFail { .. }) => Verdict::ExpectedFailure {
            reason: e.cited(path),
        },
        (Some(e), Status::Pass | Status::XPass) if e.expect == Expect::Any => Verdict::Pass,
        (Some(e), Status::Pass | Status::XPass) => Verdict::UnexpectedPass {
            reason: format!(
                "declared to fail, but it passed; remove the entry: {}",
                e.cited(path)
            ),
        },
        (_, Status::Skip { reason }) => Verdict::Skipped {
            reason: format!("upstream skips it: {reason}"),
        },
        (None, Status::Pass | Status::XPass) => Verdict::Pass,
        (None, Status::XFail { reason }) => Verdict::ExpectedFailure {
            reason: format!("upstream expects it to fail (XFAIL): {reason}"),
        },
        (None, Status::Fail) => {
            let mut output = case.output.clone();
            if !case.finished {
                output.push_str(
                    "(no result: the program stopped while this case ran: \
                     it was killed, crashed, or the guest broke)\n",
                );
            }
            Verdict::Failed { output }
        }
    }
}
