//! Kernel coverage of one thread with KCOV (iobench's coverage kernels,
//! `--kcov`): when a scenario asks for it (`coverage = true`), `session`
//! runs it in a thread of its own that opens `/sys/kernel/debug/kcov`,
//! sizes and maps the trace buffer (`KCOV_INIT_TRACE`, mmap) and enables
//! PC tracing for itself (`KCOV_ENABLE`, `KCOV_TRACE_PC`).  The kernel then
//! appends the return address of every `__sanitizer_cov_trace_pc` call the
//! thread's syscalls make (KASLR offset already taken off) to the buffer,
//! whose first word counts them.  After each step the thread drains the
//! buffer into a set (no syscall between reading and resetting the count,
//! so the drain itself adds nothing), and at the end the host gets the
//! unique PCs, sorted ([`iobench_proto::AgentMsg::Coverage`]).
//!
//! Nothing here imports the rest of the crate.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// KCOV's control file.
pub const PATH: &str = "/sys/kernel/debug/kcov";

/// Words in the trace buffer: 2 Mi PCs (16 MiB of the guest's 1 GiB)
/// between two drains.  The buffer records every block a step executes,
/// not only new ones: one step that maps or touches a large buffer (a page
/// fault per page) fills 256 Ki words.
const WORDS: usize = 1 << 21;

const KCOV_INIT_TRACE: libc::Ioctl = libc::_IOR::<libc::c_ulong>(b'c' as u32, 1);
const KCOV_ENABLE: libc::Ioctl = libc::_IO(b'c' as u32, 100);
const KCOV_DISABLE: libc::Ioctl = libc::_IO(b'c' as u32, 101);
const KCOV_TRACE_PC: libc::c_ulong = 0;

/// PC tracing of the calling thread, enabled until dropped.
pub struct Kcov {
    fd: OwnedFd,
    area: *mut AtomicU64,
    /// Unique PCs drained so far, each with the step that reached it first.
    pcs: HashMap<u64, u32>,
    /// The buffer filled up between two drains (PCs were lost).
    overflowed: bool,
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

impl Kcov {
    /// Enables tracing for the calling thread.
    pub fn enable() -> Result<Kcov, String> {
        // SAFETY: a NUL-terminated path; the result is a new descriptor or -1.
        let fd = unsafe { libc::open(c"/sys/kernel/debug/kcov".as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            return Err(format!(
                "{} (a kernel without CONFIG_KCOV? build with --kcov)",
                os_err(&format!("opening {PATH}"))
            ));
        }
        // SAFETY: open returned a descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain ioctl on our own descriptor with an integer argument.
        if unsafe { libc::ioctl(fd.as_raw_fd(), KCOV_INIT_TRACE, WORDS as libc::c_ulong) } != 0 {
            return Err(os_err("KCOV_INIT_TRACE"));
        }
        let len = WORDS * std::mem::size_of::<u64>();
        // SAFETY: a fresh shared mapping of the kcov buffer, checked below.
        let area = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(os_err("mmap of the kcov buffer"));
        }
        let kcov = Kcov {
            fd,
            area: area.cast(),
            pcs: HashMap::new(),
            overflowed: false,
        };
        // SAFETY: plain ioctl on our own descriptor with an integer argument.
        if unsafe { libc::ioctl(kcov.fd.as_raw_fd(), KCOV_ENABLE, KCOV_TRACE_PC) } != 0 {
            return Err(os_err("KCOV_ENABLE"));
        }
        kcov.word(0).store(0, Ordering::Relaxed);
        Ok(kcov)
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < WORDS);
        // SAFETY: `area` maps WORDS aligned u64 words for as long as `self` lives.
        unsafe { &*self.area.add(i) }
    }

    /// Moves what the buffer holds into the set, as reached by `step`
    /// unless an earlier step reached it, and empties the buffer.
    pub fn drain(&mut self, step: u32) {
        let n = self.word(0).load(Ordering::Relaxed) as usize;
        let n = n.min(WORDS - 1);
        if n == WORDS - 1 {
            self.overflowed = true;
        }
        for i in 1..=n {
            let pc = self.word(i).load(Ordering::Relaxed);
            self.pcs.entry(pc).or_insert(step);
        }
        self.word(0).store(0, Ordering::Relaxed);
    }

    /// Empties the buffer, keeping nothing of it.
    pub fn discard(&mut self) {
        self.word(0).store(0, Ordering::Relaxed);
    }

    /// Disables tracing (what is left counts as reached by `step`); the
    /// unique PCs, sorted, the first step of each, and whether any were
    /// lost.
    pub fn finish(mut self, step: u32) -> (Vec<u64>, Vec<u32>, bool) {
        self.drain(step);
        // SAFETY: plain ioctl on our own descriptor.
        unsafe { libc::ioctl(self.fd.as_raw_fd(), KCOV_DISABLE, 0) };
        let mut pcs: Vec<(u64, u32)> = std::mem::take(&mut self.pcs).into_iter().collect();
        pcs.sort_unstable();
        let (pcs, first) = pcs.into_iter().unzip();
        (pcs, first, self.overflowed)
    }
}

impl Drop for Kcov {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `enable`, unmapped once.
        unsafe { libc::munmap(self.area.cast(), WORDS * std::mem::size_of::<u64>()) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_numbers_match_the_kernel_headers() {
        // include/uapi/linux/kcov.h: _IOR('c', 1, unsigned long), _IO('c', 100).
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(super::KCOV_INIT_TRACE as u32, 0x8008_6301);
            assert_eq!(super::KCOV_ENABLE as u32, 0x6364);
        }
        #[cfg(target_arch = "powerpc64")]
        {
            assert_eq!(super::KCOV_INIT_TRACE as u32, 0x4008_6301);
            assert_eq!(super::KCOV_ENABLE as u32, 0x2000_6364);
        }
    }
}
