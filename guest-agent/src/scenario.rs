//! Runs a scenario: resolves each step's `$references`, dispatches the
//! operation, compares the result with the expectation, and streams one
//! result per step.  The run stops at the first failed step (later steps
//! depend on earlier state), and everything the scenario opened is closed
//! when it ends.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use iobench_proto::ops::{self, Pattern, Reference};
use iobench_proto::{Actual, Expect, Scenario, ScenarioOutcome, Step, StepResult};
use serde_json::{Value, json};

use crate::mem::Buffer;
use crate::sys::Kmsg;

/// Why an operation did not produce a value.
#[derive(Debug)]
pub enum OpError {
    /// The kernel said no.
    Errno(i32),
    /// The agent could not run the operation as asked.
    Error(String),
}

impl From<crate::uapi::Errno> for OpError {
    fn from(e: crate::uapi::Errno) -> Self {
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

/// Something a step made that later steps refer to by handle.
pub enum Object {
    /// An open file: container, group, device, iommufd, access.
    Fd {
        /// What it is, for messages.
        kind: &'static str,
        /// The descriptor.
        fd: OwnedFd,
    },
    /// A mapped memory buffer.
    Buffer(Buffer),
}

/// State of one scenario run.
pub struct Ctx {
    objects: Vec<Option<Object>>,
    bound: BTreeMap<String, Value>,
    kmsg: Kmsg,
    /// Kernel log lines seen since the scenario began.
    pub log: Vec<String>,
}

impl Ctx {
    fn new() -> Self {
        let mut kmsg = Kmsg::new();
        kmsg.read_new(); // skip what was logged before the scenario
        Self {
            objects: Vec::new(),
            bound: BTreeMap::new(),
            kmsg,
            log: Vec::new(),
        }
    }

    /// Reads kernel log lines logged since the last call into `log`.
    pub fn refresh_log(&mut self) {
        let new = self.kmsg.read_new();
        self.log.extend(new);
    }

    /// Keeps an object; yields its handle value.
    pub fn add(&mut self, obj: Object, extra: Value) -> Value {
        let kind = match &obj {
            Object::Fd { kind, .. } => *kind,
            Object::Buffer(_) => "buffer",
        };
        self.objects.push(Some(obj));
        let mut v = json!({ "handle": self.objects.len() - 1, "kind": kind });
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    }

    fn object(&self, args: &Args, key: &str) -> Result<&Object, OpError> {
        let v = args.get(key)?;
        let h = v
            .get("handle")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("{key}: {v} is not a handle"))?;
        self.objects
            .get(h as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| OpError::Error(format!("{key}: handle {h} is closed")))
    }

    /// The file descriptor behind a handle argument.
    pub fn fd(&self, args: &Args, key: &str) -> Result<BorrowedFd<'_>, OpError> {
        match self.object(args, key)? {
            Object::Fd { fd, .. } => Ok(fd.as_fd()),
            Object::Buffer(_) => Err(OpError::Error(format!("{key} is a buffer, not a file"))),
        }
    }

    /// The buffer behind a handle argument.
    pub fn buffer(&self, args: &Args, key: &str) -> Result<&Buffer, OpError> {
        match self.object(args, key)? {
            Object::Buffer(b) => Ok(b),
            Object::Fd { kind, .. } => {
                Err(OpError::Error(format!("{key} is a {kind}, not a buffer")))
            }
        }
    }

    /// The `buffer`/`offset`/`length` triple: a sub-range of a buffer (length defaults to the rest).
    pub fn buffer_range(&self, args: &Args) -> Result<(&Buffer, u64, u64), OpError> {
        let b = self.buffer(args, "buffer")?;
        let offset = args.u64_or("offset", 0)?;
        let length = match args.opt_u64("length")? {
            Some(l) => l,
            None => (b.len() as u64)
                .checked_sub(offset)
                .ok_or("offset is past the end of the buffer")?,
        };
        if offset
            .checked_add(length)
            .is_none_or(|end| end > b.len() as u64)
        {
            return Err(OpError::Error(format!(
                "range {offset:#x}+{length:#x} is outside the {:#x}-byte buffer",
                b.len()
            )));
        }
        Ok((b, offset, length))
    }

    /// Closes a handle.
    pub fn close(&mut self, args: &Args) -> OpResult {
        let v = args.get("handle")?;
        let h = v
            .get("handle")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("handle: {v} is not a handle"))?;
        match self.objects.get_mut(h as usize).and_then(Option::take) {
            Some(_) => Ok(Value::Null),
            None => Err(OpError::Error(format!("handle {h} is already closed"))),
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // Newest first: devices before groups before containers, buffers last.
        while let Some(obj) = self.objects.pop() {
            drop(obj);
        }
    }
}

/// A step's arguments with references resolved.
pub struct Args {
    map: BTreeMap<String, Value>,
}

impl Args {
    fn resolve(step: &Step, bound: &BTreeMap<String, Value>) -> Result<Args, String> {
        let mut map = BTreeMap::new();
        for (k, v) in &step.args {
            map.insert(
                k.clone(),
                resolve_value(v, bound).map_err(|e| format!("{k}: {e}"))?,
            );
        }
        Ok(Args { map })
    }

    /// A required argument.
    pub fn get(&self, key: &str) -> Result<&Value, OpError> {
        self.map
            .get(key)
            .ok_or_else(|| OpError::Error(format!("missing argument {key}")))
    }

    /// An optional argument.
    pub fn opt(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// A required number.
    pub fn u64(&self, key: &str) -> Result<u64, OpError> {
        ops::parse_u64(self.get(key)?).map_err(|e| OpError::Error(format!("{key}: {e}")))
    }

    /// An optional number.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, OpError> {
        self.opt(key)
            .map(|v| ops::parse_u64(v).map_err(|e| OpError::Error(format!("{key}: {e}"))))
            .transpose()
    }

    /// A number with a default.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, OpError> {
        Ok(self.opt_u64(key)?.unwrap_or(default))
    }

    /// A number that must fit 32 bits.
    pub fn u32(&self, key: &str) -> Result<u32, OpError> {
        u32::try_from(self.u64(key)?)
            .map_err(|_| OpError::Error(format!("{key} does not fit 32 bits")))
    }

    /// A boolean with a default.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, OpError> {
        match self.opt(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(OpError::Error(format!(
                "{key}: expected true or false, got {v}"
            ))),
        }
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str, OpError> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| OpError::Error(format!("{key}: expected text")))
    }

    /// A required pattern.
    pub fn pattern(&self, key: &str) -> Result<Pattern, OpError> {
        Pattern::parse(self.str(key)?).map_err(OpError::Error)
    }
}

fn resolve_value(v: &Value, bound: &BTreeMap<String, Value>) -> Result<Value, String> {
    match v {
        Value::String(s) => match Reference::parse(s) {
            None => Ok(v.clone()),
            Some(r) => {
                let r = r?;
                let b = bound
                    .get(&r.name)
                    .ok_or_else(|| format!("${} was never bound", r.name))?;
                r.resolve(b)
            }
        },
        Value::Array(a) => a
            .iter()
            .map(|x| resolve_value(x, bound))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(m) => m
            .iter()
            .map(|(k, x)| resolve_value(x, bound).map(|r| (k.clone(), r)))
            .collect::<Result<_, _>>()
            .map(Value::Object),
        _ => Ok(v.clone()),
    }
}

/// Runs a scenario, passing each step's result to `emit` as it finishes.
pub fn run(
    scenario: &Scenario,
    mut emit: impl FnMut(&StepResult) -> Result<(), String>,
) -> Result<ScenarioOutcome, String> {
    let mut ctx = Ctx::new();
    let mut passed = true;
    let mut steps_run = 0;
    for (index, step) in scenario.steps.iter().enumerate() {
        let start = Instant::now();
        let mut outcome = match Args::resolve(step, &ctx.bound) {
            Ok(args) => crate::ops::dispatch(&mut ctx, &step.op, &args),
            Err(e) => Err(OpError::Error(e)),
        };
        let micros = start.elapsed().as_micros() as u64;
        // An expected value may refer to earlier results too (`value = "$hwpt"`).
        let expected = match &step.expect {
            Expect::Value(v) => match resolve_value(v, &ctx.bound) {
                Ok(r) => Expect::Value(r),
                Err(e) => {
                    outcome = Err(OpError::Error(format!("expect: {e}")));
                    step.expect.clone()
                }
            },
            other => other.clone(),
        };
        let actual = match outcome {
            Ok(v) => Actual::Value(v),
            Err(OpError::Errno(code)) => Actual::Errno {
                name: ops::errno_name(code),
                code,
            },
            Err(OpError::Error(e)) => Actual::Error(e),
        };
        let ok = ops::satisfies(&expected, &actual);
        if let (Some(name), Actual::Value(v)) = (&step.bind, &actual) {
            ctx.bound.insert(name.clone(), v.clone());
        }
        steps_run += 1;
        emit(&StepResult {
            index,
            op: step.op.clone(),
            expected,
            actual,
            passed: ok,
            micros,
        })?;
        if !ok {
            passed = false;
            break;
        }
    }
    Ok(ScenarioOutcome {
        name: scenario.name.clone(),
        steps_run,
        passed: passed && steps_run == scenario.steps.len(),
    })
}
