//! Interesting argument values for a state: where rules change their
//! answer.  Window edges and one IOMMU page either side of them, half a
//! page off (misaligned), the last page and the last 64 KiB of a window
//! (a 64 KiB map there crosses the end), sizes around powers of two and
//! around the hypervisor's limits, each supported page size and one that
//! is not, the registered memory's ranges and ranges just off them; for an
//! IOAS the edges of reserved, allowed and mapped ranges, the mock
//! aperture and the alignment.  A generator draws its arguments from these
//! rather than uniformly, so the few values that matter come up often.

use std::collections::BTreeSet;

use crate::ioas::Iommufd;
use crate::mem::{BufferId, BufferRange, Memory};
use crate::op::IoasId;
use crate::platform::{Hardware, WindowInfo};
use crate::seed::WindowedIoas;
use crate::spapr::Container;
use crate::world::{Backend, World};

/// Argument values worth trying, each list sorted and without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Points {
    /// IOVAs (map, unmap, DMA, fixed IOAS maps).
    pub iovas: Vec<u64>,
    /// Lengths (unmap, buffer ranges, reservations).
    pub lengths: Vec<u64>,
    /// Window sizes for CREATE.
    pub window_sizes: Vec<u64>,
    /// Page shifts for CREATE.
    pub page_shifts: Vec<u32>,
    /// Addresses naming a window for REMOVE.
    pub window_addrs: Vec<u64>,
    /// Buffer ranges (map, register, access).
    pub ranges: Vec<BufferRange>,
}

fn sorted<T: Ord + Clone>(v: &mut Vec<T>) {
    let s: BTreeSet<T> = v.drain(..).collect();
    v.extend(s);
}

impl Points {
    /// Both sets together.
    pub fn merge(mut self, other: Points) -> Points {
        self.iovas.extend(other.iovas);
        self.lengths.extend(other.lengths);
        self.window_sizes.extend(other.window_sizes);
        self.page_shifts.extend(other.page_shifts);
        self.window_addrs.extend(other.window_addrs);
        for r in other.ranges {
            if !self.ranges.contains(&r) {
                self.ranges.push(r);
            }
        }
        self.tidy()
    }

    fn tidy(mut self) -> Points {
        sorted(&mut self.iovas);
        sorted(&mut self.lengths);
        sorted(&mut self.window_sizes);
        sorted(&mut self.page_shifts);
        sorted(&mut self.window_addrs);
        self
    }
}

/// The points of a set of windows on this hardware (shared by the sPAPR
/// container and the seed).
pub fn windows(ws: &[WindowInfo], hw: &Hardware) -> Points {
    let mut p = Points::default();
    for w in ws {
        let page = 1u64 << w.page_shift;
        let end = w.start.saturating_add(w.size);
        p.iovas.extend([
            w.start,
            w.start + page / 2,
            w.start.saturating_add(page),
            end,
        ]);
        if w.size >= page {
            p.iovas.push(end - page);
        }
        if w.size >= 0x10000 {
            p.iovas.push(end - 0x10000);
        }
        if w.start >= page {
            p.iovas.push(w.start - page);
        }
        p.lengths.extend([page, 2 * page, page / 2]);
        p.window_addrs
            .extend([w.start, w.start.saturating_add(page)]);
    }
    // The default window's and the 64-bit base's own points, windows or not.
    p.iovas.extend([
        hw.dma32_start + 0x10000,
        hw.dma32_start + hw.dma32_size,
        hw.dma64_base,
    ]);
    p.window_addrs.extend([hw.dma32_start, hw.dma64_base]);
    p.lengths.extend([4096, 0x10000, hw.page_size]);
    // Lengths around powers of two: a page less, exactly, a page more.
    for k in [0x10000u64, 2 << 20] {
        p.lengths.extend([k - hw.page_size, k, k + hw.page_size]);
    }
    // Page sizes: each supported one, the next one up from the smallest
    // (a multiple of it, not supported).
    for s in 0..64 {
        if hw.pgsizes & (1 << s) != 0 {
            p.page_shifts.push(s);
        }
    }
    if let Some(min) = p.page_shifts.first().copied() {
        p.page_shifts.push(min + 1);
    }
    // Sizes: a page, half a page, 16M and 12M (not a power of two), the
    // default window and twice it, 2^32 TCEs of the smallest page (QEMU
    // truncates the count), more TCEs than the largest block.
    let min = p.page_shifts.first().copied().unwrap_or(12);
    p.window_sizes.extend([
        1u64 << min,
        (1u64 << min) / 2,
        16 << 20,
        12 << 20,
        hw.dma32_size,
        hw.dma32_size * 2,
        1u64 << (32 + min).min(63),
    ]);
    let too_big = (u128::from(hw.largest_available_block) << (min + 1)).min(1 << 63) as u64;
    p.window_sizes.push(too_big);
    p.tidy()
}

/// Ranges of each buffer: whole, its first page, the rest after it, a
/// misaligned page (1 KiB in), and nothing.
fn buffer_ranges(mem: &Memory, page: u64) -> Vec<BufferRange> {
    let mut v = Vec::new();
    for (id, b) in mem.iter() {
        v.push(BufferRange::whole(id));
        if b.size > page {
            v.push(BufferRange::part(id, 0, page));
            v.push(BufferRange::part(id, page, b.size - page));
        }
        if b.size >= page + 1024 {
            v.push(BufferRange::part(id, 1024, page));
        }
        v.push(BufferRange::part(id, 0, 0));
    }
    v
}

/// The points of a sPAPR container: its windows (the pending default one
/// too: the next map creates it) and registered memory.
pub fn spapr(c: &Container, mem: &Memory) -> Points {
    let hw = &c.params().hw;
    let mut ws = c.windows();
    if c.default_pending() {
        ws.push(WindowInfo {
            start: hw.dma32_start,
            size: hw.dma32_size,
            page_shift: 12,
        });
    }
    let mut p = windows(&ws, hw);
    p.ranges = buffer_ranges(mem, hw.page_size);
    // Registered memory: exactly, and one page of it.
    for (ua, len) in c.registered() {
        if let Some((id, off)) = mem.locate(ua) {
            p.ranges.push(BufferRange::part(id, off, len));
            p.lengths.push(len);
        }
    }
    p.tidy()
}

/// The points of the seed's IOAS: its windows.
pub fn seed(s: &WindowedIoas, mem: &Memory) -> Points {
    let mut p = windows(&s.windows(), s.hardware());
    p.ranges = buffer_ranges(mem, s.hardware().page_size);
    p.tidy()
}

/// The points of one IOAS: the edges of its reserved, allowed and mapped
/// ranges and one page either side, the mock aperture's edges, the
/// alignment and half of it.
pub fn ioas(f: &Iommufd, mem: &Memory, id: IoasId) -> Points {
    let ps = f.params().page_size;
    let align = f.alignment(id);
    let mut p = Points::default();
    let mut edges = Vec::new();
    edges.extend(f.reserved(id));
    edges.extend(f.allowed(id));
    edges.extend(f.areas(id).into_iter().map(|(s, l)| (s, s + (l - 1))));
    let m = &f.params().mock;
    edges.push((m.aperture_start, m.aperture_last));
    for (s, l) in edges {
        p.iovas.extend([
            s,
            l.saturating_add(1),
            s.saturating_sub(ps),
            s.saturating_add(ps),
        ]);
        if l != u64::MAX {
            p.iovas.push((l + 1).saturating_sub(ps));
        }
    }
    p.iovas.extend([0, ps, align, align / 2 + ps]);
    p.lengths.extend([1, align, ps, ps / 2, 2048]);
    // Lengths around powers of two (the automatic IOVA's alignment is the
    // length rounded up to one): a page less, exactly, a page more.
    for k in [0x10000u64, 1 << 20, 2 << 20] {
        p.lengths.extend([k - ps, k, k + ps]);
    }
    p.ranges = buffer_ranges(mem, ps);
    p.tidy()
}

/// The points of a world (for an iommufd, of every IOAS).
pub fn for_world(w: &World) -> Points {
    match &w.backend {
        Backend::Spapr(c) => spapr(c, &w.mem),
        Backend::Seed(s) => seed(s, &w.mem),
        Backend::Iommufd(f) => {
            let (n, _, _) = f.counts();
            (0..n).fold(Points::default(), |acc, i| {
                acc.merge(ioas(f, &w.mem, IoasId(i)))
            })
        }
    }
}

/// The points of the first `n` buffers only (a generator's own buffers).
pub fn ranges_of(points: &Points, n: usize) -> Vec<BufferRange> {
    points
        .ranges
        .iter()
        .copied()
        .filter(|r| r.buffer < BufferId(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{for_world, windows};
    use crate::ioas::IommufdParams;
    use crate::op::{IoasId, Op};
    use crate::platform::{Hardware, WindowInfo};
    use crate::spapr::{Fixes, SpaprParams};
    use crate::world::World;

    #[test]
    fn window_edges_and_sizes() {
        let hw = Hardware::qemu_pseries(4096);
        let p = windows(
            &[WindowInfo {
                start: 1 << 59,
                size: 16 << 20,
                page_shift: 16,
            }],
            &hw,
        );
        let base = 1u64 << 59;
        for v in [
            base,
            base + 0x8000,
            base + 0x10000,
            base + (16 << 20) - 0x10000,
            base + (16 << 20),
            base - 0x10000,
        ] {
            assert!(p.iovas.contains(&v), "{v:#x}");
        }
        assert_eq!(p.page_shifts, vec![12, 13, 16, 21, 24]);
        assert!(p.window_sizes.contains(&(12 << 20)));
        assert!(p.window_sizes.contains(&(1 << 44)));
        assert!(p.window_addrs.contains(&(base + 0x10000)));
    }

    #[test]
    fn fresh_container_offers_the_pending_default_window() {
        let mut w = World::spapr(SpaprParams::qemu(4096, Fixes::linux_7_2_13()));
        w.apply(&Op::MemAlloc {
            size: 0x10000,
            hugetlb: false,
        })
        .unwrap();
        let p = for_world(&w);
        assert!(p.iovas.contains(&0x3fff_f000));
        assert!(p.iovas.contains(&0x3fff_0000));
        assert!(p.ranges.len() >= 4);
    }

    #[test]
    fn ioas_edges() {
        let mut w = World::iommufd(IommufdParams::q35_mock_7_2());
        w.apply(&Op::IoasAlloc).unwrap();
        w.apply(&Op::MockAddReserved {
            ioas: IoasId(0),
            start: 32 << 20,
            length: 1 << 20,
        })
        .unwrap();
        let p = for_world(&w);
        for v in [32 << 20, 33 << 20, (32 << 20) - 4096, 16 << 20, 1 << 31] {
            assert!(p.iovas.contains(&v), "{v:#x}");
        }
    }
}
