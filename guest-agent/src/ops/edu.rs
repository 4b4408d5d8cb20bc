//! DMA through QEMU's `edu` device, the proof that a mapping is real: the
//! device copies between its 4 KiB internal buffer (at 0x40000 in its DMA
//! space) and an IOVA, and whatever the IOMMU does with that IOVA decides
//! where the bytes land.
//!
//! Registers (BAR0): 0x80 source, 0x88 destination, 0x90 count, 0x98 command
//! (bit 0 start/busy, bit 1 edu→RAM).  64-bit registers take 8-byte accesses;
//! a transfer completes about 100 ms of virtual time after the command.
//! A register that reads all-ones (the ID before a transfer, the command
//! while waiting) means the device stopped answering — an EEH PE stopped,
//! by the transfer's own DMA fault for one — and the transfer fails with
//! EIO, as a driver's `readl()` returning ~0 would.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use serde_json::json;

use super::vfio::{enable_bus_master, read_reg, write_reg};
use crate::args::Args;
use crate::ctx::Ctx;
use crate::outcome::{OpError, OpResult};

const REG_ID: u64 = 0x00;
const REG_SRC: u64 = 0x80;
const REG_DST: u64 = 0x88;
const REG_COUNT: u64 = 0x90;
const REG_CMD: u64 = 0x98;
const CMD_START: u64 = 1;
const CMD_TO_RAM: u64 = 2;
const EDU_BUFFER: u64 = 0x40000;
const EDU_BUFFER_LEN: u64 = 4096;
const EDU_ID_MASK: u64 = 0xffff;
const EDU_ID: u64 = 0x00ed;
/// What a register of a stopped EEH PE (or a removed device) reads.
const ALL_ONES_32: u64 = 0xffff_ffff;

/// `edu.dma`: one transfer, waited for by polling the command register.
pub fn dma(ctx: &mut Ctx, args: &Args) -> OpResult {
    let fd = ctx.fd(args, "device")?;
    let to_ram = args.str("direction")? == "from_device";
    let timeout = Duration::from_millis(args.u64_or("timeout_ms", 10_000)?);
    let t = transfer(
        fd,
        args.u64("iova")?,
        args.u64("count")?,
        args.u64_or("edu_offset", 0)?,
        to_ram,
        timeout,
    )?;
    Ok(json!({ "micros": t.as_micros() as u64 }))
}

/// One edu transfer between `iova` and the device buffer at `edu_offset`; yields its duration.
pub fn transfer(
    fd: BorrowedFd<'_>,
    iova: u64,
    count: u64,
    edu_offset: u64,
    to_ram: bool,
    timeout: Duration,
) -> Result<Duration, OpError> {
    let id = read_reg(fd, 0, REG_ID, 4)?;
    if id == ALL_ONES_32 {
        return Err(OpError::Errno(libc::EIO));
    }
    if id & EDU_ID_MASK != EDU_ID {
        return Err(OpError::Error(format!(
            "not an edu device: ID register reads {id:#010x}"
        )));
    }
    if count == 0 || edu_offset + count > EDU_BUFFER_LEN {
        return Err(OpError::Error(format!(
            "count {count:#x} at edu offset {edu_offset:#x} leaves the device's {EDU_BUFFER_LEN}-byte buffer"
        )));
    }
    enable_bus_master(fd)?;
    if read_reg(fd, 0, REG_CMD, 8)? & CMD_START != 0 {
        return Err(OpError::Error(
            "the edu device is still busy with an earlier transfer".into(),
        ));
    }
    let (src, dst) = if to_ram {
        (EDU_BUFFER + edu_offset, iova)
    } else {
        (iova, EDU_BUFFER + edu_offset)
    };
    write_reg(fd, 0, REG_SRC, 8, src)?;
    write_reg(fd, 0, REG_DST, 8, dst)?;
    write_reg(fd, 0, REG_COUNT, 8, count)?;
    let start = Instant::now();
    write_reg(
        fd,
        0,
        REG_CMD,
        8,
        CMD_START | if to_ram { CMD_TO_RAM } else { 0 },
    )?;
    loop {
        match read_reg(fd, 0, REG_CMD, 8)? {
            // The PE stopped under the transfer (a DMA fault does that).
            u64::MAX => return Err(OpError::Errno(libc::EIO)),
            cmd if cmd & CMD_START == 0 => break,
            _ => {}
        }
        if start.elapsed() > timeout {
            return Err(OpError::Error(format!(
                "edu DMA did not complete within {timeout:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(start.elapsed())
}
