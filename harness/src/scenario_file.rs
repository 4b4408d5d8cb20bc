//! Scenario files: TOML under `scenarios/`, checked against the operation
//! catalogue before anything boots.
//!
//! ```toml
//! description = "A map outside every DMA window fails with ENXIO"
//! machines = ["pseries", "pseries-64k"]   # machine definitions it runs on
//! requires = ["vfio-spapr-tce-v2"]        # guest features (see FEATURES)
//! # fresh_vm = true                       # boot a machine just for this scenario
//! # disabled = "why"                      # run only when asked (--include-ignored)
//! # known_bug = { id = "0001", reason = "…" }  # released kernels get it wrong
//! # expect_kernel_warning = "lkdtm_WARNING"     # the kernel warns, and says this
//! # min_linux = "7.2"                     # older kernels lack what it uses
//! # reply_deadline = 20                   # seconds a step may take before the
//! #                                       # run counts as hung (default: the machine's)
//!
//! [[step]]
//! op = "vfio.container_open"
//! bind = "c"                              # later steps say "$c"
//!
//! [[step]]
//! op = "vfio.map_dma"
//! container = "$c"                        # every other key is an argument
//! buffer = "$buf"
//! iova = "$win.start_addr+0x10000"
//! expect = { errno = "ENXIO" }            # or "ok", "any", { value = … }
//! ```
//!
//! A step that is only `include = "../_common/spapr_container.toml"`
//! (relative to the file) stands for the `[[step]]`s of that shared fragment;
//! directories starting with `_` hold fragments, not scenarios.
//!
//! A scenario with `known_bug` states the correct behaviour; the steps
//! where kernels without the fix go wrong carry `bug = "0001"` (see
//! `harness::known_bug` for the verdicts).  `known_bug` may be an array
//! of such tables and `bug` an array of ids, for a step where either of
//! two bugs shows; `fixed_in = ["7.2.8"]` names releases that have the fix
//! upstream.
//!
//! A kernel report in the kernel log while the scenario runs (`WARNING:`,
//! `BUG:`, Oops, lockdep, KASAN, UBSAN, kmemleak, RCU stall; see
//! `harness::kernel_log`) fails it, unless the scenario declares
//! `expect_kernel_warning = "text"`: reports containing the text are
//! expected, and one of them must appear (if none does, the scenario fails).
//!
//! A scenario's name is its path under `scenarios/` without `.toml`, with
//! `::` for `/` (`windows/map_outside.toml` → `windows::map_outside`).  Every
//! error names the file and line.
//!
//! This module only reads and checks files; running one on a machine is
//! `harness::scenario`, and reporting its results `harness::report`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use iobench_proto::ops::{self, ArgKind};
use iobench_proto::values::{self, Pattern, Reference};
use iobench_proto::{Expect, Scenario, Step};
use serde::Deserialize;
use serde_json::Value;

use crate::linux::Linux;
use crate::toml_error::{line_of, line_of_first, locate};

/// A scenario file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
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

/// A checked scenario with what decides where it runs.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    /// The file it came from.
    pub path: PathBuf,
    /// One-line description.
    pub description: String,
    /// Machine definitions it applies to.
    pub machines: Vec<String>,
    /// Guest features it needs.
    pub requires: Vec<String>,
    /// Needs a machine of its own (it leaves the guest in a state others must not see).
    pub fresh_vm: bool,
    /// Why it does not run by default, if it does not.
    pub disabled: Option<String>,
    /// The kernel bugs it shows on kernels without their fixes (`known_bug`:
    /// one table, or an array of them).
    pub known_bugs: Vec<KnownBug>,
    /// The steps marked `bug = "…"` (or `["…", "…"]`): index and bug ids.
    pub bug_steps: Vec<(usize, Vec<String>)>,
    /// Text of the kernel report the scenario provokes on purpose (see
    /// `harness::kernel_log::check`): it must appear, and reports with it do not fail the run.
    pub expect_kernel_warning: Option<String>,
    /// The oldest kernel version it applies to (`min_linux = "7.2"`): on
    /// older ones its trials are ignored with the reason.
    pub min_linux: Option<Linux>,
    /// How long a step may run before the run counts as hung, if shorter
    /// than the machine's deadline (`reply_deadline = 20`, seconds): for a
    /// scenario whose known bug hangs the guest.
    pub reply_deadline: Option<std::time::Duration>,
    /// The steps, as sent to the agent.
    pub scenario: Scenario,
    /// Where each step was written: line, and the included fragment if not this file.
    pub step_origins: Vec<(Option<String>, usize)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    description: String,
    machines: Vec<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    fresh_vm: bool,
    #[serde(default)]
    disabled: Option<String>,
    #[serde(default)]
    known_bug: Option<OneOrMany>,
    #[serde(default)]
    expect_kernel_warning: Option<String>,
    #[serde(default)]
    min_linux: Option<String>,
    #[serde(default)]
    reply_deadline: Option<u64>,
    #[serde(default)]
    step: Vec<toml::Spanned<toml::Table>>,
}

/// `known_bug`: one table or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(KnownBug),
    Many(Vec<KnownBug>),
}

/// `known_bug = { id = "0001", reason = "…" }`: the bug that the fix
/// `kernel-patches/fixes/0001-*.patch` mends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownBug {
    /// Four digits, the number of the fix patch.
    pub id: String,
    /// What goes wrong, for the report.
    pub reason: String,
    /// Releases that have the fix upstream: the first of each stable series
    /// (`["6.12.120", "7.2.8"]`); newer series have it too.
    #[serde(default)]
    pub fixed_in: Vec<String>,
}

/// A file of shared steps (a step `include = "../_common/x.toml"`), e.g. a container set-up.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFragment {
    #[serde(default, rename = "description")]
    _description: String,
    step: Vec<toml::Spanned<toml::Table>>,
}

/// Steps checked so far, with the names they bind.
#[derive(Default)]
struct Steps {
    bound: BTreeSet<String>,
    steps: Vec<Step>,
    origins: Vec<(Option<String>, usize)>,
    /// Step index, line and bug ids of each step marked `bug = …`.
    bugs: Vec<(usize, usize, Vec<String>)>,
    depth: usize,
}

impl Steps {
    /// Checks the `[[step]]`s of one file (`include`: the fragment's name, if it is one).
    fn check(
        &mut self,
        text: &str,
        path: &Path,
        include: Option<&String>,
        raw: &[toml::Spanned<toml::Table>],
    ) -> Result<(), ScenarioError> {
        let invalid = |line: usize, message: String| ScenarioError::Invalid {
            path: path.to_owned(),
            line,
            message,
        };
        // Each step's text: from its `[[step]]` header to the next one.
        let headers: Vec<usize> = text.match_indices("[[step]]").map(|(i, _)| i).collect();
        for (n, spanned) in raw.iter().enumerate() {
            let (start, end) = match headers.get(n) {
                Some(&h) if headers.len() == raw.len() => {
                    (h, headers.get(n + 1).copied().unwrap_or(text.len()))
                }
                _ => (spanned.span().start, spanned.span().end),
            };
            let step_text = &text[start.min(text.len())..end.min(text.len())];
            // The line of `key` inside this step, for pointed messages.
            let at = |key: &str| {
                let found = step_text.lines().scan(0, |off, l| {
                    let here = *off;
                    *off += l.len() + 1;
                    Some((here, l))
                });
                let rel = found
                    .filter(|(_, l)| l.trim_start().starts_with(key))
                    .find(|(_, l)| l.trim_start()[key.len()..].trim_start().starts_with('='))
                    .map(|(o, _)| o);
                line_of(text, start + rel.unwrap_or(0))
            };
            let table = spanned.get_ref();
            if let Some(inc) = table.get("include") {
                let inc = inc.as_str().filter(|_| table.len() == 1).ok_or_else(|| {
                    invalid(
                        at("include"),
                        "an include step is only `include = \"path/to/fragment.toml\"`".into(),
                    )
                })?;
                self.include(path, inc, at("include"))?;
                continue;
            }
            let step =
                check_step(table, &mut self.bound).map_err(|(key, msg)| invalid(at(&key), msg))?;
            if let Some(bug) = table.get("bug") {
                let ids: Option<Vec<String>> = match bug {
                    toml::Value::String(id) => Some(vec![id.clone()]),
                    toml::Value::Array(a) if !a.is_empty() => {
                        a.iter().map(|v| v.as_str().map(String::from)).collect()
                    }
                    _ => None,
                };
                let ids = ids.ok_or_else(|| {
                    invalid(
                        at("bug"),
                        format!(
                            "bug must name known bugs like \"0001\" or [\"0001\", \"0003\"], not {bug}"
                        ),
                    )
                })?;
                self.bugs.push((self.steps.len(), at("bug"), ids));
            }
            self.origins.push((include.cloned(), line_of(text, start)));
            self.steps.push(step);
        }
        Ok(())
    }

    /// Expands a fragment in place (fragments may include fragments, a few levels deep).
    fn include(&mut self, from: &Path, inc: &str, line: usize) -> Result<(), ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            path: from.to_owned(),
            line,
            message,
        };
        self.depth += 1;
        if self.depth > 4 {
            return Err(invalid(format!(
                "include {inc:?}: fragments nest deeper than 4 (a cycle?)"
            )));
        }
        let path = from.parent().unwrap_or(Path::new(".")).join(inc);
        let text = fs::read_to_string(&path)
            .map_err(|e| invalid(format!("include {inc:?}: {}: {e}", path.display())))?;
        let frag: RawFragment = toml::from_str(&text).map_err(|e| {
            let (line, message) = locate(&text, &e);
            ScenarioError::Invalid {
                path: path.clone(),
                line,
                message,
            }
        })?;
        self.check(&text, &path, Some(&inc.to_string()), &frag.step)?;
        self.depth -= 1;
        Ok(())
    }
}

impl ScenarioFile {
    /// Parses and checks scenario text; `name` is the scenario's name.
    pub fn parse(text: &str, path: &Path, name: &str) -> Result<ScenarioFile, ScenarioError> {
        let invalid = |line: usize, message: String| ScenarioError::Invalid {
            path: path.to_owned(),
            line,
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let (line, message) = locate(text, &e);
            invalid(line, message)
        })?;
        let key_line = |key: &str| line_of_first(text, key);
        if raw.machines.is_empty() {
            return Err(invalid(
                key_line("machines"),
                "machines must name at least one machine definition".into(),
            ));
        }
        for f in &raw.requires {
            if !ops::FEATURES.iter().any(|(n, _)| n == f) {
                let known: Vec<&str> = ops::FEATURES.iter().map(|(n, _)| *n).collect();
                return Err(invalid(
                    key_line("requires"),
                    format!("unknown feature {f:?}; known: {}", known.join(", ")),
                ));
            }
        }
        let mut acc = Steps::default();
        acc.check(text, path, None, &raw.step)?;
        if acc.steps.is_empty() {
            return Err(invalid(1, "a scenario needs at least one [[step]]".into()));
        }
        let known_bugs = match raw.known_bug {
            None => Vec::new(),
            Some(OneOrMany::One(b)) => vec![b],
            Some(OneOrMany::Many(v)) => v,
        };
        for kb in &known_bugs {
            if kb.id.len() != 4 || !kb.id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    key_line("known_bug"),
                    format!(
                        "known_bug id {:?} must be the four digits of its fix, kernel-patches/fixes/NNNN-*.patch",
                        kb.id
                    ),
                ));
            }
            if let Some(v) = kb.fixed_in.iter().find(|v| !crate::release::is_release(v)) {
                return Err(invalid(
                    key_line("known_bug"),
                    format!("known_bug fixed_in {v:?} is not a kernel release like \"7.2.8\""),
                ));
            }
        }
        for (_, line, ids) in &acc.bugs {
            for id in ids {
                if known_bugs.iter().any(|kb| &kb.id == id) {
                    continue;
                }
                let declared: Vec<&str> = known_bugs.iter().map(|kb| kb.id.as_str()).collect();
                return Err(invalid(
                    *line,
                    if declared.is_empty() {
                        format!(
                            "bug = {id:?} needs known_bug = {{ id = {id:?}, reason = \"…\" }} at the top"
                        )
                    } else {
                        format!(
                            "bug = {id:?}, but the scenario's known_bug is {}",
                            declared.join(", ")
                        )
                    },
                ));
            }
        }
        if raw
            .expect_kernel_warning
            .as_ref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(invalid(
                key_line("expect_kernel_warning"),
                "expect_kernel_warning must be text the kernel's report contains, e.g. \"lkdtm_WARNING\"".into(),
            ));
        }
        if let Some(kb) = known_bugs
            .iter()
            .find(|kb| !acc.bugs.iter().any(|(_, _, ids)| ids.contains(&kb.id)))
        {
            return Err(invalid(
                key_line("known_bug"),
                format!(
                    "known bug {:?} needs at least one step marked bug = {:?}: the step where it shows",
                    kb.id, kb.id
                ),
            ));
        }
        let min_linux = raw
            .min_linux
            .as_deref()
            .map(|v| {
                Linux::parse(v).ok_or_else(|| {
                    let known: Vec<&str> = Linux::ALL.iter().map(|l| l.as_str()).collect();
                    invalid(
                        key_line("min_linux"),
                        format!(
                            "min_linux {v:?} is not a kernel version iobench builds ({})",
                            known.join(", ")
                        ),
                    )
                })
            })
            .transpose()?;
        let reply_deadline = match raw.reply_deadline {
            Some(0) => {
                return Err(invalid(
                    key_line("reply_deadline"),
                    "reply_deadline is in seconds and must be at least 1".into(),
                ));
            }
            d => d.map(std::time::Duration::from_secs),
        };
        Ok(ScenarioFile {
            path: path.to_owned(),
            description: raw.description,
            machines: raw.machines,
            requires: raw.requires,
            fresh_vm: raw.fresh_vm,
            disabled: raw.disabled,
            known_bugs,
            bug_steps: acc.bugs.into_iter().map(|(i, _, ids)| (i, ids)).collect(),
            expect_kernel_warning: raw.expect_kernel_warning,
            min_linux,
            reply_deadline,
            scenario: Scenario {
                name: name.to_string(),
                steps: acc.steps,
                keep_going: false,
            },
            step_origins: acc.origins,
        })
    }

    /// Loads one file; its name comes from its path relative to `root` (or its stem).
    pub fn load(path: &Path, root: Option<&Path>) -> Result<ScenarioFile, ScenarioError> {
        let text = fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, &name_for(path, root))
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.scenario.name
    }

    /// Whether it runs on a machine definition.
    pub fn applies_to(&self, machine: &str) -> bool {
        self.machines.iter().any(|m| m == machine)
    }

    /// The features it needs that `available` lacks.
    pub fn missing_features(&self, available: &[String]) -> Vec<String> {
        self.requires
            .iter()
            .filter(|r| !available.contains(r))
            .cloned()
            .collect()
    }

    /// Why it does not apply to `linux` (`min_linux` is newer), if it does not.
    pub fn too_old(&self, linux: Linux) -> Option<String> {
        self.min_linux
            .filter(|min| linux < *min)
            .map(|min| format!("needs Linux {min} or later (min_linux); this is {linux}"))
    }
}

/// `dir/a/b.toml` → `a::b`.
pub fn name_for(path: &Path, root: Option<&Path>) -> String {
    let rel = root
        .and_then(|r| path.strip_prefix(r).ok())
        .unwrap_or_else(|| Path::new(path.file_name().unwrap_or_default()));
    let rel = rel.with_extension("");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("::")
}

/// Loads every `*.toml` under `dir`, sorted by name; stops at the first bad file.
pub fn load_dir(dir: &Path) -> Result<Vec<ScenarioFile>, ScenarioError> {
    let mut files = Vec::new();
    collect(dir, &mut files).map_err(|source| ScenarioError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut out = files
        .iter()
        .map(|p| ScenarioFile::load(p, Some(dir)))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.scenario.name.cmp(&b.scenario.name));
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let fragment = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('_'));
        if p.is_dir() && !fragment {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
    Ok(())
}

type StepError = (String, String);

fn check_step(table: &toml::Table, bound: &mut BTreeSet<String>) -> Result<Step, StepError> {
    let err = |key: &str, msg: String| (key.to_string(), msg);
    let op_name = table
        .get("op")
        .and_then(|v| v.as_str())
        .ok_or_else(|| err("[[step]]", "step has no op = \"…\"".into()))?;
    let spec = ops::op(op_name).ok_or_else(|| err("op", unknown_op(op_name)))?;
    let mut args = std::collections::BTreeMap::new();
    for (key, value) in table {
        if matches!(key.as_str(), "op" | "expect" | "bind" | "note" | "bug") {
            continue;
        }
        let arg = spec.args.iter().find(|a| a.name == key).ok_or_else(|| {
            let names: Vec<&str> = spec.args.iter().map(|a| a.name).collect();
            err(
                key,
                format!(
                    "{op_name} has no argument {key:?}; it takes: {}",
                    names.join(", ")
                ),
            )
        })?;
        let json = serde_json::to_value(value).map_err(|e| err(key, e.to_string()))?;
        check_arg(arg.kind, &json, bound)
            .map_err(|m| err(key, format!("{op_name}: {key}: {m}")))?;
        args.insert(key.clone(), json);
    }
    if let Some(missing) = spec
        .args
        .iter()
        .find(|a| a.required && !args.contains_key(a.name))
    {
        return Err(err("op", format!("{op_name} needs {}", missing.name)));
    }
    let expect = match table.get("expect") {
        None => Expect::Ok,
        Some(v) => parse_expect(v).map_err(|m| err("expect", m))?,
    };
    if let Expect::Value(v) = &expect {
        check_refs(v, bound).map_err(|m| err("expect", format!("{op_name}: expect: {m}")))?;
    }
    let bind = match table.get("bind") {
        None => None,
        Some(toml::Value::String(name)) if is_ident(name) => Some(name.clone()),
        Some(other) => {
            return Err(err(
                "bind",
                format!("bind must be a name like \"win\", not {other}"),
            ));
        }
    };
    if let Some(b) = &bind {
        bound.insert(b.clone());
    }
    Ok(Step {
        op: op_name.to_string(),
        args,
        expect,
        bind,
    })
}

fn unknown_op(name: &str) -> String {
    let family = name.split('.').next().unwrap_or_default();
    let similar: Vec<&str> = ops::OPS
        .iter()
        .map(|o| o.name)
        .filter(|n| n.starts_with(family))
        .collect();
    if similar.is_empty() {
        let all: Vec<&str> = ops::OPS.iter().map(|o| o.name).collect();
        format!("unknown op {name:?}; ops: {}", all.join(", "))
    } else {
        format!(
            "unknown op {name:?}; did you mean one of: {}",
            similar.join(", ")
        )
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_expect(v: &toml::Value) -> Result<Expect, String> {
    let e: Expect = v.clone().try_into().map_err(|_| {
        format!(
            "expect must be \"ok\", \"any\", {{ errno = \"EINVAL\" }} or {{ value = … }}, not {v}"
        )
    })?;
    if let Expect::Errno(name) = &e
        && values::errno_code(name).is_none()
    {
        return Err(format!("unknown errno {name:?}"));
    }
    Ok(e)
}

/// Checks every `$reference` inside a value names something bound earlier.
fn check_refs(v: &Value, bound: &BTreeSet<String>) -> Result<bool, String> {
    match v {
        Value::String(s) => match Reference::parse(s) {
            None => Ok(false),
            Some(r) => {
                let r = r?;
                if bound.contains(&r.name) {
                    Ok(true)
                } else {
                    Err(format!(
                        "${} is not bound by an earlier step (bound so far: {})",
                        r.name,
                        list(bound)
                    ))
                }
            }
        },
        Value::Array(a) => {
            let mut any = false;
            for x in a {
                any |= check_refs(x, bound)?;
            }
            Ok(any)
        }
        Value::Object(m) => {
            let mut any = false;
            for x in m.values() {
                any |= check_refs(x, bound)?;
            }
            Ok(any)
        }
        _ => Ok(false),
    }
}

fn list(bound: &BTreeSet<String>) -> String {
    if bound.is_empty() {
        "none".into()
    } else {
        bound
            .iter()
            .map(|b| format!("${b}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn check_arg(kind: ArgKind, v: &Value, bound: &BTreeSet<String>) -> Result<(), String> {
    let is_ref = check_refs(v, bound)?;
    if is_ref && !matches!(v, Value::Array(_)) {
        return Ok(()); // checked again, against the real value, by the agent
    }
    match kind {
        ArgKind::Handle if !is_ref => Err(format!(
            "expected a $reference to an earlier step's handle, got {v}"
        )),
        ArgKind::Handle | ArgKind::Any => Ok(()),
        ArgKind::U64 => values::parse_u64(v).map(|_| ()),
        ArgKind::Bool => v
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| format!("expected true or false, got {v}")),
        ArgKind::Str => v
            .as_str()
            .map(|_| ())
            .ok_or_else(|| format!("expected text, got {v}")),
        ArgKind::Choice(words) => match v.as_str() {
            Some(s) if words.contains(&s) => Ok(()),
            _ => Err(format!("expected one of {}, got {v}", words.join(", "))),
        },
        ArgKind::Pattern => Pattern::parse(v.as_str().unwrap_or_default()).map(|_| ()),
        ArgKind::Device => check_device(v),
        ArgKind::Ranges => {
            let a = v
                .as_array()
                .ok_or_else(|| format!("expected [[start, last], …], got {v}"))?;
            for pair in a {
                match pair.as_array().map(Vec::as_slice) {
                    Some([s, l]) => {
                        for x in [s, l] {
                            if !matches!(x, Value::String(t) if t.starts_with('$')) {
                                values::parse_u64(x)?;
                            }
                        }
                    }
                    _ => return Err(format!("expected [start, last], got {pair}")),
                }
            }
            Ok(())
        }
    }
}

fn check_device(v: &Value) -> Result<(), String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("expected \"vvvv:dddd\" or a PCI address, got {v}"))?;
    let hex = |t: &str, n: usize| t.len() == n && t.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split(':').collect();
    let ok = match parts.as_slice() {
        [v, d] => hex(v, 4) && hex(d, 4),
        [dom, bus, devfn] => {
            hex(dom, 4)
                && hex(bus, 2)
                && devfn
                    .split_once('.')
                    .is_some_and(|(d, f)| hex(d, 2) && hex(f, 1))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is neither vendor:device (\"1234:11e8\") nor an address (\"0000:00:05.0\")"
        ))
    }
}

#[cfg(test)]
mod tests;
