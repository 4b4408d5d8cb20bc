//! A function's configuration space through sysfs (`…/config`): what the
//! kernel's config accessors see (on pseries, RTAS `read-pci-config`), not
//! VFIO's virtualized view of it, and for any function, bridges included.
//! Values are little-endian numbers, as configuration space is.
//!
//! On pseries a read that returns all-ones goes through the kernel's EEH
//! check (`eeh_dev_check_failure()`): for a PE the kernel owns, reading a
//! stopped PE's configuration space starts the kernel's recovery.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use serde_json::Value;

use crate::args::Args;
use crate::ctx::Ctx;
use crate::outcome::{OpError, OpResult};
use crate::pci;

/// The function, the offset and the width of an access, checked.
fn access(args: &Args) -> Result<(iobench_proto::PciDevice, u64, usize), OpError> {
    let f = pci::find(args.str("device")?, args.u64_or("index", 0)?).map_err(OpError::Error)?;
    let (offset, width) = (args.u64("offset")?, args.u64_or("width", 4)?);
    if !matches!(width, 1 | 2 | 4) || offset % width != 0 || offset + width > 4096 {
        return Err(OpError::Error(format!(
            "a {width}-byte access at {offset:#x}: widths are 1, 2 or 4, aligned, below 4096"
        )));
    }
    Ok((f, offset, width as usize))
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> OpError {
    match e.raw_os_error() {
        Some(code) => OpError::Errno(code),
        None => OpError::Error(format!("{}: {e}", path.display())),
    }
}

/// `pci.config_read`.
pub fn config_read(_ctx: &mut Ctx, args: &Args) -> OpResult {
    let (f, offset, width) = access(args)?;
    let path = pci::dir(&f.bdf).join("config");
    let file = OpenOptions::new()
        .read(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    let mut buf = [0u8; 4];
    let n = file
        .read_at(&mut buf[..width], offset)
        .map_err(|e| io_error(&path, e))?;
    if n != width {
        return Err(OpError::Error(format!(
            "{}: read {n} of {width} bytes at {offset:#x}",
            path.display()
        )));
    }
    Ok(Value::from(u32::from_le_bytes(buf)))
}

/// `pci.config_write`: under a policy, only to a function it lets be taken.
pub fn config_write(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (f, offset, width) = access(args)?;
    ctx.may_take(&f)?;
    let value = args.u64("value")?;
    if value >> (8 * width) != 0 {
        return Err(OpError::Error(format!(
            "value {value:#x} does not fit {width} bytes"
        )));
    }
    let path = pci::dir(&f.bdf).join("config");
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    let bytes = (value as u32).to_le_bytes();
    let n = file
        .write_at(&bytes[..width], offset)
        .map_err(|e| io_error(&path, e))?;
    if n != width {
        return Err(OpError::Error(format!(
            "{}: wrote {n} of {width} bytes at {offset:#x}",
            path.display()
        )));
    }
    Ok(Value::Null)
}
