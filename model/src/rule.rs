//! The named rules that decide an operation's outcome.  Every outcome the
//! model predicts carries the rule that decided it (and the side rules that
//! fired on the way), so a mismatch with the guest names the rule to look
//! at, and the seed-versus-kernel table names the rules that differ.  Each
//! rule cites where it comes from: for the kernel the file, function and
//! lines of Debian's Linux 7.2.13 tree (6.12.95 has the same code on these
//! paths unless the rule says otherwise), for QEMU 10.0.2 its file and
//! function, for the seed the sentence of the seed document or "silent"
//! with the choice the model makes.

/// Who a rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// The VFIO sPAPR TCE v2 container on pseries (kernel and hypervisor).
    Spapr,
    /// The windowed IOAS the seed document proposes.
    Seed,
    /// iommufd's IOAS and the selftest mock domain.
    Iommufd,
    /// The model itself (bookkeeping, device DMA).
    Model,
}

macro_rules! rules {
    ($($(#[doc = $doc:literal])* $variant:ident = $family:ident, $name:literal, $source:literal;)*) => {
        /// A rule of one of the modelled interfaces.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rule {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Rule {
            /// Every rule, in declaration order.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            /// Its short name (kebab case), as reports and tables print it.
            pub fn name(self) -> &'static str {
                match self { $(Rule::$variant => $name,)* }
            }

            /// Where it comes from: `file function:lines` (Linux 7.2.13,
            /// QEMU 10.0.2) or the seed's words.
            pub fn source(self) -> &'static str {
                match self { $(Rule::$variant => $source,)* }
            }

            /// What it says (its doc comment).
            pub fn summary(self) -> &'static str {
                match self { $(Rule::$variant => concat!($($doc, " "),*).trim(),)* }
            }

            /// Whose rule it is.
            pub fn family(self) -> Family {
                match self { $(Rule::$variant => Family::$family,)* }
            }
        }
    };
}

rules! {
    // ---- sPAPR TCE v2 container (drivers/vfio/vfio_iommu_spapr_tce.c) ----
    /// GET_INFO reports the PE's default window and DDW capabilities.
    SpaprInfo = Spapr, "tce-info",
        "vfio_iommu_spapr_tce.c tce_iommu_ioctl:857-904";
    /// The guest kernel crashed at an earlier step: nothing answers.
    AfterCrash = Model, "after-crash", "model";
    /// REGISTER_MEMORY needs a PAGE_SIZE-aligned address and size that do not wrap: EINVAL.
    RegisterMisaligned = Spapr, "register-misaligned",
        "vfio_iommu_spapr_tce.c tce_iommu_register_pages:144-146";
    /// Registering the very region the container already holds: EBUSY.
    RegisterTwice = Spapr, "register-twice",
        "vfio_iommu_spapr_tce.c tce_iommu_register_pages:148-154";
    /// A zero-size registration reaches vzalloc(0), which warns (WARN_ON_ONCE: the first time per boot) and fails: ENOMEM.
    RegisterZeroSize = Spapr, "register-zero-size",
        "arch/powerpc/mm/book3s64/iommu_api.c mm_iommu_do_alloc:92-97; mm/vmalloc.c __vmalloc_node_range_noprof:4037";
    /// A region partly overlapping another registered region of the process: EINVAL.
    RegisterOverlap = Spapr, "register-overlap",
        "arch/powerpc/mm/book3s64/iommu_api.c mm_iommu_do_alloc:132-141";
    /// The exact region is still in the process's list (an unregister with live mappings left it there): the container takes it back.
    RegisterReuse = Spapr, "register-reuse",
        "vfio_iommu_spapr_tce.c tce_iommu_register_pages:148-171; iommu_api.c mm_iommu_get:308-327";
    /// Pins the region, adds it to the container and enables the container (v2: mapping needs this).
    Register = Spapr, "register",
        "vfio_iommu_spapr_tce.c tce_iommu_register_pages:157-171";
    /// UNREGISTER_MEMORY before the container has an mm (no REGISTER, CREATE or REMOVE yet): EPERM.
    UnregisterBeforeMm = Spapr, "unregister-before-mm",
        "vfio_iommu_spapr_tce.c tce_iommu_ioctl:1052-1053";
    /// UNREGISTER_MEMORY needs a PAGE_SIZE-aligned address and size: EINVAL.
    UnregisterMisaligned = Spapr, "unregister-misaligned",
        "vfio_iommu_spapr_tce.c tce_iommu_unregister_pages:112-113";
    /// No registered region of exactly that address and size in this container: ENOENT.
    UnregisterUnknown = Spapr, "unregister-unknown",
        "vfio_iommu_spapr_tce.c tce_iommu_unregister_pages:115-127";
    /// The region leaves the container and, without mappings, the process.
    Unregister = Spapr, "unregister",
        "vfio_iommu_spapr_tce.c tce_iommu_unregister_pages:128-133; iommu_api.c mm_iommu_put:249-285";
    /// With live mappings the last mm_iommu_put's EBUSY is ignored: the ioctl returns 0, the region leaves the container but stays pinned in the process (maps can still find it).
    UnregisterWhileMapped = Spapr, "unregister-while-mapped",
        "vfio_iommu_spapr_tce.c tce_iommu_unregister_pages:129-133; iommu_api.c mm_iommu_put:266-271";
    /// MAP/UNMAP before any successful REGISTER_MEMORY (v2 enables the container only there): EPERM.
    NotEnabled = Spapr, "not-enabled",
        "vfio_iommu_spapr_tce.c tce_iommu_ioctl:911-912 (map), 977-978 (unmap)";
    /// The default window is created on demand by the first MAP, UNMAP or CREATE after the group was attached (4K pages, tce32_size).
    DefaultWindowCreated = Spapr, "default-window-created",
        "vfio_iommu_spapr_tce.c tce_iommu_create_default_window:748-775 (called at 926, 993, 1133; pending set at attach 1299-1301)";
    /// No DMA window holds the IOVA: ENXIO.
    NoWindow = Spapr, "no-window",
        "vfio_iommu_spapr_tce.c tce_iommu_find_table:203-224 via tce_iommu_ioctl:930-932 (map), 997-999 (unmap)";
    /// MAP size or user address not aligned to the window's IOMMU page: EINVAL.
    MapSizeOrVaddrMisaligned = Spapr, "map-size-or-vaddr-misaligned",
        "vfio_iommu_spapr_tce.c tce_iommu_ioctl:934-936";
    /// MAP with neither READ nor WRITE: EINVAL.
    MapNoDirection = Spapr, "map-no-direction",
        "vfio_iommu_spapr_tce.c tce_iommu_ioctl:939-949";
    /// Bug 0001: an IOVA misaligned to the window's IOMMU page fails iommu_tce_check_ioba() with -EINVAL, but the `||` macro turns it into 1, which the ioctl returns (value 1, nothing done).  With fix 0001: EINVAL.
    MisalignedIovaReturnsOne = Spapr, "misaligned-iova-returns-one",
        "arch/powerpc/include/asm/iommu.h iommu_tce_put_param_check:309-313, iommu_tce_clear_param_check:305-308; arch/powerpc/kernel/iommu.c iommu_tce_check_ioba:1072-1073";
    /// Fix 0002: MAP checks its whole range against the window; past the end it fails like a misaligned IOVA (1 without fix 0001, EINVAL with it).
    MapPastWindowEnd = Spapr, "map-past-window-end",
        "kernel-patches/fixes/0002 (iommu_tce_put_param_check with npages); arch/powerpc/kernel/iommu.c iommu_tce_check_ioba:1079";
    /// Bug 0002: MAP checks only its first page; a TCE past the kernel's table fails in the hypervisor (H_PARAMETER) and the error path reads the table's userspace view past its end: a read beyond the vzalloc'ed view crashes the guest kernel.
    MapPastEndCrash = Spapr, "map-past-end-crash",
        "vfio_iommu_spapr_tce.c tce_iommu_build_v2:579-588, tce_iommu_unuse_page_v2:409-429; pseries/iommu.c tce_exchange_pseries:703-726, tce_useraddr_pSeriesLP:728-732, pseries_tce_iommu_userspace_view_alloc:172-189";
    /// Bug 0002: the hypervisor takes a TCE past the kernel's table (its window is bigger) and the write to the userspace view past its end crashes the guest kernel.
    MapPastEndViewWriteCrash = Spapr, "map-past-end-view-write-crash",
        "vfio_iommu_spapr_tce.c tce_iommu_build_v2:590-593; pseries/iommu.c tce_useraddr_pSeriesLP:728-732, pseries_tce_iommu_userspace_view_alloc:172-189";
    /// Bug 0002: the TCE past the table fails with H_PARAMETER, the view read lands in the view's page padding, the map is rolled back and the raw -4 is returned: EINTR.
    MapPastEndHcallError = Spapr, "map-past-end-hcall-error",
        "vfio_iommu_spapr_tce.c tce_iommu_build_v2:579-588, 598-603; pseries/iommu.c tce_exchange_pseries:703-726";
    /// Bug 0002: the hypervisor's window is bigger than the kernel's table and the view's padding absorbs the writes: the map succeeds with TCEs past the window the kernel never clears.
    MapPastEndBeyondTable = Spapr, "map-past-end-beyond-table",
        "vfio_iommu_spapr_tce.c tce_iommu_build_v2:556-603; pseries/iommu.c spapr_tce_create_table:2138-2141 (default window limited to window_size)";
    /// A page of the MAP is not inside registered memory: EINVAL, the pages mapped so far are cleared.
    MapNotPreregistered = Spapr, "map-not-preregistered",
        "vfio_iommu_spapr_tce.c tce_iommu_prereg_ua_to_hpa:396-398 via tce_iommu_build_v2:560-563, 598-599";
    /// The registered memory's page size (PAGE_SIZE, or the hugetlb page) is smaller than the window's IOMMU page: EINVAL.
    MapBackingTooSmall = Spapr, "map-backing-too-small",
        "arch/powerpc/mm/book3s64/iommu_api.c mm_iommu_ua_to_hpa:339-340, mm_iommu_do_alloc:91,150-156 via tce_iommu_prereg_ua_to_hpa:400-402";
    /// MAP over existing TCEs exchanges them: the old mapping is silently replaced.
    MapReplaces = Spapr, "map-replaces",
        "vfio_iommu_spapr_tce.c tce_iommu_build_v2:579-593 (old TCE returned by iommu_tce_xchg_no_kill)";
    /// MAP puts one TCE per IOMMU page: 0.
    Map = Spapr, "map",
        "vfio_iommu_spapr_tce.c tce_iommu_ioctl:951-970, tce_iommu_build_v2:547-604";
    /// UNMAP size not aligned to the window's IOMMU page: EINVAL.
    UnmapSizeMisaligned = Spapr, "unmap-size-misaligned",
        "vfio_iommu_spapr_tce.c tce_iommu_ioctl:1001-1002";
    /// UNMAP running past the window's end fails iommu_tce_check_ioba() (7.2.8 and later, or fix 0003): 1 without fix 0001, EINVAL with it.
    UnmapPastWindowEnd = Spapr, "unmap-past-window-end",
        "arch/powerpc/kernel/iommu.c iommu_tce_check_ioba:1079 via iommu_tce_clear_param_check (vfio_iommu_spapr_tce.c:1004-1007)";
    /// Bug 0003 (6.12.95): iommu_tce_check_ioba() checks only the first page, so an UNMAP past the window's end clears what is inside and returns 0.
    UnmapPastEndClears = Spapr, "unmap-past-end-clears",
        "6.12.95 arch/powerpc/kernel/iommu.c iommu_tce_check_ioba:1077 (ioba + 1 > offset + size)";
    /// Clearing a TCE the hypervisor holds past the kernel's table (left by bug 0002) reads the userspace view past its allocation: the guest kernel crashes.
    UnmapPastEndCrash = Spapr, "unmap-past-end-crash",
        "vfio_iommu_spapr_tce.c tce_iommu_clear:463-473, tce_iommu_unuse_page_v2:409-429; pseries/iommu.c tce_useraddr_pSeriesLP:728-732";
    /// UNMAP clears every TCE of the range (nothing mapped is fine): 0.
    Unmap = Spapr, "unmap",
        "vfio_iommu_spapr_tce.c tce_iommu_clear:431-482 via tce_iommu_ioctl:1009-1014";
    /// Both table slots of the container are in use: ENOSPC.
    CreateNoFreeSlot = Spapr, "create-no-free-slot",
        "vfio_iommu_spapr_tce.c tce_iommu_find_free_table:226-236 via tce_iommu_create_window:652-654";
    /// page_shift is not in GET_INFO's pgsizes: EINVAL.
    CreatePageSizeUnsupported = Spapr, "create-page-size-unsupported",
        "vfio_iommu_spapr_tce.c tce_iommu_create_window:663-664";
    /// The table would have no bytes (window_size >> (page_shift - 3) == 0): EINVAL.
    CreateTableSizeZero = Spapr, "create-table-size-zero",
        "vfio_iommu_spapr_tce.c tce_iommu_create_table:616-619; pseries/iommu.c spapr_tce_get_table_size:1935-1944";
    /// The window size is not a power of two: EINVAL.
    CreateNotPowerOfTwo = Spapr, "create-not-power-of-two",
        "pseries/iommu.c spapr_tce_create_table:2079-2080";
    /// More than one TCE level requested: EINVAL.
    CreateTooManyLevels = Spapr, "create-too-many-levels",
        "pseries/iommu.c spapr_tce_create_table:2079-2080 (levels > 1)";
    /// The PE is on failed_ddw_pdn_list (an earlier DDW attempt failed): ENODEV for every create, even of the default window, until the guest reboots.
    CreateDdwDisabled = Spapr, "create-ddw-disabled",
        "pseries/iommu.c spapr_tce_create_table:2095-2101";
    /// Slot 0 with 4K pages and at most tce32_size is the default window, restored with ibm,reset-pe-dma-windows and limited to window_size (below 4K: a window of no entries, and a vmalloc warning): start_addr is the default window's base.
    CreateDefaultWindow = Spapr, "create-default-window",
        "pseries/iommu.c spapr_tce_create_table:2109-2151, is_default_window_request:2047-2055";
    /// Slot 0 while a 64-bit window (DDW) exists: EPERM.
    CreateSlot0WhileDdw = Spapr, "create-slot0-while-ddw",
        "pseries/iommu.c spapr_tce_create_table:2111-2118, 2124-2131";
    /// More TCEs than the hypervisor's largest available block (QEMU: 2^37): EINVAL.  Also a window smaller than its IOMMU page: the check's shift count goes negative and ppc64's `srd` shifts the block count out (found by `cargo xtask fuzz`).
    CreateTooLarge = Spapr, "create-too-large",
        "pseries/iommu.c spapr_tce_create_table:2169-2176; QEMU hw/ppc/spapr_rtas_ddw.c rtas_ibm_query_pe_dma_window";
    /// ibm,create-pe-dma-window fails (no free LIOBN, or QEMU 10.0's 32-bit TCE count truncated to 0): ENODEV and the PE goes on failed_ddw_pdn_list.
    CreateDdwRtasFailed = Spapr, "create-ddw-rtas-failed",
        "pseries/iommu.c spapr_tce_create_table:2178-2181, 2238-2243; QEMU hw/ppc/spapr_rtas_ddw.c rtas_ibm_create_pe_dma_window";
    /// The DDW property already exists (a second DDW): EEXIST, the new window is removed and the PE goes on failed_ddw_pdn_list.
    CreateDdwPropertyExists = Spapr, "create-ddw-property-exists",
        "pseries/iommu.c spapr_tce_create_table:2188-2192, 2229-2243";
    /// A dynamic DMA window: start_addr is what the hypervisor returns (QEMU: the 64-bit base while any window is active, the 32-bit base otherwise).
    CreateDdw = Spapr, "create-ddw",
        "pseries/iommu.c spapr_tce_create_table:2155-2227; QEMU hw/ppc/spapr_rtas_ddw.c rtas_ibm_create_pe_dma_window (win_addr)";
    /// REMOVE of start_addr 0 while the default window is still pending only cancels it: 0.
    RemovePendingDefault = Spapr, "remove-pending-default",
        "vfio_iommu_spapr_tce.c tce_iommu_ioctl:1172-1175";
    /// No window holds start_addr (any address inside a window finds it): EINVAL.
    RemoveUnknown = Spapr, "remove-unknown",
        "vfio_iommu_spapr_tce.c tce_iommu_remove_window:716-718, tce_iommu_find_table:203-224";
    /// The window's TCEs are cleared, then it is unset (default window: its property only; a DDW: ibm,remove-pe-dma-window): 0.
    Remove = Spapr, "remove",
        "vfio_iommu_spapr_tce.c tce_iommu_remove_window:708-746; pseries/iommu.c spapr_tce_unset_window:2274-2336, remove_dma_window_named:1027-1062";
    /// Closing the container (its group given back, then the container):
    /// every table cleared and unset, each preregistered region of the
    /// container put; a region without mappings leaves the process.  What
    /// is left (regions an unregister with live mappings kept, DDW disabled
    /// for the PE) stays for the process's next container.
    Release = Spapr, "release",
        "vfio_iommu_spapr_tce.c tce_iommu_release_ownership:1190-1208, tce_iommu_release:344-380, tce_iommu_prereg_free:89-100; iommu_api.c mm_iommu_put:249-285";
    /// A preregistered region still has mappings when the container is
    /// closed (TCEs past a table, bug 0002): mm_iommu_put's EBUSY hits the
    /// WARN_ON in tce_iommu_release and the region stays pinned in the process.
    ReleaseBusyRegion = Spapr, "release-busy-region",
        "vfio_iommu_spapr_tce.c tce_iommu_release:370-371; iommu_api.c mm_iommu_put:266-271";
    /// A device DMA through a TCE whose preregistered region an earlier
    /// container of the process left behind: the region pins the pages of
    /// the buffer that was unmapped since, so the DMA reaches those, not the
    /// buffer now at that address.
    StaleRegionDma = Spapr, "stale-region-dma",
        "arch/powerpc/mm/book3s64/iommu_api.c mm_iommu_ua_to_hpa:330-348 (the region's hpas, pinned at registration)";
    /// edu.dma always completes; each page goes through the hypervisor's TCE windows (or faults).
    SpaprDma = Spapr, "spapr-dma",
        "QEMU hw/ppc/spapr_iommu.c spapr_tce_translate_iommu:113-142; hw/misc/edu.c";

    // ---- the seed's windowed IOAS ----
    /// GET_INFO is answered from the hardware description (seed: silent; the same values as the kernel).
    SeedInfo = Seed, "seed-info",
        "seed: silent (the hardware capabilities are what attach \"recalculates\")";
    /// Memory preregistration is not part of the seed (IOAS_MAP pins at map time): REGISTER/UNREGISTER are accepted no-ops.
    SeedNoPreregistration = Seed, "seed-no-preregistration",
        "seed: silent (an IOAS has no preregistration)";
    /// CREATE_WINDOW: the first free hardware window that can hold it; start_addr is its fixed base.
    SeedCreate = Seed, "seed-create",
        "seed: \"Unspecified attributes (including base address) are allocated by the kernel, based on the hardware capabilities\"";
    /// No free hardware window (the IBM IOMMU has 2): ENOSPC (errno chosen by the model).
    SeedCreateNoWindow = Seed, "seed-create-no-window",
        "seed: \"The IBM IOMMU hardware allows for 2 IOVA windows\"; errno silent";
    /// The page size is not a multiple of a hardware page size: EINVAL (errno chosen).
    SeedCreatePageSize = Seed, "seed-create-page-size",
        "seed: \"creating a window with a pagesize that's a multiple of the hardware pagesize\" is fine";
    /// The window size is zero or not a multiple of its page size: EINVAL (seed: silent; power of two not required).
    SeedCreateSize = Seed, "seed-create-size",
        "seed: silent on sizes (\"creating a small window within the hardware's much larger valid address range is fine\")";
    /// No free hardware window is big enough: EINVAL (errno chosen).
    SeedCreateTooLarge = Seed, "seed-create-too-large",
        "seed: \"If any of the specified attributes are incompatible with the underlying hardware, the operation fails\"";
    /// More levels than the hardware has: EINVAL (levels are an "additional attribute").
    SeedCreateLevels = Seed, "seed-create-levels",
        "seed: \"optional additional attributes\" incompatible with the hardware fail";
    /// REMOVE_WINDOW reverses a single CREATE_WINDOW and deletes its maps: 0.
    SeedRemove = Seed, "seed-remove",
        "seed: \"A REMOVE_WINDOW operation reverses a single CREATE_WINDOW ... This would also delete any MAPs within that window\"";
    /// No window starts at start_addr: EINVAL (seed: silent; only a created window's base names it).
    SeedRemoveUnknown = Seed, "seed-remove-unknown",
        "seed: silent";
    /// The IOVA is in no window (a new IOAS has none): ENXIO (errno chosen).
    SeedOutsideWindows = Seed, "seed-outside-windows",
        "seed: \"MAP/UNMAP operations are only permitted within an existing IOVA window\"; \"A newly created kernel-managed IOAS has *no* IOVA windows\"";
    /// IOVA or length not aligned to the window's page size: EINVAL.
    SeedMisaligned = Seed, "seed-misaligned",
        "seed: \"(and with addresses aligned to the window's pagesize)\"; length: silent, required too";
    /// The range runs past the end of its window: EINVAL.
    SeedCrossesWindowEnd = Seed, "seed-crosses-window-end",
        "seed: \"only permitted within an existing IOVA window\"";
    /// Zero length: EINVAL (seed: silent; IOAS_MAP/UNMAP's rule).
    SeedZeroLength = Seed, "seed-zero-length",
        "seed: silent; io_pagetable.c iopt_alloc_area_pages:273-276, iopt_unmap_iova:853-854";
    /// Neither READ nor WRITE: EINVAL (IOAS_MAP's rule).
    SeedNoDirection = Seed, "seed-no-direction",
        "seed: silent; ioas.c iommufd_ioas_map:260-262";
    /// The user address is not aligned to the window's page (or its memory's pages are smaller than the smallest hardware page): EINVAL (seed: silent).
    SeedUserMemory = Seed, "seed-user-memory",
        "seed: silent";
    /// MAP over an existing mapping: EEXIST (seed: silent; IOAS_MAP's rule).
    SeedOverlap = Seed, "seed-overlap",
        "seed: silent; io_pagetable.c iopt_check_iova:200-202";
    /// MAP inside one window: 0 (vfio.map_dma's convention).
    SeedMap = Seed, "seed-map",
        "seed: \"MAP/UNMAP operations are only permitted within an existing IOVA window\"";
    /// UNMAP must cover whole mappings: ENOENT (seed: silent; IOAS_UNMAP's rule, mappings before the split one are gone).
    SeedUnmapPartial = Seed, "seed-unmap-partial",
        "seed: silent; io_pagetable.c iopt_unmap_iova_range:775-778";
    /// UNMAP of a range with nothing mapped: ENOENT (seed: silent; IOAS_UNMAP's rule).
    SeedUnmapNothing = Seed, "seed-unmap-nothing",
        "seed: silent; ioas.c iommufd_ioas_unmap:364-367";
    /// UNMAP of whole mappings inside one window: 0 (vfio.unmap_dma's convention).
    SeedUnmap = Seed, "seed-unmap",
        "seed: \"MAP/UNMAP operations are only permitted within an existing IOVA window\"";
    /// edu.dma goes through the windows' mappings (or faults).
    SeedDma = Seed, "seed-dma", "seed: windows hold the mappings";

    // ---- iommufd IOAS (drivers/iommu/iommufd) ----
    /// IOAS_ALLOC: a new, empty IOAS.
    IoasAlloc = Iommufd, "ioas-alloc", "ioas.c iommufd_ioas_alloc_ioctl:38-64";
    /// MAP/COPY with neither READABLE nor WRITEABLE: EINVAL.
    IoasNoDirection = Iommufd, "ioas-no-direction",
        "ioas.c iommufd_ioas_map:260-262, iommufd_ioas_copy:304-306";
    /// An IOVA, length or end past ULONG_MAX (or the user range wraps): EOVERFLOW.
    IoasOverflow = Iommufd, "ioas-overflow",
        "ioas.c iommufd_ioas_map:257-258, iommufd_ioas_copy:300-302, iommufd_ioas_unmap:356-358; pages.c iopt_alloc_user_pages:1406-1407; io_pagetable.c iopt_check_iova:193-194, iopt_unmap_iova:856-857, iopt_get_pages:710-711";
    /// A zero length: EINVAL.
    IoasZeroLength = Iommufd, "ioas-zero-length",
        "pages.c iopt_alloc_pages:1372-1373; io_pagetable.c iopt_alloc_area_pages:273-276, iopt_unmap_iova:853-854, iopt_get_pages:708-709";
    /// A length not aligned to the IOAS's iova_alignment: EINVAL.
    IoasLengthMisaligned = Iommufd, "ioas-length-misaligned",
        "io_pagetable.c iopt_alloc_area_pages:273-276";
    /// The automatic IOVA's alignment (from the user address) is below the IOAS's: EINVAL.
    IoasAutoAlignment = Iommufd, "ioas-auto-alignment",
        "io_pagetable.c iopt_alloc_iova:153-154";
    /// No allowed hole fits the automatic IOVA: ENOSPC.
    IoasNoSpace = Iommufd, "ioas-no-space",
        "io_pagetable.c iopt_alloc_iova:156-180";
    /// The automatic IOVA: the first aligned fit in the allowed ranges (all of [PAGE_SIZE, ULONG_MAX - PAGE_SIZE] without any), outside reserved ranges and areas.
    IoasAutoIova = Iommufd, "ioas-auto-iova",
        "io_pagetable.c iopt_alloc_iova:120-181, __alloc_iova_check_range:75-92";
    /// A fixed IOVA not aligned to the IOAS's iova_alignment: EINVAL.
    IoasFixedMisaligned = Iommufd, "ioas-fixed-misaligned",
        "io_pagetable.c iopt_check_iova:190-191";
    /// A fixed range meets a reserved range: EINVAL.
    IoasFixedReserved = Iommufd, "ioas-fixed-reserved",
        "io_pagetable.c iopt_check_iova:196-198";
    /// A fixed range meets an existing area: EEXIST.
    IoasFixedExists = Iommufd, "ioas-fixed-exists",
        "io_pagetable.c iopt_check_iova:200-202";
    /// The user address's offset in its page is not aligned to iova_alignment: EINVAL.
    IoasPageOffsetMisaligned = Iommufd, "ioas-page-offset-misaligned",
        "io_pagetable.c iopt_insert_area:220-222";
    /// COPY asks for WRITE from pages mapped read-only: EPERM.
    IoasCopyWriteFromReadOnly = Iommufd, "ioas-copy-write-from-read-only",
        "io_pagetable.c iopt_insert_area:216-217";
    /// A fixed-IOVA map: the IOVA.
    IoasMap = Iommufd, "ioas-map", "ioas.c iommufd_ioas_map:244-281";
    /// iova 0, length U64_MAX unmaps everything (nothing is fine): the length unmapped.
    IoasUnmapAll = Iommufd, "ioas-unmap-all",
        "ioas.c iommufd_ioas_unmap:351-354; io_pagetable.c iopt_unmap_all:862-866";
    /// UNMAP splitting an area: ENOENT (areas before it in the range are already unmapped).
    IoasUnmapPartial = Iommufd, "ioas-unmap-partial",
        "io_pagetable.c iopt_unmap_iova_range:775-778, 806-826";
    /// UNMAP of a range without areas: ENOENT.
    IoasUnmapNothing = Iommufd, "ioas-unmap-nothing", "ioas.c iommufd_ioas_unmap:364-367";
    /// UNMAP of whole areas: the length unmapped.
    IoasUnmap = Iommufd, "ioas-unmap", "io_pagetable.c iopt_unmap_iova_range:741-836";
    /// COPY's source range is not covered by contiguous areas: ENOENT.
    IoasCopySourceHole = Iommufd, "ioas-copy-source-hole",
        "io_pagetable.c iopt_get_pages:714-731, iopt_area_contig_init/next:33-73";
    /// COPY maps the source's pages (shared, not pinned again) at the destination: its IOVA.
    IoasCopy = Iommufd, "ioas-copy", "ioas.c iommufd_ioas_copy:283-338";
    /// ALLOW_IOVAS with start >= last: EINVAL.
    IoasAllowBadRange = Iommufd, "ioas-allow-bad-range",
        "ioas.c iommufd_ioas_load_iovas:129-130";
    /// ALLOW_IOVAS with overlapping ranges: EINVAL.
    IoasAllowOverlap = Iommufd, "ioas-allow-overlap",
        "ioas.c iommufd_ioas_load_iovas:132-133";
    /// An allowed range meets a reserved one: EADDRINUSE, nothing changes.
    IoasAllowReserved = Iommufd, "ioas-allow-reserved",
        "io_pagetable.c iopt_set_allow_iova:877-884";
    /// ALLOW_IOVAS replaces the list (empty clears it); it limits automatic IOVAs only.
    IoasAllow = Iommufd, "ioas-allow", "io_pagetable.c iopt_set_allow_iova:869-888";
    /// IOVA_RANGES: the holes of the reserved ranges (not the allowed list), and iova_alignment.
    IoasIovaRanges = Iommufd, "ioas-iova-ranges", "ioas.c iommufd_ioas_iova_ranges:86-104";
    /// A reservation meeting an area or an allowed range: EADDRINUSE.
    IoasReserveInUse = Iommufd, "ioas-reserve-in-use",
        "io_pagetable.c iopt_reserve_iova:897-899";
    /// mock.add_reserved: a reserved range owned by the test (never removed).
    IoasAddReserved = Iommufd, "ioas-add-reserved",
        "selftest.c iommufd_test_add_reserved:1163-1184";
    /// Bugs 0004/0005: the mock device gets no IOMMU on this kernel (6.12 offers it to the real IOMMU driver; without CONFIG_IOMMU_DMA its BLOCKED default domain is refused): MOCK_DOMAIN fails with EINVAL.
    MockDomainUnavailable = Iommufd, "mock-domain-unavailable",
        "docs/found-bugs.md 0004, 0005; device.c iommufd_device_bind (cache coherency check)";
    /// A domain whose smallest page is bigger than PAGE_SIZE: EINVAL.
    AttachAlignmentTooBig = Iommufd, "attach-alignment-too-big",
        "io_pagetable.c iopt_table_add_domain:1168-1174";
    /// An area not aligned to the domain's smaller page: EADDRINUSE.
    AttachMisalignedArea = Iommufd, "attach-misaligned-area",
        "io_pagetable.c iopt_table_add_domain:1175-1179, iopt_check_iova_alignment:1113-1139";
    /// The domain's aperture holes or the device's reserved regions meet an area or an allowed range: EADDRINUSE, nothing changes.
    AttachReservedInUse = Iommufd, "attach-reserved-in-use",
        "io_pagetable.c iopt_table_add_domain:1181-1193, iopt_table_enforce_dev_resv_regions:1519-1534, iopt_reserve_iova:897-899";
    /// An auto domain already on the IOAS takes the device (the same HWPT, nothing re-checked but the device's own regions).
    AttachSharedDomain = Iommufd, "attach-shared-domain",
        "device.c iommufd_device_auto_get_domain:877-901";
    /// A new auto domain: the aperture's complement becomes reserved, iova_alignment the domain's smallest page.
    Attach = Iommufd, "attach",
        "hw_pagetable.c iommufd_hwpt_paging_alloc:194-202; io_pagetable.c iopt_table_add_domain:1141-1217";
    /// Destroying the mock device (or detaching the device) drops the domain when it was its last user: its reservations go, iova_alignment is recalculated.
    Detach = Iommufd, "detach",
        "io_pagetable.c __iopt_remove_reserved_iova:911-927, iopt_calculate_iova_alignment:1219-1253";
    /// IOMMU_DESTROY of an object already gone: ENOENT.
    ObjectGone = Iommufd, "object-gone", "main.c iommufd_destroy:308-313";
    /// Object ids are allocated lowest free first, so a destroyed object's
    /// id goes to the next object made (an IOAS, a domain, a device):
    /// IOMMU_DESTROY of the old number destroys that one if nothing uses
    /// it (an IOAS without domains or accesses).
    DestroyReusedId = Iommufd, "destroy-reused-id",
        "main.c iommufd_object_alloc:56 (xa_alloc, XA_FLAGS_ALLOC1 at 334), iommufd_object_remove:255-278";
    /// ... and fails with EBUSY when something holds it: an IOAS with a
    /// domain or an access, a domain with a device, a bound device, an access.
    DestroyReusedIdBusy = Iommufd, "destroy-reused-id-busy",
        "main.c iommufd_object_remove:272-275 (refcount_dec_if_one of users)";
    /// Kernel bug (found by `cargo xtask fuzz`, Linux 7.2.13): re-attaching
    /// the attached device (VFIO cdev attach is then a replace) to an IOAS
    /// whose first domain is the selftest's mock domain offers it that
    /// domain; iommu_replace_group_handle does not check that the domain is
    /// the device's IOMMU driver's, so mock_domain_nop_attach runs on the
    /// PCI device, takes it for a mock device and spins on a "rwsem" inside
    /// the pci_dev with interrupts off: the guest hangs.
    ReplaceForeignDomainHang = Iommufd, "replace-foreign-domain-hang",
        "device.c iommufd_device_auto_get_domain:877-901, iommufd_device_do_replace:774-842; iommu.c iommu_replace_group_handle:3976-4005, __iommu_attach_group:2365-2367 (the check it lacks); selftest.c mock_domain_nop_attach:214-240";
    /// An attach's pt_id names an object that is neither an IOAS nor a
    /// domain the device can take (a device, an access, another driver's
    /// domain): EINVAL.
    AttachNotAPageTable = Iommufd, "attach-not-a-page-table",
        "device.c iommufd_device_change_pt:965-967";
    /// An IOAS id that names no IOAS any more (destroyed through a reused
    /// id, or taken by another object): ENOENT.
    IoasGone = Iommufd, "ioas-gone", "main.c iommufd_get_object:166-181 via iommufd_private.h iommufd_get_ioas:333-338";
    /// A pinning access raises iova_alignment to PAGE_SIZE; an area not aligned to it: EADDRINUSE.
    AccessAlignmentInUse = Iommufd, "access-alignment-in-use",
        "io_pagetable.c iopt_add_access:1464-1488, iopt_check_iova_alignment:1113-1139; device.c iommufd_access_create:1194-1196";
    /// mock.access_create: an access on the IOAS.
    AccessCreate = Iommufd, "access-create", "selftest.c iommufd_test_create_access:1448-1498";
    /// access_rw of more than 16 MiB: ENOMEM.
    AccessRwTooLong = Iommufd, "access-rw-too-long",
        "selftest.c iommufd_test_access_rw:1646-1647";
    /// access_rw of zero bytes: EINVAL.
    AccessRwZero = Iommufd, "access-rw-zero", "device.c iommufd_access_rw:1502-1503";
    /// An area of the range lacks the permission (WRITE to write, READ to read): EPERM (earlier areas were already written).
    AccessRwProt = Iommufd, "access-rw-prot",
        "device.c iommufd_access_rw:1524-1527, check_area_prot:1375-1380";
    /// The range is not covered by contiguous areas: ENOENT (earlier areas were already written).
    AccessRwHole = Iommufd, "access-rw-hole", "device.c iommufd_access_rw:1515-1537";
    /// access_rw copies through the areas' pages.
    AccessRw = Iommufd, "access-rw", "device.c iommufd_access_rw:1493-1542";
    /// Device DMA through the attached IOAS's areas (or a fault).
    IommufdDma = Iommufd, "iommufd-dma", "the IOMMU page table iommufd filled: io_pagetable.c iopt_fill_domain:1050-1086";
    /// mem.alloc: a buffer (the model assigns an address until the real one is set).
    MemAlloc = Model, "mem-alloc", "guest-agent mem.alloc";
    /// Closing an iommufd (devices and accesses first): every object goes
    /// with it, nothing stays for the next one.
    IommufdRelease = Iommufd, "iommufd-release",
        "main.c iommufd_fops_release:345-388";
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{Family, Rule};

    #[test]
    fn names_are_unique_kebab_and_every_rule_is_documented() {
        let mut seen = BTreeSet::new();
        for r in Rule::ALL {
            assert!(seen.insert(r.name()), "{} twice", r.name());
            assert!(
                r.name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                r.name()
            );
            assert!(!r.summary().is_empty(), "{:?}", r);
            assert!(!r.source().is_empty(), "{:?}", r);
        }
        assert_eq!(Rule::Map.family(), Family::Spapr);
        assert_eq!(Rule::SeedMap.family(), Family::Seed);
        assert!(Rule::SeedMap.source().starts_with("seed:"));
    }
}
