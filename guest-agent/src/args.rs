//! A step's arguments: `$references` to earlier results resolved against
//! the values bound so far, then read by the operations as typed values
//! (numbers, flags, text, patterns), each miss an [`OpError`] naming the key.

use std::collections::BTreeMap;

use iobench_proto::Step;
use iobench_proto::ops::{self, Pattern, Reference};
use serde_json::Value;

use crate::outcome::OpError;

/// A step's arguments with references resolved.
pub struct Args {
    map: BTreeMap<String, Value>,
}

impl Args {
    /// A step's arguments with every `$reference` replaced by what it names in `bound`.
    pub fn resolve(step: &Step, bound: &BTreeMap<String, Value>) -> Result<Args, String> {
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

    /// An optional number that must fit 32 bits.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, OpError> {
        self.opt_u64(key)?
            .map(|v| {
                u32::try_from(v).map_err(|_| OpError::Error(format!("{key} does not fit 32 bits")))
            })
            .transpose()
    }

    /// A 32-bit number with a default.
    pub fn u32_or(&self, key: &str, default: u32) -> Result<u32, OpError> {
        Ok(self.opt_u32(key)?.unwrap_or(default))
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

    /// A string with a default.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, OpError> {
        match self.opt(key) {
            None => Ok(default),
            Some(_) => self.str(key),
        }
    }

    /// A word of `table` (the first one by default), as its number.
    pub fn choice(&self, key: &str, table: &[(&str, u32)]) -> Result<u32, OpError> {
        let word = self.str_or(key, table.first().map_or("", |(w, _)| *w))?;
        table
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, n)| *n)
            .ok_or_else(|| OpError::Error(format!("{key}: unknown {word:?}")))
    }

    /// A required pattern.
    pub fn pattern(&self, key: &str) -> Result<Pattern, OpError> {
        Pattern::parse(self.str(key)?).map_err(OpError::Error)
    }
}

/// `v` with every `$reference` in it (at any depth) replaced by what it names in `bound`.
pub fn resolve_value(v: &Value, bound: &BTreeMap<String, Value>) -> Result<Value, String> {
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
