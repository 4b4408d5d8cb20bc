//! Virtual IOMMUs and what hangs off them: a vIOMMU on a nesting parent
//! HWPT (`IOMMU_VIOMMU_ALLOC`, with the selftest driver's loop-back data),
//! a device's virtual instance under its guest-visible id
//! (`IOMMU_VDEVICE_ALLOC`), and hardware queues the IOMMU reads from guest
//! memory mapped in the parent (`IOMMU_HW_QUEUE_ALLOC`).  Nested HWPTs on
//! a vIOMMU are `hwpt.alloc`'s, its events [`super::eventq`]'s and its
//! cache invalidation [`super::invalidate`]'s.

use serde_json::json;

use super::id;
use crate::args::Args;
use crate::ctx::Ctx;
use crate::outcome::OpResult;
use crate::uapi::{argsz, iofd, iommufd_ioctl as io, selftest};

/// vIOMMU types by name, as `viommu.alloc` takes them.
pub const VIOMMU_TYPES: &[(&str, u32)] = &[
    ("selftest", selftest::VIOMMU_TYPE_SELFTEST),
    ("default", iofd::iommu_viommu_type_IOMMU_VIOMMU_TYPE_DEFAULT),
    (
        "arm_smmuv3",
        iofd::iommu_viommu_type_IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
    ),
    (
        "tegra241_cmdqv",
        iofd::iommu_viommu_type_IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV,
    ),
];

/// Hardware queue types by name, as `hw_queue.alloc` takes them.
pub const HW_QUEUE_TYPES: &[(&str, u32)] = &[
    ("selftest", selftest::HW_QUEUE_TYPE_SELFTEST),
    (
        "default",
        iofd::iommu_hw_queue_type_IOMMU_HW_QUEUE_TYPE_DEFAULT,
    ),
    (
        "tegra241_cmdqv",
        iofd::iommu_hw_queue_type_IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV,
    ),
];

/// `viommu.alloc`: yields `{viommu_id}`, with `in_data` also the selftest
/// driver's answer `{out_data, mmap_offset, mmap_length}`.
pub fn viommu_alloc(ctx: &mut Ctx, args: &Args) -> OpResult {
    let in_data = args.opt_u32("in_data")?;
    let mut data = selftest::ViommuSelftest {
        in_data: in_data.unwrap_or(0),
        ..Default::default()
    };
    let mut v = iofd::iommu_viommu_alloc {
        size: argsz::<iofd::iommu_viommu_alloc>(),
        type_: args.choice("type", VIOMMU_TYPES)?,
        dev_id: args.u32("dev_id")?,
        hwpt_id: args.u32("hwpt_id")?,
        ..Default::default()
    };
    if in_data.is_some() {
        v.data_len = argsz::<selftest::ViommuSelftest>();
        v.data_uptr = (&mut data as *mut selftest::ViommuSelftest) as u64;
    }
    io::VIOMMU_ALLOC.call(ctx.fd(args, "iommufd")?, &mut v)?;
    let mut out = json!({ "viommu_id": v.out_viommu_id });
    if in_data.is_some() {
        out["out_data"] = data.out_data.into();
        out["mmap_offset"] = data.out_mmap_offset.into();
        out["mmap_length"] = data.out_mmap_length.into();
    }
    Ok(out)
}

/// `vdevice.alloc`: yields the vDEVICE id.
pub fn vdevice_alloc(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut v = iofd::iommu_vdevice_alloc {
        size: argsz::<iofd::iommu_vdevice_alloc>(),
        viommu_id: args.u32("viommu_id")?,
        dev_id: args.u32("dev_id")?,
        virt_id: args.u64("virt_id")?,
        ..Default::default()
    };
    io::VDEVICE_ALLOC.call(ctx.fd(args, "iommufd")?, &mut v)?;
    Ok(id(v.out_vdevice_id))
}

/// `hw_queue.alloc`: a queue of `length` bytes at `iova` of the vIOMMU's
/// parent; yields its id.
pub fn hw_queue_alloc(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut q = iofd::iommu_hw_queue_alloc {
        size: argsz::<iofd::iommu_hw_queue_alloc>(),
        viommu_id: args.u32("viommu_id")?,
        type_: args.choice("type", HW_QUEUE_TYPES)?,
        index: args.u32("index")?,
        nesting_parent_iova: args.u64("iova")?,
        length: args.u64("length")?,
        ..Default::default()
    };
    io::HW_QUEUE_ALLOC.call(ctx.fd(args, "iommufd")?, &mut q)?;
    Ok(id(q.out_hw_queue_id))
}
