//! The host side of iobench.
//!
//! Everything about a running machine lives here, one module per concept:
//! [`machine`] loads and validates machine definitions, [`qemu`] turns one
//! into a QEMU command line and owns the process, [`console`] captures the
//! guest console and recognises panics, [`vsock`] runs the per-VM
//! `vhost-device-vsock` backend and its sockets, [`agent`] speaks the
//! protocol to the guest agent, and [`vm`] ties them into a boot with named
//! stages, timeouts and guaranteed clean-up; [`reaper`] ends a command's
//! whole process tree with it.  See `ARCHITECTURE.md`.
//!
//! Scenarios: [`scenario_file`] reads and checks scenario files against the
//! operation catalogue, [`scenario`] runs one on an [`scenario::AgentHost`]
//! (a booted [`vm::Vm`] or a [`target`] session), and [`report`] turns the
//! results into step tables, failure reports, JUnit and JSON;
//! [`kernel_log`] finds the kernel's own reports (WARNING, BUG, Oops,
//! lockdep, KASAN, …) in a run's kernel log, which fail the run;
//! [`kselftest`] reads upstream selftests' output as one case per test
//! and judges each against the reviewed expectations.
//! [`toml_error`] gives the errors of every TOML file their line; [`linux`]
//! names the kernel versions machines run on.

pub mod agent;
pub mod console;
pub mod kernel_log;
pub mod known_bug;
pub mod kselftest;
pub mod linux;
pub mod machine;
pub mod manifest;
pub mod policy;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod reaper;
pub mod release;
pub mod report;
pub mod scenario;
pub mod scenario_file;
pub mod target;
pub mod toml_error;
pub mod vm;
pub mod vsock;

pub use iobench_proto as proto;
