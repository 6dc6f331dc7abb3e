//! The one place that starts child processes (docker, the syncer script,
//! docker credential helpers). Each child runs in its own process group
//! with stdin closed or given a few bytes (a helper's request); stdout and
//! stderr are drained on their own threads so a full pipe never blocks it,
//! each line is handed to the caller as it arrives, and a child that runs past
//! its time limit is killed together with everything it started: its
//! process group, whatever holds its output, and (when its spec asks) every
//! process that carries its mark (see `descendants`). A child is also
//! killed by the kernel if picture-book itself dies (SIGKILL).

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::descendants::{self, Marks};
use crate::mutex::lock;

/// How long a child may take to exit after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the pipes to close after SIGKILL, in case a process
/// escaped its group and holds them open.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long output may keep flowing after the child itself exited, before
/// the background processes it left holding its pipes are killed.
const LINGER: Duration = Duration::from_secs(2);
/// How many times at most processes carrying a child's marks are looked for
/// again after SIGKILL (the killed are gone from the next look).
const SWEEPS: usize = 100;
/// How often a running child checks whether it was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(200);
/// How long a child may go on after a cancellation before it is terminated.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How much of each of its outputs a child may write unless its [`Spec`]
/// says otherwise: everything read is kept in memory.
pub const DEFAULT_MAX_OUTPUT: usize = 64 << 20;

/// A request, shared by every child a command starts, to stop early: each
/// running child is terminated once `grace` has passed since the request
/// (a second request makes it immediate). Children started after the
/// request are refused.
#[derive(Debug)]
pub struct Cancel {
    since: Mutex<Option<Instant>>,
    grace: Duration,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new(SHUTDOWN_GRACE)
    }
}

impl Cancel {
    /// A cancellation that lets children run on for `grace`.
    pub fn new(grace: Duration) -> Cancel {
        Cancel {
            since: Mutex::new(None),
            grace,
        }
    }

    /// Requests the stop; a second call terminates running children at once.
    pub fn cancel(&self) {
        let mut since = lock(&self.since);
        let now = Instant::now();
        *since = Some(match *since {
            None => now,
            Some(_) => now.checked_sub(self.grace).unwrap_or(now),
        });
    }

    /// True once a stop was requested.
    pub fn is_cancelled(&self) -> bool {
        lock(&self.since).is_some()
    }

    /// When a running child must be terminated, once a stop was requested:
    /// after `grace` when given (the child's own), else after the
    /// cancellation's grace.
    fn deadline(&self, grace: Option<Duration>) -> Option<Instant> {
        let since = *lock(&self.since);
        since.map(|s| s + grace.unwrap_or(self.grace))
    }
}

/// A command to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program: a name looked up on `PATH`, or a path.
    pub program: OsString,
    /// Its arguments. Never put a secret here: `ps` shows them.
    pub args: Vec<OsString>,
    /// How long it may run before it and its process group are killed.
    pub timeout: Duration,
    /// How many bytes it may write to stdout, and to stderr, before it and
    /// its process group are terminated.
    pub max_output: usize,
    /// What it reads on its standard input (closed when None).
    pub input: Option<Vec<u8>>,
    /// Environment variables it does not get.
    pub env_remove: Vec<&'static str>,
    /// Environment variables it gets, on top of picture-book's own. Never
    /// put a secret here: `/proc/PID/environ` shows them.
    pub env: Vec<(&'static str, OsString)>,
    /// How long it may go on after a [`Cancel`] (None: the cancellation's
    /// own grace); zero for a child whose work is thrown away on a stop.
    pub cancel_grace: Option<Duration>,
    /// Whether the processes it started that are still there when it ends
    /// are killed, also those that left its process group (see
    /// [`descendants`]).
    pub end_descendants: bool,
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
            max_output: DEFAULT_MAX_OUTPUT,
            input: None,
            env_remove: Vec::new(),
            env: Vec::new(),
            cancel_grace: None,
            end_descendants: false,
        }
    }

    /// The same spec, without the environment variable `name`.
    pub fn without_env(mut self, name: &'static str) -> Spec {
        self.env_remove.push(name);
        self
    }

    /// The same spec, with the environment variable `name` set to `value`.
    pub fn with_env(mut self, name: &'static str, value: impl Into<OsString>) -> Spec {
        self.env.push((name, value.into()));
        self
    }

    /// The same spec, given `bytes` on its standard input.
    pub fn input(mut self, bytes: impl Into<Vec<u8>>) -> Spec {
        self.input = Some(bytes.into());
        self
    }

    /// The same spec, terminated `grace` after a cancellation rather than
    /// after the cancellation's own grace.
    pub fn cancel_grace(mut self, grace: Duration) -> Spec {
        self.cancel_grace = Some(grace);
        self
    }

    /// The same spec, marked in its environment ([`descendants::MARK_VARIABLE`])
    /// so that every process it started that is still there when it ends,
    /// also one that left its process group, is killed then.
    pub fn ending_descendants(mut self) -> Spec {
        self.end_descendants = true;
        self
    }

    /// The same spec with another output limit.
    pub fn max_output(mut self, bytes: usize) -> Spec {
        self.max_output = bytes;
        self
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
    /// It was terminated, with its process group, because of a [`Cancel`].
    Cancelled,
    /// It wrote more than [`Spec::max_output`] bytes to this stream; the rest
    /// was not read and it was terminated with its process group.
    TooMuchOutput(Stream),
}

enum Event {
    Line(Stream, String),
    /// The stream went past the limit; nothing more is read from it.
    Overflow(Stream),
    Eof,
    Exit(io::Result<ExitStatus>),
}

/// Where a child is on its way out.
enum Ending {
    /// Running normally.
    No,
    /// SIGTERM sent to its group at this instant.
    Terminated(Instant, Failure),
    /// SIGKILL sent to its group at this instant.
    Killed(Instant, Failure),
}

impl Ending {
    /// When to look again at `now`, for a child whose limit (time limit,
    /// cancellation, lingering output) is `limit` as long as it runs.
    fn wake(&self, now: Instant, limit: Instant) -> Instant {
        match self {
            Ending::No => limit.min(now + CANCEL_POLL),
            Ending::Terminated(at, _) => *at + TERM_GRACE,
            Ending::Killed(at, _) => *at + KILL_GRACE,
        }
    }
}

/// Runs `spec` to its end, calling `on_line` with each line of output (without
/// its line ending) as it arrives, and returns everything it wrote. A child
/// that runs past its time limit, or past `cancel`'s grace, gets SIGTERM, and
/// SIGKILL if it is still there after a few seconds, with its process group
/// and whatever holds its output; so does one that writes more than its
/// output limit. With [`Spec::ending_descendants`], whatever it started that
/// is still there when it ends is killed too.
pub fn run(
    spec: &Spec,
    cancel: &Cancel,
    on_line: &mut dyn FnMut(Stream, &str),
) -> Result<Finished, Failure> {
    let cancelled_at = || cancel.deadline(spec.cancel_grace);
    if cancelled_at().is_some_and(|d| d <= Instant::now()) {
        return Err(Failure::Cancelled);
    }
    let (child, rx) = start(spec)?;
    let started = Instant::now();
    let timeout_at = started
        .checked_add(spec.timeout)
        .unwrap_or(started + Duration::from_secs(10 * 365 * 86400));
    let mut exited_at: Option<Instant> = None;
    let mut ending = Ending::No;
    let mut open_streams = 2;
    let mut status = None;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while open_streams > 0 || status.is_none() {
        let now = Instant::now();
        let limit = cancelled_at().map_or(timeout_at, |d| d.min(timeout_at));
        let wake = ending.wake(now, exited_at.map_or(limit, |at| limit.min(at + LINGER)));
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(Event::Line(stream, line)) => {
                on_line(stream, &line);
                let buf = match stream {
                    Stream::Stdout => &mut stdout,
                    Stream::Stderr => &mut stderr,
                };
                buf.push_str(&line);
                buf.push('\n');
            }
            Ok(Event::Overflow(stream)) => {
                if matches!(ending, Ending::No) {
                    child.end(libc::SIGTERM);
                    ending = Ending::Terminated(Instant::now(), Failure::TooMuchOutput(stream));
                }
            }
            Ok(Event::Eof) => open_streams -= 1,
            Ok(Event::Exit(result)) => {
                status = Some(result.map_err(Failure::Spawn)?);
                exited_at = Some(Instant::now());
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if matches!(ending, Ending::No) && exited_at.is_some_and(|at| now >= at + LINGER) {
                    let holders = child.end(libc::SIGKILL);
                    log::warn!(
                        "{} exited but left background processes holding its output; killed them (PIDs {})",
                        spec.program.to_string_lossy(),
                        list(&holders)
                    );
                    break;
                }
                if matches!(ending, Ending::Killed(at, _) if now >= at + KILL_GRACE) {
                    break;
                }
                ending = child.next_ending(ending, now, timeout_at, cancelled_at());
            }
        }
    }
    child.end_descendants(spec);
    match (ending, status) {
        (Ending::Terminated(_, why) | Ending::Killed(_, why), _) => Err(why),
        (Ending::No, Some(status)) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        (Ending::No, None) => Err(Failure::Spawn(io::Error::other("lost track of the child"))),
    }
}

/// A started child: its process ID (and group) and what tells the
/// processes it started from others.
struct Child {
    pid: u32,
    marks: Marks,
}

impl Child {
    /// Sends `signal` to the child's process group and to every process
    /// that carries its marks; returns those. SIGKILL is sent again until
    /// none is left, since one may have forked while they were looked for.
    fn end(&self, signal: libc::c_int) -> Vec<u32> {
        signal_group(self.pid, signal);
        let mut ended = self.marks.find();
        descendants::signal_each(&ended, signal);
        if signal != libc::SIGKILL {
            return ended;
        }
        for _ in 0..SWEEPS {
            let more = self.marks.find();
            if more.is_empty() {
                break;
            }
            descendants::signal_each(&more, signal);
            ended.extend(more);
            thread::sleep(Duration::from_millis(10));
        }
        ended.sort_unstable();
        ended.dedup();
        ended
    }

    /// Where a child on its way out goes next at `now`: terminated at its
    /// time limit or at the cancellation's, killed once terminated long
    /// enough.
    fn next_ending(
        &self,
        ending: Ending,
        now: Instant,
        timeout_at: Instant,
        cancelled_at: Option<Instant>,
    ) -> Ending {
        match ending {
            Ending::No if now >= timeout_at => {
                self.end(libc::SIGTERM);
                Ending::Terminated(now, Failure::TimedOut)
            }
            Ending::No if cancelled_at.is_some_and(|d| now >= d) => {
                self.end(libc::SIGTERM);
                Ending::Terminated(now, Failure::Cancelled)
            }
            Ending::Terminated(at, why) if now >= at + TERM_GRACE => {
                self.end(libc::SIGKILL);
                Ending::Killed(now, why)
            }
            other => other,
        }
    }

    /// With [`Spec::ending_descendants`], kills what the child started
    /// that is still there now that it ended, and says so.
    fn end_descendants(&self, spec: &Spec) {
        if !spec.end_descendants {
            return;
        }
        let left = self.end(libc::SIGKILL);
        if !left.is_empty() {
            log::warn!(
                "{} left processes running when it ended; killed them (PIDs {})",
                spec.program.to_string_lossy(),
                list(&left)
            );
        }
    }
}

/// `1, 2, 3`.
fn list(pids: &[u32]) -> String {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    pids.join(", ")
}

/// Starts `spec`'s child, its output drained onto the returned channel and
/// its exit awaited on a thread of its own.
fn start(spec: &Spec) -> Result<(Child, mpsc::Receiver<Event>), Failure> {
    let mut command = Command::new(&spec.program);
    for (name, value) in &spec.env {
        command.env(name, value);
    }
    for name in &spec.env_remove {
        command.env_remove(name);
    }
    let mut marks = Marks::default();
    if spec.end_descendants {
        let value = Marks::fresh_value();
        command.env(descendants::MARK_VARIABLE, &value);
        marks = Marks::environment(&value);
    }
    command
        .args(&spec.args)
        .stdin(if spec.input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Failure::NotFound,
        _ => Failure::Spawn(e),
    })?;
    let pid = child.id();
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), spec.input.clone()) {
        thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        marks.pipe(out.as_raw_fd());
        drain(out, Stream::Stdout, spec.max_output, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        marks.pipe(err.as_raw_fd());
        drain(err, Stream::Stderr, spec.max_output, tx.clone());
    }
    thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(Event::Exit(status));
    });
    Ok((Child { pid, marks }, rx))
}

/// Reads `pipe` line by line onto `tx`, and at most `limit` bytes of it: a
/// longer output ends with [`Event::Overflow`] and the pipe is closed, so
/// neither a flood of lines nor one endless line can fill the memory.
fn drain(pipe: impl Read + Send + 'static, stream: Stream, limit: usize, tx: mpsc::Sender<Event>) {
    thread::spawn(move || {
        let allowed = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let mut reader = BufReader::new(pipe.take(allowed));
        let mut buf = Vec::new();
        let mut read = 0usize;
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) if read.saturating_add(n) > limit => {
                    let _ = tx.send(Event::Overflow(stream));
                    break;
                }
                Ok(n) => {
                    read += n;
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

/// Has the kernel kill the child when picture-book dies without cleaning up
/// (SIGKILL, a crash), so no docker command outlives it unwatched.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl(2) and getppid(2), which are async-signal-safe; it touches
    // no memory shared with the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Sends `signal` to the process group the child `pid` leads (it was
/// started with process_group(0), so its pgid is its pid).
fn signal_group(pid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pid) {
        descendants::send(-pgid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Result<Finished, Failure> {
        run(
            &Spec::new("/bin/sh", ["-c", script], timeout),
            &Cancel::default(),
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
        let done = run(&spec, &Cancel::default(), &mut |s, l| {
            seen.push((s, l.to_string()))
        })
        .unwrap();
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.stderr, "err\n");
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.describe_status(), "exit status 3");
        assert!(seen.contains(&(Stream::Stdout, "out".to_string())));
        assert!(seen.contains(&(Stream::Stderr, "err".to_string())));
    }

    #[test]
    fn input_reaches_the_child() {
        let spec = Spec::new(
            "/bin/sh",
            ["-c", "read line; echo \"got $line\""],
            Duration::from_secs(10),
        )
        .input("reg.example.com\n");
        let done = run(&spec, &Cancel::default(), &mut |_, _| {}).unwrap();
        assert_eq!(done.stdout, "got reg.example.com\n");
    }

    #[test]
    fn missing_program_is_not_found() {
        let spec = Spec::new(
            "/nonexistent/picture-book-test",
            Vec::<String>::new(),
            Duration::from_secs(1),
        );
        assert!(matches!(
            run(&spec, &Cancel::default(), &mut |_, _| {}),
            Err(Failure::NotFound)
        ));
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
    fn background_children_left_holding_the_pipe_are_killed_soon_after_exit() {
        let started = Instant::now();
        let done = sh("sleep 300 & echo listed", Duration::from_secs(600)).unwrap();
        assert_eq!(done.stdout, "listed\n");
        assert!(done.status.success());
        let took = started.elapsed();
        assert!(
            took >= LINGER && took < LINGER + Duration::from_secs(3),
            "{took:?}"
        );
    }

    /// Whether process `pid` ended (a zombie has ended) within a second.
    fn ended(pid: &str) -> bool {
        (0..50).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
            let gone = stat.is_empty() || state.starts_with('Z');
            if !gone {
                thread::sleep(Duration::from_millis(20));
            }
            gone
        })
    }

    #[test]
    fn a_process_that_left_the_group_holding_the_output_is_killed_too() {
        let done = sh("setsid sleep 300 & echo $!", Duration::from_secs(600)).unwrap();
        assert!(ended(done.stdout.trim()), "{} lives on", done.stdout);
        let started = Instant::now();
        let spec = Spec::new(
            "/bin/sh",
            ["-c", "setsid sleep 300 & echo $!; sleep 300"],
            Duration::from_millis(300),
        );
        let mut pid = String::new();
        let result = run(&spec, &Cancel::default(), &mut |_, line| pid = line.into());
        assert!(matches!(result, Err(Failure::TimedOut)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(ended(&pid), "{pid} lives on after the timeout");
    }

    #[test]
    fn a_detached_descendant_is_killed_when_its_marked_ancestor_ends() {
        let daemon = "setsid sh -c 'exec sleep 300' </dev/null >/dev/null 2>&1 & echo $!";
        let spec = Spec::new("/bin/sh", ["-c", daemon], Duration::from_secs(60));
        let left = run(&spec, &Cancel::default(), &mut |_, _| {}).unwrap();
        let pid = left.stdout.trim();
        assert!(!ended(pid), "without the mark, a daemon is not known");
        descendants::signal_each(&[pid.parse().unwrap()], libc::SIGKILL);
        let started = Instant::now();
        let marked = run(
            &spec.ending_descendants(),
            &Cancel::default(),
            &mut |_, _| {},
        )
        .unwrap();
        assert!(marked.status.success());
        assert!(ended(marked.stdout.trim()), "{} lives on", marked.stdout);
        assert!(started.elapsed() < Duration::from_secs(2), "no lingering");
    }

    #[test]
    fn an_enormous_timeout_does_not_overflow() {
        let done = sh("echo ok", Duration::MAX).unwrap();
        assert_eq!(done.stdout, "ok\n");
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

    #[test]
    fn output_past_the_limit_stops_the_child() {
        let started = Instant::now();
        let spec = Spec::new(
            "/bin/sh",
            ["-c", "echo fine; yes picture-book; echo never"],
            Duration::from_secs(60),
        )
        .max_output(1 << 20);
        let mut lines = 0usize;
        let result = run(&spec, &Cancel::default(), &mut |_, _| lines += 1);
        assert!(
            matches!(result, Err(Failure::TooMuchOutput(Stream::Stdout))),
            "{result:?}"
        );
        assert!(lines > 1000 && lines <= (1 << 20) / 13 + 1, "{lines}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let endless_line = Spec::new(
            "/bin/sh",
            ["-c", "head -c 5000000 /dev/zero | tr '\\0' x >&2"],
            Duration::from_secs(60),
        )
        .max_output(1 << 20);
        let result = run(&endless_line, &Cancel::default(), &mut |_, _| {});
        assert!(
            matches!(result, Err(Failure::TooMuchOutput(Stream::Stderr))),
            "{result:?}"
        );
        let exact = Spec::new(
            "/bin/sh",
            ["-c", "printf 0123456789"],
            Duration::from_secs(10),
        )
        .max_output(10);
        let done = run(&exact, &Cancel::default(), &mut |_, _| {}).unwrap();
        assert_eq!(done.stdout, "0123456789\n");
    }

    #[test]
    fn a_child_that_ignores_sigterm_is_killed() {
        let started = Instant::now();
        let result = sh(
            "trap '' TERM; sleep 300 & wait; sleep 300",
            Duration::from_millis(200),
        );
        assert!(matches!(result, Err(Failure::TimedOut)));
        let took = started.elapsed();
        assert!(
            took >= TERM_GRACE && took < TERM_GRACE + Duration::from_secs(4),
            "{took:?}"
        );
    }

    #[test]
    fn cancel_terminates_after_its_grace() {
        let cancel = std::sync::Arc::new(Cancel::new(Duration::from_millis(500)));
        let c = cancel.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            c.cancel();
        });
        let started = Instant::now();
        let spec = Spec::new("/bin/sh", ["-c", "sleep 300"], Duration::from_secs(600));
        let result = run(&spec, &cancel, &mut |_, _| {});
        assert!(matches!(result, Err(Failure::Cancelled)));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(3),
            "{took:?}"
        );
        let again = run(&spec, &cancel, &mut |_, _| {});
        assert!(
            matches!(again, Err(Failure::Cancelled)),
            "nothing starts after the grace"
        );
    }

    #[test]
    fn a_child_without_grace_is_terminated_when_cancelled() {
        let cancel = std::sync::Arc::new(Cancel::new(Duration::from_secs(3600)));
        let c = cancel.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            c.cancel();
        });
        let started = Instant::now();
        let spec = Spec::new("/bin/sh", ["-c", "sleep 300"], Duration::from_secs(600))
            .cancel_grace(Duration::ZERO);
        let result = run(&spec, &cancel, &mut |_, _| {});
        assert!(matches!(result, Err(Failure::Cancelled)), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_second_cancel_is_immediate() {
        let cancel = Cancel::new(Duration::from_secs(3600));
        cancel.cancel();
        cancel.cancel();
        let started = Instant::now();
        let spec = Spec::new("/bin/sh", ["-c", "sleep 300"], Duration::from_secs(600));
        assert!(matches!(
            run(&spec, &cancel, &mut |_, _| {}),
            Err(Failure::Cancelled)
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
