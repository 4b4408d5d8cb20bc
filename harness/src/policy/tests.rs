use std::path::Path;

use super::*;
use crate::target::{TargetDef, TargetsFile};

const LAB: &str = r#"
[target.p9]
kind = "ssh"
description = "a lab box"
arch = "ppc64le"
host = "p9.lab.example"
user = "ci"
devices = ["0030:01:00.0", { id = "1234:11e8", count = 2 }]
allow_system_devices = ["0030:01:00.0"]

[target.bare]
kind = "serial"
description = "a board that declares nothing"
arch = "ppc64le"
console = "tcp:consoles.lab.example:7001"
writable = ["/sys/bus/pci/"]
"#;

fn load(text: &str) -> Result<TargetsFile, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lab.toml");
    std::fs::write(&p, text).unwrap();
    TargetsFile::load(&p).map_err(|e| e.to_string())
}

fn scenario(steps: &str) -> ScenarioFile {
    let text = format!("description = \"t\"\nmachines = [\"p9\"]\n{steps}");
    ScenarioFile::parse(&text, Path::new("scenarios/lab/t.toml"), "lab::t")
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn targets_declare_devices_and_paths() {
    let file = load(LAB).unwrap();
    let p9 = file.target["p9"].policy("p9");
    assert_eq!(p9.target, "p9");
    assert_eq!(
        p9.devices.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        ["0030:01:00.0", "1234:11e8 ×2"]
    );
    assert_eq!(
        p9.writable,
        iobench_proto::policy::DEFAULT_WRITABLE.to_vec()
    );
    assert_eq!(p9.allow_system_devices, ["0030:01:00.0"]);
    let bare = file.target["bare"].policy("bare");
    assert!(bare.devices.is_empty());
    assert_eq!(bare.writable, ["/sys/bus/pci/"]);
    assert!(matches!(file.target["bare"], TargetDef::Serial(_)));
}

#[test]
fn bad_declarations_are_errors_with_their_line() {
    for (from, to, want) in [
        (
            r#"devices = ["0030:01:00.0","#,
            r#"devices = ["0030:01:00.9","#,
            "lab.toml:8",
        ),
        (
            r#"{ id = "1234:11e8", count = 2 }"#,
            r#"{ id = "0030:01:00.0", count = 2 }"#,
            "count goes with vendor:device",
        ),
        (
            r#"writable = ["/sys/bus/pci/"]"#,
            r#"writable = ["/sys/bus/pci/", "/etc/"]"#,
            "lab.toml:16",
        ),
        (
            r#"writable = ["/sys/bus/pci/"]"#,
            r#"writable = ["/sys/bus/pci/../../../boot"]"#,
            "`..`",
        ),
        (
            r#"allow_system_devices = ["0030:01:00.0"]"#,
            r#"allow_system_devices = ["1234:11e8"]"#,
            "not a PCI address",
        ),
    ] {
        let e = load(&LAB.replace(from, to)).unwrap_err();
        assert!(e.contains(want), "{to}: {e}");
    }
    let e = load(&LAB.replace(r#"writable = ["/sys/bus/pci/"]"#, r#"writable = ["/etc/"]"#))
        .unwrap_err();
    assert!(e.contains("never write under /etc"), "{e}");
}

#[test]
fn scenarios_are_checked_step_by_step_with_their_line() {
    let file = load(LAB).unwrap();
    let p9 = file.target["p9"].policy("p9");
    let ok = scenario(
        r#"
[[step]]
op = "pci.bind_vfio"
device = "1234:11e8"
index = 1

[[step]]
op = "vfio.group_open"
device = "0030:01:00.0"

[[step]]
op = "file.write"
path = "/sys/kernel/debug/powerpc/eeh_dev_check"
data = "0030:01:00.0"
"#,
    );
    check(&ok, &p9).unwrap_or_else(|e| panic!("{e}"));
    // 8086:1521 might be 0030:01:00.0 (the agent would tell); without
    // declared addresses the host knows at once.
    let ids = iobench_proto::policy::Policy {
        devices: p9.devices[1..].to_vec(),
        ..p9.clone()
    };
    let e = check(
        &scenario(
            r#"
[[step]]
op = "mem.alloc"
size = "4K"

[[step]]
op = "vfio.cdev_open"
device = "8086:1521"
"#,
        ),
        &ids,
    )
    .unwrap_err();
    assert_eq!((e.line, e.step), (8, 2));
    let text = e.to_string();
    assert!(
        text.starts_with("scenarios/lab/t.toml:8: step 2 (vfio.cdev_open): refused by target p9's policy: 8086:1521 is not a declared device (it declares 1234:11e8 ×2)"),
        "{text}"
    );
    let e = check(
        &scenario("[[step]]\nop = \"pci.bind_vfio\"\ndevice = \"1234:11e8\"\nindex = 2\n"),
        &p9,
    )
    .unwrap_err();
    assert!(e.why.contains("declares 2"), "{e}");
    for (path, data, why) in [
        ("/etc/hosts", "x", "nothing under /etc"),
        ("/tmp/x", "x", "none of the writable paths"),
        (
            "/sys/bus/pci/drivers/vfio-pci/new_id",
            "8086 1521",
            "8086:1521",
        ),
    ] {
        let s = scenario(&format!(
            "[[step]]\nop = \"file.write\"\npath = \"{path}\"\ndata = \"{data}\"\n"
        ));
        let e = check(&s, &p9).unwrap_err().to_string();
        assert!(e.contains(why) && e.contains("t.toml:3"), "{path}: {e}");
    }
    // Under a policy that declares nothing, an address is refused at once.
    let bare = file.target["bare"].policy("bare");
    let e = check(&ok, &bare).unwrap_err();
    assert!(e.why.contains("declares no devices"), "{e}");
    // References are the agent's to check.
    let refs = scenario(
        "[[step]]\nop = \"file.read\"\npath = \"/proc/cmdline\"\nbind = \"p\"\n\n[[step]]\nop = \"file.write\"\npath = \"$p\"\ndata = \"x\"\n",
    );
    check(&refs, &bare).unwrap();
}
