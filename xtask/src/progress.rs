//! Progress of the long steps (kernel and QEMU builds, downloads): on a
//! terminal a spinner with the elapsed time, the output lines so far and the
//! last one; in a log (CI, a pipe) one line per stage, with its time, when it
//! ends.  [`Stage::run`] runs a stage's command with its output going to a
//! log file (or, without one, kept for the error), and a failure quotes the
//! output's tail; [`run`] is a stage of one command.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

/// How many output lines a failure quotes.
const TAIL: usize = 25;

/// One stage, e.g. `qemu: configure`: a spinner while it runs on a
/// terminal, and a line with its time when it ends ([`Stage::done`]); a
/// stage dropped unfinished (its error says why) just takes its spinner.
pub struct Stage {
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Stage {
    /// Starts the stage `name`.
    pub fn start(name: impl Into<String>) -> Stage {
        let name = name.into();
        // indicatif draws on stderr; a terminal there gets the spinner.
        let bar = std::io::stderr().is_terminal().then(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"),
            );
            pb.set_message(name.clone());
            pb.enable_steady_tick(Duration::from_millis(200));
            pb
        });
        Stage {
            name,
            started: Instant::now(),
            bar,
        }
    }

    /// Shows what the stage is doing now (terminal only).
    pub fn message(&self, what: &str) {
        if let Some(pb) = &self.bar {
            pb.set_message(format!("{}: {what}", self.name));
        }
    }

    /// Runs `cmd` as part of the stage: stdout and stderr are appended to
    /// `log` (if given) and counted on the spinner; a failure names the
    /// command and the log, and quotes the output's last lines.
    pub fn run(&self, cmd: impl Into<Command>, log: Option<&Path>) -> Result<()> {
        run_in(self, &mut cmd.into(), log)
    }

    /// Ends the stage: its line, with the time it took.
    pub fn done(self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
        println!("{} ({})", self.name, seconds(self.started.elapsed()));
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}

/// `12 s`, `3.4 s`, `0.25 s`: enough digits to read.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

/// Runs `cmd` as the stage `name` (see [`Stage::run`]).
pub fn run(name: impl Into<String>, cmd: impl Into<Command>, log: Option<&Path>) -> Result<()> {
    let stage = Stage::start(name);
    stage.run(cmd, log)?;
    stage.done();
    Ok(())
}

fn run_in(stage: &Stage, cmd: &mut Command, log: Option<&Path>) -> Result<()> {
    let what = describe(cmd);
    let mut logf = match log {
        Some(p) => {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?;
            writeln!(f, "$ {what}")?;
            Some(f)
        }
        None => None,
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).split(b'\n').map_while(Result::ok) {
                if tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    let mut tail = std::collections::VecDeque::with_capacity(TAIL);
    let mut n = 0u64;
    for line in rx {
        if let Some(f) = logf.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        n += 1;
        stage.message(&format!("{n} lines, {}", line.trim()));
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    if status.success() {
        return Ok(());
    }
    let quoted: Vec<String> = tail.iter().map(|l| format!("  | {l}")).collect();
    let log_note = log
        .map(|p| format!("; full log: {}", p.display()))
        .unwrap_or_default();
    bail!("{what} failed ({status}){log_note}\n{}", quoted.join("\n"))
}

/// The command as people would type it (program and arguments).
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn output_goes_to_the_log_and_a_failure_quotes_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        run("test: ok", sh("echo one; echo two >&2"), Some(&log)).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("$ sh -c"), "{text}");
        assert!(text.contains("one\n") && text.contains("two\n"), "{text}");
        let e = run("test: fails", sh("seq 1 40; exit 3"), Some(&log))
            .unwrap_err()
            .to_string();
        assert!(e.contains("failed (exit status: 3)"), "{e}");
        assert!(e.contains(&format!("full log: {}", log.display())), "{e}");
        assert!(e.contains("  | 40") && e.contains("  | 16") && !e.contains("  | 15\n"));
        let e = run("test: no log", sh("echo why >&2; false"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("  | why") && !e.contains("full log"), "{e}");
    }

    #[test]
    fn times_read_well() {
        assert_eq!(seconds(Duration::from_millis(250)), "0.25 s");
        assert_eq!(seconds(Duration::from_millis(3400)), "3.4 s");
        assert_eq!(seconds(Duration::from_secs(754)), "754 s");
    }
}
