//! Serial-console targets: rexpect finds the prompt (and logs in), then the
//! console is read for checksummed frames only, so kernel messages printed
//! in between cannot corrupt a result.
//!
//! One pump thread owns the console's read side: it appends everything to
//! `console.log`, keeps a tail for failure reports, and hands the bytes first
//! to rexpect (through a socket pair) and, once the agent runs, to the
//! deframer.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use iobench_proto::framing::Deframer;

use iobench_proto::policy::Policy;

use super::{ConsoleTail, SerialDef, Session, TargetError, TcpStream, io};
use crate::agent::Agent;

type Reader = Box<dyn Read + Send>;
type Writer = Box<dyn Write + Send>;
/// A console connection: read side, two write sides, and how to end it.
type Console = (Reader, [Writer; 2], Box<dyn FnOnce() + Send>);

/// Opens the console: a read side, two write sides (rexpect's and the
/// agent's) and a function that ends the connection.
fn connect(console: &str) -> Result<Console, TargetError> {
    fn split<S: Read + Write + Send + 'static>(
        s: S,
        dup: impl Fn(&S) -> std::io::Result<S>,
        stop: impl FnOnce(S) + Send + 'static,
    ) -> Result<Console, TargetError> {
        let d = || dup(&s).map_err(io("dup"));
        let (w1, w2, last) = (d()?, d()?, d()?);
        Ok((
            Box::new(s),
            [Box::new(w1), Box::new(w2)],
            Box::new(move || stop(last)),
        ))
    }
    if let Some(path) = console.strip_prefix("unix:") {
        let s = UnixStream::connect(path)
            .map_err(io(format!("connecting to the console socket {path}")))?;
        return split(s, UnixStream::try_clone, |s| {
            drop(s.shutdown(std::net::Shutdown::Both))
        });
    }
    if let Some(addr) = console.strip_prefix("tcp:") {
        let s = TcpStream::connect(addr)
            .map_err(io(format!("connecting to the console server {addr}")))?;
        return split(s, TcpStream::try_clone, |s| {
            drop(s.shutdown(std::net::Shutdown::Both))
        });
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(console)
        .map_err(io(format!("opening {console}")))?;
    split(f, std::fs::File::try_clone, drop)
}

/// Where the pump sends console bytes.
enum Sink {
    Expect(UnixStream),
    Frames(mpsc::Sender<Vec<u8>>),
}

/// Reads protocol lines out of deframed console bytes.
struct FramedReader {
    rx: mpsc::Receiver<Vec<u8>>,
    deframer: Deframer,
    pending: VecDeque<u8>,
    timeout: Duration,
}

impl Read for FramedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            match self.rx.recv_timeout(self.timeout) {
                Ok(bytes) => {
                    for mut payload in self.deframer.push(&bytes) {
                        payload.push(b'\n');
                        self.pending.extend(payload);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no framed output on the console",
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        for (i, b) in self.pending.drain(..n).enumerate() {
            buf[i] = b;
        }
        Ok(n)
    }
}

pub(super) fn open(
    name: &str,
    d: &SerialDef,
    log_dir: &Path,
    policy: Policy,
) -> Result<Session, TargetError> {
    let log_path = log_dir.join("console.log");
    let fail = |what: String| TargetError::Serial {
        target: name.into(),
        what,
        log: log_path.clone(),
    };
    let (mut reader, [expect_w, mut agent_w], stop) = connect(&d.console)?;
    let mut log =
        std::fs::File::create(&log_path).map_err(io(format!("creating {}", log_path.display())))?;
    let tail = Arc::new(Mutex::new(ConsoleTail::default()));
    let (pipe_in, pipe_out) = UnixStream::pair().map_err(io("socketpair"))?;
    let sink = Arc::new(Mutex::new(Some(Sink::Expect(pipe_in))));
    {
        let (tail, sink) = (tail.clone(), sink.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = log.write_all(&buf[..n]);
                tail.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(&buf[..n]);
                match sink.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    Some(Sink::Expect(s)) => drop(s.write_all(&buf[..n])),
                    Some(Sink::Frames(tx)) => drop(tx.send(buf[..n].to_vec())),
                    None => {}
                }
            }
            // End of console: close whichever consumer is attached.
            sink.lock().unwrap_or_else(|p| p.into_inner()).take();
        });
    }
    // A real console may swallow a keystroke or bury a prompt in kernel
    // messages: every wait below is short and retried after poking it again.
    let timeout_ms = 10_000;
    let mut s = rexpect::spawn_stream(pipe_out, expect_w, Some(timeout_ms));
    let step = |s: &mut rexpect::session::StreamSession<Writer>,
                what: &str,
                r: Result<(), rexpect::error::Error>| {
        r.map_err(|e| fail(format!("{what}: {e}")))?;
        s.flush().map_err(|e| fail(format!("{what}: {e}")))
    };
    const ATTEMPTS: u32 = 3;
    let r = s.send_line("").map(|_| ());
    step(&mut s, "waking the console", r)?;
    if let Some(user) = &d.login {
        let r = s.exp_regex("login: ?$").map(|_| ());
        step(&mut s, "waiting for login:", r)?;
        let r = s.send_line(user).map(|_| ());
        step(&mut s, "sending the user", r)?;
        if let Some(var) = &d.password_env {
            let pw = std::env::var(var)
                .map_err(|_| fail(format!("environment variable {var} is not set")))?;
            let r = s.exp_string("assword").map(|_| ());
            step(&mut s, "waiting for Password:", r)?;
            let r = s.send_line(&pw).map(|_| ());
            step(&mut s, "sending the password", r)?;
        }
    }
    let what = format!("waiting for the shell prompt /{}/", d.prompt);
    for attempt in 1..=ATTEMPTS {
        match s.exp_regex(&d.prompt) {
            Ok(_) => break,
            Err(e) if attempt == ATTEMPTS => step(&mut s, &what, Err(e))?,
            Err(_) => {
                let r = s.send_line("").map(|_| ());
                step(&mut s, "waking the console", r)?;
            }
        }
    }
    // Prompts pile up and line editors emit escape sequences, so sync on the
    // output of arithmetic the echo of the typed line cannot contain.
    let sync = |s: &mut rexpect::session::StreamSession<Writer>, n: u32| {
        for attempt in 1..=ATTEMPTS {
            let m = n * 10 + attempt;
            let r = s
                .send_line(&format!("echo iobench-sync-$(({m}*7))"))
                .map(|_| ());
            step(s, "syncing with the shell", r)?;
            match s.exp_string(&format!("iobench-sync-{}", m * 7)) {
                Ok(_) => {
                    return s
                        .flush()
                        .map_err(|e| fail(format!("syncing with the shell: {e}")));
                }
                Err(e) if attempt == ATTEMPTS => step(s, "syncing with the shell", Err(e))?,
                Err(_) => {}
            }
        }
        Ok(())
    };
    sync(&mut s, 6)?;
    if let Some(prepare) = &d.prepare {
        let r = s.send_line(prepare).map(|_| ());
        step(&mut s, "sending the prepare command", r)?;
        sync(&mut s, 7)?;
    }
    // Raw mode: no echo, no line-length limit, no CR/LF rewriting; restored after.
    let command = format!(
        "stty raw -echo; {} --stdio --frames 2>/dev/null; stty sane",
        super::shell_quote(&d.agent)
    );
    let (tx, rx) = mpsc::channel();
    let r = s.send_line(&command).map(|_| ());
    step(&mut s, "starting the agent", r)?;
    // From here on, console bytes go to the deframer; rexpect's side sees EOF.
    *sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(Sink::Frames(tx));
    drop(s);
    let framed = FramedReader {
        rx,
        deframer: Deframer::new(),
        pending: VecDeque::new(),
        timeout: Duration::from_secs(d.timeout_s),
    };
    agent_w.flush().map_err(io("console write"))?;
    let agent = Agent::handshake_under(BufReader::new(framed), agent_w, Some(policy)).map_err(
        |source| TargetError::Agent {
            target: name.into(),
            source,
        },
    )?;
    let cleanup = move || -> Result<(), TargetError> {
        std::thread::sleep(Duration::from_millis(100)); // let `stty sane` run
        stop();
        Ok(())
    };
    Ok(Session {
        name: name.into(),
        remote_dir: None,
        agent: Some(agent),
        log_dir: log_dir.to_owned(),
        console: Some(tail),
        cleanup: Some(Box::new(cleanup)),
    })
}
