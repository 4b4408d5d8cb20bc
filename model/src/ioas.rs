//! iommufd's IOAS (`drivers/iommu/iommufd/ioas.c`, `io_pagetable.c`):
//! areas, allowed ranges (ALLOW_IOVAS), reserved ranges (from domains'
//! apertures, devices' reserved regions and `mock.add_reserved`),
//! IOVA_RANGES, MAP with a fixed or an automatic IOVA (`iopt_alloc_iova`,
//! predicted exactly from the buffer's user address), UNMAP of whole
//! areas, COPY between IOAS, the selftest's mock domain (aperture
//! [2^24, 2^31 - 1]) and accesses (`selftest.c`), and the edu device's
//! attach through its VFIO cdev.  One iommufd, any number of IOAS.

use std::collections::BTreeMap;

use crate::dma::{Direction, Segment, Target, push_segment, target_at, walk};
use crate::errno::Errno;
use crate::error::ModelError;
use crate::interval;
use crate::mem::Memory;
use crate::op::{AccessId, IoasId, MockId, Op};
use crate::outcome::{Outcome, Value};
use crate::rule::Rule;

/// A kind of paging domain, as iommufd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainParams {
    /// First IOVA the domain translates (`geometry.aperture_start`).
    pub aperture_start: u64,
    /// Last one (`geometry.aperture_end`).
    pub aperture_last: u64,
    /// Its smallest page (`1 << __ffs(pgsize_bitmap)`).
    pub page_size: u64,
    /// The device's reserved regions (`iommu_get_resv_regions`), inclusive.
    pub reserved: Vec<(u64, u64)>,
}

impl DomainParams {
    /// The selftest's mock domain (iommufd_test.h MOCK_APERTURE_START/LAST)
    /// with its IO page: 2 KiB in 7.2 (MOCK_PAGE_SIZE of the generic page
    /// table), PAGE_SIZE / 2 in 6.12 (MOCK_IO_PAGE_SIZE).
    pub fn mock(io_page: u64) -> DomainParams {
        DomainParams {
            aperture_start: 1 << 24,
            aperture_last: (1 << 31) - 1,
            page_size: io_page,
            reserved: Vec::new(),
        }
    }

    /// The edu device behind QEMU's intel-iommu (48-bit aperture, 4K
    /// pages, the MSI window reserved), as `ioas/reserved_ranges.toml` saw it.
    pub fn vtd_edu() -> DomainParams {
        DomainParams {
            aperture_start: 0,
            aperture_last: (1 << 48) - 1,
            page_size: 4096,
            reserved: vec![(0xfee0_0000, 0xfeef_ffff)],
        }
    }
}

/// The iommufd's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IommufdParams {
    /// The kernel's PAGE_SIZE.
    pub page_size: u64,
    /// HPAGE_SIZE when the kernel has CONFIG_TRANSPARENT_HUGEPAGE (the cap
    /// of an automatic IOVA's alignment; PAGE_SIZE without THP).
    pub thp_size: Option<u64>,
    /// The mock domain.
    pub mock: DomainParams,
    /// Whether `mock.domain` works on this kernel: bug 0004 (6.12.y) and
    /// bug 0005 (no CONFIG_IOMMU_DMA, every powerpc kernel) make it fail
    /// with EINVAL.
    pub mock_available: bool,
    /// The edu device's domain, on a machine with a vIOMMU.
    pub device: Option<DomainParams>,
    /// Re-attaching the attached device (a replace) offers it the IOAS's
    /// domains in order, a mock domain too, and the mock driver's
    /// attach_dev on the PCI device spins for ever (found by `cargo xtask
    /// fuzz` on 7.2, [`Rule::ReplaceForeignDomainHang`]).  What 6.12 does
    /// there (its mock attach_dev does not spin) is not measured.
    pub replace_tries_foreign_domains: bool,
}

impl IommufdParams {
    /// Linux 7.2 on q35 without a vIOMMU (`q35-mock`): 4K pages, THP.
    pub fn q35_mock_7_2() -> IommufdParams {
        IommufdParams {
            page_size: 4096,
            thp_size: Some(2 << 20),
            mock: DomainParams::mock(2048),
            mock_available: true,
            device: None,
            replace_tries_foreign_domains: true,
        }
    }

    /// Linux 7.2 on q35 with intel-iommu and the edu's cdev.
    pub fn q35_7_2() -> IommufdParams {
        IommufdParams {
            device: Some(DomainParams::vtd_edu()),
            ..IommufdParams::q35_mock_7_2()
        }
    }

    /// Linux 6.12 on q35 without a vIOMMU: iobench's 6.12 kernel has no
    /// THP (images/kernel/linux-7.2-x86_64.config turns it on for 7.2
    /// only), so an automatic IOVA is aligned to at most PAGE_SIZE.
    pub fn q35_mock_6_12() -> IommufdParams {
        IommufdParams {
            thp_size: None,
            replace_tries_foreign_domains: false,
            ..IommufdParams::q35_mock_7_2()
        }
    }

    /// Linux 6.12 on q35 with intel-iommu and the edu's cdev: the mock
    /// domain works only with fix 0004.
    pub fn q35_6_12(fix_0004: bool) -> IommufdParams {
        IommufdParams {
            device: Some(DomainParams::vtd_edu()),
            mock_available: fix_0004,
            ..IommufdParams::q35_mock_6_12()
        }
    }

    /// Linux 7.2 on pseries (no THP in iobench's configs): the mock domain
    /// works only with fix 0005.
    pub fn pseries_7_2(page_size: u64, fix_0005: bool) -> IommufdParams {
        IommufdParams {
            page_size,
            thp_size: None,
            mock: DomainParams::mock(2048),
            mock_available: fix_0005,
            device: None,
            replace_tries_foreign_domains: false,
        }
    }

    /// Linux 6.12 on pseries: the mock domain needs fixes 0004 and 0005.
    pub fn pseries_6_12(page_size: u64, fixes_0004_0005: bool) -> IommufdParams {
        IommufdParams {
            mock: DomainParams::mock(page_size / 2),
            mock_available: fixes_0004_0005,
            ..IommufdParams::pseries_7_2(page_size, false)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Area {
    last: u64,
    ua: u64,
    read: bool,
    write: bool,
    writable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    Test,
    Domain(usize),
    Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Reserved {
    start: u64,
    last: u64,
    owner: Owner,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Ioas {
    areas: BTreeMap<u64, Area>,
    allowed: Vec<(u64, u64)>,
    reserved: Vec<Reserved>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Mock,
    Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Hwpt {
    ioas: usize,
    kind: Kind,
    users: u32,
    /// Its object id while it exists.
    id: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Mock {
    hwpt: usize,
    /// The selftest object's id (`stdev_id`), what `iommufd.destroy` names.
    stdev: u32,
    /// The mock device's iommufd_device id.
    idev: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Access {
    ioas: usize,
    pin: bool,
}

/// What an attach's `pt_id` names.
enum Pt {
    /// No object: ENOENT.
    Gone,
    /// An IOAS, by index: an automatic domain.
    Ioas(usize),
    /// A paging domain, by index.
    Hwpt(usize),
    /// Anything else: EINVAL.
    Other,
}

/// What an object id names (`ictx->objects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Obj {
    /// IOAS by index.
    Ioas(usize),
    /// A mock domain's selftest object, by mock index.
    Stdev(usize),
    /// A device bound to the iommufd (a mock's, or the edu's cdev).
    Idev,
    /// A paging HWPT, by index.
    Hwpt(usize),
    /// An access.
    Access,
}

/// One piece of a contiguous run of areas: user address, length, area.
type Piece = (u64, u64, Area);

/// The iommufd.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Iommufd {
    p: IommufdParams,
    ioas: Vec<Ioas>,
    hwpts: Vec<Hwpt>,
    mocks: Vec<Mock>,
    accesses: Vec<Access>,
    device: Option<(usize, usize)>,
    /// Every live object by id: ids are allocated lowest free first
    /// (main.c _iommufd_object_alloc:34-64, `XA_FLAGS_ALLOC1`), so a destroyed
    /// object's id goes to the next object made.
    objects: BTreeMap<u32, Obj>,
    /// Each IOAS's id (the number `$ioasN` holds).
    ioas_ids: Vec<u32>,
}

type Fail = Outcome;

impl Iommufd {
    /// An open /dev/iommu without IOAS.
    pub fn new(p: IommufdParams) -> Iommufd {
        let mut objects = BTreeMap::new();
        if p.device.is_some() {
            // The edu's cdev is bound first (`_common/iommufd_cdev.toml`):
            // its iommufd_device takes id 1.
            objects.insert(1, Obj::Idev);
        }
        Iommufd {
            p,
            ioas: Vec::new(),
            hwpts: Vec::new(),
            mocks: Vec::new(),
            accesses: Vec::new(),
            device: None,
            objects,
            ioas_ids: Vec::new(),
        }
    }

    /// The lowest free object id (from 1), taken for `o`.
    fn new_id(&mut self, o: Obj) -> u32 {
        let mut id = 1;
        for k in self.objects.keys() {
            if *k != id {
                break;
            }
            id += 1;
        }
        self.objects.insert(id, o);
        id
    }

    /// The IOAS `$ioasN`'s id names now: the same IOAS, another one that
    /// took its id after it was destroyed, or none (ENOENT: main.c
    /// iommufd_get_object:141-150, via iommufd_get_ioas).
    fn resolve(&self, id: IoasId) -> Result<Result<usize, Outcome>, ModelError> {
        let num = *self
            .ioas_ids
            .get(id.0)
            .ok_or(ModelError::UnknownIoas(id.0))?;
        Ok(match self.objects.get(&num) {
            Some(Obj::Ioas(i)) => Ok(*i),
            _ => Err(Outcome::errno(Errno::ENOENT, Rule::IoasGone)),
        })
    }

    /// What a `pt_id` (the number `$ioasN` holds) names for an attach
    /// (device.c iommufd_device_change_pt:940-968: any object type).
    fn pt(&self, id: IoasId) -> Result<Pt, ModelError> {
        let num = *self
            .ioas_ids
            .get(id.0)
            .ok_or(ModelError::UnknownIoas(id.0))?;
        Ok(match self.objects.get(&num) {
            None => Pt::Gone,
            Some(Obj::Ioas(i)) => Pt::Ioas(*i),
            Some(Obj::Hwpt(h)) => Pt::Hwpt(*h),
            Some(_) => Pt::Other,
        })
    }

    /// Whether IOAS `i` has users besides its id (io_pagetable: a
    /// paging HWPT or an access holds a reference).
    fn ioas_in_use(&self, i: usize) -> bool {
        self.hwpts.iter().any(|h| h.ioas == i && h.users > 0)
            || self.accesses.iter().any(|a| a.ioas == i)
    }

    /// Its parameters.
    pub fn params(&self) -> &IommufdParams {
        &self.p
    }

    /// How many IOAS, mock domains and accesses were made (the next ones'
    /// indexes).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.ioas.len(), self.mocks.len(), self.accesses.len())
    }

    /// The areas of an IOAS: `(iova, length)`.
    pub fn areas(&self, id: IoasId) -> Vec<(u64, u64)> {
        self.ioas
            .get(id.0)
            .map(|i| i.areas.iter().map(|(s, a)| (*s, a.last - s + 1)).collect())
            .unwrap_or_default()
    }

    /// The reserved ranges of an IOAS.
    pub fn reserved(&self, id: IoasId) -> Vec<(u64, u64)> {
        self.ioas
            .get(id.0)
            .map(|i| i.reserved.iter().map(|r| (r.start, r.last)).collect())
            .unwrap_or_default()
    }

    /// The allowed ranges of an IOAS.
    pub fn allowed(&self, id: IoasId) -> Vec<(u64, u64)> {
        self.ioas
            .get(id.0)
            .map(|i| i.allowed.clone())
            .unwrap_or_default()
    }

    /// The IOAS's iova_alignment: the largest smallest page of its
    /// domains, PAGE_SIZE with a pinning access, else 1
    /// (io_pagetable.c iopt_calculate_iova_alignment:1219-1253).
    pub fn alignment(&self, id: IoasId) -> u64 {
        let i = id.0;
        let mut a = 1;
        for h in self.hwpts.iter().filter(|h| h.ioas == i && h.users > 0) {
            a = a.max(self.domain(h.kind).page_size);
        }
        if self.accesses.iter().any(|x| x.ioas == i && x.pin) {
            a = a.max(self.p.page_size);
        }
        a
    }

    /// Whether the edu device is attached, and to which IOAS.
    pub fn device_ioas(&self) -> Option<IoasId> {
        self.device.map(|(i, _)| IoasId(i))
    }

    fn domain(&self, k: Kind) -> &DomainParams {
        match k {
            Kind::Mock => &self.p.mock,
            Kind::Device => self.p.device.as_ref().unwrap_or(&self.p.mock),
        }
    }

    /// The IOAS index `id` names, or the outcome when it names none.
    fn ioas_index(&self, id: IoasId) -> Result<Result<usize, Outcome>, ModelError> {
        self.resolve(id)
    }

    /// Predicts one op and applies it.
    pub fn apply(&mut self, mem: &Memory, op: &Op) -> Result<Outcome, ModelError> {
        // The IOAS an id names, or the op's outcome when it names none.
        macro_rules! ioas {
            ($id:expr) => {
                match self.ioas_index($id)? {
                    Ok(i) => i,
                    Err(o) => return Ok(o),
                }
            };
        }
        Ok(match op {
            Op::IoasAlloc => {
                // ioas.c iommufd_ioas_alloc_ioctl:38-64
                let i = self.ioas.len();
                self.ioas.push(Ioas::default());
                let id = self.new_id(Obj::Ioas(i));
                self.ioas_ids.push(id);
                Outcome::value(Value::Object, Rule::IoasAlloc)
            }
            Op::IoasMap {
                ioas,
                range,
                iova,
                read,
                write,
            } => {
                let (ua, len) = mem.resolve(range)?;
                // ioas.c iommufd_ioas_map:257-262 check the arguments
                // before iommufd_get_ioas:264.
                if *iova == Some(u64::MAX) || len == u64::MAX {
                    return Ok(Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow));
                }
                if !*read && !*write {
                    return Ok(Outcome::errno(Errno::EINVAL, Rule::IoasNoDirection));
                }
                let i = ioas!(*ioas);
                self.map(i, ua, len, *iova, *read, *write)
            }
            Op::IoasUnmap { ioas, iova, length } => {
                let i = ioas!(*ioas);
                self.unmap(i, *iova, *length)
            }
            Op::IoasCopy {
                src,
                dst,
                src_iova,
                length,
                dst_iova,
                read,
                write,
            } => self.copy(*src, *dst, *src_iova, *length, *dst_iova, *read, *write)?,
            Op::IoasAllowIovas { ioas, ranges } => {
                let i = ioas!(*ioas);
                self.allow(i, ranges)
            }
            Op::IoasIovaRanges { ioas } => {
                let i = ioas!(*ioas);
                // ioas.c iommufd_ioas_iova_ranges:86-104
                let nodes: Vec<(u64, u64)> = self.ioas[i]
                    .reserved
                    .iter()
                    .map(|r| (r.start, r.last))
                    .collect();
                Outcome::value(
                    Value::IovaRanges {
                        ranges: interval::holes(&nodes, 0, u64::MAX),
                        alignment: self.alignment(IoasId(i)),
                    },
                    Rule::IoasIovaRanges,
                )
            }
            Op::MockAddReserved {
                ioas,
                start,
                length,
            } => {
                // selftest.c iommufd_test_add_reserved:1171-1174 check the
                // range before iommufd_get_ioas:1176.
                if *length == 0 {
                    return Ok(Outcome::errno(Errno::EINVAL, Rule::IoasZeroLength));
                }
                if start.checked_add(*length - 1).is_none() {
                    return Ok(Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow));
                }
                let i = ioas!(*ioas);
                self.add_reserved(i, *start, *length)
            }
            Op::MockDomain { ioas } => {
                // Bugs 0004/0005 (docs/found-bugs.md): the mock device has no
                // IOMMU, and binding it fails before its pt_id is looked at.
                if !self.p.mock_available {
                    return Ok(Outcome::errno(Errno::EINVAL, Rule::MockDomainUnavailable));
                }
                // selftest.c iommufd_test_mock_domain:1061-1098: the
                // selftest object, then the device bound, then attached
                // (its domain's id last); a failure gives all back.
                let m = self.mocks.len();
                // The two ids are taken before the pt_id is looked up (it
                // may name one of them).
                let stdev = self.new_id(Obj::Stdev(m));
                let idev = self.new_id(Obj::Idev);
                let abort = |me: &mut Iommufd, o: Outcome| {
                    me.objects.remove(&stdev);
                    me.objects.remove(&idev);
                    Ok(o)
                };
                // The selftest object is not finalized until the end (its
                // id holds XA_ZERO_ENTRY: main.c _iommufd_object_alloc:34-64,
                // iommufd_get_object:175-178 sees nothing); the device is.
                let pt = if self.ioas_ids.get(ioas.0) == Some(&stdev) {
                    Pt::Gone
                } else {
                    self.pt(*ioas)?
                };
                let i = match pt {
                    Pt::Ioas(i) => i,
                    Pt::Hwpt(h) if self.hwpts[h].kind == Kind::Mock => {
                        // device.c iommufd_device_change_pt:944-953: onto that domain.
                        self.hwpts[h].users += 1;
                        self.mocks.push(Mock {
                            hwpt: h,
                            stdev,
                            idev,
                        });
                        return Ok(Outcome::value(Value::Object, Rule::AttachSharedDomain));
                    }
                    Pt::Hwpt(_) | Pt::Other => {
                        return abort(
                            self,
                            Outcome::errno(Errno::EINVAL, Rule::AttachNotAPageTable),
                        );
                    }
                    Pt::Gone => {
                        return abort(self, Outcome::errno(Errno::ENOENT, Rule::IoasGone));
                    }
                };
                match self.attach(i, Kind::Mock) {
                    Err(o) => {
                        self.objects.remove(&stdev);
                        self.objects.remove(&idev);
                        o
                    }
                    Ok((hwpt, rule)) => {
                        self.mocks.push(Mock { hwpt, stdev, idev });
                        Outcome::value(Value::Object, rule)
                    }
                }
            }
            Op::MockDestroy { mock } => {
                let m = self
                    .mocks
                    .get(mock.0)
                    .copied()
                    .ok_or(ModelError::UnknownMock(mock.0))?;
                // main.c iommufd_destroy:308-313 of the number `stdev_id`
                // held, whatever has it now (iommufd_object_remove:255-278).
                match self.objects.get(&m.stdev).copied() {
                    None => Outcome::errno(Errno::ENOENT, Rule::ObjectGone),
                    Some(Obj::Stdev(k)) => {
                        let gone = self.mocks[k];
                        self.objects.remove(&gone.stdev);
                        self.objects.remove(&gone.idev);
                        self.detach(gone.hwpt);
                        Outcome::value(Value::U64(0), Rule::Detach)
                    }
                    Some(Obj::Ioas(j)) if !self.ioas_in_use(j) => {
                        self.objects.remove(&m.stdev);
                        self.ioas[j] = Ioas::default();
                        Outcome::value(Value::U64(0), Rule::DestroyReusedId)
                    }
                    Some(_) => Outcome::errno(Errno::EBUSY, Rule::DestroyReusedIdBusy),
                }
            }
            Op::MockAccessCreate { ioas, pin_pages } => {
                let i = ioas!(*ioas);
                // io_pagetable.c iopt_add_access:1464-1488 (device.c
                // iommufd_access_create:1194-1196: PAGE_SIZE with pin_pages)
                if *pin_pages {
                    let cur = self.alignment(IoasId(i));
                    let new = cur.max(self.p.page_size);
                    if new > cur && !self.areas_aligned(i, new) {
                        return Ok(Outcome::errno(
                            Errno::EADDRINUSE,
                            Rule::AccessAlignmentInUse,
                        ));
                    }
                }
                self.accesses.push(Access {
                    ioas: i,
                    pin: *pin_pages,
                });
                // device.c iommufd_access_create: an object of its own.
                self.new_id(Obj::Access);
                Outcome::value(Value::Object, Rule::AccessCreate)
            }
            Op::MockAccessRw {
                access,
                iova,
                range,
                write,
            } => {
                let a = *self
                    .accesses
                    .get(access.0)
                    .ok_or(ModelError::UnknownAccess(access.0))?;
                let (_, len) = mem.resolve(range)?;
                self.access_rw(mem, a.ioas, *iova, len, *write)
            }
            Op::DeviceAttach { ioas } => {
                if self.p.device.is_none() {
                    return Err(ModelError::NoDevice("iommufd"));
                }
                let i = match self.pt(*ioas)? {
                    Pt::Ioas(i) => i,
                    // The device's own domain: already attached there.
                    Pt::Hwpt(h) if self.device.is_some_and(|(_, d)| d == h) => {
                        return Ok(Outcome::value(Value::Object, Rule::AttachSharedDomain));
                    }
                    Pt::Hwpt(_) | Pt::Other => {
                        return Ok(Outcome::errno(Errno::EINVAL, Rule::AttachNotAPageTable));
                    }
                    Pt::Gone => return Ok(Outcome::errno(Errno::ENOENT, Rule::IoasGone)),
                };
                // device.c iommufd_device_auto_get_domain:877-901 tries the
                // IOAS's domains in the order they were made; a replace
                // (the device is attached) reaches iommu_replace_group_handle
                // (iommu.c:3976-4005), which lacks __iommu_attach_group's
                // domain_iommu_ops_compatible check (:2365-2367).
                if self.p.replace_tries_foreign_domains && self.device.is_some() {
                    let first = self
                        .hwpts
                        .iter()
                        .find(|h| h.ioas == i && h.users > 0)
                        .map(|h| h.kind);
                    if first == Some(Kind::Mock) {
                        return Ok(Outcome::crash(Rule::ReplaceForeignDomainHang));
                    }
                }
                if let Some((j, _)) = self.device
                    && j == i
                {
                    return Ok(Outcome::value(Value::Object, Rule::AttachSharedDomain));
                }
                match self.attach(i, Kind::Device) {
                    Err(o) => o,
                    Ok((hwpt, rule)) => {
                        if let Some((j, old)) = self.device.take() {
                            self.ioas[j].reserved.retain(|r| r.owner != Owner::Device);
                            self.detach(old);
                        }
                        self.device = Some((i, hwpt));
                        Outcome::value(Value::Object, rule)
                    }
                }
            }
            Op::DeviceDetach => {
                if self.p.device.is_none() {
                    return Err(ModelError::NoDevice("iommufd"));
                }
                if let Some((j, old)) = self.device.take() {
                    self.ioas[j].reserved.retain(|r| r.owner != Owner::Device);
                    self.detach(old);
                }
                Outcome::value(Value::U64(0), Rule::Detach)
            }
            _ => {
                return Err(ModelError::NotApplicable {
                    op: op.name(),
                    world: "iommufd",
                });
            }
        })
    }

    fn areas_aligned(&self, i: usize, align: u64) -> bool {
        // io_pagetable.c iopt_check_iova_alignment:1122-1127
        let ps = self.p.page_size;
        self.ioas[i].areas.iter().all(|(s, a)| {
            s % align == 0 && (a.last - s + 1) % align == 0 && (a.ua % ps).is_multiple_of(align)
        })
    }

    fn in_use(&self, i: usize, start: u64, last: u64) -> bool {
        let x = &self.ioas[i];
        x.areas
            .iter()
            .any(|(s, a)| interval::overlaps((*s, a.last), (start, last)))
            || interval::any_overlap(&x.allowed, (start, last))
    }

    /// iopt_reserve_iova (io_pagetable.c:890-909).
    fn reserve(&mut self, i: usize, start: u64, last: u64, owner: Owner) -> bool {
        // :897-899
        if self.in_use(i, start, last) {
            return false;
        }
        self.ioas[i].reserved.push(Reserved { start, last, owner });
        true
    }

    /// An auto domain for a device of `kind` on IOAS `i`
    /// (device.c iommufd_device_auto_get_domain:856-931).
    fn attach(&mut self, i: usize, kind: Kind) -> Result<(usize, Rule), Fail> {
        let d = self.domain(kind).clone();
        // hw_pagetable.c iommufd_hwpt_paging_alloc:194-197 attaches first:
        // the device's reserved regions (io_pagetable.c
        // iopt_table_enforce_dev_resv_regions:1519-1534).
        for (s, l) in &d.reserved {
            if !self.reserve(i, *s, *l, Owner::Device) {
                self.ioas[i].reserved.retain(|r| r.owner != Owner::Device);
                return Err(Outcome::errno(Errno::EADDRINUSE, Rule::AttachReservedInUse));
            }
        }
        let undo_dev = |me: &mut Iommufd| {
            if kind == Kind::Device {
                me.ioas[i].reserved.retain(|r| r.owner != Owner::Device);
            }
        };
        // device.c:877-901: an auto domain of the same driver on the IOAS takes it.
        if let Some(h) = self
            .hwpts
            .iter()
            .position(|h| h.ioas == i && h.kind == kind && h.users > 0)
        {
            self.hwpts[h].users += 1;
            return Ok((h, Rule::AttachSharedDomain));
        }
        // io_pagetable.c iopt_table_add_domain:1168-1179
        let cur = self.alignment(IoasId(i));
        let new = cur.max(d.page_size);
        if new > self.p.page_size {
            undo_dev(self);
            return Err(Outcome::errno(Errno::EINVAL, Rule::AttachAlignmentTooBig));
        }
        if new != cur && !self.areas_aligned(i, new) {
            undo_dev(self);
            return Err(Outcome::errno(
                Errno::EADDRINUSE,
                Rule::AttachMisalignedArea,
            ));
        }
        // :1181-1193 the aperture's complement becomes reserved
        let h = self.hwpts.len();
        let mut ok = true;
        if d.aperture_start != 0 {
            ok = self.reserve(i, 0, d.aperture_start - 1, Owner::Domain(h));
        }
        if ok && d.aperture_last != u64::MAX {
            ok = self.reserve(i, d.aperture_last + 1, u64::MAX, Owner::Domain(h));
        }
        if !ok {
            // :1211-1212 __iopt_remove_reserved_iova
            self.ioas[i]
                .reserved
                .retain(|r| r.owner != Owner::Domain(h));
            undo_dev(self);
            return Err(Outcome::errno(Errno::EADDRINUSE, Rule::AttachReservedInUse));
        }
        let id = self.new_id(Obj::Hwpt(h));
        self.hwpts.push(Hwpt {
            ioas: i,
            kind,
            users: 1,
            id,
        });
        Ok((h, Rule::Attach))
    }

    /// A user leaves HWPT `h`; the last one takes the domain away
    /// (iopt_table_remove_domain: __iopt_remove_reserved_iova:911-927).
    fn detach(&mut self, h: usize) {
        let hw = &mut self.hwpts[h];
        hw.users = hw.users.saturating_sub(1);
        if hw.users == 0 {
            let id = hw.id;
            self.objects.remove(&id);
            let hw = &self.hwpts[h];
            let i = hw.ioas;
            self.ioas[i]
                .reserved
                .retain(|r| r.owner != Owner::Domain(h));
        }
    }

    fn add_reserved(&mut self, i: usize, start: u64, length: u64) -> Outcome {
        // selftest.c iommufd_test_add_reserved:1171-1174
        if length == 0 {
            return Outcome::errno(Errno::EINVAL, Rule::IoasZeroLength);
        }
        let Some(last) = start.checked_add(length - 1) else {
            return Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow);
        };
        // :1180 iopt_reserve_iova:897-899
        if !self.reserve(i, start, last, Owner::Test) {
            return Outcome::errno(Errno::EADDRINUSE, Rule::IoasReserveInUse);
        }
        Outcome::value(Value::Null, Rule::IoasAddReserved)
    }

    fn allow(&mut self, i: usize, ranges: &[(u64, u64)]) -> Outcome {
        // ioas.c iommufd_ioas_load_iovas:122-142
        for (n, (s, l)) in ranges.iter().enumerate() {
            if s >= l {
                return Outcome::errno(Errno::EINVAL, Rule::IoasAllowBadRange);
            }
            if interval::any_overlap(&ranges[..n], (*s, *l)) {
                return Outcome::errno(Errno::EINVAL, Rule::IoasAllowOverlap);
            }
        }
        // io_pagetable.c iopt_set_allow_iova:877-884
        let x = &self.ioas[i];
        if ranges.iter().any(|r| {
            x.reserved
                .iter()
                .any(|v| interval::overlaps(*r, (v.start, v.last)))
        }) {
            return Outcome::errno(Errno::EADDRINUSE, Rule::IoasAllowReserved);
        }
        self.ioas[i].allowed = ranges.to_vec();
        Outcome::value(Value::U64(0), Rule::IoasAllow)
    }

    /// iopt_alloc_iova (io_pagetable.c:120-181).
    fn alloc_iova(&self, i: usize, addr: u64, length: u64) -> Result<u64, Fail> {
        let ps = self.p.page_size;
        let page_offset = addr % ps;
        // :132-133
        if length == 0 || length >= u64::MAX / 2 {
            return Err(Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow));
        }
        // :139-144 the alignment the user address has, up to the length's
        let pow = length.next_power_of_two();
        let mut align = if addr == 0 {
            pow
        } else {
            pow.min(1u64 << addr.trailing_zeros())
        };
        // :146-151 at most PAGE_SIZE (HPAGE_SIZE with THP)
        let max_align = self.p.thp_size.unwrap_or(ps);
        if align >= max_align {
            align = max_align;
        }
        // :153-154
        if align < self.alignment(IoasId(i)) {
            return Err(Outcome::errno(Errno::EINVAL, Rule::IoasAutoAlignment));
        }
        // __alloc_iova_check_range:75-92
        let fits = |start: u64, last: u64| -> Option<u64> {
            let up = start.checked_add(align - 1)?;
            let aligned = (up & !(align - 1)) | page_offset;
            if aligned >= last || last - aligned < length - 1 {
                return None;
            }
            Some(aligned)
        };
        let x = &self.ioas[i];
        // :156-162 the allowed ranges, or everything but the first and last page
        let spans = if x.allowed.is_empty() {
            vec![(ps, u64::MAX - ps)]
        } else {
            interval::used(&x.allowed, ps, u64::MAX - ps)
        };
        let mut nodes: Vec<(u64, u64)> = x.reserved.iter().map(|r| (r.start, r.last)).collect();
        nodes.extend(x.areas.iter().map(|(s, a)| (*s, a.last)));
        for (s, l) in spans {
            // :164-166
            let Some(s) = fits(s, l) else { continue };
            // :168-177 the holes of reserved ranges and areas
            for (hs, hl) in interval::holes(&nodes, s, l) {
                if let Some(a) = fits(hs, hl) {
                    return Ok(a);
                }
            }
        }
        // :180
        Err(Outcome::errno(Errno::ENOSPC, Rule::IoasNoSpace))
    }

    /// iopt_check_iova (io_pagetable.c:183-204).
    fn check_iova(&self, i: usize, iova: u64, length: u64) -> Result<u64, Fail> {
        // :190-191
        if !iova.is_multiple_of(self.alignment(IoasId(i))) {
            return Err(Outcome::errno(Errno::EINVAL, Rule::IoasFixedMisaligned));
        }
        // :193-194
        let Some(last) = iova.checked_add(length - 1) else {
            return Err(Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow));
        };
        let x = &self.ioas[i];
        // :196-198
        if x.reserved
            .iter()
            .any(|r| interval::overlaps((r.start, r.last), (iova, last)))
        {
            return Err(Outcome::errno(Errno::EINVAL, Rule::IoasFixedReserved));
        }
        // :200-202
        if x.areas
            .iter()
            .any(|(s, a)| interval::overlaps((*s, a.last), (iova, last)))
        {
            return Err(Outcome::errno(Errno::EEXIST, Rule::IoasFixedExists));
        }
        Ok(iova)
    }

    /// iopt_alloc_area_pages + iopt_insert_area (io_pagetable.c:256-323,
    /// 209-242) for pieces laid out from the IOVA on; the IOVA.
    fn place(
        &mut self,
        i: usize,
        pieces: &[Piece],
        length: u64,
        fixed: Option<u64>,
        read: bool,
        write: bool,
    ) -> Result<(u64, Rule), Fail> {
        let align = self.alignment(IoasId(i));
        // :273-276
        if length == 0 {
            return Err(Outcome::errno(Errno::EINVAL, Rule::IoasZeroLength));
        }
        if !length.is_multiple_of(align) {
            return Err(Outcome::errno(Errno::EINVAL, Rule::IoasLengthMisaligned));
        }
        // :278-305
        let (iova, rule) = match fixed {
            None => (self.alloc_iova(i, pieces[0].0, length)?, Rule::IoasAutoIova),
            Some(v) => (self.check_iova(i, v, length)?, Rule::IoasMap),
        };
        let ps = self.p.page_size;
        let mut at = iova;
        let mut new = Vec::new();
        for (ua, len, src) in pieces {
            // iopt_insert_area:216-217
            if write && !src.writable {
                return Err(Outcome::errno(
                    Errno::EPERM,
                    Rule::IoasCopyWriteFromReadOnly,
                ));
            }
            // :220-222
            if !(ua % ps).is_multiple_of(align) {
                return Err(Outcome::errno(
                    Errno::EINVAL,
                    Rule::IoasPageOffsetMisaligned,
                ));
            }
            new.push((
                at,
                Area {
                    last: at + (len - 1),
                    ua: *ua,
                    read,
                    write,
                    writable: src.writable,
                },
            ));
            at = at.wrapping_add(*len);
        }
        self.ioas[i].areas.extend(new);
        Ok((iova, rule))
    }

    fn map(
        &mut self,
        i: usize,
        ua: u64,
        len: u64,
        iova: Option<u64>,
        read: bool,
        write: bool,
    ) -> Outcome {
        // ioas.c iommufd_ioas_map:257-258
        if iova == Some(u64::MAX) || len == u64::MAX {
            return Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow);
        }
        // :260-262
        if !read && !write {
            return Outcome::errno(Errno::EINVAL, Rule::IoasNoDirection);
        }
        // pages.c iopt_alloc_user_pages:1406-1407
        if ua.checked_add(len).is_none() {
            return Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow);
        }
        // pages.c iopt_alloc_pages:1372-1373
        if len == 0 || len > u64::MAX - self.p.page_size {
            return Outcome::errno(Errno::EINVAL, Rule::IoasZeroLength);
        }
        let src = Area {
            last: 0,
            ua,
            read,
            write,
            writable: write,
        };
        match self.place(i, &[(ua, len, src)], len, iova, read, write) {
            Ok((v, rule)) => Outcome::value(Value::U64(v), rule),
            Err(o) => o,
        }
    }

    /// The pieces of contiguous areas covering `[iova, last]`, or `None`
    /// at a hole (iopt_area_contig_init/next, io_pagetable.c:33-73).
    fn contig(&self, i: usize, iova: u64, last: u64) -> Option<Vec<Piece>> {
        let areas = &self.ioas[i].areas;
        let mut out = Vec::new();
        let mut cur = iova;
        loop {
            let (start, a) = areas.range(..=cur).next_back()?;
            if a.last < cur || (cur != iova && *start != cur) {
                return None;
            }
            let end = a.last.min(last);
            out.push((a.ua + (cur - start), end - cur + 1, *a));
            if a.last >= last {
                return Some(out);
            }
            cur = a.last + 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        src: IoasId,
        dst: IoasId,
        src_iova: u64,
        length: u64,
        dst_iova: Option<u64>,
        read: bool,
        write: bool,
    ) -> Result<Outcome, ModelError> {
        // ioas.c iommufd_ioas_copy:300-306
        if length == u64::MAX || src_iova == u64::MAX || dst_iova == Some(u64::MAX) {
            return Ok(Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow));
        }
        if !read && !write {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::IoasNoDirection));
        }
        // :308-310 the source IOAS, its pages (:312-315), then the destination (:317-321)
        let s = match self.ioas_index(src)? {
            Ok(s) => s,
            Err(o) => return Ok(o),
        };
        // io_pagetable.c iopt_get_pages:708-711
        if length == 0 {
            return Ok(Outcome::errno(Errno::EINVAL, Rule::IoasZeroLength));
        }
        let Some(last) = src_iova.checked_add(length - 1) else {
            return Ok(Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow));
        };
        // :714-731
        let Some(pieces) = self.contig(s, src_iova, last) else {
            return Ok(Outcome::errno(Errno::ENOENT, Rule::IoasCopySourceHole));
        };
        let d = match self.ioas_index(dst)? {
            Ok(d) => d,
            Err(o) => return Ok(o),
        };
        Ok(
            match self.place(d, &pieces, length, dst_iova, read, write) {
                Ok((v, _)) => Outcome::value(Value::U64(v), Rule::IoasCopy),
                Err(o) => o,
            },
        )
    }

    fn unmap(&mut self, i: usize, iova: u64, length: u64) -> Outcome {
        // ioas.c iommufd_ioas_unmap:351-354
        let (first, last, all) = if iova == 0 && length == u64::MAX {
            (0, u64::MAX, true)
        } else {
            // :356-358
            if iova == u64::MAX || length == u64::MAX {
                return Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow);
            }
            // io_pagetable.c iopt_unmap_iova:853-857
            if length == 0 {
                return Outcome::errno(Errno::EINVAL, Rule::IoasZeroLength);
            }
            let Some(last) = iova.checked_add(length - 1) else {
                return Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow);
            };
            (iova, last, false)
        };
        // iopt_unmap_iova_range:758-827: areas in address order
        let hit: Vec<(u64, u64)> = self.ioas[i]
            .areas
            .iter()
            .filter(|(s, a)| interval::overlaps((**s, a.last), (first, last)))
            .map(|(s, a)| (*s, a.last))
            .collect();
        let mut unmapped = 0u64;
        for (s, l) in hit {
            // :775-778
            if s < first || l > last {
                return Outcome::errno(Errno::ENOENT, Rule::IoasUnmapPartial);
            }
            self.ioas[i].areas.remove(&s);
            unmapped += l - s + 1;
        }
        if all {
            return Outcome::value(Value::U64(unmapped), Rule::IoasUnmapAll);
        }
        // ioas.c:364-367
        if unmapped == 0 {
            return Outcome::errno(Errno::ENOENT, Rule::IoasUnmapNothing);
        }
        Outcome::value(Value::U64(unmapped), Rule::IoasUnmap)
    }

    fn access_rw(&self, mem: &Memory, i: usize, iova: u64, len: u64, write: bool) -> Outcome {
        // selftest.c iommufd_test_access_rw:1646-1647
        if len > 16 << 20 {
            return Outcome::errno(Errno::ENOMEM, Rule::AccessRwTooLong);
        }
        // device.c iommufd_access_rw:1502-1505
        if len == 0 {
            return Outcome::errno(Errno::EINVAL, Rule::AccessRwZero);
        }
        let Some(last) = iova.checked_add(len - 1) else {
            return Outcome::errno(Errno::EOVERFLOW, Rule::IoasOverflow);
        };
        // :1515-1537 contiguous areas, each with the permission
        let areas = &self.ioas[i].areas;
        let mut segs = Vec::new();
        let mut cur = iova;
        let fail = |e: Errno, r: Rule, segs: Vec<Segment>| {
            let mut o = Outcome::errno(e, r);
            // Reads copy to the user only on success; writes land area by area.
            if write {
                o.dma = segs;
            }
            o
        };
        loop {
            let Some((start, a)) = areas.range(..=cur).next_back() else {
                return fail(Errno::ENOENT, Rule::AccessRwHole, segs);
            };
            if a.last < cur || (cur != iova && *start != cur) {
                return fail(Errno::ENOENT, Rule::AccessRwHole, segs);
            }
            // :1524-1527 check_area_prot:1375-1380
            if !(if write { a.write } else { a.read }) {
                return fail(Errno::EPERM, Rule::AccessRwProt, segs);
            }
            let end = a.last.min(last);
            let target = target_at(mem, a.ua + (cur - start), true);
            push_segment(
                &mut segs,
                Segment {
                    iova: cur,
                    len: end - cur + 1,
                    target,
                },
            );
            if a.last >= last {
                break;
            }
            cur = a.last + 1;
        }
        let mut o = Outcome::value(Value::Null, Rule::AccessRw);
        o.dma = segs;
        o
    }

    /// Where the edu device's DMA of `[iova, iova + len)` goes: through
    /// the areas of the IOAS it is attached to, faulting elsewhere (and
    /// everywhere when it is not attached).
    pub fn translate(&self, mem: &Memory, iova: u64, len: u64, dir: Direction) -> Vec<Segment> {
        walk(iova, len, |pos| {
            let hit = self.device.and_then(|(i, _)| {
                self.ioas[i]
                    .areas
                    .range(..=pos)
                    .next_back()
                    .filter(|(_, a)| a.last >= pos)
                    .map(|(s, a)| (*s, *a))
            });
            match hit {
                Some((s, a)) => {
                    let allowed = match dir {
                        Direction::Read => a.read,
                        Direction::Write => a.write,
                    };
                    (
                        target_at(mem, a.ua + (pos - s), allowed),
                        u128::from(a.last) + 1,
                    )
                }
                None => (Target::Fault, u128::from(pos / 4096 * 4096) + 4096),
            }
        })
    }

    /// Whether a mock domain is alive (its selftest object still has its id).
    pub fn mock_alive(&self, m: MockId) -> bool {
        self.mocks
            .get(m.0)
            .is_some_and(|x| self.objects.get(&x.stdev) == Some(&Obj::Stdev(m.0)))
    }

    /// The IOAS of an access.
    pub fn access_ioas(&self, a: AccessId) -> Option<IoasId> {
        self.accesses.get(a.0).map(|x| IoasId(x.ioas))
    }
}

#[cfg(test)]
mod tests {
    use super::{Iommufd, IommufdParams};
    use crate::errno::Errno;
    use crate::mem::{BufferRange, Memory};
    use crate::op::{IoasId, Op};
    use crate::outcome::{Reply, Value};
    use crate::rule::Rule;

    /// scenarios/mock/ioas_rules.toml, step by step.
    #[test]
    fn ioas_rules_scenario() {
        let mut mem = Memory::new();
        let mut f = Iommufd::new(IommufdParams::q35_mock_7_2());
        let io = IoasId(0);
        let run = |f: &mut Iommufd, mem: &Memory, op: Op| f.apply(mem, &op).unwrap();
        run(&mut f, &mem, Op::IoasAlloc);
        let r = run(&mut f, &mem, Op::IoasIovaRanges { ioas: io });
        assert_eq!(
            r.reply,
            Reply::Value(Value::IovaRanges {
                ranges: vec![(0, u64::MAX)],
                alignment: 1
            })
        );
        run(&mut f, &mem, Op::MockDomain { ioas: io });
        let r = run(&mut f, &mem, Op::IoasIovaRanges { ioas: io });
        assert_eq!(
            r.reply,
            Reply::Value(Value::IovaRanges {
                ranges: vec![(16 << 20, 0x7fff_ffff)],
                alignment: 2048
            })
        );
        run(
            &mut f,
            &mem,
            Op::MockAddReserved {
                ioas: io,
                start: 32 << 20,
                length: 1 << 20,
            },
        );
        let buf = mem.alloc(1 << 20, false);
        let map = |iova: Option<u64>| Op::IoasMap {
            ioas: io,
            range: BufferRange::whole(buf),
            iova,
            read: true,
            write: true,
        };
        assert_eq!(
            run(&mut f, &mem, map(Some(32 << 20))).errno_of(),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            run(&mut f, &mem, map(Some(4 << 20))).errno_of(),
            Some(Errno::EINVAL)
        );
        run(
            &mut f,
            &mem,
            Op::IoasAllowIovas {
                ioas: io,
                ranges: vec![(64 << 20, 0x40f_ffff)],
            },
        );
        let auto = run(&mut f, &mem, map(None));
        assert_eq!(
            (auto.number(), auto.rule),
            (Some(64 << 20), Rule::IoasAutoIova)
        );
        assert_eq!(run(&mut f, &mem, map(None)).errno_of(), Some(Errno::ENOSPC));
        assert!(run(&mut f, &mem, map(Some(128 << 20))).is_ok());
        assert_eq!(
            run(&mut f, &mem, map(Some(0x808_0000))).errno_of(),
            Some(Errno::EEXIST)
        );
        let unmap = |iova, length| Op::IoasUnmap {
            ioas: io,
            iova,
            length,
        };
        assert_eq!(
            run(&mut f, &mem, unmap(128 << 20, 512 << 10)).errno_of(),
            Some(Errno::ENOENT)
        );
        assert_eq!(
            run(&mut f, &mem, unmap(128 << 20, 1 << 20)).number(),
            Some(1 << 20)
        );
        assert_eq!(
            run(&mut f, &mem, unmap(0, u64::MAX)).number(),
            Some(1 << 20)
        );
        assert_eq!(run(&mut f, &mem, unmap(0, u64::MAX)).number(), Some(0));
        assert_eq!(
            run(&mut f, &mem, unmap(64 << 20, 1 << 20)).rule,
            Rule::IoasUnmapNothing
        );
    }
}
