//! Where things live: the repository, the run output (`target/iobench`,
//! or `$IOBENCH_OUT`), the cache (`~/.cache/iobench`, or
//! `$IOBENCH_CACHE`) and the toolchains `cargo xtask setup` unpacks into it,
//! and content-hash keys for cached artifacts.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The repository root (the workspace containing xtask).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Where runs write their logs, manifests and reports: `target/iobench`,
/// or `$IOBENCH_OUT` (a run nested in another one keeps its logs apart).
pub fn out_dir() -> PathBuf {
    std::env::var_os("IOBENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/iobench"))
}

/// The cache root.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("IOBENCH_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/iobench")
}

/// pkg-config files (and their headers and libraries) for building QEMU.
pub fn qemu_deps_dir() -> PathBuf {
    cache_dir().join("toolchains/qemu-deps")
}

/// Python wheels QEMU's configure installs into its venv.
pub fn qemu_wheels_dir() -> PathBuf {
    cache_dir().join("toolchains/qemu-wheels")
}

/// The ppc64le Rust std unpacked from Debian's package.
pub fn ppc64le_sysroot() -> PathBuf {
    cache_dir().join("toolchains/ppc64le-sysroot")
}

/// Static busybox for `arch` (`ppc64le` / `x86_64`).
pub fn busybox(arch: &str) -> PathBuf {
    cache_dir().join(format!("toolchains/busybox-{arch}/bin/busybox"))
}

/// Debian's `libcap-dev` for `arch` (`libcap.a` and its header, for the
/// static selftests), unpacked with its `.deb` name in `version`.
pub fn libcap(arch: harness::machine::Arch) -> PathBuf {
    cache_dir().join(format!("toolchains/libcap-{arch}"))
}

/// The `.deb` that `apt-get download {what}` left in `dir` (a directory of
/// its own).
pub fn downloaded_deb(dir: &Path, what: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {what} left no .deb"))
}

/// A content key: hex SHA-256 over length-prefixed parts (so `ab`+`c` ≠ `a`+`bc`).
pub fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Short form of a key for directory names.
pub fn short(key: &str) -> &str {
    &key[..16.min(key.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_unambiguous() {
        assert_eq!(key(&[b"a", b"bc"]), key(&[b"a", b"bc"]));
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_ne!(key(&[b"config-a"]), key(&[b"config-b"]));
        assert_eq!(key(&[]).len(), 64);
        assert_eq!(short(&key(&[b"x"])).len(), 16);
    }
}
