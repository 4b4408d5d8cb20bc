//! Legacy VFIO: container, group and device fds, region access, type1 and
//! sPAPR TCE v2 mapping, sPAPR DMA windows, and `VFIO_EEH_PE_OP`.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use iobench_proto::ops::{EEH_OPS, VFIO_EXTENSIONS};
use serde_json::{Value, json};

use crate::args::Args;
use crate::ctx::{Ctx, Object};
use crate::outcome::{OpError, OpResult};
use crate::pci;
use crate::uapi::{Ioctl, argsz, vfio, vfio_ioctl as io};

use super::with_file;

fn open_rw(path: &Path) -> Result<OwnedFd, OpError> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => Ok(f.into()),
        Err(e) => match e.raw_os_error() {
            Some(code) => Err(OpError::Errno(code)),
            None => Err(OpError::Error(format!("{}: {e}", path.display()))),
        },
    }
}

fn extension(name: &str) -> Result<u32, OpError> {
    VFIO_EXTENSIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| OpError::Error(format!("unknown VFIO extension {name:?}")))
}

/// Whether an open container offers an extension (false on any error).
pub fn container_has(fd: BorrowedFd<'_>, name: &str) -> bool {
    extension(name).is_ok_and(|e| io::CHECK_EXTENSION.call(fd, e.into()).is_ok_and(|r| r > 0))
}

fn function(args: &Args) -> Result<iobench_proto::PciDevice, OpError> {
    let spec = args.str("device")?;
    pci::find(spec, args.u64_or("index", 0)?).map_err(OpError::Error)
}

/// `pci.bind_vfio`.
pub fn bind(ctx: &mut Ctx, args: &Args) -> OpResult {
    let f = function(args)?;
    ctx.may_take(&f)?;
    pci::bind_one(&f).map_err(OpError::Error)?;
    Ok(Value::String(f.bdf))
}

/// `vfio.container_open`.
pub fn container_open(ctx: &mut Ctx, _args: &Args) -> OpResult {
    let fd = open_rw(Path::new("/dev/vfio/vfio"))?;
    Ok(ctx.add(
        Object::Fd {
            kind: "container",
            fd,
        },
        json!({}),
    ))
}

/// `vfio.group_open`.
pub fn group_open(ctx: &mut Ctx, args: &Args) -> OpResult {
    let f = function(args)?;
    if let Some(g) = &ctx.guard {
        g.group(&f)?;
    }
    let group = f
        .iommu_group
        .ok_or_else(|| format!("{} is in no IOMMU group", f.bdf))?;
    if f.driver.as_deref() != Some("vfio-pci") {
        return Err(OpError::Error(format!(
            "{} is bound to {:?}, not vfio-pci (add a pci.bind_vfio step)",
            f.bdf, f.driver
        )));
    }
    let fd = open_rw(&Path::new("/dev/vfio").join(group.to_string()))?;
    Ok(ctx.add(
        Object::Fd { kind: "group", fd },
        json!({ "group": group, "bdf": f.bdf }),
    ))
}

/// `vfio.group_status`.
pub fn group_status(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut st = vfio::vfio_group_status {
        argsz: argsz::<vfio::vfio_group_status>(),
        flags: 0,
    };
    io::GROUP_GET_STATUS.call(ctx.fd(args, "group")?, &mut st)?;
    Ok(json!({
        "viable": st.flags & vfio::VFIO_GROUP_FLAGS_VIABLE != 0,
        "container_set": st.flags & vfio::VFIO_GROUP_FLAGS_CONTAINER_SET != 0,
    }))
}

/// `vfio.group_set_container`.
pub fn group_set_container(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut container = ctx.fd(args, "container")?.as_raw_fd();
    io::GROUP_SET_CONTAINER
        .call(ctx.fd(args, "group")?, &mut container)
        .map(Value::from)
        .map_err(Into::into)
}

/// `vfio.group_unset_container`.
pub fn group_unset_container(ctx: &mut Ctx, args: &Args) -> OpResult {
    io::GROUP_UNSET_CONTAINER
        .call(ctx.fd(args, "group")?, 0)
        .map(Value::from)
        .map_err(Into::into)
}

/// `vfio.check_extension`.
pub fn check_extension(ctx: &mut Ctx, args: &Args) -> OpResult {
    let ext = extension(args.str("extension")?)?;
    io::CHECK_EXTENSION
        .call(ctx.fd(args, "container")?, ext.into())
        .map(Value::from)
        .map_err(Into::into)
}

/// `vfio.set_iommu`.
pub fn set_iommu(ctx: &mut Ctx, args: &Args) -> OpResult {
    let ext = extension(args.str("type")?)?;
    io::SET_IOMMU
        .call(ctx.fd(args, "container")?, ext.into())
        .map(Value::from)
        .map_err(Into::into)
}

/// `vfio.device_open`.
pub fn device_open(ctx: &mut Ctx, args: &Args) -> OpResult {
    let f = function(args)?;
    ctx.may_take(&f)?;
    let name = CString::new(f.bdf.clone()).map_err(|e| format!("{:?}: {e}", f.bdf))?;
    let fd = io::GROUP_GET_DEVICE_FD.call(ctx.fd(args, "group")?, &name)?;
    Ok(ctx.add_device(fd, &f.bdf, json!({ "bdf": f.bdf })))
}

/// `vfio.device_info`.
pub fn device_info(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut info = vfio::vfio_device_info {
        argsz: argsz::<vfio::vfio_device_info>(),
        ..Default::default()
    };
    io::DEVICE_GET_INFO.call(ctx.fd(args, "device")?, &mut info)?;
    Ok(json!({ "flags": info.flags, "num_regions": info.num_regions, "num_irqs": info.num_irqs }))
}

/// `vfio.device_reset`: under a policy, only of a function it lets be taken
/// (device handles come from checked opens; this checks again).
pub fn device_reset(ctx: &mut Ctx, args: &Args) -> OpResult {
    if ctx.guard.is_some() {
        let bdf = ctx
            .device_bdf(args, "device")
            .ok_or("device: not a device handle of this run")?;
        ctx.may_take(&pci::find(bdf, 0)?)?;
    }
    io::DEVICE_RESET
        .call(ctx.fd(args, "device")?, 0)
        .map(Value::from)
        .map_err(Into::into)
}

fn region_info(fd: BorrowedFd<'_>, index: u32) -> Result<vfio::vfio_region_info, OpError> {
    let mut info = vfio::vfio_region_info {
        argsz: argsz::<vfio::vfio_region_info>(),
        index,
        ..Default::default()
    };
    io::DEVICE_GET_REGION_INFO.call(fd, &mut info)?;
    Ok(info)
}

/// Offset and size of a device region in the device fd.
pub fn region(fd: BorrowedFd<'_>, index: u32) -> Result<(u64, u64), OpError> {
    region_info(fd, index).map(|i| (i.offset, i.size))
}

/// Whether emulated device registers are big-endian: QEMU's `DEVICE_NATIVE_ENDIAN`
/// devices (edu) are big-endian on `qemu-system-ppc64`, little-endian on x86.
const DEVICE_BIG_ENDIAN: bool = cfg!(target_arch = "powerpc64");

/// Reads a 4- or 8-byte register with one `pread` (edu faults on smaller accesses).
pub fn read_reg(
    fd: BorrowedFd<'_>,
    region_index: u32,
    offset: u64,
    width: u64,
) -> Result<u64, OpError> {
    let (base, size) = region(fd, region_index)?;
    check_access(offset, width, size)?;
    let mut buf = [0u8; 8];
    let w = width as usize;
    let n = with_file(fd, |f| f.read_at(&mut buf[..w], base + offset))?;
    if n != w {
        return Err(OpError::Error(format!("short read: {n} of {w} bytes")));
    }
    Ok(match (w, DEVICE_BIG_ENDIAN) {
        (4, true) => u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]).into(),
        (4, false) => u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]).into(),
        (_, true) => u64::from_be_bytes(buf),
        (_, false) => u64::from_le_bytes(buf),
    })
}

/// Writes a 4- or 8-byte register with one `pwrite`.
pub fn write_reg(
    fd: BorrowedFd<'_>,
    region_index: u32,
    offset: u64,
    width: u64,
    value: u64,
) -> Result<(), OpError> {
    let (base, size) = region(fd, region_index)?;
    check_access(offset, width, size)?;
    let bytes: Vec<u8> = match (width, DEVICE_BIG_ENDIAN) {
        (4, true) => (value as u32).to_be_bytes().to_vec(),
        (4, false) => (value as u32).to_le_bytes().to_vec(),
        (_, true) => value.to_be_bytes().to_vec(),
        (_, false) => value.to_le_bytes().to_vec(),
    };
    let n = with_file(fd, |f| f.write_at(&bytes, base + offset))?;
    if n != bytes.len() {
        return Err(OpError::Error(format!(
            "short write: {n} of {} bytes",
            bytes.len()
        )));
    }
    Ok(())
}

fn check_access(offset: u64, width: u64, size: u64) -> Result<(), OpError> {
    if width != 4 && width != 8 {
        return Err(OpError::Error(format!("width must be 4 or 8, not {width}")));
    }
    if offset % width != 0 || offset + width > size {
        return Err(OpError::Error(format!(
            "{width}-byte access at {offset:#x} in a {size:#x}-byte region"
        )));
    }
    Ok(())
}

/// Sets PCI_COMMAND_MEMORY and PCI_COMMAND_MASTER through the config region, so the device may DMA.
pub fn enable_bus_master(fd: BorrowedFd<'_>) -> Result<(), OpError> {
    let (base, _) = region(fd, vfio::VFIO_PCI_CONFIG_REGION_INDEX)?;
    let mut cmd = [0u8; 2];
    with_file(fd, |f| f.read_exact_at(&mut cmd, base + 4))?;
    let v = u16::from_le_bytes(cmd) | 0x6;
    with_file(fd, |f| f.write_all_at(&v.to_le_bytes(), base + 4))
}

/// `vfio.region_mmap_read`: one aligned load through a user mapping of the region.
pub fn region_mmap_read(ctx: &mut Ctx, args: &Args) -> OpResult {
    let fd = ctx.fd(args, "device")?;
    let info = region_info(fd, args.u64_or("region", 0)? as u32)?;
    let (offset, width) = (args.u64("offset")?, args.u64_or("width", 4)?);
    check_access(offset, width, info.size)?;
    if info.flags & vfio::VFIO_REGION_INFO_FLAG_MMAP == 0 {
        return Err(OpError::Error(format!(
            "region {} cannot be mmapped",
            info.index
        )));
    }
    let len = info.size as usize;
    // SAFETY: a fresh shared mapping of the device region; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            info.offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(crate::uapi::Errno::last().into());
    }
    // SAFETY: offset + width is inside the mapping (check_access) and aligned
    // to the width; volatile because this is device memory.
    let raw = unsafe {
        let at = p.cast::<u8>().add(offset as usize);
        if width == 4 {
            u64::from(std::ptr::read_volatile(at.cast::<u32>()))
        } else {
            std::ptr::read_volatile(at.cast::<u64>())
        }
    };
    // SAFETY: unmapping exactly what was mapped above.
    unsafe { libc::munmap(p, len) };
    // The load gave CPU (little-endian) order; device registers are in DEVICE order.
    let value = match (width, DEVICE_BIG_ENDIAN) {
        (4, true) => u64::from((raw as u32).swap_bytes()),
        (_, true) => raw.swap_bytes(),
        _ => raw,
    };
    Ok(value.into())
}

/// `vfio.region_read`.
pub fn region_read(ctx: &mut Ctx, args: &Args) -> OpResult {
    let region = args.u64_or("region", 0)? as u32;
    read_reg(
        ctx.fd(args, "device")?,
        region,
        args.u64("offset")?,
        args.u64_or("width", 4)?,
    )
    .map(Value::from)
}

/// `vfio.region_write`.
pub fn region_write(ctx: &mut Ctx, args: &Args) -> OpResult {
    let region = args.u64_or("region", 0)? as u32;
    let (offset, value, width) = (
        args.u64("offset")?,
        args.u64("value")?,
        args.u64_or("width", 4)?,
    );
    write_reg(ctx.fd(args, "device")?, region, offset, width, value).map(|_| Value::Null)
}

pub fn rw_flags(args: &Args) -> Result<u32, OpError> {
    let mut flags = 0;
    if args.bool_or("read", true)? {
        flags |= vfio::VFIO_DMA_MAP_FLAG_READ;
    }
    if args.bool_or("write", true)? {
        flags |= vfio::VFIO_DMA_MAP_FLAG_WRITE;
    }
    Ok(flags)
}

/// VFIO_IOMMU_MAP_DMA (type1 and sPAPR share the struct); the ioctl's return value.
pub fn map_raw(
    fd: BorrowedFd<'_>,
    vaddr: u64,
    iova: u64,
    size: u64,
    flags: u32,
) -> Result<i32, OpError> {
    let mut m = vfio::vfio_iommu_type1_dma_map {
        argsz: argsz::<vfio::vfio_iommu_type1_dma_map>(),
        flags,
        vaddr,
        iova,
        size,
    };
    io::MAP_DMA.call(fd, &mut m).map_err(Into::into)
}

/// VFIO_IOMMU_UNMAP_DMA; the ioctl's return value.
pub fn unmap_raw(fd: BorrowedFd<'_>, iova: u64, size: u64) -> Result<i32, OpError> {
    let mut u = vfio::vfio_iommu_type1_dma_unmap {
        argsz: argsz::<vfio::vfio_iommu_type1_dma_unmap>(),
        iova,
        size,
        ..Default::default()
    };
    io::UNMAP_DMA.call(fd, &mut u).map_err(Into::into)
}

/// `vfio.map_dma`.
pub fn map_dma(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    map_raw(
        ctx.fd(args, "container")?,
        buf.addr(offset),
        args.u64("iova")?,
        length,
        rw_flags(args)?,
    )
    .map(Value::from)
}

/// `vfio.unmap_dma`.
pub fn unmap_dma(ctx: &mut Ctx, args: &Args) -> OpResult {
    unmap_raw(
        ctx.fd(args, "container")?,
        args.u64("iova")?,
        args.u64("length")?,
    )
    .map(Value::from)
}

/// `spapr.tce_info`.
pub fn tce_info(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut i = vfio::vfio_iommu_spapr_tce_info {
        argsz: argsz::<vfio::vfio_iommu_spapr_tce_info>(),
        ..Default::default()
    };
    io::SPAPR_TCE_GET_INFO.call(ctx.fd(args, "container")?, &mut i)?;
    Ok(json!({
        "flags": i.flags,
        "dma32_window_start": i.dma32_window_start,
        "dma32_window_size": i.dma32_window_size,
        "pgsizes": i.ddw.pgsizes,
        "max_dynamic_windows_supported": i.ddw.max_dynamic_windows_supported,
        "levels": i.ddw.levels,
    }))
}

fn register(
    ctx: &mut Ctx,
    args: &Args,
    req: Ioctl<vfio::vfio_iommu_spapr_register_memory>,
) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    let mut r = vfio::vfio_iommu_spapr_register_memory {
        argsz: argsz::<vfio::vfio_iommu_spapr_register_memory>(),
        flags: 0,
        vaddr: buf.addr(offset),
        size: length,
    };
    req.call(ctx.fd(args, "container")?, &mut r)
        .map(Value::from)
        .map_err(Into::into)
}

/// `spapr.register_memory`.
pub fn register_memory(ctx: &mut Ctx, args: &Args) -> OpResult {
    register(ctx, args, io::SPAPR_REGISTER_MEMORY)
}

/// `spapr.unregister_memory`.
pub fn unregister_memory(ctx: &mut Ctx, args: &Args) -> OpResult {
    register(ctx, args, io::SPAPR_UNREGISTER_MEMORY)
}

/// `spapr.create_window`.
pub fn create_window(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut c = vfio::vfio_iommu_spapr_tce_create {
        argsz: argsz::<vfio::vfio_iommu_spapr_tce_create>(),
        page_shift: args.u32("page_shift")?,
        window_size: args.u64("window_size")?,
        levels: args.u64_or("levels", 1)? as u32,
        ..Default::default()
    };
    io::SPAPR_TCE_CREATE.call(ctx.fd(args, "container")?, &mut c)?;
    Ok(json!({ "start_addr": c.start_addr }))
}

/// `spapr.remove_window`.
pub fn remove_window(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut r = vfio::vfio_iommu_spapr_tce_remove {
        argsz: argsz::<vfio::vfio_iommu_spapr_tce_remove>(),
        flags: 0,
        start_addr: args.u64("start_addr")?,
    };
    io::SPAPR_TCE_REMOVE
        .call(ctx.fd(args, "container")?, &mut r)
        .map(Value::from)
        .map_err(Into::into)
}

/// `eeh.pe_op`.  It acts on the PEs of the container's groups; under a
/// policy, a group opens only if every function in it may be taken.
pub fn eeh_pe_op(ctx: &mut Ctx, args: &Args) -> OpResult {
    let name = args.str("action")?;
    let op = EEH_OPS
        .iter()
        .position(|o| *o == name)
        .ok_or_else(|| format!("unknown EEH op {name:?}"))?;
    let mut p = vfio::vfio_eeh_pe_op {
        argsz: argsz::<vfio::vfio_eeh_pe_op>(),
        op: op as u32,
        ..Default::default()
    };
    p.__bindgen_anon_1.err = vfio::vfio_eeh_pe_err {
        type_: args.u64_or("type", 0)? as u32,
        func: args.u64_or("func", 0)? as u32,
        addr: args.u64_or("addr", 0)?,
        mask: args.u64_or("mask", 0)?,
    };
    io::EEH_PE_OP
        .call(ctx.fd(args, "container")?, &mut p)
        .map(Value::from)
        .map_err(Into::into)
}

/// `vfio.irq_eventfd`: a new eventfd, triggered by one vector of an IRQ
/// index (`VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER`); for
/// MSI and MSI-X this enables the vectors up to it.
pub fn irq_eventfd(ctx: &mut Ctx, args: &Args) -> OpResult {
    let index = irq_index(args)?;
    // SAFETY: eventfd(2) takes no pointers; the result is checked below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(crate::uapi::Errno::last().into());
    }
    // SAFETY: a new descriptor that nothing else owns.
    let efd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let mut set = crate::uapi::IrqSetEventfd {
        set: vfio::vfio_irq_set {
            argsz: argsz::<crate::uapi::IrqSetEventfd>(),
            flags: vfio::VFIO_IRQ_SET_DATA_EVENTFD | vfio::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start: args.u32_or("vector", 0)?,
            count: 1,
            ..Default::default()
        },
        fd: efd.as_raw_fd(),
    };
    io::DEVICE_SET_IRQS.call(ctx.fd(args, "device")?, &mut set)?;
    Ok(ctx.add(
        Object::Fd {
            kind: "eventfd",
            fd: efd,
        },
        json!({}),
    ))
}

/// The `index` argument: an IRQ index of vfio-pci (MSI by default).
fn irq_index(args: &Args) -> Result<u32, OpError> {
    Ok(match args.str_or("index", "msi")? {
        "intx" => vfio::VFIO_PCI_INTX_IRQ_INDEX,
        "msix" => vfio::VFIO_PCI_MSIX_IRQ_INDEX,
        _ => vfio::VFIO_PCI_MSI_IRQ_INDEX,
    })
}

/// `vfio.irq_disable`: for MSI and MSI-X this frees the vectors, so the
/// next `vfio.irq_eventfd` sets the device's MSI up again.
pub fn irq_disable(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut set = crate::uapi::IrqSetEventfd {
        set: vfio::vfio_irq_set {
            argsz: argsz::<vfio::vfio_irq_set>(),
            flags: vfio::VFIO_IRQ_SET_DATA_NONE | vfio::VFIO_IRQ_SET_ACTION_TRIGGER,
            index: irq_index(args)?,
            ..Default::default()
        },
        fd: -1,
    };
    io::DEVICE_SET_IRQS
        .call(ctx.fd(args, "device")?, &mut set)
        .map(Value::from)
        .map_err(Into::into)
}

/// `vfio.irq_count`: the eventfd's counter (reading resets it), after
/// waiting up to `wait_ms` for it to become non-zero; 0 if it stayed so.
pub fn irq_count(ctx: &mut Ctx, args: &Args) -> OpResult {
    let fd = ctx.fd(args, "eventfd")?;
    let wait = i32::try_from(args.u64_or("wait_ms", 0)?).map_err(|_| "wait_ms is too long")?;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd, and its count.
    if unsafe { libc::poll(&mut pfd, 1, wait) } < 0 {
        return Err(crate::uapi::Errno::last().into());
    }
    let mut count = [0u8; 8];
    match with_file(fd, |f| std::io::Read::read(&mut &*f, &mut count)) {
        Ok(8) => Ok(Value::from(u64::from_ne_bytes(count))),
        Ok(n) => Err(OpError::Error(format!("eventfd read gave {n} bytes"))),
        Err(OpError::Errno(libc::EAGAIN)) => Ok(Value::from(0)),
        Err(e) => Err(e),
    }
}

/// `vfio.cdev_open`: the function's `/dev/vfio/devices/vfioN`.
pub fn cdev_open(ctx: &mut Ctx, args: &Args) -> OpResult {
    let f = function(args)?;
    ctx.may_take(&f)?;
    let dir = pci::dir(&f.bdf).join("vfio-dev");
    let name = std::fs::read_dir(&dir)
        .map_err(|e| {
            format!(
                "{}: {e} (is {} bound to vfio-pci, with VFIO_DEVICE_CDEV?)",
                dir.display(),
                f.bdf
            )
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("vfio"))
        .ok_or_else(|| format!("{} has no vfio cdev", dir.display()))?;
    let fd = open_rw(&Path::new("/dev/vfio/devices").join(&name))?;
    Ok(ctx.add_device(fd, &f.bdf, json!({ "bdf": f.bdf, "cdev": name })))
}

/// `vfio.cdev_bind`.
pub fn cdev_bind(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut b = vfio::vfio_device_bind_iommufd {
        argsz: argsz::<vfio::vfio_device_bind_iommufd>(),
        iommufd: ctx.fd(args, "iommufd")?.as_raw_fd(),
        ..Default::default()
    };
    io::DEVICE_BIND_IOMMUFD.call(ctx.fd(args, "device")?, &mut b)?;
    Ok(b.out_devid.into())
}

/// `vfio.cdev_attach`.
pub fn cdev_attach(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut a = vfio::vfio_device_attach_iommufd_pt {
        argsz: argsz::<vfio::vfio_device_attach_iommufd_pt>(),
        pt_id: args.u32("pt_id")?,
        ..Default::default()
    };
    io::DEVICE_ATTACH_IOMMUFD_PT.call(ctx.fd(args, "device")?, &mut a)?;
    Ok(a.pt_id.into())
}

/// `vfio.cdev_detach`.
pub fn cdev_detach(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut d = vfio::vfio_device_detach_iommufd_pt {
        argsz: argsz::<vfio::vfio_device_detach_iommufd_pt>(),
        ..Default::default()
    };
    io::DEVICE_DETACH_IOMMUFD_PT
        .call(ctx.fd(args, "device")?, &mut d)
        .map(Value::from)
        .map_err(Into::into)
}
