//! What iobench needs installed, pinned to versions: the Debian packages'
//! versions, the kernel source tarball, QEMU's build wheels, the checks
//! `cargo xtask doctor` prints, and [`require`], which the commands call
//! before they use a tool.  `cargo xtask setup` ([`crate::setup`]) installs
//! what is listed here; the places it unpacks things to are in
//! [`crate::cache`].

use std::path::Path;

use anyhow::{Result, bail};
use harness::machine::Arch;

use crate::cache::{busybox, ppc64le_sysroot, qemu_deps_dir, qemu_wheels_dir};

/// Debian's rustc-web 1.85, the ppc64le agent toolchain (both arches have it).
pub const RUST_WEB: &str = "1.85.0+dfsg3-1~deb12u3";
/// busybox-static, same version for amd64 and ppc64el.
pub const BUSYBOX: &str = "1:1.35.0-4+deb12u1+b1";
/// vhost-device-vsock from crates.io.
pub const VHOST_VSOCK: &str = "0.3.0";

/// The Debian kernel source tarball.
pub const LINUX_SOURCE: &str = "/usr/src/linux-source-6.12.tar.xz";

/// Python packages QEMU's configure wants in its venv (the +ds tarball
/// drops the bundled wheels); `setup` downloads them.
pub const WHEELS: &[&str] = &["meson==1.5.0", "pycotap==1.3.1"];

/// One dependency and its check.
struct Dep {
    name: &'static str,
    ok: bool,
    fix: &'static str,
}

/// Whether `bin` is on `PATH`.
pub fn on_path(bin: &str) -> bool {
    harness::process::which(bin).is_some()
}

fn deps() -> Vec<Dep> {
    vec![
        Dep {
            name: "qemu-system-ppc64 (QEMU 10, backports)",
            ok: on_path("qemu-system-ppc64"),
            fix: "cargo xtask setup",
        },
        Dep {
            name: "qemu-system-x86_64 (QEMU 10, backports)",
            ok: on_path("qemu-system-x86_64"),
            fix: "cargo xtask setup",
        },
        Dep {
            name: "vhost-device-vsock",
            ok: on_path("vhost-device-vsock"),
            fix: "cargo install --locked vhost-device-vsock@0.3.0",
        },
        Dep {
            name: "powerpc64le-linux-gnu-gcc",
            ok: on_path("powerpc64le-linux-gnu-gcc"),
            fix: "apt-get install gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross",
        },
        Dep {
            name: "kernel build tools (make flex bison bc)",
            ok: ["make", "flex", "bison", "bc"].iter().all(|b| on_path(b)),
            fix: "apt-get install make flex bison bc libelf-dev libssl-dev",
        },
        Dep {
            name: "linux-source-6.12",
            ok: Path::new(LINUX_SOURCE).is_file(),
            fix: "apt-get install -t bookworm-backports linux-source-6.12",
        },
        Dep {
            name: "linux-source-7.2 (Debian sid, verified, in the cache)",
            ok: crate::sid::cached().is_some(),
            fix: "cargo xtask setup (fetches it with a private apt configuration)",
        },
        Dep {
            name: "static libcap for the selftests (x86_64, ppc64le)",
            ok: [Arch::X86_64, Arch::Ppc64le]
                .iter()
                .all(|a| crate::cache::libcap(*a).join("version").is_file()),
            fix: "cargo xtask setup",
        },
        Dep {
            name: "Debian rustc 1.85 (/usr/bin/rustc)",
            ok: Path::new("/usr/bin/rustc").is_file(),
            fix: "cargo xtask setup (rustc-web cargo-web libstd-rust-web-dev)",
        },
        Dep {
            name: "ppc64le Rust std",
            ok: ppc64le_sysroot()
                .join("lib/rustlib/powerpc64le-unknown-linux-gnu/lib")
                .is_dir(),
            fix: "cargo xtask setup",
        },
        Dep {
            name: "static busybox (ppc64le)",
            ok: busybox("ppc64le").is_file(),
            fix: "cargo xtask setup",
        },
        Dep {
            name: "QEMU build deps (ninja, glib dev files, meson wheel)",
            ok: on_path("ninja")
                && qemu_deps_dir().join("pkgconfig/glib-2.0.pc").exists()
                && qemu_wheels_dir().is_dir(),
            fix: "cargo xtask setup",
        },
        Dep {
            name: "static busybox (x86_64)",
            ok: busybox("x86_64").is_file(),
            fix: "cargo xtask setup",
        },
    ]
}

/// Prints every dependency; returns how many are missing.
pub fn doctor() -> usize {
    let mut missing = 0;
    for d in deps() {
        if d.ok {
            println!("  ok       {}", d.name);
        } else {
            missing += 1;
            println!("  MISSING  {}  → {}", d.name, d.fix);
        }
    }
    missing
}

/// Fails with a clear message if a dependency of a command is missing.
pub fn require(bins: &[&str]) -> Result<()> {
    for b in bins {
        if !on_path(b) {
            bail!(
                "{b} is not installed; run `cargo xtask setup` (or `cargo xtask doctor` to see what is missing)"
            );
        }
    }
    Ok(())
}
