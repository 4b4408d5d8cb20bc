//! Host steps (`host.*`): what the host does between two of the agent's
//! steps, in the same run, so a scenario can freeze a PE from outside the
//! guest in the middle of what the guest does.  The agent's part is to
//! resolve the step's arguments (`$references` included) and yield them as
//! the request; the session then sends the step's result and waits for the
//! host's go-ahead (`iobench_proto::ops::is_host_step`), and the host
//! replaces the result with what its action gave.

use serde_json::json;

use crate::args::Args;
use crate::ctx::Ctx;
use crate::outcome::OpResult;

/// `host.qmp`: the QMP command and its arguments, for the host to run.
pub fn qmp(_ctx: &mut Ctx, args: &Args) -> OpResult {
    let execute = args.str("execute")?;
    let arguments = args.opt("arguments").cloned().unwrap_or(json!({}));
    if !arguments.is_object() {
        return Err(format!("arguments: {arguments} is not an object").into());
    }
    Ok(json!({ "execute": execute, "arguments": arguments }))
}
