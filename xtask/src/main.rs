//! `cargo xtask`: the iobench command line.
//!
//! Flags live in [`flags`]; each subcommand in a module named for its
//! concept.  Errors are `anyhow` here at the edge and printed without a
//! backtrace, with the cause chain.

mod accel;
mod agent;
mod bench;
mod bisect;
mod bisect_fixture;
mod cache;
mod corpus;
mod coverage;
mod deps;
mod flags;
mod fuzz;
mod images;
mod initramfs;
mod kernel;
mod merge;
mod patch;
mod prebuilt;
mod progress;
mod qemu;
mod run;
mod selftests;
mod setup;
mod sid;
mod source;
mod test;
mod tidy;

use std::process::ExitCode;

use clap::Parser;
use flags::{Cmd, Xtask};

/// ", modules: a, b, c" for a kernel that brings modules.
fn modules_note(k: &images::Kernel) -> String {
    if k.modules.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = k
        .modules
        .iter()
        .map(|(n, _)| n.trim_end_matches(".ko"))
        .collect();
    format!("; modules in load order: {}", names.join(" "))
}

fn main() -> ExitCode {
    // First, before any thread: whatever this command starts ends with it.
    harness::reaper::guard();
    let args = Xtask::parse();
    match dispatch(args.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn arches(a: Option<flags::ArchFlag>) -> Vec<harness::machine::Arch> {
    match a {
        Some(a) => vec![a.into()],
        None => vec![
            harness::machine::Arch::Ppc64le,
            harness::machine::Arch::X86_64,
        ],
    }
}

fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Setup(s) if s.check => doctor(),
        Cmd::Setup(_) => setup::setup(),
        Cmd::Doctor => doctor(),
        Cmd::Kernel(k) => {
            let k = images::kernel(k.flavour(), images::version(&k.source)?, &k.source, None)?;
            println!("{} ({}{})", k.image.display(), k.origin, modules_note(&k));
            Ok(())
        }
        Cmd::Qemu(q) => {
            println!("{}", qemu::build(q.src.as_deref())?.display());
            Ok(())
        }
        Cmd::Agent(a) => {
            println!("{}", agent::build(a.arch.into())?.display());
            Ok(())
        }
        Cmd::Initramfs(i) => {
            for arch in arches(i.arch) {
                println!("{}", images::initramfs(arch)?.display());
            }
            Ok(())
        }
        Cmd::Images(i) => {
            for arch in arches(i.arch) {
                for f in harness::machine::KernelFlavour::of(arch) {
                    let k = images::kernel(f, images::version(&i.source)?, &i.source, None)?;
                    println!(
                        "{f}: {} ({}{})",
                        k.image.display(),
                        k.origin,
                        modules_note(&k)
                    );
                    if !k.modules.is_empty() {
                        println!(
                            "initramfs {f}: {}",
                            images::initramfs_with(arch, &k.modules, &[])?.display()
                        );
                    }
                }
                if i.source.prebuilt.is_none() {
                    println!("initramfs {arch}: {}", images::initramfs(arch)?.display());
                }
            }
            Ok(())
        }
        Cmd::Selftests(i) => {
            for linux in images::versions(&i.source, false)? {
                for arch in arches(i.arch) {
                    let b =
                        selftests::build(linux, arch, &images::selftest_tree(&i.source, linux)?)?;
                    for (name, path) in &b.programs {
                        let n = b.cases.get(name).map_or(0, Vec::len);
                        println!(
                            "Linux {linux} {arch}: {name}: {n} cases, {}",
                            path.display()
                        );
                    }
                }
            }
            Ok(())
        }
        Cmd::Run(r) => run::run(&r),
        Cmd::Test(t) => test::run(&t),
        Cmd::Bench(b) => bench::run(&b),
        Cmd::Corpus(c) => corpus::run(&c),
        Cmd::Bisect(b) if b.fixture => bisect_fixture::run(b.runs, b.accel),
        Cmd::Bisect(b) => bisect::run(&bisect::Plan {
            src: b.src.unwrap_or_default(),
            good: b.good.unwrap_or_default(),
            bad: b.bad.unwrap_or_default(),
            trials: b.trials,
            patches: b.patches,
            runs: b.runs,
            accel: b.accel,
        }),
        Cmd::Fuzz(f) => fuzz::run(&f),
        Cmd::Coverage(c) if c.fuzz.is_some() => fuzz::coverage(&c),
        Cmd::Coverage(c) => coverage::run(&c),
        Cmd::Report(r) => merge::run(&r),
    }
}

fn doctor() -> anyhow::Result<()> {
    let missing = deps::doctor();
    if missing > 0 {
        anyhow::bail!("{missing} dependencies missing; run `cargo xtask setup`");
    }
    Ok(())
}
