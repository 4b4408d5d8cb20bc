//! Dirty tracking on a paging HWPT: switching it on and off
//! (`IOMMU_HWPT_SET_DIRTY_TRACKING`), reading which pages of an IOVA range
//! were written (`IOMMU_HWPT_GET_DIRTY_BITMAP`, clearing the dirty bits as
//! it reads unless asked not to), and, on the selftest's mock domain,
//! dirtying pages as a device's writes would (`IOMMU_TEST_OP_DIRTY`).
//! Scenarios give and get the bitmaps as IOVA ranges, one bit per
//! `page_size` page from `iova`.

use serde_json::{Value, json};

use super::ranges;
use crate::args::Args;
use crate::ctx::Ctx;
use crate::outcome::{OpError, OpResult};
use crate::uapi::{argsz, iofd, iommufd_ioctl as io, selftest};

/// The most pages one bitmap may cover (the mock's own limit, 16 MiB of bits).
const MAX_PAGES: u64 = 1 << 27;

/// A bitmap of the `page_size` pages of `[iova, iova + length)`, bit `i`
/// for the page at `iova + i * page_size`, in 64-bit words as the kernel
/// reads and writes it.
struct Bitmap {
    iova: u64,
    page_size: u64,
    pages: u64,
    words: Vec<u64>,
}

impl Bitmap {
    /// An empty bitmap for the step's `iova`, `length` and `page_size`.
    fn of(args: &Args) -> Result<Bitmap, OpError> {
        let (iova, length, page_size) = (
            args.u64("iova")?,
            args.u64("length")?,
            args.u64("page_size")?,
        );
        // A zero page size is the kernel's to refuse: one word, no pages.
        let pages = length.checked_div(page_size).unwrap_or(0);
        if pages > MAX_PAGES {
            return Err(OpError::Error(format!(
                "{pages} pages of {page_size:#x} bytes: more than the agent's {MAX_PAGES}"
            )));
        }
        Ok(Bitmap {
            iova,
            page_size,
            pages,
            words: vec![0; pages.div_ceil(64).max(1) as usize],
        })
    }

    fn set(&self, i: u64) -> bool {
        self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Sets the bit of every page that meets one of `ranges` (inclusive).
    fn mark(&mut self, ranges: &[(u64, u64)]) {
        for i in 0..self.pages {
            let first = self.iova.wrapping_add(i * self.page_size);
            let last = first.wrapping_add(self.page_size - 1);
            if ranges.iter().any(|&(s, l)| s <= last && first <= l) {
                self.words[(i / 64) as usize] |= 1 << (i % 64);
            }
        }
    }

    /// `{ranges: [[first, last]…] of the set pages, count, bitmap: "0x…"}`,
    /// the bitmap as one number (bit `i` for page `i`).
    fn report(&self) -> Value {
        let mut ranges: Vec<Value> = Vec::new();
        let mut i = 0;
        while i < self.pages {
            if !self.set(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < self.pages && self.set(i) {
                i += 1;
            }
            let first = self.iova + start * self.page_size;
            ranges.push(json!([first, self.iova + i * self.page_size - 1]));
        }
        let count: u32 = self.words.iter().map(|w| w.count_ones()).sum();
        let mut hex = String::new();
        for w in self.words.iter().rev().skip_while(|w| **w == 0) {
            hex += &if hex.is_empty() {
                format!("{w:x}")
            } else {
                format!("{w:016x}")
            };
        }
        if hex.is_empty() {
            hex.push('0');
        }
        json!({ "ranges": ranges, "count": count, "bitmap": format!("0x{hex}") })
    }
}

/// `hwpt.set_dirty_tracking`.
pub fn set_tracking(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut d = iofd::iommu_hwpt_set_dirty_tracking {
        size: argsz::<iofd::iommu_hwpt_set_dirty_tracking>(),
        flags: if args.bool_or("enable", true)? {
            iofd::iommufd_hwpt_set_dirty_tracking_flags_IOMMU_HWPT_DIRTY_TRACKING_ENABLE
        } else {
            0
        },
        hwpt_id: args.u32("hwpt")?,
        __reserved: 0,
    };
    io::HWPT_SET_DIRTY_TRACKING.call(ctx.fd(args, "iommufd")?, &mut d)?;
    Ok(Value::Null)
}

/// `hwpt.get_dirty_bitmap`: the dirty pages of the range, as [`Bitmap::report`].
pub fn get_bitmap(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut bitmap = Bitmap::of(args)?;
    let mut g = iofd::iommu_hwpt_get_dirty_bitmap {
        size: argsz::<iofd::iommu_hwpt_get_dirty_bitmap>(),
        hwpt_id: args.u32("hwpt")?,
        flags: if args.bool_or("no_clear", false)? {
            iofd::iommufd_hwpt_get_dirty_bitmap_flags_IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
        } else {
            0
        },
        __reserved: 0,
        iova: bitmap.iova,
        length: args.u64("length")?,
        page_size: bitmap.page_size,
        data: bitmap.words.as_mut_ptr() as u64,
    };
    io::HWPT_GET_DIRTY_BITMAP.call(ctx.fd(args, "iommufd")?, &mut g)?;
    Ok(bitmap.report())
}

/// `mock.dirty`: marks the mock domain's pages that meet `ranges` dirty;
/// yields how many the mock marked.
pub fn mock_dirty(ctx: &mut Ctx, args: &Args) -> OpResult {
    let mut bitmap = Bitmap::of(args)?;
    bitmap.mark(&ranges(args, "ranges")?);
    let mut d = selftest::Dirty {
        iova: bitmap.iova,
        length: args.u64("length")?,
        page_size: bitmap.page_size,
        uptr: bitmap.words.as_ptr() as u64,
        ..Default::default()
    };
    selftest::DIRTY.call(ctx.fd(args, "iommufd")?, args.u32("hwpt")?, &mut d)?;
    Ok(d.out_nr_dirty.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitmap(pages: u64) -> Bitmap {
        Bitmap {
            iova: 0x100_0000,
            page_size: 0x800,
            pages,
            words: vec![0; pages.div_ceil(64).max(1) as usize],
        }
    }

    #[test]
    fn ranges_become_bits_and_bits_become_ranges() {
        let mut b = bitmap(32);
        // Page 0, pages 4-5 (a range spilling into page 5), and page 31.
        b.mark(&[
            (0x100_0000, 0x100_07ff),
            (0x100_2000, 0x100_2800),
            (0x100_f800, 0x100_f800),
        ]);
        assert_eq!(b.words, [0x8000_0031]);
        assert_eq!(
            b.report(),
            json!({
                "ranges": [[0x100_0000, 0x100_07ff], [0x100_2000, 0x100_2fff], [0x100_f800, 0x100_ffff]],
                "count": 4,
                "bitmap": "0x80000031",
            })
        );
        assert_eq!(bitmap(8).report()["bitmap"], "0x0");
    }

    #[test]
    fn a_wide_bitmap_is_one_hex_number() {
        let mut b = bitmap(130);
        b.mark(&[
            (0x100_0000, 0x100_0000),
            (0x100_0000 + 129 * 0x800, u64::MAX),
        ]);
        assert_eq!(b.words, [1, 0, 2]);
        assert_eq!(b.report()["bitmap"], "0x200000000000000000000000000000001");
        assert_eq!(b.report()["count"], 2);
    }
}
