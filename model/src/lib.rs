//! A model of the Linux IOMMU interfaces iobench drives, precise enough to
//! predict the result of every step of a sequence of window and IOAS
//! operations: the VFIO sPAPR TCE v2 container of a pseries guest under
//! QEMU ([`spapr`], over the platform of [`platform`]), iommufd's IOAS with
//! the selftest mock domain ([`ioas`]), and the windowed IOAS the seed
//! document proposes ([`seed`]).  A fuzzer builds a [`world::World`],
//! writes each [`op::Op`] as a scenario step ([`world::World::step`],
//! [`op::Step::to_toml`]), runs the scenario in a guest through the agent,
//! and compares each step's report with the model's [`outcome::Outcome`]
//! ([`outcome::Outcome::check`]); [`points`] says which arguments are worth
//! trying in a state, [`divergence`] finds the shortest sequences on which
//! the kernel and the seed disagree.  Pure computation: no I/O, no unsafe.
//!
//! A fuzzer's loop, in short:
//!
//! ```
//! use iobench_model::mem::{BufferId, BufferRange};
//! use iobench_model::op::Op;
//! use iobench_model::outcome::{Datum, Reported, Verdict};
//! use iobench_model::spapr::{Fixes, SpaprParams};
//! use iobench_model::world::World;
//!
//! let mut w = World::spapr(SpaprParams::qemu(4096, Fixes::linux_7_2_13()));
//! let ops = [
//!     Op::MemAlloc { size: 0x10000, hugetlb: false },
//!     Op::Register(BufferRange::whole(BufferId(0))),
//!     Op::MapDma { iova: 0x10800, range: BufferRange::whole(BufferId(0)), read: true, write: true },
//! ];
//! // 1. Write the scenario: the prelude, then each op with its prediction.
//! let mut toml = w.prelude_toml("../_common");
//! let mut model = w.clone();
//! for op in &ops {
//!     let step = model.step(op);
//!     let predicted = model.apply(op).unwrap();
//!     toml += &step.to_toml(predicted.expectation().as_ref());
//! }
//! assert!(toml.contains("expect = { value = 1 }")); // bug 0001
//! // 2. Run it in a guest; 3. replay the agent's reports step by step.
//! let reports = [
//!     Reported::Value(Datum::Map(vec![("addr".into(), Datum::U64(0x7fff_0000_0000))])),
//!     Reported::Value(Datum::U64(0)),
//!     Reported::Value(Datum::U64(1)),
//! ];
//! for (op, rep) in ops.iter().zip(&reports) {
//!     let (outcome, verdict) = w.replay(op, rep).unwrap();
//!     assert_eq!(verdict, Verdict::Match, "{}", outcome.rule.name());
//! }
//! ```

pub mod divergence;
pub mod dma;
pub mod errno;
pub mod error;
pub mod interval;
pub mod ioas;
pub mod mem;
pub mod op;
pub mod outcome;
pub mod platform;
pub mod points;
pub mod rule;
pub mod seed;
pub mod spapr;
pub mod world;

#[cfg(test)]
mod tests;
