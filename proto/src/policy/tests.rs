use super::*;

fn dev(bdf: &str, vendor: u16, device: u16) -> PciDevice {
    PciDevice {
        bdf: bdf.into(),
        vendor,
        device,
        class: 0,
        driver: None,
        iommu_group: None,
    }
}

fn policy() -> Policy {
    Policy {
        target: "lab".into(),
        devices: vec![
            DeviceRule {
                device: DeviceSpec::parse("0000:01:00.0").unwrap(),
                count: None,
            },
            DeviceRule {
                device: DeviceSpec::parse("1234:11E8").unwrap(),
                count: Some(2),
            },
        ],
        writable: DEFAULT_WRITABLE.iter().map(|s| s.to_string()).collect(),
        allow_system_devices: vec![],
        link_addr: None,
    }
}

#[test]
fn device_specs_parse_and_print() {
    assert_eq!(
        DeviceSpec::parse("1234:11E8").unwrap(),
        DeviceSpec::Id {
            vendor: 0x1234,
            device: 0x11e8
        }
    );
    assert_eq!(
        DeviceSpec::parse("0000:0A:1f.7").unwrap().to_string(),
        "0000:0a:1f.7"
    );
    for bad in ["1234", "0000:00:1f.8", "12345:11e8", "0000:00:1f", "x:y"] {
        assert!(DeviceSpec::parse(bad).is_err(), "{bad}");
    }
    let rule: DeviceRule = serde_json::from_str(r#"{"device":"1234:11e8","count":2}"#).unwrap();
    assert_eq!(rule.to_string(), "1234:11e8 ×2");
    assert!(serde_json::from_str::<DeviceRule>(r#"{"device":"nope"}"#).is_err());
}

#[test]
fn the_host_refuses_what_no_machine_could_allow() {
    let p = policy();
    let id = DeviceSpec::parse("1234:11e8").unwrap();
    assert_eq!(p.static_device(&id, 1), Static::Allowed);
    assert!(matches!(p.static_device(&id, 2), Static::Refused(m) if m.contains("declares 2")));
    let addr = DeviceSpec::parse("0000:01:00.0").unwrap();
    assert_eq!(p.static_device(&addr, 0), Static::Allowed);
    // Another address may be one of the declared 1234:11e8: only the agent knows.
    let other = DeviceSpec::parse("0000:02:00.0").unwrap();
    assert_eq!(p.static_device(&other, 0), Static::AgentDecides);
    let by_id_only = Policy {
        devices: vec![p.devices[0].clone()],
        ..p.clone()
    };
    match by_id_only.static_device(&other, 0) {
        Static::Refused(m) => assert!(
            m.contains("target lab's policy") && m.contains("declares 0000:01:00.0"),
            "{m}"
        ),
        s => panic!("{s:?}"),
    }
    let none = Policy {
        devices: vec![],
        ..p
    };
    assert!(
        matches!(none.static_device(&id, 0), Static::Refused(m) if m.contains("declares no devices"))
    );
}

#[test]
fn the_agent_checks_declaration_count_and_system_devices() {
    let p = policy();
    let present = vec![
        dev("0000:00:1f.2", 0x8086, 0x2922),
        dev("0000:01:00.0", 0x15b3, 0x1017),
        dev("0000:02:00.0", 0x1234, 0x11e8),
        dev("0000:03:00.0", 0x1234, 0x11e8),
    ];
    assert!(p.check_device(&present[1], &present, &[]).is_ok());
    assert!(p.check_device(&present[2], &present, &[]).is_ok());
    let e = p.check_device(&present[0], &present, &[]).unwrap_err();
    assert!(
        e.contains("0000:00:1f.2 (8086:2922) is not a declared device"),
        "{e}"
    );
    // One edu short: not the machine the policy describes.
    let e = p.check_device(&present[2], &present[..3], &[]).unwrap_err();
    assert!(e.contains("the machine has 1"), "{e}");
    let protected = [Protected {
        bdf: "0000:01:00.0".into(),
        why: "the root filesystem (/dev/nvme0n1p2) is below it".into(),
    }];
    let e = p
        .check_device(&present[1], &present, &protected)
        .unwrap_err();
    assert!(
        e.contains("root filesystem") && e.contains("allow_system_devices"),
        "{e}"
    );
    let allowed = Policy {
        allow_system_devices: vec!["0000:01:00.0".into()],
        ..p
    };
    assert!(
        allowed
            .check_device(&present[1], &present, &protected)
            .is_ok()
    );
}

#[test]
fn writes_stay_under_the_writable_paths() {
    let p = policy();
    for ok in [
        "/sys/bus/pci/drivers_probe",
        "/sys/kernel/debug/powerpc/eeh_dev_check",
        "/proc/sys/vm/drop_caches",
    ] {
        assert!(p.path_allowed(ok).is_ok(), "{ok}");
    }
    for (bad, why) in [
        ("/etc/passwd", "nothing under /etc"),
        ("/dev/sda", "nothing under /dev"),
        ("/boot/vmlinuz", "nothing under /boot"),
        ("/sys/bus/pcix/x", "none of the writable paths"),
        ("/tmp/x", "none of the writable paths"),
        ("/sys/bus/pci/../../../etc/shadow", "`..`"),
        ("sys/bus/pci/rescan", "absolute"),
    ] {
        let e = p.path_allowed(bad).unwrap_err();
        assert!(e.contains(why) && e.contains("target lab"), "{bad}: {e}");
    }
    assert!(check_writable("/sys/class/").is_ok());
    for bad in ["/etc/", "/", "/boot/efi", "relative/", "/dev/"] {
        assert!(check_writable(bad).is_err(), "{bad}");
    }
}

#[test]
fn writes_that_act_on_a_device_name_it() {
    let a = |s: &str| DeviceSpec::parse(s).unwrap();
    assert_eq!(
        named_devices("/sys/bus/pci/devices/0000:01:00.0/remove", "1"),
        vec![a("0000:01:00.0")]
    );
    assert_eq!(
        named_devices("/sys/bus/pci/drivers/nvme/unbind", "0000:00:1f.2\n"),
        vec![a("0000:00:1f.2")]
    );
    assert_eq!(
        named_devices("/sys/kernel/debug/powerpc/eeh_dev_break", "0001:00:01.0:0"),
        vec![a("0001:00:01.0")]
    );
    assert_eq!(
        named_devices("/sys/bus/pci/drivers/vfio-pci/new_id", "8086 1521"),
        vec![a("8086:1521")]
    );
    assert!(named_devices("/proc/sys/vm/drop_caches", "3").is_empty());
}

#[test]
fn the_policy_travels_in_hello() {
    let m = crate::HostMsg::Hello {
        protocol: crate::PROTOCOL_VERSION,
        policy: Some(policy()),
    };
    let line = crate::encode(&m);
    assert!(
        String::from_utf8_lossy(&line).contains(r#""device":"1234:11e8","count":2"#),
        "{}",
        String::from_utf8_lossy(&line)
    );
    assert_eq!(crate::decode::<crate::HostMsg>(&line).unwrap(), m);
    // A QEMU guest's hello has no policy at all.
    let bare = crate::encode(&crate::HostMsg::Hello {
        protocol: 2,
        policy: None,
    });
    assert_eq!(bare, b"{\"type\":\"hello\",\"protocol\":2}\n");
}
