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
//! structs are written out here ([`IommuTestCmd`], [`selftest`]) after
//! Linux 7.2 (the command's layout is 6.12's); the tests compare every one
//! of them, the bindings' structs the operations use, and every request
//! number with the 7.2 headers' text (the test-only `header` reads them).

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
    pub const DEVICE_SET_IRQS: Ioctl<super::IrqSetEventfd> = Ioctl::new(vfio_io(10));
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
    pub const HWPT_SET_DIRTY_TRACKING: Ioctl<iommu_hwpt_set_dirty_tracking> =
        Ioctl::new(iommufd_io(0x8b));
    pub const HWPT_GET_DIRTY_BITMAP: Ioctl<iommu_hwpt_get_dirty_bitmap> =
        Ioctl::new(iommufd_io(0x8c));
    /// On a nested HWPT or a vIOMMU.
    pub const HWPT_INVALIDATE: Ioctl<iommu_hwpt_invalidate> = Ioctl::new(iommufd_io(0x8d));
    pub const FAULT_QUEUE_ALLOC: Ioctl<iommu_fault_alloc> = Ioctl::new(iommufd_io(0x8e));
    /// Not in Linux 6.12 from here on (it answers ENOTTY).
    pub const IOAS_MAP_FILE: Ioctl<iommu_ioas_map_file> = Ioctl::new(iommufd_io(0x8f));
    pub const VIOMMU_ALLOC: Ioctl<iommu_viommu_alloc> = Ioctl::new(iommufd_io(0x90));
    pub const VDEVICE_ALLOC: Ioctl<iommu_vdevice_alloc> = Ioctl::new(iommufd_io(0x91));
    pub const IOAS_CHANGE_PROCESS: Ioctl<iommu_ioas_change_process> = Ioctl::new(iommufd_io(0x92));
    pub const VEVENTQ_ALLOC: Ioctl<iommu_veventq_alloc> = Ioctl::new(iommufd_io(0x93));
    pub const HW_QUEUE_ALLOC: Ioctl<iommu_hw_queue_alloc> = Ioctl::new(iommufd_io(0x94));
    /// `IOMMU_TEST_CMD` = base + 32.
    pub const TEST_CMD: Ioctl<IommuTestCmd> = Ioctl::new(iommufd_io(0x80 + 32));
}

/// `struct vfio_irq_set` with one eventfd in its flexible `data` array:
/// what `VFIO_DEVICE_SET_IRQS` takes to trigger an eventfd on one vector
/// (`VFIO_IRQ_SET_DATA_EVENTFD`, `count` = 1).
#[repr(C)]
#[derive(Debug, Default)]
pub struct IrqSetEventfd {
    /// The header; `argsz` covers the eventfd too.
    pub set: vfio::vfio_irq_set,
    /// The eventfd (-1 stops triggering one).
    pub fd: i32,
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
    pub const MOCK_DOMAIN_FLAGS: u32 = 12;
    pub const DIRTY: u32 = 13;
    pub const MD_CHECK_IOTLB: u32 = 14;
    pub const TRIGGER_IOPF: u32 = 15;
    /// Not in Linux 6.12 from here on (it answers EOPNOTSUPP).
    pub const DEV_CHECK_CACHE: u32 = 16;
    pub const TRIGGER_VEVENT: u32 = 17;
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

/// The size of `iommu_test_cmd`'s union.
const TEST_UNION_SIZE: usize = std::mem::size_of::<[u64; 6]>();

/// A member of `iommu_test_cmd`'s union ([`selftest`]'s payload structs).
///
/// # Safety
///
/// Implementors are `repr(C)` structs of integer fields only, so every bit
/// pattern is a valid value, at most [`TEST_UNION_SIZE`] bytes and aligned
/// to at most 8.
pub unsafe trait TestPayload: Copy + Default {}

/// An `IOMMU_TEST_CMD` operation bound to the union member it reads and
/// writes, as [`Ioctl`] binds a request to its struct: a wrong payload for
/// an op does not compile.
pub struct TestOp<P> {
    op: u32,
    payload: PhantomData<fn(&mut P)>,
}

impl<P: TestPayload> TestOp<P> {
    /// Binds op number `op` to its payload (private, as [`Ioctl::new`]).
    const fn new(op: u32) -> Self {
        assert!(std::mem::size_of::<P>() <= TEST_UNION_SIZE && std::mem::align_of::<P>() <= 8);
        Self {
            op,
            payload: PhantomData,
        }
    }

    /// The op number.
    #[cfg(test)]
    pub const fn op(&self) -> u32 {
        self.op
    }

    /// `IOMMU_TEST_CMD` with this op on object `id`: the kernel reads
    /// `payload` and writes its outputs back into it.
    pub fn call(&self, fd: BorrowedFd<'_>, id: u32, payload: &mut P) -> Result<(), Errno> {
        let mut cmd = IommuTestCmd::new(self.op, id);
        // SAFETY: `P` is at most the union's size and aligned to at most 8
        // (`new` asserts it); both are live, distinct values.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (payload as *const P).cast::<u8>(),
                cmd.u.as_mut_ptr().cast::<u8>(),
                std::mem::size_of::<P>(),
            );
        }
        iommufd_ioctl::TEST_CMD.call(fd, &mut cmd)?;
        // SAFETY: as above, and every bit pattern is a valid `P` (`TestPayload`).
        *payload = unsafe { std::ptr::read(cmd.u.as_ptr().cast::<P>()) };
        Ok(())
    }
}

/// The rest of `iommufd_test.h` the operations use: the union members of
/// the newer test ops, each bound to its op; the selftest driver's data for
/// HWPT allocation, invalidation, vIOMMUs and vEVENTs; and its type numbers
/// and defaults.  Field names are the header's.
#[allow(missing_docs)]
pub mod selftest {
    use super::{TestOp, TestPayload, test_op};

    /// `IOMMU_HWPT_DATA_SELFTEST`: `hwpt_alloc` data is a [`HwptSelftest`].
    pub const HWPT_DATA_SELFTEST: u32 = 0xdead;
    /// `IOMMU_HWPT_INVALIDATE_DATA_SELFTEST`: entries are [`HwptInvalidateSelftest`].
    pub const HWPT_INVALIDATE_DATA_SELFTEST: u32 = 0xdead_beef;
    /// `IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID`: a type the mock refuses.
    pub const HWPT_INVALIDATE_DATA_SELFTEST_INVALID: u32 = 0xdad_beef;
    /// `IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST`: entries are [`ViommuInvalidateSelftest`].
    pub const VIOMMU_INVALIDATE_DATA_SELFTEST: u32 = 0xdead_beef;
    pub const VIOMMU_TYPE_SELFTEST: u32 = 0xdead_beef;
    pub const VEVENTQ_TYPE_SELFTEST: u32 = 0xbeef_beef;
    pub const HW_QUEUE_TYPE_SELFTEST: u32 = 0xdead_beef;
    /// `IOMMU_TEST_IOTLB_DEFAULT`: a mock nested domain's IOTLB entries before invalidation.
    pub const TEST_IOTLB_DEFAULT: u32 = 0xbad_beef;
    /// `IOMMU_TEST_INVALIDATE_FLAG_ALL`: invalidate every entry, ignore the id.
    pub const TEST_INVALIDATE_FLAG_ALL: u32 = 1;
    /// `MOCK_FLAGS_DEVICE_NO_DIRTY`: a mock device without dirty tracking.
    pub const MOCK_FLAGS_DEVICE_NO_DIRTY: u32 = 1;

    /// `struct iommu_hwpt_selftest` (7.2; 6.12 has only `iotlb` and
    /// accepts the zero tail).
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct HwptSelftest {
        pub iotlb: u32,
        pub pagetable_type: u32,
    }

    /// `struct iommu_hwpt_invalidate_selftest`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct HwptInvalidateSelftest {
        pub flags: u32,
        pub iotlb_id: u32,
    }

    /// `struct iommu_viommu_invalidate_selftest`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct ViommuInvalidateSelftest {
        pub flags: u32,
        pub vdev_id: u32,
        pub cache_id: u32,
    }

    /// `struct iommu_viommu_selftest`: `out_data` echoes `in_data`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct ViommuSelftest {
        pub in_data: u32,
        pub out_data: u32,
        pub out_mmap_offset: u64,
        pub out_mmap_length: u64,
    }

    /// `struct iommu_viommu_event_selftest`: the data after a vEVENT header.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct ViommuEventSelftest {
        pub virt_id: u32,
    }

    /// `iommu_test_cmd.mock_domain_flags`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct MockDomainFlags {
        pub out_stdev_id: u32,
        pub out_hwpt_id: u32,
        pub out_idev_id: u32,
        pub dev_flags: u32,
    }

    /// `iommu_test_cmd.dirty`: marks the pages of `uptr`'s bitmap dirty.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct Dirty {
        pub flags: u32,
        /// C's implicit padding, written out so it is zero.
        pub pad: u32,
        pub iova: u64,
        pub length: u64,
        pub page_size: u64,
        pub uptr: u64,
        pub out_nr_dirty: u64,
    }

    /// `iommu_test_cmd.check_iotlb`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct CheckIotlb {
        pub id: u32,
        pub iotlb: u32,
    }

    /// `iommu_test_cmd.trigger_iopf`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct TriggerIopf {
        pub dev_id: u32,
        pub pasid: u32,
        pub grpid: u32,
        pub perm: u32,
        pub addr: u64,
    }

    /// `iommu_test_cmd.check_dev_cache`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct CheckDevCache {
        pub id: u32,
        pub cache: u32,
    }

    /// `iommu_test_cmd.trigger_vevent`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct TriggerVevent {
        pub dev_id: u32,
    }

    // SAFETY: repr(C) structs of u32/u64 fields, at most 48 bytes.
    unsafe impl TestPayload for MockDomainFlags {}
    // SAFETY: as above.
    unsafe impl TestPayload for Dirty {}
    // SAFETY: as above.
    unsafe impl TestPayload for CheckIotlb {}
    // SAFETY: as above.
    unsafe impl TestPayload for TriggerIopf {}
    // SAFETY: as above.
    unsafe impl TestPayload for CheckDevCache {}
    // SAFETY: as above.
    unsafe impl TestPayload for TriggerVevent {}

    /// A mock device with `dev_flags`, bound and attached to `id` (an IOAS or HWPT).
    pub const MOCK_DOMAIN_FLAGS: TestOp<MockDomainFlags> = TestOp::new(test_op::MOCK_DOMAIN_FLAGS);
    /// Sets the dirty bits of the mock paging HWPT `id` for a bitmap of pages.
    pub const DIRTY: TestOp<Dirty> = TestOp::new(test_op::DIRTY);
    /// EINVAL unless the mock nested HWPT (the command's `id`) has `iotlb`
    /// in IOTLB entry `check_iotlb.id`.
    pub const MD_CHECK_IOTLB: TestOp<CheckIotlb> = TestOp::new(test_op::MD_CHECK_IOTLB);
    /// Reports a page request from a mock device (an iommufd device id).
    pub const TRIGGER_IOPF: TestOp<TriggerIopf> = TestOp::new(test_op::TRIGGER_IOPF);
    /// EINVAL unless the mock device (the command's `id`, an iommufd device)
    /// has `cache` in cache entry `check_dev_cache.id`.
    pub const DEV_CHECK_CACHE: TestOp<CheckDevCache> = TestOp::new(test_op::DEV_CHECK_CACHE);
    /// Reports a vEVENT for a mock device through its vIOMMU.
    pub const TRIGGER_VEVENT: TestOp<TriggerVevent> = TestOp::new(test_op::TRIGGER_VEVENT);
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
mod header;

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
    fn irq_set_eventfd_puts_the_fd_in_the_flexible_array() {
        // struct vfio_irq_set { __u32 argsz, flags, index, start, count; __u8 data[]; }
        assert_eq!(std::mem::size_of::<vfio::vfio_irq_set>(), 20);
        assert_eq!(std::mem::offset_of!(IrqSetEventfd, fd), 20);
        assert_eq!(std::mem::size_of::<IrqSetEventfd>(), 24);
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

    /// One Rust struct checked against a C one: the C struct (and, for a
    /// member of `iommu_test_cmd`'s union, the member), the Rust size and
    /// each field's C name, offset and size.
    struct Check {
        c: (&'static str, &'static str),
        size: usize,
        fields: Vec<(&'static str, usize, usize)>,
    }

    /// `check!(Type, "c_struct"[, "member"], { field, type_ = "type", … })`.
    macro_rules! check {
        ($t:ty, $c:literal, { $($f:ident $(= $cf:literal)?),* $(,)? }) => {
            check!($t, $c, "", { $($f $(= $cf)?),* })
        };
        ($t:ty, $c:literal, $m:literal, { $($f:ident $(= $cf:literal)?),* $(,)? }) => {{
            let v = <$t>::default();
            Check {
                c: ($c, $m),
                size: std::mem::size_of::<$t>(),
                fields: vec![$((
                    check!(@name $f $($cf)?),
                    std::mem::offset_of!($t, $f),
                    std::mem::size_of_val(&v.$f),
                )),*],
            }
        }};
        (@name $f:ident) => { stringify!($f) };
        (@name $f:ident $cf:literal) => { $cf };
    }

    /// Linux 7.2's `iommufd.h` and `iommufd_test.h`, or why the test cannot run.
    fn linux_7_2_headers() -> Option<header::Header> {
        let tree = match header::linux_tree("7.2") {
            Ok(t) => t,
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI: the layout check needs the Linux 7.2 tree: {why}"
                );
                eprintln!("skipped: the layout check needs the Linux 7.2 tree: {why}");
                return None;
            }
        };
        let read = |rel: &str| {
            std::fs::read_to_string(tree.join(rel))
                .unwrap_or_else(|e| panic!("{}: {e}", tree.join(rel).display()))
        };
        let text =
            read("include/uapi/linux/iommufd.h") + &read("drivers/iommu/iommufd/iommufd_test.h");
        Some(header::Header::parse(&text).unwrap_or_else(|e| panic!("7.2 headers: {e}")))
    }

    #[test]
    fn every_iommufd_request_matches_the_7_2_header() {
        let Some(h) = linux_7_2_headers() else { return };
        use iommufd_ioctl as io;
        let ours: [(&str, libc::Ioctl); 22] = [
            ("IOMMU_DESTROY", io::DESTROY.nr()),
            ("IOMMU_IOAS_ALLOC", io::IOAS_ALLOC.nr()),
            ("IOMMU_IOAS_ALLOW_IOVAS", io::IOAS_ALLOW_IOVAS.nr()),
            ("IOMMU_IOAS_COPY", io::IOAS_COPY.nr()),
            ("IOMMU_IOAS_IOVA_RANGES", io::IOAS_IOVA_RANGES.nr()),
            ("IOMMU_IOAS_MAP", io::IOAS_MAP.nr()),
            ("IOMMU_IOAS_UNMAP", io::IOAS_UNMAP.nr()),
            ("IOMMU_OPTION", io::OPTION.nr()),
            ("IOMMU_VFIO_IOAS", io::VFIO_IOAS.nr()),
            ("IOMMU_HWPT_ALLOC", io::HWPT_ALLOC.nr()),
            ("IOMMU_GET_HW_INFO", io::GET_HW_INFO.nr()),
            (
                "IOMMU_HWPT_SET_DIRTY_TRACKING",
                io::HWPT_SET_DIRTY_TRACKING.nr(),
            ),
            (
                "IOMMU_HWPT_GET_DIRTY_BITMAP",
                io::HWPT_GET_DIRTY_BITMAP.nr(),
            ),
            ("IOMMU_HWPT_INVALIDATE", io::HWPT_INVALIDATE.nr()),
            ("IOMMU_FAULT_QUEUE_ALLOC", io::FAULT_QUEUE_ALLOC.nr()),
            ("IOMMU_IOAS_MAP_FILE", io::IOAS_MAP_FILE.nr()),
            ("IOMMU_VIOMMU_ALLOC", io::VIOMMU_ALLOC.nr()),
            ("IOMMU_VDEVICE_ALLOC", io::VDEVICE_ALLOC.nr()),
            ("IOMMU_IOAS_CHANGE_PROCESS", io::IOAS_CHANGE_PROCESS.nr()),
            ("IOMMU_VEVENTQ_ALLOC", io::VEVENTQ_ALLOC.nr()),
            ("IOMMU_HW_QUEUE_ALLOC", io::HW_QUEUE_ALLOC.nr()),
            ("IOMMU_TEST_CMD", io::TEST_CMD.nr()),
        ];
        for (name, nr) in ours {
            let (ty, n) = *h
                .requests
                .get(name)
                .unwrap_or_else(|| panic!("{name} is not an _IO request of the 7.2 headers"));
            assert_eq!(nr, libc::_IO(ty as u32, n as u32), "{name}");
        }
        // Every command the header has, the agent has.
        let theirs: Vec<&String> = h.requests.keys().collect();
        assert_eq!(theirs.len(), ours.len(), "7.2 requests: {theirs:?}");
    }

    #[test]
    fn every_selftest_number_matches_the_7_2_header() {
        let Some(h) = linux_7_2_headers() else { return };
        let ours: &[(&str, u32)] = &[
            ("IOMMU_TEST_OP_ADD_RESERVED", test_op::ADD_RESERVED),
            ("IOMMU_TEST_OP_MOCK_DOMAIN", test_op::MOCK_DOMAIN),
            ("IOMMU_TEST_OP_MD_CHECK_MAP", test_op::MD_CHECK_MAP),
            ("IOMMU_TEST_OP_CREATE_ACCESS", test_op::CREATE_ACCESS),
            ("IOMMU_TEST_OP_ACCESS_PAGES", test_op::ACCESS_PAGES),
            ("IOMMU_TEST_OP_ACCESS_RW", test_op::ACCESS_RW),
            (
                "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE",
                test_op::MOCK_DOMAIN_REPLACE,
            ),
            (
                "IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS",
                selftest::MOCK_DOMAIN_FLAGS.op(),
            ),
            ("IOMMU_TEST_OP_DIRTY", selftest::DIRTY.op()),
            (
                "IOMMU_TEST_OP_MD_CHECK_IOTLB",
                selftest::MD_CHECK_IOTLB.op(),
            ),
            ("IOMMU_TEST_OP_TRIGGER_IOPF", selftest::TRIGGER_IOPF.op()),
            (
                "IOMMU_TEST_OP_DEV_CHECK_CACHE",
                selftest::DEV_CHECK_CACHE.op(),
            ),
            (
                "IOMMU_TEST_OP_TRIGGER_VEVENT",
                selftest::TRIGGER_VEVENT.op(),
            ),
            ("MOCK_ACCESS_RW_WRITE", test_op::ACCESS_RW_WRITE),
            (
                "MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES",
                test_op::ACCESS_CREATE_NEEDS_PIN_PAGES,
            ),
            ("MOCK_FLAGS_ACCESS_WRITE", test_op::ACCESS_WRITE),
            (
                "MOCK_FLAGS_DEVICE_NO_DIRTY",
                selftest::MOCK_FLAGS_DEVICE_NO_DIRTY,
            ),
            ("IOMMU_HWPT_DATA_SELFTEST", selftest::HWPT_DATA_SELFTEST),
            (
                "IOMMU_HWPT_INVALIDATE_DATA_SELFTEST",
                selftest::HWPT_INVALIDATE_DATA_SELFTEST,
            ),
            (
                "IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID",
                selftest::HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
            ),
            (
                "IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST",
                selftest::VIOMMU_INVALIDATE_DATA_SELFTEST,
            ),
            ("IOMMU_VIOMMU_TYPE_SELFTEST", selftest::VIOMMU_TYPE_SELFTEST),
            (
                "IOMMU_VEVENTQ_TYPE_SELFTEST",
                selftest::VEVENTQ_TYPE_SELFTEST,
            ),
            (
                "IOMMU_HW_QUEUE_TYPE_SELFTEST",
                selftest::HW_QUEUE_TYPE_SELFTEST,
            ),
            ("IOMMU_TEST_IOTLB_DEFAULT", selftest::TEST_IOTLB_DEFAULT),
            (
                "IOMMU_TEST_INVALIDATE_FLAG_ALL",
                selftest::TEST_INVALIDATE_FLAG_ALL,
            ),
        ];
        for (name, ours) in ours {
            let theirs = h
                .consts
                .get(*name)
                .unwrap_or_else(|| panic!("{name} not found"));
            assert_eq!(u64::from(*ours), *theirs, "{name}");
        }
    }

    #[test]
    fn every_struct_matches_the_7_2_header() {
        let Some(h) = linux_7_2_headers() else { return };
        use iofd::*;
        use selftest::*;
        let checks = [
            // The bindings' structs the operations use (generated from 7.1).
            check!(iommu_hwpt_alloc, "iommu_hwpt_alloc", {
                size, flags, dev_id, pt_id, out_hwpt_id, __reserved, data_type, data_len,
                data_uptr, fault_id, __reserved2,
            }),
            check!(iommu_hwpt_set_dirty_tracking, "iommu_hwpt_set_dirty_tracking", {
                size, flags, hwpt_id, __reserved,
            }),
            check!(iommu_hwpt_get_dirty_bitmap, "iommu_hwpt_get_dirty_bitmap", {
                size, hwpt_id, flags, __reserved, iova, length, page_size, data,
            }),
            check!(iommu_hwpt_invalidate, "iommu_hwpt_invalidate", {
                size, hwpt_id, data_uptr, data_type, entry_len, entry_num, __reserved,
            }),
            check!(iommu_fault_alloc, "iommu_fault_alloc", {
                size, flags, out_fault_id, out_fault_fd,
            }),
            check!(iommu_hwpt_pgfault, "iommu_hwpt_pgfault", {
                flags, dev_id, pasid, grpid, perm, __reserved, addr, length, cookie,
            }),
            check!(iommu_hwpt_page_response, "iommu_hwpt_page_response", { cookie, code }),
            check!(iommu_ioas_map_file, "iommu_ioas_map_file", {
                size, flags, ioas_id, fd, start, length, iova,
            }),
            check!(iommu_viommu_alloc, "iommu_viommu_alloc", {
                size, flags, type_ = "type", dev_id, hwpt_id, out_viommu_id, data_len,
                __reserved, data_uptr,
            }),
            check!(iommu_vdevice_alloc, "iommu_vdevice_alloc", {
                size, viommu_id, dev_id, out_vdevice_id, virt_id,
            }),
            check!(iommu_ioas_change_process, "iommu_ioas_change_process", { size, __reserved }),
            check!(iommu_veventq_alloc, "iommu_veventq_alloc", {
                size, flags, viommu_id, type_ = "type", veventq_depth, out_veventq_id,
                out_veventq_fd, __reserved,
            }),
            check!(iommufd_vevent_header, "iommufd_vevent_header", { flags, sequence }),
            check!(iommu_hw_queue_alloc, "iommu_hw_queue_alloc", {
                size, flags, viommu_id, type_ = "type", index, out_hw_queue_id,
                nesting_parent_iova, length,
            }),
            // Ours, from iommufd_test.h.
            check!(HwptSelftest, "iommu_hwpt_selftest", { iotlb, pagetable_type }),
            check!(HwptInvalidateSelftest, "iommu_hwpt_invalidate_selftest", {
                flags, iotlb_id,
            }),
            check!(ViommuInvalidateSelftest, "iommu_viommu_invalidate_selftest", {
                flags, vdev_id, cache_id,
            }),
            check!(ViommuSelftest, "iommu_viommu_selftest", {
                in_data, out_data, out_mmap_offset, out_mmap_length,
            }),
            check!(ViommuEventSelftest, "iommu_viommu_event_selftest", {
                virt_id
            }),
            check!(MockDomainFlags, "iommu_test_cmd", "mock_domain_flags", {
                out_stdev_id, out_hwpt_id, out_idev_id, dev_flags,
            }),
            check!(Dirty, "iommu_test_cmd", "dirty", {
                flags, iova, length, page_size, uptr, out_nr_dirty,
            }),
            check!(CheckIotlb, "iommu_test_cmd", "check_iotlb", { id, iotlb }),
            check!(TriggerIopf, "iommu_test_cmd", "trigger_iopf", {
                dev_id, pasid, grpid, perm, addr,
            }),
            check!(CheckDevCache, "iommu_test_cmd", "check_dev_cache", { id, cache }),
            check!(TriggerVevent, "iommu_test_cmd", "trigger_vevent", {
                dev_id
            }),
        ];
        let mut problems = Vec::new();
        for Check {
            c: (name, member),
            size,
            fields,
        } in &checks
        {
            let what = if member.is_empty() {
                name.to_string()
            } else {
                format!("{name}.{member}")
            };
            let Some(l) = h.structs.get(*name) else {
                problems.push(format!("{what}: not in the 7.2 headers"));
                continue;
            };
            // A union member's fields lie after the command's header, in `u`.
            let (c_size, base) = if member.is_empty() {
                (l.size, 0)
            } else {
                let (at, s) = l.fields[*member];
                (s, at)
            };
            if *size != c_size {
                problems.push(format!("{what}: {size} bytes here, {c_size} in C"));
            }
            let prefix = if member.is_empty() {
                String::new()
            } else {
                format!("{member}.")
            };
            for (f, offset, fsize) in fields {
                match l.fields.get(&format!("{prefix}{f}")) {
                    Some(&(o, s)) if (o - base, s) == (*offset, *fsize) => {}
                    other => problems.push(format!(
                        "{what}.{f}: offset {offset}, {fsize} bytes here; {other:?} in C"
                    )),
                }
            }
            let ours: Vec<&str> = fields.iter().map(|(f, _, _)| *f).collect();
            for c in l.children(member) {
                if !ours.contains(&c) {
                    problems.push(format!("{what}.{c}: in C but not checked here"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn test_cmd_has_the_7_2_layout() {
        let Some(h) = linux_7_2_headers() else { return };
        let c = &h.structs["iommu_test_cmd"];
        assert_eq!(std::mem::size_of::<IommuTestCmd>(), c.size);
        for (ours, theirs) in [
            (std::mem::offset_of!(IommuTestCmd, size), "size"),
            (std::mem::offset_of!(IommuTestCmd, op), "op"),
            (std::mem::offset_of!(IommuTestCmd, id), "id"),
            (std::mem::offset_of!(IommuTestCmd, reserved), "__reserved"),
            // The union starts where its first member does and ends at `last`.
            (std::mem::offset_of!(IommuTestCmd, u), "add_reserved"),
            (std::mem::offset_of!(IommuTestCmd, last), "last"),
        ] {
            assert_eq!(ours, c.fields[theirs].0, "{theirs}");
        }
        let union_end = std::mem::offset_of!(IommuTestCmd, u) + TEST_UNION_SIZE;
        assert_eq!(union_end, c.fields["last"].0);
    }
}
