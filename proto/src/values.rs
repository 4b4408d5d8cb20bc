//! What the values in a scenario step mean, the same on both sides: numbers
//! written as `0x…`, `64K` or `max`, byte patterns (`byte:N`, `seq:N`),
//! references to earlier steps' values (`$win.start_addr+0x10000`), errno
//! names, and the rule that decides whether a result meets an expectation
//! ([`satisfies`]).  The host uses them to check literals before anything
//! boots, the agent to resolve arguments and judge results.

use serde_json::Value;

use crate::{Actual, Expect};

/// Parses an unsigned number: JSON integer, `"0x…"`, decimal text, `"64K"`/`"2M"`/`"1G"`/`"1T"`, or `"max"`.
pub fn parse_u64(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} is not an unsigned 64-bit number")),
        Value::String(s) => parse_u64_text(s),
        other => Err(format!("expected a number, got {other}")),
    }
}

fn parse_u64_text(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    if t == "max" {
        return Ok(u64::MAX);
    }
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).map_err(|e| format!("{s:?}: {e}"));
    }
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (&t[..], 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a number (use 4096, \"0x1000\", \"4K\" or \"max\")"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} overflows 64 bits"))
}

/// A byte pattern for filling and checking buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Every byte the same.
    Byte(u8),
    /// A position-dependent sequence from a seed, so shifted or stale data is caught.
    Seq(u64),
}

impl Pattern {
    /// Parses `"byte:N"` or `"seq:N"`.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let bad = || format!("{s:?} is not a pattern (\"byte:0x5a\" or \"seq:7\")");
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let n = parse_u64_text(n).map_err(|_| bad())?;
        match kind {
            "byte" => u8::try_from(n).map(Pattern::Byte).map_err(|_| bad()),
            "seq" => Ok(Pattern::Seq(n)),
            _ => Err(bad()),
        }
    }

    /// The byte at absolute position `i` of a buffer.
    pub fn byte_at(self, i: u64) -> u8 {
        match self {
            Pattern::Byte(b) => b,
            Pattern::Seq(seed) => {
                let x = (i ^ seed.rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                (x >> 56) as u8 ^ (i as u8)
            }
        }
    }
}

/// A `$name.field.sub+offset` reference to an earlier step's bound value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The bound name.
    pub name: String,
    /// Object fields to descend into.
    pub path: Vec<String>,
    /// Added to the (numeric) value; may be negative.
    pub offset: i128,
}

impl Reference {
    /// Parses a string argument: `None` if it is not a reference (no leading `$`).
    pub fn parse(s: &str) -> Option<Result<Reference, String>> {
        let body = s.strip_prefix('$')?;
        Some(Self::parse_body(body).map_err(|e| format!("bad reference {s:?}: {e}")))
    }

    fn parse_body(body: &str) -> Result<Reference, String> {
        let split = body.find(['+', '-']).unwrap_or(body.len());
        let (head, tail) = body.split_at(split);
        let mut parts = head.split('.');
        let name = parts.next().unwrap_or_default().to_string();
        let ident =
            |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident(&name) {
            return Err("expected $name, $name.field or $name+number".into());
        }
        let path: Vec<String> = parts.map(str::to_string).collect();
        if !path.iter().all(|p| ident(p)) {
            return Err("empty or invalid field name".into());
        }
        let offset = if tail.is_empty() {
            0
        } else {
            let n = parse_u64_text(&tail[1..])? as i128;
            if tail.starts_with('-') { -n } else { n }
        };
        Ok(Reference { name, path, offset })
    }

    /// Resolves against a bound value.
    pub fn resolve(&self, bound: &Value) -> Result<Value, String> {
        let mut v = bound;
        for p in &self.path {
            v = v
                .get(p)
                .ok_or_else(|| format!("${} has no field {p:?} (value: {bound})", self.name))?;
        }
        if self.offset == 0 {
            return Ok(v.clone());
        }
        let base = parse_u64(v).map_err(|e| format!("${}: {e}", self.name))? as i128;
        u64::try_from(base + self.offset)
            .map(Value::from)
            .map_err(|_| format!("${}{:+} leaves the 64-bit range", self.name, self.offset))
    }
}

/// Linux errno names the scenarios may expect (same numbers on x86_64 and ppc64le).
pub const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", 1),
    ("ENOENT", 2),
    ("ESRCH", 3),
    ("EINTR", 4),
    ("EIO", 5),
    ("ENXIO", 6),
    ("E2BIG", 7),
    ("ENOEXEC", 8),
    ("EBADF", 9),
    ("ECHILD", 10),
    ("EAGAIN", 11),
    ("ENOMEM", 12),
    ("EACCES", 13),
    ("EFAULT", 14),
    ("EBUSY", 16),
    ("EEXIST", 17),
    ("EXDEV", 18),
    ("ENODEV", 19),
    ("ENOTDIR", 20),
    ("EISDIR", 21),
    ("EINVAL", 22),
    ("ENFILE", 23),
    ("EMFILE", 24),
    ("ENOTTY", 25),
    ("EFBIG", 27),
    ("ENOSPC", 28),
    ("ESPIPE", 29),
    ("EROFS", 30),
    ("ERANGE", 34),
    ("EDEADLK", 35),
    ("ENOSYS", 38),
    ("EBADE", 52),
    ("ENODATA", 61),
    ("ETIME", 62),
    ("EOVERFLOW", 75),
    ("EBADFD", 77),
    ("EMSGSIZE", 90),
    ("EOPNOTSUPP", 95),
    ("EADDRINUSE", 98),
    ("EADDRNOTAVAIL", 99),
    ("ETIMEDOUT", 110),
    ("EALREADY", 114),
    ("EINPROGRESS", 115),
];

/// The symbolic name of an errno number (`"E<n>"` if unknown).
pub fn errno_name(code: i32) -> String {
    ERRNOS
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| format!("E{code}"))
}

/// The number of an errno name.
pub fn errno_code(name: &str) -> Option<i32> {
    ERRNOS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// Whether an actual value matches an expected one.
///
/// Objects match if every expected key matches (extra actual keys are
/// allowed), arrays element by element, and numbers by value even when the
/// expectation writes them as text (`"0x800000000000000"`, `"1G"`).
pub fn value_matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| value_matches(ev, av))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| value_matches(ev, av))
        }
        (Value::String(_) | Value::Number(_), Value::Number(_)) => {
            matches!((parse_u64(expected), parse_u64(actual)), (Ok(x), Ok(y)) if x == y)
                || expected == actual
        }
        _ => expected == actual,
    }
}

/// Whether a step's actual result satisfies its expectation.
pub fn satisfies(expect: &Expect, actual: &Actual) -> bool {
    match (expect, actual) {
        (Expect::Any, Actual::Value(_) | Actual::Errno { .. }) => true,
        (Expect::Ok, Actual::Value(_)) => true,
        (Expect::Errno(want), Actual::Errno { name, .. }) => want == name,
        (Expect::Value(want), Actual::Value(got)) => value_matches(want, got),
        _ => false,
    }
}
