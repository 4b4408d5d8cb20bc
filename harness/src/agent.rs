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
    self as proto, AgentHello, AgentMsg, HostMsg, Inventory, Scenario, ScenarioOutcome, StepResult,
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

/// A connected, greeted agent.
pub struct Agent {
    r: Box<dyn BufRead + Send>,
    w: Box<dyn Write + Send>,
    hello: AgentHello,
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
        Agent::handshake(BufReader::new(stream), w)
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

    /// Runs a scenario, calling `on_step` for each result as it arrives.
    pub fn run(
        &mut self,
        scenario: &Scenario,
        mut on_step: impl FnMut(&StepResult),
    ) -> Result<ScenarioOutcome, AgentError> {
        self.send(&HostMsg::Run {
            scenario: scenario.clone(),
        })?;
        loop {
            match self.recv()? {
                AgentMsg::Step(s) => on_step(&s),
                AgentMsg::Done(o) => return Ok(o),
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
