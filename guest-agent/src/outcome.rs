//! What an operation yields: a JSON value, or an [`OpError`] — the kernel's
//! errno (which a scenario may expect) or the agent's own complaint that it
//! could not run the operation as asked (never expected; always a failure).

use serde_json::Value;

use crate::uapi::Errno;

/// Why an operation did not produce a value.
#[derive(Debug)]
pub enum OpError {
    /// The kernel said no.
    Errno(i32),
    /// The agent could not run the operation as asked.
    Error(String),
}

impl From<Errno> for OpError {
    fn from(e: Errno) -> Self {
        OpError::Errno(e.0)
    }
}

impl From<String> for OpError {
    fn from(e: String) -> Self {
        OpError::Error(e)
    }
}

impl From<&str> for OpError {
    fn from(e: &str) -> Self {
        OpError::Error(e.to_string())
    }
}

/// The result of one operation.
pub type OpResult = Result<Value, OpError>;
