//! iobench guest agent.
//!
//! A static binary started by the initramfs `/init` (or by hand, over SSH or
//! a serial console, on a real machine).  It answers the host's requests in
//! the line protocol of `iobench-proto`: who it is, which PCI devices and
//! IOMMU interfaces it sees, kernel log deltas, and scenario runs.
//!
//! Channels: `--connect CID:PORT` dials the host over vsock (the default in a
//! VM: the host learns the agent is ready the moment it connects),
//! `--listen PORT` also serves host-initiated vsock sessions, and `--stdio`
//! serves one session on stdin/stdout (SSH).  `--frames` wraps every output
//! line in a checksummed frame for consoles shared with printk.

mod args;
mod ctx;
mod guard;
mod inventory;
mod kcov;
mod kmemleak;
mod mem;
mod ops;
mod outcome;
mod pci;
mod scenario;
mod session;
mod sys;
mod uapi;
mod vsock;

use std::io::{BufReader, Write};
use std::process::ExitCode;

/// Parsed command line.
#[derive(Debug, Default)]
struct Options {
    connect: Option<(u32, u32)>,
    listen: Option<u32>,
    stdio: bool,
    /// Serve on a virtio-serial port (`auto`: the one named `iobench.agent`).
    port: Option<String>,
    frames: bool,
    bind_vfio: Vec<(u16, u16)>,
}

const USAGE: &str = "usage: guest-agent [--connect CID:PORT] [--listen PORT] [--stdio] [--port DEV|auto] \
[--frames] [--bind-vfio VENDOR:DEVICE]... [--cmdline]\n\
  --cmdline  also read iobench.connect=, .listen=, .bind_vfio=, .channel= from /proc/cmdline";

/// Parses `X:Y` as two numbers (hex with `radix16`).
fn parse_pair(s: &str, radix16: bool) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("expected X:Y, got {s:?}"))?;
    let num = |t: &str| -> Result<u32, String> {
        let r = if radix16 {
            u32::from_str_radix(t, 16)
        } else {
            t.parse()
        };
        r.map_err(|e| format!("{t:?}: {e}"))
    };
    Ok((num(a)?, num(b)?))
}

fn apply(opts: &mut Options, key: &str, value: Option<&str>) -> Result<(), String> {
    let need = || value.ok_or_else(|| format!("{key} needs a value"));
    match key {
        "--connect" | "connect" => opts.connect = Some(parse_pair(need()?, false)?),
        "--listen" | "listen" => {
            opts.listen = Some(need()?.parse().map_err(|e| format!("{key}: {e}"))?)
        }
        "--bind-vfio" | "bind_vfio" => {
            for id in need()?.split(',') {
                let (v, d) = parse_pair(id, true)?;
                let v = u16::try_from(v).map_err(|_| format!("{id:?}: vendor out of range"))?;
                let d = u16::try_from(d).map_err(|_| format!("{id:?}: device out of range"))?;
                opts.bind_vfio.push((v, d));
            }
        }
        "--port" => opts.port = Some(need()?.to_string()),
        // In a VM the host says which channel it attached.
        "channel" => {
            if need()? == "serial" {
                opts.port = Some("auto".into());
            }
        }
        "--stdio" => opts.stdio = true,
        "--frames" => opts.frames = true,
        _ => return Err(format!("unknown option {key}\n{USAGE}")),
    }
    Ok(())
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--help" | "-h" => return Err(USAGE.to_string()),
            "--stdio" | "--frames" => apply(&mut opts, &a, None)?,
            "--cmdline" => {
                let cmdline = std::fs::read_to_string("/proc/cmdline")
                    .map_err(|e| format!("/proc/cmdline: {e}"))?;
                for word in cmdline.split_whitespace() {
                    if let Some(kv) = word.strip_prefix("iobench.") {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        if matches!(k, "connect" | "listen" | "bind_vfio" | "channel") {
                            apply(&mut opts, k, Some(v))?;
                        }
                    }
                }
            }
            _ => {
                let v = args.next();
                apply(&mut opts, &a, v.as_deref())?;
            }
        }
    }
    if opts.connect.is_none() && opts.listen.is_none() && !opts.stdio && opts.port.is_none() {
        return Err(format!("no channel given\n{USAGE}"));
    }
    Ok(opts)
}

/// The device of a virtio-serial port: a path, or `auto` for `iobench.agent`.
fn serial_port(port: &str) -> Result<String, String> {
    if port != "auto" {
        return Ok(port.to_string());
    }
    let dir = std::fs::read_dir("/sys/class/virtio-ports")
        .map_err(|e| format!("/sys/class/virtio-ports: {e}"))?;
    for e in dir.flatten() {
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.trim() == "iobench.agent" {
            return Ok(format!("/dev/{}", e.file_name().to_string_lossy()));
        }
    }
    Err("no virtio-serial port named iobench.agent".into())
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("guest-agent: {e}");
            return ExitCode::from(2);
        }
    };
    for &(vendor, device) in &opts.bind_vfio {
        match pci::bind_vfio(vendor, device) {
            Ok(bdfs) => {
                eprintln!("guest-agent: {vendor:04x}:{device:04x} bound to vfio-pci: {bdfs:?}")
            }
            Err(e) => eprintln!("guest-agent: binding {vendor:04x}:{device:04x} to vfio-pci: {e}"),
        }
    }
    // A debug kernel: what boot left unreferenced is no scenario's leak.
    if kmemleak::Kmemleak::detect().is_some() {
        if let Err(e) = kmemleak::prime() {
            eprintln!("guest-agent: kmemleak: {e}");
        }
    }
    if let (Some(port), None) = (opts.listen, &opts.port) {
        let frames = opts.frames;
        match vsock::listen(port) {
            Ok(listener) => {
                std::thread::spawn(move || vsock::accept_loop(listener, frames));
            }
            Err(e) => eprintln!("guest-agent: vsock listen on port {port}: {e}"),
        }
    }
    let outcome = if let Some(port) = &opts.port {
        match serial_port(port).and_then(|p| {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .map_err(|e| format!("{p}: {e}"))?;
            let w = f.try_clone().map_err(|e| e.to_string())?;
            Ok((f, w))
        }) {
            Ok((r, w)) => session::serve(BufReader::new(r), w, opts.frames),
            Err(e) => Err(e),
        }
    } else if opts.stdio {
        let stdin = std::io::stdin();
        session::serve(stdin.lock(), std::io::stdout().lock(), opts.frames)
    } else if let Some((cid, port)) = opts.connect {
        match vsock::connect_retry(cid, port) {
            Ok(stream) => match stream.try_clone() {
                Ok(w) => session::serve(BufReader::new(stream), w, opts.frames),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(format!("vsock connect to {cid}:{port}: {e}")),
        }
    } else {
        // Listen-only: serve until killed.
        loop {
            std::thread::park();
        }
    };
    let _ = std::io::stderr().flush();
    match outcome {
        Ok(session::End::Poweroff) => ExitCode::SUCCESS,
        Ok(session::End::Closed) => ExitCode::from(3),
        Err(e) => {
            eprintln!("guest-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
