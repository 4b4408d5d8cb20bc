//! Upstream kselftest programs run in a guest (`tools/testing/selftests/
//! iommu/iommufd`, `iommufd_fail_nth`, `vfio/*_test`, all built on
//! `kselftest_harness.h`): their output, read back on the host, as one
//! [`Case`] per upstream test case ([`parse`]), the cases a program would
//! run ([`parse_list`], from its `-l` table), and each case's libtest
//! trial name ([`trial_name`]).  Which cases may fail or skip where, and the
//! verdict on a case, is [`expectations`].
//!
//! What follows is what Linux 7.2's `kselftest_harness.h` and
//! `kselftest.h` print (read from the source and checked against programs
//! built from them).
//!
//! # Names
//!
//! A case is a test of a fixture (`TEST_F(fixture, test)`; plain `TEST(x)`
//! belongs to the fixture `global`) for each of the fixture's variants
//! (`FIXTURE_VARIANT_ADD`): `fixture.variant.test`, or `fixture.test` for a
//! fixture without variants (`iommufd_ioas.mock_domain.area`,
//! `iommufd.simple_close`, `global.x`).  Every part is a C identifier.
//!
//! # Listing: `-l`
//!
//! `-l` prints a table to **stderr** (nothing on stdout, no TAP) and exits
//! 4 (`KSFT_SKIP`); other options are ignored.  Each row is
//! `"%-20s %-25s %s\n"` (fixture, variant, test: a name longer than its
//! column pushes the rest of the row right).  A header comes first, a line
//! of 80 `-` between fixtures; each fixture's variants and tests are listed
//! side by side, row by row, its name on the first row only: the table
//! holds neither the cross product nor the dotted names ([`parse_list`]
//! makes them).  `global` comes first, listed even without tests:
//!
//! ```text
//! # FIXTURE            VARIANT                   TEST
//! global
//! --------------------------------------------------------------------------------
//! iommufd_ioas         no_domain                 ioas_auto_destroy
//!                      mock_domain               ioas_destroy
//!                                                alloc_hwpt_nested
//! --------------------------------------------------------------------------------
//! iommufd_dirty_tracking domain_dirty8k            enforce_dirty
//!                      domain_dirty16k           set_dirty_tracking
//! ```
//!
//! `-l` is handled inside `test_harness_run`, after the program's
//! constructors and `main`'s own set-up have run: a VFIO test wants its
//! device (`segment:bus:device.function` as its last arguments, or
//! `VFIO_SELFTESTS_BDF`) even to list, and without one prints "Unable to
//! determine which device(s) to use, skipping test." and exits 4;
//! `vfio_pci_sriov_uapi_test` creates its VF first (or exits with
//! `1..0 # SKIP …`); `iommufd_fail_nth`'s constructor writes the fault
//! injection knobs under `/sys/kernel/debug/` even for `-l`.
//!
//! # Selecting: `-r`, `-t`/`-T`, `-v`/`-V`, `-f`/`-F`
//!
//! Options (getopt `"dhlF:f:V:v:t:T:r:"`, each may repeat) are looked at in
//! command-line order for each case, and the first that matches decides:
//! `-f NAME`, `-v NAME`, `-t NAME` include the case if its fixture,
//! variant or test name is exactly NAME; `-F`, `-V`, `-T` exclude it;
//! `-r fixture.variant.test` (or `-r fixture.test`) includes exactly that
//! case (only the parts and the length are compared, not the dots).  If no
//! option matched, the case runs when no including option (`-f -v -t -r`)
//! was given.  So `-T foo -v bla` runs variant `bla` without test `foo`,
//! and one case alone is `-r iommufd_ioas.mock_domain.area`.  No option
//! excludes one full case name.  The cases run in declaration order, not
//! in the options' order; the plan counts the selected cases and `ok`
//! numbers them from 1.  `-d` enables `ksft_print_dbg_msg`, `-h` prints
//! the usage and exits 4, an unknown option prints it and exits 1.
//!
//! # A run
//!
//! TAP lines go to stdout (line-buffered), while `TH_LOG`, failed
//! `ASSERT_*`/`EXPECT_*`, `SKIP` and the harness's own diagnostics go to
//! stderr: run the program with both into one pipe (`2>&1`), or a case's
//! log is not between its lines.
//!
//! ```text
//! TAP version 13                                    (not if KSFT_TAP_LEVEL is set)
//! 1..6
//! # Starting 6 tests from 2 test cases.             (a "test case": fixture and variant)
//! #  RUN           fx.one.pass ...
//! #            OK  fx.one.pass
//! ok 1 fx.one.pass
//! #  RUN           fx.one.bad ...
//! # t.c:16:bad:Expected 1 (1) == self->x (2)        (file:line:test:)
//! # bad: Test terminated by assertion               (or: Test failed, Test terminated
//! #          FAIL  fx.one.bad                        unexpectedly by signal 11, Test
//! not ok 2 fx.one.bad                                terminated by timeout)
//! #  RUN           fx.one.skipped ...
//! #      SKIP      needs hugepages
//! #            OK  fx.one.skipped
//! ok 3 fx.one.skipped # SKIP needs hugepages
//! …                                                 (RUN, OK and FAIL lines of 4 to 6 left out)
//! ok 4 fx.two.known # XFAIL unknown                 (XFAIL_ADD: failed as declared)
//! ok 5 fx.two.fixed # XPASS unknown                 (XFAIL_ADD: passed nonetheless)
//! not ok 6 fx.two.half #  half skipped              (failed after SKIP gave a reason)
//! # FAILED: 4 / 6 tests passed.                     (skip, xfail, xpass count as passed)
//! # 1 skipped test(s) detected. Consider enabling relevant config options to improve coverage.
//! # Totals: pass:1 fail:2 xfail:1 xpass:1 skip:1 error:0
//! ```
//!
//! Each case runs in a forked child in a process group of its own, killed
//! (`SIGKILL` to the group) after its timeout (30 s, or
//! `TEST_F_TIMEOUT`): a case that crashes or times out is an ordinary
//! `not ok` and the run goes on.  Only when the harness process itself
//! dies (guest panic, OOM killer, a runner's timeout; the running case's
//! group survives a kill of the harness alone) does the output stop after
//! a `#  RUN` line; [`parse`] makes that case a failure with
//! [`Case::finished`] false, and [`Run::not_run`] names the listed cases
//! that never started.  The harness prints no nested results: only the
//! upstream runner (`run_kselftest.sh`) nests a program's output, each
//! line behind `# `, under its own `ok 1 selftests: iommu: iommufd`;
//! [`parse`] takes that form too.
//!
//! Surprises: the `ok` line of an expected failure says `ok`; a failure
//! can carry a reason behind `#  ` (two spaces, no directive); a reason
//! ending in a newline (`SKIP(return, "…\n")`, as in the VFIO tests)
//! leaves an empty line after the `SKIP` and `ok` lines; a case's output
//! without a final newline is glued to the harness's next line
//! (`partial#            OK  name`), so results are read from the `ok`
//! lines, which always start a line; `ksft_exit_skip` inside a case prints
//! `1..0 # SKIP reason` in the middle of the run (the case then ends
//! `ok N name # SKIP unknown`), which is the case's output, not a plan.
//! Outside the harness, `kselftest.h` prints `Bail out! reason`
//! (`ksft_exit_fail_msg`) and, before any plan, `1..0 # SKIP reason`
//! (`ksft_exit_skip`: the whole program skipped).

pub mod expectations;

/// How an upstream test case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `ok N name`.
    Pass,
    /// `not ok N name`, or no result at all (see [`Case::finished`]).
    Fail,
    /// `ok N name # SKIP reason`.
    Skip {
        /// Upstream's reason (`unknown` if it gave none).
        reason: String,
    },
    /// `ok N name # XFAIL reason`: failed, and upstream says it does (`XFAIL_ADD`).
    XFail {
        /// Upstream's reason (`unknown` if it gave none).
        reason: String,
    },
    /// `ok N name # XPASS reason`: passed although upstream says it fails.
    XPass,
}

/// One upstream test case of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The dotted name, as the `ok` line prints it: `fixture.variant.test`
    /// or `fixture.test` (for a result without a name, its number).
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// The lines printed between its `#  RUN` line and its result, each
    /// with its newline.
    pub output: String,
    /// False if the output stopped while it ran (the program or the guest
    /// died): then its status is [`Status::Fail`].
    pub finished: bool,
}

/// The counts of `# Totals: pass:… fail:… xfail:… xpass:… skip:… error:…`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Passed.
    pub pass: u32,
    /// Failed.
    pub fail: u32,
    /// Failed as upstream declared.
    pub xfail: u32,
    /// Passed although upstream declared a failure.
    pub xpass: u32,
    /// Skipped.
    pub skip: u32,
    /// Errors (`kselftest.h`'s `not ok N # error …`; the harness makes none).
    pub error: u32,
}

/// A program's run, as far as its output goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// The cases in the order they ran.
    pub cases: Vec<Case>,
    /// The plan (`1..N`), if printed.
    pub plan: Option<usize>,
    /// Why the whole program skipped (`1..0 # SKIP reason`).
    pub skipped_all: Option<String>,
    /// The reason after `Bail out!`, if the program gave up.
    pub bailed_out: Option<String>,
    /// The closing counts, if the program got that far.
    pub totals: Option<Totals>,
}

impl Run {
    /// The case named `name`.
    pub fn case(&self, name: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.name == name)
    }

    /// The case that was running when the output stopped.
    pub fn interrupted(&self) -> Option<&Case> {
        self.cases.iter().find(|c| !c.finished)
    }

    /// The `listed` names (from [`parse_list`]) that have no case in this
    /// run: not selected, or never reached because the program stopped.
    pub fn not_run<'a>(&self, listed: &'a [String]) -> Vec<&'a str> {
        listed
            .iter()
            .filter(|n| self.case(n).is_none())
            .map(String::as_str)
            .collect()
    }
}

/// The cases a program's `-l` table lists, as dotted names in the order
/// they run: each fixture's variants × its tests (`fixture.variant.test`),
/// or its tests alone (`fixture.test`).  Lines before the header and lines
/// that are not table rows (what the program printed itself) are skipped;
/// no header, no names (a program that skipped before listing: see its
/// [`parse`]d `skipped_all`).
pub fn parse_list(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let Some(start) = text.lines().position(is_list_header) else {
        return names;
    };
    let mut fixture: Option<(&str, Vec<&str>, Vec<&str>)> = None;
    let mut flush = |fixture: &mut Option<(&str, Vec<&str>, Vec<&str>)>| {
        if let Some((f, variants, tests)) = fixture.take() {
            if variants.is_empty() {
                names.extend(tests.iter().map(|t| format!("{f}.{t}")));
            }
            for v in &variants {
                names.extend(tests.iter().map(|t| format!("{f}.{v}.{t}")));
            }
        }
    };
    for line in text.lines().skip(start + 1) {
        if !line.is_empty() && line.bytes().all(|b| b == b'-') {
            flush(&mut fixture);
            continue;
        }
        let Some((f, v, t)) = list_row(line) else {
            continue;
        };
        if !f.is_empty() {
            flush(&mut fixture);
            fixture = Some((f, Vec::new(), Vec::new()));
        }
        if let Some((_, variants, tests)) = &mut fixture {
            variants.extend((!v.is_empty()).then_some(v));
            tests.extend((!t.is_empty()).then_some(t));
        }
    }
    flush(&mut fixture);
    names
}

/// `# FIXTURE            VARIANT                   TEST`
fn is_list_header(line: &str) -> bool {
    line.split_whitespace()
        .eq(["#", "FIXTURE", "VARIANT", "TEST"])
}

/// A row of the `-l` table: fixture, variant and test, each possibly empty;
/// `None` if the line is not one.
fn list_row(line: &str) -> Option<(&str, &str, &str)> {
    /// A `%-{width}s ` field at the start of `s` and what follows it.
    fn field(s: &str, width: usize) -> Option<(&str, &str)> {
        let len = s.find(' ').unwrap_or(s.len());
        let skip = (len.max(width) + 1).min(s.len());
        let (head, rest) = s.split_at_checked(skip)?;
        let name = &head[..len];
        let padding_is_blank = head[len..].bytes().all(|b| b == b' ');
        (padding_is_blank && (name.is_empty() || is_identifier(name))).then_some((name, rest))
    }
    let (f, rest) = field(line, 20)?;
    let (v, rest) = field(rest, 25)?;
    let t = rest.trim_end();
    (t.is_empty() || is_identifier(t)).then_some((f, v, t))
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Reads a program's output (stdout and stderr in one stream; see the
/// module doc).  Lines that are not TAP or the harness's are a case's
/// output while it runs and ignored otherwise; a missing plan or end is no
/// error: a case left without a result comes back failed, unfinished.
pub fn parse(text: &str) -> Run {
    let mut run = Run::default();
    let mut running: Option<(String, String)> = None;
    let unfinished = |(name, output): (String, String)| Case {
        name,
        status: Status::Fail,
        output,
        finished: false,
    };
    for line in lines(text) {
        if let Some(name) = run_line(line) {
            run.cases.extend(running.take().map(unfinished));
            running = Some((name.to_string(), String::new()));
            continue;
        }
        if let Some((name, status)) = result_line(line) {
            match running.take() {
                Some((n, output)) if n == name => {
                    run.cases.push(Case {
                        name,
                        status,
                        output,
                        finished: true,
                    });
                    continue;
                }
                // Another name's result: something the case printed.
                Some(other) => running = Some(other),
                // A result without a `RUN` line (plain kselftest.h programs).
                None => {
                    run.cases.push(Case {
                        name,
                        status,
                        output: String::new(),
                        finished: true,
                    });
                    continue;
                }
            }
        }
        match &mut running {
            Some((_, output)) => {
                output.push_str(line);
                output.push('\n');
            }
            None => run.top_level(line),
        }
    }
    run.cases.extend(running.map(unfinished));
    run
}

impl Run {
    /// A line outside any case: plan, bail-out, totals, or nothing to keep.
    fn top_level(&mut self, line: &str) {
        if let Some(reason) = line.strip_prefix("Bail out!") {
            self.bailed_out
                .get_or_insert_with(|| reason.trim().to_string());
        } else if let Some(totals) = totals_line(line) {
            self.totals = Some(totals);
        } else if self.plan.is_none()
            && let Some((n, skip)) = plan_line(line)
        {
            self.plan = Some(n);
            self.skipped_all = skip;
        }
    }
}

/// The text's lines; the runner's nesting (`# ` before each line of the
/// program's own output, no `RUN` line of its own) taken off.
fn lines(text: &str) -> Vec<&str> {
    let all: Vec<&str> = text.lines().collect();
    let nested = all.iter().any(|l| l.starts_with("# TAP version"))
        && !all.iter().any(|l| run_line(l).is_some());
    if !nested {
        return all;
    }
    all.into_iter()
        .filter_map(|l| l.strip_prefix("# ").or((l == "#").then_some("")))
        .collect()
}

/// The case a `#  RUN           name ...` line starts.
fn run_line(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?.trim_start().strip_prefix("RUN ")?;
    let name = rest.trim().strip_suffix("...")?.trim_end();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then_some(name)
}

/// `ok N name`, `not ok N name`, either with `# DIRECTIVE reason` or
/// `#  diagnostic` after the name: the name and the status.
fn result_line(line: &str) -> Option<(String, Status)> {
    let (ok, rest) = match line.strip_prefix("ok ") {
        Some(rest) => (true, rest),
        None => (false, line.strip_prefix("not ok ")?),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = rest.split_at(digits);
    if number.is_empty() || !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let rest = rest.trim_start();
    let (description, directive) = match rest.strip_prefix('#') {
        Some(d) => ("", Some(d)),
        None => match rest.split_once(" #") {
            Some((n, d)) => (n, Some(d)),
            None => (rest, None),
        },
    };
    let (word, reason) = split_directive(directive.unwrap_or_default());
    let reason = reason.to_string();
    let status = match word.to_ascii_uppercase().as_str() {
        "SKIP" => Status::Skip { reason },
        "XFAIL" => Status::XFail { reason },
        "XPASS" => Status::XPass,
        _ if ok => Status::Pass,
        _ => Status::Fail,
    };
    let name = match description.trim() {
        "" => number,
        name => name,
    };
    Some((name.to_string(), status))
}

/// `1..N`, maybe with `# SKIP reason` (the whole program skipped).
fn plan_line(line: &str) -> Option<(usize, Option<String>)> {
    let rest = line.strip_prefix("1..")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n = rest[..digits].parse().ok()?;
    let rest = rest[digits..].trim_start();
    let skip = rest.strip_prefix('#').and_then(|d| {
        let (word, reason) = split_directive(d);
        word.eq_ignore_ascii_case("SKIP")
            .then(|| reason.to_string())
    });
    (rest.is_empty() || rest.starts_with('#')).then_some((n, skip))
}

/// What follows a `#`: its first word (`SKIP`, `XFAIL`, …) and the rest.
fn split_directive(text: &str) -> (&str, &str) {
    let text = text.trim();
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    (word, rest.trim())
}

/// `# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:0`.
fn totals_line(line: &str) -> Option<Totals> {
    let rest = line.strip_prefix("# Totals:")?;
    let mut t = Totals::default();
    let mut seen = 0;
    for pair in rest.split_whitespace() {
        let (key, value) = pair.split_once(':')?;
        let slot = match key {
            "pass" => &mut t.pass,
            "fail" => &mut t.fail,
            "xfail" => &mut t.xfail,
            "xpass" => &mut t.xpass,
            "skip" => &mut t.skip,
            "error" => &mut t.error,
            _ => return None,
        };
        *slot = value.parse().ok()?;
        seen += 1;
    }
    (seen == 6).then_some(t)
}

/// The libtest trial of case `case` of program `suite`:
/// `{prefix}::kselftest::{suite}::{fixture}::{variant}::{test}`, e.g.
/// `pseries-64k::kselftest::iommufd::iommufd_ioas::mock_domain::area`.
/// `prefix` is the machine's (or target's) part of every trial name, with
/// whatever goes in front of it (`7.2::pseries-64k`).  What
/// [`is_clean_name`] would refuse becomes `_`: in `prefix` any such
/// character, in the suite and the case's parts anything but ASCII
/// letters, digits, `_` and `-`, and an empty part is `_`; so the name is
/// always clean, and upstream's dots are the only `::` the case adds.
pub fn trial_name(prefix: &str, suite: &str, case: &str) -> String {
    fn in_name(c: char) -> bool {
        is_name_char(c) || c == '.' || c == ':'
    }
    let clean = |s: &str, keep: fn(char) -> bool| -> String {
        match s {
            "" => "_".into(),
            s => s.chars().map(|c| if keep(c) { c } else { '_' }).collect(),
        }
    };
    let case: Vec<String> = case.split('.').map(|p| clean(p, is_name_char)).collect();
    format!(
        "{}::kselftest::{}::{}",
        clean(prefix, in_name),
        clean(suite, is_name_char),
        case.join("::")
    )
}

/// A character of a suite's or case part's name as it goes into a trial
/// name (and into expectations entries): ASCII letters, digits, `_`, `-`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// True if `name` is a trial name libtest filters and `--exact` take as it
/// is: not empty, only ASCII letters, digits, `_`, `-`, `.` and `:` (no
/// spaces, quotes, globs or control characters).
pub fn is_clean_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

#[cfg(test)]
mod tests;
