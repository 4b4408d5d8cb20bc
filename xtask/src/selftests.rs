//! The upstream selftests of the IOMMU uAPI, built from the same tree as
//! the kernel (with the same patches), statically, for the guest's
//! architecture, and cached like kernels: `tools/testing/selftests/iommu`
//! (`iommufd`, `iommufd_fail_nth`) and, where the tree has them,
//! `tools/testing/selftests/vfio` (x86_64 only: the VFIO selftests have no
//! sPAPR mode).  `selftests/patches/<version>/*.patch` are applied on top
//! (the libvfio driver for QEMU's edu device; a 6.12 build fix).
//!
//! The result goes into the initramfs under `/selftests/`; each program's
//! test cases are listed with the kselftest harness's `-l` at build time
//! (from the x86_64 build, which runs here: the same source lists the same
//! cases on every arch), so the suite can make one trial per case before
//! anything boots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use harness::linux::Linux;
use harness::machine::Arch;
use serde::{Deserialize, Serialize};

use crate::cache::{cache_dir, key, repo_root, short};

/// One selftest directory and the programs iobench runs from it.
struct Dir {
    /// Under `tools/testing/selftests/`.
    path: &'static str,
    /// The programs (`TEST_GEN_PROGS` iobench uses).
    programs: &'static [&'static str],
    /// Architectures it is built for.
    arches: &'static [Arch],
}

const DIRS: &[Dir] = &[
    Dir {
        path: "iommu",
        programs: &["iommufd", "iommufd_fail_nth"],
        arches: &[Arch::Ppc64le, Arch::X86_64],
    },
    Dir {
        path: "vfio",
        programs: &[
            "vfio_pci_device_test",
            "vfio_pci_driver_test",
            "vfio_dma_mapping_test",
            "vfio_iommufd_setup_test",
        ],
        arches: &[Arch::X86_64],
    },
];

/// The selftests built for one (version, arch).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Built {
    /// Program name → its file.
    pub programs: BTreeMap<String, PathBuf>,
    /// Program name → its test cases (`fixture.variant.test`), as `-l` lists them.
    pub cases: BTreeMap<String, Vec<String>>,
    /// Program name → its lister (x86_64 builds only): see [`LISTER_MK`].
    #[serde(default)]
    pub listers: BTreeMap<String, PathBuf>,
}

/// Extra make rules: each program once more as `<program>-lister`, its
/// `main()` renamed away and replaced by the kselftest harness's own runner
/// (`test_harness_run`, static in the program's translation unit, hence
/// the `#include` of the program's source).  A program's `main` may need a
/// device before it lists (the VFIO tests open theirs first); the lister
/// lists (`-l`) with nothing but the test registrations, which are
/// constructors.  Linked like the program (`$(LIBVFIO_O)` is empty outside
/// `vfio/`).
const LISTER_MK: &str = concat!(
    "# iobench: every program once more, with the kselftest harness's runner as main().\n",
    "$(OUTPUT)/%-lister.c: %.c\n",
    "\tprintf '#define main iobench_program_main\\n#include \"$(CURDIR)/$<\"\\n#undef main\\nint main(int argc, char **argv)\\n{\\n\\treturn test_harness_run(argc, argv);\\n}\\n' > $@\n",
    "$(OUTPUT)/%-lister: $(OUTPUT)/%-lister.c $(LIBVFIO_O)\n",
    "\t$(CC) $(CFLAGS) $(CPPFLAGS) $(LDFLAGS) $< $(LIBVFIO_O) $(LDLIBS) -o $@\n",
);

/// The versions whose selftests the VM suite runs.  6.12's build (with
/// `selftests/patches/6.12/`, `cargo xtask selftests --linux 6.12`) is not
/// run there: next to a real IOMMU nearly every case fails on 6.12 by
/// known bug 0004, which `scenarios/mock/domain_next_to_real_iommu.toml`
/// already shows, and each run takes minutes under TCG.
pub const IN_SUITE: &[Linux] = &[Linux::V7_2];

fn triplet(arch: Arch) -> &'static str {
    match arch {
        Arch::Ppc64le => "powerpc64le-linux-gnu",
        Arch::X86_64 => "x86_64-linux-gnu",
    }
}

fn make_env(arch: Arch) -> Vec<String> {
    match arch {
        Arch::X86_64 => vec!["ARCH=x86".into()],
        Arch::Ppc64le => vec![
            "ARCH=powerpc".into(),
            "CROSS_COMPILE=powerpc64le-linux-gnu-".into(),
        ],
    }
}

/// The selftest patches for `linux` (`selftests/patches/<version>/`), in order.
pub fn patch_files(linux: Linux) -> Result<Vec<PathBuf>> {
    let dir = repo_root().join(format!("selftests/patches/{linux}"));
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<PathBuf> = rd
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    out.retain(|p| p.extension().is_some_and(|x| x == "patch"));
    out.sort();
    Ok(out)
}

/// The tree the selftests come from: the kernel's, with its patches.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The unpatched source tree.
    pub base: PathBuf,
    /// Its identity for cache keys (`crate::source::tree_identity` or Debian's package).
    pub ident: String,
    /// The kernel's patches (`--patch`, `--fixes`).
    pub patches: Vec<crate::patch::Patch>,
}

/// Builds (or finds in the cache) the selftests of `linux` for `arch`
/// from `tree`, with the kernel's patches and the selftest patches.
pub fn build(linux: Linux, arch: Arch, tree: &Tree) -> Result<Built> {
    let mut patches = tree.patches.clone();
    patches.extend(crate::patch::load(&patch_files(linux)?)?);
    let base = tree.base.clone();
    let ident = tree.ident.clone() + &crate::patch::identity(&patches);
    let cap = crate::cache::libcap(arch);
    if !cap.join("usr/include/sys/capability.h").is_file() {
        bail!(
            "libcap for {arch} is missing at {}; run `cargo xtask setup`",
            cap.display()
        );
    }
    let cc = match arch {
        Arch::X86_64 => "gcc".to_string(),
        Arch::Ppc64le => format!("{}-gcc", triplet(arch)),
    };
    crate::deps::require(&["make", &cc])?;
    let toolchain = Command::new(&cc)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .with_context(|| format!("running {cc}"))?;
    let k = key(&[
        b"iobench-selftests-v1",
        ident.as_bytes(),
        toolchain.as_bytes(),
        include_str!("selftests.rs").as_bytes(),
        std::fs::read_to_string(cap.join("version"))
            .unwrap_or_default()
            .as_bytes(),
    ]);
    let out = cache_dir().join(format!("selftests/{linux}-{arch}-{}", short(&k)));
    let manifest = out.join("built.json");
    if let Ok(bytes) = std::fs::read(&manifest)
        && let Ok(b) = serde_json::from_slice::<Built>(&bytes)
    {
        return Ok(b);
    }
    let work = crate::patch::work_tree(&base, &patches)?;
    let dir_of_tree = &work.dir;
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let log = out.join("build.log");
    // The uAPI headers, generated out of tree (`make headers`; the tree
    // stays clean for the kernel's own O= builds).
    let hdr = out.join("headers");
    let mut make = Command::new("make");
    make.current_dir(dir_of_tree)
        .args(make_env(arch))
        .arg(format!("O={}", hdr.display()))
        .arg("headers");
    crate::progress::run(
        format!("selftests: Linux {linux} uAPI headers for {arch}"),
        make,
        Some(&log),
    )?;
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    );
    let lister_mk = out.join("lister.mk");
    std::fs::write(&lister_mk, LISTER_MK)?;
    let mut built = Built::default();
    for d in DIRS.iter().filter(|d| d.arches.contains(&arch)) {
        let dir = dir_of_tree.join("tools/testing/selftests").join(d.path);
        if !dir.is_dir() {
            continue; // not in this version (the VFIO selftests came in 6.18)
        }
        let dest = out.join(d.path);
        std::fs::create_dir_all(&dest)?;
        let mut make = Command::new("make");
        make.current_dir(&dir)
            .args(make_env(arch))
            .args(["-f", "Makefile", "-f"])
            .arg(&lister_mk)
            .arg(jobs.clone())
            .arg(format!("OUTPUT={}", dest.display()))
            .arg(format!(
                "KHDR_INCLUDES=-isystem {}/usr/include",
                hdr.display()
            ))
            // lib.mk's own hooks: they add to the Makefiles' CFLAGS and
            // LDFLAGS (include paths, -pthread) instead of replacing them.
            .arg(format!(
                "USERCFLAGS=-static -I{}/usr/include",
                cap.display()
            ))
            .arg(format!(
                "USERLDFLAGS=-static -L{}/usr/lib/{}",
                cap.display(),
                triplet(arch)
            ))
            .args(d.programs.iter().map(|p| dest.join(p)))
            // The listers run here, so only the x86_64 build makes them.
            .args(
                d.programs
                    .iter()
                    .filter(|_| arch == Arch::X86_64)
                    .map(|p| dest.join(format!("{p}-lister"))),
            );
        crate::progress::run(
            format!("selftests: building {} for Linux {linux} {arch}", d.path),
            make,
            Some(&log),
        )?;
        for p in d.programs {
            let file = dest.join(p);
            if !file.is_file() {
                bail!("{} was not built (log: {})", file.display(), log.display());
            }
            built.programs.insert(p.to_string(), file);
            if arch == Arch::X86_64 {
                built
                    .listers
                    .insert(p.to_string(), dest.join(format!("{p}-lister")));
            }
        }
    }
    // The tree is free again (the x86_64 build below takes it).
    drop(work);
    // The case lists, from the x86_64 build of the same tree.
    let lister = if arch == Arch::X86_64 {
        built.clone()
    } else {
        build(linux, Arch::X86_64, tree)?
    };
    for p in built.programs.keys() {
        let Some(x86) = lister.listers.get(p) else {
            continue;
        };
        let cases = list_cases(x86)?;
        built.cases.insert(p.clone(), cases);
    }
    std::fs::write(&manifest, serde_json::to_vec_pretty(&built)?)?;
    println!("selftests: Linux {linux} {arch} built → {}", out.display());
    Ok(built)
}

/// The test cases a lister (see [`LISTER_MK`]) lists with `-l` (a table
/// on stderr).  The program's constructors still run: `iommufd_fail_nth`'s
/// writes fault-injection knobs under `/sys/kernel/debug`, so listers run
/// in a mount namespace of their own with an empty tmpfs there.
fn list_cases(program: &Path) -> Result<Vec<String>> {
    const ISOLATED: &str = "mount -t tmpfs none /sys/kernel/debug && exec \"$0\" -l \"$@\"";
    let isolated = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", ISOLATED])
        .arg(program)
        .output();
    let out = match isolated {
        Ok(out) if out.status.code() != Some(1) || !out.stderr.starts_with(b"unshare:") => out,
        // No user namespaces here: the knobs only exist with fault
        // injection in the host kernel, so without it the lister may run as is.
        _ if !Path::new("/sys/kernel/debug/failslab").exists() => Command::new(program)
            .arg("-l")
            .output()
            .with_context(|| format!("running {} -l", program.display()))?,
        _ => bail!(
            "cannot list {} in a mount namespace of its own (unshare failed), and this \
             host's /sys/kernel/debug/failslab would be written to",
            program.display()
        ),
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let cases = harness::kselftest::parse_list(&text);
    if cases.is_empty() {
        bail!("{} -l listed no test cases:\n{text}", program.display());
    }
    Ok(cases)
}

/// The programs as initramfs files (`/selftests/<name>`).
pub fn files(b: &Built) -> Result<Vec<(String, Vec<u8>)>> {
    b.programs
        .iter()
        .map(|(name, path)| {
            Ok((
                name.clone(),
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            ))
        })
        .collect()
}
