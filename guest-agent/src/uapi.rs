//! The kernel's ioctl interface as the agent uses it: one table of
//! requests, each bound to the type of its argument, and the one place that
//! calls `ioctl(2)`.
//!
//! A request is an [`Ioctl<T>`] (its argument is a `T` the kernel reads and
//! writes through a pointer), an [`IoctlVal`] (its argument is an integer),
//! or an `Ioctl<CStr>` (a NUL-terminated name; the result is a new
//! descriptor).  Only this module makes requests, so the compiler rejects a
//! wrong struct for a request: `vfio_ioctl::MAP_DMA.call(fd, &mut unmap)`
//! does not build.
//!
//! Struct layouts come from `vfio-bindings` and `iommufd-bindings` (bindgen
//! output of the kernel headers).  Those crates have no request numbers, so
//! they are built here with `libc::_IO`, which knows each architecture's
//! direction bits (on powerpc `_IO` sets bit 29; on x86 it does not).  The
//! iommufd selftest command is not uAPI proper (`iommufd_test.h`), so its
//! struct is written out here after Linux 6.12.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

/// A request whose argument is a pointer to an `A`.
pub struct Ioctl<A: ?Sized> {
    nr: libc::Ioctl,
    arg: PhantomData<fn(&mut A)>,
}

impl<A: ?Sized> Ioctl<A> {
    /// Binds request `nr` to its argument type.  Private: the tables below
    /// are the only places that say which struct a request takes.
    const fn new(nr: libc::Ioctl) -> Self {
        Self {
            nr,
            arg: PhantomData,
        }
    }

    /// The request number.
    #[cfg(test)]
    pub const fn nr(&self) -> libc::Ioctl {
        self.nr
    }
}

impl<T> Ioctl<T> {
    /// `ioctl(fd, request, arg)`: the kernel reads and writes `*arg`; yields
    /// the (non-negative) result.
    pub fn call(&self, fd: BorrowedFd<'_>, arg: &mut T) -> Result<i32, Errno> {
        raw(fd, self.nr, Arg::Ptr((arg as *mut T).cast()))
    }
}

impl Ioctl<CStr> {
    /// `ioctl(fd, request, name)` for a request that returns a new descriptor.
    pub fn call(&self, fd: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
        let r = raw(fd, self.nr, Arg::Ptr(name.as_ptr().cast_mut().cast()))?;
        // SAFETY: requests of this kind return a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(r) })
    }
}

/// A request whose argument is an integer passed by value.
pub struct IoctlVal {
    nr: libc::Ioctl,
}

impl IoctlVal {
    /// Private, as [`Ioctl::new`].
    const fn new(nr: libc::Ioctl) -> Self {
        Self { nr }
    }

    /// `ioctl(fd, request, value)`; yields the (non-negative) result.
    pub fn call(&self, fd: BorrowedFd<'_>, value: libc::c_ulong) -> Result<i32, Errno> {
        raw(fd, self.nr, Arg::Val(value))
    }
}

/// An ioctl argument as `ioctl(2)` receives it.
enum Arg {
    Ptr(*mut libc::c_void),
    Val(libc::c_ulong),
}

/// The one call of `ioctl(2)`.
fn raw(fd: BorrowedFd<'_>, nr: libc::Ioctl, arg: Arg) -> Result<i32, Errno> {
    let fd = fd.as_raw_fd();
    // SAFETY: `raw` is private and reached only through the typed requests
    // above, whose numbers this module's tables bind to their argument: a
    // pointer argument is a live, exclusively borrowed value of the type the
    // request takes (the kernel reads and writes at most its `argsz`/`size`
    // bytes) or a NUL-terminated `CStr` the kernel only reads; an integer
    // argument passes no memory.  User addresses *inside* a struct (buffers
    // to map, range arrays, hw_info data) are not checked by the type, as in
    // rust-vmm's vfio-ioctls: the operations fill them only from their own
    // buffers and arrays, which outlive the call.
    let r = unsafe {
        match arg {
            Arg::Ptr(p) => libc::ioctl(fd, nr, p),
            Arg::Val(v) => libc::ioctl(fd, nr, v),
        }
    };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

/// VFIO requests (`linux/vfio.h`, type `';'`, numbers from 100), each
/// named as the kernel's `VFIO_*` macro without the prefix.
#[allow(missing_docs)]
pub mod vfio_ioctl {
    use std::ffi::CStr;

    use super::vfio::*;
    use super::{Ioctl, IoctlVal, vfio_io};

    pub const CHECK_EXTENSION: IoctlVal = IoctlVal::new(vfio_io(1));
    pub const SET_IOMMU: IoctlVal = IoctlVal::new(vfio_io(2));
    pub const GROUP_GET_STATUS: Ioctl<vfio_group_status> = Ioctl::new(vfio_io(3));
    /// Takes a pointer to the container's descriptor.
    pub const GROUP_SET_CONTAINER: Ioctl<libc::c_int> = Ioctl::new(vfio_io(4));
    pub const GROUP_UNSET_CONTAINER: IoctlVal = IoctlVal::new(vfio_io(5));
    pub const GROUP_GET_DEVICE_FD: Ioctl<CStr> = Ioctl::new(vfio_io(6));
    pub const DEVICE_GET_INFO: Ioctl<vfio_device_info> = Ioctl::new(vfio_io(7));
    pub const DEVICE_GET_REGION_INFO: Ioctl<vfio_region_info> = Ioctl::new(vfio_io(8));
    pub const DEVICE_RESET: IoctlVal = IoctlVal::new(vfio_io(11));
    pub const SPAPR_TCE_GET_INFO: Ioctl<vfio_iommu_spapr_tce_info> = Ioctl::new(vfio_io(12));
    /// Type1 and sPAPR TCE v2 share the struct.
    pub const MAP_DMA: Ioctl<vfio_iommu_type1_dma_map> = Ioctl::new(vfio_io(13));
    pub const UNMAP_DMA: Ioctl<vfio_iommu_type1_dma_unmap> = Ioctl::new(vfio_io(14));
    pub const SPAPR_REGISTER_MEMORY: Ioctl<vfio_iommu_spapr_register_memory> =
        Ioctl::new(vfio_io(17));
    pub const SPAPR_UNREGISTER_MEMORY: Ioctl<vfio_iommu_spapr_register_memory> =
        Ioctl::new(vfio_io(18));
    pub const SPAPR_TCE_CREATE: Ioctl<vfio_iommu_spapr_tce_create> = Ioctl::new(vfio_io(19));
    pub const SPAPR_TCE_REMOVE: Ioctl<vfio_iommu_spapr_tce_remove> = Ioctl::new(vfio_io(20));
    pub const EEH_PE_OP: Ioctl<vfio_eeh_pe_op> = Ioctl::new(vfio_io(21));
    /// Same number as `SPAPR_UNREGISTER_MEMORY`, on a device fd.
    pub const DEVICE_BIND_IOMMUFD: Ioctl<vfio_device_bind_iommufd> = Ioctl::new(vfio_io(18));
    pub const DEVICE_ATTACH_IOMMUFD_PT: Ioctl<vfio_device_attach_iommufd_pt> =
        Ioctl::new(vfio_io(19));
    pub const DEVICE_DETACH_IOMMUFD_PT: Ioctl<vfio_device_detach_iommufd_pt> =
        Ioctl::new(vfio_io(20));
}

/// iommufd requests (`linux/iommufd.h`, type `';'`, numbers from 0x80),
/// each named as the kernel's `IOMMU_*` macro without the prefix.
#[allow(missing_docs)]
pub mod iommufd_ioctl {
    use super::iofd::*;
    use super::{Ioctl, IommuTestCmd, iommufd_io};

    pub const DESTROY: Ioctl<iommu_destroy> = Ioctl::new(iommufd_io(0x80));
    pub const IOAS_ALLOC: Ioctl<iommu_ioas_alloc> = Ioctl::new(iommufd_io(0x81));
    pub const IOAS_ALLOW_IOVAS: Ioctl<iommu_ioas_allow_iovas> = Ioctl::new(iommufd_io(0x82));
    pub const IOAS_COPY: Ioctl<iommu_ioas_copy> = Ioctl::new(iommufd_io(0x83));
    pub const IOAS_IOVA_RANGES: Ioctl<iommu_ioas_iova_ranges> = Ioctl::new(iommufd_io(0x84));
    pub const IOAS_MAP: Ioctl<iommu_ioas_map> = Ioctl::new(iommufd_io(0x85));
    pub const IOAS_UNMAP: Ioctl<iommu_ioas_unmap> = Ioctl::new(iommufd_io(0x86));
    pub const OPTION: Ioctl<iommu_option> = Ioctl::new(iommufd_io(0x87));
    /// Get, set or clear the IOAS of the VFIO-compatible container (the
    /// type1 ioctls on the iommufd fd use it).
    pub const VFIO_IOAS: Ioctl<iommu_vfio_ioas> = Ioctl::new(iommufd_io(0x88));
    pub const HWPT_ALLOC: Ioctl<iommu_hwpt_alloc> = Ioctl::new(iommufd_io(0x89));
    pub const GET_HW_INFO: Ioctl<iommu_hw_info> = Ioctl::new(iommufd_io(0x8a));
    /// `IOMMU_TEST_CMD` = base + 32.
    pub const TEST_CMD: Ioctl<IommuTestCmd> = Ioctl::new(iommufd_io(0x80 + 32));
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
            assert_eq!(vfio_ioctl::SPAPR_TCE_CREATE.nr(), 0x3b77);
            assert_eq!(iommufd_ioctl::IOAS_MAP.nr(), 0x3b85);
            assert_eq!(iommufd_ioctl::TEST_CMD.nr(), 0x3ba0);
            assert_eq!(iommufd_ioctl::VFIO_IOAS.nr(), 0x3b88);
        }
        #[cfg(target_arch = "powerpc64")]
        assert_eq!(vfio_ioctl::SPAPR_TCE_CREATE.nr() as u64, 0x2000_3b77);
    }

    #[test]
    fn one_number_two_requests() {
        // The number alone does not say which struct the kernel expects: the
        // fd does.  The types keep the two apart.
        assert_eq!(
            vfio_ioctl::SPAPR_UNREGISTER_MEMORY.nr(),
            vfio_ioctl::DEVICE_BIND_IOMMUFD.nr()
        );
    }

    #[test]
    fn every_kind_of_request_reports_the_kernels_errno() {
        use std::os::fd::AsFd;
        let null = std::fs::File::open("/dev/null").unwrap();
        let fd = null.as_fd();
        let mut info = vfio::vfio_device_info {
            argsz: argsz::<vfio::vfio_device_info>(),
            ..Default::default()
        };
        let enotty = Errno(libc::ENOTTY);
        assert_eq!(vfio_ioctl::DEVICE_GET_INFO.call(fd, &mut info), Err(enotty));
        assert_eq!(vfio_ioctl::DEVICE_RESET.call(fd, 0), Err(enotty));
        let name = c"0000:00:00.0";
        assert_eq!(
            vfio_ioctl::GROUP_GET_DEVICE_FD.call(fd, name).err(),
            Some(enotty)
        );
    }

    #[test]
    fn vfio_ioas_has_the_uapi_layout() {
        // struct iommu_vfio_ioas { __u32 size; __u32 ioas_id; __u16 op; __u16 __reserved; }
        assert_eq!(std::mem::size_of::<iofd::iommu_vfio_ioas>(), 12);
        assert_eq!(std::mem::offset_of!(iofd::iommu_vfio_ioas, op), 8);
        assert_eq!(iofd::iommufd_vfio_ioas_op_IOMMU_VFIO_IOAS_CLEAR, 2);
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
