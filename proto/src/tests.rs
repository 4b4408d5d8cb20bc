use super::*;
use std::io::Cursor;

fn hello() -> AgentMsg {
    AgentMsg::Hello(AgentHello {
        protocol: PROTOCOL_VERSION,
        agent_version: "0.1.0".into(),
        kernel: "6.12.95".into(),
        machine: "ppc64le".into(),
        page_size: 65536,
        protected: vec![],
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
        steps: vec![Step {
            op: "spapr_create_window".into(),
            args,
            expect: Expect::Errno("ENOSPC".into()),
            bind: Some("w".into()),
        }],
        keep_going: false,
    };
    let host = [
        HostMsg::Hello {
            protocol: PROTOCOL_VERSION,
            policy: None,
        },
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
            devices: vec![PciDevice {
                bdf: "0001:00:01.0".into(),
                vendor: 0x1234,
                device: 0x11e8,
                class: 0xff0000,
                driver: Some("vfio-pci".into()),
                iommu_group: Some(1),
            }],
            features: vec!["vfio-container".into()],
        }),
        AgentMsg::Step(StepResult {
            index: 0,
            op: "x".into(),
            expected: Expect::Ok,
            actual: Actual::Errno {
                name: "EINVAL".into(),
                code: 22,
            },
            passed: false,
            micros: 3,
        }),
        AgentMsg::Done(ScenarioOutcome {
            name: "x".into(),
            steps_run: 1,
            passed: false,
        }),
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
    assert!(matches!(
        recv::<HostMsg, _>(&mut Cursor::new(big)),
        Err(DecodeError::TooLong(_))
    ));
}

#[test]
fn unknown_type_is_malformed() {
    let e = decode::<HostMsg>(br#"{"type":"format_disk"}"#).unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");
    // `log` was never sent by any agent and is no message type any more.
    let e = decode::<AgentMsg>(br#"{"type":"log","message":"x"}"#).unwrap_err();
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
    noisy.extend_from_slice(
        b"[    1.300] EEH: No capable adapters found\r\n@@IOB 5 deadbeef xxxxx\n",
    );
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

/// A frame with `insert` spliced in at byte `at` of the whole frame line.
fn frame_with(line: &[u8], at: usize, insert: &[u8]) -> Vec<u8> {
    let mut f = framing::frame(line);
    let tail = f.split_off(at);
    f.extend_from_slice(insert);
    f.extend_from_slice(&tail);
    f
}

fn deframe_bytewise(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut d = framing::Deframer::new();
    bytes
        .iter()
        .flat_map(|b| d.push(std::slice::from_ref(b)))
        .collect()
}

#[test]
fn kernel_lines_printed_inside_a_frame_are_cut_out() {
    // A dmesg reply quotes timestamped lines itself: only the real insertion goes.
    let msg = AgentMsg::Dmesg {
        lines: vec![
            "[    0.000000] random: crng init done".into(),
            "[    0.580011] iobench-printk-noise".into(),
        ],
    };
    let line = encode(&msg);
    let noise = b"[    0.639117] iobench-printk-noise\r\n";
    let len = framing::frame(&line).len();
    for at in [7, 12, 25, 40, len / 2, len - 2, len - 1] {
        let got = deframe_bytewise(&frame_with(&line, at, noise));
        assert_eq!(got.len(), 1, "insertion at {at}");
        assert_eq!(decode::<AgentMsg>(&got[0]).unwrap(), msg);
    }
    // Two kernel lines in one frame, one of them a two-line burst.
    let mut two = frame_with(&line, 30, b"[   12.5] a\r\n[   12.6] b\r\n");
    let i = two.len() - 10;
    two.splice(i..i, noise.iter().copied());
    assert_eq!(deframe_bytewise(&two).len(), 1);
    // Without printk.time: one untimestamped line is cut out by the frame's length.
    let got = deframe_bytewise(&frame_with(&line, 50, b"EEH: PE#1 frozen\r\n"));
    assert_eq!(decode::<AgentMsg>(&got[0]).unwrap(), msg);
    // A damaged payload is still refused.
    let mut bad = framing::frame(&line);
    bad[60] ^= 1;
    assert!(deframe_bytewise(&bad).is_empty());
}

#[test]
fn crc32_matches_reference() {
    assert_eq!(framing::crc32(b"123456789"), 0xCBF4_3926);
}

mod values_tests {
    use serde_json::json;

    use crate::values::{self, Pattern, Reference, parse_u64, satisfies, value_matches};
    use crate::{Actual, Expect};

    #[test]
    fn numbers_in_every_spelling() {
        assert_eq!(parse_u64(&json!(4096)), Ok(4096));
        assert_eq!(parse_u64(&json!("0x800000000000000")), Ok(1 << 59));
        assert_eq!(parse_u64(&json!("64K")), Ok(65536));
        assert_eq!(parse_u64(&json!("1G")), Ok(1 << 30));
        assert_eq!(parse_u64(&json!("16T")), Ok(1 << 44));
        assert_eq!(parse_u64(&json!("max")), Ok(u64::MAX));
        assert_eq!(parse_u64(&json!("1_000")), Ok(1000));
        assert!(parse_u64(&json!(-1)).is_err());
        assert!(parse_u64(&json!("lots")).is_err());
        assert!(parse_u64(&json!("99999999999T")).is_err());
        assert!(parse_u64(&json!(true)).is_err());
    }

    #[test]
    fn references_parse_and_resolve() {
        let r = Reference::parse("$win.start_addr+0x10000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.name.as_str(), r.path.as_slice(), r.offset),
            ("win", &["start_addr".to_string()][..], 0x10000)
        );
        assert_eq!(
            r.resolve(&json!({"start_addr": 1u64 << 59})),
            Ok(json!((1u64 << 59) + 0x10000))
        );
        let minus = Reference::parse("$x-4K").unwrap().unwrap();
        assert_eq!(minus.resolve(&json!(8192)), Ok(json!(4096)));
        assert!(minus.resolve(&json!(1)).is_err(), "underflow is an error");
        assert!(Reference::parse("plain").is_none());
        assert!(Reference::parse("$").unwrap().is_err());
        assert!(Reference::parse("$a..b").unwrap().is_err());
        let whole = Reference::parse("$h").unwrap().unwrap();
        assert_eq!(
            whole.resolve(&json!({"handle": 1})),
            Ok(json!({"handle": 1}))
        );
        assert!(
            Reference::parse("$h.nope")
                .unwrap()
                .unwrap()
                .resolve(&json!({"handle": 1}))
                .is_err()
        );
    }

    #[test]
    fn patterns_are_position_dependent_sequences_or_bytes() {
        assert_eq!(Pattern::parse("byte:0x5a"), Ok(Pattern::Byte(0x5a)));
        assert_eq!(Pattern::parse("seq:7"), Ok(Pattern::Seq(7)));
        assert!(Pattern::parse("byte:300").is_err());
        assert!(Pattern::parse("stripes").is_err());
        let p = Pattern::Seq(11);
        let bytes: Vec<u8> = (0..64).map(|i| p.byte_at(i)).collect();
        assert!(
            bytes.windows(2).any(|w| w[0] != w[1]),
            "a sequence must vary"
        );
        assert_ne!(
            bytes,
            (0..64)
                .map(|i| Pattern::Seq(12).byte_at(i))
                .collect::<Vec<_>>(),
            "seeds differ"
        );
    }

    #[test]
    fn values_match_as_subsets_and_numbers_by_value() {
        let actual = json!({"start_addr": 576460752303423488u64, "levels": 1, "extra": "x"});
        assert!(value_matches(
            &json!({"start_addr": "0x800000000000000"}),
            &actual
        ));
        assert!(!value_matches(&json!({"start_addr": 0}), &actual));
        assert!(!value_matches(&json!({"missing": 1}), &actual));
        assert!(value_matches(&json!([[0, "max"]]), &json!([[0, u64::MAX]])));
        assert!(!value_matches(&json!([[0, 1]]), &json!([[0, 1], [2, 3]])));
        assert!(value_matches(&json!("1G"), &json!(1u64 << 30)));
    }

    #[test]
    fn expectations() {
        let ok = Actual::Value(json!(0));
        let enxio = Actual::Errno {
            name: "ENXIO".into(),
            code: 6,
        };
        let broken = Actual::Error("no such handle".into());
        assert!(satisfies(&Expect::Ok, &ok) && !satisfies(&Expect::Ok, &enxio));
        assert!(satisfies(&Expect::Errno("ENXIO".into()), &enxio));
        assert!(!satisfies(&Expect::Errno("EINVAL".into()), &enxio));
        assert!(
            satisfies(&Expect::Value(json!(0)), &ok) && !satisfies(&Expect::Value(json!(1)), &ok)
        );
        assert!(satisfies(&Expect::Any, &ok) && satisfies(&Expect::Any, &enxio));
        assert!(
            !satisfies(&Expect::Any, &broken),
            "an agent-side error never satisfies"
        );
    }

    #[test]
    fn errno_names_and_numbers() {
        assert_eq!(values::errno_code("EADDRINUSE"), Some(98));
        assert_eq!(values::errno_name(6), "ENXIO");
        assert_eq!(values::errno_name(4242), "E4242");
    }
}

mod ops_tests {
    use crate::ops;

    #[test]
    fn catalogue_is_sorted_unique_and_well_formed() {
        let names: Vec<&str> = ops::OPS.iter().map(|o| o.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
        for op in ops::OPS {
            let mut args: Vec<&str> = op.args.iter().map(|a| a.name).collect();
            let n = args.len();
            args.sort();
            args.dedup();
            assert_eq!(args.len(), n, "{} repeats an argument", op.name);
            assert!(
                !args.contains(&"op") && !args.contains(&"expect") && !args.contains(&"bind"),
                "{} shadows a step key",
                op.name
            );
        }
    }

    #[test]
    fn values_are_reexported_for_the_agent() {
        assert_eq!(ops::parse_u64(&serde_json::json!("4K")), Ok(4096));
        assert_eq!(ops::errno_code("ENXIO"), Some(6));
    }
}

#[test]
fn keep_going_defaults_to_off_and_is_sent_only_when_on() {
    let old: Scenario = serde_json::from_str(r#"{"name":"x","steps":[]}"#).unwrap();
    assert!(!old.keep_going);
    assert!(
        !String::from_utf8(encode(&old))
            .unwrap()
            .contains("keep_going")
    );
    let batch = Scenario {
        keep_going: true,
        ..old
    };
    let line = encode(&batch);
    assert!(String::from_utf8_lossy(&line).contains("\"keep_going\":true"));
    assert_eq!(decode::<Scenario>(&line).unwrap(), batch);
}

#[test]
fn long_messages_go_in_parts_and_come_back_whole() {
    use crate::parts::{Assembler, PART, split};
    let small = encode(&AgentMsg::Bye);
    assert!(split(&small).is_none());
    // Multi-byte characters straddle the part boundaries.
    let msg = AgentMsg::Error {
        message: "ä€x".repeat(PART / 2),
    };
    let line = encode(&msg);
    let parts = split(&line).expect("long");
    assert!(parts.len() > 2);
    let mut asm = Assembler::default();
    let mut whole = None;
    for (i, p) in parts.iter().enumerate() {
        // Each part is a message of its own, short enough to go whole.
        let encoded = encode(p);
        assert!(
            encoded.len() <= 2 * PART,
            "part {i} is {} bytes",
            encoded.len()
        );
        let AgentMsg::Part { data, last } = decode::<AgentMsg>(&encoded).unwrap() else {
            panic!("part {i} is not a part");
        };
        assert_eq!(last, i + 1 == parts.len());
        whole = asm.push(&data, last);
        assert_eq!(whole.is_some(), last);
    }
    assert_eq!(whole.unwrap().unwrap(), msg);
}

#[test]
fn coverage_round_trips_and_keeps_full_kernel_addresses() {
    let on = encode(&HostMsg::Coverage { on: true });
    assert_eq!(
        decode::<HostMsg>(&on).unwrap(),
        HostMsg::Coverage { on: true }
    );
    // ppc64le kernel addresses are above i64::MAX.
    let msg = AgentMsg::Coverage {
        pcs: vec![0xc000_0000_0012_3458, 0xffff_ffff_8100_1009],
        first_step: vec![0, 3],
        lost: false,
        error: None,
    };
    let line = encode(&msg);
    assert!(!String::from_utf8_lossy(&line).contains("lost"));
    assert_eq!(decode::<AgentMsg>(&line).unwrap(), msg);
    // An old-style message without the optional fields still decodes.
    let bare = decode::<AgentMsg>(b"{\"type\":\"coverage\",\"pcs\":[1]}\n").unwrap();
    assert_eq!(
        bare,
        AgentMsg::Coverage {
            pcs: vec![1],
            first_step: vec![],
            lost: false,
            error: None
        }
    );
}
