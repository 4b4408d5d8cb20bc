//! A world is what one scenario drives: its buffers plus one backend, the
//! sPAPR container of a pseries guest, the seed's windowed IOAS, or an
//! iommufd.  It is the fuzzer's handle: [`World::step`] writes an op as a
//! scenario step (binding new objects to the next names),
//! [`World::apply`] predicts its outcome and moves the model on,
//! [`World::translate`] says where device DMA lands, and
//! [`World::set_buffer_addr`] takes the real address a `mem.alloc`
//! reported, so predictions that depend on it (sPAPR alignment, iommufd's
//! automatic IOVA) are exact when a run is replayed.

use crate::dma::{Direction, Segment};
use crate::error::ModelError;
use crate::ioas::{Iommufd, IommufdParams};
use crate::mem::{BufferId, Memory};
use crate::op::{Arg, CONTAINER, DEVICE, IOMMUFD, Op, Step};
use crate::outcome::{Datum, Outcome, Reported, Value, Verdict};
use crate::platform::Hardware;
use crate::rule::Rule;
use crate::seed::WindowedIoas;
use crate::spapr::{Container, SpaprParams};

/// The interface under the buffers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A VFIO sPAPR TCE v2 container holding the edu device's group.
    Spapr(Container),
    /// The seed's windowed IOAS holding the edu device.
    Seed(WindowedIoas),
    /// An iommufd.
    Iommufd(Iommufd),
}

/// The edu device, as steps name it.
pub const EDU: &str = "1234:11e8";
/// The group's name in the written-out prelude.
pub const GROUP: &str = "g";

/// Buffers and a backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct World {
    /// The scenario's buffers.
    pub mem: Memory,
    /// The interface.
    pub backend: Backend,
}

impl World {
    /// A sPAPR container world.
    pub fn spapr(p: SpaprParams) -> World {
        World {
            mem: Memory::new(),
            backend: Backend::Spapr(Container::new(p)),
        }
    }

    /// A seed world on this hardware.
    pub fn seed(hw: Hardware) -> World {
        World {
            mem: Memory::new(),
            backend: Backend::Seed(WindowedIoas::new(hw)),
        }
    }

    /// An iommufd world.
    pub fn iommufd(p: IommufdParams) -> World {
        World {
            mem: Memory::new(),
            backend: Backend::Iommufd(Iommufd::new(p)),
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &'static str {
        match self.backend {
            Backend::Spapr(_) => "spapr",
            Backend::Seed(_) => "seed",
            Backend::Iommufd(_) => "iommufd",
        }
    }

    /// The guest kernel's PAGE_SIZE.
    pub fn page_size(&self) -> u64 {
        match &self.backend {
            Backend::Spapr(c) => c.params().hw.page_size,
            Backend::Seed(s) => s.hardware().page_size,
            Backend::Iommufd(f) => f.params().page_size,
        }
    }

    /// Sets a buffer's real address (from `mem.alloc`'s `addr`).
    pub fn set_buffer_addr(&mut self, id: BufferId, addr: u64) -> Result<(), ModelError> {
        self.mem.set_addr(id, addr)
    }

    /// The TOML of the steps that make the objects the ops name (`$c`,
    /// `$dev`, `$fd`), including the scenario catalogue's fragments from
    /// `common` (e.g. `"../_common"`).
    pub fn prelude_toml(&self, common: &str) -> String {
        match &self.backend {
            Backend::Spapr(_) | Backend::Seed(_) => {
                format!("[[step]]\ninclude = \"{common}/spapr_container.toml\"\n")
            }
            Backend::Iommufd(f) if f.params().device.is_some() => {
                format!("[[step]]\ninclude = \"{common}/iommufd_cdev.toml\"\n")
            }
            Backend::Iommufd(_) => {
                format!("[[step]]\nop = \"iommufd.open\"\nbind = \"{IOMMUFD}\"\n")
            }
        }
    }

    /// The steps that make the objects the ops name, written out (what
    /// [`World::prelude_toml`] includes from the catalogue's fragments), so
    /// a scenario needs no other file: the edu device bound to vfio-pci,
    /// then the container with its group and device (`$c`, `$g`, `$dev`),
    /// or the iommufd (`$fd`) and, with a device, its cdev bound to it
    /// (`$dev`, `$devid`).
    pub fn prelude_steps(&self) -> Vec<Step> {
        let edu = || Arg::Word(EDU);
        let bind = Step::new("pci.bind_vfio").arg("device", edu());
        match &self.backend {
            Backend::Spapr(_) | Backend::Seed(_) => vec![
                bind,
                Step::new("vfio.container_open").bind(CONTAINER),
                Step::new("vfio.group_open")
                    .arg("device", edu())
                    .bind(GROUP),
                Step::new("vfio.group_set_container")
                    .arg("group", Arg::Ref(GROUP.into()))
                    .arg("container", Arg::Ref(CONTAINER.into())),
                Step::new("vfio.set_iommu")
                    .arg("container", Arg::Ref(CONTAINER.into()))
                    .arg("type", Arg::Word("spapr-v2")),
                Step::new("vfio.device_open")
                    .arg("group", Arg::Ref(GROUP.into()))
                    .arg("device", edu())
                    .bind(DEVICE),
            ],
            Backend::Iommufd(f) if f.params().device.is_some() => vec![
                bind,
                Step::new("iommufd.open").bind(IOMMUFD),
                Step::new("vfio.cdev_open")
                    .arg("device", edu())
                    .bind(DEVICE),
                Step::new("vfio.cdev_bind")
                    .arg("device", Arg::Ref(DEVICE.into()))
                    .arg("iommufd", Arg::Ref(IOMMUFD.into()))
                    .bind("devid"),
            ],
            Backend::Iommufd(_) => vec![Step::new("iommufd.open").bind(IOMMUFD)],
        }
    }

    /// The `close` steps that end the world, in the order the kernel needs
    /// (what the agent does itself when a scenario ends): accesses and the
    /// device, the group (which releases the container's IOMMU), the
    /// container or iommufd, then the buffers, newest first.
    pub fn teardown_steps(&self) -> Vec<Step> {
        let close = |name: String| Step::new("close").arg("handle", Arg::Ref(name));
        let mut v = Vec::new();
        let (_, _, accesses) = match &self.backend {
            Backend::Iommufd(f) => f.counts(),
            _ => (0, 0, 0),
        };
        for a in (0..accesses).rev() {
            v.push(close(crate::op::AccessId(a).name()));
        }
        match &self.backend {
            Backend::Spapr(_) | Backend::Seed(_) => {
                v.push(close(DEVICE.into()));
                v.push(close(GROUP.into()));
                v.push(close(CONTAINER.into()));
            }
            Backend::Iommufd(f) => {
                if f.params().device.is_some() {
                    v.push(close(DEVICE.into()));
                }
                v.push(close(IOMMUFD.into()));
            }
        }
        for b in (0..self.mem.len()).rev() {
            v.push(close(BufferId(b).name()));
        }
        v
    }

    /// Predicts what closing the world ([`World::teardown_steps`]) does:
    /// for a sPAPR container its release ([`Container::release`]: a
    /// region still mapped makes the kernel warn), for an iommufd nothing
    /// the next one sees.
    pub fn release(&mut self) -> Outcome {
        match &mut self.backend {
            Backend::Spapr(c) => c.release(),
            Backend::Seed(_) => Outcome::value(Value::Null, Rule::Release),
            Backend::Iommufd(_) => Outcome::value(Value::Null, Rule::IommufdRelease),
        }
    }

    /// The world of the process's next container or iommufd on the same
    /// boot, after this one's [`World::release`]: no buffers; a sPAPR
    /// container inherits what the process and the PE kept
    /// ([`Container::successor`]).
    pub fn successor(&self) -> World {
        World {
            mem: Memory::new(),
            backend: match &self.backend {
                Backend::Spapr(c) => Backend::Spapr(c.successor()),
                Backend::Seed(s) => Backend::Seed(WindowedIoas::new(s.hardware().clone())),
                Backend::Iommufd(f) => Backend::Iommufd(Iommufd::new(f.params().clone())),
            },
        }
    }

    /// Whether a successor starts as on a fresh boot (nothing carried
    /// over, no crash).
    pub fn pristine(&self) -> bool {
        match &self.backend {
            Backend::Spapr(c) => c.pristine(),
            _ => true,
        }
    }

    /// Whether the guest kernel crashed in this world.
    pub fn crashed(&self) -> bool {
        matches!(&self.backend, Backend::Spapr(c) if c.crashed())
    }

    /// The step of an op, a new object bound to its name (`buf2`, `ioas0`,
    /// `mock1`, `acc0`).
    pub fn step(&self, op: &Op) -> Step {
        let (ioas, mocks, accesses) = match &self.backend {
            Backend::Iommufd(f) => f.counts(),
            _ => (0, 0, 0),
        };
        let bind = match op {
            Op::MemAlloc { .. } => Some(BufferId(self.mem.len()).name()),
            Op::IoasAlloc => Some(format!("ioas{ioas}")),
            Op::MockDomain { .. } => Some(format!("mock{mocks}")),
            Op::MockAccessCreate { .. } => Some(format!("acc{accesses}")),
            _ => None,
        };
        op.step(bind)
    }

    /// Predicts an op's outcome and applies it.
    pub fn apply(&mut self, op: &Op) -> Result<Outcome, ModelError> {
        match op {
            Op::MemAlloc { size, hugetlb } => {
                self.mem.alloc(*size, *hugetlb);
                Ok(Outcome::value(Value::Object, Rule::MemAlloc))
            }
            Op::EduDma {
                iova,
                count,
                direction,
            } => {
                if *count == 0 || *count > 4096 {
                    return Err(ModelError::EduCount(*count));
                }
                if let Backend::Spapr(c) = &self.backend
                    && c.crashed()
                {
                    return Ok(Outcome::crash(Rule::AfterCrash));
                }
                let rule = match self.backend {
                    Backend::Spapr(_) => Rule::SpaprDma,
                    Backend::Seed(_) => Rule::SeedDma,
                    Backend::Iommufd(_) => Rule::IommufdDma,
                };
                let mut o = Outcome::value(Value::Object, rule);
                o.dma = self.translate(*iova, *count, *direction)?;
                if let Backend::Spapr(c) = &self.backend
                    && c.through_stale_region(*iova, *count)
                {
                    o = o.also(Rule::StaleRegionDma);
                }
                Ok(o)
            }
            _ => match &mut self.backend {
                Backend::Spapr(c) => c.apply(&self.mem, op),
                Backend::Seed(s) => s.apply(&self.mem, op),
                Backend::Iommufd(f) => f.apply(&self.mem, op),
            },
        }
    }

    /// Replays one step of a run: predicts the op (moving the model on),
    /// takes a new buffer's real address from what `mem.alloc` reported
    /// (`{handle, kind, size, addr}`), and compares the prediction with the
    /// report.  After a mismatch the model goes on from its own prediction,
    /// not from what the guest did.
    pub fn replay(
        &mut self,
        op: &Op,
        reported: &Reported,
    ) -> Result<(Outcome, Verdict), ModelError> {
        let o = self.apply(op)?;
        if let (Op::MemAlloc { .. }, Reported::Value(d)) = (op, reported)
            && let Some(addr) = d.get("addr").and_then(Datum::as_u64)
        {
            self.mem.set_addr(BufferId(self.mem.len() - 1), addr)?;
        }
        let v = o.check(reported);
        Ok((o, v))
    }

    /// Where device DMA of `[iova, iova + len)` goes.
    pub fn translate(
        &self,
        iova: u64,
        len: u64,
        dir: Direction,
    ) -> Result<Vec<Segment>, ModelError> {
        Ok(match &self.backend {
            Backend::Spapr(c) => c.translate(&self.mem, iova, len, dir),
            Backend::Seed(s) => s.translate(&self.mem, iova, len, dir),
            Backend::Iommufd(f) => {
                if f.params().device.is_none() {
                    return Err(ModelError::NoDevice("iommufd"));
                }
                f.translate(&self.mem, iova, len, dir)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::World;
    use crate::dma::{Direction, Target};
    use crate::ioas::IommufdParams;
    use crate::mem::{BufferId, BufferRange};
    use crate::op::{IoasId, Op};
    use crate::spapr::{Fixes, SpaprParams};

    /// scenarios/seed/userspace_driver.toml: window, maps, edu round trip.
    #[test]
    fn userspace_driver_sequence() {
        let mut w = World::spapr(SpaprParams::qemu(4096, Fixes::linux_7_2_13()));
        let alloc = Op::MemAlloc {
            size: 0x10000,
            hugetlb: false,
        };
        assert_eq!(w.step(&alloc).bind.as_deref(), Some("buf0"));
        w.apply(&alloc).unwrap();
        w.apply(&alloc).unwrap();
        let (src, dst) = (BufferId(0), BufferId(1));
        for b in [src, dst] {
            assert!(
                w.apply(&Op::Register(BufferRange::whole(b)))
                    .unwrap()
                    .is_ok()
            );
        }
        let win = w
            .apply(&Op::CreateWindow {
                page_shift: 12,
                window_size: 1 << 30,
                levels: None,
            })
            .unwrap();
        assert_eq!(win.number(), Some(0x800000000000000));
        let base = 0x800000000000000;
        for (iova, b) in [(base, src), (base + 0x100000, dst)] {
            let m = Op::MapDma {
                iova,
                range: BufferRange::whole(b),
                read: true,
                write: true,
            };
            assert_eq!(w.apply(&m).unwrap().number(), Some(0));
        }
        let rd = w
            .apply(&Op::EduDma {
                iova: base,
                count: 4096,
                direction: Direction::Read,
            })
            .unwrap();
        assert_eq!(
            rd.dma[0].target,
            Target::Buffer {
                buffer: src,
                offset: 0
            }
        );
        let wr = w
            .translate(base + 0x100000, 4096, Direction::Write)
            .unwrap();
        assert_eq!(
            wr[0].target,
            Target::Buffer {
                buffer: dst,
                offset: 0
            }
        );
        assert!(
            w.prelude_toml("../_common")
                .contains("spapr_container.toml")
        );
    }

    /// A replayed run: the real buffer address changes the automatic IOVA.
    #[test]
    fn replay_takes_real_addresses() {
        use crate::outcome::{Datum, Reported, Verdict};
        let mut w = World::iommufd(IommufdParams::pseries_7_2(65536, true));
        w.apply(&Op::IoasAlloc).unwrap();
        let alloc = Op::MemAlloc {
            size: 0x20000,
            hugetlb: false,
        };
        let rep = Reported::Value(Datum::Map(vec![
            ("handle".into(), Datum::U64(3)),
            ("addr".into(), Datum::U64(0x7fff_8001_0000)),
        ]));
        assert_eq!(w.replay(&alloc, &rep).unwrap().1, Verdict::Match);
        let m = Op::IoasMap {
            ioas: IoasId(0),
            range: BufferRange::whole(BufferId(0)),
            iova: None,
            read: true,
            write: true,
        };
        // 64K-aligned address, no THP: PAGE_SIZE (64K) alignment from 64K on.
        let (o, v) = w.replay(&m, &Reported::Value(Datum::U64(0x10000))).unwrap();
        assert_eq!((o.number(), v), (Some(0x10000), Verdict::Match));
    }

    /// scenarios/mock/copy_shares_pages.toml: a copy shares the pages.
    #[test]
    fn copy_shares_pages() {
        let mut w = World::iommufd(IommufdParams::pseries_7_2(65536, true));
        let (a, b) = (IoasId(0), IoasId(1));
        w.apply(&Op::IoasAlloc).unwrap();
        assert_eq!(w.step(&Op::IoasAlloc).bind.as_deref(), Some("ioas1"));
        w.apply(&Op::IoasAlloc).unwrap();
        w.apply(&Op::MemAlloc {
            size: 0x10000,
            hugetlb: false,
        })
        .unwrap();
        let buf = BufferRange::whole(BufferId(0));
        let m = Op::IoasMap {
            ioas: a,
            range: buf,
            iova: Some(16 << 20),
            read: true,
            write: true,
        };
        assert_eq!(w.apply(&m).unwrap().number(), Some(16 << 20));
        let c = Op::IoasCopy {
            src: a,
            dst: b,
            src_iova: 16 << 20,
            length: 0x10000,
            dst_iova: Some(48 << 20),
            read: true,
            write: true,
        };
        assert_eq!(w.apply(&c).unwrap().number(), Some(48 << 20));
        let hole = Op::IoasCopy {
            src: a,
            dst: b,
            src_iova: 20 << 20,
            length: 0x10000,
            dst_iova: None,
            read: true,
            write: true,
        };
        assert_eq!(
            w.apply(&hole).unwrap().errno_of(),
            Some(crate::errno::Errno::ENOENT)
        );
        w.apply(&Op::MockAccessCreate {
            ioas: b,
            pin_pages: false,
        })
        .unwrap();
        w.apply(&Op::MemAlloc {
            size: 0x1000,
            hugetlb: false,
        })
        .unwrap();
        let rw = w
            .apply(&Op::MockAccessRw {
                access: crate::op::AccessId(0),
                iova: 0x3001000,
                range: BufferRange::whole(BufferId(1)),
                write: false,
            })
            .unwrap();
        assert_eq!(
            rw.dma[0].target,
            Target::Buffer {
                buffer: BufferId(0),
                offset: 0x1000
            }
        );
    }
}
