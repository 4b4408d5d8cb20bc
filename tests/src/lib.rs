//! Placeholder library target of the VM test crate; the suite is `tests/vm.rs`.
