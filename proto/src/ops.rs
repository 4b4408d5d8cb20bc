//! The operation catalogue: every operation a scenario step may name, with
//! its arguments, and the kernel features a scenario may require.
//!
//! Both sides use this one table.  The host checks a scenario file against it
//! before anything boots (unknown op, unknown or missing argument, literal of
//! the wrong kind, reference to a name no earlier step bound), and the agent
//! dispatches on the same names, so the two can never disagree about what
//! exists.  What the values in a step mean (numbers, patterns, references,
//! errno names, whether a result meets an expectation) is [`crate::values`],
//! re-exported here.

pub use crate::values::{
    ERRNOS, Pattern, Reference, errno_code, errno_name, parse_u64, satisfies, value_matches,
};

/// What an argument holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// An unsigned number: integer, `"0x…"`, `"64K"`/`"1G"`, or `"max"`.
    U64,
    /// `true` or `false`.
    Bool,
    /// Free text.
    Str,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// An object made by an earlier step: always a `$reference`.
    Handle,
    /// A PCI function: `"vvvv:dddd"` (vendor:device, hex) or a full address `"0000:00:05.0"`.
    Device,
    /// A byte pattern: `"byte:0x5a"` (every byte) or `"seq:7"` (a seeded sequence).
    Pattern,
    /// IOVA ranges: an array of `[start, last]` pairs (inclusive).
    Ranges,
    /// Anything (used by `check`).
    Any,
}

/// One argument of an operation.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    /// Its key in the step.
    pub name: &'static str,
    /// What it holds.
    pub kind: ArgKind,
    /// Whether the step must give it.
    pub required: bool,
}

/// One operation.
#[derive(Debug, Clone, Copy)]
pub struct OpSpec {
    /// Dotted name, e.g. `spapr.create_window`.
    pub name: &'static str,
    /// One line saying what it does and what value it yields.
    pub summary: &'static str,
    /// Its arguments.
    pub args: &'static [ArgSpec],
}

const fn req(name: &'static str, kind: ArgKind) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: ArgKind) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        required: false,
    }
}

use ArgKind::*;

/// VFIO extensions by name, for `vfio.check_extension` and `vfio.set_iommu`.
pub const VFIO_EXTENSIONS: &[(&str, u32)] = &[
    ("type1", 1),
    ("spapr", 2),
    ("type1v2", 3),
    ("dma-cc", 4),
    ("eeh", 5),
    ("nesting", 6),
    ("spapr-v2", 7),
    ("noiommu", 8),
    ("unmap-all", 9),
    ("update-vaddr", 10),
];
const EXTENSION_NAMES: &[&str] = &[
    "type1",
    "spapr",
    "type1v2",
    "dma-cc",
    "eeh",
    "nesting",
    "spapr-v2",
    "noiommu",
    "unmap-all",
    "update-vaddr",
];

/// `VFIO_EEH_PE_OP` operations by name, numbered as in `linux/vfio.h`.
pub const EEH_OPS: &[&str] = &[
    "disable",
    "enable",
    "unfreeze_io",
    "unfreeze_dma",
    "get_state",
    "reset_deactivate",
    "reset_hot",
    "reset_fundamental",
    "configure",
    "inject_err",
];

const MEM_RANGE: [ArgSpec; 3] = [
    req("buffer", Handle),
    opt("offset", U64),
    opt("length", U64),
];

/// Every operation, sorted by name.
pub const OPS: &[OpSpec] = &[
    OpSpec {
        name: "bench.edu_round_trips",
        summary: "edu DMA RAM→edu→RAM `iterations` times; yields {iterations, seconds, per_second}",
        args: &[
            req("device", Handle),
            req("src_iova", U64),
            req("dst_iova", U64),
            req("iterations", U64),
            opt("count", U64),
        ],
    },
    OpSpec {
        name: "bench.ioas_map_unmap",
        summary: "IOAS map+unmap of a buffer range `iterations` times; yields {iterations, seconds, per_second}",
        args: &[
            req("iommufd", Handle),
            req("ioas", U64),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
            req("iova", U64),
            req("iterations", U64),
        ],
    },
    OpSpec {
        name: "bench.vfio_map_unmap",
        summary: "VFIO_IOMMU_MAP_DMA+UNMAP_DMA `iterations` times; yields {iterations, seconds, per_second}",
        args: &[
            req("container", Handle),
            req("iova", U64),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
            req("iterations", U64),
        ],
    },
    OpSpec {
        name: "check",
        summary: "compare `value` with eq/ne/contains/lt/le/gt/ge/bits_set/bits_clear; ok (yielding the value) or error",
        args: &[
            req("value", Any),
            opt("eq", Any),
            opt("ne", Any),
            opt("contains", Str),
            opt("lt", U64),
            opt("le", U64),
            opt("gt", U64),
            opt("ge", U64),
            opt("bits_set", U64),
            opt("bits_clear", U64),
        ],
    },
    OpSpec {
        name: "close",
        summary: "close a handle (fd or buffer) made by an earlier step",
        args: &[req("handle", Handle)],
    },
    OpSpec {
        name: "debug.abort",
        summary: "abort the agent (tests the harness's crash handling)",
        args: &[],
    },
    OpSpec {
        name: "debug.sleep",
        summary: "sleep `ms` milliseconds (tests the harness's timeouts)",
        args: &[req("ms", U64)],
    },
    OpSpec {
        name: "edu.dma",
        summary: "program an edu DMA (to_device: RAM→edu, from_device: edu→RAM) and wait for it; EIO if its registers read all-ones (a stopped EEH PE)",
        args: &[
            req("device", Handle),
            req("iova", U64),
            req("count", U64),
            req("direction", Choice(&["to_device", "from_device"])),
            opt("edu_offset", U64),
            opt("timeout_ms", U64),
        ],
    },
    OpSpec {
        name: "eeh.pe_op",
        summary: "VFIO_EEH_PE_OP on a container; yields the ioctl's return value",
        args: &[
            req("container", Handle),
            req("action", Choice(EEH_OPS)),
            opt("type", U64),
            opt("func", U64),
            opt("addr", U64),
            opt("mask", U64),
        ],
    },
    OpSpec {
        name: "fault.alloc",
        summary: "IOMMU_FAULT_QUEUE_ALLOC; yields a handle with its fault_id (for hwpt.alloc's fault_id)",
        args: &[req("iommufd", Handle)],
    },
    OpSpec {
        name: "fault.read",
        summary: "read up to `max` (16) I/O page faults from a fault queue, never waiting; yields {count, faults: [{flags, dev_id, pasid, grpid, perm, addr, length, cookie}…], cookie: the last fault's}",
        args: &[req("fault", Handle), opt("max", U64)],
    },
    OpSpec {
        name: "fault.respond",
        summary: "write an iommu_hwpt_page_response (`code` success|invalid) for a fault group's cookie to its fault queue",
        args: &[
            req("fault", Handle),
            req("cookie", U64),
            opt("code", Choice(&["success", "invalid"])),
        ],
    },
    OpSpec {
        name: "file.read",
        summary: "read a (sysfs, debugfs, proc) file; yields its trimmed text",
        args: &[req("path", Str)],
    },
    OpSpec {
        name: "file.wait",
        summary: "wait up to `timeout_ms` (10000) for a path to exist (or with exists = false, to be gone, e.g. a removed PCI function); ETIMEDOUT if it did not",
        args: &[
            req("path", Str),
            opt("exists", Bool),
            opt("timeout_ms", U64),
        ],
    },
    OpSpec {
        name: "file.write",
        summary: "write text to a (sysfs, debugfs) file",
        args: &[req("path", Str), req("data", Str)],
    },
    OpSpec {
        name: "host.qmp",
        summary: "a host step: the harness runs QMP command `execute` (with `arguments`) on the machine's monitor between the agent's steps, the agent waiting for it; yields QMP's return value",
        args: &[req("execute", Str), opt("arguments", Any)],
    },
    OpSpec {
        name: "hw_queue.alloc",
        summary: "IOMMU_HW_QUEUE_ALLOC of a vIOMMU (`type` selftest by default): queue `index` of `length` bytes at `iova` of its parent; yields the queue id",
        args: &[
            req("iommufd", Handle),
            req("viommu_id", U64),
            req("index", U64),
            req("iova", U64),
            req("length", U64),
            opt("type", Choice(&["selftest", "default", "tegra241_cmdqv"])),
        ],
    },
    OpSpec {
        name: "hwpt.alloc",
        summary: "IOMMU_HWPT_ALLOC on an IOAS, or nested (data = \"selftest\", mock IOTLB entries `iotlb`, default 0xbadbeef) on a nesting parent HWPT or a vIOMMU; `fault_id` sets FAULT_ID_VALID; yields the new hwpt id",
        args: &[
            req("iommufd", Handle),
            req("dev_id", U64),
            req("pt_id", U64),
            opt("flags", U64),
            opt("data", Choice(&["none", "selftest"])),
            opt("iotlb", U64),
            opt("fault_id", U64),
        ],
    },
    OpSpec {
        name: "hwpt.get_dirty_bitmap",
        summary: "IOMMU_HWPT_GET_DIRTY_BITMAP of [iova, iova+length) in `page_size` pages (NO_CLEAR with no_clear); yields {ranges: [[first, last]…] of dirty pages, count, bitmap: \"0x…\" (bit i: page i)}",
        args: &[
            req("iommufd", Handle),
            req("hwpt", U64),
            req("iova", U64),
            req("length", U64),
            req("page_size", U64),
            opt("no_clear", Bool),
        ],
    },
    OpSpec {
        name: "hwpt.invalidate",
        summary: "IOMMU_HWPT_INVALIDATE on a nested HWPT or vIOMMU with selftest `entries` ([{iotlb_id}, {all = true}, {flags, vdev_id, cache_id}…]); yields {entry_num}; `processed`: the count the kernel must report, even with an errno",
        args: &[
            req("iommufd", Handle),
            req("hwpt", U64),
            req("entries", Any),
            opt(
                "data_type",
                Choice(&["selftest", "selftest_invalid", "viommu_selftest"]),
            ),
            opt("processed", U64),
        ],
    },
    OpSpec {
        name: "hwpt.set_dirty_tracking",
        summary: "IOMMU_HWPT_SET_DIRTY_TRACKING: enable (or with enable = false disable) dirty tracking of a paging HWPT",
        args: &[
            req("iommufd", Handle),
            req("hwpt", U64),
            req("enable", Bool),
        ],
    },
    OpSpec {
        name: "ioas.alloc",
        summary: "IOMMU_IOAS_ALLOC; yields the IOAS id",
        args: &[req("iommufd", Handle)],
    },
    OpSpec {
        name: "ioas.allow_iovas",
        summary: "IOMMU_IOAS_ALLOW_IOVAS with the given ranges ([] clears)",
        args: &[
            req("iommufd", Handle),
            req("ioas", U64),
            req("ranges", Ranges),
        ],
    },
    OpSpec {
        name: "ioas.change_process",
        summary: "IOMMU_IOAS_CHANGE_PROCESS: charge the pins of every (memfd-only) mapping of the iommufd to this process",
        args: &[req("iommufd", Handle)],
    },
    OpSpec {
        name: "ioas.copy",
        summary: "IOMMU_IOAS_COPY; fixed dst_iova if given; yields the destination IOVA",
        args: &[
            req("iommufd", Handle),
            req("src_ioas", U64),
            req("dst_ioas", U64),
            req("src_iova", U64),
            req("length", U64),
            opt("dst_iova", U64),
            opt("read", Bool),
            opt("write", Bool),
        ],
    },
    OpSpec {
        name: "ioas.iova_ranges",
        summary: "IOMMU_IOAS_IOVA_RANGES; yields {ranges: [[start, last]…], alignment}",
        args: &[req("iommufd", Handle), req("ioas", U64)],
    },
    OpSpec {
        name: "ioas.map",
        summary: "IOMMU_IOAS_MAP of a buffer; fixed iova if given; yields the IOVA",
        args: &[
            req("iommufd", Handle),
            req("ioas", U64),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
            opt("iova", U64),
            opt("read", Bool),
            opt("write", Bool),
        ],
    },
    OpSpec {
        name: "ioas.map_file",
        summary: "IOMMU_IOAS_MAP_FILE of a memfd buffer's file range (`offset` is the file offset); fixed iova if given; yields the IOVA",
        args: &[
            req("iommufd", Handle),
            req("ioas", U64),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
            opt("iova", U64),
            opt("read", Bool),
            opt("write", Bool),
        ],
    },
    OpSpec {
        name: "ioas.unmap",
        summary: "IOMMU_IOAS_UNMAP; yields the length unmapped",
        args: &[
            req("iommufd", Handle),
            req("ioas", U64),
            req("iova", U64),
            req("length", U64),
        ],
    },
    OpSpec {
        name: "iommufd.destroy",
        summary: "IOMMU_DESTROY of an object id",
        args: &[req("iommufd", Handle), req("id", U64)],
    },
    OpSpec {
        name: "iommufd.hw_info",
        summary: "IOMMU_GET_HW_INFO; yields {type, capabilities}",
        args: &[req("iommufd", Handle), req("dev_id", U64)],
    },
    OpSpec {
        name: "iommufd.open",
        summary: "open /dev/iommu; yields a handle",
        args: &[],
    },
    OpSpec {
        name: "iommufd.option",
        summary: "IOMMU_OPTION: set `value` if given, else get; yields the value",
        args: &[
            req("iommufd", Handle),
            req("option", Choice(&["rlimit_mode", "huge_pages"])),
            opt("object_id", U64),
            opt("value", U64),
        ],
    },
    OpSpec {
        name: "iommufd.vfio_ioas",
        summary: "IOMMU_VFIO_IOAS: get (yields the IOAS id), set (`ioas`) or clear the IOAS of the VFIO-compatible container, whose type1 ioctls (vfio.set_iommu/map_dma/unmap_dma) then go to the iommufd handle",
        args: &[
            req("iommufd", Handle),
            req("action", Choice(&["get", "set", "clear"])),
            opt("ioas", U64),
        ],
    },
    OpSpec {
        name: "kernel.log_contains",
        summary: "ok (yielding the line) if a kernel log line since the scenario began contains `text`, waiting up to `timeout_ms` (0) for it",
        args: &[req("text", Str), opt("timeout_ms", U64)],
    },
    OpSpec {
        name: "kernel.meminfo",
        summary: "read /proc/meminfo; yields {Field: value…}, sizes in bytes (e.g. $m.VmallocUsed)",
        args: &[],
    },
    OpSpec {
        name: "mem.alloc",
        summary: "anonymous (or hugetlb) page-aligned buffer, or with memfd a shared mapping of a memfd (for ioas.map_file); yields a handle",
        args: &[
            req("size", U64),
            opt("hugetlb", Bool),
            opt("memfd", Bool),
            opt("fill", Pattern),
        ],
    },
    OpSpec {
        name: "mem.check",
        summary: "ok if the buffer range holds the pattern, else error naming the first bad byte",
        args: &[
            MEM_RANGE[0],
            req("pattern", Pattern),
            MEM_RANGE[1],
            MEM_RANGE[2],
        ],
    },
    OpSpec {
        name: "mem.fill",
        summary: "write a pattern into a buffer range",
        args: &[
            MEM_RANGE[0],
            req("pattern", Pattern),
            MEM_RANGE[1],
            MEM_RANGE[2],
        ],
    },
    OpSpec {
        name: "mock.access_create",
        summary: "IOMMU_TEST_OP_CREATE_ACCESS on an IOAS; yields an access handle",
        args: &[
            req("iommufd", Handle),
            req("ioas", U64),
            opt("pin_pages", Bool),
        ],
    },
    OpSpec {
        name: "mock.access_pages",
        summary: "IOMMU_TEST_OP_ACCESS_PAGES (pin); yields the pages id",
        args: &[
            req("iommufd", Handle),
            req("access", Handle),
            req("iova", U64),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
            opt("write", Bool),
        ],
    },
    OpSpec {
        name: "mock.access_rw",
        summary: "IOMMU_TEST_OP_ACCESS_RW between an IOVA range and a buffer",
        args: &[
            req("iommufd", Handle),
            req("access", Handle),
            req("iova", U64),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
            opt("write", Bool),
        ],
    },
    OpSpec {
        name: "mock.add_reserved",
        summary: "IOMMU_TEST_OP_ADD_RESERVED: reserve an IOVA range in an IOAS",
        args: &[
            req("iommufd", Handle),
            req("ioas", U64),
            req("start", U64),
            req("length", U64),
        ],
    },
    OpSpec {
        name: "mock.check_dev_cache",
        summary: "IOMMU_TEST_OP_DEV_CHECK_CACHE: ok if the mock device's cache entry `cache_id` (0-3, default 0xbaddad) holds `value`, else EINVAL",
        args: &[
            req("iommufd", Handle),
            req("dev_id", U64),
            req("cache_id", U64),
            req("value", U64),
        ],
    },
    OpSpec {
        name: "mock.check_iotlb",
        summary: "IOMMU_TEST_OP_MD_CHECK_IOTLB: ok if IOTLB entry `iotlb_id` (0-3) of a mock nested HWPT holds `value`, else EINVAL",
        args: &[
            req("iommufd", Handle),
            req("hwpt", U64),
            req("iotlb_id", U64),
            req("value", U64),
        ],
    },
    OpSpec {
        name: "mock.check_map",
        summary: "IOMMU_TEST_OP_MD_CHECK_MAP: the mock domain maps iova→buffer",
        args: &[
            req("iommufd", Handle),
            req("hwpt", U64),
            req("iova", U64),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
        ],
    },
    OpSpec {
        name: "mock.dirty",
        summary: "IOMMU_TEST_OP_DIRTY: the mock paging HWPT marks dirty its `page_size` pages of [iova, iova+length) that meet `ranges`, as device writes would; yields how many it marked",
        args: &[
            req("iommufd", Handle),
            req("hwpt", U64),
            req("iova", U64),
            req("length", U64),
            req("page_size", U64),
            req("ranges", Ranges),
        ],
    },
    OpSpec {
        name: "mock.domain",
        summary: "IOMMU_TEST_OP_MOCK_DOMAIN: mock device + domain attached to an IOAS (or HWPT); no_dirty: a device without dirty tracking (MOCK_DOMAIN_FLAGS); yields {stdev_id, hwpt_id, idev_id}",
        args: &[
            req("iommufd", Handle),
            req("ioas", U64),
            opt("no_dirty", Bool),
        ],
    },
    OpSpec {
        name: "mock.domain_replace",
        summary: "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: re-attach a mock device to pt_id",
        args: &[
            req("iommufd", Handle),
            req("stdev_id", U64),
            req("pt_id", U64),
        ],
    },
    OpSpec {
        name: "mock.trigger_iopf",
        summary: "IOMMU_TEST_OP_TRIGGER_IOPF: the mock device (iommufd device `dev_id`) reports a page request for `addr` (pasid, grpid, perm default 0)",
        args: &[
            req("iommufd", Handle),
            req("dev_id", U64),
            req("addr", U64),
            opt("pasid", U64),
            opt("grpid", U64),
            opt("perm", U64),
        ],
    },
    OpSpec {
        name: "mock.trigger_vevent",
        summary: "IOMMU_TEST_OP_TRIGGER_VEVENT `count` (1) times: the mock device reports vEVENTs through its vIOMMU; yields count",
        args: &[
            req("iommufd", Handle),
            req("dev_id", U64),
            opt("count", U64),
        ],
    },
    OpSpec {
        name: "pci.bind_vfio",
        summary: "bind a PCI function to vfio-pci; yields its address",
        args: &[req("device", Device), opt("index", U64)],
    },
    OpSpec {
        name: "pci.config_read",
        summary: "read `width` (1|2|4, default 4) bytes of a function's configuration space at `offset` through sysfs (the kernel's config accessors, not VFIO's virtualized view); yields the little-endian number",
        args: &[
            req("device", Device),
            req("offset", U64),
            opt("width", U64),
            opt("index", U64),
        ],
    },
    OpSpec {
        name: "pci.config_write",
        summary: "write `value` as `width` (1|2|4, default 4) little-endian bytes at `offset` of a function's configuration space through sysfs",
        args: &[
            req("device", Device),
            req("offset", U64),
            req("value", U64),
            opt("width", U64),
            opt("index", U64),
        ],
    },
    OpSpec {
        name: "selftest.run",
        summary: "run an upstream selftest program of the initramfs (`/selftests/<program>`) with `args` and a device's address last, killed after `timeout` s; yields {exit, signal, timed_out, seconds, output, truncated, orphaned}",
        args: &[
            req("program", Str),
            opt("args", Str),
            opt("device", Device),
            opt("timeout", U64),
        ],
    },
    OpSpec {
        name: "spapr.create_window",
        summary: "VFIO_IOMMU_SPAPR_TCE_CREATE; yields {start_addr}",
        args: &[
            req("container", Handle),
            req("page_shift", U64),
            req("window_size", U64),
            opt("levels", U64),
        ],
    },
    OpSpec {
        name: "spapr.register_memory",
        summary: "VFIO_IOMMU_SPAPR_REGISTER_MEMORY of a buffer range",
        args: &[
            req("container", Handle),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
        ],
    },
    OpSpec {
        name: "spapr.remove_window",
        summary: "VFIO_IOMMU_SPAPR_TCE_REMOVE",
        args: &[req("container", Handle), req("start_addr", U64)],
    },
    OpSpec {
        name: "spapr.tce_info",
        summary: "VFIO_IOMMU_SPAPR_TCE_GET_INFO; yields {dma32_window_start, dma32_window_size, pgsizes, max_dynamic_windows_supported, levels, flags}",
        args: &[req("container", Handle)],
    },
    OpSpec {
        name: "spapr.unregister_memory",
        summary: "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY of a buffer range",
        args: &[
            req("container", Handle),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
        ],
    },
    OpSpec {
        name: "vdevice.alloc",
        summary: "IOMMU_VDEVICE_ALLOC: a device's vDEVICE on a vIOMMU with guest-visible `virt_id`; yields its id",
        args: &[
            req("iommufd", Handle),
            req("viommu_id", U64),
            req("dev_id", U64),
            req("virt_id", U64),
        ],
    },
    OpSpec {
        name: "veventq.alloc",
        summary: "IOMMU_VEVENTQ_ALLOC of `depth` events on a vIOMMU (`type` selftest by default); yields a handle with veventq_id",
        args: &[
            req("iommufd", Handle),
            req("viommu_id", U64),
            req("depth", U64),
            opt(
                "type",
                Choice(&["selftest", "default", "arm_smmuv3", "tegra241_cmdqv"]),
            ),
        ],
    },
    OpSpec {
        name: "veventq.read",
        summary: "one read of up to `bytes` (4096) from a vEVENTQ, never waiting; yields [{sequence, flags, lost, data, virt_id (selftest)}…] in order",
        args: &[req("veventq", Handle), opt("bytes", U64)],
    },
    OpSpec {
        name: "vfio.cdev_attach",
        summary: "VFIO_DEVICE_ATTACH_IOMMUFD_PT (also replaces); yields the pt id",
        args: &[req("device", Handle), req("pt_id", U64)],
    },
    OpSpec {
        name: "vfio.cdev_bind",
        summary: "VFIO_DEVICE_BIND_IOMMUFD; yields the device id",
        args: &[req("device", Handle), req("iommufd", Handle)],
    },
    OpSpec {
        name: "vfio.cdev_detach",
        summary: "VFIO_DEVICE_DETACH_IOMMUFD_PT",
        args: &[req("device", Handle)],
    },
    OpSpec {
        name: "vfio.cdev_open",
        summary: "open a function's /dev/vfio/devices/vfioN; yields a device handle",
        args: &[req("device", Device), opt("index", U64)],
    },
    OpSpec {
        name: "vfio.check_extension",
        summary: "VFIO_CHECK_EXTENSION; yields the ioctl's value",
        args: &[
            req("container", Handle),
            req("extension", Choice(EXTENSION_NAMES)),
        ],
    },
    OpSpec {
        name: "vfio.container_open",
        summary: "open /dev/vfio/vfio; yields a handle",
        args: &[],
    },
    OpSpec {
        name: "vfio.device_info",
        summary: "VFIO_DEVICE_GET_INFO; yields {flags, num_regions, num_irqs}",
        args: &[req("device", Handle)],
    },
    OpSpec {
        name: "vfio.device_open",
        summary: "VFIO_GROUP_GET_DEVICE_FD; yields a device handle",
        args: &[
            req("group", Handle),
            req("device", Device),
            opt("index", U64),
        ],
    },
    OpSpec {
        name: "vfio.device_reset",
        summary: "VFIO_DEVICE_RESET",
        args: &[req("device", Handle)],
    },
    OpSpec {
        name: "vfio.group_open",
        summary: "open the VFIO group of a function; yields a handle",
        args: &[req("device", Device), opt("index", U64)],
    },
    OpSpec {
        name: "vfio.group_set_container",
        summary: "VFIO_GROUP_SET_CONTAINER",
        args: &[req("group", Handle), req("container", Handle)],
    },
    OpSpec {
        name: "vfio.group_status",
        summary: "VFIO_GROUP_GET_STATUS; yields {viable, container_set}",
        args: &[req("group", Handle)],
    },
    OpSpec {
        name: "vfio.group_unset_container",
        summary: "VFIO_GROUP_UNSET_CONTAINER",
        args: &[req("group", Handle)],
    },
    OpSpec {
        name: "vfio.irq_count",
        summary: "read an interrupt eventfd of vfio.irq_eventfd, waiting up to `wait_ms` (0) for it to fire; yields how many interrupts arrived since the last read (0 if none)",
        args: &[req("eventfd", Handle), opt("wait_ms", U64)],
    },
    OpSpec {
        name: "vfio.irq_disable",
        summary: "VFIO_DEVICE_SET_IRQS with count 0 (DATA_NONE, ACTION_TRIGGER): disable IRQ index `index` (msi) and drop its eventfds",
        args: &[
            req("device", Handle),
            opt("index", Choice(&["intx", "msi", "msix"])),
        ],
    },
    OpSpec {
        name: "vfio.irq_eventfd",
        summary: "VFIO_DEVICE_SET_IRQS: trigger a new eventfd on vector `vector` (0) of IRQ index `index` (msi), enabling it; yields the eventfd's handle",
        args: &[
            req("device", Handle),
            opt("index", Choice(&["intx", "msi", "msix"])),
            opt("vector", U64),
        ],
    },
    OpSpec {
        name: "vfio.map_dma",
        summary: "VFIO_IOMMU_MAP_DMA of a buffer range at iova; yields the ioctl's return value",
        args: &[
            req("container", Handle),
            req("iova", U64),
            MEM_RANGE[0],
            MEM_RANGE[1],
            MEM_RANGE[2],
            opt("read", Bool),
            opt("write", Bool),
        ],
    },
    OpSpec {
        name: "vfio.region_mmap_read",
        summary: "mmap a region and load `width` (4|8) bytes at offset; yields the number (device byte order)",
        args: &[
            req("device", Handle),
            req("offset", U64),
            opt("region", U64),
            opt("width", U64),
        ],
    },
    OpSpec {
        name: "vfio.region_read",
        summary: "pread `width` (4|8) bytes of a region; yields the number (device byte order)",
        args: &[
            req("device", Handle),
            req("offset", U64),
            opt("region", U64),
            opt("width", U64),
        ],
    },
    OpSpec {
        name: "vfio.region_write",
        summary: "pwrite `width` (4|8) bytes to a region (device byte order)",
        args: &[
            req("device", Handle),
            req("offset", U64),
            req("value", U64),
            opt("region", U64),
            opt("width", U64),
        ],
    },
    OpSpec {
        name: "vfio.set_iommu",
        summary: "VFIO_SET_IOMMU",
        args: &[
            req("container", Handle),
            req("type", Choice(&["type1", "type1v2", "spapr", "spapr-v2"])),
        ],
    },
    OpSpec {
        name: "vfio.unmap_dma",
        summary: "VFIO_IOMMU_UNMAP_DMA; yields the ioctl's return value",
        args: &[
            req("container", Handle),
            req("iova", U64),
            req("length", U64),
        ],
    },
    OpSpec {
        name: "viommu.alloc",
        summary: "IOMMU_VIOMMU_ALLOC on a nesting parent HWPT (`type` selftest by default); yields {viommu_id}, with in_data also the selftest's {out_data, mmap_offset, mmap_length}",
        args: &[
            req("iommufd", Handle),
            req("dev_id", U64),
            req("hwpt_id", U64),
            opt(
                "type",
                Choice(&["selftest", "default", "arm_smmuv3", "tegra241_cmdqv"]),
            ),
            opt("in_data", U64),
        ],
    },
];

/// Kernel features a scenario may require (`requires = [...]`), as the agent's inventory names them.
pub const FEATURES: &[(&str, &str)] = &[
    (
        "vfio-container",
        "/dev/vfio/vfio exists (legacy VFIO container)",
    ),
    ("vfio-type1v2", "the container offers VFIO_TYPE1v2_IOMMU"),
    (
        "vfio-spapr-tce-v2",
        "the container offers VFIO_SPAPR_TCE_v2_IOMMU",
    ),
    ("vfio-cdev", "VFIO device cdevs (/dev/vfio/devices)"),
    ("iommufd", "/dev/iommu exists"),
    (
        "iommufd-test",
        "the iommufd selftest ioctl (CONFIG_IOMMUFD_TEST) answers",
    ),
    (
        "iommufd-fail-nth",
        "the fail_iommufd fault-injection knob exists",
    ),
    (
        "eeh",
        "the guest's EEH subsystem is enabled (a capable adapter was found)",
    ),
    ("eeh-debugfs", "/sys/kernel/debug/powerpc/eeh_* knobs exist"),
    (
        "kmemleak",
        "/sys/kernel/debug/kmemleak exists (a debug kernel): the agent scans for leaks after each scenario",
    ),
];

/// Looks an operation up by name.
pub fn op(name: &str) -> Option<&'static OpSpec> {
    OPS.iter().find(|o| o.name == name)
}

/// Whether a step of `op` is a host step (`host.*`): the agent resolves
/// its arguments and yields them, sends the step's result and waits; the
/// host acts on them, replaces the result with its own, and lets the agent
/// go on with [`crate::HostMsg::More`] (the go-ahead a long message's
/// parts also wait for).  A host step that failed in the agent (an unbound
/// `$reference`) is neither acted on nor waited for.
pub fn is_host_step(op: &str) -> bool {
    op.starts_with("host.")
}
