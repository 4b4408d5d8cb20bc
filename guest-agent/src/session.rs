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
/// ([`proto::parts`]), each after the host asked for it.
struct Out<R: BufRead, W: Write> {
    r: R,
    w: W,
    frames: bool,
}

impl<R: BufRead, W: Write> Out<R, W> {
    fn send(&mut self, msg: &AgentMsg) -> Result<(), String> {
        let line = proto::encode(msg);
        let Some(parts) = proto::parts::split(&line) else {
            return self.write(line);
        };
        for part in parts {
            let last = matches!(part, AgentMsg::Part { last: true, .. });
            self.write(proto::encode(&part))?;
            if last {
                break;
            }
            match proto::recv::<HostMsg, _>(&mut self.r) {
                Ok(Some(HostMsg::More)) => {}
                Ok(Some(other)) => {
                    return Err(format!(
                        "the host sent {other:?} in the middle of a long message"
                    ));
                }
                Ok(None) => return Err("the host closed the stream in a long message".into()),
                Err(e) => return Err(format!("reading the host's go-ahead: {e}")),
            }
        }
        Ok(())
    }

    fn write(&mut self, line: Vec<u8>) -> Result<(), String> {
        let bytes = if self.frames {
            proto::framing::frame(&line)
        } else {
            line
        };
        self.w
            .write_all(&bytes)
            .and_then(|_| self.w.flush())
            .map_err(|e| format!("write: {e}"))
    }
}

/// Runs `scenario` in a thread of its own, passing its steps on to `out`.
/// kmemleak scans every live task's whole kernel stack, where the ioctls
/// of a scenario leave stale pointers to what they allocated (a leaked
/// object would look referenced); the thread's stack goes with it.  Each
/// step waits until it is sent, as without the thread (a step that kills
/// the agent comes after the previous one reached the host).
fn run_in_thread<R: BufRead, W: Write>(
    scenario: &proto::Scenario,
    guard: Option<&crate::guard::Guard>,
    out: &mut Out<R, W>,
) -> Result<proto::ScenarioOutcome, String> {
    let (step_tx, step_rx) = std::sync::mpsc::channel();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::scope(|s| {
        let runner = s.spawn(move || {
            crate::scenario::run(scenario, guard, |step| {
                step_tx.send(step.clone()).map_err(|e| e.to_string())?;
                sent_rx.recv().map_err(|e| e.to_string())?
            })
        });
        // Ends when the runner drops its sender, i.e. when it is done.
        for step in step_rx {
            let sent = out.send(&AgentMsg::Step(step));
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
    let mut out = Out { r, w, frames };
    let mut kmsg = crate::sys::Kmsg::new();
    // On a kernel with kmemleak, each scenario's log delta carries its leaks.
    let mut leaks = crate::kmemleak::Kmemleak::detect();
    let mut greeted = false;
    let mut guard: Option<crate::guard::Guard> = None;
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
                let done = match leaks.as_mut() {
                    None => crate::scenario::run(&scenario, guard.as_ref(), |step| {
                        out.send(&AgentMsg::Step(step.clone()))
                    })?,
                    Some(k) => {
                        let done = run_in_thread(&scenario, guard.as_ref(), &mut out)?;
                        k.ran();
                        done
                    }
                };
                out.send(&AgentMsg::Done(done))?;
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
