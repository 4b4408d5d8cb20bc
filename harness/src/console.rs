//! The guest console: always captured to a log file, scanned for trouble.
//!
//! A reader thread copies everything QEMU prints for the guest console to
//! `console.log` (optionally echoing it to the terminal), keeps the last
//! lines for failure reports, and recognises fatal kernel events — panic,
//! Oops, BUG — and the init script's own `iobench:` status lines.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Lines kept in memory for reports.
const TAIL: usize = 200;

/// Console patterns that mean the kernel is dead or dying.
const FATAL: &[(&str, &str)] = &[
    ("Kernel panic - not syncing", "kernel panic"),
    ("Oops: ", "kernel Oops"),
    ("Oops[", "kernel Oops"),
    ("kernel BUG at", "kernel BUG"),
    ("BUG: ", "kernel BUG"),
    ("Unable to handle kernel", "kernel Oops"),
];

/// A fatal event seen on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    /// What kind: `kernel panic`, `kernel Oops`, `kernel BUG`.
    pub kind: &'static str,
    /// The console line that showed it.
    pub line: String,
}

#[derive(Debug, Default)]
struct State {
    tail: VecDeque<String>,
    partial: String,
    fatal: Option<Fatal>,
    first_output: Option<Instant>,
    agent_exit: Option<String>,
    eof: bool,
}

/// A console being captured.
#[derive(Debug)]
pub struct Console {
    state: Arc<Mutex<State>>,
    log: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Console {
    /// Starts capturing `reader` into `log`; with `echo`, also to stdout.
    pub fn capture<R: Read + Send + 'static>(
        mut reader: R,
        log: &Path,
        echo: bool,
    ) -> std::io::Result<Console> {
        let mut file = File::create(log)?;
        let state = Arc::new(Mutex::new(State::default()));
        let st = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let _ = file.write_all(&buf[..n]);
                    if echo {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                    let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                    s.first_output.get_or_insert_with(Instant::now);
                    s.partial.push_str(&String::from_utf8_lossy(&buf[..n]));
                    while let Some(i) = s.partial.find('\n') {
                        let line: String = s.partial.drain(..=i).collect();
                        let line = line.trim_end_matches(['\r', '\n']).to_string();
                        s.scan(&line);
                        if s.tail.len() == TAIL {
                            s.tail.pop_front();
                        }
                        s.tail.push_back(line);
                    }
                }
                let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                let rest = std::mem::take(&mut s.partial);
                if !rest.is_empty() {
                    s.scan(&rest);
                    s.tail.push_back(rest);
                }
                s.eof = true;
            })?;
        Ok(Console {
            state,
            log: log.to_owned(),
            thread: Some(thread),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The first fatal kernel event, if any.
    pub fn fatal(&self) -> Option<Fatal> {
        self.with(|s| s.fatal.clone())
    }

    /// When the guest printed its first byte.
    pub fn first_output(&self) -> Option<Instant> {
        self.with(|s| s.first_output)
    }

    /// The init script's report that the agent exited, if it did.
    pub fn agent_exit(&self) -> Option<String> {
        self.with(|s| s.agent_exit.clone())
    }

    /// True once QEMU closed the console.
    pub fn eof(&self) -> bool {
        self.with(|s| s.eof)
    }

    /// The last `n` lines (including an unfinished one).
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        self.with(|s| {
            let mut v: Vec<String> = s.tail.iter().rev().take(n).rev().cloned().collect();
            if !s.partial.is_empty() {
                v.push(s.partial.clone());
            }
            v
        })
    }

    /// Waits (briefly) for the reader to drain after QEMU exited.
    pub fn finish(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl State {
    fn scan(&mut self, line: &str) {
        if self.fatal.is_none()
            && let Some((_, kind)) = FATAL.iter().find(|(pat, _)| line.contains(pat))
        {
            self.fatal = Some(Fatal {
                kind,
                line: line.trim().to_string(),
            });
        }
        if let Some(rest) = line.split("iobench: agent exited").nth(1) {
            self.agent_exit = Some(rest.trim().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console that has read all of `text`, logging into `dir`.
    fn captured(text: &str, dir: &tempfile::TempDir) -> Console {
        let mut c = Console::capture(
            std::io::Cursor::new(text.as_bytes().to_vec()),
            &dir.path().join("c.log"),
            false,
        )
        .unwrap();
        c.finish();
        c
    }

    #[test]
    fn captures_and_recognises_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[    0.1] booting\r\n[    1.2] Kernel panic - not syncing: Attempted to kill init!\r\n[    1.3] ---[ end Kernel panic";
        let c = captured(text, &dir);
        let f = c.fatal().unwrap();
        assert_eq!(f.kind, "kernel panic");
        assert!(f.line.contains("Attempted to kill init"));
        assert_eq!(c.last_lines(2).len(), 2);
        assert!(c.eof());
        assert_eq!(std::fs::read_to_string(c.log_path()).unwrap(), text);
    }

    #[test]
    fn reports_agent_exit_and_ignores_harmless_lines() {
        let dir = tempfile::tempdir().unwrap();
        let text = "EEH: No capable adapters found: recovery disabled.\niobench: agent exited with status 101\n";
        let c = captured(text, &dir);
        assert_eq!(c.fatal(), None);
        assert_eq!(c.agent_exit().as_deref(), Some("with status 101"));
    }
}
