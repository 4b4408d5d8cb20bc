//! Memory buffers that scenarios map for DMA: page-aligned anonymous (or
//! hugetlb) mappings, or shared mappings of a memfd (whose file
//! `IOMMU_IOAS_MAP_FILE` maps), filled and checked with byte patterns.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use iobench_proto::ops::Pattern;

/// A private anonymous mapping, or a shared mapping of a memfd; unmapped on drop.
pub struct Buffer {
    ptr: *mut u8,
    len: usize,
    /// The memfd behind a shared mapping.
    file: Option<OwnedFd>,
}

impl Buffer {
    /// Maps `len` bytes (rounded up to the page), touching every page so it is backed.
    pub fn new(len: usize, hugetlb: bool) -> Result<Buffer, String> {
        Self::map(len, hugetlb, None)
    }

    /// A memfd of `len` bytes, mapped shared (and touched) like [`Buffer::new`].
    pub fn memfd(len: usize, hugetlb: bool) -> Result<Buffer, String> {
        let flags = libc::MFD_CLOEXEC | if hugetlb { libc::MFD_HUGETLB } else { 0 };
        // SAFETY: a NUL-terminated name; the result is a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"iobench".as_ptr(), flags) };
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: memfd_create returned a descriptor nothing else owns.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = libc::off_t::try_from(len).map_err(|_| format!("{len:#x} bytes"))?;
        // SAFETY: plain syscall on our own descriptor.
        if unsafe { libc::ftruncate(file.as_raw_fd(), size) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("ftruncate of the memfd to {len:#x} bytes: {e}"));
        }
        Self::map(len, hugetlb, Some(file))
    }

    fn map(len: usize, hugetlb: bool, file: Option<OwnedFd>) -> Result<Buffer, String> {
        if len == 0 {
            return Err("a buffer needs a size".into());
        }
        let kind = match file {
            Some(_) => libc::MAP_SHARED,
            None => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        };
        let flags = kind | libc::MAP_POPULATE | if hugetlb { libc::MAP_HUGETLB } else { 0 };
        let fd = file.as_ref().map_or(-1, |f| f.as_raw_fd());
        // SAFETY: a fresh mapping (anonymous, or of our own memfd); no
        // existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
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
        Ok(Buffer {
            ptr: p.cast(),
            len,
            file,
        })
    }

    /// The memfd behind the buffer, if it is one.
    pub fn file(&self) -> Option<BorrowedFd<'_>> {
        self.file.as_ref().map(|f| f.as_fd())
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
