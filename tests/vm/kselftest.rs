//! Upstream selftests as trials: Linux's `tools/testing/selftests/iommu`
//! (`iommufd`, `iommufd_fail_nth`) and `tools/testing/selftests/vfio`
//! programs, built by `cargo xtask test` from the kernel's own tree into the
//! initramfs, run in a guest of their own, one libtest trial per upstream
//! test case: `7.2::pseries-64k::kselftest::iommufd::iommufd_ioas::mock_domain::area`.
//!
//! The first trial of a (machine, version, program) group boots the machine
//! and runs the whole program once (`selftest.run`, with its output); every
//! case's trial then reads its own result from that run and gets its
//! verdict from `selftests/expectations.toml` (`harness::kselftest`).  One
//! more trial per group, `…::kselftest::<program>::kernel_reports`, fails
//! when the kernel reported something (WARNING, BUG, lockdep, …) while the
//! program ran: `iommufd_fail_nth` exists to find such splats.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use harness::kselftest::expectations::{self, Expectations, Verdict};
use harness::kselftest::{self, Run};
use harness::linux::Guest;
use harness::machine::Size;
use harness::manifest::Manifest;
use harness::proto::Actual;
use harness::qemu::GuestMode;
use harness::report::chain;
use harness::vm::Vm;
use iobench_tests::pool::ScenarioTrial;
use libtest_mimic::{Completion, Failed, Trial};

use crate::record::{CloneResult, Records, recorded};
use crate::support::spec_on;

/// A program run on a machine, and what that run needs.
struct Program {
    /// The program under `/selftests/`.
    name: &'static str,
    /// Machines it runs on.
    machines: &'static [&'static str],
    /// The device whose address goes last on its command line (VFIO tests).
    device: Option<&'static str>,
    /// Guest memory for the run, by architecture (ppc64le, x86_64), if the
    /// machine's is too small.
    memory: (Option<&'static str>, Option<&'static str>),
    /// Kernel command-line words for the run, by architecture (ppc64le, x86_64).
    cmdline: (&'static str, &'static str),
    /// Seconds the whole program may take under TCG.
    timeout: u64,
}

/// Where the iommu selftests run: both page sizes on ppc64le, and x86_64.
const IOMMU_MACHINES: &[&str] = &["pseries", "pseries-64k", "q35"];

/// Reserved huge pages on x86_64 for `iommufd`'s `*hugepage*`/`*_huge`
/// cases (`MAP_HUGETLB` buffers of up to 128 MiB and two huge pages).  None
/// on pseries: its hugetlb pages are 16 MiB and without THP the selftest
/// assumes 2 MiB (`get_huge_page_size()`); selftests/expectations.toml.
const HUGEPAGES: (&str, &str) = ("", "hugepagesz=2M hugepages=192");

/// A VFIO selftest: on q35, with the edu device's address last on its
/// command line.
const fn vfio(name: &'static str) -> Program {
    Program {
        name,
        machines: &["q35"],
        device: Some("1234:11e8"),
        memory: (None, Some("3G")),
        cmdline: ("", ""),
        timeout: 600,
    }
}

/// What runs where.  The VFIO tests pin 1 GiB + 2 MiB per case
/// (`vfio_pci_driver_test`), hence 3 GiB; they drive QEMU's `edu` through
/// the libvfio driver of `selftests/patches/7.2/`.
const PROGRAMS: &[Program] = &[
    Program {
        name: "iommufd",
        machines: IOMMU_MACHINES,
        device: None,
        memory: (None, Some("2G")),
        cmdline: HUGEPAGES,
        timeout: 300,
    },
    Program {
        name: "iommufd_fail_nth",
        machines: IOMMU_MACHINES,
        device: None,
        memory: (None, None),
        cmdline: ("", ""),
        timeout: 600,
    },
    vfio("vfio_pci_device_test"),
    vfio("vfio_pci_driver_test"),
    vfio("vfio_dma_mapping_test"),
    vfio("vfio_iommufd_setup_test"),
];

/// One program's run on one guest, shared by its trials.
struct Group {
    guest: Guest,
    program: &'static Program,
    /// The machine's architecture (the program's memory and kernel words).
    arch: harness::machine::Arch,
    /// The patches its kernel was built with (entries tied to a fix).
    patches: Vec<String>,
    cases: Vec<String>,
    done: OnceLock<Result<Ran, String>>,
}

/// What a finished run left.
struct Ran {
    run: Run,
    /// The kernel release the guest ran (for `linux = "7.2"` entries).
    release: String,
    /// The kernel's own reports during the run, if any.
    kernel: Option<String>,
    log_dir: PathBuf,
}

impl Group {
    fn trial_name(&self) -> String {
        format!("{}::kselftest::{}", self.guest, self.program.name)
    }

    /// Runs the program once; later callers get the same result.
    fn ran(&self, m: &Manifest) -> &Result<Ran, String> {
        self.done.get_or_init(|| self.run(m))
    }

    fn run(&self, m: &Manifest) -> Result<Ran, String> {
        let p = self.program;
        let trial = self.trial_name();
        let (output, release, kernel) = self.run_once(m, &trial)?;
        let ran = Ran {
            run: kselftest::parse(&output),
            release,
            kernel,
            log_dir: m.log_root.join(trial.replace("::", "/")),
        };
        std::fs::create_dir_all(&ran.log_dir).ok();
        std::fs::write(ran.log_dir.join(format!("{}.out", p.name)), &output).ok();
        Ok(ran)
    }

    /// Boots the guest and runs the program: its output, the kernel
    /// release, and the kernel's own reports.
    fn run_once(
        &self,
        m: &Manifest,
        log_name: &str,
    ) -> Result<(String, String, Option<String>), String> {
        let p = self.program;
        let (cmdline, memory) = match self.arch {
            harness::machine::Arch::Ppc64le => (p.cmdline.0, p.memory.0),
            harness::machine::Arch::X86_64 => (p.cmdline.1, p.memory.1),
        };
        let mut spec = spec_on(m, &self.guest, log_name, GuestMode::Agent, cmdline)
            .map_err(|f| failed_text(&f))?;
        spec.timeouts.agent_reply = Duration::from_secs(p.timeout + 120);
        if let Some(mem) = memory {
            spec.machine.memory = Size::parse(mem)?;
        }
        let log_dir = spec.log_dir.clone();
        let mut step = format!(
            "[[step]]\nop = \"selftest.run\"\nprogram = \"{}\"\ntimeout = {}\nexpect = \"any\"\n",
            p.name, p.timeout
        );
        if let Some(d) = p.device {
            step.push_str(&format!("device = \"{d}\"\n"));
        }
        let text = format!(
            "description = \"upstream selftest {}\"\nmachines = [\"{}\"]\n{step}",
            p.name, self.guest.machine
        );
        let file = harness::scenario::ScenarioFile::parse(
            &text,
            std::path::Path::new(&format!("kselftest/{}.toml", p.name)),
            p.name,
        )
        .map_err(|e| chain(&e))?;
        let mut vm = Vm::boot(spec).map_err(|e| chain(&e))?;
        let result = harness::scenario::run_on(&mut vm, &file, |_| {});
        let _ = vm.poweroff();
        if let Err(e) = &result.outcome {
            return Err(format!(
                "the run broke off: {} (logs: {})",
                chain(&**e),
                log_dir.display()
            ));
        }
        let value = match result.results.first().map(|r| &r.actual) {
            Some(Actual::Value(v)) => v.clone(),
            Some(other) => return Err(format!("selftest.run gave {other:?}")),
            None => {
                return Err(format!(
                    "the agent ran no step: {:?} (logs: {})",
                    result.outcome.as_ref().ok(),
                    log_dir.display()
                ));
            }
        };
        let output = value["output"].as_str().unwrap_or_default().to_string();
        if value["timed_out"].as_bool() == Some(true) && kselftest::parse(&output).cases.is_empty()
        {
            return Err(format!(
                "{} printed no result within {} s (logs: {})",
                p.name,
                p.timeout,
                log_dir.display()
            ));
        }
        let kernel = (!result.kernel.is_clean()).then(|| {
            format!(
                "{}\n{}",
                result.kernel.headline().unwrap_or_default(),
                result.kernel.details().join("\n")
            )
        });
        Ok((output, result.kernel_release.unwrap_or_default(), kernel))
    }

    /// The trial of one upstream case.
    fn case(&self, m: &Manifest, exp: &Expectations, name: &str) -> ScenarioTrial {
        let ran = match self.ran(m) {
            Ok(r) => r,
            Err(e) => return trial(Err(format!("{}: {e}", self.trial_name()).into()), None),
        };
        let log_dir = Some(ran.log_dir.clone());
        let Some(case) = ran.run.case(name) else {
            let why = match (&ran.run.skipped_all, &ran.run.bailed_out) {
                (Some(r), _) => {
                    return trial(
                        Ok(Completion::ignored_with(format!(
                            "upstream skips the whole program: {r}"
                        ))),
                        log_dir,
                    );
                }
                (_, Some(b)) => format!("the program bailed out: {b}"),
                _ => "the program stopped before this case (crashed, killed, or the guest broke)"
                    .into(),
            };
            return trial(
                Err(format!(
                    "{why}; output: {}",
                    ran.log_dir
                        .join(format!("{}.out", self.program.name))
                        .display()
                )
                .into()),
                log_dir,
            );
        };
        let release = if ran.release.is_empty() {
            self.guest.linux.as_str()
        } else {
            ran.release.as_str()
        };
        let verdict = expectations::verdict(
            case,
            exp,
            self.program.name,
            &self.guest.machine,
            Some(release),
            &self.patches,
        );
        let mut t = match verdict {
            Verdict::Pass => trial(Ok(Completion::Completed), log_dir),
            Verdict::Skipped { reason } => trial(Ok(Completion::ignored_with(reason)), log_dir),
            Verdict::ExpectedFailure { reason } => {
                let mut t = trial(Ok(Completion::ignored_with(reason.clone())), log_dir);
                t.expected_failure = Some(reason);
                t
            }
            Verdict::UnexpectedPass { reason } => trial(Err(reason.into()), log_dir),
            Verdict::Failed { output } => trial(
                Err(format!(
                    "{name} failed:\n{output}\nfull output: {}",
                    ran.log_dir
                        .join(format!("{}.out", self.program.name))
                        .display()
                )
                .into()),
                log_dir,
            ),
        };
        t.machine_broken = false;
        t
    }

    /// The group's kernel-reports trial.
    fn kernel_reports(&self, m: &Manifest) -> ScenarioTrial {
        match self.ran(m) {
            Err(e) => trial(Err(format!("{}: {e}", self.trial_name()).into()), None),
            Ok(r) => match &r.kernel {
                None => trial(Ok(Completion::Completed), Some(r.log_dir.clone())),
                Some(k) => trial(
                    Err(format!(
                        "the kernel reported while {} ran:\n{k}\nlogs: {}",
                        self.program.name,
                        r.log_dir.display()
                    )
                    .into()),
                    Some(r.log_dir.clone()),
                ),
            },
        }
    }
}

fn trial(result: Result<Completion, Failed>, log_dir: Option<PathBuf>) -> ScenarioTrial {
    ScenarioTrial {
        result,
        log_dir,
        steps: Vec::new(),
        machine_broken: false,
        expected_failure: None,
    }
}

fn failed_text(f: &Failed) -> String {
    f.message().unwrap_or("failed").to_string()
}

/// Every (machine, version, program) group's trials: one per upstream
/// case the program lists, plus its kernel-reports trial.
pub fn trials(m: Option<&Arc<Manifest>>, records: &Records, skip: bool) -> Vec<Trial> {
    let Some(m) = m else {
        return Vec::new();
    };
    let root = m
        .machines_dir
        .parent()
        .unwrap_or(&m.machines_dir)
        .to_path_buf();
    let exp = match Expectations::load(&root.join(expectations::FILE)) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            let msg = chain(&e);
            return vec![Trial::test("kselftest::expectations", move || {
                Err(msg.into())
            })];
        }
    };
    let available = harness::machine::available(&m.machines_dir);
    let mut out = Vec::new();
    for p in PROGRAMS {
        for machine in p.machines {
            if !available.iter().any(|a| a == machine)
                || (!m.machines.is_empty() && !m.machines.iter().any(|x| x == machine))
            {
                continue;
            }
            let Ok(def) = harness::machine::Machine::find(&m.machines_dir, machine) else {
                continue;
            };
            for linux in m.versions() {
                let Some(images) = m.images(linux, def.kernel.flavour) else {
                    continue;
                };
                let Some(cases) = images.selftests.get(p.name) else {
                    continue;
                };
                let group = Arc::new(Group {
                    guest: Guest::new(*machine, linux),
                    program: p,
                    arch: def.arch,
                    patches: images.patches.clone(),
                    cases: cases.clone(),
                    done: OnceLock::new(),
                });
                let prefix = group.guest.to_string();
                for case in &group.cases {
                    let name = kselftest::trial_name(&prefix, p.name, case);
                    let (g, mm, e, c) = (group.clone(), m.clone(), exp.clone(), case.clone());
                    let body = recorded(records, name.clone(), move || {
                        let t = g.case(&mm, &e, &c);
                        (t.result.clone_result(), Some(t))
                    });
                    out.push(
                        Trial::ignorable_test(name, body)
                            .with_kind("kselftest")
                            .with_ignored_flag(skip),
                    );
                }
                let name = format!("{}::kernel_reports", group.trial_name());
                let (g, mm) = (group.clone(), m.clone());
                let body = recorded(records, name.clone(), move || {
                    let t = g.kernel_reports(&mm);
                    (t.result.clone_result(), Some(t))
                });
                out.push(
                    Trial::ignorable_test(name, body)
                        .with_kind("kselftest")
                        .with_ignored_flag(skip),
                );
            }
        }
    }
    out
}
