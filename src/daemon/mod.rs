//! Daemon processes, whatever they serve: starting one detached and waiting for
//! it to report readiness, the readiness line itself, its bounded log, and the
//! kernel's mount table ([`mountinfo`]). Knows nothing of FUSE.
//!
//! Protocol: the parent starts the child with stdout on a pipe and stderr on the
//! log file; the child writes exactly one line, `ready <text>` once it serves or
//! `error: <message>` if it failed first, and the parent returns that.

pub(crate) mod mountinfo;

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::store::error::{Error, IoContext, Result};

/// A log file is rotated (to `<log>.1`) when a daemon starts on it and it has
/// grown beyond this.
const LOG_ROTATE_AT: u64 = 1 << 20;
/// What one daemon may write to its log over its life; beyond it only a note.
const LOG_BUDGET: u64 = 4 << 20;

/// Start `cmd` detached (own process group, stdin closed, stderr appended to
/// `log`, rotated first if large) and wait for its readiness line. Returns the
/// text after `ready `; a child that reports an error or dies first gives
/// [`Error::MountFailed`] for `what`.
pub fn spawn_ready(mut cmd: Command, log: &Path, what: &str) -> Result<String> {
    let stderr = match rotate_and_open(log) {
        Ok(f) => Stdio::from(f),
        // No log directory (e.g. no such container): the child reports why.
        Err(_) => Stdio::null(),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .at("vzstore daemon")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out)
            .read_line(&mut line)
            .at("daemon readiness pipe")?;
    }
    if let Some(text) = line.trim_end_matches('\n').strip_prefix("ready ") {
        return Ok(text.to_string());
    }
    let _ = child.wait();
    let msg = line.trim();
    let reason = match msg.strip_prefix("error: ") {
        Some(m) => m.to_string(),
        None if msg.is_empty() => format!("the daemon exited; see {}", log.display()),
        None => msg.to_string(),
    };
    Err(Error::MountFailed {
        container: what.to_string(),
        reason,
    })
}

fn rotate_and_open(log: &Path) -> std::io::Result<fs::File> {
    if fs::metadata(log).is_ok_and(|m| m.len() > LOG_ROTATE_AT) {
        let old = log.with_extension("log.1");
        fs::rename(log, old)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
}

/// The child's side: report readiness (`Ok(text)`) or the error that stopped it,
/// as the one line the parent waits for.
pub fn report_ready(r: std::result::Result<&str, &Error>) {
    let mut out = std::io::stdout();
    let _ = match r {
        Ok(text) => writeln!(out, "ready {text}"),
        Err(e) => writeln!(out, "error: {e}"),
    };
    let _ = out.flush();
}

/// A writer for a daemon's log (its stderr) that stops after [`LOG_BUDGET`]
/// bytes, so no pattern of requests can fill the disk with warnings.
pub struct CappedLog {
    written: Mutex<u64>,
}

impl CappedLog {
    pub fn new() -> CappedLog {
        CappedLog {
            written: Mutex::new(0),
        }
    }
}

impl Default for CappedLog {
    fn default() -> Self {
        CappedLog::new()
    }
}

impl Write for CappedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if *w < LOG_BUDGET {
            *w += buf.len() as u64;
            let mut err = std::io::stderr();
            err.write_all(buf)?;
            if *w >= LOG_BUDGET {
                err.write_all(b"vzstore: log budget reached; further messages are dropped\n")?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
