use super::*;
use std::io::Cursor;

fn hello() -> AgentMsg {
    AgentMsg::Hello(AgentHello {
        protocol: PROTOCOL_VERSION,
        agent_version: "0.1.0".into(),
        kernel: "6.12.95".into(),
        machine: "ppc64le".into(),
        page_size: 65536,
    })
}

/// A tiny deterministic PRNG so the fuzz test needs no dependency.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn round_trip_every_message() {
    let mut args = BTreeMap::new();
    args.insert("iova".to_string(), serde_json::json!("$win"));
    let scenario = Scenario {
        name: "windows::create".into(),
        steps: vec![Step { op: "spapr_create_window".into(), args, expect: Expect::Errno("ENOSPC".into()), bind: Some("w".into()) }],
    };
    let host = [
        HostMsg::Hello { protocol: 1 },
        HostMsg::Inventory,
        HostMsg::Run { scenario },
        HostMsg::Dmesg,
        HostMsg::Shutdown { poweroff: true },
    ];
    for m in host {
        let line = encode(&m);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(decode::<HostMsg>(&line).unwrap(), m);
    }
    let agent = [
        hello(),
        AgentMsg::Inventory(Inventory {
            devices: vec![PciDevice { bdf: "0001:00:01.0".into(), vendor: 0x1234, device: 0x11e8, class: 0xff0000, driver: Some("vfio-pci".into()), iommu_group: Some(1) }],
            features: vec!["vfio-container".into()],
        }),
        AgentMsg::Step(StepResult { index: 0, op: "x".into(), expected: Expect::Ok, actual: Actual::Errno { name: "EINVAL".into(), code: 22 }, passed: false, micros: 3 }),
        AgentMsg::Done(ScenarioOutcome { name: "x".into(), steps_run: 1, passed: false }),
        AgentMsg::Bye,
    ];
    let mut stream = Vec::new();
    for m in &agent {
        send(&mut stream, m).unwrap();
    }
    let mut r = Cursor::new(stream);
    for m in &agent {
        assert_eq!(recv::<AgentMsg, _>(&mut r).unwrap().as_ref(), Some(m));
    }
    assert!(recv::<AgentMsg, _>(&mut r).unwrap().is_none());
}

#[test]
fn garbage_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..2000 {
        let len = (rng.next() % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if round % 3 == 0 {
            // Mutate a valid message instead of pure noise.
            bytes = encode(&hello());
            let i = (rng.next() as usize) % bytes.len();
            bytes[i] = rng.next() as u8;
        }
        let _ = decode::<AgentMsg>(&bytes);
        let _ = recv::<HostMsg, _>(&mut Cursor::new(&bytes));
        let mut d = framing::Deframer::new();
        let _ = d.push(&bytes);
    }
}

#[test]
fn overlong_line_is_an_error() {
    let big = vec![b'a'; MAX_LINE + 10];
    assert!(matches!(recv::<HostMsg, _>(&mut Cursor::new(big)), Err(DecodeError::TooLong(_))));
}

#[test]
fn unknown_type_is_malformed() {
    let e = decode::<HostMsg>(br#"{"type":"format_disk"}"#).unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");
}

#[test]
fn version_mismatch_is_explained() {
    assert!(check_version(PROTOCOL_VERSION).is_ok());
    let e = check_version(PROTOCOL_VERSION + 1).unwrap_err();
    assert!(e.contains("mismatch") && e.contains("rebuild"), "{e}");
}

#[test]
fn frames_survive_printk_noise() {
    let a = encode(&hello());
    let b = encode(&AgentMsg::Bye);
    let mut noisy = b"[    1.234] vfio-pci 0001:00:01.0: enabling\r\n".to_vec();
    let fa = framing::frame(&a);
    // A printk line lands in the middle of the first frame's line... after it is complete.
    noisy.extend_from_slice(&fa);
    noisy.extend_from_slice(b"[    1.300] EEH: No capable adapters found\r\n@@IOB 5 deadbeef xxxxx\n");
    noisy.extend_from_slice(&framing::frame(&b));
    let mut d = framing::Deframer::new();
    // Feed byte by byte to exercise partial frames.
    let mut got = Vec::new();
    for byte in &noisy {
        got.extend(d.push(std::slice::from_ref(byte)));
    }
    assert_eq!(got.len(), 2);
    assert_eq!(decode::<AgentMsg>(&got[0]).unwrap(), hello());
    assert_eq!(decode::<AgentMsg>(&got[1]).unwrap(), AgentMsg::Bye);
    assert_eq!(d.rejected(), 1, "the forged frame must be rejected");
}

#[test]
fn crc32_matches_reference() {
    assert_eq!(framing::crc32(b"123456789"), 0xCBF4_3926);
}
