//! Facts about the running kernel: uname, page size, the kernel log.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use iobench_proto::{AgentHello, PROTOCOL_VERSION};

fn uname() -> (String, String) {
    // SAFETY: utsname is plain old data, filled in by uname(2).
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("unknown".into(), "unknown".into());
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&u.release), field(&u.machine))
}

/// The kernel's page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// The agent's answer to hello.
pub fn hello() -> AgentHello {
    let (kernel, machine) = uname();
    AgentHello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel,
        machine,
        page_size: page_size(),
        protected: Vec::new(),
    }
}

/// Reader of `/dev/kmsg` that returns only records it has not returned yet.
pub struct Kmsg {
    last_seq: Option<u64>,
}

impl Kmsg {
    /// Starts before the first record.
    pub fn new() -> Self {
        Self { last_seq: None }
    }

    /// Kernel log records newer than the previous call, as `[seconds] text`.
    pub fn read_new(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
        else {
            return vec!["(no /dev/kmsg)".into()];
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        // Each read returns exactly one record; EAGAIN ends the log.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            let rec = String::from_utf8_lossy(&buf[..n]);
            let Some((hdr, text)) = rec.split_once(';') else {
                continue;
            };
            let mut fields = hdr.split(',');
            let _prio = fields.next();
            let seq: u64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let usec: u64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            if self.last_seq.is_some_and(|l| seq <= l) {
                continue;
            }
            self.last_seq = Some(seq);
            let text = text.lines().next().unwrap_or("");
            out.push(format!(
                "[{:5}.{:06}] {text}",
                usec / 1_000_000,
                usec % 1_000_000
            ));
        }
        out
    }
}
