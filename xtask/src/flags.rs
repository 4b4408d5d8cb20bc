//! The whole `cargo xtask` command line, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use harness::linux::Linux;
use harness::machine::{Arch, KernelFlavour};

/// iobench: IOMMU test bench for pseries and q35 guests.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version)]
pub struct Xtask {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Install every host dependency (apt, cargo) and check it; idempotent.
    Setup(Setup),
    /// Report each host dependency as ok/missing, with the fix; installs nothing.
    Doctor,
    /// Build a guest kernel (cached by source, config and toolchain).
    Kernel(KernelArgs),
    /// Build the static guest agent.
    Agent(ArchArg),
    /// Build qemu-system-ppc64 with qemu-patches/ (emulated EEH) and run its qtest.
    Qemu(QemuArgs),
    /// Build the initramfs (busybox, agent, init).
    Initramfs(ImageArgs),
    /// Build kernel, agent and initramfs for one or both architectures.
    Images(ImageArgs),
    /// Build the upstream IOMMU and VFIO selftests from the kernel's tree
    /// (static, per architecture) and list their test cases.
    Selftests(ImageArgs),
    /// Boot a machine, ping its agent, power it off (or give a shell).
    Run(RunArgs),
    /// Build what is stale and run the VM suite (libtest-mimic arguments pass through).
    Test(TestArgs),
    /// Measure boots (bare QEMU vs harness), the no-op build and the warm suite.
    Bench(BenchArgs),
    /// Check that the scenarios catch each real bug of bugs/: its trials fail
    /// with the bug re-introduced and pass without.
    Corpus(CorpusArgs),
    /// Find the first commit of a kernel git tree where trials fail
    /// (builds each revision in a private clone; the tree is only read).
    Bisect(BisectArgs),
    /// Fuzz a machine's IOMMU interface against iobench's model: random
    /// op sequences run in the guest in batches, every result compared
    /// with the model's prediction, differences minimized into scenario
    /// files under target/iobench/fuzz/<machine>/.
    Fuzz(FuzzArgs),
    /// Kernel line coverage (KCOV) of the machine's hand-written scenarios
    /// for the sPAPR TCE, iommufd and EEH files: a summary, and HTML pages
    /// under target/iobench/coverage/<machine>/ (builds the `--kcov` kernel).
    Coverage(CoverageArgs),
    /// Merge the JSON reports of a sharded suite run (`test --json`, one
    /// per shard) into one JUnit (and JSON) report; summary per kernel version.
    Report(ReportArgs),
}

/// `fuzz` options.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Machine definition: pseries, pseries-64k (sPAPR), q35-mock or q35 (iommufd).
    #[arg(long)]
    pub machine: String,
    /// The run's seed: sequence N of a seed is the same on every run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this long: `90s`, `10m`, `1h` (default 1m, unless --sequences).
    #[arg(long, value_parser = parse_duration, conflicts_with = "sequences")]
    pub time: Option<std::time::Duration>,
    /// Stop after this many sequences.
    #[arg(long)]
    pub sequences: Option<u64>,
    /// Probes per sequence (edu DMA on pseries and q35, mock accesses on
    /// q35-mock); each edu probe takes about 0.2 s of the guest's time.
    #[arg(long, default_value_t = 1)]
    pub probes: usize,
    /// With --kcov: measure coverage, but draw every sequence afresh and
    /// keep no corpus (the baseline the guidance is measured against).
    #[arg(long, requires = "kcov")]
    pub unguided: bool,
    /// Machine options (accelerator, kernel: --linux, --patch, --fixes, --kernel).
    #[command(flatten)]
    pub opts: MachineOpts,
}

/// `90s`, `10m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m or 1h"))?;
    let secs = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3600,
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// `report` options.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The shards' reports, written by `cargo xtask test --json F`; a
    /// trial in two of them is an error (shards are disjoint).
    #[arg(value_name = "JSON", required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: PathBuf,
    /// Also write the merged records as one JSON report.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `bisect` options.
#[derive(Debug, Args)]
pub struct BisectArgs {
    /// Trials (full names, e.g. `pseries::regress::tce_info_fields`): a
    /// revision is bad when one fails.
    #[arg(value_name = "TRIAL", required_unless_present = "fixture")]
    pub trials: Vec<String>,
    /// The kernel git tree (a work tree or a bare repository; only read).
    #[arg(long, value_name = "GIT_TREE", required_unless_present = "fixture")]
    pub src: Option<PathBuf>,
    /// A revision where the trials pass.
    #[arg(long, value_name = "REV", required_unless_present = "fixture")]
    pub good: Option<String>,
    /// A later revision where they fail.
    #[arg(long, value_name = "REV", required_unless_present = "fixture")]
    pub bad: Option<String>,
    /// Apply this patch (`-p1`) to every revision (repeatable, in order).
    #[arg(long = "patch", value_name = "FILE")]
    pub patches: Vec<PathBuf>,
    /// Runs of each trial per revision: bad needs every run to fail, good
    /// every run to pass; a mix is flaky and skipped.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Accelerator for the trials' machines.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelFlag,
    /// Bisect the fixture history (Debian's tree and a few commits, one
    /// re-introducing bugs/08-tce-info) and check the planted commit is named.
    #[arg(long, conflicts_with_all = ["trials", "src", "good", "bad", "patches"])]
    pub fixture: bool,
}

/// `corpus` options.
#[derive(Debug, Args)]
pub struct CorpusArgs {
    /// Bugs to check: directory name (`09-compat-unmap-empty`), number
    /// (`09`, `08a`) or commit prefix (7+ hex digits); default all.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Write the JUnit report here (default target/iobench/corpus/junit.xml).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// List the bugs and their trials instead of running them.
    #[arg(long)]
    pub list: bool,
    /// Accelerator for the trials' machines.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelFlag,
}

/// `qemu` options.
#[derive(Debug, Args)]
pub struct QemuArgs {
    /// Build this QEMU tree instead of Debian's 10.0.2 orig tarball.
    #[arg(long, value_name = "DIR")]
    pub src: Option<PathBuf>,
}

/// `bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Boots per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Skip timing the warm VM suite.
    #[arg(long)]
    pub no_suite: bool,
    /// Also measure the debug kernels (`--debug`): boot to agent-ready and
    /// the warm suite, against the normal ones.
    #[arg(long)]
    pub debug: bool,
    /// Boot and build this kernel version (default 6.12); the warm suite
    /// then runs on it alone.
    #[arg(long, value_enum, value_name = "VERSION")]
    pub linux: Option<LinuxFlag>,
}

/// `test` options.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Run only trials whose name contains this (e.g. `pseries::windows`).
    pub filter: Option<String>,
    /// Machines to run: a machine definition name, or `all`.
    #[arg(long, default_value = "all")]
    pub machine: String,
    /// Run on this target of the targets file (real hardware over SSH or a serial console).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// The targets file.
    #[arg(long, default_value = "targets/lab.toml")]
    pub targets: PathBuf,
    /// Boot this kernel image instead of building one (for the machines of its architecture).
    #[arg(long, conflicts_with = "src")]
    pub kernel: Option<PathBuf>,
    /// Accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelFlag,
    /// Kernel source.
    #[command(flatten)]
    pub source: KernelSource,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a JSON report (per-trial status, duration, logs, steps).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Trials run at once (default: one per CPU).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// List the trials instead of running them.
    #[arg(long)]
    pub list: bool,
    /// Run only ignored trials (disabled scenarios).
    #[arg(long, conflicts_with = "include_ignored")]
    pub ignored: bool,
    /// Run ignored trials too.
    #[arg(long)]
    pub include_ignored: bool,
    /// The filter must match a whole trial name.
    #[arg(long)]
    pub exact: bool,
    /// Skip trials whose name contains this (repeatable).
    #[arg(long)]
    pub skip: Vec<String>,
    /// Run only shard K of N (`--partition 2/4`): trials are dealt to
    /// shards by a stable hash of their name (an upstream selftest's cases
    /// by their program's run, so it runs once), like nextest's hash
    /// partitioning.
    #[arg(long, value_name = "K/N", value_parser = parse_partition)]
    pub partition: Option<(u32, u32)>,
    /// Further libtest arguments, after `--`.
    #[arg(last = true)]
    pub rest: Vec<String>,
}

impl TestArgs {
    /// The arguments for the libtest-mimic suite.
    pub fn libtest_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        let flags = [
            ("--list", self.list),
            ("--ignored", self.ignored),
            ("--include-ignored", self.include_ignored),
            ("--exact", self.exact),
        ];
        a.extend(
            flags
                .iter()
                .filter(|(_, on)| *on)
                .map(|(f, _)| f.to_string()),
        );
        for s in &self.skip {
            a.extend(["--skip".to_string(), s.clone()]);
        }
        if let Some(j) = self.jobs {
            a.extend(["--test-threads".to_string(), j.to_string()]);
        }
        a.extend(self.rest.iter().cloned());
        a.extend(self.filter.iter().cloned());
        a
    }
}

/// `K/N` with 1 ≤ K ≤ N.
fn parse_partition(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?} is not K/N with 1 ≤ K ≤ N, e.g. 2/4");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (u32, u32) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// Guest architecture on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchFlag {
    /// ppc64le (pseries).
    Ppc64le,
    /// x86_64 (q35).
    #[value(name = "x86_64")]
    X86_64,
}

impl From<ArchFlag> for harness::machine::Arch {
    fn from(a: ArchFlag) -> Self {
        match a {
            ArchFlag::Ppc64le => harness::machine::Arch::Ppc64le,
            ArchFlag::X86_64 => harness::machine::Arch::X86_64,
        }
    }
}

/// `setup` options.
#[derive(Debug, Args)]
pub struct Setup {
    /// Only check, like `doctor`.
    #[arg(long)]
    pub check: bool,
}

/// An architecture.
#[derive(Debug, Args)]
pub struct ArchArg {
    /// Guest architecture.
    #[arg(long, value_enum)]
    pub arch: ArchFlag,
}

/// Where the kernel comes from.
#[derive(Debug, Clone, Args, Default)]
pub struct KernelSource {
    /// Build this kernel tree instead of Debian's linux-source-6.12.
    #[arg(long)]
    pub src: Option<PathBuf>,
    /// Boot Debian's own 6.12 kernels and modules instead of building (fast; no iommufd).
    #[arg(long, value_enum, value_name = "debian", conflicts_with = "src")]
    pub prebuilt: Option<Prebuilt>,
    /// Apply this patch (`-p1`) to a private copy of the tree before
    /// building (repeatable, in order), e.g. a fix from kernel-patches/fixes/.
    #[arg(long = "patch", value_name = "FILE", conflicts_with = "prebuilt")]
    pub patches: Vec<PathBuf>,
    /// Apply every fix iobench proposes (kernel-patches/fixes/*.patch, in
    /// order) after any --patch: known-bug scenarios must then pass.
    #[arg(long, conflicts_with = "prebuilt")]
    pub fixes: bool,
    /// The debug kernels: kmemleak, lockdep, DEBUG_LIST, UBSAN, and KASAN
    /// on x86_64 (images/kernel/debug*.config); the agent scans for leaks
    /// after each scenario.
    #[arg(long, conflicts_with = "prebuilt")]
    pub debug: bool,
    /// The coverage kernels: KCOV on every object and DWARF line tables
    /// (images/kernel/kcov.config), for `cargo xtask coverage`.  Linux 7.2
    /// only.
    #[arg(long, conflicts_with = "prebuilt")]
    pub kcov: bool,
    /// Kernel version: Debian's linux-source-6.12 or sid's
    /// linux-source-7.2 (`test` runs both unless one is given; with `--src`
    /// the tree's Makefile decides).
    #[arg(long, value_enum, value_name = "VERSION")]
    pub linux: Option<LinuxFlag>,
}

/// A kernel version on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinuxFlag {
    /// Linux 6.12 (the default).
    #[value(name = "6.12")]
    V6_12,
    /// Linux 7.2.
    #[value(name = "7.2")]
    V7_2,
}

impl From<LinuxFlag> for Linux {
    fn from(l: LinuxFlag) -> Self {
        match l {
            LinuxFlag::V6_12 => Linux::V6_12,
            LinuxFlag::V7_2 => Linux::V7_2,
        }
    }
}

/// Whose prebuilt kernels `--prebuilt` boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Prebuilt {
    /// Debian's `linux-image-*` packages.
    Debian,
}

/// `kernel` options.
#[derive(Debug, Args)]
pub struct KernelArgs {
    /// Guest architecture.
    #[arg(long, value_enum)]
    pub arch: ArchFlag,
    /// Page-size variant (ppc64le): 4k or 64k.
    #[arg(long, value_enum, default_value = "4k")]
    pub pages: Pages,
    /// Kernel source.
    #[command(flatten)]
    pub source: KernelSource,
}

/// The page size of a ppc64le kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pages {
    /// 4 KiB pages.
    #[value(name = "4k")]
    K4,
    /// 64 KiB pages.
    #[value(name = "64k")]
    K64,
}

impl KernelArgs {
    /// The flavour these options ask for (`--pages` counts on ppc64le only).
    pub fn flavour(&self) -> KernelFlavour {
        match (Arch::from(self.arch), self.pages) {
            (Arch::X86_64, _) => KernelFlavour::X86_64,
            (Arch::Ppc64le, Pages::K4) => KernelFlavour::Ppc64le4k,
            (Arch::Ppc64le, Pages::K64) => KernelFlavour::Ppc64le64k,
        }
    }
}

/// `initramfs` / `images` options.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Guest architecture (default: both).
    #[arg(long, value_enum)]
    pub arch: Option<ArchFlag>,
    /// Kernel source.
    #[command(flatten)]
    pub source: KernelSource,
}

/// Accelerator choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelFlag {
    /// Probe KVM, fall back to TCG.
    Auto,
    /// Software emulation.
    Tcg,
    /// Hardware virtualisation.
    Kvm,
}

/// Options shared by everything that boots machines.
#[derive(Debug, Clone, Args)]
pub struct MachineOpts {
    /// Accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelFlag,
    /// Override guest memory (e.g. 2G).
    #[arg(long)]
    pub memory: Option<String>,
    /// Override guest CPUs.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Extra QEMU argument (repeatable).
    #[arg(long = "qemu-arg", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
    /// Extra kernel command-line words.
    #[arg(long)]
    pub append: Option<String>,
    /// Use this kernel image instead of building one.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Kernel source.
    #[command(flatten)]
    pub source: KernelSource,
}

/// `coverage` options.
#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// Machine definition names (see qemu-configs/), comma-separated or
    /// repeated; machines of one kernel flavour add up in one report
    /// (`target/iobench/coverage/q35+q35-mock/`).
    #[arg(long, default_value = "pseries", value_delimiter = ',')]
    pub machine: Vec<String>,
    /// Only the scenarios whose name contains this.
    #[arg(long, value_name = "FILTER")]
    pub scenarios: Option<String>,
    /// Instead of the scenarios, fuzz the machine this long (`10m`),
    /// guided by coverage; the report goes to `<machine>-fuzz/`.
    #[arg(long, value_name = "T", value_parser = parse_duration)]
    pub fuzz: Option<std::time::Duration>,
    /// Machine options (`--linux` defaults to 7.2, the only version with
    /// a `--kcov` kernel; `--kcov` is implied).
    #[command(flatten)]
    pub opts: MachineOpts,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Machine definition name (see qemu-configs/).
    #[arg(long, default_value = "pseries")]
    pub machine: String,
    /// Give an interactive shell on the guest console instead of the agent.
    #[arg(long, conflicts_with = "gdb")]
    pub shell: bool,
    /// Start QEMU's gdbstub (halted) and print the gdb command.
    #[arg(long)]
    pub gdb: bool,
    /// Run these scenario files (any path; no rebuild needed) and print each step.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["shell", "gdb"])]
    pub scenario: Vec<PathBuf>,
    /// Run a scenario even if its `machines` list does not name this machine.
    #[arg(long, requires = "scenario")]
    pub any_machine: bool,
    /// Machine options.
    #[command(flatten)]
    pub opts: MachineOpts,
}
