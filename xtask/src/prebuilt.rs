//! `--prebuilt debian`: Debian's own 6.12 kernels (bookworm-backports) and
//! the modules a guest needs, instead of a build from source.
//!
//! Quick to get, but Debian builds without iommufd (no `IOMMUFD`, no VFIO
//! cdev, no selftest), so the iommufd scenarios are ignored on these kernels.
//! The package ships modules without `modules.dep`, so the load order comes
//! from each module's own `.modinfo` (`depends=`), read from the ELF; the
//! modules are decompressed here, so the guest's busybox `insmod` loads them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use harness::machine::{Arch, KernelFlavour};
use xshell::{Shell, cmd};

use crate::cache::cache_dir;
use crate::progress::Stage;

/// A Debian kernel image with its modules in load order.
#[derive(Debug, Clone)]
pub struct Prebuilt {
    /// What QEMU boots (bzImage on x86_64, the ELF vmlinux on ppc64le).
    pub image: PathBuf,
    /// Module file names and contents, dependencies first.
    pub modules: Vec<(String, Vec<u8>)>,
    /// The package and version, e.g. `linux-image-6.12.95+deb12-amd64 6.12.95-1~bpo12+1`.
    pub package: String,
}

/// Debian's metapackage and architecture for one of our kernel flavours.
fn metapackage(flavour: KernelFlavour) -> (&'static str, &'static str, Arch) {
    match flavour {
        KernelFlavour::X86_64 => ("linux-image-amd64", "amd64", Arch::X86_64),
        KernelFlavour::Ppc64le4k => ("linux-image-powerpc64le", "ppc64el", Arch::Ppc64le),
        KernelFlavour::Ppc64le64k => ("linux-image-powerpc64le-64k", "ppc64el", Arch::Ppc64le),
    }
}

/// The modules the guest must load: VFIO with the platform's IOMMU backend,
/// vfio-pci, and the virtio vsock transport (everything else Debian builds in).
fn roots(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &[
            "vfio",
            "vfio_iommu_type1",
            "vfio_pci",
            "vmw_vsock_virtio_transport",
        ],
        Arch::Ppc64le => &[
            "vfio",
            "vfio_iommu_spapr_tce",
            "vfio_pci",
            "vmw_vsock_virtio_transport",
        ],
    }
}

/// Downloads (once) and unpacks Debian's kernel for `flavour`; collects its modules.
pub fn debian(flavour: KernelFlavour) -> Result<Prebuilt> {
    let (meta, debarch, arch) = metapackage(flavour);
    let sh = Shell::new()?;
    let spec = format!("{meta}:{debarch}/bookworm-backports");
    let info = cmd!(sh, "apt-cache show --no-all-versions {spec}")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("apt knows no {spec}; run `cargo xtask setup` (it adds bookworm-backports and ppc64el)"))?;
    let depends = info
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .context("the metapackage has no Depends")?;
    // "linux-image-6.12.95+deb12-amd64 (= 6.12.95-1~bpo12+1)"
    let (pkg, version) = depends
        .split(',')
        .next()
        .and_then(|d| d.split_once(" (= "))
        .map(|(p, v)| (p.trim().to_string(), v.trim_end_matches(')').to_string()))
        .with_context(|| format!("unexpected Depends of {meta}: {depends}"))?;
    let dir = cache_dir().join(format!("prebuilt/{pkg}_{version}"));
    if !dir.join("unpacked").is_file() {
        let stage = Stage::start(format!(
            "prebuilt: downloading {pkg}:{debarch} {version} (once)"
        ));
        let tmp = tempfile::tempdir()?;
        // apt downloads as the unprivileged _apt user when it can write the directory.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let _cd = sh.push_dir(tmp.path());
        let want = format!("{pkg}:{debarch}={version}");
        stage
            .run(cmd!(sh, "apt-get download {want}"), None)
            .with_context(|| format!("apt-get download {want}"))?;
        let deb = std::fs::read_dir(tmp.path())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .context("apt-get download produced no .deb")?;
        let root = dir.join("root");
        std::fs::create_dir_all(&root)?;
        stage.run(cmd!(sh, "dpkg-deb -x {deb} {root}"), None)?;
        std::fs::write(dir.join("unpacked"), format!("{pkg} {version}\n"))?;
        stage.done();
    }
    let root = dir.join("root");
    let image = find_image(&root.join("boot"), arch)?;
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
        .context("the package has no lib/modules")?;
    let modules = load_order(&modules_dir, roots(arch))?;
    Ok(Prebuilt {
        image,
        modules,
        package: format!("{pkg} {version}"),
    })
}

fn find_image(boot: &Path, arch: Arch) -> Result<PathBuf> {
    let prefix = match arch {
        Arch::X86_64 => "vmlinuz-",
        Arch::Ppc64le => "vmlinux-",
    };
    std::fs::read_dir(boot)
        .with_context(|| format!("{}", boot.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .with_context(|| format!("no {prefix}* in {}", boot.display()))
}

/// Module name as the kernel spells it (`vfio-pci` and `vfio_pci` are one module).
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// Every `*.ko` / `*.ko.xz` below `dir`, by canonical name.
fn index(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if p.is_dir() {
            index(&p, out)?;
        } else if let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko.xz").or_else(|| n.strip_suffix(".ko")))
        {
            out.insert(canonical(stem), p);
        }
    }
    Ok(())
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|x| x == "xz") {
        let out = std::process::Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .with_context(|| format!("xz -dc {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "xz -dc {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    } else {
        Ok(std::fs::read(path)?)
    }
}

/// The modules reachable from `roots` through `depends=`, dependencies first.
pub fn load_order(dir: &Path, roots: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut all = BTreeMap::new();
    index(dir, &mut all)?;
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for r in roots {
        visit(&canonical(r), &all, &mut done, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

fn visit(
    name: &str,
    all: &BTreeMap<String, PathBuf>,
    done: &mut BTreeSet<String>,
    stack: &mut Vec<String>,
    out: &mut Vec<(String, Vec<u8>)>,
) -> Result<()> {
    if done.contains(name) {
        return Ok(());
    }
    if stack.iter().any(|s| s == name) {
        bail!("module dependency cycle: {} → {name}", stack.join(" → "));
    }
    let path = all
        .get(name)
        .with_context(|| format!("module {name} is not in the package (built in, or misspelt?)"))?;
    let bytes = read_module(path)?;
    let info =
        modinfo(&bytes).with_context(|| format!("reading .modinfo of {}", path.display()))?;
    stack.push(name.to_string());
    for dep in info
        .iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, v)| v.split(','))
        .filter(|d| !d.is_empty())
    {
        visit(&canonical(dep), all, done, stack, out)?;
    }
    stack.pop();
    done.insert(name.to_string());
    out.push((format!("{name}.ko"), bytes));
    Ok(())
}

/// The `key=value` strings of an ELF64 module's `.modinfo` section.
pub fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) {
        bail!("not a 64-bit ELF file");
    }
    let le = match elf.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => bail!("bad ELF byte order"),
    };
    let get = |at: usize, n: usize| -> Result<u64> {
        let b = elf.get(at..at + n).context("truncated ELF")?;
        let mut v = 0u64;
        for (i, byte) in b.iter().enumerate() {
            let shift = if le { i } else { n - 1 - i } * 8;
            v |= u64::from(*byte) << shift;
        }
        Ok(v)
    };
    let (shoff, shentsize, shnum, shstrndx) = (
        get(0x28, 8)? as usize,
        get(0x3a, 2)? as usize,
        get(0x3c, 2)? as usize,
        get(0x3e, 2)? as usize,
    );
    let section = |i: usize| -> Result<(u64, usize, usize)> {
        let h = shoff + i * shentsize;
        Ok((
            get(h, 4)?,
            get(h + 0x18, 8)? as usize,
            get(h + 0x20, 8)? as usize,
        ))
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let names = elf
        .get(stroff..stroff + strsize)
        .context("truncated section names")?;
    for i in 0..shnum {
        let (name, off, size) = section(i)?;
        let n = names.get(name as usize..).unwrap_or_default();
        let n = &n[..n.iter().position(|&c| c == 0).unwrap_or(n.len())];
        if n == b".modinfo" {
            let data = elf.get(off..off + size).context("truncated .modinfo")?;
            return Ok(data
                .split(|&c| c == 0)
                .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect());
        }
    }
    bail!("no .modinfo section")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 little-endian file: null, .shstrtab and .modinfo sections.
    fn fake_module(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let str_off = f.len();
        f.extend_from_slice(shstrtab);
        let info_off = f.len();
        f.extend_from_slice(modinfo);
        let shoff = f.len();
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(0, 0, 0);
        sh(1, str_off, shstrtab.len());
        sh(11, info_off, modinfo.len());
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        f
    }

    #[test]
    fn modinfo_is_read_from_the_section() {
        let m = fake_module(b"license=GPL\0depends=vfio,irqbypass\0name=vfio_pci_core\0");
        let info = modinfo(&m).unwrap();
        assert!(info.contains(&("depends".into(), "vfio,irqbypass".into())));
        assert!(info.contains(&("name".into(), "vfio_pci_core".into())));
        assert!(modinfo(b"not an elf").is_err());
        assert!(
            modinfo(&m[..70]).is_err(),
            "truncated files are errors, not panics"
        );
    }

    #[test]
    fn load_order_puts_dependencies_first_and_spots_cycles() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, deps: &str| {
            let sub = dir.path().join("kernel/drivers");
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(
                sub.join(format!("{name}.ko")),
                fake_module(format!("depends={deps}\0").as_bytes()),
            )
            .unwrap();
        };
        put("irqbypass", "");
        put("vfio", "");
        put("vfio-pci-core", "vfio,irqbypass");
        put("vfio-pci", "vfio-pci-core,vfio");
        let order: Vec<String> = load_order(dir.path(), &["vfio_pci"])
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            order,
            ["vfio.ko", "irqbypass.ko", "vfio_pci_core.ko", "vfio_pci.ko"]
        );
        assert!(
            load_order(dir.path(), &["nope"])
                .unwrap_err()
                .to_string()
                .contains("not in the package")
        );
        put("a", "b");
        put("b", "a");
        assert!(format!("{:#}", load_order(dir.path(), &["a"]).unwrap_err()).contains("cycle"));
    }
}
