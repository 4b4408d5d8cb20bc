//! The errnos the model predicts, spelled as the agent reports them (the
//! names of `iobench_proto::values::ERRNOS`; the numbers are the same on
//! x86_64 and ppc64le), so a predicted failure compares with a step's
//! `Actual::Errno { name, .. }` by name.

use std::fmt;

/// An errno a modelled operation fails with.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Errno {
    /// Operation not permitted (1).
    EPERM,
    /// No such file or directory (2): nothing at that IOVA, no such object.
    ENOENT,
    /// Interrupted system call (4): how a raw `H_PARAMETER` (-4) hypervisor
    /// status returned as an ioctl result reaches userspace.
    EINTR,
    /// No such device or address (6): no DMA window holds the IOVA.
    ENXIO,
    /// Out of memory (12).
    ENOMEM,
    /// Device or resource busy (16).
    EBUSY,
    /// File exists (17).
    EEXIST,
    /// No such device (19).
    ENODEV,
    /// Invalid argument (22).
    EINVAL,
    /// Inappropriate ioctl for device (25).
    ENOTTY,
    /// No space left on device (28).
    ENOSPC,
    /// Value too large for defined data type (75).
    EOVERFLOW,
    /// Message too long (90).
    EMSGSIZE,
    /// Operation not supported (95).
    EOPNOTSUPP,
    /// Address already in use (98).
    EADDRINUSE,
}

impl Errno {
    /// Every errno of the model.
    pub const ALL: &'static [Errno] = &[
        Errno::EPERM,
        Errno::ENOENT,
        Errno::EINTR,
        Errno::ENXIO,
        Errno::ENOMEM,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::ENODEV,
        Errno::EINVAL,
        Errno::ENOTTY,
        Errno::ENOSPC,
        Errno::EOVERFLOW,
        Errno::EMSGSIZE,
        Errno::EOPNOTSUPP,
        Errno::EADDRINUSE,
    ];

    /// The symbolic name, e.g. `"EINVAL"`.
    pub fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::EINTR => "EINTR",
            Errno::ENXIO => "ENXIO",
            Errno::ENOMEM => "ENOMEM",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::ENODEV => "ENODEV",
            Errno::EINVAL => "EINVAL",
            Errno::ENOTTY => "ENOTTY",
            Errno::ENOSPC => "ENOSPC",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EMSGSIZE => "EMSGSIZE",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EADDRINUSE => "EADDRINUSE",
        }
    }

    /// The Linux number.
    pub fn code(self) -> i32 {
        match self {
            Errno::EPERM => 1,
            Errno::ENOENT => 2,
            Errno::EINTR => 4,
            Errno::ENXIO => 6,
            Errno::ENOMEM => 12,
            Errno::EBUSY => 16,
            Errno::EEXIST => 17,
            Errno::ENODEV => 19,
            Errno::EINVAL => 22,
            Errno::ENOTTY => 25,
            Errno::ENOSPC => 28,
            Errno::EOVERFLOW => 75,
            Errno::EMSGSIZE => 90,
            Errno::EOPNOTSUPP => 95,
            Errno::EADDRINUSE => 98,
        }
    }

    /// The errno of a name, if the model knows it.
    pub fn from_name(name: &str) -> Option<Errno> {
        Errno::ALL.iter().copied().find(|e| e.name() == name)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Errno;

    #[test]
    fn names_and_numbers_are_linux_ones() {
        assert_eq!(Errno::EINVAL.code(), 22);
        assert_eq!(Errno::EADDRINUSE.code(), 98);
        for e in Errno::ALL {
            assert_eq!(Errno::from_name(e.name()), Some(*e));
        }
        assert_eq!(Errno::from_name("EWHAT"), None);
    }
}
