//! iommufd: IOAS alloc/map (of memory or a memfd)/unmap/copy/ranges/allow,
//! the accounting process of its pins, options, HWPT and hardware info,
//! plus the selftest mock domain and access objects (`IOMMU_TEST_CMD`,
//! present with `CONFIG_IOMMUFD_TEST`).  HWPT dirty tracking ([`dirty`]),
//! cache invalidation ([`invalidate`]), the fault and vIOMMU event queues
//! ([`eventq`]) and vIOMMUs with their vDEVICEs and hardware queues
//! ([`viommu`]) have modules of their own.

pub mod dirty;
pub mod eventq;
pub mod invalidate;
pub mod viommu;

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use serde_json::{Value, json};

use crate::args::Args;
use crate::ctx::{Ctx, Object};
use crate::outcome::{OpError, OpResult};
use crate::uapi::{IommuTestCmd, argsz, iofd, iommufd_ioctl as io, selftest, test_op};

fn id(v: u32) -> Value {
    Value::from(v)
}

/// An argument of `[start, last]` IOVA pairs (`ArgKind::Ranges`).
fn ranges(args: &Args, key: &str) -> Result<Vec<(u64, u64)>, OpError> {
    let list = args
        .get(key)?
        .as_array()
        .ok_or_else(|| format!("{key}: expected an array"))?;
    let mut out = Vec::new();
    for (i, pair) in list.iter().enumerate() {
        let p = pair
            .as_array()
            .filter(|p| p.len() == 2)
            .ok_or_else(|| format!("{key}[{i}]: expected [start, last]"))?;
        let n =
            |v: &Value| iobench_proto::ops::parse_u64(v).map_err(|e| format!("{key}[{i}]: {e}"));
        out.push((n(&p[0])?, n(&p[1])?));
    }
    Ok(out)
}

/// `iommufd.open`.
pub fn open(ctx: &mut Ctx, _args: &Args) -> OpResult {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/iommu")
        .map_err(|e| match e.raw_os_error() {
            Some(code) => OpError::Errno(code),
            None => OpError::Error(format!("/dev/iommu: {e}")),
        })?;
    Ok(ctx.add(
        Object::Fd {
            kind: "iommufd",
            fd: f.into(),
        },
        json!({}),
    ))
}

/// Whether the selftest command answers on this kernel (an unknown op gives
/// EOPNOTSUPP with `IOMMUFD_TEST`, ENOTTY without).
pub fn selftest_present() -> bool {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(Path::new("/dev/iommu"))
    else {
        return false;
    };
    let fd: OwnedFd = f.into();
    let mut cmd = IommuTestCmd::new(0xffff, 0);
    matches!(io::TEST_CMD.call(std::os::fd::AsFd::as_fd(&fd), &mut cmd), Err(e) if e.0 != libc::ENOTTY)
}

/// `iommufd.vfio_ioas`: the IOAS behind the iommufd's VFIO-compatible
/// container (`IOMMU_VFIO_IOAS`).
pub fn vfio_ioas(ctx: &mut Ctx, args: &Args) -> OpResult {
    let op = match args.str("action")? {
        "get" => iofd::iommufd_vfio_ioas_op_IOMMU_VFIO_IOAS_GET,
        "set" => iofd::iommufd_vfio_ioas_op_IOMMU_VFIO_IOAS_SET,
        _ => iofd::iommufd_vfio_ioas_op_IOMMU_VFIO_IOAS_CLEAR,
    };
    let mut v = iofd::iommu_vfio_ioas {
        size: argsz::<iofd::iommu_vfio_ioas>(),
        ioas_id: args.opt_u64("ioas")?.unwrap_or(0) as u32,
        op: op as u16,
        __reserved: 0,
    };
    io::VFIO_IOAS.call(ctx.fd(args, "iommufd")?, &mut v)?;
    Ok(if op == iofd::iommufd_vfio_ioas_op_IOMMU_VFIO_IOAS_GET {
        id(v.ioas_id)
    } else {
        Value::Null
    })
}

/// `iommufd.destroy`.
pub fn destroy(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut d = iofd::iommu_destroy {
        size: argsz::<iofd::iommu_destroy>(),
        id: args.u32("id")?,
    };
    io::DESTROY
        .call(ctx.fd(args, "iommufd")?, &mut d)
        .map(Value::from)
        .map_err(Into::into)
}

/// `ioas.alloc`.
pub fn ioas_alloc(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut a = iofd::iommu_ioas_alloc {
        size: argsz::<iofd::iommu_ioas_alloc>(),
        ..Default::default()
    };
    io::IOAS_ALLOC.call(ctx.fd(args, "iommufd")?, &mut a)?;
    Ok(id(a.out_ioas_id))
}

/// `ioas.iova_ranges`: the usable IOVA ranges (holes of the reserved tree).
pub fn iova_ranges(ctx: &mut Ctx, args: &Args) -> OpResult {
    let fd = ctx.fd(args, "iommufd")?;
    let mut ranges = vec![iofd::iommu_iova_range::default(); 8];
    loop {
        let mut r = iofd::iommu_ioas_iova_ranges {
            size: argsz::<iofd::iommu_ioas_iova_ranges>(),
            ioas_id: args.u32("ioas")?,
            num_iovas: ranges.len() as u32,
            allowed_iovas: ranges.as_mut_ptr() as u64,
            ..Default::default()
        };
        match io::IOAS_IOVA_RANGES.call(fd, &mut r) {
            Ok(_) => {
                let list: Vec<Value> = ranges[..r.num_iovas as usize]
                    .iter()
                    .map(|x| json!([x.start, x.last]))
                    .collect();
                return Ok(json!({ "ranges": list, "alignment": r.out_iova_alignment }));
            }
            Err(e) if e.0 == libc::EMSGSIZE && r.num_iovas as usize > ranges.len() => {
                ranges.resize(r.num_iovas as usize, Default::default());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `ioas.allow_iovas`.
pub fn allow_iovas(ctx: &mut Ctx, args: &Args) -> OpResult {
    let ranges: Vec<iofd::iommu_iova_range> = ranges(args, "ranges")?
        .into_iter()
        .map(|(start, last)| iofd::iommu_iova_range { start, last })
        .collect();
    let mut a = iofd::iommu_ioas_allow_iovas {
        size: argsz::<iofd::iommu_ioas_allow_iovas>(),
        ioas_id: args.u32("ioas")?,
        num_iovas: ranges.len() as u32,
        allowed_iovas: ranges.as_ptr() as u64,
        ..Default::default()
    };
    io::IOAS_ALLOW_IOVAS
        .call(ctx.fd(args, "iommufd")?, &mut a)
        .map(Value::from)
        .map_err(Into::into)
}

pub fn map_flags(args: &Args, fixed: bool) -> Result<u32, OpError> {
    let mut flags = 0;
    if fixed {
        flags |= iofd::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA;
    }
    if args.bool_or("read", true)? {
        flags |= iofd::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE;
    }
    if args.bool_or("write", true)? {
        flags |= iofd::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE;
    }
    Ok(flags)
}

/// IOMMU_IOAS_MAP; yields the IOVA used.
pub fn map_raw(
    fd: BorrowedFd<'_>,
    ioas: u32,
    user_va: u64,
    length: u64,
    iova: u64,
    flags: u32,
) -> Result<u64, OpError> {
    let mut m = iofd::iommu_ioas_map {
        size: argsz::<iofd::iommu_ioas_map>(),
        flags,
        ioas_id: ioas,
        user_va,
        length,
        iova,
        ..Default::default()
    };
    io::IOAS_MAP.call(fd, &mut m)?;
    Ok(m.iova)
}

/// IOMMU_IOAS_UNMAP; yields the length unmapped.
pub fn unmap_raw(fd: BorrowedFd<'_>, ioas: u32, iova: u64, length: u64) -> Result<u64, OpError> {
    let mut u = iofd::iommu_ioas_unmap {
        size: argsz::<iofd::iommu_ioas_unmap>(),
        ioas_id: ioas,
        iova,
        length,
    };
    io::IOAS_UNMAP.call(fd, &mut u)?;
    Ok(u.length)
}

/// `ioas.map`: fixed IOVA if given, else the kernel picks one.
pub fn map(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    let iova = args.opt_u64("iova")?;
    let flags = map_flags(args, iova.is_some())?;
    map_raw(
        ctx.fd(args, "iommufd")?,
        args.u32("ioas")?,
        buf.addr(offset),
        length,
        iova.unwrap_or(0),
        flags,
    )
    .map(Value::from)
}

/// `ioas.map_file`: maps a range of a memfd buffer's file (its offset is
/// the file offset); fixed IOVA if given; yields the IOVA.
pub fn map_file(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    let file = buf
        .file()
        .ok_or("buffer: not a memfd (mem.alloc with memfd = true)")?;
    let iova = args.opt_u64("iova")?;
    let mut m = iofd::iommu_ioas_map_file {
        size: argsz::<iofd::iommu_ioas_map_file>(),
        flags: map_flags(args, iova.is_some())?,
        ioas_id: args.u32("ioas")?,
        fd: file.as_raw_fd(),
        start: offset,
        length,
        iova: iova.unwrap_or(0),
    };
    io::IOAS_MAP_FILE.call(ctx.fd(args, "iommufd")?, &mut m)?;
    Ok(m.iova.into())
}

/// `ioas.change_process`: the pins of every (memfd) mapping of the iommufd
/// are charged to this process from now on.
pub fn change_process(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut c = iofd::iommu_ioas_change_process {
        size: argsz::<iofd::iommu_ioas_change_process>(),
        __reserved: 0,
    };
    io::IOAS_CHANGE_PROCESS.call(ctx.fd(args, "iommufd")?, &mut c)?;
    Ok(Value::Null)
}

/// `ioas.unmap`: yields the length unmapped.
pub fn unmap(ctx: &mut Ctx, args: &Args) -> OpResult {
    unmap_raw(
        ctx.fd(args, "iommufd")?,
        args.u32("ioas")?,
        args.u64("iova")?,
        args.u64("length")?,
    )
    .map(Value::from)
}

/// `ioas.copy`: yields the destination IOVA.
pub fn copy(ctx: &mut Ctx, args: &Args) -> OpResult {
    let dst = args.opt_u64("dst_iova")?;
    let mut c = iofd::iommu_ioas_copy {
        size: argsz::<iofd::iommu_ioas_copy>(),
        flags: map_flags(args, dst.is_some())?,
        dst_ioas_id: args.u32("dst_ioas")?,
        src_ioas_id: args.u32("src_ioas")?,
        length: args.u64("length")?,
        dst_iova: dst.unwrap_or(0),
        src_iova: args.u64("src_iova")?,
    };
    io::IOAS_COPY.call(ctx.fd(args, "iommufd")?, &mut c)?;
    Ok(c.dst_iova.into())
}

/// `iommufd.option`: set if `value` is given, else get.
pub fn option(ctx: &mut Ctx, args: &Args) -> OpResult {
    let option_id = match args.str("option")? {
        "rlimit_mode" => iofd::iommufd_option_IOMMU_OPTION_RLIMIT_MODE,
        _ => iofd::iommufd_option_IOMMU_OPTION_HUGE_PAGES,
    };
    let value = args.opt_u64("value")?;
    let mut o = iofd::iommu_option {
        size: argsz::<iofd::iommu_option>(),
        option_id,
        op: if value.is_some() {
            iofd::iommufd_option_ops_IOMMU_OPTION_OP_SET
        } else {
            iofd::iommufd_option_ops_IOMMU_OPTION_OP_GET
        } as u16,
        object_id: args.u64_or("object_id", 0)? as u32,
        val64: value.unwrap_or(0),
        ..Default::default()
    };
    io::OPTION.call(ctx.fd(args, "iommufd")?, &mut o)?;
    Ok(o.val64.into())
}

/// `hwpt.alloc`: a paging HWPT on an IOAS, or with `data = "selftest"` a
/// nested one on a nesting parent HWPT or a vIOMMU (the mock's IOTLB
/// entries start as `iotlb`); with `fault_id` its I/O page faults go to
/// that fault queue.
pub fn hwpt_alloc(ctx: &mut Ctx, args: &Args) -> OpResult {
    let fault_id = args.opt_u32("fault_id")?;
    let mut flags = args.u32_or("flags", 0)?;
    if fault_id.is_some() {
        flags |= iofd::iommufd_hwpt_alloc_flags_IOMMU_HWPT_FAULT_ID_VALID;
    }
    let mut data = selftest::HwptSelftest {
        iotlb: args.u32_or("iotlb", selftest::TEST_IOTLB_DEFAULT)?,
        pagetable_type: 0,
    };
    let mut h = iofd::iommu_hwpt_alloc {
        size: argsz::<iofd::iommu_hwpt_alloc>(),
        flags,
        dev_id: args.u32("dev_id")?,
        pt_id: args.u32("pt_id")?,
        fault_id: fault_id.unwrap_or(0),
        ..Default::default()
    };
    if args.str_or("data", "none")? == "selftest" {
        h.data_type = selftest::HWPT_DATA_SELFTEST;
        h.data_len = argsz::<selftest::HwptSelftest>();
        h.data_uptr = (&mut data as *mut selftest::HwptSelftest) as u64;
    }
    io::HWPT_ALLOC.call(ctx.fd(args, "iommufd")?, &mut h)?;
    Ok(id(h.out_hwpt_id))
}

/// `iommufd.hw_info`.
pub fn hw_info(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut data = [0u8; 64];
    // SAFETY: iommu_hw_info is plain old data; all-zero is its valid default.
    let mut h: iofd::iommu_hw_info = unsafe { std::mem::zeroed() };
    h.size = argsz::<iofd::iommu_hw_info>();
    h.dev_id = args.u32("dev_id")?;
    h.data_len = data.len() as u32;
    h.data_uptr = data.as_mut_ptr() as u64;
    io::GET_HW_INFO.call(ctx.fd(args, "iommufd")?, &mut h)?;
    // SAFETY: reading the out member of a union of two u32s.
    let ty = unsafe { h.__bindgen_anon_1.out_data_type };
    let kind = match ty {
        0 => "none",
        1 => "intel_vtd",
        0xfeed_beef => "selftest",
        _ => "other",
    };
    Ok(
        json!({ "type": ty, "kind": kind, "capabilities": h.out_capabilities, "data_len": h.data_len }),
    )
}

fn test_cmd(fd: BorrowedFd<'_>, cmd: &mut IommuTestCmd) -> Result<(), OpError> {
    io::TEST_CMD.call(fd, cmd).map(|_| ()).map_err(Into::into)
}

/// `mock.domain`: a mock device bound and attached to the IOAS (or HWPT);
/// with `no_dirty` one whose IOMMU cannot track dirty pages.
pub fn mock_domain(ctx: &mut Ctx, args: &Args) -> OpResult {
    let fd = ctx.fd(args, "iommufd")?;
    let pt_id = args.u32("ioas")?;
    let (stdev, hwpt, idev) = if args.bool_or("no_dirty", false)? {
        let mut m = selftest::MockDomainFlags {
            dev_flags: selftest::MOCK_FLAGS_DEVICE_NO_DIRTY,
            ..Default::default()
        };
        selftest::MOCK_DOMAIN_FLAGS.call(fd, pt_id, &mut m)?;
        (m.out_stdev_id, m.out_hwpt_id, m.out_idev_id)
    } else {
        let mut c = IommuTestCmd::new(test_op::MOCK_DOMAIN, pt_id);
        test_cmd(fd, &mut c)?;
        (c.word(0), c.word(1), c.word(2))
    };
    Ok(json!({ "stdev_id": stdev, "hwpt_id": hwpt, "idev_id": idev }))
}

/// `mock.domain_replace`.
pub fn mock_domain_replace(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut c = IommuTestCmd::new(test_op::MOCK_DOMAIN_REPLACE, args.u32("stdev_id")?);
    c.set_word(0, args.u32("pt_id")?);
    test_cmd(ctx.fd(args, "iommufd")?, &mut c)?;
    Ok(c.word(0).into())
}

/// `mock.add_reserved`.
pub fn add_reserved(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut c = IommuTestCmd::new(test_op::ADD_RESERVED, args.u32("ioas")?);
    c.u[0] = args.u64("start")?;
    c.u[1] = args.u64("length")?;
    test_cmd(ctx.fd(args, "iommufd")?, &mut c).map(|_| Value::Null)
}

/// `mock.check_map`: the mock domain's page table maps the IOVA range to the buffer.
pub fn check_map(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    let mut c = IommuTestCmd::new(test_op::MD_CHECK_MAP, args.u32("hwpt")?);
    c.u[0] = args.u64("iova")?;
    c.u[1] = length;
    c.u[2] = buf.addr(offset);
    test_cmd(ctx.fd(args, "iommufd")?, &mut c).map(|_| Value::Null)
}

/// `mock.access_create`: an in-kernel "access" (like an mdev) on the IOAS.
pub fn access_create(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut c = IommuTestCmd::new(test_op::CREATE_ACCESS, args.u32("ioas")?);
    if args.bool_or("pin_pages", false)? {
        c.set_word(1, test_op::ACCESS_CREATE_NEEDS_PIN_PAGES);
    }
    test_cmd(ctx.fd(args, "iommufd")?, &mut c)?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(c.word(0) as i32) };
    Ok(ctx.add(
        Object::Fd { kind: "access", fd },
        json!({ "access_fd": c.word(0) }),
    ))
}

fn access_id(ctx: &Ctx, args: &Args) -> Result<u32, OpError> {
    Ok(std::os::fd::AsRawFd::as_raw_fd(&ctx.fd(args, "access")?) as u32)
}

/// `mock.access_rw`: the kernel reads (or with `write`, writes) the IOVA range through the access.
pub fn access_rw(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    let mut c = IommuTestCmd::new(test_op::ACCESS_RW, access_id(ctx, args)?);
    c.u[0] = args.u64("iova")?;
    c.u[1] = length;
    c.u[2] = buf.addr(offset);
    if args.bool_or("write", false)? {
        c.set_word(6, test_op::ACCESS_RW_WRITE);
    }
    test_cmd(ctx.fd(args, "iommufd")?, &mut c).map(|_| Value::Null)
}

/// `mock.access_pages`: pins the IOVA range through the access; yields the pages id.
pub fn access_pages(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    let mut c = IommuTestCmd::new(test_op::ACCESS_PAGES, access_id(ctx, args)?);
    if args.bool_or("write", false)? {
        c.set_word(0, test_op::ACCESS_WRITE);
    }
    c.u[1] = args.u64("iova")?;
    c.u[2] = length;
    c.u[3] = buf.addr(offset);
    test_cmd(ctx.fd(args, "iommufd")?, &mut c)?;
    Ok(c.word(1).into())
}

#[cfg(test)]
mod tests {
    use iobench_proto::ops::{ArgKind, op};

    #[test]
    fn every_choice_of_the_catalogue_has_its_number() {
        type Table = &'static [(&'static str, u32)];
        let tables: [(&str, &str, Table); 5] = [
            ("fault.respond", "code", super::eventq::RESPONSE_CODES),
            ("veventq.alloc", "type", super::eventq::VEVENTQ_TYPES),
            (
                "hwpt.invalidate",
                "data_type",
                super::invalidate::DATA_TYPES,
            ),
            ("viommu.alloc", "type", super::viommu::VIOMMU_TYPES),
            ("hw_queue.alloc", "type", super::viommu::HW_QUEUE_TYPES),
        ];
        for (name, arg, table) in tables {
            let spec = op(name).unwrap_or_else(|| panic!("{name}"));
            let kind = spec.args.iter().find(|a| a.name == arg).map(|a| a.kind);
            let Some(ArgKind::Choice(words)) = kind else {
                panic!("{name}: {arg} is not a choice");
            };
            let ours: Vec<&str> = table.iter().map(|(w, _)| *w).collect();
            assert_eq!(words, ours.as_slice(), "{name} {arg}");
        }
    }
}
