//! The initramfs: a newc cpio written in Rust, reproducible to the byte.
//!
//! Contents: static busybox with applet links, the agent at
//! `/sbin/guest-agent`, `/dev/console` and `/dev/null` nodes (made without
//! root), and `/init` (`images/initramfs/init`), which mounts proc, sys,
//! dev, debugfs and tmp, loads any modules listed in `/etc/modules.order`,
//! and then starts the agent, a shell, or nothing, as `iobench.mode=` says;
//! upstream selftest programs, when given, under `/selftests/`.
//! Every entry has uid/gid 0, mtime 0 and inode numbers by position.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir(String),
    /// A regular file with its mode bits.
    File(String, u32, Vec<u8>),
    /// A symlink and its target.
    Symlink(String, String),
    /// A character device (major, minor).
    CharDev(String, u32, u32),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Dir(n) | Entry::File(n, ..) | Entry::Symlink(n, _) | Entry::CharDev(n, ..) => n,
        }
    }
}

/// Busybox applets linked into /bin.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "mount", "umount", "mkdir", "cat", "echo", "ls", "sleep", "poweroff", "reboot",
    "setsid", "cttyhack", "insmod", "modprobe", "dmesg", "ps", "grep", "sync", "uname", "lspci",
    "hexdump", "true", "false", "test", "[", "printf", "rm", "cp", "ln", "find", "sed", "awk",
    "head", "tail", "kill", "env", "stty", "usleep", "mktemp", "chmod", "id",
];

/// Writes `entries` as a newc archive.
pub fn write<W: Write>(entries: &[Entry], mut out: W) -> std::io::Result<W> {
    for (i, e) in entries.iter().enumerate() {
        let (mode, data, rdev): (u32, &[u8], Option<(u32, u32)>) = match e {
            Entry::Dir(_) => (0o040755, b"", None),
            Entry::File(_, perm, data) => (0o100000 | perm, data, None),
            Entry::Symlink(_, target) => (0o120777, target.as_bytes(), None),
            Entry::CharDev(_, maj, min) => (0o020600, b"", Some((*maj, *min))),
        };
        let mut b = cpio::newc::Builder::new(e.name())
            .ino(i as u32 + 1)
            .mode(mode)
            .uid(0)
            .gid(0)
            .nlink(if matches!(e, Entry::Dir(_)) { 2 } else { 1 })
            .mtime(0);
        if let Some((maj, min)) = rdev {
            b = b.rdev_major(maj).rdev_minor(min);
        }
        let len =
            u32::try_from(data.len()).map_err(|_| std::io::Error::other("file over 4 GiB"))?;
        let mut w = b.write(out, len);
        w.write_all(data)?;
        out = w.finish()?;
    }
    cpio::newc::trailer(out)
}

/// Reads an archive back.
#[cfg(test)]
pub fn read(mut bytes: &[u8]) -> std::io::Result<Vec<(String, u32, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        let r = cpio::newc::Reader::new(bytes)?;
        if r.entry().is_trailer() {
            return Ok(out);
        }
        let name = r.entry().name().to_string();
        let mode = r.entry().mode();
        let mut data = Vec::new();
        bytes = r.to_writer(&mut data)?;
        out.push((name, mode, data));
    }
}

/// The entries of an initramfs around `busybox`, `agent` and `init`, with
/// kernel `modules` and upstream `selftests` programs.
pub fn entries(
    busybox: Vec<u8>,
    agent: Vec<u8>,
    init: Vec<u8>,
    modules: &[(String, Vec<u8>)],
    selftests: &[(String, Vec<u8>)],
) -> Vec<Entry> {
    let mut e: Vec<Entry> = [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "etc",
        "root",
        "lib",
        "lib/modules",
    ]
    .iter()
    .map(|d| Entry::Dir(d.to_string()))
    .collect();
    e.push(Entry::CharDev("dev/console".into(), 5, 1));
    e.push(Entry::CharDev("dev/null".into(), 1, 3));
    e.push(Entry::File("bin/busybox".into(), 0o755, busybox));
    for a in APPLETS {
        e.push(Entry::Symlink(format!("bin/{a}"), "busybox".into()));
    }
    e.push(Entry::File("sbin/guest-agent".into(), 0o755, agent));
    e.push(Entry::File("init".into(), 0o755, init));
    if !selftests.is_empty() {
        e.push(Entry::Dir("selftests".into()));
        for (name, data) in selftests {
            e.push(Entry::File(
                format!("selftests/{name}"),
                0o755,
                data.clone(),
            ));
        }
    }
    if !modules.is_empty() {
        let mut order = String::new();
        for (name, data) in modules {
            e.push(Entry::File(
                format!("lib/modules/{name}"),
                0o644,
                data.clone(),
            ));
            order.push_str(name);
            order.push('\n');
        }
        e.push(Entry::File(
            "etc/modules.order".into(),
            0o644,
            order.into_bytes(),
        ));
    }
    e
}

/// Builds the initramfs at `out` from files on disk.
pub fn build(
    busybox: &Path,
    agent: &Path,
    init: &Path,
    modules: &[(String, Vec<u8>)],
    selftests: &[(String, Vec<u8>)],
    out: &Path,
) -> Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let entries = entries(
        read(busybox)?,
        read(agent)?,
        read(init)?,
        modules,
        selftests,
    );
    let tmp = out.with_extension("tmp");
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = write(&entries, std::io::BufWriter::new(f))?;
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        entries(
            b"BUSYBOX".to_vec(),
            b"AGENT".to_vec(),
            b"#!/bin/sh\necho hi\n".to_vec(),
            &[("vfio.ko".into(), b"KO".to_vec())],
            &[("iommufd".into(), b"ELF".to_vec())],
        )
    }

    #[test]
    fn archive_parses_back() {
        let bytes = write(&sample(), Vec::new()).unwrap();
        let got = read(&bytes).unwrap();
        let find = |n: &str| {
            got.iter()
                .find(|(name, ..)| name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        assert_eq!(find("init").2, b"#!/bin/sh\necho hi\n");
        assert_eq!(find("init").1, 0o100755);
        assert_eq!(find("bin/sh").1, 0o120777);
        assert_eq!(find("bin/sh").2, b"busybox");
        assert_eq!(find("dev/console").1, 0o020600);
        assert_eq!(find("sbin/guest-agent").2, b"AGENT");
        assert_eq!(find("etc/modules.order").2, b"vfio.ko\n");
        assert_eq!(find("selftests/iommufd").1, 0o100755);
        assert_eq!(find("selftests/iommufd").2, b"ELF");
        assert_eq!(got.len(), sample().len());
    }

    #[test]
    fn same_inputs_same_bytes() {
        let a = write(&sample(), Vec::new()).unwrap();
        let b = write(&sample(), Vec::new()).unwrap();
        assert_eq!(a, b);
        let mut other = sample();
        other.push(Entry::Dir("extra".into()));
        assert_ne!(a, write(&other, Vec::new()).unwrap());
    }

    #[test]
    fn device_numbers_are_recorded() {
        let bytes = write(&[Entry::CharDev("dev/console".into(), 5, 1)], Vec::new()).unwrap();
        let r = cpio::newc::Reader::new(&bytes[..]).unwrap();
        assert_eq!(
            (
                r.entry().rdev_major(),
                r.entry().rdev_minor(),
                r.entry().mtime(),
                r.entry().uid()
            ),
            (5, 1, 0, 0)
        );
    }
}
