//! Choosing the accelerator: KVM where it really boots guests, else TCG.
//!
//! `/dev/kvm` existing is not enough (nested hosts hang or fail with
//! "emulation failure"), so `auto` boots a canary — our kernel with no
//! initramfs, which panics at once and exits through `-no-reboot` — under
//! KVM with a short deadline.  The verdict is cached per host kernel and QEMU
//! version, and the reason for falling back is printed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use harness::machine::Arch;
use harness::qemu::Accel;

use crate::flags::AccelFlag;

fn probe(qemu: &str, kernel: &Path) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("no /dev/kvm".into());
    }
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-accel",
        "kvm",
        "-M",
        "q35",
        "-m",
        "256M",
        "-nodefaults",
        "-nographic",
        "-no-reboot",
        "-serial",
        "null",
    ])
    .arg("-kernel")
    .arg(kernel)
    .args([
        "-append",
        "console=ttyS0 panic=-1 rdinit=/none root=/dev/none",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = harness::process::spawn_owned(cmd, "kvm canary").map_err(|e| e.to_string())?;
    match child.wait_timeout(Duration::from_secs(8)) {
        Ok(Some(s)) if s.success() => Ok(()),
        Ok(Some(s)) => {
            let mut err = String::new();
            if let Some(mut e) = child.child_mut().stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            Err(format!(
                "KVM canary failed ({s}): {}",
                err.lines().next().unwrap_or("")
            ))
        }
        Ok(None) => Err("KVM canary did not finish in 8 s (nested virtualisation?)".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Picks the accelerator for a guest of `arch` booting `kernel`.
pub fn choose(flag: AccelFlag, arch: Arch, kernel: &Path) -> Result<Accel> {
    match flag {
        AccelFlag::Tcg => return Ok(Accel::Tcg),
        AccelFlag::Kvm => return Ok(Accel::Kvm),
        AccelFlag::Auto => {}
    }
    if arch != Arch::X86_64 || !cfg!(target_arch = "x86_64") {
        return Ok(Accel::Tcg);
    }
    let qemu = arch.qemu_binary();
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = Command::new(qemu)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let key = crate::cache::key(&[host.as_bytes(), version.as_bytes(), b"kvm-probe-v1"]);
    let verdict_file =
        crate::cache::cache_dir().join(format!("kvm-probe-{}", crate::cache::short(&key)));
    let verdict = match std::fs::read_to_string(&verdict_file) {
        Ok(v) => v,
        Err(_) => {
            let v = match probe(qemu, kernel) {
                Ok(()) => Accel::Kvm.as_str().to_string(),
                Err(reason) => format!("{} {reason}", Accel::Tcg.as_str()),
            };
            let _ = std::fs::create_dir_all(crate::cache::cache_dir());
            let _ = std::fs::write(&verdict_file, &v);
            v
        }
    };
    match parse_verdict(&verdict) {
        (Accel::Kvm, _) => Ok(Accel::Kvm),
        (Accel::Tcg, reason) => {
            eprintln!(
                "accel: using TCG: {reason} (cached in {})",
                verdict_file.display()
            );
            Ok(Accel::Tcg)
        }
    }
}

/// A cached verdict: `kvm`, or `tcg` and why KVM failed.
fn parse_verdict(v: &str) -> (Accel, &str) {
    if v == Accel::Kvm.as_str() {
        return (Accel::Kvm, "");
    }
    let reason = v
        .strip_prefix(Accel::Tcg.as_str())
        .map_or(v, |r| r.strip_prefix(' ').unwrap_or(r));
    (Accel::Tcg, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_verdicts_read_back() {
        assert_eq!(parse_verdict("kvm"), (Accel::Kvm, ""));
        assert_eq!(
            parse_verdict("tcg no /dev/kvm"),
            (Accel::Tcg, "no /dev/kvm")
        );
        assert_eq!(parse_verdict("garbage"), (Accel::Tcg, "garbage"));
    }
}
