//! The pseries platform under a VFIO sPAPR container: the kernel's
//! `iommu_table_group_ops` for pseries (`arch/powerpc/platforms/pseries/iommu.c`:
//! `spapr_tce_create_table`, `spapr_tce_unset_window`, the device-tree
//! properties and lists it keeps) and the hypervisor below it, QEMU 10.0's
//! PAPR DDW RTAS calls and TCE tables (`hw/ppc/spapr_rtas_ddw.c`,
//! `hw/ppc/spapr_iommu.c`).  Windows live twice: as the kernel's tables
//! ([`Table`], what the container indexes) and as the hypervisor's TCE
//! tables ([`HvWindow`], what device DMA goes through), and the two can
//! disagree: the hypervisor's default window stays 1 GiB when the kernel
//! limits its table, and it is never removed (its property is too short
//! for the kernel's RTAS remove).

use std::collections::BTreeMap;

use crate::errno::Errno;
use crate::rule::Rule;

/// The machine: the PE's DMA windows as the hypervisor offers them, and
/// the guest kernel's page sizes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hardware {
    /// The guest kernel's PAGE_SIZE (4K or 64K).
    pub page_size: u64,
    /// The hugetlb page size (16M with the hash MMU).
    pub huge_page_size: u64,
    /// Base of the default window (`ibm,dma-window`; QEMU `dma_win_addr`).
    pub dma32_start: u64,
    /// Its size (GET_INFO's `dma32_window_size`; QEMU `dma_win_size`).
    pub dma32_size: u64,
    /// IOMMU page sizes (bit n: 2^n bytes): SZ_4K | the DDW query's mask
    /// (the regression corpus's bug 08a drops the mask: 0x1000).
    pub pgsizes: u64,
    /// GET_INFO's `max_dynamic_windows_supported` (2 when the query reports
    /// a free window).
    pub max_dynamic_windows_supported: u32,
    /// GET_INFO's `levels` (`max_levels`, 1 on pseries; the corpus's bug
    /// 08b leaves it 0).  CREATE does not look at it: pseries refuses more
    /// than one level itself.
    pub levels: u32,
    /// Where the hypervisor puts a DDW while another window is active
    /// (QEMU `dma64_win_addr`, 1<<59).
    pub dma64_base: u64,
    /// The DDW query's largest available block, in TCEs (QEMU: 2^37).
    pub largest_available_block: u64,
    /// QEMU 10.0 keeps a window's TCE count in a `uint32_t`: 2^32 TCEs or
    /// more become 0 and the create fails.
    pub qemu_tce_count_u32: bool,
}

impl Hardware {
    /// QEMU 10.0's pseries PHB defaults (`spapr_phb_properties`): the
    /// default window 0..1 GiB with 4K pages, DDW at 1<<59 with
    /// 4K|64K|2M|16M pages, hugetlb pages of 16M (hash MMU).
    pub fn qemu_pseries(page_size: u64) -> Hardware {
        Hardware {
            page_size,
            huge_page_size: 16 << 20,
            dma32_start: 0,
            dma32_size: 1 << 30,
            pgsizes: (1 << 12) | (1 << 16) | (1 << 21) | (1 << 24),
            max_dynamic_windows_supported: 2,
            levels: 1,
            dma64_base: 1 << 59,
            largest_available_block: 1 << 37,
            qemu_tce_count_u32: true,
        }
    }

    /// log2 of PAGE_SIZE.
    pub fn page_shift(&self) -> u32 {
        self.page_size.trailing_zeros()
    }
}

/// A window as points and tables see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowInfo {
    /// First IOVA.
    pub start: u64,
    /// Bytes.
    pub size: u64,
    /// log2 of its IOMMU page.
    pub page_shift: u32,
}

/// One TCE: the user page it maps and the device's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tce {
    /// User address of the IOMMU page's first byte (the model's stand-in
    /// for the host physical address).
    pub ua: u64,
    /// TCE_PCI_READ: the device may read memory.
    pub read: bool,
    /// TCE_PCI_WRITE: the device may write memory.
    pub write: bool,
}

/// A hypervisor TCE table (QEMU `SpaprTceTable`), by LIOBN index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HvWindow {
    /// First bus address.
    pub bus_offset: u64,
    /// log2 of its page.
    pub page_shift: u32,
    /// Number of TCEs.
    pub nb_table: u64,
    /// The TCEs set, by index.
    pub tces: BTreeMap<u64, Tce>,
}

impl HvWindow {
    fn contains(&self, addr: u64) -> bool {
        addr >= self.bus_offset && ((addr - self.bus_offset) >> self.page_shift) < self.nb_table
    }
}

/// A kernel `iommu_table` the container holds in a slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    /// The hypervisor table (LIOBN index) it programs.
    pub liobn: usize,
    /// First entry (`it_offset`: bus address >> page_shift).
    pub offset: u64,
    /// Number of entries (`it_size`).
    pub size: u64,
    /// log2 of its IOMMU page (`it_page_shift`).
    pub page_shift: u32,
    /// How many entries the userspace view's allocation holds
    /// (`ALIGN(8 * it_size, PAGE_SIZE) / 8`): indexes up to here are
    /// padding, not a fault.
    pub view_capacity: u64,
    /// The userspace view (`it_userspace`): user address per index.
    pub view: BTreeMap<u64, u64>,
}

impl Table {
    fn new(hw: &Hardware, liobn: usize, start: u64, size: u64, page_shift: u32) -> Table {
        // pseries/iommu.c iommu_table_setparms_common:563-577 (offset and
        // size in IOMMU pages) and pseries_tce_iommu_userspace_view_alloc:172-189
        // (8 bytes per entry, the allocation rounded up to PAGE_SIZE).
        let entries = size >> page_shift;
        let bytes = (entries.saturating_mul(8)).div_ceil(hw.page_size) * hw.page_size;
        Table {
            liobn,
            offset: start >> page_shift,
            size: entries,
            page_shift,
            view_capacity: bytes / 8,
            view: BTreeMap::new(),
        }
    }

    /// First bus address.
    pub fn start(&self) -> u64 {
        self.offset << self.page_shift
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.size << self.page_shift
    }
}

/// The hypervisor refused a TCE access (`H_PARAMETER`, -4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HParameter;

/// The PE's state below the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// The PE is on `failed_ddw_pdn_list`.
    failed: bool,
    /// The `ibm,dma-window` property is present.
    dma_window_prop: bool,
    /// A DDW of this PE is on `dma_win_list` (and its property exists).
    ddw_listed: bool,
    /// The hypervisor's TCE tables by LIOBN index (0 is the default window's).
    hv: [Option<HvWindow>; 2],
}

impl Platform {
    /// The PE right after VFIO took the group: `spapr_tce_take_ownership`
    /// (pseries/iommu.c:2338-2388) removed the `ibm,dma-window` property,
    /// but the hypervisor still has the default window (the property's
    /// 20 bytes are shorter than `struct dynamic_dma_window_prop`, so
    /// `remove_dma_window_named`:1043 makes no RTAS call).
    pub fn after_take_ownership(hw: &Hardware, failed: bool) -> Platform {
        let mut p = Platform {
            failed,
            dma_window_prop: false,
            ddw_listed: false,
            hv: [None, None],
        };
        p.hv_reset(hw);
        p
    }

    /// Whether DDW is disabled for the PE until the guest reboots.
    pub fn ddw_disabled(&self) -> bool {
        self.failed
    }

    /// The hypervisor's windows by LIOBN index.
    pub fn hv_windows(&self) -> &[Option<HvWindow>; 2] {
        &self.hv
    }

    /// QEMU `spapr_phb_dma_reset` (ibm,reset-pe-dma-windows): every window
    /// disabled, the default one enabled again, empty.
    fn hv_reset(&mut self, hw: &Hardware) {
        self.hv = [
            Some(HvWindow {
                bus_offset: hw.dma32_start,
                page_shift: 12,
                nb_table: hw.dma32_size >> 12,
                tces: BTreeMap::new(),
            }),
            None,
        ];
    }

    fn hv_active(&self) -> usize {
        self.hv.iter().flatten().count()
    }

    /// QEMU rtas_ibm_create_pe_dma_window: the LIOBN index and bus address
    /// of a new window, or the RTAS failure.
    fn hv_create(
        &mut self,
        hw: &Hardware,
        page_shift: u32,
        window_shift: u32,
    ) -> Option<(usize, u64)> {
        // Page size outside the PHB's mask, or a window smaller than a page: RTAS_OUT_PARAM_ERROR.
        if page_shift >= 64 || hw.pgsizes & (1 << page_shift) == 0 || window_shift < page_shift {
            return None;
        }
        // spapr_phb_get_free_liobn: no free table: RTAS_OUT_HW_ERROR.
        let liobn = self.hv.iter().position(Option::is_none)?;
        let windows = self.hv_active();
        let mut nb_table = 1u64 << (window_shift - page_shift);
        if hw.qemu_tce_count_u32 {
            nb_table &= u64::from(u32::MAX);
        }
        if nb_table == 0 {
            return None;
        }
        // win_addr = (windows == 0) ? dma_win_addr : dma64_win_addr
        let bus_offset = if windows == 0 {
            hw.dma32_start
        } else {
            hw.dma64_base
        };
        self.hv[liobn] = Some(HvWindow {
            bus_offset,
            page_shift,
            nb_table,
            tces: BTreeMap::new(),
        });
        Some((liobn, bus_offset))
    }

    /// QEMU rtas_ibm_remove_pe_dma_window: removing the last window
    /// restores the default one unless it was the default one.
    fn hv_remove(&mut self, hw: &Hardware, liobn: usize) {
        if self.hv[liobn].take().is_some() && self.hv_active() == 0 && liobn != 0 {
            self.hv_reset(hw);
        }
    }

    /// `spapr_tce_create_table` for table slot `num`: the new table and the
    /// rule that made it, or why not.
    pub fn create_table(
        &mut self,
        hw: &Hardware,
        num: usize,
        page_shift: u32,
        window_size: u64,
        levels: u32,
    ) -> Result<(Table, Rule), (Errno, Rule)> {
        // pseries/iommu.c spapr_tce_create_table:2079-2080
        if !window_size.is_power_of_two() {
            return Err((Errno::EINVAL, Rule::CreateNotPowerOfTwo));
        }
        if levels > 1 {
            return Err((Errno::EINVAL, Rule::CreateTooManyLevels));
        }
        let window_shift = window_size.trailing_zeros();
        // pseries/iommu.c spapr_tce_create_table:2095-2101 (failed_ddw_pdn_list)
        if self.failed {
            return Err((Errno::ENODEV, Rule::CreateDdwDisabled));
        }
        if num == 0 {
            // pseries/iommu.c is_default_window_request:2047-2055
            let default_request = window_size <= hw.dma32_size && page_shift == 12;
            if !default_request {
                // pseries/iommu.c spapr_tce_create_table:2111-2118
                if self.ddw_listed {
                    return Err((Errno::EPERM, Rule::CreateSlot0WhileDdw));
                }
            } else if !self.dma_window_prop {
                // pseries/iommu.c spapr_tce_create_table:2124-2131
                if self.ddw_listed {
                    return Err((Errno::EPERM, Rule::CreateSlot0WhileDdw));
                }
                // :2133-2150 restore_default_dma_window (RTAS reset, the
                // saved property copied back), the table limited to window_size
                self.hv_reset(hw);
                self.dma_window_prop = true;
                let t = Table::new(hw, 0, hw.dma32_start, 1 << window_shift, 12);
                return Ok((t, Rule::CreateDefaultWindow));
            }
        }
        // pseries/iommu.c spapr_tce_create_table:2164-2176: the query's
        // largest available block against `1ULL << (len - page_shift)`.
        // GCC compiles it as `(largest >> (len - page_shift)) == 0` (an
        // `srd.` of the 64-bit difference, in both the 6.12 and the 7.2
        // vmlinux); ppc64's srd takes 7 bits of the count, so a window
        // smaller than its page (a negative difference, 64..127 as 7 bits)
        // shifts everything out: EINVAL, as `cargo xtask fuzz` measured
        // (page_shift 12, window_size 2048).
        let too_large = if window_shift >= page_shift {
            u128::from(hw.largest_available_block) < 1u128 << (window_shift - page_shift)
        } else {
            true
        };
        if too_large {
            return Err((Errno::EINVAL, Rule::CreateTooLarge));
        }
        // pseries/iommu.c spapr_tce_create_table:2178-2181, 2238-2243
        let Some((liobn, bus_offset)) = self.hv_create(hw, page_shift, window_shift) else {
            self.failed = true;
            return Err((Errno::ENODEV, Rule::CreateDdwRtasFailed));
        };
        // pseries/iommu.c spapr_tce_create_table:2188-2192: of_add_property
        // of a second "linux,dma64-ddr-window-info" fails with -EEXIST.
        if self.ddw_listed {
            self.hv_remove(hw, liobn);
            self.failed = true;
            return Err((Errno::EEXIST, Rule::CreateDdwPropertyExists));
        }
        // pseries/iommu.c spapr_tce_create_table:2195-2227
        self.ddw_listed = true;
        let t = Table::new(hw, liobn, bus_offset, 1 << window_shift, page_shift);
        Ok((t, Rule::CreateDdw))
    }

    /// `spapr_tce_unset_window` for slot `num` (its return value is
    /// ignored by VFIO).
    pub fn unset_window(&mut self, hw: &Hardware, num: usize, t: &Table) {
        // pseries/iommu.c is_default_window_table:2259-2266, spapr_tce_unset_window:2289-2292
        let default_table = num == 0 && t.bytes() <= hw.dma32_size && t.page_shift == 12;
        if default_table {
            // remove_dma_window_named:1034-1036: no property, -EINVAL,
            // and spapr_tce_unset_window:2301-2303 puts the PE on failed_ddw_pdn_list.
            if !self.dma_window_prop {
                self.failed = true;
                return;
            }
            // remove_dma_window_named:1043: the property is too short for
            // an RTAS remove; :1057 it is removed.
            self.dma_window_prop = false;
        } else {
            if !self.ddw_listed {
                self.failed = true;
                return;
            }
            // remove_dma_window_named:1043-1044 → __remove_dma_window:971
            // (ibm,remove-pe-dma-window), spapr_tce_unset_window:2306-2316.
            self.hv_remove(hw, t.liobn);
            self.ddw_listed = false;
        }
    }

    /// `tce_exchange_pseries` (pseries/iommu.c:703-726): H_GET_TCE then
    /// H_PUT_TCE of bus address `ioba` in LIOBN `liobn`; the old TCE.
    pub fn xchg(
        &mut self,
        liobn: usize,
        ioba: u64,
        new: Option<Tce>,
    ) -> Result<Option<Tce>, HParameter> {
        // QEMU hw/ppc/spapr_iommu.c get_tce_emu/put_tce_emu:450-474,586-600:
        // an index past nb_table is H_PARAMETER.
        let w = self.hv[liobn].as_mut().ok_or(HParameter)?;
        if !w.contains(ioba) {
            return Err(HParameter);
        }
        let idx = (ioba - w.bus_offset) >> w.page_shift;
        let old = match new {
            Some(t) => w.tces.insert(idx, t),
            None => w.tces.remove(&idx),
        };
        Ok(old)
    }

    /// The bus addresses in `[first, end)` of LIOBN `liobn` that hold a TCE.
    pub fn tces_in(&self, liobn: usize, first: u64, end: u128) -> Vec<u64> {
        let Some(w) = &self.hv[liobn] else {
            return Vec::new();
        };
        w.tces
            .keys()
            .map(|i| w.bus_offset + (i << w.page_shift))
            .filter(|a| *a >= first && u128::from(*a) < end)
            .collect()
    }

    /// What device DMA to `addr` finds (QEMU spapr_tce_translate_iommu:113-142):
    /// the TCE and the IOMMU page size, or `None` (a fault).
    pub fn translate(&self, addr: u64) -> Option<(Tce, u64)> {
        self.hv
            .iter()
            .flatten()
            .find(|w| w.contains(addr))
            .and_then(|w| {
                let idx = (addr - w.bus_offset) >> w.page_shift;
                w.tces.get(&idx).map(|t| (*t, 1u64 << w.page_shift))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::{Hardware, Platform, Tce};
    use crate::errno::Errno;
    use crate::rule::Rule;

    #[test]
    fn default_window_restores_and_ddw_lands_at_the_64bit_base() {
        let hw = Hardware::qemu_pseries(4096);
        let mut p = Platform::after_take_ownership(&hw, false);
        let (t0, r0) = p.create_table(&hw, 0, 12, 1 << 30, 1).unwrap();
        assert_eq!(
            (t0.start(), t0.size, r0),
            (0, 1 << 18, Rule::CreateDefaultWindow)
        );
        // 2 MiB of view for 2^18 entries: page aligned, no padding.
        assert_eq!(t0.view_capacity, 1 << 18);
        let (t1, r1) = p.create_table(&hw, 1, 16, 16 << 20, 1).unwrap();
        assert_eq!((t1.start(), t1.liobn, r1), (1 << 59, 1, Rule::CreateDdw));
        // A second DDW: no free LIOBN in QEMU, the PE is poisoned.
        p.unset_window(&hw, 0, &t0);
        assert_eq!(
            p.create_table(&hw, 0, 12, 1 << 24, 1).unwrap_err(),
            (Errno::EPERM, Rule::CreateSlot0WhileDdw)
        );
        assert_eq!(
            p.create_table(&hw, 0, 16, 1 << 24, 1).unwrap_err(),
            (Errno::EPERM, Rule::CreateSlot0WhileDdw)
        );
        assert!(!p.ddw_disabled());
    }

    /// A second DDW property: unreachable under QEMU (no free LIOBN while a
    /// DDW exists), so the hypervisor here lost its DDW table.
    #[test]
    fn a_second_ddw_property_poisons_the_pe() {
        let hw = Hardware::qemu_pseries(4096);
        let mut p = Platform::after_take_ownership(&hw, false);
        p.create_table(&hw, 0, 12, 1 << 30, 1).unwrap();
        p.create_table(&hw, 1, 12, 1 << 24, 1).unwrap();
        p.hv[1] = None;
        assert_eq!(
            p.create_table(&hw, 1, 16, 1 << 24, 1).unwrap_err(),
            (Errno::EEXIST, Rule::CreateDdwPropertyExists)
        );
        assert!(p.ddw_disabled());
        assert!(p.hv[1].is_none());
    }

    #[test]
    fn tces_go_through_the_hypervisor_window() {
        let hw = Hardware::qemu_pseries(4096);
        let mut p = Platform::after_take_ownership(&hw, false);
        let t = Tce {
            ua: 0x5000_0000,
            read: true,
            write: false,
        };
        assert_eq!(p.xchg(0, 0x10000, Some(t)), Ok(None));
        assert_eq!(p.translate(0x10010), Some((t, 4096)));
        assert_eq!(p.xchg(0, 1 << 30, Some(t)), Err(super::HParameter));
        assert_eq!(p.tces_in(0, 0, 1 << 30), vec![0x10000]);
        assert_eq!(p.translate(0x20000), None);
    }
}
