//! The host's client of the guest agent.
//!
//! Wraps any byte stream (vsock, an SSH channel, a deframed console) in a
//! typed request/response API: handshake with version check, inventory,
//! kernel-log deltas, scenario runs with streamed step results, shutdown.
//! Every read has a deadline, so a silent agent is an error, not a hang.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use iobench_proto::{
    self as proto, Actual, AgentHello, AgentMsg, HostMsg, Inventory, Scenario, ScenarioOutcome,
    StepResult,
};

/// Errors talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The stream failed or timed out.
    #[error("agent stream")]
    Io(#[from] std::io::Error),
    /// The agent sent something undecodable.
    #[error("agent sent garbage")]
    Decode(#[from] proto::DecodeError),
    /// The agent closed the stream.
    #[error("agent closed the connection (did it crash? see the console log)")]
    Closed,
    /// Host and agent speak different protocol versions.
    #[error("{0}")]
    Version(String),
    /// The agent reported an error.
    #[error("agent error: {0}")]
    Agent(String),
    /// The agent answered something else than asked.
    #[error("unexpected answer from the agent: {0:?}")]
    Unexpected(Box<AgentMsg>),
}

/// The kernel code a run executed, by KCOV ([`Agent::set_coverage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCoverage {
    /// Unique PCs (return addresses of the `__sanitizer_cov_trace_pc`
    /// calls), sorted.
    pub pcs: Vec<u64>,
    /// For each PC, the index of the first step that reached it (empty
    /// from an agent that does not say).
    pub first_step: Vec<u32>,
    /// The agent's trace buffer overflowed: some PCs were lost.
    pub lost: bool,
    /// Why the run has no coverage, if it has none.
    pub error: Option<String>,
}

/// A connected, greeted agent.
pub struct Agent {
    r: Box<dyn BufRead + Send>,
    w: Box<dyn Write + Send>,
    hello: AgentHello,
    /// The last run's coverage, while coverage is on.
    covered: Option<RunCoverage>,
    /// The socket under `r`, and its read deadline, when the agent is on
    /// a unix socket (the deadline can then be changed).
    socket: Option<(UnixStream, Duration)>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("hello", &self.hello).finish()
    }
}

impl Agent {
    /// Greets the agent on a unix-socket stream; `timeout` bounds every read.
    pub fn over_unix(stream: UnixStream, timeout: Duration) -> Result<Agent, AgentError> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(timeout))?;
        let w = stream.try_clone()?;
        let control = stream.try_clone()?;
        let mut a = Agent::handshake(BufReader::new(stream), w)?;
        a.socket = Some((control, timeout));
        Ok(a)
    }

    /// How long a read waits before the agent counts as silent, if known.
    pub fn reply_deadline(&self) -> Option<Duration> {
        self.socket.as_ref().map(|(_, d)| *d)
    }

    /// Changes how long a read waits (a scenario whose hang is its
    /// expected outcome need not cost the machine's whole deadline).  On a
    /// stream other than a unix socket the deadline stays as it is.
    pub fn set_reply_deadline(&mut self, d: Duration) -> Result<(), AgentError> {
        if let Some((sock, deadline)) = &mut self.socket {
            sock.set_read_timeout(Some(d))?;
            *deadline = d;
        }
        Ok(())
    }

    /// Greets the agent over any reader/writer pair.
    pub fn handshake<R: Read + Send + 'static, W: Write + Send + 'static>(
        r: BufReader<R>,
        w: W,
    ) -> Result<Agent, AgentError> {
        Agent::handshake_under(r, w, None)
    }

    /// Greets the agent and hands it a lab target's `policy`, which it
    /// enforces for the whole session.
    pub fn handshake_under<R: Read + Send + 'static, W: Write + Send + 'static>(
        r: BufReader<R>,
        w: W,
        policy: Option<iobench_proto::policy::Policy>,
    ) -> Result<Agent, AgentError> {
        let mut a = Agent {
            r: Box::new(r),
            w: Box::new(w),
            hello: placeholder(),
            covered: None,
            socket: None,
        };
        a.send(&HostMsg::Hello {
            protocol: proto::PROTOCOL_VERSION,
            policy,
        })?;
        match a.recv()? {
            AgentMsg::Hello(h) => {
                proto::check_version(h.protocol).map_err(AgentError::Version)?;
                a.hello = h;
                Ok(a)
            }
            other => Err(unexpected(other)),
        }
    }

    /// What the agent said about itself.
    pub fn hello(&self) -> &AgentHello {
        &self.hello
    }

    fn send(&mut self, msg: &HostMsg) -> Result<(), AgentError> {
        proto::send(&mut self.w, msg).map_err(AgentError::Io)
    }

    /// The next message, put together from its parts if it came in parts
    /// (each asked for with [`HostMsg::More`]: see [`proto::parts`]).
    fn recv(&mut self) -> Result<AgentMsg, AgentError> {
        let mut parts = proto::parts::Assembler::default();
        loop {
            match self.recv_line()? {
                AgentMsg::Part { data, last } => match parts.push(&data, last) {
                    Some(whole) => return whole.map_err(AgentError::Decode),
                    None => self.send(&HostMsg::More)?,
                },
                m => return Ok(m),
            }
        }
    }

    fn recv_line(&mut self) -> Result<AgentMsg, AgentError> {
        match proto::recv::<AgentMsg, _>(&mut self.r) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(AgentError::Closed),
            Err(proto::DecodeError::Io(e)) => Err(AgentError::Io(e)),
            Err(e) => Err(AgentError::Decode(e)),
        }
    }

    /// PCI devices, groups, drivers and kernel features.
    pub fn inventory(&mut self) -> Result<Inventory, AgentError> {
        self.send(&HostMsg::Inventory)?;
        match self.recv()? {
            AgentMsg::Inventory(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// Kernel log lines since the previous call.
    pub fn dmesg(&mut self) -> Result<Vec<String>, AgentError> {
        self.send(&HostMsg::Dmesg)?;
        match self.recv()? {
            AgentMsg::Dmesg { lines } => Ok(lines),
            other => Err(unexpected(other)),
        }
    }

    /// Turns KCOV coverage of later runs on or off; turning it on fails
    /// on a kernel without KCOV (not built with `--kcov`).  While on, each
    /// run's coverage waits in [`Agent::take_coverage`].
    pub fn set_coverage(&mut self, on: bool) -> Result<(), AgentError> {
        self.send(&HostMsg::Coverage { on })?;
        match self.recv()? {
            AgentMsg::Coverage { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The coverage of the last run, if coverage was on for it.
    pub fn take_coverage(&mut self) -> Option<RunCoverage> {
        self.covered.take()
    }

    /// Runs a scenario, calling `on_step` for each result as it arrives.
    /// This host runs no host steps: one fails with that reason.
    pub fn run(
        &mut self,
        scenario: &Scenario,
        on_step: impl FnMut(&StepResult),
    ) -> Result<ScenarioOutcome, AgentError> {
        self.run_hosted(
            scenario,
            |s| Err(format!("{}: this host runs no host steps", s.op)),
            on_step,
        )
    }

    /// Runs a scenario whose host steps (`host.*`,
    /// [`proto::ops::is_host_step`]) `host` performs: it gets each one's
    /// result from the agent (its value is the request, the step's
    /// resolved arguments) and returns what the action gave, which becomes
    /// the step's result (judged against its expectation), before the
    /// agent gets its go-ahead ([`HostMsg::More`]).  A failed host step
    /// fails the outcome; the agent, which had no say in it, runs on.
    pub fn run_hosted(
        &mut self,
        scenario: &Scenario,
        mut host: impl FnMut(&StepResult) -> Result<serde_json::Value, String>,
        mut on_step: impl FnMut(&StepResult),
    ) -> Result<ScenarioOutcome, AgentError> {
        self.send(&HostMsg::Run {
            scenario: scenario.clone(),
        })?;
        self.covered = None;
        let mut host_failed = false;
        loop {
            match self.recv()? {
                AgentMsg::Step(mut s) if s.passed && proto::ops::is_host_step(&s.op) => {
                    s.actual = match host(&s) {
                        Ok(v) => Actual::Value(v),
                        Err(e) => Actual::Error(e),
                    };
                    s.passed = proto::ops::satisfies(&s.expected, &s.actual);
                    host_failed |= !s.passed;
                    self.send(&HostMsg::More)?;
                    on_step(&s);
                }
                AgentMsg::Step(s) => on_step(&s),
                AgentMsg::Coverage {
                    pcs,
                    first_step,
                    lost,
                    error,
                } => {
                    self.covered = Some(RunCoverage {
                        pcs,
                        first_step,
                        lost,
                        error,
                    });
                }
                AgentMsg::Done(mut o) => {
                    o.passed &= !host_failed;
                    return Ok(o);
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Ends the session (and with `poweroff`, the machine).
    pub fn shutdown(mut self, poweroff: bool) -> Result<(), AgentError> {
        self.send(&HostMsg::Shutdown { poweroff })?;
        match self.recv()? {
            AgentMsg::Bye => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(m: AgentMsg) -> AgentError {
    match m {
        AgentMsg::Error { message } => AgentError::Agent(message),
        other => AgentError::Unexpected(Box::new(other)),
    }
}

fn placeholder() -> AgentHello {
    AgentHello {
        protocol: 0,
        agent_version: String::new(),
        kernel: String::new(),
        machine: String::new(),
        page_size: 0,
        protected: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use iobench_proto::{
        self as proto, Actual, AgentMsg, Expect, HostMsg, Scenario, ScenarioOutcome, StepResult,
    };
    use serde_json::json;

    fn result(index: usize, op: &str, actual: Actual) -> StepResult {
        StepResult {
            index,
            op: op.into(),
            expected: Expect::Ok,
            actual,
            passed: true,
            micros: 1,
        }
    }

    /// A fake agent on a socket pair: it answers the host's hello, then
    /// `script` plays the rest of the session (reader, writer).
    fn fake_agent(
        script: impl FnOnce(BufReader<UnixStream>, UnixStream) + Send + 'static,
    ) -> (UnixStream, std::thread::JoinHandle<()>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let agent = std::thread::spawn(move || {
            let mut r = BufReader::new(theirs.try_clone().unwrap());
            let mut w = theirs;
            let Some(HostMsg::Hello { .. }) = proto::recv(&mut r).unwrap() else {
                panic!("no hello")
            };
            let hello = AgentMsg::Hello(proto::AgentHello {
                protocol: proto::PROTOCOL_VERSION,
                agent_version: "test".into(),
                kernel: "7.2".into(),
                machine: "x86_64".into(),
                page_size: 4096,
                protected: Vec::new(),
            });
            proto::send(&mut w, &hello).unwrap();
            script(r, w);
        });
        (ours, agent)
    }

    /// An agent that sends a host step's result, waits for the go-ahead,
    /// then sends one more step: the host acts in between, and its result
    /// replaces the agent's.
    fn host_step_run(act: Result<serde_json::Value, String>) -> (Vec<StepResult>, bool) {
        let (ours, agent) = fake_agent(|mut r, mut w| {
            let Some(HostMsg::Run { .. }) = proto::recv(&mut r).unwrap() else {
                panic!("no run")
            };
            let request = json!({"execute": "stop", "arguments": {}});
            let step = result(0, "host.qmp", Actual::Value(request));
            proto::send(&mut w, &AgentMsg::Step(step)).unwrap();
            // Nothing more until the host has acted.
            assert_eq!(
                proto::recv::<HostMsg, _>(&mut r).unwrap(),
                Some(HostMsg::More)
            );
            let next = result(1, "check", Actual::Value(json!(1)));
            proto::send(&mut w, &AgentMsg::Step(next)).unwrap();
            let done = ScenarioOutcome {
                name: "t".into(),
                steps_run: 2,
                passed: true,
            };
            proto::send(&mut w, &AgentMsg::Done(done)).unwrap();
        });
        let mut a = super::Agent::over_unix(ours, Duration::from_secs(10)).unwrap();
        let scenario = Scenario {
            name: "t".into(),
            steps: Vec::new(),
            keep_going: false,
        };
        let mut seen = Vec::new();
        let mut asked = Vec::new();
        let done = a
            .run_hosted(
                &scenario,
                |s| {
                    asked.push(s.actual.clone());
                    act.clone()
                },
                |s| seen.push(s.clone()),
            )
            .unwrap();
        agent.join().unwrap();
        assert_eq!(asked.len(), 1);
        (seen, done.passed)
    }

    #[test]
    fn a_host_step_runs_between_the_agents_steps() {
        let (seen, passed) = host_step_run(Ok(json!({"status": "paused"})));
        assert!(passed);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].actual, Actual::Value(json!({"status": "paused"})));
        assert!(seen[0].passed && seen[1].passed);
    }

    #[test]
    fn a_failed_host_step_fails_the_run() {
        let (seen, passed) = host_step_run(Err("QMP stop: no".into()));
        assert!(!passed);
        assert_eq!(seen[0].actual, Actual::Error("QMP stop: no".into()));
        assert!(!seen[0].passed && seen[1].passed);
    }

    #[test]
    fn a_shorter_reply_deadline_counts_silence_sooner() {
        let (ours, agent) = fake_agent(|mut r, _w| {
            // Reads the dmesg request and never answers it.
            let _ = proto::recv::<HostMsg, _>(&mut r);
            std::thread::sleep(Duration::from_millis(1500));
        });
        let mut a = super::Agent::over_unix(ours, Duration::from_secs(60)).unwrap();
        assert_eq!(a.reply_deadline(), Some(Duration::from_secs(60)));
        a.set_reply_deadline(Duration::from_millis(200)).unwrap();
        assert_eq!(a.reply_deadline(), Some(Duration::from_millis(200)));
        let t0 = std::time::Instant::now();
        let e = a.dmesg().unwrap_err();
        assert!(
            matches!(&e, super::AgentError::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "{e:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
        agent.join().unwrap();
    }

    #[test]
    fn coverage_is_turned_on_and_each_run_keeps_its_own() {
        let (ours, agent) = fake_agent(|mut r, mut w| {
            assert_eq!(
                proto::recv::<HostMsg, _>(&mut r).unwrap(),
                Some(HostMsg::Coverage { on: true })
            );
            let empty = AgentMsg::Coverage {
                pcs: Vec::new(),
                first_step: Vec::new(),
                lost: false,
                error: None,
            };
            proto::send(&mut w, &empty).unwrap();
            for pcs in [vec![7, 9], vec![]] {
                let Some(HostMsg::Run { .. }) = proto::recv(&mut r).unwrap() else {
                    panic!("no run")
                };
                if !pcs.is_empty() {
                    let cov = AgentMsg::Coverage {
                        first_step: vec![0; pcs.len()],
                        pcs,
                        lost: true,
                        error: None,
                    };
                    proto::send(&mut w, &cov).unwrap();
                }
                let done = ScenarioOutcome {
                    name: "t".into(),
                    steps_run: 0,
                    passed: true,
                };
                proto::send(&mut w, &AgentMsg::Done(done)).unwrap();
            }
        });
        let mut a = super::Agent::over_unix(ours, Duration::from_secs(10)).unwrap();
        a.set_coverage(true).unwrap();
        let scenario = Scenario {
            name: "t".into(),
            steps: Vec::new(),
            keep_going: false,
        };
        a.run(&scenario, |_| {}).unwrap();
        let c = a.take_coverage().unwrap();
        assert_eq!(
            (c.pcs, c.first_step, c.lost),
            (vec![7, 9], vec![0, 0], true)
        );
        assert!(a.take_coverage().is_none());
        // A run without coverage leaves none behind.
        a.run(&scenario, |_| {}).unwrap();
        assert!(a.take_coverage().is_none());
        agent.join().unwrap();
    }
}
