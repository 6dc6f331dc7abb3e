//! Network faults to put in front of a real registry: a proxy that answers
//! docker's first requests with an error status and then passes everything
//! through, and a peer that accepts connections and never answers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::harness::listen;

/// A TCP proxy to a registry that answers the first `failures` requests
/// whose user agent starts with `agent` (`docker/`, `picture-book/`) with
/// `status` (and `extra` headers), then recovers.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    faults: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`127.0.0.1:PORT`).
    pub fn start(
        upstream: &str,
        agent: &'static str,
        status: &'static str,
        extra: &'static str,
        failures: usize,
    ) -> FaultProxy {
        let listener = listen();
        let host = listener.local_addr().unwrap().to_string();
        let faults = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let counter = Arc::clone(&faults);
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (upstream, counter) = (upstream.clone(), Arc::clone(&counter));
                thread::spawn(move || {
                    let fault = Fault {
                        agent,
                        status,
                        extra,
                        failures,
                    };
                    let _ = serve(conn, &upstream, &fault, &counter);
                });
            }
        });
        FaultProxy { host, faults }
    }

    /// How many requests it has answered with its error so far.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }
}

/// Which requests fail, and how.
struct Fault {
    agent: &'static str,
    status: &'static str,
    extra: &'static str,
    failures: usize,
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    fault: &Fault,
    faults: &AtomicUsize,
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
        let chosen = text.contains(&format!("\r\nuser-agent: {}", fault.agent));
        let fail = chosen
            && faults
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < fault.failures).then_some(n + 1)
                })
                .is_ok();
        if fail {
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
    }
    // Anything else (TLS probes included) goes to the registry as it is.
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
