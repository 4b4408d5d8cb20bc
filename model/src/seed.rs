//! The windowed IOAS of the seed document (David Gibson, "Re: [PATCH RFC
//! 11/12] iommufd: vfio container FD ioctl compatibility", kvm@vger,
//! 2 May 2022), answering the same window operations as the sPAPR
//! container so the two can run side by side.  What the seed states:
//!
//! - an IOAS has one or more IOVA windows, each with a base, a size and a
//!   page size; a new IOAS has **no** window;
//! - MAP/UNMAP are permitted only within an existing window, with
//!   addresses aligned to its page size;
//! - CREATE_WINDOW takes a size, a page size and optional base and
//!   attributes; incompatible attributes fail; a page size that is a
//!   multiple of a hardware page size and a window smaller than the
//!   hardware's range are compatible; an unspecified base is allocated
//!   from the hardware's capabilities; the IBM hardware has 2 windows
//!   with fixed bases;
//! - REMOVE_WINDOW reverses one CREATE_WINDOW and deletes its maps;
//! - ATTACH re-checks the windows (not in this vocabulary: the container
//!   comes with its group attached), COPY needs compatible windows (not in
//!   this vocabulary either).
//!
//! Where it is silent the model chooses, and each rule says so
//! ([`crate::rule::Rule::source`] "seed: silent"): MAP/UNMAP follow
//! iommufd's IOAS_MAP/IOAS_UNMAP (no preregistration, EEXIST over a
//! mapping, UNMAP of whole mappings only, ENOENT for nothing); lengths
//! must be page multiples too; the user address must be aligned to the
//! window's page (the memory may use smaller pages: a window page that is
//! a multiple of the hardware's is mapped by several TCEs); sizes need not be
//! powers of two; the low hardware window reaches up to the high one's
//! base; errnos are the sPAPR driver's for the same condition; values
//! follow the vfio ops' convention (0).

use std::collections::BTreeMap;

use crate::dma::{Direction, Segment, Target, target_at, walk};
use crate::errno::Errno;
use crate::error::ModelError;
use crate::mem::{BufferRange, Memory};
use crate::op::Op;
use crate::outcome::{Outcome, TceInfo, Value};
use crate::platform::{Hardware, WindowInfo};
use crate::rule::Rule;

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeedArea {
    len: u64,
    ua: u64,
    read: bool,
    write: bool,
}

/// One window and its mappings (by IOVA).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeedWindow {
    base: u64,
    size: u64,
    page_shift: u32,
    areas: BTreeMap<u64, SeedArea>,
}

impl SeedWindow {
    fn contains(&self, iova: u64) -> bool {
        iova >= self.base && iova - self.base < self.size
    }
}

/// The windowed IOAS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowedIoas {
    hw: Hardware,
    windows: [Option<SeedWindow>; 2],
}

impl WindowedIoas {
    /// A new IOAS on this hardware: no windows.
    pub fn new(hw: Hardware) -> WindowedIoas {
        WindowedIoas {
            hw,
            windows: [None, None],
        }
    }

    /// The hardware.
    pub fn hardware(&self) -> &Hardware {
        &self.hw
    }

    /// The windows, by hardware window.
    pub fn windows(&self) -> Vec<WindowInfo> {
        self.windows
            .iter()
            .flatten()
            .map(|w| WindowInfo {
                start: w.base,
                size: w.size,
                page_shift: w.page_shift,
            })
            .collect()
    }

    /// Fixed base of hardware window `i` (the platform's default window's
    /// base, then its 64-bit base).
    fn hw_base(&self, i: usize) -> u64 {
        if i == 0 {
            self.hw.dma32_start
        } else {
            self.hw.dma64_base
        }
    }

    /// The largest window hardware window `i` holds with this page size:
    /// up to the next base (or the top of the address space), and at most
    /// the hypervisor's largest block of TCEs.
    fn hw_capacity(&self, i: usize, page_shift: u32) -> u128 {
        let span = if i == 0 {
            u128::from(self.hw.dma64_base - self.hw.dma32_start)
        } else {
            (1u128 << 64) - u128::from(self.hw.dma64_base)
        };
        span.min(u128::from(self.hw.largest_available_block) << page_shift)
    }

    /// Predicts one op and applies it.
    pub fn apply(&mut self, mem: &Memory, op: &Op) -> Result<Outcome, ModelError> {
        Ok(match op {
            Op::TceInfo => self.info(),
            Op::Register(r) | Op::Unregister(r) => {
                mem.resolve(r)?;
                Outcome::value(Value::U64(0), Rule::SeedNoPreregistration)
            }
            Op::CreateWindow {
                page_shift,
                window_size,
                levels,
            } => self.create(*page_shift, *window_size, levels.unwrap_or(0)),
            Op::RemoveWindow { start_addr } => self.remove(*start_addr),
            Op::MapDma {
                iova,
                range,
                read,
                write,
            } => self.map(mem, *iova, range, *read, *write)?,
            Op::UnmapDma { iova, length } => self.unmap(*iova, *length),
            _ => {
                return Err(ModelError::NotApplicable {
                    op: op.name(),
                    world: "seed",
                });
            }
        })
    }

    fn info(&self) -> Outcome {
        // seed: silent; the hardware's capabilities, as the kernel reports them.
        let hw = &self.hw;
        Outcome::value(
            Value::TceInfo(TceInfo {
                flags: u32::from(hw.max_dynamic_windows_supported != 0),
                dma32_window_start: hw.dma32_start as u32,
                dma32_window_size: hw.dma32_size as u32,
                pgsizes: hw.pgsizes,
                max_dynamic_windows_supported: hw.max_dynamic_windows_supported,
                levels: hw.levels,
            }),
            Rule::SeedInfo,
        )
    }

    fn create(&mut self, page_shift: u32, size: u64, levels: u32) -> Outcome {
        // seed: "optional additional attributes": more levels than the
        // hardware has are incompatible (0, the agent's "unspecified", and
        // 1 are fine).
        if levels > self.hw.levels.max(1) {
            return Outcome::errno(Errno::EINVAL, Rule::SeedCreateLevels);
        }
        // seed: "a pagesize that's a multiple of the hardware pagesize".
        let compatible =
            page_shift < 64 && (0..=page_shift).any(|h| self.hw.pgsizes & (1 << h) != 0);
        if !compatible {
            return Outcome::errno(Errno::EINVAL, Rule::SeedCreatePageSize);
        }
        // seed: silent on sizes; a non-zero multiple of the page size.
        if size == 0 || !size.is_multiple_of(1u64 << page_shift) {
            return Outcome::errno(Errno::EINVAL, Rule::SeedCreateSize);
        }
        // seed: "The IBM IOMMU hardware allows for 2 IOVA windows"; the base
        // is "allocated by the kernel, based on the hardware capabilities".
        let free: Vec<usize> = (0..2).filter(|i| self.windows[*i].is_none()).collect();
        if free.is_empty() {
            return Outcome::errno(Errno::ENOSPC, Rule::SeedCreateNoWindow);
        }
        let Some(slot) = free
            .into_iter()
            .find(|i| u128::from(size) <= self.hw_capacity(*i, page_shift))
        else {
            return Outcome::errno(Errno::EINVAL, Rule::SeedCreateTooLarge);
        };
        let base = self.hw_base(slot);
        self.windows[slot] = Some(SeedWindow {
            base,
            size,
            page_shift,
            areas: BTreeMap::new(),
        });
        Outcome::value(Value::StartAddr(base), Rule::SeedCreate)
    }

    fn remove(&mut self, start: u64) -> Outcome {
        // seed: "A REMOVE_WINDOW operation reverses a single CREATE_WINDOW";
        // silent on naming: the base a create returned.
        match self
            .windows
            .iter()
            .position(|w| w.as_ref().is_some_and(|w| w.base == start))
        {
            Some(i) => {
                // seed: "This would also delete any MAPs within that window"
                self.windows[i] = None;
                Outcome::value(Value::U64(0), Rule::SeedRemove)
            }
            None => Outcome::errno(Errno::EINVAL, Rule::SeedRemoveUnknown),
        }
    }

    fn window_of(&self, iova: u64) -> Option<usize> {
        self.windows
            .iter()
            .position(|w| w.as_ref().is_some_and(|w| w.contains(iova)))
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
        // IOAS_MAP's rules (ioas.c iommufd_ioas_map:260-262; pages.c:1372-1373)
        if !read && !write {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::SeedNoDirection));
        }
        if len == 0 {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::SeedZeroLength));
        }
        // seed: "only permitted within an existing IOVA window"
        let Some(i) = self.window_of(iova) else {
            return Ok(Outcome::errno(Errno::ENXIO, Rule::SeedOutsideWindows));
        };
        let w = self.windows[i].as_ref().expect("found");
        let page = 1u64 << w.page_shift;
        // seed: "with addresses aligned to the window's pagesize"
        if !iova.is_multiple_of(page) || len % page != 0 {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::SeedMisaligned));
        }
        if u128::from(iova) + u128::from(len) > u128::from(w.base) + u128::from(w.size) {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::SeedCrossesWindowEnd));
        }
        // seed: silent on user addresses; aligned to the window's page like
        // the IOVA, and backed by pages at least as big as the smallest
        // hardware page (a window's page may be a multiple of the hardware's,
        // so smaller TCEs can map a big window page piece by piece).
        let backing = mem.backing_page(range.buffer, self.hw.page_size, self.hw.huge_page_size);
        let hw_min = 1u64 << self.hw.pgsizes.trailing_zeros().min(63);
        if ua % page != 0 || backing < hw_min {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::SeedUserMemory));
        }
        // seed: silent; IOAS_MAP (iopt_check_iova:200-202).
        let last = iova + (len - 1);
        if w.areas
            .iter()
            .any(|(a, x)| *a <= last && iova <= a + (x.len - 1))
        {
            return Ok(Outcome::errno(Errno::EEXIST, Rule::SeedOverlap));
        }
        self.windows[i].as_mut().expect("found").areas.insert(
            iova,
            SeedArea {
                len,
                ua,
                read,
                write,
            },
        );
        Ok(Outcome::value(Value::U64(0), Rule::SeedMap))
    }

    fn unmap(&mut self, iova: u64, length: u64) -> Outcome {
        // IOAS_UNMAP (io_pagetable.c iopt_unmap_iova:853-854)
        if length == 0 {
            return Outcome::errno(Errno::EINVAL, Rule::SeedZeroLength);
        }
        let Some(i) = self.window_of(iova) else {
            return Outcome::errno(Errno::ENXIO, Rule::SeedOutsideWindows);
        };
        let w = self.windows[i].as_mut().expect("found");
        let page = 1u64 << w.page_shift;
        if !iova.is_multiple_of(page) || !length.is_multiple_of(page) {
            return Outcome::errno(Errno::EINVAL, Rule::SeedMisaligned);
        }
        if u128::from(iova) + u128::from(length) > u128::from(w.base) + u128::from(w.size) {
            return Outcome::errno(Errno::EINVAL, Rule::SeedCrossesWindowEnd);
        }
        // seed: silent; IOAS_UNMAP (iopt_unmap_iova_range:758-827): whole
        // areas in address order, stopping at the first one split.
        let last = iova + (length - 1);
        let hit: Vec<(u64, u64)> = w
            .areas
            .iter()
            .filter(|(a, x)| **a <= last && iova <= *a + (x.len - 1))
            .map(|(a, x)| (*a, x.len))
            .collect();
        let mut removed = 0;
        for (a, len) in hit {
            if a < iova || a + (len - 1) > last {
                return Outcome::errno(Errno::ENOENT, Rule::SeedUnmapPartial);
            }
            w.areas.remove(&a);
            removed += 1;
        }
        if removed == 0 {
            return Outcome::errno(Errno::ENOENT, Rule::SeedUnmapNothing);
        }
        Outcome::value(Value::U64(0), Rule::SeedUnmap)
    }

    /// Where device DMA of `[iova, iova + len)` goes: through the
    /// windows' mappings, faulting elsewhere or without permission.
    pub fn translate(&self, mem: &Memory, iova: u64, len: u64, dir: Direction) -> Vec<Segment> {
        walk(iova, len, |pos| {
            let hit = self.windows.iter().flatten().find_map(|w| {
                w.areas
                    .iter()
                    .find(|(a, x)| **a <= pos && pos - **a < x.len)
                    .map(|(a, x)| (*a, x))
            });
            match hit {
                Some((a, x)) => {
                    let allowed = match dir {
                        Direction::Read => x.read,
                        Direction::Write => x.write,
                    };
                    (
                        target_at(mem, x.ua + (pos - a), allowed),
                        u128::from(a) + u128::from(x.len),
                    )
                }
                None => (Target::Fault, u128::from(pos / 4096 * 4096) + 4096),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::WindowedIoas;
    use crate::dma::{Direction, Target};
    use crate::errno::Errno;
    use crate::mem::{BufferRange, Memory};
    use crate::op::Op;
    use crate::platform::Hardware;
    use crate::rule::Rule;

    #[test]
    fn a_new_ioas_has_no_window_and_the_first_create_takes_the_low_base() {
        let mut mem = Memory::new();
        let a = mem.alloc(0x10000, false);
        let mut s = WindowedIoas::new(Hardware::qemu_pseries(4096));
        let map = |iova| Op::MapDma {
            iova,
            range: BufferRange::whole(a),
            read: true,
            write: true,
        };
        let o = s.apply(&mem, &map(0x10000)).unwrap();
        assert_eq!(
            (o.errno_of(), o.rule),
            (Some(Errno::ENXIO), Rule::SeedOutsideWindows)
        );
        let c = Op::CreateWindow {
            page_shift: 12,
            window_size: 12 << 20,
            levels: None,
        };
        assert_eq!(s.apply(&mem, &c).unwrap().number(), Some(0));
        assert_eq!(s.apply(&mem, &c).unwrap().number(), Some(1 << 59));
        assert_eq!(s.apply(&mem, &c).unwrap().rule, Rule::SeedCreateNoWindow);
        assert_eq!(s.apply(&mem, &map(0x10000)).unwrap().rule, Rule::SeedMap);
        assert_eq!(
            s.apply(&mem, &map(0x10000)).unwrap().rule,
            Rule::SeedOverlap
        );
        let seg = s.translate(&mem, 0x10000, 4096, Direction::Write);
        assert_eq!(
            seg[0].target,
            Target::Buffer {
                buffer: a,
                offset: 0
            }
        );
    }
}
