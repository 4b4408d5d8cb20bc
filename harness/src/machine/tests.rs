use super::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../qemu-configs");

fn parse(text: &str) -> Result<Machine, MachineError> {
    Machine::from_toml(text, Path::new("t.toml"))
}

fn q35() -> String {
    std::fs::read_to_string(Path::new(DIR).join("q35.toml")).unwrap()
}

#[test]
fn shipped_definitions_load() {
    let names = available(Path::new(DIR));
    for n in ["pseries", "pseries-2pe", "pseries-64k", "q35"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
        let m = Machine::find(Path::new(DIR), n).unwrap();
        assert_eq!(m.name, n);
    }
    let p = Machine::find(Path::new(DIR), "pseries-2pe").unwrap();
    assert_eq!(p.devices.len(), 2);
    assert_eq!(p.vfio_ids(), vec!["1234:11e8"]);
}

#[test]
fn unknown_key_names_file_and_line() {
    let text = q35().replace("cpus = 1", "cpus = 1\nfloppy = true");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.starts_with("t.toml:"), "{e}");
    assert!(e.contains("floppy"), "{e}");
    let line: usize = e.split(':').nth(1).unwrap().parse().unwrap();
    assert_eq!(text.lines().nth(line - 1).unwrap(), "floppy = true");
}

#[test]
fn unknown_device_kind_is_rejected() {
    let text = q35().replace("kind = \"edu\"", "kind = \"nvme\"");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("nvme") && e.contains("edu"), "{e}");
}

#[test]
fn bad_size_is_rejected() {
    let e = parse(&q35().replace("memory = \"1G\"", "memory = \"lots\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad size"), "{e}");
    let e = parse(&q35().replace("memory = \"1G\"", "memory = \"1M\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("too small"), "{e}");
}

#[test]
fn broken_toml_is_reported() {
    let e = parse("name = \"x\"\narch = [").unwrap_err().to_string();
    assert!(
        e.starts_with("t.toml:2:") || e.starts_with("t.toml:3:"),
        "{e}"
    );
}

#[test]
fn arch_and_machine_must_agree() {
    let e = parse(&q35().replace("machine = \"q35\"", "machine = \"pseries\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs machine \"q35\""), "{e}");
}

#[test]
fn pseries_devices_need_their_own_phb() {
    let text = std::fs::read_to_string(Path::new(DIR).join("pseries-2pe.toml")).unwrap();
    let e = parse(&text.replace("phb = 2", "phb = 1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not shared"), "{e}");
    let e = parse(&text.replace("phb = 2\n", ""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("need phb"), "{e}");
}

#[test]
fn unknown_machine_lists_the_available_ones() {
    let e = Machine::find(Path::new(DIR), "vax")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown machine \"vax\"") && e.contains("q35"),
        "{e}"
    );
}

#[test]
fn overrides_apply() {
    let mut m = parse(&q35()).unwrap();
    m.apply(&Overrides {
        memory: Some(Size::parse("2G").unwrap()),
        cpus: Some(2),
        extra_args: vec!["-S".into()],
        cmdline: Some("foo=1".into()),
    });
    assert_eq!(m.memory, Size(2 << 30));
    assert_eq!(m.cpus, 2);
    assert_eq!(m.qemu.extra_args, vec!["-S"]);
    assert_eq!(m.kernel.cmdline, "intel_iommu=on foo=1");
}

#[test]
fn emulated_eeh_needs_the_patched_qemu() {
    let text = std::fs::read_to_string(Path::new(DIR).join("pseries-eeh.toml")).unwrap();
    let m = parse(&text).unwrap();
    assert_eq!(m.qemu.build, QemuBuild::Patched);
    let stock = text.replace("build = \"patched\"", "build = \"stock\"");
    let e = parse(&stock).unwrap_err().to_string();
    assert!(
        e.contains("eeh = true needs") && e.contains("patched"),
        "{e}"
    );
}

#[test]
fn a_bridged_edu_shares_its_phb_and_needs_slof() {
    let text = std::fs::read_to_string(Path::new(DIR).join("pseries-eeh-bridge.toml")).unwrap();
    let m = parse(&text).unwrap();
    assert_eq!((m.devices.len(), m.pe_count()), (2, 1));
    let e = parse(&text.replace(
        "options = { cap-cfpc",
        "options = { x-vof = \"on\", cap-cfpc",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs SLOF"), "{e}");
    let e = parse(&text.replace("bridge = true", "bridge = false"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not shared"), "{e}");
    let e = parse(&text.replace("eeh = true\nbridge", "eeh = false\nbridge"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("all have eeh, or none"), "{e}");
    let q35 = parse(&q35()).unwrap();
    assert_eq!(q35.pe_count(), q35.devices.len());
}
