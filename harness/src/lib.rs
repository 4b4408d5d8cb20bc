//! The host side of iobench.
//!
//! Everything about a running machine lives here, one module per concept:
//! [`machine`] loads and validates machine definitions, [`qemu`] turns one
//! into a QEMU command line and owns the process, [`console`] captures the
//! guest console and recognises panics, [`vsock`] runs the per-VM
//! `vhost-device-vsock` backend and its sockets, [`agent`] speaks the
//! protocol to the guest agent, and [`vm`] ties them into a boot with named
//! stages, timeouts and guaranteed clean-up.  See `ARCHITECTURE.md`.

pub mod agent;
pub mod console;
pub mod machine;
pub mod manifest;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod scenario;
pub mod target;
pub mod vm;
pub mod vsock;

pub use iobench_proto as proto;
