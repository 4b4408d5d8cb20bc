//! The samples are real output of kselftest_harness programs built with
//! gcc against Linux 7.2's `tools/testing/selftests` on x86_64 (run on the
//! host: none of them touches the kernel's IOMMU), except the upstream
//! `iommufd -l` table, whose program was only asked to list.
//!
//! `t.c`:
//!
//! ```c
//! #include <signal.h>
//! #include <unistd.h>
//! #include "kselftest_harness.h"
//!
//! TEST(global_pass) { printf("hello from stdout\n"); TH_LOG("a log line"); }
//! TEST(global_fail) { EXPECT_EQ(1, 2); TH_LOG("after expect"); }
//!
//! FIXTURE(fx) { int x; };
//! FIXTURE_VARIANT(fx) { int v; };
//! FIXTURE_SETUP(fx) { self->x = variant->v; }
//! FIXTURE_TEARDOWN(fx) {}
//! FIXTURE_VARIANT_ADD(fx, one) { .v = 1 };
//! FIXTURE_VARIANT_ADD(fx, a_rather_long_variant_name_over_25) { .v = 2 };
//!
//! TEST_F(fx, pass) { ASSERT_LT(0, self->x); }
//! TEST_F(fx, assert_fail) { ASSERT_EQ(1, self->x) { TH_LOG("handler says x=%d", self->x); } }
//! TEST_F(fx, skipped) { SKIP(return, "needs %s", "hugepages"); }
//! TEST_F(fx, segv) { if (self->x == 2) { volatile int *p = 0; *p = 1; } }
//! TEST_F_TIMEOUT(fx, slow, 1) { if (self->x == 1) sleep(5); }
//! XFAIL_ADD(fx, a_rather_long_variant_name_over_25, assert_fail);
//! XFAIL_ADD(fx, one, pass);
//! TEST_F(fx, skip_then_fail) { if (self->x == 1) { SKIP(, "half skipped"); ASSERT_EQ(0, 1); } }
//!
//! FIXTURE(nov) {};
//! FIXTURE_SETUP(nov) {}
//! FIXTURE_TEARDOWN(nov) {}
//! TEST_F(nov, a_very_long_test_name_that_goes_on) {}
//! TEST_F(nov, xf) { ASSERT_EQ(0, 1); }
//!
//! FIXTURE(a_fixture_name_longer_than_20) {};
//! FIXTURE_SETUP(a_fixture_name_longer_than_20) {}
//! FIXTURE_TEARDOWN(a_fixture_name_longer_than_20) {}
//! FIXTURE_VARIANT(a_fixture_name_longer_than_20) { int v; };
//! FIXTURE_VARIANT_ADD(a_fixture_name_longer_than_20, v1) { .v = 1 };
//! FIXTURE_VARIANT_ADD(a_fixture_name_longer_than_20, v2) { .v = 2 };
//! FIXTURE_VARIANT_ADD(a_fixture_name_longer_than_20, v3) { .v = 3 };
//! TEST_F(a_fixture_name_longer_than_20, t) {}
//!
//! FIXTURE(empty) {};
//!
//! TEST_SIGNAL(by_signal, SIGUSR1) { kill(getpid(), SIGUSR1); }
//! TEST(exit_code) { exit(7); }
//!
//! TEST_HARNESS_MAIN
//! ```
//!
//! `t2.c`:
//!
//! ```c
//! #include "kselftest_harness.h"
//! TEST(skip_nl) { SKIP(return, "mmap() failed: %s (%d)\n", "Cannot allocate memory", 12); }
//! TEST(no_newline) { fprintf(stderr, "partial"); }
//! TEST(child_exit_skip) { ksft_exit_skip("from inside\n"); }
//! TEST(after) {}
//! TEST_HARNESS_MAIN
//! ```
//!
//! `b.c` (plain `kselftest.h`, as a program's `main` may use it around the harness):
//!
//! ```c
//! #include "kselftest.h"
//! int main(int argc, char **argv) {
//!         if (argc > 1 && argv[1][0] == 's') ksft_exit_skip("no device\n");
//!         ksft_print_header();
//!         ksft_set_plan(3);
//!         ksft_test_result_pass("first\n");
//!         ksft_test_result_error("second\n");
//!         ksft_exit_fail_msg("cannot open %s\n", "/dev/iommu");
//! }
//! ```

use std::path::Path;

use super::expectations::{Expect, Expectations, ExpectationsError, Verdict, glob_match, verdict};
use super::*;

/// `./t > out 2>&1` (exit 1).
const RUN: &str = r#"TAP version 13
1..21
# Starting 21 tests from 7 test cases.
#  RUN           global.global_pass ...
hello from stdout
# t.c:5:global_pass:a log line
#            OK  global.global_pass
ok 1 global.global_pass
#  RUN           global.global_fail ...
# t.c:6:global_fail:Expected 1 (1) == 2 (2)
# t.c:6:global_fail:after expect
# global_fail: Test failed
#          FAIL  global.global_fail
not ok 2 global.global_fail
#  RUN           global.by_signal ...
#            OK  global.by_signal
ok 3 global.by_signal
#  RUN           global.exit_code ...
# exit_code: Test failed
#          FAIL  global.exit_code
not ok 4 global.exit_code
#  RUN           fx.one.pass ...
#            OK  fx.one.pass
ok 5 fx.one.pass # XPASS unknown
#  RUN           fx.one.assert_fail ...
#            OK  fx.one.assert_fail
ok 6 fx.one.assert_fail
#  RUN           fx.one.skipped ...
#      SKIP      needs hugepages
#            OK  fx.one.skipped
ok 7 fx.one.skipped # SKIP needs hugepages
#  RUN           fx.one.segv ...
#            OK  fx.one.segv
ok 8 fx.one.segv
#  RUN           fx.one.slow ...
# slow: Test terminated by timeout
#          FAIL  fx.one.slow
not ok 9 fx.one.slow
#  RUN           fx.one.skip_then_fail ...
#      SKIP      half skipped
# t.c:22:skip_then_fail:Expected 0 (0) == 1 (1)
# skip_then_fail: Test terminated by assertion
#          FAIL  fx.one.skip_then_fail
not ok 10 fx.one.skip_then_fail #  half skipped
#  RUN           fx.a_rather_long_variant_name_over_25.pass ...
#            OK  fx.a_rather_long_variant_name_over_25.pass
ok 11 fx.a_rather_long_variant_name_over_25.pass
#  RUN           fx.a_rather_long_variant_name_over_25.assert_fail ...
# t.c:16:assert_fail:Expected 1 (1) == self->x (2)
# t.c:16:assert_fail:handler says x=2
# assert_fail: Test terminated by assertion
#          FAIL  fx.a_rather_long_variant_name_over_25.assert_fail
ok 12 fx.a_rather_long_variant_name_over_25.assert_fail # XFAIL unknown
#  RUN           fx.a_rather_long_variant_name_over_25.skipped ...
#      SKIP      needs hugepages
#            OK  fx.a_rather_long_variant_name_over_25.skipped
ok 13 fx.a_rather_long_variant_name_over_25.skipped # SKIP needs hugepages
#  RUN           fx.a_rather_long_variant_name_over_25.segv ...
# segv: Test terminated unexpectedly by signal 11
#          FAIL  fx.a_rather_long_variant_name_over_25.segv
not ok 14 fx.a_rather_long_variant_name_over_25.segv
#  RUN           fx.a_rather_long_variant_name_over_25.slow ...
#            OK  fx.a_rather_long_variant_name_over_25.slow
ok 15 fx.a_rather_long_variant_name_over_25.slow
#  RUN           fx.a_rather_long_variant_name_over_25.skip_then_fail ...
#            OK  fx.a_rather_long_variant_name_over_25.skip_then_fail
ok 16 fx.a_rather_long_variant_name_over_25.skip_then_fail
#  RUN           nov.a_very_long_test_name_that_goes_on ...
#            OK  nov.a_very_long_test_name_that_goes_on
ok 17 nov.a_very_long_test_name_that_goes_on
#  RUN           nov.xf ...
# t.c:28:xf:Expected 0 (0) == 1 (1)
# xf: Test terminated by assertion
#          FAIL  nov.xf
not ok 18 nov.xf
#  RUN           a_fixture_name_longer_than_20.v1.t ...
#            OK  a_fixture_name_longer_than_20.v1.t
ok 19 a_fixture_name_longer_than_20.v1.t
#  RUN           a_fixture_name_longer_than_20.v2.t ...
#            OK  a_fixture_name_longer_than_20.v2.t
ok 20 a_fixture_name_longer_than_20.v2.t
#  RUN           a_fixture_name_longer_than_20.v3.t ...
#            OK  a_fixture_name_longer_than_20.v3.t
ok 21 a_fixture_name_longer_than_20.v3.t
# FAILED: 15 / 21 tests passed.
# 2 skipped test(s) detected. Consider enabling relevant config options to improve coverage.
# Totals: pass:11 fail:6 xfail:1 xpass:1 skip:2 error:0
"#;

/// `timeout -s KILL 0.5 ./t -f fx -v one > out 2>&1`: killed in `fx.one.slow`.
const KILLED: &str = r#"TAP version 13
1..12
# Starting 12 tests from 2 test cases.
#  RUN           fx.one.pass ...
#            OK  fx.one.pass
ok 1 fx.one.pass # XPASS unknown
#  RUN           fx.one.assert_fail ...
#            OK  fx.one.assert_fail
ok 2 fx.one.assert_fail
#  RUN           fx.one.skipped ...
#      SKIP      needs hugepages
#            OK  fx.one.skipped
ok 3 fx.one.skipped # SKIP needs hugepages
#  RUN           fx.one.segv ...
#            OK  fx.one.segv
ok 4 fx.one.segv
#  RUN           fx.one.slow ...
"#;

/// `./t2 2>&1`.
const ODD: &str = r#"TAP version 13
1..4
# Starting 4 tests from 1 test cases.
#  RUN           global.skip_nl ...
#      SKIP      mmap() failed: Cannot allocate memory (12)

#            OK  global.skip_nl
ok 1 global.skip_nl # SKIP mmap() failed: Cannot allocate memory (12)

#  RUN           global.no_newline ...
partial#            OK  global.no_newline
ok 2 global.no_newline
#  RUN           global.child_exit_skip ...
1..0 # SKIP from inside
#            OK  global.child_exit_skip
ok 3 global.child_exit_skip # SKIP unknown
#  RUN           global.after ...
#            OK  global.after
ok 4 global.after
# PASSED: 4 / 4 tests passed.
# 2 skipped test(s) detected. Consider enabling relevant config options to improve coverage.
# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:2 error:0
"#;

/// `./t -l 2>&1` (exit 4), each line ended by `$` as `cat -A` shows it.
const LIST: &str = r#"# FIXTURE            VARIANT                   TEST$
global                                         global_pass$
                                               global_fail$
                                               by_signal$
                                               exit_code$
--------------------------------------------------------------------------------$
fx                   one                       pass$
                     a_rather_long_variant_name_over_25 assert_fail$
                                               skipped$
                                               segv$
                                               slow$
                                               skip_then_fail$
--------------------------------------------------------------------------------$
nov                                            a_very_long_test_name_that_goes_on$
                                               xf$
--------------------------------------------------------------------------------$
a_fixture_name_longer_than_20 v1                        t$
                     v2                        $
                     v3                        $
--------------------------------------------------------------------------------$
empty                                          $
"#;

/// Linux 7.2's `tools/testing/selftests/iommu/iommufd -l 2>&1`, ends marked by `$`.
const IOMMUFD_LIST: &str = r#"# FIXTURE            VARIANT                   TEST$
global                                         $
--------------------------------------------------------------------------------$
iommufd                                        simple_close$
                                               cmd_fail$
                                               cmd_length$
                                               cmd_ex_fail$
                                               global_options$
                                               simple_ioctls$
                                               unmap_cmd$
                                               map_cmd$
                                               info_cmd$
                                               set_iommu_cmd$
                                               vfio_ioas$
--------------------------------------------------------------------------------$
change_process       account_none              basic$
                     account_user              $
                     account_mm                $
--------------------------------------------------------------------------------$
iommufd_ioas         no_domain                 ioas_auto_destroy$
                     mock_domain               ioas_destroy$
                     two_mock_domain           alloc_hwpt_nested$
                     mock_domain_limit         hwpt_attach$
                                               ioas_area_destroy$
                                               ioas_area_auto_destroy$
                                               get_hw_info$
                                               area$
                                               unmap_fully_contained_areas$
                                               area_auto_iova$
                                               reserved_overflow$
                                               area_allowed$
                                               copy_area$
                                               iova_ranges$
                                               access_domain_destory$
                                               access_pin$
                                               access_pin_unmap$
                                               access_rw$
                                               access_rw_unaligned$
                                               fork_gone$
                                               fork_present$
                                               ioas_option_huge_pages$
                                               ioas_iova_alloc$
                                               ioas_align_change$
                                               copy_sweep$
                                               dmabuf_simple$
                                               dmabuf_revoke$
--------------------------------------------------------------------------------$
iommufd_mock_domain  one_domain                basic$
                     two_domains               ro_unshare$
                     one_domain_hugepage       all_aligns$
                     two_domains_hugepage      all_aligns_copy$
                     one_domain_file           user_copy$
                     one_domain_file_hugepage  replace$
                                               alloc_hwpt$
--------------------------------------------------------------------------------$
iommufd_dirty_tracking domain_dirty8k            enforce_dirty$
                     domain_dirty16k           set_dirty_tracking$
                     domain_dirty64k           pasid_set_dirty_tracking$
                     domain_dirty128k          device_dirty_capability$
                     domain_dirty320k          get_dirty_bitmap$
                     domain_dirty64M           get_dirty_bitmap_no_clear$
                     domain_dirty64M_huge      $
                     domain_dirty128M          $
                     domain_dirty128M_huge     $
--------------------------------------------------------------------------------$
vfio_compat_mock_domain Ver1v2                    simple_close$
                     Ver1v0                    option_huge_pages$
                                               get_info$
                                               map$
                                               huge_map$
--------------------------------------------------------------------------------$
iommufd_viommu       no_viommu                 viommu_auto_destroy$
                     mock_viommu               viommu_negative_tests$
                                               viommu_alloc_nested_iopf$
                                               viommu_alloc_with_data$
                                               vdevice_alloc$
                                               vdevice_cache$
                                               hw_queue$
                                               vdevice_tombstone$
--------------------------------------------------------------------------------$
iommufd_device_pasid no_pasid                  pasid_attach$
                     has_pasid                 $
"#;

/// `./b 2>&1` (exit 1).
const BAIL: &str = r#"TAP version 13
1..3
ok 1 first
not ok 2 # error second
Bail out! cannot open /dev/iommu
# Planned tests != run tests (3 != 2)
# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:1
"#;

/// `./b s 2>&1` (exit 4).
const SKIP_ALL: &str = r#"1..0 # SKIP no device
"#;

/// A sample written with `$` at each line's end (as `cat -A` shows it,
/// so trailing spaces survive in this file), as the program printed it.
fn unmark(text: &str) -> String {
    text.lines()
        .map(|l| format!("{}\n", l.strip_suffix('$').unwrap_or(l)))
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const T_CASES: &[&str] = &[
    "global.global_pass",
    "global.global_fail",
    "global.by_signal",
    "global.exit_code",
    "fx.one.pass",
    "fx.one.assert_fail",
    "fx.one.skipped",
    "fx.one.segv",
    "fx.one.slow",
    "fx.one.skip_then_fail",
    "fx.a_rather_long_variant_name_over_25.pass",
    "fx.a_rather_long_variant_name_over_25.assert_fail",
    "fx.a_rather_long_variant_name_over_25.skipped",
    "fx.a_rather_long_variant_name_over_25.segv",
    "fx.a_rather_long_variant_name_over_25.slow",
    "fx.a_rather_long_variant_name_over_25.skip_then_fail",
    "nov.a_very_long_test_name_that_goes_on",
    "nov.xf",
    "a_fixture_name_longer_than_20.v1.t",
    "a_fixture_name_longer_than_20.v2.t",
    "a_fixture_name_longer_than_20.v3.t",
];

#[test]
fn the_list_names_the_cases_as_the_run_does() {
    let listed = parse_list(&unmark(LIST));
    assert_eq!(listed, names(T_CASES));
    let ran: Vec<String> = parse(RUN).cases.into_iter().map(|c| c.name).collect();
    assert_eq!(ran, listed, "same names, same order");
}

#[test]
fn the_upstream_iommufd_list() {
    let listed = parse_list(&unmark(IOMMUFD_LIST));
    // Counted from iommufd.c: each FIXTURE's FIXTURE_VARIANT_ADDs × its TEST_Fs.
    assert_eq!(listed.len(), 246);
    assert_eq!(listed[0], "iommufd.simple_close");
    assert_eq!(
        listed.last().unwrap(),
        "iommufd_device_pasid.has_pasid.pasid_attach"
    );
    for name in [
        "change_process.account_mm.basic",
        "iommufd_ioas.mock_domain.area",
        "iommufd_mock_domain.one_domain_file_hugepage.alloc_hwpt",
        // The fixture's name is wider than its column.
        "iommufd_dirty_tracking.domain_dirty8k.enforce_dirty",
        "iommufd_dirty_tracking.domain_dirty128M_huge.device_dirty_capability",
        "vfio_compat_mock_domain.Ver1v0.huge_map",
    ] {
        assert!(listed.iter().any(|n| n == name), "{name} missing");
    }
    assert!(!listed.iter().any(|n| n.starts_with("global.")));
    let mut unique = listed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), listed.len());
}

#[test]
fn the_list_skips_what_the_program_printed_itself() {
    // A VFIO test's own stdout, flushed at exit, after the table on stderr.
    let text = format!(
        "{}Testing parallel initialization of 1 devices:\n    0000:00:03.0\n",
        unmark(LIST)
    );
    assert_eq!(parse_list(&text), names(T_CASES));
    let text = format!("Created 1 VF (0000:00:04.1) under the PF: 0000:00:04.0\n{text}");
    assert_eq!(parse_list(&text), names(T_CASES));
    // Skipped before listing: no table.
    assert!(parse_list(SKIP_ALL).is_empty());
    assert!(parse_list("Unable to determine which device(s) to use, skipping test.\n").is_empty());
    // Rows of a fixture without a separator before it still start it.
    let rows = unmark(concat!(
        "# FIXTURE            VARIANT                   TEST$\n",
        "a                                              x$\n",
        "b                    v                         y$\n",
        "this is not a row, nor is the next one$\n",
        "c                    v                         y z$\n",
    ));
    assert_eq!(parse_list(&rows), names(&["a.x", "b.v.y"]));
}

#[test]
fn a_full_run() {
    let run = parse(RUN);
    assert_eq!(run.plan, Some(21));
    assert_eq!(run.bailed_out, None);
    assert_eq!(run.skipped_all, None);
    assert_eq!(
        run.totals,
        Some(Totals {
            pass: 11,
            fail: 6,
            xfail: 1,
            xpass: 1,
            skip: 2,
            error: 0
        })
    );
    assert!(run.cases.iter().all(|c| c.finished));
    assert_eq!(run.interrupted(), None);
    assert!(run.not_run(&names(T_CASES)).is_empty());
    let status = |name: &str| run.case(name).unwrap().status.clone();
    let skip = |r: &str| Status::Skip { reason: r.into() };
    assert_eq!(status("global.global_pass"), Status::Pass);
    assert_eq!(status("global.global_fail"), Status::Fail);
    assert_eq!(status("global.by_signal"), Status::Pass, "TEST_SIGNAL");
    assert_eq!(status("global.exit_code"), Status::Fail);
    assert_eq!(status("fx.one.pass"), Status::XPass);
    assert_eq!(status("fx.one.skipped"), skip("needs hugepages"));
    assert_eq!(status("fx.one.slow"), Status::Fail, "timed out");
    assert_eq!(status("fx.one.skip_then_fail"), Status::Fail);
    assert_eq!(
        status("fx.a_rather_long_variant_name_over_25.assert_fail"),
        Status::XFail {
            reason: "unknown".into()
        }
    );
    assert_eq!(
        status("fx.a_rather_long_variant_name_over_25.segv"),
        Status::Fail,
        "SIGSEGV"
    );
    assert_eq!(status("nov.xf"), Status::Fail);
    let output = |name: &str| run.case(name).unwrap().output.clone();
    assert_eq!(
        output("global.global_pass"),
        "hello from stdout\n\
         # t.c:5:global_pass:a log line\n\
         #            OK  global.global_pass\n"
    );
    assert_eq!(
        output("global.global_fail"),
        "# t.c:6:global_fail:Expected 1 (1) == 2 (2)\n\
         # t.c:6:global_fail:after expect\n\
         # global_fail: Test failed\n\
         #          FAIL  global.global_fail\n"
    );
    assert!(output("fx.one.slow").contains("# slow: Test terminated by timeout\n"));
    assert!(
        output("fx.a_rather_long_variant_name_over_25.segv")
            .contains("# segv: Test terminated unexpectedly by signal 11\n")
    );
    assert!(output("fx.one.skip_then_fail").starts_with("#      SKIP      half skipped\n"));
}

#[test]
fn a_run_killed_midway() {
    let run = parse(KILLED);
    assert_eq!(run.plan, Some(12));
    assert_eq!(run.totals, None);
    assert_eq!(run.cases.len(), 5);
    let slow = run.interrupted().unwrap();
    assert_eq!(slow.name, "fx.one.slow");
    assert_eq!(slow.status, Status::Fail);
    assert!(!slow.finished);
    assert_eq!(slow.output, "");
    assert!(run.cases[..4].iter().all(|c| c.finished));
    // Its selection (-f fx -v one) as the list would give it.
    let selected: Vec<String> = names(T_CASES)
        .into_iter()
        .filter(|n| n.starts_with("fx.one."))
        .collect();
    assert_eq!(run.not_run(&selected), ["fx.one.skip_then_fail"]);

    // Killed while the case was printing: its output is kept.
    let text = "1..2\n#  RUN           a.b ...\nsetting up\nstill here\n";
    let run = parse(text);
    assert_eq!(run.cases[0].output, "setting up\nstill here\n");
    assert!(!run.cases[0].finished);
}

#[test]
fn odd_but_real_output() {
    let run = parse(ODD);
    assert_eq!(
        run.plan,
        Some(4),
        "a case's own `1..0 # SKIP` is not the plan"
    );
    assert_eq!(run.skipped_all, None);
    let case = |name: &str| run.case(name).unwrap();
    assert_eq!(
        case("global.skip_nl").status,
        Status::Skip {
            reason: "mmap() failed: Cannot allocate memory (12)".into()
        }
    );
    let glued = case("global.no_newline");
    assert_eq!(glued.status, Status::Pass);
    assert_eq!(glued.output, "partial#            OK  global.no_newline\n");
    let inner = case("global.child_exit_skip");
    assert_eq!(
        inner.status,
        Status::Skip {
            reason: "unknown".into()
        }
    );
    assert!(inner.output.starts_with("1..0 # SKIP from inside\n"));
    assert_eq!(case("global.after").status, Status::Pass);
    assert_eq!(run.cases.len(), 4);
}

#[test]
fn plain_kselftest_results_bail_out_and_skip_all() {
    let run = parse(BAIL);
    assert_eq!(run.plan, Some(3));
    assert_eq!(run.bailed_out.as_deref(), Some("cannot open /dev/iommu"));
    assert_eq!(run.totals.unwrap().error, 1);
    let got: Vec<(&str, &Status)> = run
        .cases
        .iter()
        .map(|c| (c.name.as_str(), &c.status))
        .collect();
    // `not ok 2 # error second`: no name before the `#`, so its number.
    assert_eq!(got, [("first", &Status::Pass), ("2", &Status::Fail)]);

    let run = parse(SKIP_ALL);
    assert_eq!(run.plan, Some(0));
    assert_eq!(run.skipped_all.as_deref(), Some("no device"));
    assert!(run.cases.is_empty());
}

#[test]
fn the_runners_nested_form_reads_the_same() {
    // run_kselftest.sh: its own header and verdict, the program's lines behind `# `.
    let mut nested =
        String::from("TAP version 13\n1..1\n# timeout set to 45\n# selftests: iommu: iommufd\n");
    for line in RUN.lines() {
        nested.push_str(&format!("# {line}\n"));
    }
    nested.push_str("not ok 1 selftests: iommu: iommufd # exit=1\n");
    assert_eq!(parse(&nested), parse(RUN));
}

#[test]
fn interleaved_lines_and_console_line_ends() {
    let text = "\
Testing parallel initialization of 1 devices:\r
    0000:00:03.0\r
TAP version 13\r
1..2\r
# Starting 2 tests from 1 test cases.\r
[   12.345678] vfio-pci 0000:00:03.0: enabling device\r
#  RUN           a.b ...\r
ok 1 something the test printed\r
Bail out! the test's own child gave up\r
#            OK  a.b\r
ok 1 a.b\r
ok 2 a.c # skip lower case\r
# PASSED: 2 / 2 tests passed.\r
# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0\r
";
    let run = parse(text);
    assert_eq!(run.plan, Some(2));
    assert_eq!(
        run.bailed_out, None,
        "inside a case it is the case's output"
    );
    assert_eq!(run.cases.len(), 2);
    assert_eq!(run.cases[0].name, "a.b");
    assert_eq!(run.cases[0].status, Status::Pass);
    assert_eq!(
        run.cases[0].output,
        "ok 1 something the test printed\n\
         Bail out! the test's own child gave up\n\
         #            OK  a.b\n"
    );
    assert_eq!(
        run.cases[1].status,
        Status::Skip {
            reason: "lower case".into()
        }
    );
    assert_eq!(run.totals.unwrap().skip, 1);
    // No plan at all, no TAP header.
    let run = parse("#  RUN           a.b ...\nok 1 a.b\n");
    assert_eq!((run.plan, run.cases.len()), (None, 1));
}

#[test]
fn result_lines() {
    let r = |l: &str| result_line(l);
    let s = |n: &str, st: Status| Some((n.to_string(), st));
    assert_eq!(r("ok 1 a.b.c"), s("a.b.c", Status::Pass));
    assert_eq!(r("not ok 13 a.b.c"), s("a.b.c", Status::Fail));
    assert_eq!(
        r("ok 14 a.b # SKIP needs # hugepages"),
        s(
            "a.b",
            Status::Skip {
                reason: "needs # hugepages".into()
            }
        )
    );
    assert_eq!(
        r("not ok 10 fx.one.skip_then_fail #  half skipped"),
        s("fx.one.skip_then_fail", Status::Fail)
    );
    assert_eq!(
        r("ok 6 a.b # XFAIL known"),
        s(
            "a.b",
            Status::XFail {
                reason: "known".into()
            }
        )
    );
    assert_eq!(r("ok 6 a.b # XPASS unknown"), s("a.b", Status::XPass));
    assert_eq!(r("not ok 3"), s("3", Status::Fail));
    for not_one in [
        "ok",
        "ok so far",
        "okay 1 x",
        "not ok x",
        "ok 1x y",
        " ok 1 a",
    ] {
        assert_eq!(r(not_one), None, "{not_one}");
    }
    assert_eq!(run_line("#  RUN           a.b.c ..."), Some("a.b.c"));
    assert_eq!(run_line("# #  RUN           a.b.c ..."), None);
    assert_eq!(run_line("#  RUN           a.b.c"), None);
    assert_eq!(plan_line("1..0 # SKIP why"), Some((0, Some("why".into()))));
    assert_eq!(plan_line("1..246"), Some((246, None)));
    assert_eq!(plan_line("1..x"), None);
}

#[test]
fn trial_names() {
    assert_eq!(
        trial_name("pseries-64k", "iommufd", "iommufd_ioas.mock_domain.area"),
        "pseries-64k::kselftest::iommufd::iommufd_ioas::mock_domain::area"
    );
    assert_eq!(
        trial_name("q35", "iommufd", "iommufd.simple_close"),
        "q35::kselftest::iommufd::iommufd::simple_close"
    );
    assert_eq!(
        trial_name("7.2::pseries-64k", "iommufd", "iommufd.simple_close"),
        "7.2::pseries-64k::kselftest::iommufd::iommufd::simple_close"
    );
    assert_eq!(
        trial_name("lab box::x", "vfio.test", "a b.c:d..é"),
        "lab_box::x::kselftest::vfio_test::a_b::c_d::_::_"
    );
    for (p, s, c) in [
        ("q35", "iommufd", "global.x"),
        ("q35", "x", ""),
        ("a b", "\"", "*.?\t"),
    ] {
        let name = trial_name(p, s, c);
        assert!(is_clean_name(&name), "{name}");
    }
    assert!(is_clean_name("q35::kselftest::iommufd::a::b"));
    assert!(!is_clean_name("q35::a b"));
    assert!(!is_clean_name(""));
    assert!(!is_clean_name("x*"));
}

fn load(text: &str) -> Result<Expectations, ExpectationsError> {
    Expectations::from_toml(text, Path::new("selftests/expectations.toml"))
}

/// The line and message of a load error.
fn error(text: &str) -> (usize, String) {
    match load(text) {
        Err(ExpectationsError::Invalid { line, message, .. }) => (line, message),
        other => panic!("want an invalid file, got {other:?}"),
    }
}

#[test]
fn the_repositorys_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(super::expectations::FILE);
    let e = Expectations::load(&path).unwrap();
    assert!(e.entries.iter().all(|e| !e.reason.is_empty()));
}

const ENTRIES: &str = r#"# a comment
[[expectation]]
suite = "iommufd"
test = "iommufd_ioas.*.ioas_option_huge_pages"
machine = "pseries-64k"
expect = "skip"
reason = "needs 16M hugepages"

[[expectation]]
suite = "iommufd_fail_nth"
test = "basic_fail_nth.map_domain"
linux = "7.2"
expect = "fail"
reason = "  leaks on 7.2, bug 0007 "
"#;

#[test]
fn entries_load_with_their_lines() {
    let e = load(ENTRIES).unwrap();
    assert_eq!(e.entries.len(), 2);
    let first = &e.entries[0];
    assert_eq!(first.suite, "iommufd");
    assert_eq!(first.machine.as_deref(), Some("pseries-64k"));
    assert_eq!(first.linux, None);
    assert_eq!(first.expect, Expect::Skip);
    assert_eq!(first.line, 4);
    let second = &e.entries[1];
    assert_eq!(second.reason, "leaks on 7.2, bug 0007");
    assert_eq!(second.linux.as_deref(), Some("7.2"));
    assert_eq!(second.line, 11);
    assert_eq!(load("").unwrap().entries, []);
}

#[test]
fn load_errors_name_the_line() {
    let entry = |extra: &str| {
        format!(
            "# header\n\n[[expectation]]\nsuite = \"iommufd\"\ntest = \"a.b\"\nexpect = \"fail\"\nreason = \"r\"\n{extra}"
        )
    };
    let (line, message) = error(&entry("colour = \"red\"\n"));
    assert_eq!(line, 8);
    assert!(message.contains("colour"), "{message}");
    let (line, message) = error(&entry("").replace("\"fail\"", "\"xfail\""));
    assert_eq!(line, 6);
    assert!(message.contains("xfail"), "{message}");
    let (line, message) = error(&entry("").replace("reason = \"r\"", "reason = \"  \""));
    assert_eq!(line, 7);
    assert!(message.starts_with("reason"), "{message}");
    let (line, message) = error(&entry("linux = \"7.x\"\n"));
    assert_eq!(line, 8);
    assert!(message.starts_with("linux = \"7.x\""), "{message}");
    let (line, message) = error(&entry("").replace("a.b", "a b"));
    assert_eq!(line, 5);
    assert!(message.starts_with("test"), "{message}");
    let (line, message) = error(&entry("").replace("reason = \"r\"\n", ""));
    assert_eq!(line, 3, "its [[expectation]]");
    assert!(message.contains("reason"), "{message}");
    let twice = format!("{}\n{}", entry(""), entry("").replace("# header\n\n", ""));
    let (line, message) = error(&twice);
    assert_eq!(line, 11);
    assert!(message.contains("line 5"), "{message}");
    // The same case on another machine is another entry.
    assert!(
        load(&format!(
            "{}\n{}",
            entry(""),
            entry("machine = \"q35\"\n").replace("# header\n\n", "")
        ))
        .is_ok()
    );
    let e = Expectations::load(Path::new("/nonexistent/expectations.toml")).unwrap_err();
    assert_eq!(e.to_string(), "reading /nonexistent/expectations.toml");
    let e = load("[[expectation]]\nsuite = \"iommufd\"\n").unwrap_err();
    assert!(
        e.to_string().starts_with("selftests/expectations.toml:"),
        "{e}"
    );
}

#[test]
fn globs() {
    assert!(glob_match("a.b.c", "a.b.c"));
    assert!(!glob_match("a.b.c", "a.b.cd"));
    assert!(glob_match("*", ""));
    assert!(glob_match("*", "iommufd_ioas.mock_domain.area"));
    assert!(glob_match(
        "iommufd_ioas.*.area",
        "iommufd_ioas.mock_domain.area"
    ));
    assert!(!glob_match(
        "iommufd_ioas.*.area",
        "iommufd_ioas.mock_domain.area_auto_iova"
    ));
    assert!(glob_match(
        "*huge*",
        "iommufd_ioas.no_domain.ioas_option_huge_pages"
    ));
    assert!(glob_match("a*b*c", "aXbYbZc"));
    assert!(!glob_match("a*b*c", "aXbYbZ"));
    assert!(glob_match("a**", "a"));
    assert!(!glob_match("", "a"));
}

#[test]
fn entries_apply_by_suite_case_machine_and_release() {
    let e = load(ENTRIES).unwrap();
    let huge = "iommufd_ioas.mock_domain.ioas_option_huge_pages";
    assert!(e.find("iommufd", huge, "pseries-64k", None, &[]).is_some());
    assert!(e.find("iommufd", huge, "pseries", None, &[]).is_none());
    assert!(
        e.find("iommufd_fail_nth", huge, "pseries-64k", None, &[])
            .is_none()
    );
    let nth = "basic_fail_nth.map_domain";
    for k in ["7.2", "7.2.13", "7.2.13-amd64", "7.2.0-rc3"] {
        assert!(
            e.find("iommufd_fail_nth", nth, "q35", Some(k), &[])
                .is_some(),
            "{k}"
        );
    }
    for k in [Some("7.20.1"), Some("6.12.95"), Some("7"), None] {
        assert!(
            e.find("iommufd_fail_nth", nth, "q35", k, &[]).is_none(),
            "{k:?}"
        );
    }
    let release = load(&ENTRIES.replace("\"7.2\"", "\"7.2.13\"")).unwrap();
    assert!(
        release
            .find("iommufd_fail_nth", nth, "q35", Some("7.2.13-1"), &[])
            .is_some()
    );
    assert!(
        release
            .find("iommufd_fail_nth", nth, "q35", Some("7.2.12"), &[])
            .is_none()
    );
    assert!(
        release
            .find("iommufd_fail_nth", nth, "q35", Some("7.2.130"), &[])
            .is_none()
    );
}

#[test]
fn stale_entries() {
    let e = load(ENTRIES).unwrap();
    let listed = parse_list(&unmark(IOMMUFD_LIST));
    assert!(e.stale("iommufd", &listed).is_empty());
    let renamed: Vec<String> = listed
        .iter()
        .map(|n| n.replace("huge_pages", "hugepages"))
        .collect();
    assert_eq!(e.stale("iommufd", &renamed).len(), 1);
}

#[test]
fn verdicts() {
    let e = load(ENTRIES).unwrap();
    let case = |name: &str, status: Status| Case {
        name: name.into(),
        status,
        output: "# it said\n".into(),
        finished: true,
    };
    let v = |c: &Case, suite: &str| verdict(c, &e, suite, "pseries-64k", Some("7.2.13"), &[]);
    let skip = Status::Skip {
        reason: "no hugepages".into(),
    };
    let xfail = Status::XFail {
        reason: "unknown".into(),
    };

    // Nothing declared.
    let plain = "iommufd.simple_close";
    assert_eq!(v(&case(plain, Status::Pass), "iommufd"), Verdict::Pass);
    assert_eq!(v(&case(plain, Status::XPass), "iommufd"), Verdict::Pass);
    assert_eq!(
        v(&case(plain, skip.clone()), "iommufd"),
        Verdict::Skipped {
            reason: "upstream skips it: no hugepages".into()
        }
    );
    assert_eq!(
        v(&case(plain, xfail.clone()), "iommufd"),
        Verdict::ExpectedFailure {
            reason: "upstream expects it to fail (XFAIL): unknown".into()
        }
    );
    let failed = v(&case(plain, Status::Fail), "iommufd");
    assert_eq!(
        failed,
        Verdict::Failed {
            output: "# it said\n".into()
        }
    );
    assert!(failed.is_failure());
    let mut cut = case(plain, Status::Fail);
    cut.finished = false;
    let Verdict::Failed { output } = v(&cut, "iommufd") else {
        panic!("an unfinished case fails");
    };
    assert!(
        output.starts_with("# it said\n(no result: the program stopped"),
        "{output}"
    );

    // expect = "skip": ignored whatever happened, and says what did.
    let huge = "iommufd_ioas.mock_domain.ioas_option_huge_pages";
    let declared = "needs 16M hugepages [selftests/expectations.toml:4]";
    assert_eq!(
        v(&case(huge, skip.clone()), "iommufd"),
        Verdict::Skipped {
            reason: declared.into()
        }
    );
    for (status, did) in [(Status::Pass, "passed"), (Status::Fail, "failed")] {
        let got = v(&case(huge, status), "iommufd");
        assert_eq!(
            got,
            Verdict::Skipped {
                reason: format!("{declared} (it ran and {did})")
            }
        );
        assert!(!got.is_failure());
    }

    // expect = "fail".
    let nth = "basic_fail_nth.map_domain";
    let declared = "leaks on 7.2, bug 0007 [selftests/expectations.toml:11]";
    for status in [Status::Fail, xfail] {
        assert_eq!(
            v(&case(nth, status), "iommufd_fail_nth"),
            Verdict::ExpectedFailure {
                reason: declared.into()
            }
        );
    }
    for status in [Status::Pass, Status::XPass] {
        let got = v(&case(nth, status), "iommufd_fail_nth");
        let Verdict::UnexpectedPass { reason } = &got else {
            panic!("a declared failure that passes fails: {got:?}");
        };
        assert!(reason.ends_with(declared), "{reason}");
        assert!(got.is_failure());
    }
    assert_eq!(
        v(&case(nth, skip), "iommufd_fail_nth"),
        Verdict::Skipped {
            reason: "upstream skips it: no hugepages".into()
        }
    );
    // On another release the entry does not apply.
    let other = verdict(
        &case(nth, Status::Fail),
        &e,
        "iommufd_fail_nth",
        "q35",
        Some("7.3.1"),
        &[],
    );
    assert!(matches!(other, Verdict::Failed { .. }));
}

#[test]
fn an_entry_tied_to_a_fix_stops_applying_with_the_fix() {
    let text = r#"
[[expectation]]
suite = "iommufd"
test = "iommufd_ioas.*.alloc_hwpt_nested"
machine = "pseries"
expect = "fail"
bug = "0007"
reason = "no IOMMU_IOPF on ppc64"
"#;
    let e = Expectations::from_toml(text, Path::new("x.toml")).unwrap();
    let case = "iommufd_ioas.mock_domain.alloc_hwpt_nested";
    assert!(e.find("iommufd", case, "pseries", None, &[]).is_some());
    let fixed = ["0007-iommufd-selftest-Select-IOMMU_IOPF.patch".to_string()];
    assert!(e.find("iommufd", case, "pseries", None, &fixed).is_none());
    let bad = text.replace("\"0007\"", "\"7\"");
    let err = Expectations::from_toml(&bad, Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("x.toml:7: bug = \"7\""), "{err}");
}

#[test]
fn the_shipped_expectations_load_and_their_fixes_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let e = Expectations::load(&root.join(expectations::FILE)).unwrap();
    for x in &e.entries {
        if let Some(id) = &x.bug {
            let fixes = std::fs::read_dir(root.join(crate::known_bug::FIXES_DIR)).unwrap();
            assert!(
                fixes.flatten().any(|f| f
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{id}-"))),
                "{}:{}: no fix {id}",
                e.path.display(),
                x.line
            );
        }
    }
}

#[test]
fn expect_any_lets_cases_pass_while_a_broad_bug_is_unfixed() {
    let text = "[[expectation]]\nsuite = \"iommufd\"\ntest = \"*\"\nmachine = \"pseries\"\nexpect = \"any\"\nbug = \"0005\"\nreason = \"no mock domain\"\n";
    let e = Expectations::from_toml(text, Path::new("x.toml")).unwrap();
    let case = |status| Case {
        name: "iommufd_ioas.mock_domain.area".into(),
        status,
        output: String::new(),
        finished: true,
    };
    let v = |s, patches: &[String]| verdict(&case(s), &e, "iommufd", "pseries", None, patches);
    assert_eq!(v(Status::Pass, &[]), Verdict::Pass);
    assert!(matches!(
        v(Status::Fail, &[]),
        Verdict::ExpectedFailure { .. }
    ));
    let fixed = ["0005-iommu-x.patch".to_string()];
    assert!(matches!(v(Status::Fail, &fixed), Verdict::Failed { .. }));
    let bad = text.replace("bug = \"0005\"\n", "");
    let err = Expectations::from_toml(&bad, Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("expect = \"any\" needs bug"), "{err}");
}
