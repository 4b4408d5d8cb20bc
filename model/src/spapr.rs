//! The VFIO sPAPR TCE v2 container (`drivers/vfio/vfio_iommu_spapr_tce.c`)
//! of a pseries guest, holding one group: GET_INFO, memory preregistration
//! (with the process-wide region list of
//! `arch/powerpc/mm/book3s64/iommu_api.c`), CREATE/REMOVE of windows (the
//! pseries platform and hypervisor below are [`crate::platform`]) and
//! MAP/UNMAP one TCE at a time, including the kernel bugs iobench found
//! (0001: a misaligned IOVA returns 1; 0002: a map past a window's end
//! walks off the table; 0003: 6.12's unmap checks only its first page) as
//! switchable [`Fixes`].  The state starts where the scenarios'
//! `_common/spapr_container.toml` leaves it: group attached, the default
//! window pending, no memory registered.

use crate::dma::{Direction, Segment, Target, target_at, walk};
use crate::errno::Errno;
use crate::error::ModelError;
use crate::mem::{BufferRange, Memory};
use crate::op::Op;
use crate::outcome::{Outcome, TceInfo, Value};
use crate::platform::{Hardware, Platform, Table, Tce, WindowInfo};
use crate::rule::Rule;

/// Which of iobench's sPAPR fixes the kernel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fixes {
    /// kernel-patches/fixes/0001: the TCE parameter checks return -EINVAL
    /// instead of 1.
    pub fix_0001: bool,
    /// kernel-patches/fixes/0002: MAP checks its whole range against the
    /// window (needs `ioba_checks_npages` to take effect).
    pub fix_0002: bool,
    /// `iommu_tce_check_ioba()` honours its page count: upstream's
    /// "Fix the overflow validation" (7.2.8 and later), or fix 0003 on
    /// 6.12.y.  Without it an UNMAP past a window's end clears what is
    /// inside and returns 0.
    pub ioba_checks_npages: bool,
}

impl Fixes {
    /// Linux 7.2.13 as released: bugs 0001 and 0002.
    pub fn linux_7_2_13() -> Fixes {
        Fixes {
            fix_0001: false,
            fix_0002: false,
            ioba_checks_npages: true,
        }
    }

    /// Linux 6.12.95 as released: bugs 0001, 0002 and 0003.
    pub fn linux_6_12_95() -> Fixes {
        Fixes {
            ioba_checks_npages: false,
            ..Fixes::linux_7_2_13()
        }
    }

    /// Every fix of kernel-patches/fixes/ applied (`--fixes`).
    pub fn all() -> Fixes {
        Fixes {
            fix_0001: true,
            fix_0002: true,
            ioba_checks_npages: true,
        }
    }
}

/// The container's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpaprParams {
    /// The machine.
    pub hw: Hardware,
    /// The kernel's fixes.
    pub fixes: Fixes,
    /// The PE is already on failed_ddw_pdn_list (an earlier scenario of
    /// the same boot made a DDW attempt fail).
    pub ddw_disabled_at_start: bool,
}

impl SpaprParams {
    /// A pseries guest under QEMU 10.0 with the given page size and fixes.
    pub fn qemu(page_size: u64, fixes: Fixes) -> SpaprParams {
        SpaprParams {
            hw: Hardware::qemu_pseries(page_size),
            fixes,
            ddw_disabled_at_start: false,
        }
    }
}

/// A region of the process's preregistered memory
/// (`struct mm_iommu_table_group_mem_t`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MmRegion {
    /// Identity (allocation order).
    pub id: u64,
    /// User address.
    pub ua: u64,
    /// PAGE_SIZE pages.
    pub entries: u64,
    /// References (`used`).
    pub used: u64,
    /// 1 + live TCEs into it (`mapped`).
    pub mapped: u64,
    /// The largest IOMMU page it can back (`pageshift`).
    pub pageshift: u32,
    /// An earlier container of the process left it behind and its buffer
    /// was unmapped since: it pins pages no buffer owns any more.
    pub stale: bool,
}

/// The container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Container {
    p: SpaprParams,
    mm_set: bool,
    enabled: bool,
    pending: bool,
    slots: [Option<Table>; 2],
    prereg: Vec<u64>,
    mm: Vec<MmRegion>,
    next_region: u64,
    platform: Platform,
    crashed: bool,
}

/// Why a TCE walk stopped.
enum Stop {
    Errno(Errno, Rule),
    Crash(Rule),
}

/// Why `iommu_tce_check_ioba` refused.
enum IobaFault {
    Misaligned,
    Range,
}

impl Container {
    /// A v2 container with its group attached (`tce_iommu_attach_group`
    /// :1299-1301: no table yet, so the default window is pending).
    pub fn new(p: SpaprParams) -> Container {
        let platform = Platform::after_take_ownership(&p.hw, p.ddw_disabled_at_start);
        Container {
            p,
            mm_set: false,
            enabled: false,
            pending: true,
            slots: [None, None],
            prereg: Vec::new(),
            mm: Vec::new(),
            next_region: 0,
            platform,
            crashed: false,
        }
    }

    /// Its parameters.
    pub fn params(&self) -> &SpaprParams {
        &self.p
    }

    /// Whether the default window is still to be created on demand.
    pub fn default_pending(&self) -> bool {
        self.pending
    }

    /// Whether the guest kernel crashed.
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    /// Whether DDW is disabled for the PE until reboot.
    pub fn ddw_disabled(&self) -> bool {
        self.platform.ddw_disabled()
    }

    /// The platform below.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The container's windows, by slot.
    pub fn windows(&self) -> Vec<WindowInfo> {
        self.slots
            .iter()
            .flatten()
            .map(|t| WindowInfo {
                start: t.start(),
                size: t.bytes(),
                page_shift: t.page_shift,
            })
            .collect()
    }

    /// The memory registered with this container: (user address, bytes).
    pub fn registered(&self) -> Vec<(u64, u64)> {
        self.prereg
            .iter()
            .filter_map(|id| self.mm.iter().find(|r| r.id == *id))
            .map(|r| (r.ua, r.entries * self.p.hw.page_size))
            .collect()
    }

    /// The process's preregistered regions (newest last).
    pub fn mm_regions(&self) -> &[MmRegion] {
        &self.mm
    }

    /// Closes the container: the agent closes the device, then the group
    /// (its last group, so VFIO releases the IOMMU data), then the
    /// container.  Each table is cleared and unset
    /// (`tce_iommu_release_ownership`:1190-1208), then each region of the
    /// container is put (`tce_iommu_release`:370-371): one still mapped
    /// (TCEs past a table) warns and stays pinned.  The container is gone
    /// afterwards; [`Container::successor`] is the process's next one.
    pub fn release(&mut self) -> Outcome {
        if self.crashed {
            return Outcome::crash(Rule::AfterCrash);
        }
        for slot in 0..self.slots.len() {
            let Some((offset, size)) = self.slots[slot].as_ref().map(|t| (t.offset, t.size)) else {
                continue;
            };
            if let Err(Stop::Crash(r)) | Err(Stop::Errno(_, r)) = self.clear(slot, offset, size) {
                self.crashed = true;
                return Outcome::crash(r);
            }
            let t = self.slots[slot].take().expect("checked above");
            self.platform.unset_window(&self.p.hw, slot, &t);
        }
        let mut busy = false;
        // tce_iommu_register_pages:168 adds at the list's head: newest first.
        for id in std::mem::take(&mut self.prereg).into_iter().rev() {
            let Some(i) = self.mm.iter().position(|r| r.id == id) else {
                continue;
            };
            // mm_iommu_put:255-272
            let r = &mut self.mm[i];
            r.used -= 1;
            if r.used > 0 {
                continue;
            }
            if r.mapped == 1 {
                self.mm.remove(i);
            } else {
                r.used = 1;
                busy = true;
            }
        }
        self.enabled = false;
        self.pending = false;
        if busy {
            let mut o = Outcome::value(Value::Null, Rule::ReleaseBusyRegion);
            o.kernel_warning = Some("WARNING:");
            o
        } else {
            Outcome::value(Value::Null, Rule::Release)
        }
    }

    /// The process's next container on the same boot, after this one was
    /// released ([`Container::release`]): the regions left in the process
    /// (stale: their buffers are unmapped by then) and whether DDW is
    /// disabled for the PE carry over.
    pub fn successor(&self) -> Container {
        let mut p = self.p.clone();
        p.ddw_disabled_at_start = self.platform.ddw_disabled();
        let mut c = Container::new(p);
        c.mm = self
            .mm
            .iter()
            .map(|r| MmRegion {
                stale: true,
                ..r.clone()
            })
            .collect();
        c.next_region = self.next_region;
        c.crashed = self.crashed;
        c
    }

    /// Whether the process and the PE are as a fresh boot leaves them: no
    /// region left behind, DDW not disabled, no crash.
    pub fn pristine(&self) -> bool {
        self.mm.is_empty() && !self.platform.ddw_disabled() && !self.crashed
    }

    /// Predicts one op and applies it.
    pub fn apply(&mut self, mem: &Memory, op: &Op) -> Result<Outcome, ModelError> {
        let applies = matches!(
            op,
            Op::TceInfo
                | Op::Register(_)
                | Op::Unregister(_)
                | Op::CreateWindow { .. }
                | Op::RemoveWindow { .. }
                | Op::MapDma { .. }
                | Op::UnmapDma { .. }
        );
        if !applies {
            return Err(ModelError::NotApplicable {
                op: op.name(),
                world: "spapr",
            });
        }
        if let Some(b) = op.buffer() {
            mem.get(b)?;
        }
        if self.crashed {
            return Ok(Outcome::crash(Rule::AfterCrash));
        }
        let out = match op {
            Op::TceInfo => self.info(),
            Op::Register(r) => self.register(mem, r)?,
            Op::Unregister(r) => self.unregister(mem, r)?,
            Op::CreateWindow {
                page_shift,
                window_size,
                levels,
            } => self.create(*page_shift, *window_size, levels.unwrap_or(1)),
            Op::RemoveWindow { start_addr } => self.remove(*start_addr),
            Op::MapDma {
                iova,
                range,
                read,
                write,
            } => self.map(mem, *iova, range, *read, *write)?,
            Op::UnmapDma { iova, length } => self.unmap(*iova, *length),
            _ => unreachable!("checked above"),
        };
        if matches!(out.reply, crate::outcome::Reply::Crash) {
            self.crashed = true;
        }
        Ok(out)
    }

    fn info(&self) -> Outcome {
        let hw = &self.p.hw;
        // vfio_iommu_spapr_tce.c tce_iommu_ioctl:881-893 (DDW fields for a
        // v2 container when max_dynamic_windows_supported != 0)
        let ddw = hw.max_dynamic_windows_supported != 0;
        Outcome::value(
            Value::TceInfo(TceInfo {
                flags: u32::from(ddw),
                dma32_window_start: hw.dma32_start as u32,
                dma32_window_size: hw.dma32_size as u32,
                pgsizes: if ddw { hw.pgsizes } else { 0 },
                max_dynamic_windows_supported: hw.max_dynamic_windows_supported,
                levels: if ddw { hw.levels } else { 0 },
            }),
            Rule::SpaprInfo,
        )
    }

    fn ps(&self) -> u64 {
        self.p.hw.page_size
    }

    /// mm_iommu_lookup (iommu_api.c:288-305): newest region first.
    fn lookup(&self, ua: u64, size: u64) -> Option<usize> {
        let page = self.ps();
        (0..self.mm.len()).rev().find(|i| {
            let r = &self.mm[*i];
            r.ua <= ua
                && u128::from(ua) + u128::from(size)
                    <= u128::from(r.ua) + u128::from(r.entries * page)
        })
    }

    /// mm_iommu_get (iommu_api.c:308-327): the region of exactly this
    /// address and size.
    fn exact(&self, ua: u64, entries: u64) -> Option<usize> {
        (0..self.mm.len())
            .rev()
            .find(|i| self.mm[*i].ua == ua && self.mm[*i].entries == entries)
    }

    fn register(&mut self, mem: &Memory, r: &BufferRange) -> Result<Outcome, ModelError> {
        let (ua, len) = mem.resolve(r)?;
        let page = self.ps();
        // vfio_iommu_spapr_tce.c tce_iommu_ioctl:1025 (tce_iommu_mm_set
        // before anything else)
        self.mm_set = true;
        // vfio_iommu_spapr_tce.c tce_iommu_register_pages:144-146
        if ua % page != 0 || len % page != 0 || ua.checked_add(len).is_none() {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::RegisterMisaligned));
        }
        let entries = len / page;
        // tce_iommu_register_pages:148-154 (mm_iommu_get, then the
        // container's own list)
        if let Some(i) = self.exact(ua, entries) {
            let id = self.mm[i].id;
            if self.prereg.contains(&id) {
                return Ok(Outcome::errno(Errno::EBUSY, Rule::RegisterTwice));
            }
            // :162-171 the reference mm_iommu_get took is kept
            self.mm[i].used += 1;
            self.prereg.push(id);
            self.enabled = true;
            return Ok(Outcome::value(Value::U64(0), Rule::RegisterReuse));
        }
        // iommu_api.c mm_iommu_do_alloc:92-97: vzalloc(0) warns and fails
        if entries == 0 {
            let mut o = Outcome::errno(Errno::ENOMEM, Rule::RegisterZeroSize);
            o.kernel_warning = Some("WARNING:");
            return Ok(o);
        }
        // iommu_api.c mm_iommu_do_alloc:132-141
        let end = u128::from(ua) + u128::from(len);
        if self.mm.iter().any(|m| {
            u128::from(m.ua) < end
                && u128::from(ua) < u128::from(m.ua) + u128::from(m.entries * page)
        }) {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::RegisterOverlap));
        }
        // iommu_api.c mm_iommu_do_alloc:91, 150-156: the natural alignment
        // of ua and size, at most PAGE_SIZE unless hugetlb backs it.
        let natural = (ua | (entries * page)).trailing_zeros();
        let pageshift = if mem.get(r.buffer)?.hugetlb && natural > self.p.hw.page_shift() {
            natural.min(self.p.hw.huge_page_size.trailing_zeros())
        } else {
            natural.min(self.p.hw.page_shift())
        };
        let id = self.next_region;
        self.next_region += 1;
        self.mm.push(MmRegion {
            id,
            ua,
            entries,
            used: 1,
            mapped: 1,
            pageshift,
            stale: false,
        });
        // tce_iommu_register_pages:168-171
        self.prereg.push(id);
        self.enabled = true;
        Ok(Outcome::value(Value::U64(0), Rule::Register))
    }

    fn unregister(&mut self, mem: &Memory, r: &BufferRange) -> Result<Outcome, ModelError> {
        let (ua, len) = mem.resolve(r)?;
        let page = self.ps();
        // vfio_iommu_spapr_tce.c tce_iommu_ioctl:1052-1053
        if !self.mm_set {
            return Ok(Outcome::errno(Errno::EPERM, Rule::UnregisterBeforeMm));
        }
        // tce_iommu_unregister_pages:112-113
        if ua % page != 0 || len % page != 0 {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::UnregisterMisaligned));
        }
        // tce_iommu_unregister_pages:115-127
        let Some(i) = self.exact(ua, len / page) else {
            return Ok(Outcome::errno(Errno::ENOENT, Rule::UnregisterUnknown));
        };
        let id = self.mm[i].id;
        let Some(pos) = self.prereg.iter().position(|x| *x == id) else {
            return Ok(Outcome::errno(Errno::ENOENT, Rule::UnregisterUnknown));
        };
        // :128-133: mm_iommu_get's reference, tce_iommu_prereg_free's put
        // (still a user: 0), then the final put, whose EBUSY for live
        // mappings (mm_iommu_put:266-271) nobody looks at.
        self.prereg.remove(pos);
        let region = &mut self.mm[i];
        region.used -= 1;
        if region.used > 0 {
            return Ok(Outcome::value(Value::U64(0), Rule::Unregister));
        }
        if region.mapped == 1 {
            self.mm.remove(i);
            return Ok(Outcome::value(Value::U64(0), Rule::Unregister));
        }
        region.used = 1;
        Ok(Outcome::value(Value::U64(0), Rule::UnregisterWhileMapped))
    }

    /// tce_iommu_create_default_window (:748-775), if pending.
    fn create_default(&mut self) -> Result<bool, Outcome> {
        if !self.pending {
            return Ok(false);
        }
        let o = self.create_window(12, self.p.hw.dma32_size, 1);
        if o.is_ok() {
            self.pending = false;
            Ok(true)
        } else {
            Err(o)
        }
    }

    fn create(&mut self, page_shift: u32, window_size: u64, levels: u32) -> Outcome {
        // vfio_iommu_spapr_tce.c tce_iommu_ioctl:1112 (mm set), 1133-1138
        self.mm_set = true;
        match self.create_default() {
            Err(o) => o,
            Ok(created) => {
                let o = self.create_window(page_shift, window_size, levels);
                if created {
                    o.also(Rule::DefaultWindowCreated)
                } else {
                    o
                }
            }
        }
    }

    /// tce_iommu_create_window (:643-706).
    fn create_window(&mut self, page_shift: u32, window_size: u64, levels: u32) -> Outcome {
        // :652-654 tce_iommu_find_free_table
        let Some(num) = self.slots.iter().position(Option::is_none) else {
            return Outcome::errno(Errno::ENOSPC, Rule::CreateNoFreeSlot);
        };
        // :663-664 (a shift of 64 or more is undefined in C; taken as no bit)
        if page_shift >= 64 || self.p.hw.pgsizes & (1 << page_shift) == 0 {
            return Outcome::errno(Errno::EINVAL, Rule::CreatePageSizeUnsupported);
        }
        // tce_iommu_create_table:616-619, spapr_tce_get_table_size:1940-1943
        // (levels > 1 gives ~0U, not 0; page_shift >= 12 here)
        let table_size = if levels > 1 {
            u64::from(u32::MAX)
        } else {
            window_size >> page_shift.saturating_sub(3)
        };
        if table_size == 0 {
            return Outcome::errno(Errno::EINVAL, Rule::CreateTableSizeZero);
        }
        match self
            .platform
            .create_table(&self.p.hw, num, page_shift, window_size, levels)
        {
            Err((e, rule)) => Outcome::errno(e, rule),
            Ok((t, rule)) => {
                // :691-694 start_addr = it_offset << it_page_shift
                let start = t.start();
                let empty = t.size == 0;
                self.slots[num] = Some(t);
                let mut o = Outcome::value(Value::StartAddr(start), rule);
                // A default window smaller than its 4K page has no entries:
                // iommu_init_table (arch/powerpc/kernel/iommu.c:738-744)
                // and the userspace view vzalloc(0), which warns once per
                // boot (mm/vmalloc.c:4037); both failures are ignored.
                if empty {
                    o.kernel_warning = Some("WARNING:");
                }
                o
            }
        }
    }

    /// tce_iommu_find_table (:203-224).
    fn find_table(&self, ioba: u64) -> Option<usize> {
        self.slots.iter().position(|t| {
            t.as_ref().is_some_and(|t| {
                let entry = ioba >> t.page_shift;
                t.offset <= entry && u128::from(entry) < u128::from(t.offset) + u128::from(t.size)
            })
        })
    }

    fn remove(&mut self, start_addr: u64) -> Outcome {
        // vfio_iommu_spapr_tce.c tce_iommu_ioctl:1153 (mm set)
        self.mm_set = true;
        // :1172-1175
        if self.pending && start_addr == 0 {
            self.pending = false;
            return Outcome::value(Value::U64(0), Rule::RemovePendingDefault);
        }
        // tce_iommu_remove_window:716-718
        let Some(slot) = self.find_table(start_addr) else {
            return Outcome::errno(Errno::EINVAL, Rule::RemoveUnknown);
        };
        // :722 clear every TCE, :725-739 unset, :742-743 free
        let (offset, size) = {
            let t = self.slots[slot].as_ref().expect("found");
            (t.offset, t.size)
        };
        if let Err(Stop::Crash(r)) | Err(Stop::Errno(_, r)) = self.clear(slot, offset, size) {
            return Outcome::crash(r);
        }
        let t = self.slots[slot].take().expect("found");
        self.platform.unset_window(&self.p.hw, slot, &t);
        Outcome::value(Value::U64(0), Rule::Remove)
    }

    /// iommu_tce_check_ioba (arch/powerpc/kernel/iommu.c:1066-1083; 6.12.95:
    /// only `ioba + 1` against the end).
    fn check_ioba(&self, t: &Table, ioba: u64, npages: u64) -> Option<IobaFault> {
        let mask = (1u64 << t.page_shift) - 1;
        if ioba & mask != 0 {
            return Some(IobaFault::Misaligned);
        }
        let e = ioba >> t.page_shift;
        if e < t.offset {
            return Some(IobaFault::Range);
        }
        let bad = if self.p.fixes.ioba_checks_npages {
            e.checked_add(npages).is_none()
                || u128::from(e - t.offset) + u128::from(npages) > u128::from(t.size)
        } else {
            u128::from(e) + 1 > u128::from(t.offset) + u128::from(t.size)
        };
        bad.then_some(IobaFault::Range)
    }

    /// What a failed parameter check returns: 1 (the `||` of bug 0001)
    /// or, with fix 0001, EINVAL.
    fn param_check_failed(&self, rule: Rule) -> Outcome {
        if self.p.fixes.fix_0001 {
            Outcome::errno(Errno::EINVAL, rule)
        } else {
            Outcome::value(Value::U64(1), rule)
        }
    }

    fn map(
        &mut self,
        mem: &Memory,
        iova: u64,
        range: &BufferRange,
        read: bool,
        write: bool,
    ) -> Result<Outcome, ModelError> {
        let (ua, len) = mem.resolve(range)?;
        // vfio_iommu_spapr_tce.c tce_iommu_ioctl:911-912
        if !self.enabled {
            return Ok(Outcome::errno(Errno::EPERM, Rule::NotEnabled));
        }
        // :926-928
        let created = match self.create_default() {
            Err(o) => return Ok(o),
            Ok(c) => c,
        };
        let side: &[Rule] = if created {
            &[Rule::DefaultWindowCreated]
        } else {
            &[]
        };
        // :930-932
        let Some(slot) = self.find_table(iova) else {
            return Ok(Outcome::errno(Errno::ENXIO, Rule::NoWindow).also_all(side));
        };
        let (shift, offset, size) = {
            let t = self.slots[slot].as_ref().expect("found");
            (t.page_shift, t.offset, t.size)
        };
        let page = 1u64 << shift;
        // :934-936
        if len % page != 0 || ua % page != 0 {
            return Ok(
                Outcome::errno(Errno::EINVAL, Rule::MapSizeOrVaddrMisaligned).also_all(side),
            );
        }
        // :939-949
        if !read && !write {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::MapNoDirection).also_all(side));
        }
        // :951-953 iommu_tce_put_param_check: one page (bug 0002), or the
        // whole range with fix 0002; the user address is aligned already.
        let npages = if self.p.fixes.fix_0002 {
            len >> shift
        } else {
            1
        };
        let t = self.slots[slot].as_ref().expect("found");
        match self.check_ioba(t, iova, npages) {
            Some(IobaFault::Misaligned) => {
                return Ok(self
                    .param_check_failed(Rule::MisalignedIovaReturnsOne)
                    .also_all(side));
            }
            Some(IobaFault::Range) => {
                return Ok(self
                    .param_check_failed(Rule::MapPastWindowEnd)
                    .also_all(side));
            }
            None => {}
        }
        let past_end = u128::from(iova >> shift) + u128::from(len >> shift)
            > u128::from(offset) + u128::from(size);
        let tce = Tce { ua, read, write };
        let out = match self.build_v2(slot, iova >> shift, tce, len >> shift) {
            Err(Stop::Crash(r)) => Outcome::crash(r),
            Err(Stop::Errno(e, r)) => Outcome::errno(e, r),
            Ok(replaced) => {
                let rule = if past_end {
                    Rule::MapPastEndBeyondTable
                } else if replaced {
                    Rule::MapReplaces
                } else {
                    Rule::Map
                };
                Outcome::value(Value::U64(0), rule)
            }
        };
        Ok(out.also_all(side))
    }

    /// tce_iommu_unuse_page_v2 (:409-429) for table index `idx`.
    fn unuse_page_v2(&mut self, slot: usize, idx: u64, crash: Rule) -> Result<(), Stop> {
        let t = self.slots[slot].as_mut().expect("slot");
        // pseries/iommu.c tce_useraddr_pSeriesLP:728-732 has no bound: an
        // index past the view's allocation reads the vmalloc guard page.
        if idx >= t.view_capacity {
            return Err(Stop::Crash(crash));
        }
        let shift = t.page_shift;
        let old = t.view.remove(&idx).unwrap_or(0);
        // :420-426 tce_iommu_prereg_ua_to_hpa, then mm_iommu_mapped_dec
        // (atomic64_add_unless(&mapped, -1, 1), iommu_api.c:393-396)
        if let Some(i) = self.lookup(old, 1 << shift)
            && shift <= self.mm[i].pageshift
            && self.mm[i].mapped != 1
        {
            self.mm[i].mapped -= 1;
        }
        Ok(())
    }

    /// tce_iommu_build_v2 (:547-604): whether an existing TCE was replaced.
    fn build_v2(&mut self, slot: usize, entry0: u64, tce: Tce, pages: u64) -> Result<bool, Stop> {
        let (liobn, shift, offset) = {
            let t = self.slots[slot].as_ref().expect("slot");
            (t.liobn, t.page_shift, t.offset)
        };
        let mut replaced = false;
        let mut failure = None;
        let mut done = 0;
        for i in 0..pages {
            let entry = entry0 + i;
            let idx = entry - offset;
            let ua = tce.ua + (i << shift);
            // :560-563 tce_iommu_prereg_ua_to_hpa:396-398
            let Some(r) = self.lookup(ua, 1 << shift) else {
                failure = Some(Stop::Errno(Errno::EINVAL, Rule::MapNotPreregistered));
                break;
            };
            // iommu_api.c mm_iommu_ua_to_hpa:339-340
            if shift > self.mm[r].pageshift {
                failure = Some(Stop::Errno(Errno::EINVAL, Rule::MapBackingTooSmall));
                break;
            }
            // :576 mm_iommu_mapped_inc
            self.mm[r].mapped += 1;
            let new = Tce { ua, ..tce };
            match self.platform.xchg(liobn, entry << shift, Some(new)) {
                // :581-587 the hypervisor refused (H_PARAMETER): the view
                // entry is "unused", the raw -4 returned.
                Err(_) => {
                    if let Err(s) = self.unuse_page_v2(slot, idx, Rule::MapPastEndCrash) {
                        failure = Some(s);
                        break;
                    }
                    failure = Some(Stop::Errno(Errno::EINTR, Rule::MapPastEndHcallError));
                    break;
                }
                Ok(old) => {
                    // :590-591
                    if old.is_some() {
                        replaced = true;
                        if let Err(s) = self.unuse_page_v2(slot, idx, Rule::MapPastEndCrash) {
                            failure = Some(s);
                            break;
                        }
                    }
                    // :593 *pua = tce
                    let t = self.slots[slot].as_mut().expect("slot");
                    if idx >= t.view_capacity {
                        failure = Some(Stop::Crash(Rule::MapPastEndViewWriteCrash));
                        break;
                    }
                    t.view.insert(idx, ua);
                }
            }
            done = i + 1;
        }
        match failure {
            None => Ok(replaced),
            Some(Stop::Crash(r)) => Err(Stop::Crash(r)),
            Some(stop) => {
                // :598-599 roll back the pages put so far
                if let Err(Stop::Crash(r)) = self.clear(slot, entry0, done) {
                    return Err(Stop::Crash(r));
                }
                Err(stop)
            }
        }
    }

    /// tce_iommu_clear (:431-482): every TCE of `[entry, entry + pages)`
    /// exchanged for nothing; entries without a TCE, or outside the
    /// hypervisor's window, are skipped.
    fn clear(&mut self, slot: usize, entry: u64, pages: u64) -> Result<(), Stop> {
        let (liobn, shift, offset) = {
            let t = self.slots[slot].as_ref().expect("slot");
            (t.liobn, t.page_shift, t.offset)
        };
        let first = entry << shift;
        let end = (u128::from(entry) + u128::from(pages)) << shift;
        for ioba in self.platform.tces_in(liobn, first, end) {
            if let Ok(Some(_)) = self.platform.xchg(liobn, ioba, None) {
                self.unuse_page_v2(slot, (ioba >> shift) - offset, Rule::UnmapPastEndCrash)?;
            }
        }
        Ok(())
    }

    fn unmap(&mut self, iova: u64, length: u64) -> Outcome {
        // vfio_iommu_spapr_tce.c tce_iommu_ioctl:977-978
        if !self.enabled {
            return Outcome::errno(Errno::EPERM, Rule::NotEnabled);
        }
        // :993-995
        let created = match self.create_default() {
            Err(o) => return o,
            Ok(c) => c,
        };
        let side: &[Rule] = if created {
            &[Rule::DefaultWindowCreated]
        } else {
            &[]
        };
        // :997-999
        let Some(slot) = self.find_table(iova) else {
            return Outcome::errno(Errno::ENXIO, Rule::NoWindow).also_all(side);
        };
        let t = self.slots[slot].as_ref().expect("found");
        let shift = t.page_shift;
        // :1001-1002
        if !length.is_multiple_of(1u64 << shift) {
            return Outcome::errno(Errno::EINVAL, Rule::UnmapSizeMisaligned).also_all(side);
        }
        let npages = length >> shift;
        // :1004-1007 iommu_tce_clear_param_check
        match self.check_ioba(t, iova, npages) {
            Some(IobaFault::Misaligned) => {
                return self
                    .param_check_failed(Rule::MisalignedIovaReturnsOne)
                    .also_all(side);
            }
            Some(IobaFault::Range) => {
                return self
                    .param_check_failed(Rule::UnmapPastWindowEnd)
                    .also_all(side);
            }
            None => {}
        }
        let past_end = u128::from(iova >> shift) + u128::from(npages)
            > u128::from(t.offset) + u128::from(t.size);
        // :1009-1014
        match self.clear(slot, iova >> shift, npages) {
            Err(Stop::Crash(r)) | Err(Stop::Errno(_, r)) => Outcome::crash(r),
            Ok(()) => {
                let rule = if past_end {
                    Rule::UnmapPastEndClears
                } else {
                    Rule::Unmap
                };
                Outcome::value(Value::U64(0), rule).also_all(side)
            }
        }
    }

    /// Whether device DMA of `[iova, iova + len)` goes through a TCE of a
    /// stale region ([`MmRegion::stale`], [`Rule::StaleRegionDma`]).
    pub fn through_stale_region(&self, iova: u64, len: u64) -> bool {
        let end = u128::from(iova) + u128::from(len);
        let mut pos = iova;
        while u128::from(pos) < end {
            let Some((tce, page)) = self.platform.translate(pos) else {
                pos = match pos.checked_add(4096 - pos % 4096) {
                    Some(p) => p,
                    None => break,
                };
                continue;
            };
            if self
                .lookup(tce.ua + (pos & (page - 1)), 1)
                .is_some_and(|i| self.mm[i].stale)
            {
                return true;
            }
            pos = match (pos / page * page).checked_add(page) {
                Some(p) => p,
                None => break,
            };
        }
        false
    }

    /// Where device DMA of `[iova, iova + len)` goes: each IOMMU page
    /// through the hypervisor's TCEs (which may hold pages past a kernel
    /// window, bug 0002), faulting without a TCE or its permission.
    pub fn translate(&self, mem: &Memory, iova: u64, len: u64, dir: Direction) -> Vec<Segment> {
        walk(iova, len, |pos| {
            let (target, page) = match self.platform.translate(pos) {
                Some((tce, page)) => {
                    let allowed = match dir {
                        Direction::Read => tce.read,
                        Direction::Write => tce.write,
                    };
                    let ua = tce.ua + (pos & (page - 1));
                    let t = if allowed && self.lookup(ua, 1).is_some_and(|i| self.mm[i].stale) {
                        // Rule::StaleRegionDma: the region's pinned pages.
                        Target::Unknown
                    } else {
                        target_at(mem, ua, allowed)
                    };
                    (t, page)
                }
                None => (Target::Fault, 4096),
            };
            (target, u128::from(pos / page * page) + u128::from(page))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Container, Fixes, SpaprParams};
    use crate::dma::{Direction, Target};
    use crate::errno::Errno;
    use crate::mem::{BufferId, BufferRange, Memory};
    use crate::op::Op;
    use crate::outcome::{Outcome, Reply, Value};
    use crate::rule::Rule;

    fn setup(page: u64, fixes: Fixes) -> (Container, Memory, BufferId, BufferId) {
        let mut mem = Memory::new();
        let a = mem.alloc(0x10000, false);
        let b = mem.alloc(0x10000, false);
        (Container::new(SpaprParams::qemu(page, fixes)), mem, a, b)
    }

    fn run(c: &mut Container, mem: &Memory, op: Op) -> Outcome {
        c.apply(mem, &op).unwrap()
    }

    fn reg(c: &mut Container, mem: &Memory, b: BufferId) {
        assert!(run(c, mem, Op::Register(BufferRange::whole(b))).is_ok());
    }

    fn map(iova: u64, b: BufferId) -> Op {
        Op::MapDma {
            iova,
            range: BufferRange::whole(b),
            read: true,
            write: true,
        }
    }

    fn create(page_shift: u32, window_size: u64) -> Op {
        Op::CreateWindow {
            page_shift,
            window_size,
            levels: None,
        }
    }

    #[test]
    fn fresh_container_maps_into_the_default_window_on_demand() {
        let (mut c, mem, a, _) = setup(4096, Fixes::linux_7_2_13());
        assert_eq!(run(&mut c, &mem, map(0x10000, a)).rule, Rule::NotEnabled);
        reg(&mut c, &mem, a);
        let o = run(&mut c, &mem, map(0x10000, a));
        assert_eq!(
            (o.reply.clone(), o.rule),
            (Reply::Value(Value::U64(0)), Rule::Map)
        );
        assert_eq!(o.also, vec![Rule::DefaultWindowCreated]);
        let segs = c.translate(&mem, 0x10000, 4096, Direction::Write);
        assert_eq!(
            segs[0].target,
            Target::Buffer {
                buffer: a,
                offset: 0
            }
        );
        assert_eq!(
            c.translate(&mem, 0x30000, 4096, Direction::Read)[0].target,
            Target::Fault
        );
    }

    #[test]
    fn bug_0002_crashes_4k_and_fix_refuses() {
        let (mut c, mem, a, _) = setup(4096, Fixes::linux_7_2_13());
        reg(&mut c, &mem, a);
        let o = run(&mut c, &mem, map(0x3fff_f000, a));
        assert_eq!((o.reply, o.rule), (Reply::Crash, Rule::MapPastEndCrash));
        assert_eq!(run(&mut c, &mem, Op::TceInfo).rule, Rule::AfterCrash);
        let (mut c, mem, a, _) = setup(4096, Fixes::all());
        reg(&mut c, &mem, a);
        let o = run(&mut c, &mem, map(0x3fff_f000, a));
        assert_eq!(
            (o.errno_of(), o.rule),
            (Some(Errno::EINVAL), Rule::MapPastWindowEnd)
        );
    }

    #[test]
    fn sixty_four_k_kernel_ddw_past_end_is_eintr() {
        let (mut c, mem, a, _) = setup(65536, Fixes::linux_7_2_13());
        reg(&mut c, &mem, a);
        assert_eq!(
            run(&mut c, &mem, create(12, 16 << 20)).number(),
            Some(1 << 59)
        );
        let o = run(&mut c, &mem, map((1 << 59) + 0xfff000, a));
        assert_eq!(
            (o.errno_of(), o.rule),
            (Some(Errno::EINTR), Rule::MapPastEndHcallError)
        );
        // Nothing stayed mapped.
        assert!(
            c.translate(&mem, (1 << 59) + 0xfff000, 4096, Direction::Read)[0].target
                == Target::Fault
        );
    }
}
