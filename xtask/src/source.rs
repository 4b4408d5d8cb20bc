//! The identity of a source tree (a kernel's `--src`, QEMU's `--src`) for
//! cache keys: what changes when the tree does.

use std::path::Path;

use anyhow::Result;
use xshell::{Shell, cmd};

use crate::cache::key;

/// The identity of a source tree for cache keys: a git tree is HEAD plus a
/// hash of its diff; anything else is its path and the time (never a hit).
pub fn tree_identity(d: &Path) -> Result<String> {
    let sh = Shell::new()?;
    let _cd = sh.push_dir(d);
    Ok(
        match cmd!(sh, "git rev-parse HEAD")
            .quiet()
            .ignore_stderr()
            .read()
        {
            Ok(head) => {
                let diff = cmd!(sh, "git diff HEAD")
                    .quiet()
                    .ignore_stderr()
                    .read()
                    .unwrap_or_default();
                format!("git:{}:{head}:{}", d.display(), key(&[diff.as_bytes()]))
            }
            Err(_) => format!(
                "dir:{}:{}",
                d.display(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|t| t.as_secs())
                    .unwrap_or(0)
            ),
        },
    )
}
