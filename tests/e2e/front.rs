//! A front of the suite's own in front of a real distribution registry, to
//! emulate what other registries do (a referrers API, challenges only at
//! `/v2/`, no `HEAD`, other upload styles, rate-limit headers). It passes
//! every request on; a test changes the behaviour with two hooks: `before`
//! may answer a request itself, `after` may change the registry's answer.
//! Every request is logged with the status the client got.

use std::io::Cursor;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tiny_http::{Header, Method, Response, Server};

use crate::harness::{Registry, listen};

/// One request as the front received it.
pub struct Seen {
    /// `GET`, `PUT`...
    pub method: Method,
    /// The path and query.
    pub url: String,
    /// Its headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or_default()
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer, before it is sent: hooks may change any part of it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The headers (no `Content-Length`: it is the body's, but for a `HEAD`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// An answer of `status` with an OCI error body of `code`.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets a header, replacing any of that name.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.remove_header(name);
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// Removes every header of that name.
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

/// Answers a request itself instead of passing it on.
pub type Before = dyn Fn(&Seen) -> Option<Reply> + Send + Sync;
/// Changes the registry's answer to a request.
pub type After = dyn Fn(&Seen, &mut Reply) + Send + Sync;

/// The running front.
pub struct Front {
    /// `127.0.0.1:PORT`.
    pub host: String,
    log: Arc<Mutex<Vec<(String, String, u16)>>>,
}

impl Front {
    /// A front for `upstream` that changes nothing.
    pub fn plain(upstream: &Registry) -> Front {
        Front::start(upstream, |_| None, |_, _| {})
    }

    /// A front for `upstream` with the two hooks.
    pub fn start(
        upstream: &Registry,
        before: impl Fn(&Seen) -> Option<Reply> + Send + Sync + 'static,
        after: impl Fn(&Seen, &mut Reply) + Send + Sync + 'static,
    ) -> Front {
        let server = Server::from_listener(listen(), None).unwrap();
        let inner = server.server_addr().to_ip().unwrap();
        let host = plain_http_only(inner);
        let log: Arc<Mutex<Vec<(String, String, u16)>>> = Arc::default();
        let hooks: Arc<(Box<Before>, Box<After>)> = Arc::new((Box::new(before), Box::new(after)));
        let upstream = upstream.host.clone();
        let kept = Arc::clone(&log);
        thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let (hooks, log, upstream) =
                    (Arc::clone(&hooks), Arc::clone(&kept), upstream.clone());
                thread::spawn(move || {
                    let mut body = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut body);
                    let seen = Seen {
                        method: request.method().clone(),
                        url: request.url().to_string(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|h| (h.field.as_str().to_string(), h.value.to_string()))
                            .collect(),
                        body,
                    };
                    let reply = match (hooks.0)(&seen) {
                        Some(reply) => reply,
                        None => {
                            let mut reply = forward(&upstream, &seen);
                            (hooks.1)(&seen, &mut reply);
                            reply
                        }
                    };
                    log.lock().unwrap().push((
                        seen.method.to_string(),
                        seen.url.clone(),
                        reply.status,
                    ));
                    let _ = request.respond(response(reply, &seen.method));
                });
            }
        });
        Front { host, log }
    }

    /// Every request so far: method, path and query, the status answered.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.log.lock().unwrap().clone()
    }

    /// How many requests of `method` whose URL starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, u, _)| m == method && u.starts_with(prefix))
            .count()
    }
}

/// A port in front of the tiny_http server at `inner` that closes a
/// connection opening with a TLS handshake at once, as a plain-HTTP
/// registry answers one (tiny_http would wait for a line that never comes,
/// and a client trying HTTPS first would wait out its connect timeout), and
/// passes every other connection through. Returns `127.0.0.1:PORT`.
fn plain_http_only(inner: std::net::SocketAddr) -> String {
    let outer = listen();
    let host = format!("127.0.0.1:{}", outer.local_addr().unwrap().port());
    thread::spawn(move || {
        for client in outer.incoming().flatten() {
            thread::spawn(move || {
                let mut first = [0u8; 1];
                let tls = matches!(client.peek(&mut first), Ok(1) if first[0] == 0x16);
                if tls {
                    return;
                }
                let Ok(server) = TcpStream::connect(inner) else {
                    return;
                };
                pump(client, server);
            });
        }
    });
    host
}

/// Copies bytes both ways between `a` and `b` until either side closes.
fn pump(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let back = thread::spawn(move || {
        let _ = std::io::copy(&mut b2, &mut a2);
        let _ = a2.shutdown(Shutdown::Write);
    });
    let (mut a, mut b) = (a, b);
    let _ = std::io::copy(&mut a, &mut b);
    let _ = b.shutdown(Shutdown::Write);
    let _ = back.join();
}

fn response(reply: Reply, method: &Method) -> Response<Cursor<Vec<u8>>> {
    let length = reply.body.len();
    let body = if *method == Method::Head {
        Vec::new()
    } else {
        reply.body
    };
    // Never chunked: a `HEAD` must keep its `Content-Length` (docker
    // refuses a blob `HEAD` without one).
    let mut response = Response::new(
        reply.status.into(),
        Vec::new(),
        Cursor::new(body),
        Some(length),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    for (name, value) in reply.headers {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    response
}

/// Docker Hub's pull limit, for a front's `after` hook: a sliding window
/// of `window` in which `limit` manifest `GET`s are allowed. Every manifest
/// answer (`HEAD` and `GET`) says what is left (`ratelimit-limit:
/// 100;w=21600`, `ratelimit-remaining: N;w=...`); a `HEAD` costs nothing,
/// a `GET` once the limit is spent is answered 429 `TOOMANYREQUESTS`.
pub struct PullLimit {
    limit: usize,
    window: Duration,
    pulls: Mutex<Vec<std::time::Instant>>,
    refused: std::sync::atomic::AtomicUsize,
}

impl PullLimit {
    /// `limit` pulls per `window`.
    pub fn new(limit: usize, window: Duration) -> Arc<PullLimit> {
        Arc::new(PullLimit {
            limit,
            window,
            pulls: Mutex::new(Vec::new()),
            refused: Default::default(),
        })
    }

    /// Counts a manifest `GET` and says what is left on a manifest answer.
    pub fn after(&self, seen: &Seen, reply: &mut Reply) {
        if !seen.path().contains("/manifests/") {
            return;
        }
        let mut pulls = self.pulls.lock().unwrap();
        pulls.retain(|t| t.elapsed() < self.window);
        if seen.method == Method::Get {
            if pulls.len() >= self.limit {
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                *reply = Reply::error(
                    429,
                    "TOOMANYREQUESTS",
                    "You have reached your pull rate limit.",
                );
            } else if reply.status == 200 {
                pulls.push(std::time::Instant::now());
            }
        }
        let w = self.window.as_secs();
        let left = self.limit.saturating_sub(pulls.len());
        reply.set_header("ratelimit-limit", &format!("{};w={w}", self.limit));
        reply.set_header("ratelimit-remaining", &format!("{left};w={w}"));
    }

    /// How many `GET`s it refused with 429.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Passes `seen` to the registry and returns its answer, upload
/// `Location`s pointed back at the front (made relative).
pub fn forward(upstream: &str, seen: &Seen) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(seen.method.as_str())
        .uri(format!("http://{upstream}{}", seen.url));
    for (name, value) in &seen.headers {
        let lower = name.to_ascii_lowercase();
        if [
            "content-type",
            "accept",
            "authorization",
            "range",
            "content-range",
            "user-agent",
        ]
        .contains(&lower.as_str())
        {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let sent = builder
        .header("Content-Length", seen.body.len())
        .body(seen.body.clone())
        .map_err(ureq::Error::from)
        .and_then(|r| agent.run(r));
    let mut resp = match sent {
        Ok(r) => r,
        Err(_) => {
            return Reply {
                status: 502,
                headers: Vec::new(),
                body: Vec::new(),
            };
        }
    };
    let status = resp.status().as_u16();
    let mut headers = Vec::new();
    for (name, value) in resp.headers() {
        let name = name.as_str();
        let head = seen.method == Method::Head;
        if ["transfer-encoding", "connection"].contains(&name)
            || (name == "content-length" && !head)
        {
            continue;
        }
        let value = value
            .to_str()
            .unwrap_or_default()
            .replace(&format!("http://{upstream}"), "");
        headers.push((name.to_string(), value));
    }
    let body = if seen.method == Method::Head {
        Vec::new()
    } else {
        resp.body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .unwrap_or_default()
    };
    Reply {
        status,
        headers,
        body,
    }
}
