//! `cargo xtask coverage`: which lines of the sPAPR TCE, iommufd and EEH
//! code the hand-written scenarios of a machine reach.
//!
//! The machine boots the `--kcov` kernel of Linux 7.2
//! (images/kernel/kcov.config); the host turns coverage on for the agent
//! session ([`harness::agent::Agent::set_coverage`]), and the agent runs
//! each scenario in a thread that traces itself with KCOV and sends the
//! unique PCs before `Done`.  [`Collector`] folds the PCs of every run
//! into the call sites of the vmlinux ([`sites::SiteMap`]: objdump's KCOV
//! call sites, addr2line's lines), and [`report`] writes a summary (per
//! file: lines hit / instrumented) and an HTML page per file under
//! `target/iobench/coverage/<machine>/`.  A fuzzer feeds its batches'
//! PCs to a [`Collector`] of its own ([`collect`]) and gets back what is
//! new.

pub mod report;
pub mod sites;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use harness::known_bug::Verdict;
use harness::linux::Linux;
use harness::machine::Arch;
use harness::qemu::GuestMode;
use harness::scenario::{ScenarioFile, run_on};
use harness::vm::{Vm, VmSpec};

use crate::cache::{cache_dir, out_dir, repo_root};
use crate::flags::{CoverageArgs, LinuxFlag};
use report::FileCoverage;
use sites::SiteMap;

/// What a batch of PCs added to a [`Collector`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCoverage {
    /// Call sites (basic blocks) reached for the first time, anywhere in
    /// the kernel.
    pub sites: usize,
    /// Lines of the studied files ([`report::FILES`]) reached for the
    /// first time, `(file, line)`.
    pub lines: Vec<(String, u32)>,
}

/// The coverage of all runs so far of one kernel.
#[derive(Debug, Clone)]
pub struct Collector {
    map: SiteMap,
    hit: HashSet<u64>,
    lines: HashSet<(String, u32)>,
    /// PCs that were no call site of this kernel (another kernel's?).
    pub unknown: usize,
}

impl Collector {
    /// An empty collector over `map`.
    pub fn new(map: SiteMap) -> Collector {
        Collector {
            map,
            hit: HashSet::new(),
            lines: HashSet::new(),
            unknown: 0,
        }
    }

    /// Adds a run's PCs; says what they reached that no earlier run had.
    pub fn add(&mut self, pcs: &[u64]) -> NewCoverage {
        let mut new = NewCoverage::default();
        for &pc in pcs {
            let Some(site) = self.map.site_of(pc) else {
                self.unknown += 1;
                continue;
            };
            if !self.hit.insert(site) {
                continue;
            }
            new.sites += 1;
            if let Some((file, line)) = self.map.line(site)
                && report::studied(file)
                && self.lines.insert((file.to_string(), line))
            {
                new.lines.push((file.to_string(), line));
            }
        }
        new.lines.sort();
        new
    }

    /// The kernel's call sites (basic blocks).
    pub fn site_count(&self) -> usize {
        self.map.site_count()
    }

    /// Call sites reached so far.
    pub fn sites_hit(&self) -> usize {
        self.hit.len()
    }

    /// Line coverage of the studied files that this kernel has.
    pub fn files(&self) -> Vec<FileCoverage> {
        let sites = self.map.sites_in(report::studied);
        report::aggregate(sites.into_iter().filter_map(|s| {
            let (file, line) = self.map.line(s)?;
            let function = self.map.function(s)?;
            Some(((file, line, function), self.hit.contains(&s)))
        }))
    }

    /// Writes `summary.txt`, `index.html` and a page per file to `dir`,
    /// with source lines from `tree`; returns the summary.
    pub fn write_report(&self, dir: &Path, tree: &Path, title: &str) -> Result<String> {
        std::fs::create_dir_all(dir)?;
        let files = self.files();
        for f in &files {
            let source = std::fs::read_to_string(tree.join(&f.file)).ok();
            let page = report::html(f, source.as_deref(), &format!("{title}: {}", f.file));
            std::fs::write(dir.join(report::page_name(&f.file)), page)?;
        }
        std::fs::write(
            dir.join("index.html"),
            report::index(&files, title, report::page_name),
        )?;
        let summary = report::summary(&files);
        std::fs::write(dir.join("summary.txt"), &summary)?;
        Ok(summary)
    }
}

/// A [`Collector`] for the kernel whose unstripped image is `vmlinux`
/// (built for `arch` from `tree`): its call sites are mapped once and
/// kept under `target/iobench/coverage/`.
pub fn collect(vmlinux: &Path, arch: Arch, tree: &Path) -> Result<Collector> {
    let meta =
        std::fs::metadata(vmlinux).with_context(|| format!("reading {}", vmlinux.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let k = crate::cache::key(&[
        b"iobench-kcov-sites-v2",
        vmlinux.to_string_lossy().as_bytes(),
        meta.len().to_string().as_bytes(),
        mtime.to_string().as_bytes(),
    ]);
    let cache = out_dir()
        .join("coverage")
        .join(format!("sites-{}.tsv", crate::cache::short(&k)));
    // File names come absolute (the tree the build ran in) or relative
    // to the build dir; any of these trees is taken off the front.
    let mut roots = vec![tree.to_path_buf()];
    for d in ["src", "kernel/build"] {
        if let Ok(rd) = std::fs::read_dir(cache_dir().join(d)) {
            roots.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    Ok(Collector::new(SiteMap::load(
        vmlinux, arch, &roots, &cache,
    )?))
}

/// Runs `cargo xtask coverage`.
pub fn run(a: &CoverageArgs) -> Result<()> {
    let mut opts = a.opts.clone();
    if opts.kernel.is_some() {
        bail!("--kernel: coverage needs a --kcov build's vmlinux; leave --kernel out");
    }
    opts.source.kcov = true;
    opts.source.linux.get_or_insert(LinuxFlag::V7_2);
    let linux = crate::images::version(&opts.source)?;
    if linux != Linux::V7_2 {
        bail!("coverage needs the --kcov kernel, which only Linux 7.2 has; use --linux 7.2");
    }
    let machines = a
        .machine
        .iter()
        .map(|n| crate::run::machine(n, &opts))
        .collect::<Result<Vec<_>>>()?;
    let Some(arch) = machines.first().map(|m| m.arch) else {
        bail!("no --machine");
    };
    if let Some(m) = machines
        .iter()
        .find(|m| m.kernel.flavour != machines[0].kernel.flavour)
    {
        bail!(
            "{} boots another kernel than {}: one coverage run is of one kernel",
            m.name,
            machines[0].name
        );
    }
    let catalogue = harness::scenario::load_dir(&repo_root().join("scenarios"))?;
    let name = a.machine.join("+");
    let dir = report_dir(&name);
    let tree = crate::images::tree(&opts.source, linux)?;
    let mut collector: Option<Collector> = None;
    let mut ran = 0;
    for m in machines {
        crate::deps::require(&[m.arch.qemu_binary(), harness::vsock::BACKEND])?;
        let scenarios: Vec<&ScenarioFile> = catalogue
            .iter()
            .filter(|f| f.applies_to(&m.name) && f.disabled.is_none() && f.too_old(linux).is_none())
            .filter(|f| {
                a.scenarios
                    .as_ref()
                    .is_none_or(|s| f.name().contains(s.as_str()))
            })
            .collect();
        if scenarios.is_empty() {
            println!("coverage: no scenario of {} matches", m.name);
            continue;
        }
        let machine_name = m.name.clone();
        let mut spec = crate::run::spec(m, &opts, GuestMode::Agent, dir.join("logs"))?;
        // A call in every basic block: under TCG the kernel boots slower,
        // as the debug kernels do.
        spec.timeouts.first_output *= harness::manifest::DEBUG_BOOT_FACTOR;
        spec.timeouts.agent_ready *= harness::manifest::DEBUG_BOOT_FACTOR;
        let vmlinux = spec
            .images
            .vmlinux
            .clone()
            .context("the kernel has no vmlinux to map PCs with")?;
        let collector = match &mut collector {
            Some(c) => c,
            None => collector.insert(collect(&vmlinux, arch, &tree)?),
        };
        println!(
            "coverage: {machine_name}, {} scenarios, kernel {} ({} KCOV call sites)",
            scenarios.len(),
            vmlinux.display(),
            collector.site_count()
        );
        ran += run_machine(&spec, &scenarios, collector)?;
    }
    let Some(collector) = collector else {
        bail!("no scenario matches");
    };
    if ran == 0 {
        bail!("no scenario gave coverage");
    }
    let summary = collector.write_report(&dir, &tree, &format!("{name} (Linux {linux})"))?;
    println!(
        "\n{} kernel blocks reached in all ({} PCs were no call site)\n\n{summary}\nHTML: {}",
        collector.sites_hit(),
        collector.unknown,
        dir.join("index.html").display()
    );
    print!("{}", never_entered(&collector.files()));
    Ok(())
}

/// For each partly covered file, the functions no run entered (of a file
/// no run entered, every function is), a line each.
pub fn never_entered(files: &[FileCoverage]) -> String {
    let mut t = String::new();
    for f in files {
        if !f.unreached.is_empty() && !f.hit.is_empty() {
            let names: Vec<&str> = f.unreached.iter().map(String::as_str).take(12).collect();
            let more = f.unreached.len().saturating_sub(names.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            t.push_str(&format!(
                "never entered in {}: {}{more}\n",
                f.file,
                names.join(", ")
            ));
        }
    }
    t
}

/// Runs `scenarios` on VMs of `spec` (a new one for a `fresh_vm`
/// scenario and after a guest broke), adding each run's coverage to
/// `collector`; returns how many runs gave coverage.
fn run_machine(
    spec: &VmSpec,
    scenarios: &[&ScenarioFile],
    collector: &mut Collector,
) -> Result<usize> {
    let mut vm: Option<(Vm, Vec<String>)> = None;
    let mut ran = 0;
    for &file in scenarios {
        if file.fresh_vm {
            vm = None;
        }
        let (machine, features) = match &mut vm {
            Some(v) => v,
            None => vm.insert(boot(spec)?),
        };
        let missing = file.missing_features(features);
        if !missing.is_empty() {
            println!("  {:<50} skipped: no {}", file.name(), missing.join(", "));
            continue;
        }
        let result = run_on(machine, file, |_| {});
        let covered = machine.agent().ok().and_then(|a| a.take_coverage());
        let verdict = match (
            harness::known_bug::judge(file, &result, machine.kernel_patches()),
            &result.outcome,
        ) {
            (Verdict::Expected(what), _) => what,
            (_, Ok(o)) if o.passed => "passed".to_string(),
            (_, Ok(o)) => format!("failed at step {}", o.steps_run),
            (_, Err(e)) => format!(
                "broke: {}",
                e.to_string().lines().next().unwrap_or_default()
            ),
        };
        let note = match covered {
            Some(c) if c.error.is_none() => {
                let new = collector.add(&c.pcs);
                ran += 1;
                format!(
                    "{} PCs, {} new blocks, {} new lines{}",
                    c.pcs.len(),
                    new.sites,
                    new.lines.len(),
                    if c.lost { " (buffer overflowed)" } else { "" }
                )
            }
            Some(c) => format!("no coverage: {}", c.error.unwrap_or_default()),
            None => "no coverage".into(),
        };
        println!("  {:<50} {verdict}; {note}", file.name());
        if result.outcome.is_err() || file.fresh_vm {
            // The guest broke, or was left in a state others must not see.
            vm = None;
        }
    }
    if let Some((v, _)) = vm {
        v.poweroff()?;
    }
    Ok(ran)
}

/// Boots a VM of `spec`, turns coverage on, and reads its features.
fn boot(spec: &VmSpec) -> Result<(Vm, Vec<String>)> {
    let mut vm = Vm::boot(spec.clone())?;
    let agent = vm.agent()?;
    if let Err(e) = agent.set_coverage(true) {
        return Err(vm.explain(e)).context("turning KCOV on in the guest");
    }
    let inv = vm.agent()?.inventory().map_err(|e| vm.explain(e))?;
    Ok((vm, inv.features))
}

/// Where [`run`] writes the report of `machine`.
pub fn report_dir(machine: &str) -> PathBuf {
    out_dir().join("coverage").join(machine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sites::site;

    #[test]
    fn collector_reports_only_what_is_new() {
        let vfio = "drivers/vfio/vfio_iommu_spapr_tce.c";
        let map = SiteMap::from_sites(
            Arch::X86_64,
            [
                site(0x100, vfio, 10),
                site(0x110, vfio, 10),
                site(0x120, vfio, 12),
                site(0x200, "mm/memory.c", 3),
            ],
        );
        let mut c = Collector::new(map);
        // PCs are return addresses: the call (5 bytes on x86_64) is before.
        let new = c.add(&[0x105, 0x205, 0x999]);
        assert_eq!(new.sites, 2);
        assert_eq!(new.lines, vec![(vfio.to_string(), 10)]);
        assert_eq!(c.unknown, 1);
        // Another block of line 10 is a new site, not a new line.
        let new = c.add(&[0x105, 0x115, 0x125]);
        assert_eq!(new.sites, 2);
        assert_eq!(new.lines, vec![(vfio.to_string(), 12)]);
        assert_eq!(c.add(&[0x125]), NewCoverage::default());
        let files = c.files();
        assert_eq!(files.len(), 1, "only studied files: {files:?}");
        assert_eq!(files[0].hit.len(), 2);
        assert_eq!(files[0].percent(), 100.0);
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("drivers/vfio")).unwrap();
        std::fs::write(tree.join(vfio), "x\n".repeat(20)).unwrap();
        let out = dir.path().join("out");
        let summary = c.write_report(&out, &tree, "test").unwrap();
        assert!(summary.contains("2 / 2"), "{summary}");
        let page =
            std::fs::read_to_string(out.join("drivers_vfio_vfio_iommu_spapr_tce.c.html")).unwrap();
        assert_eq!(page.matches("class=\"hit\"").count(), 2);
        assert!(out.join("index.html").is_file() && out.join("summary.txt").is_file());
    }
}
