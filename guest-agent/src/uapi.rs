//! Raw kernel uAPI: ioctl request numbers and the structs the binding crates
//! do not carry.
//!
//! Struct layouts come from `vfio-bindings` and `iommufd-bindings` (bindgen
//! output of the kernel headers).  Those crates have no request numbers, so
//! they are built here with `libc::_IO`, which knows each architecture's
//! direction bits (on powerpc `_IO` sets bit 29; on x86 it does not).  The
//! iommufd selftest command is not uAPI proper (`iommufd_test.h`), so its
//! struct is written out here after Linux 6.12.

use std::os::fd::{AsRawFd, BorrowedFd};

pub use iommufd_bindings::iommufd as iofd;
pub use vfio_bindings::bindings::vfio;

const VFIO_TYPE: u32 = b';' as u32;
const VFIO_BASE: u32 = 100;

const fn vfio_io(n: u32) -> libc::Ioctl {
    libc::_IO(VFIO_TYPE, VFIO_BASE + n)
}

const fn iommufd_io(n: u32) -> libc::Ioctl {
    libc::_IO(VFIO_TYPE, n)
}

/// VFIO ioctls (`linux/vfio.h`).
pub mod vfio_ioctl {
    use super::vfio_io;
    #[allow(missing_docs)]
    mod numbers {
        use super::vfio_io;
        pub const CHECK_EXTENSION: libc::Ioctl = vfio_io(1);
        pub const SET_IOMMU: libc::Ioctl = vfio_io(2);
        pub const GROUP_GET_STATUS: libc::Ioctl = vfio_io(3);
        pub const GROUP_SET_CONTAINER: libc::Ioctl = vfio_io(4);
        pub const GROUP_UNSET_CONTAINER: libc::Ioctl = vfio_io(5);
        pub const GROUP_GET_DEVICE_FD: libc::Ioctl = vfio_io(6);
        pub const DEVICE_GET_INFO: libc::Ioctl = vfio_io(7);
        pub const DEVICE_GET_REGION_INFO: libc::Ioctl = vfio_io(8);
        pub const DEVICE_RESET: libc::Ioctl = vfio_io(11);
        pub const SPAPR_TCE_GET_INFO: libc::Ioctl = vfio_io(12);
        pub const MAP_DMA: libc::Ioctl = vfio_io(13);
        pub const UNMAP_DMA: libc::Ioctl = vfio_io(14);
        pub const SPAPR_REGISTER_MEMORY: libc::Ioctl = vfio_io(17);
        pub const SPAPR_UNREGISTER_MEMORY: libc::Ioctl = vfio_io(18);
        pub const SPAPR_TCE_CREATE: libc::Ioctl = vfio_io(19);
        pub const SPAPR_TCE_REMOVE: libc::Ioctl = vfio_io(20);
        pub const EEH_PE_OP: libc::Ioctl = vfio_io(21);
        pub const DEVICE_BIND_IOMMUFD: libc::Ioctl = vfio_io(18);
        pub const DEVICE_ATTACH_IOMMUFD_PT: libc::Ioctl = vfio_io(19);
        pub const DEVICE_DETACH_IOMMUFD_PT: libc::Ioctl = vfio_io(20);
    }
    pub use numbers::*;
}

/// iommufd ioctls (`linux/iommufd.h`, type `';'`, numbers from 0x80).
pub mod iommufd_ioctl {
    use super::iommufd_io;
    #[allow(missing_docs)]
    mod numbers {
        use super::iommufd_io;
        pub const DESTROY: libc::Ioctl = iommufd_io(0x80);
        pub const IOAS_ALLOC: libc::Ioctl = iommufd_io(0x81);
        pub const IOAS_ALLOW_IOVAS: libc::Ioctl = iommufd_io(0x82);
        pub const IOAS_COPY: libc::Ioctl = iommufd_io(0x83);
        pub const IOAS_IOVA_RANGES: libc::Ioctl = iommufd_io(0x84);
        pub const IOAS_MAP: libc::Ioctl = iommufd_io(0x85);
        pub const IOAS_UNMAP: libc::Ioctl = iommufd_io(0x86);
        pub const OPTION: libc::Ioctl = iommufd_io(0x87);
        pub const HWPT_ALLOC: libc::Ioctl = iommufd_io(0x89);
        pub const GET_HW_INFO: libc::Ioctl = iommufd_io(0x8a);
        /// `IOMMU_TEST_CMD` = base + 32.
        pub const TEST_CMD: libc::Ioctl = iommufd_io(0x80 + 32);
    }
    pub use numbers::*;
}

/// `iommufd_test.h` operations used by the mock-domain ops.
pub mod test_op {
    #![allow(missing_docs)]
    pub const ADD_RESERVED: u32 = 1;
    pub const MOCK_DOMAIN: u32 = 2;
    pub const MD_CHECK_MAP: u32 = 3;
    pub const CREATE_ACCESS: u32 = 5;
    pub const ACCESS_PAGES: u32 = 7;
    pub const ACCESS_RW: u32 = 8;
    pub const MOCK_DOMAIN_REPLACE: u32 = 10;
    pub const ACCESS_RW_WRITE: u32 = 1;
    pub const ACCESS_CREATE_NEEDS_PIN_PAGES: u32 = 1;
    pub const ACCESS_WRITE: u32 = 1;
}

/// `struct iommu_test_cmd` of Linux 6.12: a header, a 48-byte union (its
/// largest member, `dirty`, is 48 bytes), and `last`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuTestCmd {
    /// `sizeof(struct iommu_test_cmd)`.
    pub size: u32,
    /// `IOMMU_TEST_OP_*`.
    pub op: u32,
    /// Object the op applies to.
    pub id: u32,
    /// Must be zero.
    pub reserved: u32,
    /// The op's arguments, as little-endian-free native words.
    pub u: [u64; 6],
    /// Marks the end of the required size.
    pub last: u32,
    /// Padding to 8-byte alignment.
    pub pad: u32,
}

impl IommuTestCmd {
    /// A command with `size` filled in.
    pub fn new(op: u32, id: u32) -> Self {
        Self {
            size: std::mem::size_of::<Self>() as u32,
            op,
            id,
            ..Self::default()
        }
    }

    /// The `n`th 32-bit word of the union (native order, as the C struct lays it out).
    pub fn word(&self, n: usize) -> u32 {
        let w = self.u[n / 2];
        let bytes = w.to_ne_bytes();
        let half = if n % 2 == 0 { &bytes[..4] } else { &bytes[4..] };
        u32::from_ne_bytes([half[0], half[1], half[2], half[3]])
    }

    /// Sets the `n`th 32-bit word of the union.
    pub fn set_word(&mut self, n: usize, v: u32) {
        let mut bytes = self.u[n / 2].to_ne_bytes();
        let at = if n % 2 == 0 { 0 } else { 4 };
        bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self.u[n / 2] = u64::from_ne_bytes(bytes);
    }
}

/// An ioctl's failure: the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's current errno.
    pub fn last() -> Errno {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }
}

/// `ioctl(fd, req, arg)` with a pointer argument; returns the (non-negative) result.
pub fn ioctl_ptr<T>(fd: BorrowedFd<'_>, req: libc::Ioctl, arg: &mut T) -> Result<i32, Errno> {
    // SAFETY: `arg` is a live, exclusively borrowed value of the type the
    // request expects (each caller pairs a request with its uAPI struct); the
    // kernel reads and writes at most `argsz`/`size` bytes of it.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

/// `ioctl(fd, req, value)` with an integer argument.
pub fn ioctl_val(fd: BorrowedFd<'_>, req: libc::Ioctl, value: libc::c_ulong) -> Result<i32, Errno> {
    // SAFETY: the request takes an integer argument, no memory is passed.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, value) };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

/// `argsz` for a struct.
pub fn argsz<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_headers() {
        // _IO(';', 100 + 19): on x86 no direction bits; on powerpc _IOC_NONE is bit 29.
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(vfio_ioctl::SPAPR_TCE_CREATE, 0x3b77);
            assert_eq!(iommufd_ioctl::IOAS_MAP, 0x3b85);
            assert_eq!(iommufd_ioctl::TEST_CMD, 0x3ba0);
        }
        #[cfg(target_arch = "powerpc64")]
        assert_eq!(vfio_ioctl::SPAPR_TCE_CREATE as u64, 0x2000_3b77);
    }

    #[test]
    fn test_cmd_has_the_6_12_layout() {
        assert_eq!(std::mem::size_of::<IommuTestCmd>(), 72);
        assert_eq!(std::mem::offset_of!(IommuTestCmd, last), 64);
        let mut c = IommuTestCmd::new(test_op::MOCK_DOMAIN, 1);
        c.set_word(1, 7);
        c.set_word(2, 9);
        assert_eq!((c.word(0), c.word(1), c.word(2)), (0, 7, 9));
    }
}
