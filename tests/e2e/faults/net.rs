//! Network faults to put in front of a real registry: a proxy that answers
//! chosen requests with an error status and passes everything else through,
//! and a peer that accepts connections and never answers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::harness::listen;

/// A TCP proxy to a registry that answers some requests with an error (the
/// [`Fault`]s) and passes everything else through.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    served: Arc<AtomicUsize>,
}

/// Requests to fail: the first `count` whose user agent starts with `agent`
/// (`docker/`, `picture-book/`) and whose request line contains `path`,
/// once the proxy has served `after` faults, met with `action`.
#[derive(Clone, Copy)]
pub struct Fault {
    pub agent: &'static str,
    pub status: &'static str,
    pub extra: &'static str,
    pub count: usize,
    pub after: usize,
    pub path: &'static str,
    pub action: Action,
}

/// What a fault does to a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Answers it with the fault's status (after reading its body).
    Status,
    /// Passes it on and flips a byte of the answer's body.
    Corrupt,
    /// Passes it on and closes the connection after this many bytes of the
    /// answer's body, as a registry that dies mid-blob.
    Cut(usize),
    /// Passes it on and sends the answer at this many bytes a second.
    Slow(usize),
}

impl Fault {
    /// The first `count` requests of `agent` answered with `status`.
    pub fn first(count: usize, agent: &'static str, status: &'static str) -> Fault {
        Fault {
            agent,
            status,
            extra: "",
            count,
            after: 0,
            path: "",
            action: Action::Status,
        }
    }

    /// The first `count` requests of `agent` for `path` met with `action`.
    pub fn to(count: usize, agent: &'static str, path: &'static str, action: Action) -> Fault {
        Fault {
            path,
            action,
            ..Fault::first(count, agent, "")
        }
    }

    /// Only requests whose request line contains `path`.
    pub fn on(self, path: &'static str) -> Fault {
        Fault { path, ..self }
    }

    /// With `extra` headers (each ending in CRLF).
    pub fn with(self, extra: &'static str) -> Fault {
        Fault { extra, ..self }
    }

    /// Only once the proxy has served `after` faults.
    pub fn after(self, after: usize) -> Fault {
        Fault { after, ..self }
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`127.0.0.1:PORT`) with `faults`.
    pub fn start(upstream: &str, faults: &[Fault]) -> FaultProxy {
        let listener = listen();
        let host = listener.local_addr().unwrap().to_string();
        let served = Arc::new(AtomicUsize::new(0));
        let left = Arc::new(Mutex::new(faults.to_vec()));
        let upstream = upstream.to_string();
        let counter = Arc::clone(&served);
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (upstream, counter, left) =
                    (upstream.clone(), Arc::clone(&counter), Arc::clone(&left));
                thread::spawn(move || {
                    let _ = serve(conn, &upstream, &left, &counter);
                });
            }
        });
        FaultProxy { host, served }
    }

    /// How many requests it has answered with an error so far.
    pub fn faults(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// The fault `head` (a request head, lowercase) meets, if any; counts it.
fn take(head: &str, left: &Mutex<Vec<Fault>>, served: &AtomicUsize) -> Option<Fault> {
    let mut left = left.lock().unwrap();
    let request_line = head.lines().next().unwrap_or_default();
    let fault = left.iter_mut().find(|f| {
        f.count > 0
            && served.load(Ordering::SeqCst) >= f.after
            && head.contains(&format!("\r\nuser-agent: {}", f.agent))
            && request_line.contains(&f.path.to_ascii_lowercase())
    })?;
    fault.count -= 1;
    served.fetch_add(1, Ordering::SeqCst);
    Some(*fault)
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    left: &Mutex<Vec<Fault>>,
    served: &AtomicUsize,
) -> io::Result<()> {
    let mut first = [0u8; 1];
    conn.peek(&mut first)?;
    let mut head = Vec::new();
    if first[0].is_ascii_uppercase() {
        // An HTTP request: read its head to see who sends it.
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
            if conn.read(&mut byte)? == 0 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let fault = take(&text, left, served);
        if let Some(fault) = fault.filter(|f| f.action == Action::Status) {
            drain_body(&mut conn, &text)?;
            let (status, extra) = (fault.status, fault.extra);
            let body = if status.starts_with("429") {
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected fault"}]}"#
            } else {
                r#"{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}"#
            };
            write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                body.len()
            )?;
            return conn.shutdown(Shutdown::Both);
        }
        head = one_request_per_connection(&head);
        return pass_on(conn, upstream, &head, fault.map(|f| f.action));
    }
    // Anything else (TLS probes included) goes to the registry.
    pass_on(conn, upstream, &head, None)
}

/// Reads and drops the body a request head announces, so that an answer
/// sent before it reaches a client that is still writing.
fn drain_body(conn: &mut TcpStream, head: &str) -> io::Result<()> {
    let length: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    io::copy(&mut conn.take(length), &mut io::sink()).map(drop)
}

/// Sends `head` and the rest of the client's bytes to `upstream`, and its
/// answer back, with `action` done to the answer.
fn pass_on(
    mut conn: TcpStream,
    upstream: &str,
    head: &[u8],
    action: Option<Action>,
) -> io::Result<()> {
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(head)?;
    let (mut down_r, mut up_w) = (conn.try_clone()?, up.try_clone()?);
    let pump = thread::spawn(move || {
        let _ = io::copy(&mut down_r, &mut up_w);
        let _ = up_w.shutdown(Shutdown::Write);
    });
    let _ = match action {
        None | Some(Action::Status) => io::copy(&mut up, &mut conn).map(drop),
        Some(action) => answer_with(&mut up, &mut conn, action),
    };
    let _ = conn.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
    let _ = pump.join();
    Ok(())
}

/// Copies an answer from `up` to `down`, with `action` done to its body.
fn answer_with(up: &mut TcpStream, down: &mut TcpStream, action: Action) -> io::Result<()> {
    let mut buf = vec![0u8; 16 << 10];
    let mut seen: Vec<u8> = Vec::new();
    let mut body_at = None;
    let mut body_sent = 0usize;
    let mut flipped = false;
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut chunk = buf[..n].to_vec();
        let start = match body_at {
            Some(_) => 0,
            None => {
                seen.extend_from_slice(&chunk);
                match seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(end) => {
                        let in_chunk = end + 4 - (seen.len() - chunk.len());
                        body_at = Some(end + 4);
                        in_chunk
                    }
                    None => chunk.len(),
                }
            }
        };
        let body_here = chunk.len() - start;
        match action {
            Action::Corrupt if !flipped && body_here > 0 => {
                chunk[start] ^= 0xff;
                flipped = true;
            }
            Action::Cut(limit) if body_at.is_some() && body_sent + body_here >= limit => {
                let keep = start + limit - body_sent;
                down.write_all(&chunk[..keep])?;
                return Ok(());
            }
            Action::Slow(rate) if body_here > 0 => {
                thread::sleep(std::time::Duration::from_secs_f64(
                    body_here as f64 / rate as f64,
                ));
            }
            _ => {}
        }
        body_sent += body_here;
        down.write_all(&chunk)?;
    }
}

/// `head` asking the registry to close the connection after answering, so
/// that the client's next request comes on a new one and is looked at.
fn one_request_per_connection(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = text
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
}

/// A port that accepts connections and never says a word: the peer every
/// timeout is there for. Connections are held until the test binary exits.
pub fn silent_peer() -> String {
    let listener = listen();
    let host = listener.local_addr().unwrap().to_string();
    let held = Arc::new(Mutex::new(Vec::new()));
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            held.lock().unwrap().push(conn);
        }
    });
    host
}
