//! The fuzzer against the model, briefly: `cargo xtask fuzz` (the real
//! `xtask` binary next to this suite, as the lifetime trials run it) on
//! the run's primary kernel of the machine, 200 sequences of a fixed
//! seed, must end without a difference the model and its list of known
//! differences (`model/known-differences.toml`) do not explain.  Its
//! output (the report, minimized scenarios of what it found, the VM's
//! logs) goes under the trial's log directory.

use std::process::{Command, Stdio};

use harness::linux::Guest;
use harness::manifest::Manifest;
use harness::qemu::GuestMode;
use libtest_mimic::Failed;

/// Sequences of the short run.
const SEQUENCES: &str = "200";
/// Its seed.
const SEED: &str = "1";

/// `{machine}::fuzz::short_run`: 200 sequences (seed 1) on the primary
/// kernel (with the run's fixes, `--fixes`), no unexplained difference.
pub fn short_run(m: &Manifest, machine: &str, trial: &str) -> Result<(), Failed> {
    let linux = m.primary();
    let spec = m
        .spec_on(
            &Guest::new(machine, linux),
            &trial.replace("::", "/"),
            GuestMode::Agent,
        )
        .map_err(|e| e.to_string())?;
    let repo = m.scenarios_dir.parent().ok_or("no repo above scenarios/")?;
    // The model knows iobench's fixes by number (`--fixes` runs carry
    // them); a patch of the user's own is what the fuzzer is for: the
    // model predicts the kernel without it, and a difference names it.
    let fixes_dir = repo.join(harness::known_bug::FIXES_DIR);
    let mut patch_args = Vec::new();
    for name in &spec.images.patches {
        let fix = fixes_dir.join(name);
        if fix.is_file() {
            patch_args.push("--patch".to_string());
            patch_args.push(fix.display().to_string());
        } else {
            eprintln!("fuzz: the model does not know the kernel's patch {name}");
        }
    }
    let out = spec.log_dir.join("fuzz");
    std::fs::create_dir_all(&out)?;
    let kernel = spec.images.kernel.display().to_string();
    let output = Command::new(crate::support::xtask_binary()?)
        .args([
            "fuzz",
            "--machine",
            machine,
            "--linux",
            linux.as_str(),
            "--kernel",
            &kernel,
            "--sequences",
            SEQUENCES,
            "--seed",
            SEED,
        ])
        .args(&patch_args)
        .current_dir(repo)
        .env("IOBENCH_OUT", &out)
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    std::fs::write(out.join("xtask.out"), stdout.as_bytes())?;
    std::fs::write(out.join("xtask.err"), &output.stderr)?;
    eprintln!("{}", stdout.trim_end());
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
    Err(format!(
        "cargo xtask fuzz ({}) found differences or failed:\n{}\n{}\n  logs: {}",
        output.status,
        stdout.trim_end(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        out.display()
    )
    .into())
}
