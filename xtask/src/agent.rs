//! Building the static guest agent for each architecture.
//!
//! x86_64: the rustup toolchain, `+crt-static` (glibc static-pie).
//! ppc64le: rustup's target if the user has it; otherwise Debian's rustc
//! 1.85 with the ppc64el std unpacked by `setup` (`--sysroot`) and
//! `powerpc64le-linux-gnu-gcc` as linker, in a target dir of its own so the
//! two compilers never share fingerprints.  The result must be a static ELF
//! for the right machine before it goes into an initramfs.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use harness::machine::Arch;
use xshell::{Shell, cmd};

use crate::cache::repo_root;

/// The Rust target triple for a guest arch.
pub fn triple(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-unknown-linux-gnu",
        Arch::Ppc64le => "powerpc64le-unknown-linux-gnu",
    }
}

fn rustup_has(sh: &Shell, triple: &str) -> bool {
    cmd!(sh, "rustup target list --installed")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|s| s.lines().any(|l| l == triple))
        .unwrap_or(false)
}

/// Builds the agent; returns the binary's path.
pub fn build(arch: Arch) -> Result<PathBuf> {
    let sh = Shell::new()?;
    let root = repo_root();
    sh.change_dir(&root);
    let t = triple(arch);
    let static_flags = "-C target-feature=+crt-static";
    let env_key = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        t.to_uppercase().replace('-', "_")
    );
    let bin = if arch == Arch::X86_64 || rustup_has(&sh, t) {
        let _e = sh.push_env(&env_key, static_flags);
        cmd!(
            sh,
            "cargo build --quiet --release --locked -p guest-agent --target {t}"
        )
        .run()?;
        root.join(format!("target/{t}/release/guest-agent"))
    } else {
        let sysroot = crate::cache::ppc64le_sysroot();
        crate::deps::require(&[
            "/usr/bin/rustc",
            "/usr/bin/cargo",
            "powerpc64le-linux-gnu-gcc",
        ])?;
        if !sysroot.join(format!("lib/rustlib/{t}/lib")).is_dir() {
            bail!(
                "the ppc64le Rust std is missing at {}; run `cargo xtask setup`",
                sysroot.display()
            );
        }
        let flags = format!("{static_flags} --sysroot {}", sysroot.display());
        let _e = sh.push_env(&env_key, flags);
        let _r = sh.push_env("RUSTC", "/usr/bin/rustc");
        // Debian's cargo must not pick up rustup's rustc/rustdoc through PATH.
        let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
        let _p = sh.push_env("PATH", path);
        let _t = sh.push_env("RUSTUP_TOOLCHAIN", "");
        let target_dir = root.join("target/debian-1.85");
        cmd!(sh, "/usr/bin/cargo build --quiet --release --locked -p guest-agent --target {t} --target-dir {target_dir}").run()?;
        target_dir.join(format!("{t}/release/guest-agent"))
    };
    check_static_elf(
        &std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?,
        arch,
    )
    .with_context(|| format!("{} is not a usable agent", bin.display()))?;
    Ok(bin)
}

/// Checks an ELF is 64-bit little-endian, for `arch`, with no interpreter.
pub fn check_static_elf(bytes: &[u8], arch: Arch) -> Result<()> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        bail!(
            "not a 64-bit little-endian ELF (class {}, data {})",
            bytes[4],
            bytes[5]
        );
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let (want, name) = match arch {
        Arch::X86_64 => (62, "x86_64"),
        Arch::Ppc64le => (21, "ppc64"),
    };
    let machine = u16_at(18);
    if machine != want {
        bail!("ELF machine {machine}, expected {want} ({name})");
    }
    let phoff = u64_at(32) as usize;
    let phentsize = u16_at(54) as usize;
    let phnum = u16_at(56) as usize;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > bytes.len() {
            bail!("truncated program headers");
        }
        if u32_at(o) == 3 {
            bail!("dynamically linked (has PT_INTERP); the agent must be static");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16, interp: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&(if interp { 3u32 } else { 1u32 }).to_le_bytes());
        b
    }

    #[test]
    fn static_elf_check() {
        assert!(check_static_elf(&elf(62, false), Arch::X86_64).is_ok());
        assert!(check_static_elf(&elf(21, false), Arch::Ppc64le).is_ok());
        let e = check_static_elf(&elf(62, false), Arch::Ppc64le)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 21"), "{e}");
        let e = check_static_elf(&elf(62, true), Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("PT_INTERP"), "{e}");
        assert!(check_static_elf(b"#!/bin/sh\n", Arch::X86_64).is_err());
    }

    #[test]
    fn this_test_binary_is_not_static() {
        // The test binary itself is dynamically linked: the check must say so.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert!(check_static_elf(&me, Arch::X86_64).is_err());
        }
    }
}
