//! The state of one scenario run that operations work on: the objects
//! steps made (open files, memory buffers), each known to later steps by a
//! handle, closed newest first when the run ends; the kernel log lines
//! seen since the run began; and, on a lab target, the [`Guard`] every
//! operation that takes a device or writes a file asks first.

use std::collections::BTreeMap;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde_json::{Value, json};

use crate::args::Args;
use crate::guard::Guard;
use crate::mem::Buffer;
use crate::outcome::{OpError, OpResult};
use crate::sys::Kmsg;

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
    kmsg: Kmsg,
    /// Kernel log lines seen since the scenario began.
    pub log: Vec<String>,
    /// The target's policy (none in a QEMU guest: everything is allowed).
    pub guard: Option<Guard>,
    /// The PCI function behind each device handle.
    owners: BTreeMap<usize, String>,
}

impl Ctx {
    /// An empty run under `guard` (if any); the kernel log starts now.
    pub fn new(guard: Option<Guard>) -> Self {
        let mut kmsg = Kmsg::new();
        kmsg.read_new(); // skip what was logged before the scenario
        Self {
            objects: Vec::new(),
            kmsg,
            log: Vec::new(),
            guard,
            owners: BTreeMap::new(),
        }
    }

    /// Under a policy, whether `f` may be taken (bound, opened, reset).
    pub fn may_take(&self, f: &iobench_proto::PciDevice) -> Result<(), OpError> {
        match &self.guard {
            Some(g) => g.device(f).map_err(OpError::Error),
            None => Ok(()),
        }
    }

    /// Keeps a device's file, remembering which function it is.
    pub fn add_device(&mut self, fd: OwnedFd, bdf: &str, extra: Value) -> Value {
        let v = self.add(Object::Fd { kind: "device", fd }, extra);
        self.owners.insert(self.objects.len() - 1, bdf.to_string());
        v
    }

    /// The PCI function behind a device handle argument.
    pub fn device_bdf(&self, args: &Args, key: &str) -> Option<&str> {
        let h = args.get(key).ok()?.get("handle")?.as_u64()?;
        self.owners.get(&(h as usize)).map(String::as_str)
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
