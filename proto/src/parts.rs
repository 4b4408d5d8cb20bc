//! Long agent messages in parts, each sent only when the host asks.
//!
//! A step result can be large (a selftest's whole output is up to 768 KiB).
//! Written in one go, such a message can outrun the host: the vsock device
//! (`vhost-device-vsock` 0.3.0) buffers what the host's socket does not take
//! at once, and that buffer is not always flushed again, so the message
//! stalls or loses its head in transit.  Messages up to [`PART`] bytes stay
//! as they are.  Longer ones go as [`AgentMsg::Part`]s of at most `PART`
//! bytes of the message's JSON line, and the agent sends the next part only
//! after the host answered [`crate::HostMsg::More`].  So no more than one
//! part is ever in flight, whatever the channel.

use crate::{AgentMsg, DecodeError};

/// The longest message sent whole, and the most JSON text a part carries.
pub const PART: usize = 16 * 1024;

/// `line` (an encoded message, with its newline) as parts, or None when it
/// is short enough to go whole.  Parts split at character boundaries.
pub fn split(line: &[u8]) -> Option<Vec<AgentMsg>> {
    if line.len() <= PART {
        return None;
    }
    let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
    let mut parts = Vec::new();
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let mut end = rest.len().min(PART);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (data, tail) = rest.split_at(end);
        parts.push(AgentMsg::Part {
            data: data.to_string(),
            last: tail.is_empty(),
        });
        rest = tail;
    }
    Some(parts)
}

/// Collects parts on the host until the last one.
#[derive(Debug, Default)]
pub struct Assembler {
    text: String,
}

impl Assembler {
    /// Adds a part; with the last one, the message they make.
    pub fn push(&mut self, data: &str, last: bool) -> Option<Result<AgentMsg, DecodeError>> {
        self.text.push_str(data);
        if !last {
            return None;
        }
        let text = std::mem::take(&mut self.text);
        Some(
            crate::decode::<AgentMsg>(text.as_bytes()).and_then(|m| match m {
                AgentMsg::Part { .. } => Err(DecodeError::Malformed {
                    reason: "a part inside parts".into(),
                    line: String::new(),
                }),
                m => Ok(m),
            }),
        )
    }
}
