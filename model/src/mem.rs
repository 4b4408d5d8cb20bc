//! The scenario's buffers (`mem.alloc`): their sizes, whether hugetlb backs
//! them, and their user addresses.  Addresses matter to the kernel (sPAPR
//! wants user addresses aligned to the IOMMU page, iommufd derives the
//! automatic IOVA's alignment from them), but the agent picks them at run
//! time; the model starts with made-up ones, aligned to 4 GiB, and a
//! fuzzer replaying a run sets the real ones (`mem.alloc` yields `addr`)
//! with [`Memory::set_addr`] right after the allocation, before the buffer
//! is used.

use crate::error::ModelError;

/// A buffer, by allocation order (the first `mem.alloc` is 0).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct BufferId(pub usize);

impl BufferId {
    /// The name a scenario binds it to (`buf0`, `buf1`, …).
    pub fn name(self) -> String {
        format!("buf{}", self.0)
    }
}

/// One buffer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Buffer {
    /// Its size in bytes.
    pub size: u64,
    /// Whether hugetlb pages back it.
    pub hugetlb: bool,
    /// Its user address.
    pub addr: u64,
}

/// A range of a buffer, as the agent's `buffer`/`offset`/`length`
/// arguments give it (no length: to the end of the buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BufferRange {
    /// The buffer.
    pub buffer: BufferId,
    /// Offset of the range in the buffer.
    pub offset: u64,
    /// Its length (`None`: the rest of the buffer).
    pub length: Option<u64>,
}

impl BufferRange {
    /// The whole buffer.
    pub fn whole(buffer: BufferId) -> BufferRange {
        BufferRange {
            buffer,
            offset: 0,
            length: None,
        }
    }

    /// `length` bytes from `offset`.
    pub fn part(buffer: BufferId, offset: u64, length: u64) -> BufferRange {
        BufferRange {
            buffer,
            offset,
            length: Some(length),
        }
    }
}

/// Where made-up addresses start.
const SYNTHETIC_BASE: u64 = 1 << 40;
/// Made-up addresses are multiples of this.
const SYNTHETIC_ALIGN: u64 = 1 << 32;

/// All buffers of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Memory {
    buffers: Vec<Buffer>,
}

impl Memory {
    /// No buffers.
    pub fn new() -> Memory {
        Memory::default()
    }

    /// Adds a buffer at a made-up address (4 GiB aligned, after the others).
    pub fn alloc(&mut self, size: u64, hugetlb: bool) -> BufferId {
        let end = self
            .buffers
            .iter()
            .map(|b| b.addr.saturating_add(b.size))
            .max()
            .unwrap_or(SYNTHETIC_BASE);
        let addr = end
            .div_ceil(SYNTHETIC_ALIGN)
            .saturating_mul(SYNTHETIC_ALIGN);
        self.buffers.push(Buffer {
            size,
            hugetlb,
            addr,
        });
        BufferId(self.buffers.len() - 1)
    }

    /// Sets a buffer's real address (what `mem.alloc` yielded).
    pub fn set_addr(&mut self, id: BufferId, addr: u64) -> Result<(), ModelError> {
        let b = self
            .buffers
            .get_mut(id.0)
            .ok_or(ModelError::UnknownBuffer(id.0))?;
        b.addr = addr;
        Ok(())
    }

    /// A buffer.
    pub fn get(&self, id: BufferId) -> Result<&Buffer, ModelError> {
        self.buffers
            .get(id.0)
            .ok_or(ModelError::UnknownBuffer(id.0))
    }

    /// Every buffer with its id.
    pub fn iter(&self) -> impl Iterator<Item = (BufferId, &Buffer)> {
        self.buffers
            .iter()
            .enumerate()
            .map(|(i, b)| (BufferId(i), b))
    }

    /// How many buffers there are.
    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// The user address and length of a range, checked as the agent does
    /// (`Ctx::buffer_range`).
    pub fn resolve(&self, r: &BufferRange) -> Result<(u64, u64), ModelError> {
        let b = self.get(r.buffer)?;
        let length = r.length.unwrap_or(b.size.saturating_sub(r.offset));
        if r.offset.checked_add(length).is_none_or(|end| end > b.size) {
            return Err(ModelError::RangeOutsideBuffer {
                buffer: r.buffer.0,
                offset: r.offset,
                length,
                size: b.size,
            });
        }
        Ok((b.addr + r.offset, length))
    }

    /// The buffer and offset a user address falls in.
    pub fn locate(&self, ua: u64) -> Option<(BufferId, u64)> {
        self.iter()
            .find(|(_, b)| ua >= b.addr && ua - b.addr < b.size)
            .map(|(id, b)| (id, ua - b.addr))
    }

    /// The page size backing a buffer: the hugetlb page for hugetlb
    /// buffers, else the kernel's PAGE_SIZE.
    pub fn backing_page(&self, id: BufferId, page_size: u64, huge_page_size: u64) -> u64 {
        match self.buffers.get(id.0) {
            Some(b) if b.hugetlb => huge_page_size,
            _ => page_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BufferId, BufferRange, Memory};
    use crate::error::ModelError;

    #[test]
    fn ranges_resolve_like_the_agent_and_addresses_locate() {
        let mut m = Memory::new();
        let a = m.alloc(0x10000, false);
        let b = m.alloc(0x10000, false);
        assert_eq!(m.get(a).unwrap().addr % (1 << 32), 0);
        assert!(m.get(b).unwrap().addr > m.get(a).unwrap().addr);
        let (ua, len) = m.resolve(&BufferRange::whole(a)).unwrap();
        assert_eq!(len, 0x10000);
        assert_eq!(m.locate(ua + 0x20), Some((a, 0x20)));
        assert_eq!(
            m.resolve(&BufferRange::part(b, 0x8000, 0x1000)).unwrap().1,
            0x1000
        );
        assert!(matches!(
            m.resolve(&BufferRange::part(b, 0x8000, 0x9000)),
            Err(ModelError::RangeOutsideBuffer { .. })
        ));
        m.set_addr(a, 0x7fff_0001_0000).unwrap();
        assert_eq!(m.locate(0x7fff_0001_0010), Some((a, 0x10)));
        assert_eq!(m.get(BufferId(7)), Err(ModelError::UnknownBuffer(7)));
    }
}
