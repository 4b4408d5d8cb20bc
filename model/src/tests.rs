//! One case per rule, written from the kernel source (Linux 7.2.13, the
//! lines each rule cites), QEMU 10.0 and the seed's text, plus the
//! catalogue's scenarios replayed step by step (their expectations are
//! what guests reported, or, for known bugs, what a fixed kernel must
//! report).  `every_rule_has_a_case` keeps the list complete.

use std::collections::BTreeSet;

use crate::dma::{Direction, Target};
use crate::errno::Errno;
use crate::ioas::{DomainParams, IommufdParams};
use crate::mem::{BufferId, BufferRange};
use crate::op::{AccessId, IoasId, MockId, Op};
use crate::outcome::{Outcome, Reply, TceInfo, Value};
use crate::platform::Hardware;
use crate::rule::Rule;
use crate::spapr::{Fixes, SpaprParams};
use crate::world::{Backend, World};

const B0: BufferId = BufferId(0);
const B1: BufferId = BufferId(1);
const DDW: u64 = 1 << 59;
const IO: IoasId = IoasId(0);

/// A world with two 64 KiB buffers (`$buf0`, `$buf1`).
fn with_buffers(mut w: World) -> World {
    for _ in 0..2 {
        w.apply(&Op::MemAlloc {
            size: 0x10000,
            hugetlb: false,
        })
        .unwrap();
    }
    w
}

fn k(page: u64, fixes: Fixes) -> World {
    with_buffers(World::spapr(SpaprParams::qemu(page, fixes)))
}

/// pseries, 4K pages, 7.2.13 as released.
fn k72() -> World {
    k(4096, Fixes::linux_7_2_13())
}

fn seed() -> World {
    with_buffers(World::seed(Hardware::qemu_pseries(4096)))
}

/// q35-mock on 7.2, one IOAS.
fn fd() -> World {
    let mut w = with_buffers(World::iommufd(IommufdParams::q35_mock_7_2()));
    w.apply(&Op::IoasAlloc).unwrap();
    w
}

fn reg(b: BufferId) -> Op {
    Op::Register(BufferRange::whole(b))
}

fn unreg(b: BufferId) -> Op {
    Op::Unregister(BufferRange::whole(b))
}

fn map(iova: u64, b: BufferId) -> Op {
    Op::MapDma {
        iova,
        range: BufferRange::whole(b),
        read: true,
        write: true,
    }
}

fn map_part(iova: u64, b: BufferId, offset: u64, length: u64) -> Op {
    Op::MapDma {
        iova,
        range: BufferRange::part(b, offset, length),
        read: true,
        write: true,
    }
}

fn unmap(iova: u64, length: u64) -> Op {
    Op::UnmapDma { iova, length }
}

fn create(page_shift: u32, window_size: u64) -> Op {
    Op::CreateWindow {
        page_shift,
        window_size,
        levels: None,
    }
}

fn remove(start_addr: u64) -> Op {
    Op::RemoveWindow { start_addr }
}

fn imap(iova: Option<u64>, range: BufferRange) -> Op {
    Op::IoasMap {
        ioas: IO,
        range,
        iova,
        read: true,
        write: true,
    }
}

fn iunmap(iova: u64, length: u64) -> Op {
    Op::IoasUnmap {
        ioas: IO,
        iova,
        length,
    }
}

fn ok(n: u64) -> Reply {
    Reply::Value(Value::U64(n))
}

fn err(e: Errno) -> Reply {
    Reply::Errno(e)
}

fn start(a: u64) -> Reply {
    Reply::Value(Value::StartAddr(a))
}

fn object() -> Reply {
    Reply::Value(Value::Object)
}

/// Applies the ops; the last outcome.
fn run(w: &mut World, ops: &[Op]) -> Outcome {
    let mut last = None;
    for op in ops {
        last = Some(w.apply(op).unwrap_or_else(|e| panic!("{op:?}: {e}")));
    }
    last.expect("ops")
}

struct Case {
    rule: Rule,
    world: World,
    ops: Vec<Op>,
    want: Reply,
}

fn case(rule: Rule, world: World, ops: Vec<Op>, want: Reply) -> Case {
    Case {
        rule,
        world,
        ops,
        want,
    }
}

/// Every rule's case.  The comments say what the cited code does.
fn cases() -> Vec<Case> {
    let f = Fixes::all();
    let f612 = Fixes::linux_6_12_95();
    let tiny_b0 = BufferRange::part(B0, 0, 1);
    let mut cases = vec![
        // ---- sPAPR ----
        // GET_INFO: tce32 window, pgsizes = 4K | query mask, 2 windows, 1 level.
        case(
            Rule::SpaprInfo,
            k72(),
            vec![Op::TceInfo],
            Reply::Value(Value::TceInfo(TceInfo {
                flags: 1,
                dma32_window_start: 0,
                dma32_window_size: 1 << 30,
                pgsizes: 0x1211000,
                max_dynamic_windows_supported: 2,
                levels: 1,
            })),
        ),
        case(
            Rule::AfterCrash,
            k72(),
            vec![reg(B0), map(0x3fff_f000, B0), Op::TceInfo],
            Reply::Crash,
        ),
        // vaddr & ~PAGE_MASK
        case(
            Rule::RegisterMisaligned,
            k72(),
            vec![Op::Register(BufferRange::part(B0, 0x800, 0x1000))],
            err(Errno::EINVAL),
        ),
        case(
            Rule::RegisterTwice,
            k72(),
            vec![reg(B0), reg(B0)],
            err(Errno::EBUSY),
        ),
        case(
            Rule::RegisterZeroSize,
            k72(),
            vec![Op::Register(BufferRange::part(B0, 0, 0))],
            err(Errno::ENOMEM),
        ),
        case(
            Rule::RegisterOverlap,
            k72(),
            vec![reg(B0), Op::Register(BufferRange::part(B0, 0x1000, 0x1000))],
            err(Errno::EINVAL),
        ),
        // The region an unregister with live mappings left in the mm list.
        case(
            Rule::RegisterReuse,
            k72(),
            vec![reg(B0), map(0x10000, B0), unreg(B0), reg(B0)],
            ok(0),
        ),
        case(Rule::Register, k72(), vec![reg(B0)], ok(0)),
        case(
            Rule::UnregisterBeforeMm,
            k72(),
            vec![unreg(B0)],
            err(Errno::EPERM),
        ),
        case(
            Rule::UnregisterMisaligned,
            k72(),
            vec![
                reg(B0),
                Op::Unregister(BufferRange::part(B0, 0x800, 0x1000)),
            ],
            err(Errno::EINVAL),
        ),
        // mm_iommu_get needs the exact (ua, entries).
        case(
            Rule::UnregisterUnknown,
            k72(),
            vec![reg(B0), Op::Unregister(BufferRange::part(B0, 0, 0x1000))],
            err(Errno::ENOENT),
        ),
        case(Rule::Unregister, k72(), vec![reg(B0), unreg(B0)], ok(0)),
        case(
            Rule::UnregisterWhileMapped,
            k72(),
            vec![reg(B0), map(0x10000, B0), unreg(B0)],
            ok(0),
        ),
        case(
            Rule::NotEnabled,
            k72(),
            vec![map(0x10000, B0)],
            err(Errno::EPERM),
        ),
        // A side rule: the map that creates the default window.
        case(
            Rule::DefaultWindowCreated,
            k72(),
            vec![reg(B0), map(0x10000, B0)],
            ok(0),
        ),
        case(
            Rule::NoWindow,
            k72(),
            vec![reg(B0), map(1 << 30, B0)],
            err(Errno::ENXIO),
        ),
        case(
            Rule::MapSizeOrVaddrMisaligned,
            k72(),
            vec![reg(B0), map_part(0x10000, B0, 0, 0x800)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::MapNoDirection,
            k72(),
            vec![
                reg(B0),
                Op::MapDma {
                    iova: 0x10000,
                    range: BufferRange::whole(B0),
                    read: false,
                    write: false,
                },
            ],
            err(Errno::EINVAL),
        ),
        // Bug 0001: the `||` macro returns 1.
        case(
            Rule::MisalignedIovaReturnsOne,
            k72(),
            vec![reg(B0), map(0x10800, B0)],
            ok(1),
        ),
        case(
            Rule::MisalignedIovaReturnsOne,
            k(4096, f),
            vec![reg(B0), map(0x10800, B0)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::MapPastWindowEnd,
            k(4096, f),
            vec![reg(B0), map(0x3fff_f000, B0)],
            err(Errno::EINVAL),
        ),
        // Fix 0002 without 0001: the range check fails through the macro: 1.
        case(
            Rule::MapPastWindowEnd,
            k(
                4096,
                Fixes {
                    fix_0002: true,
                    ..Fixes::linux_7_2_13()
                },
            ),
            vec![reg(B0), map(0x3fff_f000, B0)],
            ok(1),
        ),
        // Bug 0002: the 1 GiB window's 2 MiB view ends on a page boundary.
        case(
            Rule::MapPastEndCrash,
            k72(),
            vec![reg(B0), map(0x3fff_f000, B0)],
            Reply::Crash,
        ),
        case(
            Rule::MapPastEndCrash,
            k(65536, Fixes::linux_7_2_13()),
            vec![reg(B0), map(0x3fff_f000, B0)],
            Reply::Crash,
        ),
        // A 16M default table under QEMU's 1G window: the put succeeds, the
        // view write (4K kernel: 32K view, no padding) faults.
        case(
            Rule::MapPastEndViewWriteCrash,
            k72(),
            vec![reg(B0), remove(0), create(12, 16 << 20), map(0xfff000, B0)],
            Reply::Crash,
        ),
        // 64K kernel: a 16M 4K-page DDW's 32K view has 32K of padding.
        case(
            Rule::MapPastEndHcallError,
            k(65536, Fixes::linux_7_2_13()),
            vec![reg(B0), create(12, 16 << 20), map(DDW + 0xfff000, B0)],
            err(Errno::EINTR),
        ),
        case(
            Rule::MapPastEndBeyondTable,
            k(65536, Fixes::linux_7_2_13()),
            vec![reg(B0), remove(0), create(12, 16 << 20), map(0xfff000, B0)],
            ok(0),
        ),
        case(
            Rule::MapNotPreregistered,
            k72(),
            vec![reg(B1), map(0x10000, B0)],
            err(Errno::EINVAL),
        ),
        // 64K IOMMU pages over 4K pages (scenarios/windows/page_sizes.toml).
        case(
            Rule::MapBackingTooSmall,
            k72(),
            vec![reg(B0), create(16, 16 << 20), map(DDW, B0)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::MapReplaces,
            k72(),
            vec![reg(B0), reg(B1), map(0x10000, B0), map(0x10000, B1)],
            ok(0),
        ),
        case(Rule::Map, k72(), vec![reg(B0), map(0x10000, B0)], ok(0)),
        case(
            Rule::UnmapSizeMisaligned,
            k72(),
            vec![reg(B0), unmap(0x10000, 0x800)],
            err(Errno::EINVAL),
        ),
        // scenarios/windows/unmap_crossing_window_end.toml on 7.2.13: 1 (bug 0001).
        case(
            Rule::UnmapPastWindowEnd,
            k72(),
            vec![
                reg(B0),
                map_part(0x3fff_f000, B0, 0, 0x1000),
                unmap(0x3fff_f000, 0x2000),
            ],
            ok(1),
        ),
        case(
            Rule::UnmapPastWindowEnd,
            k(4096, f),
            vec![
                reg(B0),
                map_part(0x3fff_f000, B0, 0, 0x1000),
                unmap(0x3fff_f000, 0x2000),
            ],
            err(Errno::EINVAL),
        ),
        // ... and on 6.12.95: 0 (bug 0003).
        case(
            Rule::UnmapPastEndClears,
            k(4096, f612),
            vec![
                reg(B0),
                map_part(0x3fff_f000, B0, 0, 0x1000),
                unmap(0x3fff_f000, 0x2000),
            ],
            ok(0),
        ),
        case(
            Rule::Unmap,
            k72(),
            vec![reg(B0), unmap(0x10000, 0x1000)],
            ok(0),
        ),
        case(
            Rule::CreateNoFreeSlot,
            k72(),
            vec![create(12, 16 << 20), create(12, 16 << 20)],
            err(Errno::ENOSPC),
        ),
        case(
            Rule::CreatePageSizeUnsupported,
            k72(),
            vec![create(13, 16 << 20)],
            err(Errno::EINVAL),
        ),
        // 256 >> (12 - 3) == 0
        case(
            Rule::CreateTableSizeZero,
            k72(),
            vec![create(12, 256)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::CreateNotPowerOfTwo,
            k72(),
            vec![create(12, 12 << 20)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::CreateTooManyLevels,
            k72(),
            vec![Op::CreateWindow {
                page_shift: 12,
                window_size: 16 << 20,
                levels: Some(2),
            }],
            err(Errno::EINVAL),
        ),
        // scenarios/windows/huge_window_disables_ddw.toml
        case(
            Rule::CreateDdwRtasFailed,
            k72(),
            vec![create(12, 16 << 40)],
            err(Errno::ENODEV),
        ),
        case(
            Rule::CreateDdwDisabled,
            k72(),
            vec![create(12, 16 << 40), create(12, 16 << 20)],
            err(Errno::ENODEV),
        ),
        // A window smaller than its page: the kernel's size check shifts
        // by a negative count (measured by the fuzzer: EINVAL, DDW stays).
        case(
            Rule::CreateTooLarge,
            k72(),
            vec![create(12, 2048)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::CreateDefaultWindow,
            k72(),
            vec![remove(0), create(12, 1 << 30)],
            start(0),
        ),
        case(
            Rule::CreateSlot0WhileDdw,
            k72(),
            vec![create(12, 16 << 20), remove(0), create(12, 16 << 20)],
            err(Errno::EPERM),
        ),
        case(
            Rule::CreateTooLarge,
            k72(),
            vec![create(12, 1 << 50)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::CreateDdw,
            k72(),
            vec![create(12, 16 << 20)],
            start(DDW),
        ),
        case(Rule::RemovePendingDefault, k72(), vec![remove(0)], ok(0)),
        case(
            Rule::RemoveUnknown,
            k72(),
            vec![create(12, 16 << 20), remove(DDW + (16 << 20))],
            err(Errno::EINVAL),
        ),
        // Any address inside the window names it.
        case(
            Rule::Remove,
            k72(),
            vec![create(12, 16 << 20), remove(DDW + 0x1000)],
            ok(0),
        ),
        case(
            Rule::SpaprDma,
            k72(),
            vec![
                reg(B0),
                map(0x10000, B0),
                Op::EduDma {
                    iova: 0x10000,
                    count: 4096,
                    direction: Direction::Read,
                },
            ],
            object(),
        ),
        // ---- seed ----
        case(Rule::SeedInfo, seed(), vec![Op::TceInfo], {
            let Reply::Value(v) = run(&mut k72(), &[Op::TceInfo]).reply else {
                unreachable!()
            };
            Reply::Value(v)
        }),
        case(Rule::SeedNoPreregistration, seed(), vec![unreg(B0)], ok(0)),
        // "allocated by the kernel, based on the hardware capabilities"
        case(
            Rule::SeedCreate,
            seed(),
            vec![create(12, 16 << 20)],
            start(0),
        ),
        case(
            Rule::SeedCreate,
            seed(),
            vec![create(12, 16 << 20), create(16, 16 << 20)],
            start(DDW),
        ),
        case(
            Rule::SeedCreateNoWindow,
            seed(),
            vec![
                create(12, 16 << 20),
                create(12, 16 << 20),
                create(12, 16 << 20),
            ],
            err(Errno::ENOSPC),
        ),
        // 2^11 is a multiple of no hardware page.
        case(
            Rule::SeedCreatePageSize,
            seed(),
            vec![create(11, 16 << 20)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::SeedCreateSize,
            seed(),
            vec![create(12, 2048)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::SeedCreateTooLarge,
            seed(),
            vec![create(12, 1 << 50)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::SeedCreateLevels,
            seed(),
            vec![Op::CreateWindow {
                page_shift: 12,
                window_size: 16 << 20,
                levels: Some(2),
            }],
            err(Errno::EINVAL),
        ),
        case(
            Rule::SeedRemove,
            seed(),
            vec![create(12, 16 << 20), remove(0)],
            ok(0),
        ),
        case(
            Rule::SeedRemoveUnknown,
            seed(),
            vec![create(12, 16 << 20), remove(0x1000)],
            err(Errno::EINVAL),
        ),
        // "A newly created kernel-managed IOAS has *no* IOVA windows"
        case(
            Rule::SeedOutsideWindows,
            seed(),
            vec![map(0x10000, B0)],
            err(Errno::ENXIO),
        ),
        case(
            Rule::SeedMisaligned,
            seed(),
            vec![create(12, 16 << 20), map(0x10800, B0)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::SeedCrossesWindowEnd,
            seed(),
            vec![create(12, 16 << 20), map(0xfff000, B0)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::SeedZeroLength,
            seed(),
            vec![create(12, 16 << 20), map_part(0x10000, B0, 0, 0)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::SeedNoDirection,
            seed(),
            vec![
                create(12, 16 << 20),
                Op::MapDma {
                    iova: 0,
                    range: BufferRange::whole(B0),
                    read: false,
                    write: false,
                },
            ],
            err(Errno::EINVAL),
        ),
        case(
            Rule::SeedUserMemory,
            seed(),
            vec![create(12, 16 << 20), map_part(0x10000, B0, 0x400, 0x1000)],
            err(Errno::EINVAL),
        ),
        case(
            Rule::SeedOverlap,
            seed(),
            vec![create(12, 16 << 20), map(0x10000, B0), map(0x18000, B0)],
            err(Errno::EEXIST),
        ),
        // An 8K window page over 4K pages: a multiple of the hardware page.
        case(
            Rule::SeedMap,
            seed(),
            vec![create(13, 16 << 20), map(0x10000, B0)],
            ok(0),
        ),
        case(
            Rule::SeedUnmapPartial,
            seed(),
            vec![
                create(12, 16 << 20),
                map(0x10000, B0),
                unmap(0x10000, 0x1000),
            ],
            err(Errno::ENOENT),
        ),
        case(
            Rule::SeedUnmapNothing,
            seed(),
            vec![create(12, 16 << 20), unmap(0x10000, 0x1000)],
            err(Errno::ENOENT),
        ),
        case(
            Rule::SeedUnmap,
            seed(),
            vec![create(12, 16 << 20), map(0x10000, B0), unmap(0, 0x100000)],
            ok(0),
        ),
        case(
            Rule::SeedDma,
            seed(),
            vec![Op::EduDma {
                iova: 0,
                count: 16,
                direction: Direction::Write,
            }],
            object(),
        ),
        // ---- iommufd ----
        case(Rule::IoasAlloc, fd(), vec![Op::IoasAlloc], object()),
        case(
            Rule::IoasNoDirection,
            fd(),
            vec![Op::IoasMap {
                ioas: IO,
                range: BufferRange::whole(B0),
                iova: Some(0x100000),
                read: false,
                write: false,
            }],
            err(Errno::EINVAL),
        ),
        case(
            Rule::IoasOverflow,
            fd(),
            vec![imap(Some(u64::MAX), BufferRange::whole(B0))],
            err(Errno::EOVERFLOW),
        ),
        case(
            Rule::IoasOverflow,
            fd(),
            vec![imap(Some(u64::MAX - 0x1000), BufferRange::whole(B0))],
            err(Errno::EOVERFLOW),
        ),
        case(
            Rule::IoasZeroLength,
            fd(),
            vec![imap(Some(0x100000), BufferRange::part(B0, 0, 0))],
            err(Errno::EINVAL),
        ),
        case(
            Rule::IoasLengthMisaligned,
            fd(),
            vec![
                Op::MockDomain { ioas: IO },
                imap(Some(16 << 20), BufferRange::part(B0, 0, 0x400)),
            ],
            err(Errno::EINVAL),
        ),
        // A pinning access makes iova_alignment PAGE_SIZE; a user address
        // 2K into a page only allows 2K alignment.
        case(
            Rule::IoasAutoAlignment,
            fd(),
            vec![
                Op::MockAccessCreate {
                    ioas: IO,
                    pin_pages: true,
                },
                imap(None, BufferRange::part(B0, 0x800, 0x1000)),
            ],
            err(Errno::EINVAL),
        ),
        case(
            Rule::IoasNoSpace,
            fd(),
            vec![
                Op::IoasAllowIovas {
                    ioas: IO,
                    ranges: vec![(0x100000, 0x107fff)],
                },
                imap(None, BufferRange::whole(B0)),
            ],
            err(Errno::ENOSPC),
        ),
        // min(roundup(64K), 1 << ffs(addr)) = 64K below THP's 2M: the first
        // 64K-aligned IOVA at or above PAGE_SIZE.
        case(
            Rule::IoasAutoIova,
            fd(),
            vec![imap(None, BufferRange::whole(B0))],
            ok(0x10000),
        ),
        case(
            Rule::IoasFixedMisaligned,
            fd(),
            vec![
                Op::MockDomain { ioas: IO },
                imap(Some((16 << 20) + 0x400), BufferRange::part(B0, 0, 0x800)),
            ],
            err(Errno::EINVAL),
        ),
        case(
            Rule::IoasFixedReserved,
            fd(),
            vec![
                Op::MockAddReserved {
                    ioas: IO,
                    start: 32 << 20,
                    length: 1 << 20,
                },
                imap(Some(32 << 20), BufferRange::whole(B0)),
            ],
            err(Errno::EINVAL),
        ),
        case(
            Rule::IoasFixedExists,
            fd(),
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                imap(Some(0x108000), BufferRange::whole(B1)),
            ],
            err(Errno::EEXIST),
        ),
        case(
            Rule::IoasPageOffsetMisaligned,
            fd(),
            vec![
                Op::MockDomain { ioas: IO },
                imap(Some(16 << 20), BufferRange::part(B0, 0x400, 0x800)),
            ],
            err(Errno::EINVAL),
        ),
        case(
            Rule::IoasCopyWriteFromReadOnly,
            fd(),
            vec![
                Op::IoasMap {
                    ioas: IO,
                    range: BufferRange::whole(B0),
                    iova: Some(0x100000),
                    read: true,
                    write: false,
                },
                Op::IoasCopy {
                    src: IO,
                    dst: IO,
                    src_iova: 0x100000,
                    length: 0x10000,
                    dst_iova: Some(0x200000),
                    read: true,
                    write: true,
                },
            ],
            err(Errno::EPERM),
        ),
        case(
            Rule::IoasMap,
            fd(),
            vec![imap(Some(0x100000), BufferRange::whole(B0))],
            ok(0x100000),
        ),
        case(
            Rule::IoasUnmapAll,
            fd(),
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                imap(Some(0x300000), BufferRange::whole(B1)),
                iunmap(0, u64::MAX),
            ],
            ok(0x20000),
        ),
        // The first area is gone, the second one is split: ENOENT.
        case(
            Rule::IoasUnmapPartial,
            fd(),
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                imap(Some(0x110000), BufferRange::whole(B1)),
                iunmap(0x100000, 0x18000),
            ],
            err(Errno::ENOENT),
        ),
        case(
            Rule::IoasUnmapNothing,
            fd(),
            vec![iunmap(0x100000, 0x10000)],
            err(Errno::ENOENT),
        ),
        case(
            Rule::IoasUnmap,
            fd(),
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                iunmap(0, 0x1000000),
            ],
            ok(0x10000),
        ),
        case(
            Rule::IoasCopySourceHole,
            fd(),
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                Op::IoasCopy {
                    src: IO,
                    dst: IO,
                    src_iova: 0x108000,
                    length: 0x10000,
                    dst_iova: None,
                    read: true,
                    write: true,
                },
            ],
            err(Errno::ENOENT),
        ),
        // Two contiguous areas copy as one range.
        case(
            Rule::IoasCopy,
            fd(),
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                imap(Some(0x110000), BufferRange::whole(B1)),
                Op::IoasCopy {
                    src: IO,
                    dst: IO,
                    src_iova: 0x108000,
                    length: 0x10000,
                    dst_iova: Some(0x400000),
                    read: true,
                    write: true,
                },
            ],
            ok(0x400000),
        ),
        case(
            Rule::IoasAllowBadRange,
            fd(),
            vec![Op::IoasAllowIovas {
                ioas: IO,
                ranges: vec![(0x5000, 0x5000)],
            }],
            err(Errno::EINVAL),
        ),
        case(
            Rule::IoasAllowOverlap,
            fd(),
            vec![Op::IoasAllowIovas {
                ioas: IO,
                ranges: vec![(0x1000, 0x2fff), (0x2000, 0x4fff)],
            }],
            err(Errno::EINVAL),
        ),
        case(
            Rule::IoasAllowReserved,
            fd(),
            vec![
                Op::MockDomain { ioas: IO },
                Op::IoasAllowIovas {
                    ioas: IO,
                    ranges: vec![(0x1000, 0x1ffffff)],
                },
            ],
            err(Errno::EADDRINUSE),
        ),
        case(
            Rule::IoasAllow,
            fd(),
            vec![Op::IoasAllowIovas {
                ioas: IO,
                ranges: vec![],
            }],
            ok(0),
        ),
        case(
            Rule::IoasIovaRanges,
            fd(),
            vec![Op::IoasIovaRanges { ioas: IO }],
            Reply::Value(Value::IovaRanges {
                ranges: vec![(0, u64::MAX)],
                alignment: 1,
            }),
        ),
        case(
            Rule::IoasReserveInUse,
            fd(),
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                Op::MockAddReserved {
                    ioas: IO,
                    start: 0x10f000,
                    length: 0x2000,
                },
            ],
            err(Errno::EADDRINUSE),
        ),
        case(
            Rule::IoasAddReserved,
            fd(),
            vec![Op::MockAddReserved {
                ioas: IO,
                start: 0x10f000,
                length: 0x2000,
            }],
            Reply::Value(Value::Null),
        ),
        case(
            Rule::MockDomainUnavailable,
            {
                let mut w = World::iommufd(IommufdParams::pseries_7_2(65536, false));
                w.apply(&Op::IoasAlloc).unwrap();
                w
            },
            vec![Op::MockDomain { ioas: IO }],
            err(Errno::EINVAL),
        ),
        case(
            Rule::AttachAlignmentTooBig,
            {
                let mut p = IommufdParams::q35_mock_7_2();
                p.mock = DomainParams::mock(8192);
                let mut w = World::iommufd(p);
                w.apply(&Op::IoasAlloc).unwrap();
                w
            },
            vec![Op::MockDomain { ioas: IO }],
            err(Errno::EINVAL),
        ),
        case(
            Rule::AttachMisalignedArea,
            fd(),
            vec![imap(Some(16 << 20), tiny_b0), Op::MockDomain { ioas: IO }],
            err(Errno::EADDRINUSE),
        ),
        // An area below the mock aperture (2^24).
        case(
            Rule::AttachReservedInUse,
            fd(),
            vec![
                imap(Some(4 << 20), BufferRange::whole(B0)),
                Op::MockDomain { ioas: IO },
            ],
            err(Errno::EADDRINUSE),
        ),
        case(
            Rule::AttachSharedDomain,
            fd(),
            vec![Op::MockDomain { ioas: IO }, Op::MockDomain { ioas: IO }],
            object(),
        ),
        case(
            Rule::Attach,
            fd(),
            vec![Op::MockDomain { ioas: IO }],
            object(),
        ),
        case(
            Rule::Detach,
            fd(),
            vec![
                Op::MockDomain { ioas: IO },
                Op::MockDestroy { mock: MockId(0) },
            ],
            ok(0),
        ),
        case(
            Rule::ObjectGone,
            fd(),
            vec![
                Op::MockDomain { ioas: IO },
                Op::MockDestroy { mock: MockId(0) },
                Op::MockDestroy { mock: MockId(0) },
            ],
            err(Errno::ENOENT),
        ),
        case(
            Rule::AccessAlignmentInUse,
            fd(),
            vec![
                imap(Some(0x100000), tiny_b0),
                Op::MockAccessCreate {
                    ioas: IO,
                    pin_pages: true,
                },
            ],
            err(Errno::EADDRINUSE),
        ),
        case(
            Rule::AccessCreate,
            fd(),
            vec![Op::MockAccessCreate {
                ioas: IO,
                pin_pages: false,
            }],
            object(),
        ),
        case(
            Rule::AccessRwTooLong,
            fd(),
            vec![
                Op::MemAlloc {
                    size: 17 << 20,
                    hugetlb: false,
                },
                Op::MockAccessCreate {
                    ioas: IO,
                    pin_pages: false,
                },
                Op::MockAccessRw {
                    access: AccessId(0),
                    iova: 0x100000,
                    range: BufferRange::whole(BufferId(2)),
                    write: false,
                },
            ],
            err(Errno::ENOMEM),
        ),
        case(
            Rule::AccessRwZero,
            fd(),
            vec![
                Op::MockAccessCreate {
                    ioas: IO,
                    pin_pages: false,
                },
                Op::MockAccessRw {
                    access: AccessId(0),
                    iova: 0x100000,
                    range: BufferRange::part(B1, 0, 0),
                    write: false,
                },
            ],
            err(Errno::EINVAL),
        ),
        case(
            Rule::AccessRwProt,
            fd(),
            vec![
                Op::IoasMap {
                    ioas: IO,
                    range: BufferRange::whole(B0),
                    iova: Some(0x100000),
                    read: true,
                    write: false,
                },
                Op::MockAccessCreate {
                    ioas: IO,
                    pin_pages: false,
                },
                Op::MockAccessRw {
                    access: AccessId(0),
                    iova: 0x100000,
                    range: BufferRange::part(B1, 0, 0x1000),
                    write: true,
                },
            ],
            err(Errno::EPERM),
        ),
        case(
            Rule::AccessRwHole,
            fd(),
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                Op::MockAccessCreate {
                    ioas: IO,
                    pin_pages: false,
                },
                Op::MockAccessRw {
                    access: AccessId(0),
                    iova: 0x10f000,
                    range: BufferRange::part(B1, 0, 0x2000),
                    write: true,
                },
            ],
            err(Errno::ENOENT),
        ),
        case(
            Rule::AccessRw,
            fd(),
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                Op::MockAccessCreate {
                    ioas: IO,
                    pin_pages: false,
                },
                Op::MockAccessRw {
                    access: AccessId(0),
                    iova: 0x10f000,
                    range: BufferRange::part(B1, 0, 0x1000),
                    write: false,
                },
            ],
            Reply::Value(Value::Null),
        ),
        case(
            Rule::IommufdDma,
            {
                let mut w = with_buffers(World::iommufd(IommufdParams::q35_7_2()));
                w.apply(&Op::IoasAlloc).unwrap();
                w
            },
            vec![
                imap(Some(0x100000), BufferRange::whole(B0)),
                Op::DeviceAttach { ioas: IO },
                Op::EduDma {
                    iova: 0x100000,
                    count: 4096,
                    direction: Direction::Read,
                },
            ],
            object(),
        ),
        case(
            Rule::MemAlloc,
            k72(),
            vec![Op::MemAlloc {
                size: 4096,
                hugetlb: false,
            }],
            object(),
        ),
    ];
    // iommufd ids are reused lowest first (the fuzzer's first find on
    // q35-mock): ioas0 1; mock0 2, 3, 4; ioas1 5; mock1 6, 7, 8; after
    // mock1's destroy ioas2 takes 6.
    let reuse = || {
        vec![
            Op::MockDomain { ioas: IO },
            Op::IoasAlloc,
            Op::MockDomain { ioas: IoasId(1) },
            Op::MockDestroy { mock: MockId(1) },
            Op::IoasAlloc,
        ]
    };
    let mut ops = reuse();
    ops.push(Op::MockDestroy { mock: MockId(1) });
    cases.push(case(Rule::DestroyReusedId, fd(), ops.clone(), ok(0)));
    ops.push(Op::IoasIovaRanges { ioas: IoasId(2) });
    cases.push(case(Rule::IoasGone, fd(), ops, err(Errno::ENOENT)));
    let mut ops = reuse();
    ops.push(Op::MockDomain { ioas: IoasId(2) });
    ops.push(Op::MockDestroy { mock: MockId(1) });
    cases.push(case(
        Rule::DestroyReusedIdBusy,
        fd(),
        ops,
        err(Errno::EBUSY),
    ));
    // ioas1 takes mock0's old id 2, is destroyed through it, and mock1's
    // selftest object takes 2: "ioas1" as a pt_id names that.
    cases.push(case(
        Rule::AttachNotAPageTable,
        fd(),
        vec![
            Op::MockDomain { ioas: IO },
            Op::MockDestroy { mock: MockId(0) },
            Op::IoasAlloc,
            Op::MockDestroy { mock: MockId(0) },
            Op::MockDomain { ioas: IO },
            Op::MockDomain { ioas: IoasId(1) },
        ],
        err(Errno::EINVAL),
    ));
    // The fuzzer's hang on q35, 7.2: the device re-attached where a mock
    // domain came first.
    cases.push(case(
        Rule::ReplaceForeignDomainHang,
        {
            let mut w = with_buffers(World::iommufd(IommufdParams::q35_7_2()));
            w.apply(&Op::IoasAlloc).unwrap();
            w
        },
        vec![
            Op::MockDomain { ioas: IO },
            Op::DeviceAttach { ioas: IO },
            Op::DeviceAttach { ioas: IO },
        ],
        Reply::Crash,
    ));
    // Remaining ones that need a little more setup.
    cases.push(case(
        Rule::AttachReservedInUse,
        {
            let mut w = with_buffers(World::iommufd(IommufdParams::q35_7_2()));
            w.apply(&Op::IoasAlloc).unwrap();
            w
        },
        vec![
            imap(Some(0xfee0_0000), BufferRange::whole(B0)),
            Op::DeviceAttach { ioas: IO },
        ],
        err(Errno::EADDRINUSE),
    ));
    cases
}

/// Rules no case of a whole world reaches, and why.
const UNREACHED: &[(Rule, &str)] = &[
    (
        Rule::CreateDdwPropertyExists,
        "QEMU has no free LIOBN while a DDW exists (its default window is never removed): platform::tests",
    ),
    (
        Rule::UnmapPastEndCrash,
        "TCEs past a table exist only where the view's padding took them, so clearing them stays inside it",
    ),
    (
        Rule::Release,
        "closing is World::release, not an op: release_frees_what_the_container_held",
    ),
    (
        Rule::ReleaseBusyRegion,
        "closing is World::release, not an op: release_warns_for_tces_past_a_table",
    ),
    (
        Rule::IommufdRelease,
        "closing is World::release, not an op: release_frees_what_the_container_held",
    ),
    (
        Rule::StaleRegionDma,
        "needs a successor world (a second container of the process): a_kept_region_goes_stale_in_the_next_container",
    ),
];

#[test]
fn every_rule_has_a_case() {
    let cases = cases();
    let mut covered = BTreeSet::new();
    for (i, c) in cases.into_iter().enumerate() {
        let mut w = c.world;
        let o = run(&mut w, &c.ops);
        assert!(
            o.rule == c.rule || o.also.contains(&c.rule),
            "case {i} ({:?}): decided by {:?}, also {:?}",
            c.rule,
            o.rule,
            o.also
        );
        assert_eq!(o.reply, c.want, "case {i} ({:?})", c.rule);
        covered.insert(c.rule);
    }
    for (r, _) in UNREACHED {
        covered.insert(*r);
    }
    let missing: Vec<&str> = Rule::ALL
        .iter()
        .filter(|r| !covered.contains(r))
        .map(|r| r.name())
        .collect();
    assert!(missing.is_empty(), "rules without a case: {missing:?}");
}

/// bugs/08a-tce-info-pgsizes and 08b: the table group without the DDW
/// query's page sizes or levels (corpus regressions, as hardware parameters).
#[test]
fn corpus_tce_info_regressions() {
    let mut hw = Hardware::qemu_pseries(4096);
    hw.pgsizes = 0x1000;
    hw.levels = 0;
    let mut w = with_buffers(World::spapr(SpaprParams {
        hw,
        fixes: Fixes::linux_6_12_95(),
        ddw_disabled_at_start: false,
    }));
    let Reply::Value(Value::TceInfo(i)) = run(&mut w, &[Op::TceInfo]).reply else {
        panic!("no info")
    };
    assert_eq!((i.pgsizes, i.levels), (0x1000, 0));
    assert_eq!(
        run(&mut w, &[create(16, 16 << 20)]).reply,
        err(Errno::EINVAL)
    );
    assert_eq!(run(&mut w, &[create(12, 16 << 20)]).reply, start(DDW));
}

#[test]
fn zero_sized_tables_and_regions_warn() {
    let o = run(&mut k72(), &[Op::Register(BufferRange::part(B0, 0, 0))]);
    assert_eq!(o.kernel_warning, Some("WARNING:"));
    // A 2K default window: no entries; nothing maps there, REMOVE cannot
    // find it, and it keeps slot 0.
    let mut w = k72();
    let o = run(&mut w, &[reg(B0), remove(0), create(12, 2048)]);
    assert_eq!((o.reply, o.kernel_warning), (start(0), Some("WARNING:")));
    assert_eq!(run(&mut w, &[map(0, B0)]).reply, err(Errno::ENXIO));
    assert_eq!(run(&mut w, &[remove(0)]).reply, err(Errno::EINVAL));
    assert_eq!(run(&mut w, &[create(12, 16 << 20)]).reply, start(DDW));
    assert_eq!(
        run(&mut w, &[create(12, 16 << 20)]).reply,
        err(Errno::ENOSPC)
    );
}

#[test]
fn replaced_and_rolled_back_maps_move_the_dma() {
    // A map replacing B0's TCEs with B1's: the device now reaches B1.
    let mut w = k72();
    run(
        &mut w,
        &[reg(B0), reg(B1), map(0x10000, B0), map(0x10000, B1)],
    );
    let seg = w.translate(0x10000, 4096, Direction::Write).unwrap();
    assert_eq!(
        seg[0].target,
        Target::Buffer {
            buffer: B1,
            offset: 0
        }
    );
    // A map failing on its 2nd page (not registered) after replacing the
    // first page: the rollback clears that page, so B0's old TCE there is
    // gone too (tce_iommu_build_v2:598-599 clears what it exchanged).
    let mut w = k72();
    let o = run(
        &mut w,
        &[
            reg(B0),
            Op::Register(BufferRange::part(B1, 0, 0x1000)),
            map(0x10000, B0),
            map(0x10000, B1),
        ],
    );
    assert_eq!(
        (o.errno_of(), o.rule),
        (Some(Errno::EINVAL), Rule::MapNotPreregistered)
    );
    let seg = w.translate(0x10000, 0x2000, Direction::Read).unwrap();
    assert_eq!(seg[0].target, Target::Fault);
    assert_eq!(seg[0].len, 0x1000);
    // The second page failed before its exchange: B0's TCE is still there.
    assert_eq!(
        seg[1].target,
        Target::Buffer {
            buffer: B0,
            offset: 0x1000
        }
    );
}

#[test]
fn unregister_with_mappings_keeps_the_region_usable() {
    let mut w = k72();
    let o = run(
        &mut w,
        &[reg(B0), map(0x10000, B0), unreg(B0), map(0x40000, B0)],
    );
    // The region stayed in the process's list: the map still finds it.
    assert_eq!((o.number(), o.rule), (Some(0), Rule::Map));
    // A second unregister: the container does not hold it any more.
    assert_eq!(run(&mut w, &[unreg(B0)]).errno_of(), Some(Errno::ENOENT));
}

#[test]
fn failed_create_still_makes_the_default_window() {
    let mut w = k72();
    let o = run(&mut w, &[create(13, 16 << 20)]);
    assert_eq!(o.also, vec![Rule::DefaultWindowCreated]);
    assert_eq!(run(&mut w, &[remove(0)]).rule, Rule::Remove);
}

#[test]
fn beyond_table_tces_stay_reachable_after_remove() {
    // 64K kernel: a 16M default table under QEMU's 1G window.
    let mut w = k(65536, Fixes::linux_7_2_13());
    run(
        &mut w,
        &[
            reg(B0),
            remove(0),
            create(12, 16 << 20),
            map(0xfff000, B0),
            remove(0),
        ],
    );
    // The kernel cleared its 4096 entries; the 15 past them stay.
    let seg = w.translate(0x1000000, 0x1000, Direction::Write).unwrap();
    assert_eq!(
        seg[0].target,
        Target::Buffer {
            buffer: B0,
            offset: 0x1000
        }
    );
    let seg = w.translate(0xfff000, 0x1000, Direction::Write).unwrap();
    assert_eq!(seg[0].target, Target::Fault);
}

#[test]
fn a_destroyed_mocks_id_goes_to_the_next_object() {
    let mut w = fd();
    run(
        &mut w,
        &[
            Op::MockDomain { ioas: IO },
            Op::MockDestroy { mock: MockId(0) },
            Op::MockDomain { ioas: IO },
        ],
    );
    // mock1's selftest object took mock0's id: destroying "mock0" again
    // destroys mock1.
    let Backend::Iommufd(f) = &w.backend else {
        panic!("iommufd")
    };
    assert!(!f.mock_alive(MockId(0)) && f.mock_alive(MockId(1)));
    assert_eq!(
        run(&mut w, &[Op::MockDestroy { mock: MockId(0) }]).rule,
        Rule::Detach
    );
    let Backend::Iommufd(f) = &w.backend else {
        panic!("iommufd")
    };
    assert!(!f.mock_alive(MockId(1)));
    assert_eq!(
        run(&mut w, &[Op::MockDestroy { mock: MockId(1) }]).rule,
        Rule::ObjectGone
    );
}

/// Found by `cargo xtask fuzz` on q35, 7.2: a mock domain whose pt_id is
/// a freed IOAS id that its own device takes first (the selftest object
/// and the device get their ids before the pt_id is looked up).
#[test]
fn a_mock_domain_can_name_its_own_device() {
    let mut w = with_buffers(World::iommufd(IommufdParams::q35_7_2()));
    let o = run(
        &mut w,
        &[
            Op::IoasAlloc,                       // 2 (the device is 1)
            Op::DeviceAttach { ioas: IO },       // domain 3
            Op::MockDomain { ioas: IO },         // 4, 5, 6
            Op::MockDestroy { mock: MockId(0) }, // frees 4, 5, 6
            Op::IoasAlloc,                       // 4
            Op::MockDestroy { mock: MockId(0) }, // destroys ioas1
            Op::DeviceDetach,                    // frees 3
            Op::MockDomain { ioas: IoasId(1) },  // 3, 4: "ioas1" is its device
        ],
    );
    assert_eq!(
        (o.errno_of(), o.rule),
        (Some(Errno::EINVAL), Rule::AttachNotAPageTable)
    );
    // ... and one whose selftest object takes it: not finalized yet, so
    // the pt_id names nothing (the fuzzer's next find).
    let mut w = with_buffers(World::iommufd(IommufdParams::q35_7_2()));
    let o = run(
        &mut w,
        &[
            Op::IoasAlloc,                       // 2
            Op::DeviceAttach { ioas: IO },       // domain 3
            Op::MockDomain { ioas: IO },         // 4, 5, 6
            Op::MockDestroy { mock: MockId(0) }, // frees 4, 5, 6
            Op::DeviceDetach,                    // frees 3
            Op::IoasAlloc,                       // 3
            Op::IoasAlloc,                       // 4
            Op::MockDestroy { mock: MockId(0) }, // destroys ioas2 (4)
            Op::MockDomain { ioas: IoasId(2) },  // its selftest object is 4
        ],
    );
    assert_eq!(
        (o.errno_of(), o.rule),
        (Some(Errno::ENOENT), Rule::IoasGone)
    );
}

#[test]
fn release_frees_what_the_container_held() {
    let mut w = k72();
    run(
        &mut w,
        &[reg(B0), reg(B1), map(0x10000, B0), create(16, 16 << 20)],
    );
    let o = w.release();
    assert_eq!((o.rule, o.kernel_warning), (Rule::Release, None));
    assert!(w.pristine());
    let mut next = w.successor();
    assert!(next.mem.is_empty() && next.pristine());
    // The next container starts as the first did: the default window pending.
    next.apply(&Op::MemAlloc {
        size: 0x10000,
        hugetlb: false,
    })
    .unwrap();
    assert_eq!(run(&mut next, &[reg(B0), map(0x10000, B0)]).reply, ok(0));
    let mut f = fd();
    assert_eq!(f.release().rule, Rule::IommufdRelease);
    assert!(f.successor().pristine());
}

#[test]
fn release_warns_for_tces_past_a_table() {
    let mut w = k(65536, Fixes::linux_7_2_13());
    let o = run(
        &mut w,
        &[reg(B0), remove(0), create(12, 16 << 20), map(0xfff000, B0)],
    );
    assert_eq!(o.rule, Rule::MapPastEndBeyondTable);
    let o = w.release();
    assert_eq!(o.rule, Rule::ReleaseBusyRegion);
    assert!(o.kernel_warning.is_some());
    // The region stays pinned in the process: the next container sees it.
    assert!(!w.pristine());
    assert!(!w.successor().pristine());
}

#[test]
fn a_kept_region_goes_stale_in_the_next_container() {
    let mut w = k72();
    let o = run(&mut w, &[reg(B0), map(0x10000, B0), unreg(B0)]);
    assert_eq!(o.rule, Rule::UnregisterWhileMapped);
    assert_eq!(w.release().rule, Rule::Release);
    let mut next = w.successor();
    assert!(!next.pristine());
    // mmap hands the next buffer the same address: the kept region is reused.
    let addr = w.mem.get(B0).unwrap().addr;
    next.apply(&Op::MemAlloc {
        size: 0x10000,
        hugetlb: false,
    })
    .unwrap();
    next.set_buffer_addr(B0, addr).unwrap();
    assert_eq!(run(&mut next, &[reg(B0)]).rule, Rule::RegisterReuse);
    assert_eq!(run(&mut next, &[map(0x20000, B0)]).reply, ok(0));
    let dma = next
        .apply(&Op::EduDma {
            iova: 0x20000,
            count: 4096,
            direction: Direction::Write,
        })
        .unwrap();
    assert!(dma.also.contains(&Rule::StaleRegionDma));
    assert_eq!(dma.dma[0].target, Target::Unknown);
    // A buffer elsewhere overlapping it cannot register.
    next.set_buffer_addr(B0, addr + 0x1000).unwrap();
    assert_eq!(run(&mut next, &[reg(B0)]).rule, Rule::RegisterOverlap);
}

#[test]
fn written_out_prelude_and_teardown_name_every_object() {
    let mut w = k72();
    let names =
        |steps: Vec<crate::op::Step>| -> Vec<String> { steps.iter().map(|s| s.inline()).collect() };
    let pre = names(w.prelude_steps());
    assert_eq!(pre[0], "pci.bind_vfio device=1234:11e8");
    assert!(
        pre.iter()
            .any(|s| s == "vfio.set_iommu container=$c type=spapr-v2")
    );
    let down = names(w.teardown_steps());
    assert_eq!(
        down,
        [
            "close handle=$dev",
            "close handle=$g",
            "close handle=$c",
            "close handle=$buf1",
            "close handle=$buf0"
        ]
    );
    let mut f = fd();
    f.apply(&Op::MockAccessCreate {
        ioas: IO,
        pin_pages: false,
    })
    .unwrap();
    assert_eq!(names(f.prelude_steps()), ["iommufd.open"]);
    assert_eq!(
        names(f.teardown_steps())[..2],
        ["close handle=$acc0", "close handle=$fd"]
    );
    let q = World::iommufd(IommufdParams::q35_7_2());
    assert_eq!(names(q.prelude_steps()).len(), 4);
    assert_eq!(
        names(q.teardown_steps()),
        ["close handle=$dev", "close handle=$fd"]
    );
    let _ = w.release();
}

// ---- the catalogue's scenarios, replayed ----

/// scenarios/windows/at_most_two_windows.toml
#[test]
fn scenario_at_most_two_windows() {
    let mut w = k72();
    assert_eq!(run(&mut w, &[create(12, 16 << 20)]).reply, start(DDW));
    assert_eq!(
        run(&mut w, &[create(12, 16 << 20)]).reply,
        err(Errno::ENOSPC)
    );
    assert_eq!(run(&mut w, &[remove(DDW)]).reply, ok(0));
    assert_eq!(run(&mut w, &[create(12, 16 << 20)]).reply, start(DDW));
}

/// scenarios/windows/map_outside_window.toml
#[test]
fn scenario_map_outside_window() {
    let mut w = k72();
    run(&mut w, &[reg(B0), reg(B1)]);
    assert_eq!(run(&mut w, &[map(1 << 30, B0)]).reply, err(Errno::ENXIO));
    run(&mut w, &[create(12, 16 << 20)]);
    assert_eq!(
        run(&mut w, &[map(0x1_0000_0000, B0)]).reply,
        err(Errno::ENXIO)
    );
    assert_eq!(
        run(&mut w, &[map(DDW + (16 << 20), B0)]).reply,
        err(Errno::ENXIO)
    );
    assert_eq!(run(&mut w, &[map(DDW + 0xff0000, B0)]).reply, ok(0));
}

/// scenarios/windows/misaligned_map.toml, released and fixed.
#[test]
fn scenario_misaligned_map() {
    for (fixes, bad) in [
        (Fixes::linux_7_2_13(), ok(1)),
        (Fixes::all(), err(Errno::EINVAL)),
    ] {
        let mut w = k(4096, fixes);
        run(&mut w, &[reg(B0), reg(B1)]);
        assert_eq!(run(&mut w, &[map(0x10800, B0)]).reply, bad);
        assert_eq!(run(&mut w, &[unmap(0x10800, 0x1000)]).reply, bad);
        assert_eq!(
            run(&mut w, &[map_part(0x10000, B0, 0, 0x800)]).reply,
            err(Errno::EINVAL)
        );
        assert_eq!(run(&mut w, &[map(0x10000, B0)]).reply, ok(0));
        run(&mut w, &[create(16, 16 << 20)]);
        assert_eq!(run(&mut w, &[unmap(DDW + 0x1000, 0x10000)]).reply, bad);
        assert_eq!(run(&mut w, &[unmap(DDW, 0x10000)]).reply, ok(0));
    }
}

/// scenarios/windows/misaligned_map_64k_window.toml and page_64k.toml
#[test]
fn scenario_64k_windows_on_a_64k_kernel() {
    let mut w = k(65536, Fixes::linux_7_2_13());
    run(&mut w, &[reg(B0), reg(B1), create(16, 16 << 20)]);
    assert_eq!(run(&mut w, &[map(DDW + 0x1000, B0)]).reply, ok(1));
    assert_eq!(run(&mut w, &[map(DDW, B0)]).reply, ok(0));
    assert_eq!(run(&mut w, &[map(DDW + 0x10000, B1)]).reply, ok(0));
    assert_eq!(
        run(&mut w, &[map_part(DDW + 0x20000, B0, 0, 0x8000)]).reply,
        err(Errno::EINVAL)
    );
    let r = w.translate(DDW, 4096, Direction::Read).unwrap();
    assert_eq!(
        r[0].target,
        Target::Buffer {
            buffer: B0,
            offset: 0
        }
    );
}

/// scenarios/windows/page_sizes.toml (4K kernel)
#[test]
fn scenario_page_sizes() {
    let mut w = k72();
    run(&mut w, &[reg(B0), reg(B1)]);
    let Reply::Value(Value::TceInfo(i)) = run(&mut w, &[Op::TceInfo]).reply else {
        panic!("no info")
    };
    assert_eq!(i.pgsizes & 0x1211000, 0x1211000);
    assert_eq!(
        run(&mut w, &[create(13, 16 << 20)]).reply,
        err(Errno::EINVAL)
    );
    assert_eq!(run(&mut w, &[create(16, 16 << 20)]).reply, start(DDW));
    assert_eq!(run(&mut w, &[map(DDW, B0)]).reply, err(Errno::EINVAL));
}

/// scenarios/windows/map_crossing_window_end.toml with the fixes.
#[test]
fn scenario_map_crossing_window_end_fixed() {
    let mut w = k(4096, Fixes::all());
    run(&mut w, &[reg(B0), reg(B1)]);
    assert_eq!(
        run(&mut w, &[map(0x3fff_f000, B0)]).reply,
        err(Errno::EINVAL)
    );
    assert_eq!(
        run(&mut w, &[map_part(0x3fff_f000, B0, 0, 0x1000)]).reply,
        ok(0)
    );
    run(&mut w, &[create(12, 16 << 20)]);
    assert_eq!(
        run(&mut w, &[map(DDW + 0xfff000, B1)]).reply,
        err(Errno::EINVAL)
    );
    assert_eq!(
        run(&mut w, &[map_part(DDW + 0xfff000, B1, 0, 0x1000)]).reply,
        ok(0)
    );
}

/// scenarios/windows/remove_window_deletes_maps.toml
#[test]
fn scenario_remove_window_deletes_maps() {
    let mut w = k72();
    run(
        &mut w,
        &[
            reg(B0),
            reg(B1),
            create(12, 16 << 20),
            map(DDW, B1),
            map(0x10000, B0),
        ],
    );
    let to_ram = |w: &World| w.translate(DDW, 4096, Direction::Write).unwrap()[0].target;
    assert_eq!(
        to_ram(&w),
        Target::Buffer {
            buffer: B1,
            offset: 0
        }
    );
    assert_eq!(run(&mut w, &[remove(DDW)]).reply, ok(0));
    assert_eq!(to_ram(&w), Target::Fault);
    assert_eq!(run(&mut w, &[map(DDW, B1)]).reply, err(Errno::ENXIO));
    assert_eq!(run(&mut w, &[unmap(DDW, 4096)]).reply, err(Errno::ENXIO));
}

/// scenarios/seed/papr_guest_reset.toml
#[test]
fn scenario_papr_guest_reset() {
    let mut w = k72();
    run(
        &mut w,
        &[reg(B0), reg(B1), map(0x10000, B0), map(0x100000, B1)],
    );
    assert_eq!(run(&mut w, &[create(12, 256 << 20)]).reply, start(DDW));
    assert_eq!(run(&mut w, &[map(DDW + 0x200000, B1)]).reply, ok(0));
    assert_eq!(run(&mut w, &[remove(DDW)]).reply, ok(0));
    assert_eq!(run(&mut w, &[remove(0)]).reply, ok(0));
    assert_eq!(run(&mut w, &[map(0x10000, B0)]).reply, err(Errno::ENXIO));
    assert_eq!(run(&mut w, &[create(12, 1 << 30)]).reply, start(0));
    let t = w.translate(0x100000, 4096, Direction::Write).unwrap();
    assert_eq!(t[0].target, Target::Fault);
    assert_eq!(run(&mut w, &[map(0x100000, B1)]).reply, ok(0));
}

/// scenarios/regress/clear_before_unset.toml: remove, then unregister both.
#[test]
fn scenario_clear_before_unset() {
    let mut w = k72();
    run(
        &mut w,
        &[
            reg(B0),
            reg(B1),
            create(12, 16 << 20),
            map(DDW, B1),
            remove(DDW),
        ],
    );
    assert_eq!(run(&mut w, &[unreg(B1)]).rule, Rule::Unregister);
    assert_eq!(run(&mut w, &[unreg(B0)]).rule, Rule::Unregister);
    assert_eq!(run(&mut w, &[reg(B0)]).rule, Rule::Register);
    assert_eq!(run(&mut w, &[map(0x10000, B0)]).reply, ok(0));
}

/// scenarios/ioas/attach_conflict.toml and reserved_ranges.toml (q35).
#[test]
fn scenario_device_reserved_ranges() {
    let mut w = with_buffers(World::iommufd(IommufdParams::q35_7_2()));
    run(
        &mut w,
        &[
            Op::IoasAlloc,
            imap(Some(0xfee0_0000), BufferRange::whole(B0)),
        ],
    );
    assert_eq!(
        run(&mut w, &[Op::DeviceAttach { ioas: IO }]).reply,
        err(Errno::EADDRINUSE)
    );
    let all = Reply::Value(Value::IovaRanges {
        ranges: vec![(0, u64::MAX)],
        alignment: 1,
    });
    assert_eq!(run(&mut w, &[Op::IoasIovaRanges { ioas: IO }]).reply, all);
    assert_eq!(
        run(&mut w, &[iunmap(0xfee0_0000, 0x10000)]).reply,
        ok(0x10000)
    );
    assert!(run(&mut w, &[Op::DeviceAttach { ioas: IO }]).is_ok());
    let ranges = Reply::Value(Value::IovaRanges {
        ranges: vec![(0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff)],
        alignment: 4096,
    });
    assert_eq!(
        run(&mut w, &[Op::IoasIovaRanges { ioas: IO }]).reply,
        ranges
    );
    assert_eq!(
        run(&mut w, &[imap(Some(0xfee0_0000), BufferRange::whole(B0))]).reply,
        err(Errno::EINVAL)
    );
    let allow = Op::IoasAllowIovas {
        ioas: IO,
        ranges: vec![(0xfe00_0000, 0xfeff_ffff)],
    };
    assert_eq!(run(&mut w, &[allow]).reply, err(Errno::EADDRINUSE));
    assert_eq!(
        run(&mut w, &[imap(Some(1 << 48), BufferRange::whole(B0))]).reply,
        err(Errno::EINVAL)
    );
    run(&mut w, &[Op::DeviceDetach]);
    assert_eq!(run(&mut w, &[Op::IoasIovaRanges { ioas: IO }]).reply, all);
}

/// scenarios/seed/x86_hypervisor.toml: the device moves between IOAS.
#[test]
fn scenario_x86_hypervisor() {
    let mut w = World::iommufd(IommufdParams::q35_7_2());
    run(
        &mut w,
        &[
            Op::MemAlloc {
                size: 4 << 20,
                hugetlb: false,
            },
            Op::IoasAlloc,
        ],
    );
    let ram = BufferId(0);
    let gpa = IoasId(0);
    let dom = IoasId(1);
    let m = Op::IoasMap {
        ioas: gpa,
        range: BufferRange::whole(ram),
        iova: Some(0),
        read: true,
        write: true,
    };
    assert_eq!(run(&mut w, &[m]).reply, ok(0));
    run(&mut w, &[Op::DeviceAttach { ioas: gpa }]);
    let at = |w: &World, iova| w.translate(iova, 4096, Direction::Write).unwrap()[0].target;
    assert_eq!(
        at(&w, 0x200000),
        Target::Buffer {
            buffer: ram,
            offset: 0x200000
        }
    );
    let m2 = Op::IoasMap {
        ioas: dom,
        range: BufferRange::part(ram, 0x300000, 1 << 20),
        iova: Some(0x4000_0000),
        read: true,
        write: true,
    };
    run(&mut w, &[Op::IoasAlloc, m2, Op::DeviceAttach { ioas: dom }]);
    assert_eq!(
        at(&w, 0x4000_0000),
        Target::Buffer {
            buffer: ram,
            offset: 0x300000
        }
    );
    assert_eq!(at(&w, 0x280000), Target::Fault);
    run(&mut w, &[Op::DeviceAttach { ioas: gpa }]);
    assert_eq!(
        at(&w, 0x280000),
        Target::Buffer {
            buffer: ram,
            offset: 0x280000
        }
    );
}

// ---- structure ----

/// The modules a module's source names as `crate::x`, outside its tests.
fn imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                out.insert(item.trim().split("::").next().unwrap_or("").to_string());
            }
        } else {
            out.insert(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out
}

/// No module imports one that imports it back (what `xtask::tidy` checks
/// for the other crates).
#[test]
fn modules_import_in_one_direction() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(m) = name.strip_suffix(".rs") else {
            continue;
        };
        if m == "lib" || m == "tests" {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(text.starts_with("//!"), "{name} has no //! doc");
        graph.insert(m.to_string(), imports(&text));
    }
    let names: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|u| names.contains(u));
    }
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = todo.pop() {
            assert!(m != start, "{start} reaches itself through its imports");
            if seen.insert(m.clone()) {
                todo.extend(graph[m].iter());
            }
        }
    }
    assert!(graph["world"].contains("spapr") && !graph["spapr"].contains("world"));
}

/// Every op's step names an op of `proto/src/ops.rs` (the catalogue), only
/// arguments that op has, and all the ones it requires.
#[test]
fn steps_match_the_op_catalogue() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/src/ops.rs");
    let text = std::fs::read_to_string(path).unwrap();
    // name -> (all args, required args)
    let mut specs = std::collections::BTreeMap::new();
    for block in text.split("OpSpec {").skip(1) {
        let Some(name) = block
            .split("name: \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let block = block.split("OpSpec {").next().unwrap_or(block);
        let mut all = BTreeSet::new();
        let mut required = BTreeSet::new();
        for (kind, set_required) in [("req(\"", true), ("opt(\"", false)] {
            for part in block.split(kind).skip(1) {
                let arg = part.split('"').next().unwrap_or("").to_string();
                if set_required {
                    required.insert(arg.clone());
                }
                all.insert(arg);
            }
        }
        for (i, arg) in ["buffer", "offset", "length"].iter().enumerate() {
            if block.contains(&format!("MEM_RANGE[{i}]")) {
                all.insert(arg.to_string());
                if i == 0 {
                    required.insert(arg.to_string());
                }
            }
        }
        specs.insert(name.to_string(), (all, required));
    }
    assert!(specs.len() > 50, "parsed {} ops", specs.len());
    let r = BufferRange::part(B0, 0x1000, 0x1000);
    let ops = vec![
        Op::MemAlloc {
            size: 4096,
            hugetlb: true,
        },
        Op::TceInfo,
        reg(B0),
        Op::Unregister(r),
        Op::CreateWindow {
            page_shift: 16,
            window_size: 1 << 24,
            levels: Some(1),
        },
        remove(DDW),
        Op::MapDma {
            iova: 0,
            range: r,
            read: false,
            write: false,
        },
        unmap(0, 4096),
        Op::EduDma {
            iova: 0,
            count: 8,
            direction: Direction::Read,
        },
        Op::IoasAlloc,
        Op::IoasMap {
            ioas: IO,
            range: r,
            iova: Some(0),
            read: false,
            write: false,
        },
        iunmap(0, 4096),
        Op::IoasCopy {
            src: IO,
            dst: IoasId(1),
            src_iova: 0,
            length: 4096,
            dst_iova: Some(0),
            read: false,
            write: false,
        },
        Op::IoasAllowIovas {
            ioas: IO,
            ranges: vec![(0, 1)],
        },
        Op::IoasIovaRanges { ioas: IO },
        Op::MockDomain { ioas: IO },
        Op::MockDestroy { mock: MockId(0) },
        Op::MockAddReserved {
            ioas: IO,
            start: 0,
            length: 1,
        },
        Op::MockAccessCreate {
            ioas: IO,
            pin_pages: true,
        },
        Op::MockAccessRw {
            access: AccessId(0),
            iova: 0,
            range: r,
            write: true,
        },
        Op::DeviceAttach { ioas: IO },
        Op::DeviceDetach,
    ];
    for op in ops {
        let step = op.step(None);
        let (all, required) = specs
            .get(step.op)
            .unwrap_or_else(|| panic!("{} is not in the catalogue", step.op));
        let given: BTreeSet<String> = step.args.iter().map(|(k, _)| k.to_string()).collect();
        for k in &given {
            assert!(all.contains(k), "{}: no argument {k}", step.op);
        }
        for k in required {
            assert!(given.contains(k), "{}: {k} missing", step.op);
        }
    }
}
