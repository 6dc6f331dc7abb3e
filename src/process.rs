//! The one place that starts child processes (docker and the syncer script).
//! Each child runs in its own process group with stdin closed; stdout and
//! stderr are drained on their own threads so a full pipe never blocks it,
//! each line is handed to the caller as it arrives, and a child that runs past
//! its time limit is killed together with everything it started.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long to wait for the pipes to close after the child was killed, in
/// case a process escaped its group and holds them open.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A command to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program: a name looked up on `PATH`, or a path.
    pub program: OsString,
    /// Its arguments. Never put a secret here: `ps` shows them.
    pub args: Vec<OsString>,
    /// How long it may run before it and its process group are killed.
    pub timeout: Duration,
}

impl Spec {
    /// A spec for `program` with `args` and `timeout`.
    pub fn new<I, S>(program: impl Into<OsString>, args: I, timeout: Duration) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Spec {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            timeout,
        }
    }
}

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A child that ran to its end.
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Finished {
    /// `exit status: N` or `killed by signal N`, for messages.
    pub fn describe_status(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => self.status.to_string(),
        }
    }
}

/// Why a child did not run to its end.
#[derive(Debug)]
pub enum Failure {
    /// The program does not exist.
    NotFound,
    /// It could not be started for another reason (permissions, exec format).
    Spawn(io::Error),
    /// It ran past its time limit; it and its process group were killed.
    TimedOut,
}

enum Event {
    Line(Stream, String),
    Eof,
    Exit(io::Result<ExitStatus>),
}

/// Runs `spec` to its end, calling `on_line` with each line of output (without
/// its line ending) as it arrives, and returns everything it wrote.
pub fn run(spec: &Spec, on_line: &mut dyn FnMut(Stream, &str)) -> Result<Finished, Failure> {
    let mut child = Command::new(&spec.program)
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Failure::NotFound,
            _ => Failure::Spawn(e),
        })?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        drain(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        drain(err, Stream::Stderr, tx.clone());
    }
    thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(Event::Exit(status));
    });

    let mut deadline = Instant::now() + spec.timeout;
    let mut killed = false;
    let mut open_streams = 2;
    let mut status = None;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while open_streams > 0 || status.is_none() {
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Event::Line(stream, line)) => {
                on_line(stream, &line);
                let buf = match stream {
                    Stream::Stdout => &mut stdout,
                    Stream::Stderr => &mut stderr,
                };
                buf.push_str(&line);
                buf.push('\n');
            }
            Ok(Event::Eof) => open_streams -= 1,
            Ok(Event::Exit(result)) => {
                status = Some(result.map_err(Failure::Spawn)?);
            }
            Err(RecvTimeoutError::Timeout) if !killed => {
                kill_group(pid);
                killed = true;
                deadline = Instant::now() + KILL_GRACE;
            }
            Err(_) => break,
        }
    }
    if killed {
        return Err(Failure::TimedOut);
    }
    match status {
        Some(status) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        None => Err(Failure::TimedOut),
    }
}

fn drain(pipe: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<Event>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let line = text.trim_end_matches(['\n', '\r']).to_string();
                    if tx.send(Event::Line(stream, line)).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Event::Eof);
    });
}

/// Sends SIGKILL to the process group led by `pid`.
#[allow(unsafe_code)]
fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and has no memory effects; a
    // negative pid addresses the process group the child leads (it was
    // started with process_group(0), so its pgid is its pid).
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Result<Finished, Failure> {
        run(
            &Spec::new("/bin/sh", ["-c", script], timeout),
            &mut |_, _| {},
        )
    }

    #[test]
    fn captures_both_streams_and_status() {
        let mut seen = Vec::new();
        let spec = Spec::new(
            "/bin/sh",
            ["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(10),
        );
        let done = run(&spec, &mut |s, l| seen.push((s, l.to_string()))).unwrap();
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.stderr, "err\n");
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.describe_status(), "exit status 3");
        assert!(seen.contains(&(Stream::Stdout, "out".to_string())));
        assert!(seen.contains(&(Stream::Stderr, "err".to_string())));
    }

    #[test]
    fn missing_program_is_not_found() {
        let spec = Spec::new(
            "/nonexistent/picture-book-test",
            Vec::<String>::new(),
            Duration::from_secs(1),
        );
        assert!(matches!(run(&spec, &mut |_, _| {}), Err(Failure::NotFound)));
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let started = Instant::now();
        let result = sh(
            "sleep 300 & sleep 300; echo never",
            Duration::from_millis(300),
        );
        assert!(matches!(result, Err(Failure::TimedOut)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_background_child_holding_the_pipe_is_killed_at_the_deadline() {
        let started = Instant::now();
        let result = sh("sleep 300 & echo listed", Duration::from_millis(500));
        assert!(matches!(result, Err(Failure::TimedOut)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn large_output_does_not_deadlock() {
        let done = sh(
            "head -c 1000000 /dev/zero | tr '\\0' 'x'; echo; head -c 300000 /dev/zero >&2",
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(done.stdout.len(), 1_000_001);
        assert!(done.status.success());
    }
}
