//! iommufd's event queues, each read (and the fault queue answered) through
//! a file descriptor of its own: the fault queue of I/O page faults
//! (`IOMMU_FAULT_QUEUE_ALLOC`: its fd yields `iommu_hwpt_pgfault` records
//! and takes `iommu_hwpt_page_response`s) and a vIOMMU's event queue
//! (`IOMMU_VEVENTQ_ALLOC`: its fd yields an `iommufd_vevent_header` and the
//! type's data per event, or a bare header flagged `LOST_EVENTS` after an
//! overflow), with the mock device's triggers for both
//! (`IOMMU_TEST_OP_TRIGGER_IOPF`, `IOMMU_TEST_OP_TRIGGER_VEVENT`).  Reads
//! never wait: an empty queue reads as no records.

use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use serde_json::{Value, json};

use super::super::with_file;
use crate::args::Args;
use crate::ctx::{Ctx, Object};
use crate::outcome::{OpError, OpResult};
use crate::uapi::{argsz, iofd, iommufd_ioctl as io, selftest};

/// Fault response codes by name, as `fault.respond` takes them.
pub const RESPONSE_CODES: &[(&str, u32)] = &[
    (
        "success",
        iofd::iommufd_page_response_code_IOMMUFD_PAGE_RESP_SUCCESS,
    ),
    (
        "invalid",
        iofd::iommufd_page_response_code_IOMMUFD_PAGE_RESP_INVALID,
    ),
];

/// vEVENTQ types by name, as `veventq.alloc` takes them.
pub const VEVENTQ_TYPES: &[(&str, u32)] = &[
    ("selftest", selftest::VEVENTQ_TYPE_SELFTEST),
    (
        "default",
        iofd::iommu_veventq_type_IOMMU_VEVENTQ_TYPE_DEFAULT,
    ),
    (
        "arm_smmuv3",
        iofd::iommu_veventq_type_IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
    ),
    (
        "tegra241_cmdqv",
        iofd::iommu_veventq_type_IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV,
    ),
];

/// The length of one event's data in a vEVENTQ of type `ty`.
fn event_len(ty: u32) -> usize {
    use std::mem::size_of;
    match ty {
        selftest::VEVENTQ_TYPE_SELFTEST => size_of::<selftest::ViommuEventSelftest>(),
        iofd::iommu_veventq_type_IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 => {
            size_of::<iofd::iommu_vevent_arm_smmuv3>()
        }
        iofd::iommu_veventq_type_IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV => {
            size_of::<iofd::iommu_vevent_tegra241_cmdqv>()
        }
        _ => 0,
    }
}

/// Keeps the new queue's descriptor as a handle of `kind`, with `extra` fields.
fn add_queue(ctx: &mut Ctx, kind: &'static str, raw_fd: u32, extra: Value) -> Value {
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw_fd as i32) };
    ctx.add(Object::Fd { kind, fd }, extra)
}

/// One `read(2)` of up to `len` bytes.
fn read_queue(fd: BorrowedFd<'_>, len: usize) -> Result<Vec<u8>, OpError> {
    let mut buf = vec![0u8; len];
    let n = with_file(fd, |mut f| f.read(&mut buf))?;
    buf.truncate(n);
    Ok(buf)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_ne_bytes(b)
}

/// `fault.alloc`: yields a handle with its `fault_id`.
pub fn fault_alloc(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut f = iofd::iommu_fault_alloc {
        size: argsz::<iofd::iommu_fault_alloc>(),
        ..Default::default()
    };
    io::FAULT_QUEUE_ALLOC.call(ctx.fd(args, "iommufd")?, &mut f)?;
    Ok(add_queue(
        ctx,
        "fault",
        f.out_fault_fd,
        json!({ "fault_id": f.out_fault_id }),
    ))
}

/// `fault.read`: up to `max` faults; yields `{count, faults: […],
/// cookie}`, `cookie` being the last fault's (the one a response echoes).
pub fn fault_read(ctx: &mut Ctx, args: &Args) -> OpResult {
    const SIZE: usize = std::mem::size_of::<iofd::iommu_hwpt_pgfault>();
    let max = args.u64_or("max", 16)? as usize;
    let bytes = read_queue(ctx.fd(args, "fault")?, max * SIZE)?;
    if bytes.len() % SIZE != 0 {
        return Err(OpError::Error(format!(
            "read {} bytes, not whole {SIZE}-byte faults",
            bytes.len()
        )));
    }
    let faults: Vec<iofd::iommu_hwpt_pgfault> = bytes
        .chunks_exact(SIZE)
        // SAFETY: each chunk holds SIZE bytes, and the struct is integers
        // only, so any bytes are a valid value.
        .map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast()) })
        .collect();
    let list: Vec<Value> = faults
        .iter()
        .map(|f| {
            json!({
                "flags": f.flags, "dev_id": f.dev_id, "pasid": f.pasid, "grpid": f.grpid,
                "perm": f.perm, "addr": f.addr, "length": f.length, "cookie": f.cookie,
            })
        })
        .collect();
    Ok(json!({
        "count": list.len(),
        "faults": list,
        "cookie": faults.last().map(|f| f.cookie),
    }))
}

/// `fault.respond`: writes one `iommu_hwpt_page_response`.
pub fn fault_respond(ctx: &mut Ctx, args: &Args) -> OpResult {
    let r = iofd::iommu_hwpt_page_response {
        cookie: args.u32("cookie")?,
        code: args.choice("code", RESPONSE_CODES)?,
    };
    // The struct's bytes: two u32s, no padding (checked against the header).
    let bytes = [r.cookie.to_ne_bytes(), r.code.to_ne_bytes()].concat();
    let n = with_file(ctx.fd(args, "fault")?, |mut f| f.write(&bytes))?;
    if n != bytes.len() {
        return Err(OpError::Error(format!(
            "wrote {n} of {} bytes",
            bytes.len()
        )));
    }
    Ok(Value::Null)
}

/// `mock.trigger_iopf`: the mock device reports a page request.
pub fn trigger_iopf(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut t = selftest::TriggerIopf {
        dev_id: args.u32("dev_id")?,
        pasid: args.u32_or("pasid", 0)?,
        grpid: args.u32_or("grpid", 0)?,
        perm: args.u32_or("perm", 0)?,
        addr: args.u64("addr")?,
    };
    selftest::TRIGGER_IOPF.call(ctx.fd(args, "iommufd")?, 0, &mut t)?;
    Ok(Value::Null)
}

/// `veventq.alloc`: yields a handle with its `veventq_id`, `type` and `event_len`.
pub fn veventq_alloc(ctx: &mut Ctx, args: &Args) -> OpResult {
    let ty = args.choice("type", VEVENTQ_TYPES)?;
    let mut q = iofd::iommu_veventq_alloc {
        size: argsz::<iofd::iommu_veventq_alloc>(),
        viommu_id: args.u32("viommu_id")?,
        type_: ty,
        veventq_depth: args.u32("depth")?,
        ..Default::default()
    };
    io::VEVENTQ_ALLOC.call(ctx.fd(args, "iommufd")?, &mut q)?;
    Ok(add_queue(
        ctx,
        "veventq",
        q.out_veventq_fd,
        json!({
            "veventq_id": q.out_veventq_id,
            "type": args.str_or("type", VEVENTQ_TYPES[0].0)?,
            "event_len": event_len(ty),
        }),
    ))
}

/// `veventq.read`: one read of up to `bytes` bytes; yields the events in
/// order, each `{sequence, flags, lost}` and its data (`virt_id` for the
/// selftest type, else `data` as hex bytes).
pub fn veventq_read(ctx: &mut Ctx, args: &Args) -> OpResult {
    const HEADER: usize = std::mem::size_of::<iofd::iommufd_vevent_header>();
    let queue = args.get("veventq")?;
    let event_len = queue
        .get("event_len")
        .and_then(Value::as_u64)
        .ok_or("veventq: not a veventq.alloc handle")? as usize;
    let selftest = queue.get("type").and_then(Value::as_str) == Some("selftest");
    let bytes = read_queue(
        ctx.fd(args, "veventq")?,
        args.u64_or("bytes", 4096)? as usize,
    )?;
    let mut events = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes.len() - at < HEADER {
            return Err(OpError::Error(format!("{} stray bytes", bytes.len() - at)));
        }
        let (flags, sequence) = (u32_at(&bytes, at), u32_at(&bytes, at + 4));
        at += HEADER;
        let lost = flags & iofd::iommu_veventq_flag_IOMMU_VEVENTQ_FLAG_LOST_EVENTS != 0;
        let mut e = json!({ "sequence": sequence, "flags": flags, "lost": lost });
        if !lost {
            let data = bytes
                .get(at..at + event_len)
                .ok_or("an event's data is cut short")?;
            at += event_len;
            e["data"] = data
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into();
            if selftest {
                e["virt_id"] = u32_at(data, 0).into();
            }
        }
        events.push(e);
    }
    Ok(Value::Array(events))
}

/// `mock.trigger_vevent`: the mock device reports `count` vEVENTs; yields `count`.
pub fn trigger_vevent(ctx: &mut Ctx, args: &Args) -> OpResult {
    let count = args.u64_or("count", 1)?;
    let fd = ctx.fd(args, "iommufd")?;
    let mut t = selftest::TriggerVevent {
        dev_id: args.u32("dev_id")?,
    };
    for _ in 0..count {
        selftest::TRIGGER_VEVENT.call(fd, 0, &mut t)?;
    }
    Ok(count.into())
}
