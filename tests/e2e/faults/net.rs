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
/// (`docker/`, `picture-book/`) once the proxy has served `after` faults,
/// answered with `status` and `extra` headers.
#[derive(Clone, Copy)]
pub struct Fault {
    pub agent: &'static str,
    pub status: &'static str,
    pub extra: &'static str,
    pub count: usize,
    pub after: usize,
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
        }
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
    let fault = left.iter_mut().find(|f| {
        f.count > 0
            && served.load(Ordering::SeqCst) >= f.after
            && head.contains(&format!("\r\nuser-agent: {}", f.agent))
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
        if let Some(fault) = take(&text, left, served) {
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
    }
    // Anything else (TLS probes included) goes to the registry.
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    let (mut down_r, mut up_w) = (conn.try_clone()?, up.try_clone()?);
    let pump = thread::spawn(move || {
        let _ = io::copy(&mut down_r, &mut up_w);
        let _ = up_w.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut up, &mut conn);
    let _ = conn.shutdown(Shutdown::Write);
    let _ = pump.join();
    Ok(())
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
