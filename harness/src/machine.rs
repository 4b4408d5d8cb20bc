//! Machine definitions: the declarative TOML files under `qemu-configs/`.
//!
//! A definition names the QEMU machine, its options, memory and CPUs, the
//! kernel flavour and command line, and the emulated passthrough devices.
//! Loading is strict: unknown keys, unknown device kinds, bad sizes and
//! options that make no sense for the machine's architecture are errors that
//! name the file and line.  Command-line overrides (memory, cpus, extra
//! QEMU arguments) are applied on top with [`Machine::apply`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::toml_error;

/// Errors loading a machine definition.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or does not fit the schema.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No definition has that name.
    #[error("unknown machine {name:?}; available: {}", available.join(", "))]
    Unknown {
        /// The requested name.
        name: String,
        /// Names that exist.
        available: Vec<String>,
    },
}

/// Guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// 64-bit little-endian POWER (pseries).
    Ppc64le,
    /// x86_64 (q35).
    X86_64,
}

impl Arch {
    /// The name used for kernels, agents and initramfs images.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Ppc64le => "ppc64le",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The QEMU system emulator for this architecture.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::Ppc64le => "qemu-system-ppc64",
            Arch::X86_64 => "qemu-system-x86_64",
        }
    }

    /// The guest console device name.
    pub fn console(self) -> &'static str {
        match self {
            Arch::Ppc64le => "hvc0",
            Arch::X86_64 => "ttyS0",
        }
    }

    /// Parses `ppc64le` / `x86_64`.
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "ppc64le" | "ppc64el" | "powerpc64le" => Some(Arch::Ppc64le),
            "x86_64" | "amd64" => Some(Arch::X86_64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A guest kernel flavour (what `cargo xtask kernel` builds): written
/// `ppc64le-4k`, `ppc64le-64k` or `x86_64` in machine files, manifests and
/// on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KernelFlavour {
    /// ppc64le with 4 KiB pages (pseries).
    #[serde(rename = "ppc64le-4k")]
    Ppc64le4k,
    /// ppc64le with 64 KiB pages (pseries).
    #[serde(rename = "ppc64le-64k")]
    Ppc64le64k,
    /// x86_64 (q35).
    #[serde(rename = "x86_64")]
    X86_64,
}

impl KernelFlavour {
    /// Every flavour, in name order.
    pub const ALL: [KernelFlavour; 3] = [
        KernelFlavour::Ppc64le4k,
        KernelFlavour::Ppc64le64k,
        KernelFlavour::X86_64,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelFlavour::Ppc64le4k => "ppc64le-4k",
            KernelFlavour::Ppc64le64k => "ppc64le-64k",
            KernelFlavour::X86_64 => "x86_64",
        }
    }

    /// The architecture it runs on.
    pub fn arch(self) -> Arch {
        match self {
            KernelFlavour::Ppc64le4k | KernelFlavour::Ppc64le64k => Arch::Ppc64le,
            KernelFlavour::X86_64 => Arch::X86_64,
        }
    }

    /// The flavours of `arch`.
    pub fn of(arch: Arch) -> impl Iterator<Item = KernelFlavour> {
        Self::ALL.into_iter().filter(move |f| f.arch() == arch)
    }

    /// The flavour named `name`.
    pub fn parse(name: &str) -> Option<KernelFlavour> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for KernelFlavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which QEMU a machine runs on: `build = "stock"` or `"patched"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QemuBuild {
    /// The system's `qemu-system-*`.
    #[default]
    Stock,
    /// `qemu-system-ppc64` with `qemu-patches/`, built by `cargo xtask qemu`.
    Patched,
}

/// A size in bytes, written `512M`, `1G` or a plain byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    /// Parses `<n>[K|M|G]`.
    pub fn parse(s: &str) -> Result<Size, String> {
        let s = s.trim();
        let (num, mult) = match s.as_bytes().last() {
            Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
            Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
            Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
            _ => (s, 1),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("bad size {s:?}: expected e.g. 512M or 1G"))?;
        let bytes = n
            .checked_mul(mult)
            .ok_or_else(|| format!("size {s:?} overflows"))?;
        if bytes < 64 << 20 {
            return Err(format!(
                "size {s:?} is too small for a guest (at least 64M)"
            ));
        }
        Ok(Size(bytes))
    }

    /// QEMU's `-m` form, in MiB.
    pub fn qemu_arg(self) -> String {
        format!("{}M", self.0 >> 20)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Size::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An emulated device the guest drives through VFIO.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Device {
    /// QEMU's `edu` educational device (1234:11e8): a DMA engine with a 4 KiB buffer.
    Edu {
        /// Device id, unique in the machine (used in scenarios and QEMU ids).
        id: String,
        /// pseries only: index of the `spapr-pci-host-bridge` of its own (one PHB = one PE).
        #[serde(default)]
        phb: Option<u32>,
        /// Bind to vfio-pci at boot (default true).
        #[serde(default = "yes")]
        vfio: bool,
        /// DMA address mask (QEMU's default `(1<<28)-1` truncates IOVAs).
        #[serde(default = "full_mask")]
        dma_mask: String,
        /// pseries only: emulated EEH on its PHB (`x-emu-eeh=on`; needs
        /// `build = "patched"`, see `qemu-patches/`).
        #[serde(default)]
        eeh: bool,
        /// pseries only: behind a `pci-bridge` on PHB `phb` (made once per
        /// PHB, at slot 2) rather than on its root bus.  A PHB is one PE:
        /// its edus, bridged or not, share one IOMMU group.
        #[serde(default)]
        bridge: bool,
    },
}

fn yes() -> bool {
    true
}

fn full_mask() -> String {
    "0xffffffffffffffff".into()
}

/// The IOMMU model of an x86 machine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Iommu {
    /// QEMU device model, e.g. `intel-iommu`.
    pub model: String,
    /// Its properties, e.g. `intremap = "on"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The QEMU part of a definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSection {
    /// `-machine` type: `pseries` or `q35`.
    pub machine: String,
    /// `-machine` properties, e.g. `x-vof = "on"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Which QEMU: `stock` (the system's) or `patched` (built by `cargo xtask qemu`).
    #[serde(default)]
    pub build: QemuBuild,
    /// Extra arguments appended verbatim (as separate argv entries).
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// The kernel part of a definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSection {
    /// Kernel flavour built by `cargo xtask kernel`, e.g. `ppc64le-4k`.
    pub flavour: KernelFlavour,
    /// Extra kernel command-line words.
    #[serde(default)]
    pub cmdline: String,
}

/// One machine definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Name used on the command line and in test names.
    pub name: String,
    /// What the machine is for.
    #[serde(default)]
    pub description: String,
    /// Guest architecture.
    pub arch: Arch,
    /// Guest RAM.
    pub memory: Size,
    /// Guest CPUs.
    #[serde(default = "one")]
    pub cpus: u32,
    /// QEMU settings.
    pub qemu: QemuSection,
    /// Kernel settings.
    pub kernel: KernelSection,
    /// x86 only: the vIOMMU.
    #[serde(default)]
    pub iommu: Option<Iommu>,
    /// Emulated devices for VFIO.
    #[serde(default, rename = "device")]
    pub devices: Vec<Device>,
}

fn one() -> u32 {
    1
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replace the memory size.
    pub memory: Option<Size>,
    /// Replace the CPU count.
    pub cpus: Option<u32>,
    /// Append QEMU arguments.
    pub extra_args: Vec<String>,
    /// Append kernel command-line words.
    pub cmdline: Option<String>,
}

impl Machine {
    /// Parses and validates a definition; `path` is used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Machine, MachineError> {
        let err = |line: usize, message: String| MachineError::Parse {
            path: path.to_owned(),
            line,
            message,
        };
        let m: Machine = toml::from_str(text).map_err(|e| {
            let (line, message) = toml_error::locate(text, &e);
            err(line, message)
        })?;
        let line_of_key = |needle: &str| toml_error::line_of_first(text, needle);
        let expected_machine = match m.arch {
            Arch::Ppc64le => "pseries",
            Arch::X86_64 => "q35",
        };
        if m.qemu.machine != expected_machine {
            return Err(err(
                line_of_key("machine"),
                format!(
                    "arch {} needs machine \"{expected_machine}\", not {:?}",
                    m.arch, m.qemu.machine
                ),
            ));
        }
        if m.cpus == 0 || m.cpus > 64 {
            return Err(err(
                line_of_key("cpus"),
                format!("cpus must be 1..=64, not {}", m.cpus),
            ));
        }
        if m.arch == Arch::Ppc64le && m.iommu.is_some() {
            return Err(err(
                line_of_key("[iommu]"),
                "pseries has its own sPAPR IOMMU; [iommu] is for q35".into(),
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        // (PHB, behind its bridge): one edu each.
        let mut phbs = std::collections::BTreeSet::new();
        for d in &m.devices {
            let Device::Edu {
                id,
                phb,
                dma_mask,
                eeh,
                bridge,
                ..
            } = d;
            let at = line_of_key(&format!("\"{id}\""));
            if *eeh && (m.arch != Arch::Ppc64le || m.qemu.build != QemuBuild::Patched) {
                return Err(err(
                    at,
                    format!(
                        "device {id:?}: eeh = true needs a pseries machine with build = \"patched\" (stock QEMU has no EEH for emulated devices)"
                    ),
                ));
            }
            if !ids.insert(id.clone()) {
                return Err(err(at, format!("duplicate device id {id:?}")));
            }
            if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || id.is_empty() {
                return Err(err(
                    at,
                    format!("device id {id:?}: use letters, digits and _"),
                ));
            }
            if u64::from_str_radix(dma_mask.trim_start_matches("0x"), 16).is_err() {
                return Err(err(
                    at,
                    format!("dma_mask {dma_mask:?} is not a hex number"),
                ));
            }
            match (m.arch, phb) {
                (Arch::Ppc64le, None) => {
                    return Err(err(
                        at,
                        format!(
                            "device {id:?}: pseries devices need phb = N (their own PHB, one PE each)"
                        ),
                    ));
                }
                (Arch::Ppc64le, Some(n)) if *n == 0 || *n > 30 || !phbs.insert((*n, *bridge)) => {
                    return Err(err(
                        at,
                        format!(
                            "device {id:?}: phb must be 1..=30 and not shared (but by one edu behind its bridge), got {n}"
                        ),
                    ));
                }
                (Arch::X86_64, Some(_)) => {
                    return Err(err(at, format!("device {id:?}: phb is a pseries setting")));
                }
                _ => {}
            }
            if *bridge && m.qemu.options.get("x-vof").is_some_and(|v| v == "on") {
                return Err(err(
                    at,
                    format!(
                        "device {id:?}: bridge = true needs SLOF (drop x-vof): QEMU's device tree gives a bridge no bus-range under VOF, and Linux finds nothing behind it"
                    ),
                ));
            }
            let same_phb = |o: &Device| matches!(o, Device::Edu { phb: p, .. } if p == phb);
            if m.devices
                .iter()
                .any(|o| same_phb(o) && matches!(o, Device::Edu { eeh: e, .. } if e != eeh))
            {
                return Err(err(
                    at,
                    format!("device {id:?}: the edus of a PHB all have eeh, or none"),
                ));
            }
        }
        Ok(m)
    }

    /// How many PEs (IOMMU groups) the devices make: one per PHB on
    /// pseries, one per device on x86.
    pub fn pe_count(&self) -> usize {
        let keys: std::collections::BTreeSet<Option<u32>> = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| match (self.arch, d) {
                (Arch::Ppc64le, Device::Edu { phb, .. }) => *phb,
                (Arch::X86_64, _) => Some(i as u32),
            })
            .collect();
        keys.len()
    }

    /// Loads `path`.
    pub fn load(path: &Path) -> Result<Machine, MachineError> {
        let text = std::fs::read_to_string(path).map_err(|source| MachineError::Read {
            path: path.to_owned(),
            source,
        })?;
        Machine::from_toml(&text, path)
    }

    /// Loads the definition called `name` from `dir` (`<dir>/<name>.toml`).
    pub fn find(dir: &Path, name: &str) -> Result<Machine, MachineError> {
        let path = dir.join(format!("{name}.toml"));
        if !path.is_file() {
            return Err(MachineError::Unknown {
                name: name.to_string(),
                available: available(dir),
            });
        }
        Machine::load(&path)
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(m) = o.memory {
            self.memory = m;
        }
        if let Some(c) = o.cpus {
            self.cpus = c;
        }
        self.qemu.extra_args.extend(o.extra_args.iter().cloned());
        if let Some(c) = &o.cmdline {
            self.kernel.cmdline = format!("{} {c}", self.kernel.cmdline).trim().to_string();
        }
    }

    /// vendor:device ids the agent binds to vfio-pci at boot.
    pub fn vfio_ids(&self) -> Vec<&'static str> {
        let mut ids: Vec<&'static str> = self
            .devices
            .iter()
            .filter_map(|d| match d {
                Device::Edu { vfio: true, .. } => Some("1234:11e8"),
                _ => None,
            })
            .collect();
        ids.dedup();
        ids
    }
}

/// Names of the definitions in `dir`, sorted.
pub fn available(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".toml")
                .map(String::from)
        })
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests;
