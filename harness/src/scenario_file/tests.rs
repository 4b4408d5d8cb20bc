use std::path::Path;

use super::*;

const GOOD: &str = r#"
description = "map outside the window"
machines = ["pseries"]
requires = ["vfio-spapr-tce-v2"]

[[step]]
op = "vfio.container_open"
bind = "c"

[[step]]
op = "mem.alloc"
size = "64K"
fill = "seq:1"
bind = "buf"

[[step]]
op = "spapr.create_window"
container = "$c"
page_shift = 12
window_size = "1G"
bind = "win"

[[step]]
op = "vfio.map_dma"
container = "$c"
buffer = "$buf"
iova = "$win.start_addr+0x10000"
expect = { errno = "ENXIO" }
"#;

fn parse(text: &str) -> Result<ScenarioFile, ScenarioError> {
    ScenarioFile::parse(text, Path::new("scenarios/t.toml"), "t")
}

fn error_at(text: &str) -> (usize, String) {
    match parse(text) {
        Err(ScenarioError::Invalid { line, message, .. }) => (line, message),
        other => panic!("expected an invalid-scenario error, got {other:?}"),
    }
}

#[test]
fn a_good_file_parses_into_steps_with_lines() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.scenario.steps.len(), 4);
    assert_eq!(
        s.step_origins.iter().map(|o| o.1).collect::<Vec<_>>(),
        vec![6, 10, 16, 23]
    );
    let map = &s.scenario.steps[3];
    assert_eq!(map.expect, Expect::Errno("ENXIO".into()));
    assert_eq!(map.args["iova"], Value::from("$win.start_addr+0x10000"));
    assert_eq!(s.scenario.steps[0].bind.as_deref(), Some("c"));
    assert!(s.applies_to("pseries") && !s.applies_to("q35"));
    assert_eq!(
        s.missing_features(&["iommufd".into()]),
        vec!["vfio-spapr-tce-v2".to_string()]
    );
}

#[test]
fn unknown_op_is_reported_at_its_line_with_suggestions() {
    let text = GOOD.replace(
        "op = \"spapr.create_window\"",
        "op = \"spapr.create_windw\"",
    );
    let (line, msg) = error_at(&text);
    assert_eq!(line, 17);
    assert!(
        msg.contains("unknown op \"spapr.create_windw\"") && msg.contains("spapr.create_window"),
        "{msg}"
    );
}

#[test]
fn unknown_argument_and_missing_argument_are_errors() {
    let (line, msg) = error_at(&GOOD.replace("page_shift = 12", "page_shfit = 12"));
    assert_eq!(line, 19);
    assert!(msg.contains("no argument \"page_shfit\""), "{msg}");
    let (_, msg) = error_at(&GOOD.replace("window_size = \"1G\"\n", ""));
    assert!(msg.contains("needs window_size"), "{msg}");
}

#[test]
fn bad_literals_are_errors() {
    let (line, msg) = error_at(&GOOD.replace("size = \"64K\"", "size = \"lots\""));
    assert_eq!(line, 12);
    assert!(msg.contains("not a number"), "{msg}");
    let (_, msg) = error_at(&GOOD.replace("fill = \"seq:1\"", "fill = \"stripes\""));
    assert!(msg.contains("not a pattern"), "{msg}");
    let (_, msg) = error_at(&GOOD.replace(
        "container = \"$c\"\npage_shift",
        "container = 3\npage_shift",
    ));
    assert!(msg.contains("$reference"), "{msg}");
}

#[test]
fn references_must_be_bound_earlier() {
    let (line, msg) = error_at(&GOOD.replace(
        "iova = \"$win.start_addr+0x10000\"",
        "iova = \"$window.start_addr\"",
    ));
    assert_eq!(line, 27);
    assert!(
        msg.contains("$window is not bound") && msg.contains("$win"),
        "{msg}"
    );
    let (_, msg) = error_at(&GOOD.replace("$win.start_addr+0x10000", "$win.start_addr+lots"));
    assert!(msg.contains("bad reference"), "{msg}");
}

#[test]
fn expectations_and_features_are_checked() {
    let (_, msg) = error_at(&GOOD.replace("ENXIO", "ENOTANERRNO"));
    assert!(msg.contains("unknown errno"), "{msg}");
    let (_, msg) = error_at(&GOOD.replace("expect = { errno = \"ENXIO\" }", "expect = \"maybe\""));
    assert!(msg.contains("expect must be"), "{msg}");
    let (line, msg) = error_at(&GOOD.replace("vfio-spapr-tce-v2", "warp-drive"));
    assert_eq!(line, 4);
    assert!(msg.contains("unknown feature"), "{msg}");
}

#[test]
fn broken_toml_names_the_line() {
    let (line, _) = error_at(&GOOD.replace("bind = \"buf\"", "bind = \"buf"));
    assert_eq!(line, 14);
    let (_, msg) = error_at("description = \"x\"\nmachines = []\n[[step]]\nop = \"close\"\n");
    assert!(msg.contains("at least one machine"), "{msg}");
}

#[test]
fn names_come_from_the_path_under_the_root() {
    let root = Path::new("/r/scenarios");
    assert_eq!(
        name_for(&root.join("windows/map_outside.toml"), Some(root)),
        "windows::map_outside"
    );
    assert_eq!(name_for(Path::new("/tmp/repro.toml"), None), "repro");
}

#[test]
fn the_shipped_catalogue_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let all = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(all.len() >= 10, "only {} scenarios", all.len());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut machines = crate::machine::available(&root.join("qemu-configs"));
    let targets = crate::target::TargetsFile::load(&root.join("targets/lab.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    machines.extend(targets.target.into_keys());
    let bench = load_dir(&dir.join("_bench")).unwrap_or_else(|e| panic!("{e}"));
    let host = load_dir(&dir.join("_host")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host.len(), 2);
    assert_eq!(bench.len(), 3);
    for s in all.iter().chain(&bench).chain(&host) {
        for m in &s.machines {
            assert!(
                machines.contains(m),
                "{}: unknown machine or target {m}",
                s.path.display()
            );
        }
    }
}

#[test]
fn expect_kernel_warning_is_read_and_must_say_something() {
    assert_eq!(parse(GOOD).unwrap().expect_kernel_warning, None);
    let text = GOOD.replacen(
        "requires",
        "expect_kernel_warning = \"lkdtm_WARNING\"\nrequires",
        1,
    );
    let s = parse(&text).unwrap();
    assert_eq!(s.expect_kernel_warning.as_deref(), Some("lkdtm_WARNING"));
    let (line, msg) = error_at(&text.replace("\"lkdtm_WARNING\"", "\" \""));
    assert_eq!(line, 4);
    assert!(msg.contains("expect_kernel_warning must be text"), "{msg}");
}

#[test]
fn min_linux_ignores_older_kernels_and_must_be_known() {
    assert_eq!(parse(GOOD).unwrap().too_old(Linux::V6_12), None);
    let text = GOOD.replacen("requires", "min_linux = \"7.2\"\nrequires", 1);
    let s = parse(&text).unwrap();
    assert_eq!(s.min_linux, Some(Linux::V7_2));
    assert_eq!(s.too_old(Linux::V7_2), None);
    assert_eq!(
        s.too_old(Linux::V6_12).as_deref(),
        Some("needs Linux 7.2 or later (min_linux); this is 6.12")
    );
    let (line, msg) = error_at(&text.replace("\"7.2\"", "\"7.9\""));
    assert_eq!(line, 4);
    assert!(
        msg.contains("min_linux \"7.9\" is not a kernel version iobench builds (6.12, 7.2)"),
        "{msg}"
    );
}

#[test]
fn reply_deadline_is_whole_seconds() {
    assert_eq!(parse(GOOD).unwrap().reply_deadline, None);
    let text = GOOD.replacen("requires", "reply_deadline = 20\nrequires", 1);
    assert_eq!(
        parse(&text).unwrap().reply_deadline,
        Some(std::time::Duration::from_secs(20))
    );
    let (line, msg) = error_at(&text.replace("= 20", "= 0"));
    assert_eq!(line, 4);
    assert!(msg.contains("reply_deadline is in seconds"), "{msg}");
}
