//! In-guest operation rates for `cargo xtask bench`: the same ioctls and
//! device DMA the scenarios use, looped, timed inside the guest so the
//! host↔agent link is not part of the number.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{edu, iommufd, vfio};
use crate::args::Args;
use crate::ctx::Ctx;
use crate::outcome::{OpError, OpResult};

fn rate(iterations: u64, run: impl FnMut() -> Result<(), OpError>) -> OpResult {
    let mut run = run;
    let start = Instant::now();
    for _ in 0..iterations {
        run()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(
        json!({ "iterations": iterations, "seconds": seconds, "per_second": iterations as f64 / seconds.max(1e-9) }),
    )
}

/// `bench.ioas_map_unmap`.
pub fn ioas_map_unmap(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    let (fd, ioas, iova) = (
        ctx.fd(args, "iommufd")?,
        args.u32("ioas")?,
        args.u64("iova")?,
    );
    let (va, flags) = (buf.addr(offset), iommufd::map_flags(args, true)?);
    rate(args.u64("iterations")?, || {
        iommufd::map_raw(fd, ioas, va, length, iova, flags)?;
        iommufd::unmap_raw(fd, ioas, iova, length).map(|_| ())
    })
}

/// `bench.vfio_map_unmap`.
pub fn vfio_map_unmap(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    let (fd, iova) = (ctx.fd(args, "container")?, args.u64("iova")?);
    let (va, flags) = (buf.addr(offset), vfio::rw_flags(args)?);
    rate(args.u64("iterations")?, || {
        vfio::map_raw(fd, va, iova, length, flags)?;
        vfio::unmap_raw(fd, iova, length).map(|_| ())
    })
}

/// `bench.edu_round_trips`.
pub fn edu_round_trips(ctx: &mut Ctx, args: &Args) -> OpResult {
    let fd = ctx.fd(args, "device")?;
    let (src, dst, count) = (
        args.u64("src_iova")?,
        args.u64("dst_iova")?,
        args.u64_or("count", 4096)?,
    );
    let timeout = Duration::from_secs(10);
    rate(args.u64("iterations")?, || {
        edu::transfer(fd, src, count, 0, false, timeout)?;
        edu::transfer(fd, dst, count, 0, true, timeout).map(|_| ())
    })
}
