//! AF_VSOCK streams with plain libc (no async runtime, no extra crate).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The vsock stream, as a `UnixStream` (same read/write/shutdown semantics).
fn into_stream(fd: OwnedFd) -> UnixStream {
    UnixStream::from(fd)
}

/// Connects to `cid:port`.
pub fn connect(cid: u32, port: u32) -> io::Result<UnixStream> {
    let fd = socket()?;
    let a = addr(cid, port);
    // SAFETY: `a` is a valid sockaddr_vm of the given length.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&a as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(into_stream(fd))
}

/// Connects, retrying for up to 10 s while the host is not listening yet.
pub fn connect_retry(cid: u32, port: u32) -> io::Result<UnixStream> {
    let mut last = None;
    for _ in 0..200 {
        match connect(cid, port) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last.unwrap_or_else(|| io::Error::other("no attempt made")))
}

/// Listens on `port` for any CID.
pub fn listen(port: u32) -> io::Result<OwnedFd> {
    let fd = socket()?;
    let a = addr(libc::VMADDR_CID_ANY, port);
    // SAFETY: valid address and length; fd is ours.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&a as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    // SAFETY: listen(2) on our own descriptor.
    if rc < 0 || unsafe { libc::listen(fd.as_raw_fd(), 8) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Serves every accepted connection in its own thread, forever.
pub fn accept_loop(listener: OwnedFd, frames: bool) {
    loop {
        // SAFETY: accept4(2) on our listening socket; NULL address is allowed.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            eprintln!("guest-agent: vsock accept: {}", io::Error::last_os_error());
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        // SAFETY: a fresh descriptor from accept4.
        let stream = into_stream(unsafe { OwnedFd::from_raw_fd(fd) });
        std::thread::spawn(move || {
            let Ok(w) = stream.try_clone() else { return };
            match crate::session::serve(io::BufReader::new(stream), w, frames) {
                Ok(crate::session::End::Poweroff) => {
                    // SAFETY: sync(2) and exit: the init script powers off after us.
                    unsafe { libc::sync() };
                    std::process::exit(0);
                }
                Ok(crate::session::End::Closed) => {}
                Err(e) => eprintln!("guest-agent: session: {e}"),
            }
        });
    }
}
