//! Shared pieces of the VM test suite: the image manifest that
//! `cargo xtask test` writes and the suite reads, and the [`pool`] of booted
//! machines the scenario trials share.

pub mod pool;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Environment variable naming the manifest.
pub const MANIFEST_ENV: &str = "IOBENCH_IMAGES";

/// Images and accelerator per kernel flavour, plus where logs go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Per kernel flavour (`x86_64`, `ppc64le-4k`, …).
    pub flavours: BTreeMap<String, FlavourImages>,
    /// Root of the per-trial log directories.
    pub log_root: PathBuf,
    /// The repository's `qemu-configs/`.
    pub machines_dir: PathBuf,
    /// The repository's `scenarios/`.
    pub scenarios_dir: PathBuf,
    /// Only these machine definitions (empty: all).
    #[serde(default)]
    pub machines: Vec<String>,
    /// Write a JUnit XML report here.
    #[serde(default)]
    pub junit: Option<PathBuf>,
    /// Write a JSON report here.
    #[serde(default)]
    pub json: Option<PathBuf>,
}

/// What one flavour boots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlavourImages {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Unstripped vmlinux.
    pub vmlinux: Option<PathBuf>,
    /// Initramfs.
    pub initramfs: PathBuf,
    /// `tcg` or `kvm`.
    pub accel: String,
}
