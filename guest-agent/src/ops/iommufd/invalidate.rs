//! Cache invalidation a guest asks for (`IOMMU_HWPT_INVALIDATE`) on a
//! nested HWPT or a vIOMMU, in the selftest driver's request formats, and
//! the mock's checks of what was invalidated: a nested HWPT's IOTLB
//! entries (`IOMMU_TEST_OP_MD_CHECK_IOTLB`) and a device's cache entries
//! behind a vIOMMU (`IOMMU_TEST_OP_DEV_CHECK_CACHE`).  The kernel reports
//! how many requests it handled even when one fails, so a step may name
//! the count it must be (`processed`) and still expect the errno.

use serde_json::{Value, json};

use crate::args::Args;
use crate::ctx::Ctx;
use crate::outcome::{OpError, OpResult};
use crate::uapi::{argsz, iofd, iommufd_ioctl as io, selftest};

/// Request formats by name, as `hwpt.invalidate` takes them.
pub const DATA_TYPES: &[(&str, u32)] = &[
    ("selftest", selftest::HWPT_INVALIDATE_DATA_SELFTEST),
    (
        "selftest_invalid",
        selftest::HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
    ),
    ("viommu_selftest", selftest::VIOMMU_INVALIDATE_DATA_SELFTEST),
];

/// One request as a step writes it: `{ iotlb_id = 1 }`, `{ all = true }`,
/// `{ flags = "0xffffffff", vdev_id = 0x99, cache_id = 2 }`.
#[derive(Default)]
struct Request {
    flags: u32,
    iotlb_id: u32,
    vdev_id: u32,
    cache_id: u32,
}

fn requests(args: &Args) -> Result<Vec<Request>, OpError> {
    let list = args
        .get("entries")?
        .as_array()
        .ok_or("entries: expected an array of tables")?;
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let table = e
            .as_object()
            .ok_or_else(|| format!("entries[{i}]: expected a table"))?;
        let mut r = Request::default();
        for (key, v) in table {
            let n = || -> Result<u32, OpError> {
                iobench_proto::ops::parse_u64(v)
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| OpError::Error(format!("entries[{i}].{key}: {v} is no u32")))
            };
            match key.as_str() {
                "all" if v.as_bool() == Some(true) => r.flags |= selftest::TEST_INVALIDATE_FLAG_ALL,
                "all" if v.as_bool() == Some(false) => {}
                "flags" => r.flags = n()?,
                "iotlb_id" => r.iotlb_id = n()?,
                "vdev_id" => r.vdev_id = n()?,
                "cache_id" => r.cache_id = n()?,
                _ => {
                    return Err(OpError::Error(format!(
                        "entries[{i}].{key}: takes all, flags, iotlb_id, vdev_id, cache_id"
                    )));
                }
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// `hwpt.invalidate`: yields `{entry_num}` (the requests handled); with
/// `processed`, a different count is an error whatever the ioctl said.
pub fn invalidate(ctx: &mut Ctx, args: &Args) -> OpResult {
    let data_type = args.choice("data_type", DATA_TYPES)?;
    let reqs = requests(args)?;
    // The entries in the format's layout, kept alive across the call.
    let (hwpt_entries, viommu_entries): (Vec<_>, Vec<_>) = reqs
        .iter()
        .map(|r| {
            let h = selftest::HwptInvalidateSelftest {
                flags: r.flags,
                iotlb_id: r.iotlb_id,
            };
            let v = selftest::ViommuInvalidateSelftest {
                flags: r.flags,
                vdev_id: r.vdev_id,
                cache_id: r.cache_id,
            };
            (h, v)
        })
        .unzip();
    let (data_uptr, entry_len) = if args.str_or("data_type", "selftest")? == "viommu_selftest" {
        (
            viommu_entries.as_ptr() as u64,
            argsz::<selftest::ViommuInvalidateSelftest>(),
        )
    } else {
        (
            hwpt_entries.as_ptr() as u64,
            argsz::<selftest::HwptInvalidateSelftest>(),
        )
    };
    let mut inv = iofd::iommu_hwpt_invalidate {
        size: argsz::<iofd::iommu_hwpt_invalidate>(),
        hwpt_id: args.u32("hwpt")?,
        data_uptr,
        data_type,
        entry_len,
        entry_num: reqs.len() as u32,
        __reserved: 0,
    };
    let result = io::HWPT_INVALIDATE.call(ctx.fd(args, "iommufd")?, &mut inv);
    if let Some(want) = args.opt_u32("processed")? {
        if inv.entry_num != want {
            return Err(OpError::Error(format!(
                "the kernel handled {} of {} requests, not {want} (ioctl: {})",
                inv.entry_num,
                reqs.len(),
                match result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => iobench_proto::ops::errno_name(e.0),
                }
            )));
        }
    }
    result?;
    Ok(json!({ "entry_num": inv.entry_num }))
}

/// `mock.check_iotlb`: ok if the mock nested HWPT's IOTLB entry `iotlb_id`
/// holds `value`, else the kernel's EINVAL.
pub fn check_iotlb(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut c = selftest::CheckIotlb {
        id: args.u32("iotlb_id")?,
        iotlb: args.u32("value")?,
    };
    selftest::MD_CHECK_IOTLB.call(ctx.fd(args, "iommufd")?, args.u32("hwpt")?, &mut c)?;
    Ok(Value::Null)
}

/// `mock.check_dev_cache`: ok if the mock device's cache entry `cache_id`
/// holds `value`, else the kernel's EINVAL.
pub fn check_dev_cache(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut c = selftest::CheckDevCache {
        id: args.u32("cache_id")?,
        cache: args.u32("value")?,
    };
    selftest::DEV_CHECK_CACHE.call(ctx.fd(args, "iommufd")?, args.u32("dev_id")?, &mut c)?;
    Ok(Value::Null)
}
