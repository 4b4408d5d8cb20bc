//! One host session: read requests, answer them, until shutdown or EOF.

use std::io::{BufRead, Write};

use iobench_proto::{self as proto, AgentMsg, HostMsg};

/// How a session ended.
pub enum End {
    /// The host asked to power the machine off.
    Poweroff,
    /// The host closed the stream or asked to end the session only.
    Closed,
}

/// Both sides of a session: requests in, answers out (plain lines or
/// checksummed frames).  A long answer goes in parts
/// ([`proto::parts`]), each after the host asked for it, and the agent
/// goes on after a host step only at the host's go-ahead ([`Out::step`]).
struct Out<R: BufRead, W: Write> {
    r: R,
    w: W,
    frames: bool,
    /// Lines held back to go out together ([`Out::hold`]), and when the
    /// first of them was held.
    held: Option<(Vec<u8>, std::time::Instant)>,
}

impl<R: BufRead, W: Write> Out<R, W> {
    fn send(&mut self, msg: &AgentMsg) -> Result<(), String> {
        let line = proto::encode(msg);
        let Some(parts) = proto::parts::split(&line) else {
            return self.write(line);
        };
        // A long message goes out now, after what is held, and its parts
        // are not held (the host answers each).
        self.unheld(|out| {
            for part in parts {
                let last = matches!(part, AgentMsg::Part { last: true, .. });
                out.write(proto::encode(&part))?;
                if !last {
                    out.go_ahead("in the middle of a long message")?;
                }
            }
            Ok(())
        })
    }

    /// Waits for the host's go-ahead ([`HostMsg::More`]); `during` says
    /// what the agent was doing, for the error.
    fn go_ahead(&mut self, during: &str) -> Result<(), String> {
        match proto::recv::<HostMsg, _>(&mut self.r) {
            Ok(Some(HostMsg::More)) => Ok(()),
            Ok(Some(other)) => Err(format!(
                "the host sent {other:?} instead of the go-ahead {during}"
            )),
            Ok(None) => Err(format!("the host closed the stream {during}")),
            Err(e) => Err(format!("reading the host's go-ahead {during}: {e}")),
        }
    }

    /// Runs `f` with what is held written out and holding off, holding
    /// again afterwards if it was on: `f` waits for the host, which must
    /// have seen everything before.
    fn unheld(&mut self, f: impl FnOnce(&mut Self) -> Result<(), String>) -> Result<(), String> {
        let held = self.held.is_some();
        self.release()?;
        let r = f(self);
        if held {
            self.hold();
        }
        r
    }

    /// From now on lines are held and written together (a `keep_going`
    /// batch's step results: one write per result costs the guest more
    /// than the step itself under TCG), at 16 KiB or 2 ms after the first
    /// one held, and when released.
    fn hold(&mut self) {
        self.held = Some((Vec::new(), std::time::Instant::now()));
    }

    /// Writes what is held and stops holding.
    fn release(&mut self) -> Result<(), String> {
        match self.held.take() {
            Some((buf, _)) if !buf.is_empty() => self.write_bytes(&buf),
            _ => Ok(()),
        }
    }

    fn write(&mut self, line: Vec<u8>) -> Result<(), String> {
        let bytes = if self.frames {
            proto::framing::frame(&line)
        } else {
            line
        };
        if let Some((buf, since)) = &mut self.held {
            if buf.is_empty() {
                *since = std::time::Instant::now();
            }
            buf.extend_from_slice(&bytes);
            if buf.len() < 16 << 10 && since.elapsed() < std::time::Duration::from_millis(2) {
                return Ok(());
            }
            let buf = std::mem::take(buf);
            return self.write_bytes(&buf);
        }
        self.write_bytes(&bytes)
    }

    /// Sends a step's result; after a host step's
    /// ([`proto::ops::is_host_step`]), waits for the host's go-ahead
    /// ([`HostMsg::More`]): the host acts between this step and the next.
    fn step(&mut self, step: &proto::StepResult) -> Result<(), String> {
        self.send(&AgentMsg::Step(step.clone()))?;
        if !(step.passed && proto::ops::is_host_step(&step.op)) {
            return Ok(());
        }
        self.unheld(|out| out.go_ahead(&format!("after host step {}", step.index)))
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.w
            .write_all(bytes)
            .and_then(|_| self.w.flush())
            .map_err(|e| format!("write: {e}"))
    }
}

/// Runs `scenario` in a thread of its own, passing its steps on to `out`.
/// kmemleak scans every live task's whole kernel stack, where the ioctls
/// of a scenario leave stale pointers to what they allocated (a leaked
/// object would look referenced); the thread's stack goes with it.  Each
/// step waits until it is sent, as without the thread (a step that kills
/// the agent comes after the previous one reached the host).  With
/// `coverage` the thread traces itself with KCOV ([`crate::kcov`]),
/// drained after each step, and its PCs come back as the
/// [`AgentMsg::Coverage`] to send before `Done`.
fn run_in_thread<R: BufRead, W: Write>(
    scenario: &proto::Scenario,
    guard: Option<&crate::guard::Guard>,
    coverage: bool,
    out: &mut Out<R, W>,
) -> Result<(proto::ScenarioOutcome, Option<AgentMsg>), String> {
    let (step_tx, step_rx) = std::sync::mpsc::channel();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::scope(|s| {
        let runner = s.spawn(move || {
            let mut kcov = coverage.then(crate::kcov::Kcov::enable);
            let mut steps = 0u32;
            let done = crate::scenario::run(scenario, guard, |step| {
                if let Some(Ok(k)) = &mut kcov {
                    k.drain(steps);
                }
                steps += 1;
                step_tx.send(step.clone()).map_err(|e| e.to_string())?;
                let sent = sent_rx.recv().map_err(|e| e.to_string())?;
                // Waiting for the writer is no step's doing.
                if let Some(Ok(k)) = &mut kcov {
                    k.discard();
                }
                sent
            });
            let covered = kcov.map(|k| match k {
                Ok(k) => {
                    // What runs after the last step (the scenario's
                    // objects closed) is no step's either.
                    let (pcs, first_step, lost) = k.finish(u32::MAX);
                    AgentMsg::Coverage {
                        pcs,
                        first_step,
                        lost,
                        error: None,
                    }
                }
                Err(e) => AgentMsg::Coverage {
                    pcs: Vec::new(),
                    first_step: Vec::new(),
                    lost: false,
                    error: Some(e),
                },
            });
            done.map(|d| (d, covered))
        });
        // Ends when the runner drops its sender, i.e. when it is done.
        for step in step_rx {
            let sent = out.step(&step);
            let failed = sent.is_err();
            let _ = sent_tx.send(sent);
            if failed {
                break;
            }
        }
        drop(sent_tx);
        runner
            .join()
            .map_err(|_| "the scenario's thread panicked".to_string())?
    })
}

/// Serves requests from `r`, answering on `w`.
pub fn serve<R: BufRead, W: Write>(r: R, w: W, frames: bool) -> Result<End, String> {
    let mut out = Out {
        r,
        w,
        frames,
        held: None,
    };
    let mut kmsg = crate::sys::Kmsg::new();
    // On a kernel with kmemleak, each scenario's log delta carries its leaks.
    let mut leaks = crate::kmemleak::Kmemleak::detect();
    let mut greeted = false;
    let mut guard: Option<crate::guard::Guard> = None;
    // KCOV of each run's thread ([`HostMsg::Coverage`]).
    let mut coverage = false;
    loop {
        let msg = match proto::recv::<HostMsg, _>(&mut out.r) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(End::Closed),
            Err(e) => {
                // Say what was wrong and keep serving: one bad line is not fatal.
                out.send(&AgentMsg::Error {
                    message: e.to_string(),
                })?;
                if matches!(e, proto::DecodeError::Io(_)) {
                    return Err(e.to_string());
                }
                continue;
            }
        };
        if !greeted && !matches!(msg, HostMsg::Hello { .. }) {
            out.send(&AgentMsg::Error {
                message: "expected hello first".into(),
            })?;
            continue;
        }
        match msg {
            HostMsg::Hello { protocol, policy } => {
                if let Err(e) = proto::check_version(protocol) {
                    out.send(&AgentMsg::Error { message: e.clone() })?;
                    return Err(e);
                }
                greeted = true;
                // A lab target's policy holds for the whole session.
                guard = policy.map(crate::guard::Guard::new);
                let mut hello = crate::sys::hello();
                hello.protected = guard
                    .as_ref()
                    .map(|g| g.protected().to_vec())
                    .unwrap_or_default();
                out.send(&AgentMsg::Hello(hello))?;
            }
            HostMsg::Inventory => out.send(&AgentMsg::Inventory(crate::inventory::collect()))?,
            HostMsg::Dmesg => {
                let found = leaks.as_mut().map(|k| k.before_dmesg()).unwrap_or_default();
                let mut lines = kmsg.read_new();
                lines.extend(found);
                out.send(&AgentMsg::Dmesg { lines })?
            }
            HostMsg::Run { scenario } => {
                // A batch's results go out in bulk (not on kmemleak
                // kernels, where each step waits until it is sent).
                if scenario.keep_going && leaks.is_none() {
                    out.hold();
                }
                let (done, covered) = match leaks.as_mut() {
                    None if !coverage => (
                        crate::scenario::run(&scenario, guard.as_ref(), |step| out.step(step))?,
                        None,
                    ),
                    k => {
                        let done = run_in_thread(&scenario, guard.as_ref(), coverage, &mut out)?;
                        if let Some(k) = k {
                            k.ran();
                        }
                        done
                    }
                };
                out.release()?;
                if let Some(c) = covered {
                    out.send(&c)?;
                }
                out.send(&AgentMsg::Done(done))?;
            }
            HostMsg::Coverage { on } => {
                if on && !std::path::Path::new(crate::kcov::PATH).exists() {
                    out.send(&AgentMsg::Error {
                        message: format!(
                            "no {}: this kernel has no KCOV (build it with --kcov)",
                            crate::kcov::PATH
                        ),
                    })?;
                } else {
                    coverage = on;
                    out.send(&AgentMsg::Coverage {
                        pcs: Vec::new(),
                        first_step: Vec::new(),
                        lost: false,
                        error: None,
                    })?;
                }
            }
            // A go-ahead with no long message under way: nothing to send.
            HostMsg::More => out.send(&AgentMsg::Error {
                message: "`more` with no long message under way".into(),
            })?,
            HostMsg::Shutdown { poweroff } => {
                out.send(&AgentMsg::Bye)?;
                return Ok(if poweroff { End::Poweroff } else { End::Closed });
            }
        }
    }
}
