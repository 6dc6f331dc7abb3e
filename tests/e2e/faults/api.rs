//! The API of `picture-book sync` under abuse, over raw TCP: malformed and
//! oversized requests, odd methods, bytes that are not HTTP, a thousand idle
//! connections, a client that never reads, running out of file descriptors,
//! and a port already taken. Every request gets a well-formed answer (or a
//! clean close), and the daemon keeps answering and running synchronizers.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Running, Workspace, eventually, free_port, listen};

/// How long a test waits for one answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// Starts `picture-book -v sync` in `ws` with one registry on `period`
/// whose script runs `script`, and the API on `port`; no docker.
fn spawn_sync(ws: &Workspace, port: u16, period: &str, script: &str) -> Running {
    ws.script("sync.sh", script);
    ws.config(&format!(
        "registries:\n  - hostname: r.example.com\n    syncPeriod: '{period}'\n    syncerScript: sync.sh\napi:\n  enabled: true\n  port: {port}\n"
    ));
    ws.run()
        .without_daemon()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["-v", "sync"])
        .spawn()
}

/// An answer as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body's `error` message.
    fn error(&self) -> String {
        let v: Value =
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"));
        v["error"].as_str().expect("an error message").to_string()
    }
}

/// What came back for one request.
#[derive(Debug)]
enum Outcome {
    Answered(Answer),
    /// The daemon closed the connection without a byte.
    Closed,
}

/// `picture-book sync` with one registry that mirrors nothing, and the API.
struct Daemon {
    running: Option<Running>,
    port: u16,
}

impl Daemon {
    /// Starts it with `period` as the registry's schedule.
    fn start(ws: &Workspace, period: &str) -> Daemon {
        let port = free_port();
        let running = spawn_sync(ws, port, period, "true");
        let d = Daemon {
            running: Some(running),
            port,
        };
        let up = eventually(Duration::from_secs(20), || {
            d.try_send(
                b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
                Duration::from_secs(2),
            )
            .is_ok_and(|o| matches!(o, Outcome::Answered(a) if a.status == 200))
        });
        assert!(up, "the daemon's API never came up");
        d
    }

    fn pid(&self) -> u32 {
        self.running.as_ref().unwrap().pid
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the API");
        stream.set_read_timeout(Some(ANSWER_LIMIT)).unwrap();
        stream.set_write_timeout(Some(ANSWER_LIMIT)).unwrap();
        stream
    }

    /// Sends `bytes`, stops sending, and reads until the daemon closes.
    fn try_send(&self, bytes: &[u8], limit: Duration) -> std::io::Result<Outcome> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))?;
        stream.write_all(bytes)?;
        stream.shutdown(Shutdown::Write)?;
        let mut got = Vec::new();
        match stream.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset && got.is_empty() => {}
            Err(e) => return Err(e),
        }
        if got.is_empty() {
            return Ok(Outcome::Closed);
        }
        let text = String::from_utf8(got).expect("the answer is UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {head}"));
        Ok(Outcome::Answered(Answer {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }))
    }

    /// Sends one request and expects an answer.
    fn send(&self, bytes: &[u8]) -> Answer {
        match self.try_send(bytes, ANSWER_LIMIT) {
            Ok(Outcome::Answered(a)) => a,
            other => panic!(
                "no answer to {:.200}: {other:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    /// `method path` with `Connection: close`.
    fn request(&self, method: &str, path: &str) -> Answer {
        self.send(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    /// The synchronizer's status.
    fn status(&self) -> Value {
        let a = self.request("GET", "/ops?sync=r.example.com&action=details");
        assert_eq!(a.status, 200, "{a:?}");
        serde_json::from_str::<Value>(&a.body).unwrap()["status"].clone()
    }

    /// Asks for a run now and waits until it has finished.
    fn runs_once_more(&self) {
        let before = self.status()["numberOfSyncs"].as_u64().unwrap();
        let run = self.request("POST", "/ops?sync=r.example.com&action=run");
        assert_eq!(run.status, 202, "{run:?}");
        let done = eventually(Duration::from_secs(30), || {
            self.status()["numberOfSyncs"].as_u64().unwrap() > before
        });
        assert!(done, "the run asked for did not finish: {}", self.status());
    }

    /// How long `/healthz` took to answer.
    fn healthz_time(&self) -> Duration {
        let started = Instant::now();
        let a = self.request("GET", "/healthz");
        assert_eq!((a.status, a.body.as_str()), (200, "ok\n"));
        started.elapsed()
    }

    /// A line of `/proc/PID/status` (`Threads`, `VmRSS`), as a number.
    fn proc_status(&self, key: &str) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc status"))
    }

    /// Open file descriptors.
    fn descriptors(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// SIGTERM; asserts a clean exit and returns stderr.
    fn stop(mut self) -> String {
        let running = self.running.take().unwrap();
        running.signal("TERM");
        let out = running.wait(Duration::from_secs(60));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stderr
    }

    /// SIGTERM; asserts a clean exit without a panic.
    fn stop_unpanicked(self) -> String {
        let stderr = self.stop();
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }
}

#[test]
fn malformed_requests_get_well_formed_answers() {
    let ws = Workspace::new();
    let d = Daemon::start(&ws, "@yearly");
    let big = "x".repeat(100_000);
    let header = d.send(
        format!("GET /healthz HTTP/1.1\r\nX-Big: {big}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(header.status, 431, "{header:?}");
    assert!(header.error().contains("at most 32768"), "{header:?}");
    let url = d.request("GET", &format!("/list?type=active&q={big}"));
    assert_eq!(url.status, 414);
    assert!(
        url.error().starts_with("the URL is 100020 bytes long"),
        "{url:?}"
    );
    let refusals = [
        (
            "/list?type",
            400,
            "missing 'type'; valid: configured, active",
        ),
        ("/list?&&==", 400, "parameter '==' has no name"),
        (
            "/ops?sync=%zz",
            400,
            "parameter 'sync=%zz': bad percent-encoding '%zz'",
        ),
        (
            "/ops?sync=r.example.com%00&action=details",
            400,
            "parameter 'sync=r.example.com%00': holds a control character",
        ),
        (
            "/list?type=%FF",
            400,
            "parameter 'type=%FF': not UTF-8 once percent-decoded",
        ),
        (
            "/ops?sync=a&sync=b&action=details",
            400,
            "parameter 'sync' is given more than once",
        ),
        (
            "/ops?sync=r.example.com%252F&action=details",
            404,
            "no synchronizer for 'r.example.com%2F'",
        ),
        (
            "/ops?sync=r.example.com%26action%3Dpause",
            400,
            "missing 'action'",
        ),
        (
            "/list%3Ftype=active",
            404,
            "no such endpoint '/list%3Ftype=active'",
        ),
    ];
    for (path, status, message) in refusals {
        let a = d.request("GET", path);
        assert_eq!(a.status, status, "{path}: {a:?}");
        assert_eq!(a.header("Content-Type"), Some("application/json"), "{path}");
        assert!(a.error().starts_with(message), "{path}: {}", a.error());
    }
    assert_eq!(d.status()["paused"], false, "an encoded '&' paused it");

    let brew = d.request("BREW", "/list?type=active");
    assert_eq!(brew.status, 501, "{brew:?}");
    assert!(brew.error().starts_with("method BREW is not implemented"));
    assert_eq!(brew.header("Allow"), Some("GET, HEAD, POST, OPTIONS"));
    let options = d.request("OPTIONS", "/ops");
    assert_eq!(options.status, 204, "{options:?}");
    assert_eq!(options.header("Allow"), Some("GET, HEAD, POST, OPTIONS"));
    let get = d.request("GET", "/list?type=configured");
    let head = d.request("HEAD", "/list?type=configured");
    assert_eq!((head.status, head.body.as_str()), (200, ""), "{head:?}");
    assert_eq!(
        head.header("Content-Length"),
        Some(get.body.len().to_string().as_str())
    );
    let pause = d.request("HEAD", "/ops?sync=r.example.com&action=pause");
    assert_eq!(pause.status, 405, "{pause:?}");
    assert_eq!(d.status()["paused"], false, "HEAD paused it");

    // Bytes tiny_http cannot read as HTTP: a 400 or a clean close.
    let garbage: [&[u8]; 5] = [
        b"GET /list?type=\xff\xfe HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nX-Bad: \xc3\x28\r\nConnection: close\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"hello there, this is not HTTP\r\n\r\n",
        b"\x00\x01\x02\x03 no line end",
    ];
    for bytes in garbage {
        match d.try_send(bytes, ANSWER_LIMIT) {
            Ok(Outcome::Closed) => {}
            Ok(Outcome::Answered(a)) => assert_eq!(a.status, 400, "{bytes:?}: {a:?}"),
            Err(e) => panic!("{bytes:?}: neither an answer nor a close: {e}"),
        }
    }
    assert!(d.healthz_time() < Duration::from_secs(2));
    d.runs_once_more();
    d.stop_unpanicked();
}

#[test]
fn a_thousand_idle_connections_leave_the_api_and_the_schedules_alone() {
    let ws = Workspace::new();
    let d = Daemon::start(&ws, "*/2 * * * * *");
    let (threads_before, rss_before) = (d.proc_status("Threads"), d.proc_status("VmRSS"));
    let descriptors_before = d.descriptors();
    let mut held = Vec::new();
    for i in 0..1000 {
        let mut s = d.connect();
        if i % 2 == 1 {
            // Slow clients: half a request line, the rest never comes.
            s.write_all(b"GET /list?type=act").unwrap();
        }
        held.push(s);
    }
    // tiny_http holds two descriptors per connection.
    let accepted = eventually(Duration::from_secs(30), || {
        d.descriptors() >= descriptors_before + 2000
    });
    let (threads, rss) = (d.proc_status("Threads"), d.proc_status("VmRSS"));
    eprintln!(
        "with 1000 idle connections: {threads} threads (before: {threads_before}), VmRSS {rss} kB (before: {rss_before} kB), {} descriptors",
        d.descriptors()
    );
    assert!(
        accepted,
        "the daemon did not take the connections: {} descriptors",
        d.descriptors()
    );
    for _ in 0..3 {
        let took = d.healthz_time();
        assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
    }
    let syncs = d.status()["numberOfSyncs"].as_u64().unwrap();
    let scheduled = eventually(Duration::from_secs(20), || {
        d.status()["numberOfSyncs"].as_u64().unwrap() >= syncs + 3
    });
    assert!(scheduled, "the schedule stalled: {}", d.status());
    for s in held.iter_mut().skip(1).step_by(2).take(10) {
        if s.write_all(b"ive HTTP/1.1\r\nConnection: close\r\n\r\n")
            .is_ok()
        {
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 200 "),
                "{answer}"
            );
        }
    }
    // The rest sent nothing more: the daemon closes them after 30 s.
    let started = Instant::now();
    let mut rest = held.split_off(10);
    for s in &mut rest {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 64];
        let closed =
            matches!(s.read(&mut buf), Ok(0)) || started.elapsed() > Duration::from_secs(60);
        assert!(closed, "an idle connection stayed open or got bytes");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(50),
        "closing the idle connections took {took:?}"
    );
    let released = eventually(Duration::from_secs(30), || {
        d.proc_status("Threads") < threads_before + 20
    });
    assert!(released, "threads stay: {}", d.proc_status("Threads"));
    drop(rest);
    assert!(d.healthz_time() < Duration::from_secs(2));
    d.stop_unpanicked();
}

#[test]
fn a_client_that_never_reads_holds_up_only_itself() {
    let ws = Workspace::new();
    let d = Daemon::start(&ws, "@yearly");
    let mut stalled = d.connect();
    let pipeline = b"GET /list?type=configured HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20_000);
    let writer = thread::spawn(move || {
        let _ = stalled.write_all(&pipeline);
        stalled
    });
    thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        let took = d.healthz_time();
        assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
    }
    d.runs_once_more();
    let stalled = writer.join().unwrap();
    drop(stalled);
    let stderr = d.stop_unpanicked();
    assert!(stderr.contains("does not read its answers"), "{stderr}");
}

/// The probe's case (`ab -k`): an HTTP/1.0 client asking for keep-alive
/// reads an answer that does not say keep-alive, so it takes the end of the
/// connection for the end of the answer. The connection ends right after
/// the answer; HTTP/1.1 connections and other HTTP/1.0 ones are as before.
#[test]
fn an_http_1_0_keep_alive_client_gets_its_answer_and_the_end_of_it() {
    let ws = Workspace::new();
    let d = Daemon::start(&ws, "@yearly");
    for connection in ["Keep-Alive", "keep-alive", "foo, keep-alive"] {
        let mut stream = d.connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let request = format!("GET /healthz HTTP/1.0\r\nConnection: {connection}\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let read = stream.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            read.is_ok(),
            "no end of the answer within 3s ({connection}): {read:?}, read {text:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(text.starts_with("HTTP/1.0 200 "), "{text}");
        assert!(text.ends_with("\r\n\r\nok\n"), "{text}");
    }
    let mut kept = d.connect();
    for _ in 0..2 {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = [0u8; 512];
        let n = kept.read(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(
            text.starts_with("HTTP/1.1 200 ") && text.ends_with("ok\n"),
            "an HTTP/1.1 connection is kept: {text}"
        );
    }
    let plain = d.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!((plain.status, plain.body.as_str()), (200, "ok\n"));
    d.stop();
}

#[test]
fn the_api_comes_back_after_running_out_of_file_descriptors() {
    let ws = Workspace::new();
    let d = Daemon::start(&ws, "@yearly");
    let held: Vec<TcpStream> = (0..20).map(|_| d.connect()).collect();
    let accepted = eventually(Duration::from_secs(10), || d.descriptors() >= 40);
    assert!(accepted, "the connections were not taken");
    // Not one descriptor more: the next connection cannot be accepted.
    let limit = format!("--nofile={0}:{0}", d.descriptors());
    let status = Command::new("prlimit")
        .args(["--pid", &d.pid().to_string(), &limit])
        .status()
        .expect("prlimit (util-linux) must be installed");
    assert!(status.success());
    let starved = eventually(Duration::from_secs(10), || {
        !matches!(
            d.try_send(
                b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
                Duration::from_secs(1)
            ),
            Ok(Outcome::Answered(_))
        )
    });
    assert!(starved, "the API answered with all descriptors in use");
    drop(held);
    // The watchdog notices within 10 s plus 5 s.
    let back = eventually(Duration::from_secs(40), || {
        d.try_send(
            b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .is_ok_and(|o| matches!(o, Outcome::Answered(a) if a.status == 200))
    });
    if !back {
        panic!("the API did not come back:\n{}", d.stop());
    }
    d.runs_once_more();
    // Out of descriptors, tiny_http's acceptor fails or panics (in its
    // own code, not ours); either way a new one takes over.
    let stderr = d.stop();
    assert!(stderr.contains("; accepting anew"), "{stderr}");
}

#[test]
fn a_port_in_use_stops_the_start_with_its_address_and_reason() {
    let ws = Workspace::new();
    let taken = listen();
    let port = taken.local_addr().unwrap().port();
    let out = spawn_sync(&ws, port, "* * * * *", "touch ran").wait(Duration::from_secs(30));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "the API cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("synchronizing"), "{}", out.stderr);
    assert!(!ws.dir.join("ran").exists(), "a synchronizer ran");
    drop(taken);
}
