//! The kernel versions iobench builds and boots: Linux 6.12 (Debian's
//! `linux-source-6.12` from bookworm-backports, the default) and Linux 7.2
//! (Debian sid's `linux-source-7.2`).  Every machine runs on either; a
//! trial on a version other than the default carries it in front of its
//! name (`7.2::pseries-64k::windows::page_64k`), so `cargo xtask test
//! pseries::windows` runs a scenario on both and `7.2::` selects one version.
//! Scenarios may ask for a minimum version (`min_linux = "7.2"`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kernel version line iobench builds (`--linux 6.12|7.2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Linux {
    /// Linux 6.12 (the default).
    #[serde(rename = "6.12")]
    V6_12,
    /// Linux 7.2.
    #[serde(rename = "7.2")]
    V7_2,
}

impl Linux {
    /// Every version, oldest first.
    pub const ALL: [Linux; 2] = [Linux::V6_12, Linux::V7_2];
    /// The version trials run on without a prefix.
    pub const DEFAULT: Linux = Linux::V6_12;

    /// `6.12`, `7.2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Linux::V6_12 => "6.12",
            Linux::V7_2 => "7.2",
        }
    }

    /// `(major, minor)`.
    pub fn number(self) -> (u32, u32) {
        match self {
            Linux::V6_12 => (6, 12),
            Linux::V7_2 => (7, 2),
        }
    }

    /// The version written `s` (`6.12`, `7.2`).
    pub fn parse(s: &str) -> Option<Linux> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The version line a kernel release (`7.2.13`, `6.12.95-iobench`) or
    /// a tree's `VERSION.PATCHLEVEL` belongs to: the newest known line not
    /// newer than it.
    pub fn of_release(release: &str) -> Option<Linux> {
        let mut it = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().ok());
        let (major, minor) = (it.next()??, it.next()??);
        Self::ALL
            .into_iter()
            .rev()
            .find(|l| l.number() <= (major, minor))
    }

    /// What goes in front of trial names on this version (`"7.2::"`), empty
    /// for the default one.
    pub fn trial_prefix(self) -> String {
        if self == Self::DEFAULT {
            String::new()
        } else {
            format!("{}::", self.as_str())
        }
    }
}

impl fmt::Display for Linux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A machine on a kernel version: what the suite boots and names trials by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Guest {
    /// Machine definition name (`pseries-64k`).
    pub machine: String,
    /// Kernel version.
    pub linux: Linux,
}

impl Guest {
    /// `machine` on `linux`.
    pub fn new(machine: impl Into<String>, linux: Linux) -> Guest {
        Guest {
            machine: machine.into(),
            linux,
        }
    }
}

/// The front of its trials' names: `pseries`, `7.2::pseries`.
impl fmt::Display for Guest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.linux.trial_prefix(), self.machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_order() {
        for l in Linux::ALL {
            assert_eq!(Linux::parse(l.as_str()), Some(l));
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(json, format!("\"{l}\""));
        }
        assert!(Linux::V6_12 < Linux::V7_2);
        assert_eq!(Linux::parse("7.3"), None);
    }

    #[test]
    fn releases_map_to_their_line() {
        assert_eq!(Linux::of_release("6.12.95"), Some(Linux::V6_12));
        assert_eq!(Linux::of_release("6.12.95-iobench+"), Some(Linux::V6_12));
        assert_eq!(Linux::of_release("7.2.13"), Some(Linux::V7_2));
        assert_eq!(Linux::of_release("7.3.1"), Some(Linux::V7_2));
        assert_eq!(Linux::of_release("6.19"), Some(Linux::V6_12));
        assert_eq!(Linux::of_release("6.1.0"), None);
        assert_eq!(Linux::of_release("x"), None);
    }

    #[test]
    fn only_other_versions_prefix_trial_names() {
        assert_eq!(Guest::new("pseries", Linux::V6_12).to_string(), "pseries");
        assert_eq!(
            Guest::new("pseries-64k", Linux::V7_2).to_string(),
            "7.2::pseries-64k"
        );
    }
}
