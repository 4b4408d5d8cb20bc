//! `cargo xtask qemu`: a `qemu-system-ppc64` with our patches
//! (`qemu-patches/*.patch`, e.g. EEH for emulated devices), built from the
//! Debian QEMU 10.0.2 orig tarball (`apt-get source --download-only`) or a
//! source tree given with `--src`, configured for the ppc64 softmmu target
//! only, and checked by the patches' qtest before it is used.
//!
//! The result is cached under `~/.cache/iobench/qemu/<key>/`, where the key
//! hashes the source (tarball bytes, or the tree's git state), the patches
//! and the configure flags: an unchanged rebuild is a directory lookup.
//! Build dependencies come from `cargo xtask setup` (glib's development files
//! are unpacked into the cache, not installed: see `crate::setup`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::cache::{cache_dir, key, qemu_deps_dir, qemu_wheels_dir, repo_root, short};
use crate::progress::Stage;

/// The orig tarball `apt-get source` gives for QEMU 10.0.2.
pub const ORIG_TARBALL: &str = "qemu_10.0.2+ds.orig.tar.xz";
/// Its top-level directory.
const ORIG_DIR: &str = "qemu-10.0.2";
/// The qtests our patches add; each must pass before the binary is cached.
const QTESTS: &[&str] = &["spapr-emu-eeh-test"];
/// Only what the pseries machines need; no tools, docs or firmware blobs
/// (the firmware comes from Debian's qemu-system-data via `-L`).
const CONFIGURE: &[&str] = &[
    "--target-list=ppc64-softmmu",
    "--enable-fdt=system",
    "--disable-docs",
    "--disable-werror",
    "--disable-install-blobs",
    "--disable-user",
    "--disable-tools",
    "--disable-guest-agent",
];
/// Where Debian's firmware (vof.bin, slof.bin) lives; passed as `-L`.
pub const FIRMWARE_DIR: &str = "/usr/share/qemu";

fn patches() -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("qemu-patches"))
        .context("reading qemu-patches/")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    v.sort();
    Ok(v)
}

fn tarball() -> PathBuf {
    cache_dir().join("qemu/src").join(ORIG_TARBALL)
}

fn build_key(src: Option<&Path>) -> Result<String> {
    let source: Vec<u8> = match src {
        Some(dir) => crate::source::tree_identity(dir)?.into_bytes(),
        None => {
            let t = tarball();
            if !t.exists() {
                fetch_tarball()?;
            }
            // The tarball is 39 MB: hash its name and size, which apt has
            // already verified against the Sources index.
            let len = std::fs::metadata(&t)?.len();
            format!("{ORIG_TARBALL}:{len}").into_bytes()
        }
    };
    let mut parts: Vec<Vec<u8>> = vec![source, CONFIGURE.join(" ").into_bytes()];
    for p in patches()? {
        parts.push(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Ok(key(&refs))
}

fn fetch_tarball() -> Result<()> {
    let dir = cache_dir().join("qemu/src");
    std::fs::create_dir_all(&dir)?;
    let sh = Shell::new()?;
    let _cd = sh.push_dir(&dir);
    crate::progress::run(
        format!("qemu: downloading {ORIG_TARBALL} (once)"),
        cmd!(sh, "apt-get source --download-only --tar-only qemu/bookworm-backports"),
        None,
    )
    .context("apt-get source failed: is the deb-src line for bookworm-backports there? run `cargo xtask setup`")?;
    if !tarball().exists() {
        bail!(
            "apt-get source did not give {ORIG_TARBALL} in {}; the backports QEMU is no longer 10.0.2?",
            dir.display()
        );
    }
    Ok(())
}

/// Builds (or finds) the patched `qemu-system-ppc64`; returns its path.
pub fn build(src: Option<&Path>) -> Result<PathBuf> {
    let k = build_key(src)?;
    let out = cache_dir().join(format!("qemu/{}", short(&k)));
    let bin = out.join("qemu-system-ppc64");
    if bin.exists() {
        return Ok(bin);
    }
    crate::deps::require(&["ninja", "python3"])?;
    let deps = qemu_deps_dir();
    if !qemu_wheels_dir().is_dir() || !deps.join("pkgconfig/glib-2.0.pc").exists() {
        bail!(
            "QEMU's build dependencies (glib development files in {}, meson wheels in {}) are missing; run `cargo xtask setup`",
            deps.display(),
            qemu_wheels_dir().display()
        );
    }
    let t0 = Instant::now();
    let sh = Shell::new()?;
    let work = cache_dir().join(format!("qemu/build-{}", short(&k)));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let tree = match src {
        Some(dir) => {
            if !dir.join("configure").is_file() || !dir.join("hw/ppc/spapr_pci.c").is_file() {
                bail!(
                    "{} does not look like a QEMU source tree (no configure or hw/ppc/spapr_pci.c)",
                    dir.display()
                );
            }
            // Patch a copy: the user's tree stays as it is.
            let stage = Stage::start(format!("qemu: copying {}", dir.display()));
            let copy = work.join("src");
            let tar = work.join("src.tar");
            stage.run(
                cmd!(
                    sh,
                    "tar -C {dir} --exclude=./build --exclude=./.git -cf {tar} ."
                ),
                None,
            )?;
            std::fs::create_dir_all(&copy)?;
            stage.run(cmd!(sh, "tar -C {copy} -xf {tar}"), None)?;
            std::fs::remove_file(&tar)?;
            stage.done();
            copy
        }
        None => {
            let t = tarball();
            crate::progress::run(
                format!("qemu: unpacking {ORIG_TARBALL}"),
                cmd!(sh, "tar -C {work} -xf {t}"),
                None,
            )?;
            work.join(ORIG_DIR)
        }
    };
    for p in patches()? {
        let _cd = sh.push_dir(&tree);
        crate::progress::run(
            format!(
                "qemu: applying {}",
                p.file_name().unwrap_or_default().to_string_lossy()
            ),
            cmd!(sh, "patch -p1 --forward --quiet -i {p}"),
            None,
        )
        .with_context(|| format!("{} does not apply to {}", p.display(), tree.display()))?;
    }
    let wheels = tree.join("python/wheels");
    std::fs::create_dir_all(&wheels)?;
    for w in std::fs::read_dir(qemu_wheels_dir())?.flatten() {
        std::fs::copy(w.path(), wheels.join(w.file_name()))?;
    }
    let build = work.join("build");
    std::fs::create_dir_all(&build)?;
    let log = work.join("build.log");
    let configure = tree.join("configure");
    let flags = CONFIGURE;
    let pkg = deps.join("pkgconfig");
    {
        let _cd = sh.push_dir(&build);
        let _env = sh.push_env("PKG_CONFIG_PATH", &pkg);
        crate::progress::run(
            format!("qemu: configure {}", flags.join(" ")),
            cmd!(sh, "{configure} --python=/usr/bin/python3 {flags...}"),
            Some(&log),
        )?;
        let jobs = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .to_string();
        crate::progress::run(
            format!("qemu: ninja qemu-system-ppc64 (log: {})", log.display()),
            cmd!(sh, "ninja -j {jobs} qemu-system-ppc64"),
            Some(&log),
        )?;
        // Firmware for the qtests, where a build tree looks for it.
        let bundle = build.join("qemu-bundle/usr/local/share/qemu");
        std::fs::create_dir_all(&bundle)?;
        for f in std::fs::read_dir(FIRMWARE_DIR)
            .with_context(|| format!("reading {FIRMWARE_DIR}"))?
            .flatten()
        {
            let _ = std::os::unix::fs::symlink(f.path(), bundle.join(f.file_name()));
        }
        for t in QTESTS {
            let stage = Stage::start(format!("qemu: qtest {t}"));
            let target = format!("tests/qtest/{t}");
            stage.run(cmd!(sh, "ninja -j {jobs} {target}"), Some(&log))?;
            let _q = sh.push_env("QTEST_QEMU_BINARY", "./qemu-system-ppc64");
            stage
                .run(cmd!(sh, "./tests/qtest/{t}"), Some(&log))
                .with_context(|| format!("the qtest {t} failed"))?;
            stage.done();
        }
    }
    std::fs::create_dir_all(&out)?;
    let tmp = out.join(".qemu-system-ppc64.tmp");
    std::fs::copy(build.join("qemu-system-ppc64"), &tmp)?;
    std::fs::rename(&tmp, &bin)?;
    std::fs::copy(&log, out.join("build.log"))?;
    let _ = std::fs::remove_dir_all(&work);
    println!(
        "qemu: built {} in {:.0} s",
        bin.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_qtest_run_is_added_by_a_patch_and_patches_are_ordered() {
        let p = patches().unwrap();
        assert!(!p.is_empty());
        let names: Vec<String> = p
            .iter()
            .map(|x| x.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(
            names
                .iter()
                .all(|n| n.len() > 5 && n[..4].chars().all(|c| c.is_ascii_digit())),
            "{names:?}"
        );
        let text: String = p
            .iter()
            .map(|x| std::fs::read_to_string(x).unwrap())
            .collect();
        for t in QTESTS {
            assert!(
                text.contains(&format!("+++ b/tests/qtest/{t}.c")),
                "no patch adds {t}"
            );
        }
        assert!(CONFIGURE.contains(&"--target-list=ppc64-softmmu"));
    }
}
