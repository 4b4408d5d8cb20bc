//! A minimal QMP client: one connection per command, raw JSON values.
//!
//! Typed QMP (the `qapi` crate) pins one QEMU schema; iobench talks to stock
//! and patched QEMUs, so it sends commands as JSON and returns `return`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Connects to `socket`, negotiates capabilities and runs `command`.
pub fn execute(
    socket: &Path,
    command: &str,
    arguments: serde_json::Value,
) -> std::io::Result<serde_json::Value> {
    let s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut next = |r: &mut BufReader<UnixStream>| -> std::io::Result<serde_json::Value> {
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "QMP closed",
                ));
            }
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(std::io::Error::other)?;
            // Skip asynchronous events.
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    };
    next(&mut r)?; // greeting
    writeln!(w, "{}", serde_json::json!({"execute": "qmp_capabilities"}))?;
    next(&mut r)?;
    writeln!(
        w,
        "{}",
        serde_json::json!({"execute": command, "arguments": arguments})
    )?;
    let reply = next(&mut r)?;
    if let Some(e) = reply.get("error") {
        return Err(std::io::Error::other(format!("QMP {command}: {e}")));
    }
    Ok(reply
        .get("return")
        .cloned()
        .unwrap_or(serde_json::Value::Null))
}
