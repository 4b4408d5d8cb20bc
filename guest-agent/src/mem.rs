//! Memory buffers that scenarios map for DMA: page-aligned anonymous (or
//! hugetlb) mappings, filled and checked with byte patterns.

use iobench_proto::ops::Pattern;

/// A private anonymous mapping, unmapped on drop.
pub struct Buffer {
    ptr: *mut u8,
    len: usize,
}

impl Buffer {
    /// Maps `len` bytes (rounded up to the page), touching every page so it is backed.
    pub fn new(len: usize, hugetlb: bool) -> Result<Buffer, String> {
        if len == 0 {
            return Err("a buffer needs a size".into());
        }
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | libc::MAP_POPULATE
            | if hugetlb { libc::MAP_HUGETLB } else { 0 };
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            let hint = if hugetlb {
                " (are huge pages reserved? see /proc/sys/vm/nr_hugepages)"
            } else {
                ""
            };
            return Err(format!("mmap of {len:#x} bytes: {e}{hint}"));
        }
        Ok(Buffer { ptr: p.cast(), len })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The user virtual address of byte `offset`.
    pub fn addr(&self, offset: u64) -> u64 {
        self.ptr as u64 + offset
    }

    fn at(&self, i: u64) -> *mut u8 {
        debug_assert!(i < self.len as u64);
        // SAFETY: callers pass offsets inside the mapping (range-checked by the scenario engine).
        unsafe { self.ptr.add(i as usize) }
    }

    /// Writes the pattern over `offset..offset+length` (pattern positions count from `offset`).
    pub fn fill(&self, pattern: Pattern, offset: u64, length: u64) {
        for i in offset..offset + length {
            // SAFETY: in-range byte of our own read-write mapping.
            unsafe { std::ptr::write_volatile(self.at(i), pattern.byte_at(i - offset)) };
        }
    }

    fn get(&self, i: u64) -> u8 {
        // SAFETY: in-range byte of our own mapping.  Volatile: a device may
        // have written it by DMA behind the compiler's back.
        unsafe { std::ptr::read_volatile(self.at(i)) }
    }

    /// Checks the range holds the pattern; the error names the first bad byte.
    pub fn check(&self, pattern: Pattern, offset: u64, length: u64) -> Result<(), String> {
        let range = offset..offset + length;
        let Some(first) = range
            .clone()
            .find(|&i| self.get(i) != pattern.byte_at(i - offset))
        else {
            return Ok(());
        };
        let bad = range
            .filter(|&i| self.get(i) != pattern.byte_at(i - offset))
            .count();
        Err(format!(
            "byte {first:#x} is {:#04x}, expected {:#04x} ({bad} of {length} bytes differ)",
            self.get(first),
            pattern.byte_at(first)
        ))
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in new().
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
