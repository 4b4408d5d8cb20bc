//! Shared pieces of the VM test suite: the [`pool`] of booted machines the
//! scenario trials share and the [`fixture`]s that stand in for real
//! targets.  The image manifest the suite reads is
//! [`harness::manifest::Manifest`] (re-exported here).

pub mod fixture;
pub mod pool;

pub use harness::manifest::{MANIFEST_ENV, Manifest, TargetRun};
