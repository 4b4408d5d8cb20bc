//! The model's operations, one for one with agent ops of
//! `iobench_proto::ops::OPS` (`spapr.create_window`, `vfio.map_dma`,
//! `ioas.map`, `mock.domain`, `edu.dma`, …), and their scenario steps: each
//! [`Op`] gives its agent op name and arguments ([`Op::step`]), which
//! [`Step::to_toml`] writes as a `[[step]]` table the harness's scenario
//! files accept.  Objects are named by convention: the container `$c`, the
//! edu device `$dev`, the iommufd `$fd` (bound by the prelude steps of
//! [`crate::world::World::prelude`]), buffers `$buf0…`, IOAS `$ioas0…`,
//! mock domains `$mock0…`, accesses `$acc0…` (bound by the steps that make
//! them, in order).

use std::fmt::Write as _;

use crate::dma::Direction;
use crate::mem::{BufferId, BufferRange};
use crate::outcome::{Expectation, toml_number};

/// The container's name in scenarios.
pub const CONTAINER: &str = "c";
/// The edu device's name.
pub const DEVICE: &str = "dev";
/// The iommufd's name.
pub const IOMMUFD: &str = "fd";

/// An IOAS, by allocation order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct IoasId(pub usize);

/// A mock domain (device + auto domain), by creation order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct MockId(pub usize);

/// A selftest access, by creation order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AccessId(pub usize);

impl IoasId {
    /// The name a scenario binds it to.
    pub fn name(self) -> String {
        format!("ioas{}", self.0)
    }
}

impl MockId {
    /// The name a scenario binds it to.
    pub fn name(self) -> String {
        format!("mock{}", self.0)
    }
}

impl AccessId {
    /// The name a scenario binds it to.
    pub fn name(self) -> String {
        format!("acc{}", self.0)
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Op {
    /// `mem.alloc`: a buffer.
    MemAlloc {
        /// Bytes.
        size: u64,
        /// Backed by hugetlb pages.
        hugetlb: bool,
    },
    /// `spapr.tce_info`.
    TceInfo,
    /// `spapr.register_memory`.
    Register(BufferRange),
    /// `spapr.unregister_memory`.
    Unregister(BufferRange),
    /// `spapr.create_window`.
    CreateWindow {
        /// log2 of the IOMMU page.
        page_shift: u32,
        /// Bytes.
        window_size: u64,
        /// TCE levels (the agent's default is 1).
        levels: Option<u32>,
    },
    /// `spapr.remove_window`.
    RemoveWindow {
        /// An address naming the window.
        start_addr: u64,
    },
    /// `vfio.map_dma`.
    MapDma {
        /// Where.
        iova: u64,
        /// What.
        range: BufferRange,
        /// VFIO_DMA_MAP_FLAG_READ (the device may read).
        read: bool,
        /// VFIO_DMA_MAP_FLAG_WRITE (the device may write).
        write: bool,
    },
    /// `vfio.unmap_dma`.
    UnmapDma {
        /// Where.
        iova: u64,
        /// Bytes.
        length: u64,
    },
    /// `edu.dma`: the device reads (`to_device`) or writes
    /// (`from_device`) `count` bytes at `iova`.
    EduDma {
        /// Where.
        iova: u64,
        /// Bytes (at most 4096).
        count: u64,
        /// Which way.
        direction: Direction,
    },
    /// `ioas.alloc`.
    IoasAlloc,
    /// `ioas.map`: a fixed IOVA if given, else the kernel's choice.
    IoasMap {
        /// Which IOAS.
        ioas: IoasId,
        /// What.
        range: BufferRange,
        /// Fixed IOVA.
        iova: Option<u64>,
        /// IOMMU_IOAS_MAP_READABLE.
        read: bool,
        /// IOMMU_IOAS_MAP_WRITEABLE.
        write: bool,
    },
    /// `ioas.unmap`.
    IoasUnmap {
        /// Which IOAS.
        ioas: IoasId,
        /// Where.
        iova: u64,
        /// Bytes (`u64::MAX` with iova 0: everything).
        length: u64,
    },
    /// `ioas.copy`.
    IoasCopy {
        /// From.
        src: IoasId,
        /// To.
        dst: IoasId,
        /// Source IOVA.
        src_iova: u64,
        /// Bytes.
        length: u64,
        /// Fixed destination IOVA.
        dst_iova: Option<u64>,
        /// Readable.
        read: bool,
        /// Writeable.
        write: bool,
    },
    /// `ioas.allow_iovas` (empty: clear).
    IoasAllowIovas {
        /// Which IOAS.
        ioas: IoasId,
        /// `[start, last]` pairs.
        ranges: Vec<(u64, u64)>,
    },
    /// `ioas.iova_ranges`.
    IoasIovaRanges {
        /// Which IOAS.
        ioas: IoasId,
    },
    /// `mock.domain`: a mock device attached to the IOAS.
    MockDomain {
        /// Which IOAS.
        ioas: IoasId,
    },
    /// `iommufd.destroy` of a mock domain's device (`$mockN.stdev_id`):
    /// the detach.
    MockDestroy {
        /// Which mock domain.
        mock: MockId,
    },
    /// `mock.add_reserved`.
    MockAddReserved {
        /// Which IOAS.
        ioas: IoasId,
        /// First IOVA.
        start: u64,
        /// Bytes.
        length: u64,
    },
    /// `mock.access_create`.
    MockAccessCreate {
        /// Which IOAS.
        ioas: IoasId,
        /// Whether the access pins pages (iova_alignment becomes PAGE_SIZE).
        pin_pages: bool,
    },
    /// `mock.access_rw`: the kernel copies between the IOVA range and the
    /// buffer range (reads the IOVAs unless `write`).
    MockAccessRw {
        /// Which access.
        access: AccessId,
        /// IOVA.
        iova: u64,
        /// The user buffer the bytes go to or come from.
        range: BufferRange,
        /// Write the IOVAs.
        write: bool,
    },
    /// `vfio.cdev_attach` of the edu device to an IOAS (a replace if it
    /// is attached elsewhere).
    DeviceAttach {
        /// Which IOAS.
        ioas: IoasId,
    },
    /// `vfio.cdev_detach` of the edu device.
    DeviceDetach,
}

/// An argument of a step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Arg {
    /// A number.
    U64(u64),
    /// A boolean.
    Bool(bool),
    /// A word (choice).
    Word(&'static str),
    /// Any other text (a pattern such as `byte:0x5a`).
    Text(String),
    /// A `$reference` (without the `$`).
    Ref(String),
    /// `[[start, last]…]`.
    Ranges(Vec<(u64, u64)>),
}

impl Arg {
    /// As TOML.
    pub fn to_toml(&self) -> String {
        match self {
            Arg::U64(n) => toml_number(*n),
            Arg::Bool(b) => b.to_string(),
            Arg::Word(w) => format!("\"{w}\""),
            Arg::Text(t) => format!("{t:?}"),
            Arg::Ref(r) => format!("\"${r}\""),
            Arg::Ranges(r) => {
                let v: Vec<String> = r
                    .iter()
                    .map(|(s, l)| format!("[{}, {}]", toml_number(*s), toml_number(*l)))
                    .collect();
                format!("[{}]", v.join(", "))
            }
        }
    }
}

/// A scenario step: an agent op with its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Step {
    /// The agent op's name.
    pub op: &'static str,
    /// Its arguments, in order.
    pub args: Vec<(&'static str, Arg)>,
    /// The name its value is bound to.
    pub bind: Option<String>,
}

impl Step {
    /// A step with no arguments yet.
    pub fn new(op: &'static str) -> Step {
        Step {
            op,
            args: Vec::new(),
            bind: None,
        }
    }

    /// With an argument.
    pub fn arg(mut self, name: &'static str, a: Arg) -> Step {
        self.args.push((name, a));
        self
    }

    /// With a binding.
    pub fn bind(mut self, name: impl Into<String>) -> Step {
        self.bind = Some(name.into());
        self
    }

    /// The `[[step]]` table (with `expect`, if given).
    pub fn to_toml(&self, expect: Option<&Expectation>) -> String {
        let mut s = format!("[[step]]\nop = \"{}\"\n", self.op);
        for (k, v) in &self.args {
            let _ = writeln!(s, "{k} = {}", v.to_toml());
        }
        if let Some(b) = &self.bind {
            let _ = writeln!(s, "bind = \"{b}\"");
        }
        if let Some(e) = expect {
            let _ = writeln!(s, "expect = {}", e.to_toml());
        }
        s
    }

    /// One line: `op key=value …` (as tables print sequences).
    pub fn inline(&self) -> String {
        let mut s = self.op.to_string();
        for (k, v) in &self.args {
            let _ = write!(s, " {k}={}", v.to_toml().replace('"', ""));
        }
        s
    }
}

fn range_args(mut s: Step, r: &BufferRange) -> Step {
    s = s.arg("buffer", Arg::Ref(r.buffer.name()));
    if r.offset != 0 {
        s = s.arg("offset", Arg::U64(r.offset));
    }
    if let Some(l) = r.length {
        s = s.arg("length", Arg::U64(l));
    }
    s
}

fn rw_args(mut s: Step, read: bool, write: bool) -> Step {
    if !read {
        s = s.arg("read", Arg::Bool(false));
    }
    if !write {
        s = s.arg("write", Arg::Bool(false));
    }
    s
}

fn container() -> Arg {
    Arg::Ref(CONTAINER.into())
}

fn iommufd() -> Arg {
    Arg::Ref(IOMMUFD.into())
}

impl Op {
    /// The agent op it is.
    pub fn name(&self) -> &'static str {
        match self {
            Op::MemAlloc { .. } => "mem.alloc",
            Op::TceInfo => "spapr.tce_info",
            Op::Register(_) => "spapr.register_memory",
            Op::Unregister(_) => "spapr.unregister_memory",
            Op::CreateWindow { .. } => "spapr.create_window",
            Op::RemoveWindow { .. } => "spapr.remove_window",
            Op::MapDma { .. } => "vfio.map_dma",
            Op::UnmapDma { .. } => "vfio.unmap_dma",
            Op::EduDma { .. } => "edu.dma",
            Op::IoasAlloc => "ioas.alloc",
            Op::IoasMap { .. } => "ioas.map",
            Op::IoasUnmap { .. } => "ioas.unmap",
            Op::IoasCopy { .. } => "ioas.copy",
            Op::IoasAllowIovas { .. } => "ioas.allow_iovas",
            Op::IoasIovaRanges { .. } => "ioas.iova_ranges",
            Op::MockDomain { .. } => "mock.domain",
            Op::MockDestroy { .. } => "iommufd.destroy",
            Op::MockAddReserved { .. } => "mock.add_reserved",
            Op::MockAccessCreate { .. } => "mock.access_create",
            Op::MockAccessRw { .. } => "mock.access_rw",
            Op::DeviceAttach { .. } => "vfio.cdev_attach",
            Op::DeviceDetach => "vfio.cdev_detach",
        }
    }

    /// Its step, its value bound to `bind` (the world knows the next
    /// object's name: [`crate::world::World::step`]).
    pub fn step(&self, bind: Option<String>) -> Step {
        let s = Step::new(self.name());
        let s = match self {
            Op::MemAlloc { size, hugetlb } => {
                let s = s.arg("size", Arg::U64(*size));
                if *hugetlb {
                    s.arg("hugetlb", Arg::Bool(true))
                } else {
                    s
                }
            }
            Op::TceInfo => s.arg("container", container()),
            Op::Register(r) | Op::Unregister(r) => range_args(s.arg("container", container()), r),
            Op::CreateWindow {
                page_shift,
                window_size,
                levels,
            } => {
                let s = s
                    .arg("container", container())
                    .arg("page_shift", Arg::U64((*page_shift).into()))
                    .arg("window_size", Arg::U64(*window_size));
                match levels {
                    Some(l) => s.arg("levels", Arg::U64((*l).into())),
                    None => s,
                }
            }
            Op::RemoveWindow { start_addr } => s
                .arg("container", container())
                .arg("start_addr", Arg::U64(*start_addr)),
            Op::MapDma {
                iova,
                range,
                read,
                write,
            } => rw_args(
                range_args(
                    s.arg("container", container()).arg("iova", Arg::U64(*iova)),
                    range,
                ),
                *read,
                *write,
            ),
            Op::UnmapDma { iova, length } => s
                .arg("container", container())
                .arg("iova", Arg::U64(*iova))
                .arg("length", Arg::U64(*length)),
            Op::EduDma {
                iova,
                count,
                direction,
            } => s
                .arg("device", Arg::Ref(DEVICE.into()))
                .arg("direction", Arg::Word(direction.edu_word()))
                .arg("iova", Arg::U64(*iova))
                .arg("count", Arg::U64(*count)),
            Op::IoasAlloc => s.arg("iommufd", iommufd()),
            Op::IoasMap {
                ioas,
                range,
                iova,
                read,
                write,
            } => {
                let s = range_args(
                    s.arg("iommufd", iommufd())
                        .arg("ioas", Arg::Ref(ioas.name())),
                    range,
                );
                let s = match iova {
                    Some(i) => s.arg("iova", Arg::U64(*i)),
                    None => s,
                };
                rw_args(s, *read, *write)
            }
            Op::IoasUnmap { ioas, iova, length } => s
                .arg("iommufd", iommufd())
                .arg("ioas", Arg::Ref(ioas.name()))
                .arg("iova", Arg::U64(*iova))
                .arg("length", Arg::U64(*length)),
            Op::IoasCopy {
                src,
                dst,
                src_iova,
                length,
                dst_iova,
                read,
                write,
            } => {
                let s = s
                    .arg("iommufd", iommufd())
                    .arg("src_ioas", Arg::Ref(src.name()))
                    .arg("dst_ioas", Arg::Ref(dst.name()))
                    .arg("src_iova", Arg::U64(*src_iova))
                    .arg("length", Arg::U64(*length));
                let s = match dst_iova {
                    Some(d) => s.arg("dst_iova", Arg::U64(*d)),
                    None => s,
                };
                rw_args(s, *read, *write)
            }
            Op::IoasAllowIovas { ioas, ranges } => s
                .arg("iommufd", iommufd())
                .arg("ioas", Arg::Ref(ioas.name()))
                .arg("ranges", Arg::Ranges(ranges.clone())),
            Op::IoasIovaRanges { ioas } | Op::MockDomain { ioas } => s
                .arg("iommufd", iommufd())
                .arg("ioas", Arg::Ref(ioas.name())),
            Op::MockDestroy { mock } => s
                .arg("iommufd", iommufd())
                .arg("id", Arg::Ref(format!("{}.stdev_id", mock.name()))),
            Op::MockAddReserved {
                ioas,
                start,
                length,
            } => s
                .arg("iommufd", iommufd())
                .arg("ioas", Arg::Ref(ioas.name()))
                .arg("start", Arg::U64(*start))
                .arg("length", Arg::U64(*length)),
            Op::MockAccessCreate { ioas, pin_pages } => {
                let s = s
                    .arg("iommufd", iommufd())
                    .arg("ioas", Arg::Ref(ioas.name()));
                if *pin_pages {
                    s.arg("pin_pages", Arg::Bool(true))
                } else {
                    s
                }
            }
            Op::MockAccessRw {
                access,
                iova,
                range,
                write,
            } => {
                let s = range_args(
                    s.arg("iommufd", iommufd())
                        .arg("access", Arg::Ref(access.name()))
                        .arg("iova", Arg::U64(*iova)),
                    range,
                );
                if *write {
                    s.arg("write", Arg::Bool(true))
                } else {
                    s
                }
            }
            Op::DeviceAttach { ioas } => s
                .arg("device", Arg::Ref(DEVICE.into()))
                .arg("pt_id", Arg::Ref(ioas.name())),
            Op::DeviceDetach => s.arg("device", Arg::Ref(DEVICE.into())),
        };
        match bind {
            Some(b) => s.bind(b),
            None => s,
        }
    }

    /// The buffer it names, if any.
    pub fn buffer(&self) -> Option<BufferId> {
        match self {
            Op::Register(r) | Op::Unregister(r) => Some(r.buffer),
            Op::MapDma { range, .. }
            | Op::IoasMap { range, .. }
            | Op::MockAccessRw { range, .. } => Some(range.buffer),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Op, Step};
    use crate::dma::Direction;
    use crate::errno::Errno;
    use crate::mem::{BufferId, BufferRange};
    use crate::op::{IoasId, MockId};
    use crate::outcome::Expectation;

    #[test]
    fn steps_are_scenario_toml() {
        let m = Op::MapDma {
            iova: 0x10800,
            range: BufferRange::whole(BufferId(0)),
            read: true,
            write: true,
        };
        assert_eq!(
            m.step(None)
                .to_toml(Some(&Expectation::Errno(Errno::EINVAL))),
            "[[step]]\nop = \"vfio.map_dma\"\ncontainer = \"$c\"\niova = \"0x10800\"\nbuffer = \"$buf0\"\nexpect = { errno = \"EINVAL\" }\n"
        );
        let c = Op::CreateWindow {
            page_shift: 16,
            window_size: 16 << 20,
            levels: None,
        };
        assert_eq!(
            c.step(Some("ddw".into())).inline(),
            "spapr.create_window container=$c page_shift=16 window_size=0x1000000"
        );
        let a = Op::IoasAllowIovas {
            ioas: IoasId(1),
            ranges: vec![(64 << 20, 0x40f_ffff)],
        };
        assert!(
            a.step(None)
                .to_toml(None)
                .contains("ranges = [[\"0x4000000\", \"0x40fffff\"]]")
        );
        let d = Op::MockDestroy { mock: MockId(0) }.step(None);
        assert_eq!(d.op, "iommufd.destroy");
        assert!(d.to_toml(None).contains("id = \"$mock0.stdev_id\""));
        let e = Op::EduDma {
            iova: 0x10000,
            count: 4096,
            direction: Direction::Write,
        };
        assert!(
            e.step(None)
                .to_toml(None)
                .contains("direction = \"from_device\"")
        );
        assert_eq!(
            Step::new("x").bind("y").to_toml(None),
            "[[step]]\nop = \"x\"\nbind = \"y\"\n"
        );
    }
}
