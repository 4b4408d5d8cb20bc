use super::*;

const LAB: &str = r#"
[target.power9]
kind = "ssh"
description = "POWER9 box in the lab"
arch = "ppc64le"
host = "p9.lab.example"
user = "ci"
key = "/home/ci/.ssh/id_ed25519"
sudo = true
power_cycle = ["/usr/local/bin/pdu", "cycle", "7"]

[target.board]
kind = "serial"
description = "a board on a console server"
arch = "ppc64le"
console = "tcp:consoles.lab.example:7001"
login = "root"
password_env = "BOARD_PASSWORD"
"#;

fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lab.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

#[test]
fn targets_load_with_defaults() {
    let (_d, p) = write(LAB);
    match TargetDef::load(&p, "power9").unwrap() {
        TargetDef::Ssh(s) => {
            assert_eq!(
                (s.port, s.sudo, s.trust_on_first_use, s.timeout_s),
                (22, true, false, 120)
            );
            assert_eq!(s.arch, Arch::Ppc64le);
        }
        other => panic!("{other:?}"),
    }
    match TargetDef::load(&p, "board").unwrap() {
        TargetDef::Serial(s) => {
            assert_eq!(s.agent, "/sbin/guest-agent");
            assert_eq!(s.password_env.as_deref(), Some("BOARD_PASSWORD"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_targets_are_named_errors() {
    let (_d, p) = write(LAB);
    let e = TargetDef::load(&p, "nope").unwrap_err().to_string();
    assert!(
        e.contains("no target \"nope\"") && e.contains("board, power9"),
        "{e}"
    );
    let (_d, p) = write(&LAB.replace("user = \"ci\"", "user = \"ci\"\npassword = \"hunter2\""));
    let e = TargetDef::load(&p, "power9").unwrap_err().to_string();
    assert!(
        e.contains("lab.toml:") && e.contains("password"),
        "a password in the file is refused: {e}"
    );
    let (_d, p) = write(&LAB.replace("kind = \"ssh\"", "kind = \"telnet\""));
    assert!(TargetDef::load(&p, "power9").is_err());
}

#[test]
fn shell_quoting_survives_quotes_and_spaces() {
    assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
}

#[test]
fn console_tail_keeps_the_last_lines() {
    let mut t = ConsoleTail::default();
    t.push(b"one\r\ntwo\nthr");
    t.push(b"ee\n");
    assert_eq!(t.last(2), vec!["two".to_string(), "three".to_string()]);
}

#[test]
fn the_readme_lab_example_and_the_shipped_targets_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("```toml")
        .map(|b| b.split("```").next().unwrap_or(""))
        .find(|b| b.contains("[target.power9]"))
        .expect("README has a lab example");
    let file: TargetsFile =
        toml::from_str(block).unwrap_or_else(|e| panic!("README lab example: {e}"));
    assert!(
        matches!(file.target["power9"], TargetDef::Ssh(_))
            && matches!(file.target["x86-console"], TargetDef::Serial(_))
    );
    assert!(file.target["power9"].has_power_cycle());
    // The lab examples show the policy keys.
    assert_eq!(file.target["power9"].policy("power9").devices.len(), 2);
    assert_eq!(
        file.target["x86-console"]
            .policy("x86-console")
            .devices
            .len(),
        1
    );
    let shipped =
        TargetsFile::load(&root.join("targets/lab.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        shipped.target.contains_key("ssh-loopback")
            && shipped.target.contains_key("serial-pseries")
    );
    // The stand-ins have policies: the loopback host's devices are not ours.
    assert!(
        shipped.target["ssh-loopback"]
            .policy("ssh-loopback")
            .devices
            .is_empty()
    );
    assert_eq!(
        shipped.target["serial-pseries"]
            .policy("serial-pseries")
            .devices[0]
            .to_string(),
        "1234:11e8 ×1"
    );
}
