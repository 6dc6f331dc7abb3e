//! The HTTP control API of `picture-book sync`, served by tiny_http: the
//! seed's `/list` and `/ops` endpoints with their query parameters, plus
//! `/healthz` and `/metrics`. Requests are routed by [`route`], a plain
//! function of method, URL and `Authorization` header, so it can be tested
//! without a socket; answers are written by one short-lived thread per client
//! connection, so a client that does not read holds up only itself. What the
//! operations do is `daemon`'s business.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use serde_json::{Value, json};
use tiny_http::{HTTPVersion, Header, Method, Request, Response};

use crate::config::Api;
use crate::daemon::listener::{self, Acceptors, Stopper};
use crate::daemon::{Daemon, Refusal};
use crate::error::Error;
use crate::mutex::lock;
use crate::secret::Secret;

const LIST_TYPES: &str = "configured, active";
const ACTIONS: &str = "details, pause, resume, run, schedule";
/// Every method the API knows; others are answered 501.
const METHODS: &str = "GET, HEAD, POST, OPTIONS";
/// The longest URL answered; longer ones get 414.
const MAX_URL: usize = 8 * 1024;
/// The most header bytes answered; more get 431.
const MAX_HEADERS: usize = 32 * 1024;
/// Answers that may wait for one client connection before its requests go
/// unanswered.
const MAX_WAITING_PER_CLIENT: usize = 32;
/// Client connections that may have answers being written at once.
const MAX_WRITERS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    List,
    Ops,
    Healthz,
    Metrics,
}

/// The endpoints and the methods each takes.
const ENDPOINTS: [(&str, Endpoint, &str); 4] = [
    ("/list", Endpoint::List, "GET, HEAD, OPTIONS"),
    ("/ops", Endpoint::Ops, "GET, HEAD, POST, OPTIONS"),
    ("/healthz", Endpoint::Healthz, "GET, HEAD, OPTIONS"),
    ("/metrics", Endpoint::Metrics, "GET, HEAD, OPTIONS"),
];

/// An answer: status, content type, body and extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// Extra headers (`WWW-Authenticate`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: format!("{body}\n"),
            headers: Vec::new(),
        }
    }

    fn text(body: String, content_type: &'static str) -> Reply {
        Reply {
            status: 200,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "error": message.into() }))
    }

    fn refused(refusal: Refusal) -> Reply {
        match refusal {
            Refusal::NotFound(m) => Reply::error(404, m),
            Refusal::Conflict(m) => Reply::error(409, m),
            Refusal::Invalid(m) => Reply::error(400, m),
        }
    }

    fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    /// The answer to OPTIONS: no body, the methods in `Allow`.
    fn options(allow: &str) -> Reply {
        Reply {
            status: 204,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
            headers: Vec::new(),
        }
        .with_header("Allow", allow)
    }

    fn method_not_allowed(method: &Method, path: &str, allow: &str) -> Reply {
        Reply::error(
            405,
            format!("method {method} not allowed on {path}; use {allow}"),
        )
        .with_header("Allow", allow)
    }
}

/// The running API server.
pub struct Server {
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `settings.address:settings.port` and serves `daemon` on a thread.
pub fn serve(daemon: Arc<Daemon>, settings: &Api) -> Result<Server, Error> {
    let address = SocketAddr::new(settings.address, settings.port);
    let bind_error = |e: std::io::Error| Error::ApiBind {
        address: address.to_string(),
        detail: e.to_string(),
    };
    let (mut acceptors, stopper) = Acceptors::bind(address).map_err(bind_error)?;
    if settings.token.is_none() && !settings.address.is_loopback() {
        log::warn!(
            "the API listens on {address} without authentication: anyone who can reach it can pause and reconfigure the synchronizers; set api.enableAuth"
        );
    }
    log::info!("API listening on http://{address}");
    let thread = thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let writers = Arc::new(Writers {
                port: acceptors.port(),
                ..Writers::default()
            });
            while let Some(request) = acceptors.next_request() {
                handle(request, &daemon, &writers);
            }
        })
        .map_err(bind_error)?;
    Ok(Server {
        stopper,
        thread: Some(thread),
    })
}

fn handle(request: Request, daemon: &Daemon, writers: &Arc<Writers>) {
    if request.remote_addr().is_some_and(|c| writers.refuses(*c)) {
        drop(request.into_writer());
        return;
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
        .sum();
    let reply = if header_bytes > MAX_HEADERS {
        Reply::error(
            431,
            format!(
                "the request's headers take {header_bytes} bytes; at most {MAX_HEADERS} are answered"
            ),
        )
    } else {
        let authorization = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str().to_string());
        route(
            request.method(),
            request.url(),
            authorization.as_deref(),
            daemon,
        )
    };
    let path = request.url().split('?').next().unwrap_or_default();
    log::debug!("API {} {:.200} -> {}", request.method(), path, reply.status);
    let mut response = Response::from_string(reply.body).with_status_code(reply.status);
    let headers =
        std::iter::once(("Content-Type", reply.content_type.to_string())).chain(reply.headers);
    for (name, value) in headers {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    writers.send(request, response);
}

type Answer = (Request, Response<Cursor<Vec<u8>>>);

/// Answers waiting to be written, per client connection. One thread per
/// connection writes them in order and ends when none are left, so the
/// thread that routes requests never waits for a client.
#[derive(Default)]
struct Writers {
    /// The API's port, which the connections written to are on.
    port: u16,
    state: Mutex<WritersState>,
}

#[derive(Default)]
struct WritersState {
    clients: HashMap<SocketAddr, Waiting>,
    /// Whether the operator was told that too many clients do not read.
    warned_busy: bool,
}

#[derive(Default)]
struct Waiting {
    answers: VecDeque<Answer>,
    /// Writing to this client failed: the rest go unanswered.
    broken: bool,
    /// Whether the operator was told that this client does not read.
    warned: bool,
}

impl Writers {
    /// True when a request of `client` is to go unanswered, without even
    /// being looked at: the client does not read its answers, or too many
    /// clients do not. Says so once.
    fn refuses(&self, client: SocketAddr) -> bool {
        let mut state = lock(&self.state);
        let busy = state.clients.len() >= MAX_WRITERS;
        match state.clients.get_mut(&client) {
            Some(waiting) if waiting.answers.len() >= MAX_WAITING_PER_CLIENT => {
                if !std::mem::replace(&mut waiting.warned, true) {
                    log::warn!(
                        "API: {client} does not read its answers; its requests go unanswered"
                    );
                }
                true
            }
            Some(_) => false,
            None if busy => {
                if !std::mem::replace(&mut state.warned_busy, true) {
                    log::warn!(
                        "API: {MAX_WRITERS} clients do not read their answers; requests of others go unanswered"
                    );
                }
                true
            }
            None => false,
        }
    }

    fn send(self: &Arc<Self>, request: Request, response: Response<Cursor<Vec<u8>>>) {
        let Some(client) = request.remote_addr().copied() else {
            answer(self.port, request, response);
            return;
        };
        let mut state = lock(&self.state);
        match state.clients.entry(client) {
            Entry::Occupied(mut waiting) => {
                waiting.get_mut().answers.push_back((request, response))
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Waiting {
                    answers: VecDeque::from([(request, response)]),
                    ..Waiting::default()
                });
                drop(state);
                let writers = Arc::clone(self);
                let spawned = thread::Builder::new()
                    .name("api answer".into())
                    .spawn(move || writers.write(client));
                if let Err(e) = spawned {
                    log::warn!("API: no thread to answer {client} ({e}); answering in line");
                    self.write(client);
                }
            }
        }
    }

    /// Writes the answers waiting for `client` until none are left.
    fn write(&self, client: SocketAddr) {
        loop {
            let (request, response, broken) = {
                let mut state = lock(&self.state);
                let Some(waiting) = state.clients.get_mut(&client) else {
                    return;
                };
                let Some((request, response)) = waiting.answers.pop_front() else {
                    state.clients.remove(&client);
                    state.warned_busy &= state.clients.len() >= MAX_WRITERS;
                    return;
                };
                (request, response, waiting.broken)
            };
            if broken {
                drop(request.into_writer());
            } else if !answer(self.port, request, response) {
                if let Some(waiting) = lock(&self.state).clients.get_mut(&client) {
                    waiting.broken = true;
                }
            }
        }
    }
}

/// Writes `response` to the API on `port`; false when that failed. An
/// HTTP/1.0 client that asked to keep the connection has it closed after
/// the answer, which is its sign that the answer is whole.
fn answer(port: u16, request: Request, response: Response<Cursor<Vec<u8>>>) -> bool {
    let client = request.remote_addr().copied();
    let close = (request.http_version() == &HTTPVersion(1, 0) && asks_keep_alive(&request))
        .then_some(client)
        .flatten();
    match request.respond(response) {
        Ok(()) => {
            if let Some(client) = close {
                listener::close_after_answer(port, client);
            }
            true
        }
        Err(e) => {
            log::debug!("API: could not answer {client:?}: {e}");
            false
        }
    }
}

/// Whether `request` has `Connection: keep-alive` (HTTP/1.0's way to ask
/// for another request on the connection).
fn asks_keep_alive(request: &Request) -> bool {
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Connection"))
        .any(|h| {
            h.value
                .as_str()
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("keep-alive"))
        })
}

/// Answers one request.
pub fn route(method: &Method, url: &str, authorization: Option<&str>, daemon: &Daemon) -> Reply {
    if let Method::NonStandard(name) = method {
        return Reply::error(
            501,
            format!("method {name} is not implemented; the API takes {METHODS}"),
        )
        .with_header("Allow", METHODS);
    }
    if url.len() > MAX_URL {
        return Reply::error(
            414,
            format!(
                "the URL is {} bytes long; at most {MAX_URL} are answered",
                url.len()
            ),
        );
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let endpoint = ENDPOINTS.iter().find(|(p, _, _)| *p == path);
    let server_wide = path == "*" && *method == Method::Options;
    if endpoint.is_none_or(|(_, e, _)| *e != Endpoint::Healthz) && !server_wide {
        if let Some(token) = daemon.api_token() {
            if !authorized(authorization, &token) {
                return Reply::error(
                    401,
                    "missing or wrong bearer token (Authorization: Bearer <token>)",
                )
                .with_header("WWW-Authenticate", "Bearer realm=\"picture-book\"");
            }
        }
    }
    if server_wide {
        return Reply::options(METHODS);
    }
    let Some(&(path, endpoint, allow)) = endpoint else {
        let names: Vec<&str> = ENDPOINTS.iter().map(|(p, _, _)| *p).collect();
        return Reply::error(
            404,
            format!("no such endpoint '{path}'; endpoints: {}", names.join(", ")),
        );
    };
    if *method == Method::Options {
        return Reply::options(allow);
    }
    if !allow.split(", ").any(|m| m == method.as_str()) {
        return Reply::method_not_allowed(method, path, allow);
    }
    let query = match Query::parse(query) {
        Ok(query) => query,
        Err(message) => return Reply::error(400, message),
    };
    match endpoint {
        Endpoint::Healthz => Reply::text("ok\n".into(), "text/plain; charset=utf-8"),
        Endpoint::Metrics => {
            Reply::text(daemon.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        }
        Endpoint::List => match query.get("type") {
            Some("configured") => Reply::json(200, &daemon.configured()),
            Some("active") => Reply::json(200, &daemon.active()),
            Some(other) => {
                Reply::error(400, format!("unknown type '{other}'; valid: {LIST_TYPES}"))
            }
            None => Reply::error(400, format!("missing 'type'; valid: {LIST_TYPES}")),
        },
        Endpoint::Ops => ops(method, &query, daemon),
    }
}

/// `/ops`: one synchronizer's details, or an action on it.
fn ops(method: &Method, query: &Query, daemon: &Daemon) -> Reply {
    let Some(host) = query.get("sync") else {
        let valid = daemon.hostnames().join(", ");
        return Reply::error(400, format!("missing 'sync'; valid: {valid}"));
    };
    let action = query.get("action");
    let changes = matches!(action, Some("pause" | "resume" | "run" | "schedule"));
    if *method == Method::Head && changes {
        return Reply::error(
            405,
            format!(
                "HEAD changes nothing: it takes action=details; use GET or POST for action={}",
                action.unwrap_or_default()
            ),
        )
        .with_header("Allow", "GET, POST, OPTIONS");
    }
    let result = match action {
        Some("details") => daemon.details(host),
        Some("pause") => daemon.pause(host),
        Some("resume") => daemon.resume(host),
        Some("run") => daemon.run_now(host),
        Some("schedule") => match query.get("period").filter(|p| !p.trim().is_empty()) {
            Some(period) => daemon.set_schedule(host, period),
            None => Err(Refusal::Invalid(
                "missing 'period': a cron expression".into(),
            )),
        },
        Some(other) => Err(Refusal::Invalid(format!(
            "unknown action '{other}'; valid: {ACTIONS}"
        ))),
        None => Err(Refusal::Invalid(format!(
            "missing 'action'; valid: {ACTIONS}"
        ))),
    };
    match result {
        Ok(body) if action == Some("run") => Reply::json(202, &body),
        Ok(body) => Reply::json(200, &body),
        Err(refusal) => Reply::refused(refusal),
    }
}

/// True when `header` is `Bearer <token>` with the right token. The time it
/// takes depends only on what the client sent, not on the token.
fn authorized(header: Option<&str>, token: &Secret) -> bool {
    let Some((scheme, given)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes())
}

/// Compares `given` with `secret` without stopping at the first difference.
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != secret.len());
    for (i, g) in given.iter().enumerate() {
        let s = if secret.is_empty() {
            0
        } else {
            secret[i % secret.len()]
        };
        diff |= g ^ s;
    }
    diff == 0 && !secret.is_empty()
}

/// A query string's parameters, percent-decoded (`+` is a space).
#[derive(Debug)]
struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `query`, refusing what cannot have been meant: a bad or
    /// non-UTF-8 percent-encoding, a control character, a parameter without
    /// a name, or one given twice. Each message quotes the culprit.
    fn parse(query: &str) -> Result<Query, String> {
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key).map_err(|e| format!("parameter '{pair}': {e}"))?;
            let value = decode(value).map_err(|e| format!("parameter '{pair}': {e}"))?;
            if key.is_empty() {
                return Err(format!("parameter '{pair}' has no name"));
            }
            if params.iter().any(|(k, _)| *k == key) {
                return Err(format!(
                    "parameter '{key}' is given more than once; give it once"
                ));
            }
            params.push((key, value));
        }
        Ok(Query(params))
    }

    /// The value of `name`; an empty value counts as none.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-decodes `text` into UTF-8 without control characters.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                    let bad = &bytes[i..bytes.len().min(i + 3)];
                    return Err(format!(
                        "bad percent-encoding '{}'",
                        String::from_utf8_lossy(bad)
                    ));
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| "not UTF-8 once percent-decoded".to_string())?;
    if text.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::Progress;
    use crate::process::Cancel;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A daemon with two registries and no threads: routing only.
    fn daemon(name: &str, token: Option<&str>) -> (Arc<Daemon>, PathBuf) {
        let dir = std::env::temp_dir().join(format!("pb-api-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("s.sh");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let auth = token.map_or(String::new(), |t| {
            format!("  enableAuth: true\n  authToken: {t}\n")
        });
        let yaml = format!(
            "registries:\n  - hostname: a.example.com\n    syncPeriod: '@daily'\n    syncerScript: s.sh\n    pushAuthConfig: '{{\"auths\":{{\"a.example.com\":{{\"auth\":\"dTpodW50ZXIy\"}}}}}}'\n  - hostname: b.example.com:5000\n    syncerScript: s.sh\napi:\n  enabled: true\n{auth}"
        );
        let config = crate::config::parse(&yaml, &dir.join("c.yaml")).unwrap();
        let cancel = Arc::new(Cancel::default());
        let tools = crate::daemon::Tools {
            engines: crate::engine::Engines::new(cancel.clone()),
            client: crate::registry::Client::default(),
            state_dir: dir.join("state"),
            cancel,
            progress: Progress::Quiet,
        };
        let d = Daemon::new(config, tools);
        (d, dir)
    }

    fn get(d: &Daemon, url: &str) -> Reply {
        route(&Method::Get, url, None, d)
    }

    fn body(r: &Reply) -> Value {
        serde_json::from_str(&r.body).unwrap()
    }

    #[test]
    fn lists_and_details() {
        let (d, dir) = daemon("lists", None);
        let configured = get(&d, "/list?type=configured");
        assert_eq!(configured.status, 200);
        let v = body(&configured);
        assert_eq!(v["registries"][0]["hostname"], "a.example.com");
        assert_eq!(v["registries"][0]["pushAuthConfig"], "<redacted>");
        assert_eq!(v["registries"][1]["pushAuthConfig"], "");
        assert!(!configured.body.contains("dTpodW50ZXIy"));
        let active = body(&get(&d, "/list?type=active"));
        let hosts: Vec<&str> = active["synchronizers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["hostname"].as_str().unwrap())
            .collect();
        assert_eq!(
            hosts,
            ["a.example.com"],
            "an unscheduled registry is not active"
        );
        let details = body(&get(&d, "/ops?sync=A.example.com&action=details"));
        assert_eq!(details["status"]["paused"], false);
        assert_eq!(details["status"]["numberOfSyncs"], 0);
        assert_eq!(details["configuration"]["syncPeriod"], "@daily");
        assert!(details["status"]["nextRun"].is_string());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pause_resume_schedule_and_run() {
        let (d, dir) = daemon("ops", None);
        let paused = route(
            &Method::Post,
            "/ops?sync=a.example.com&action=pause",
            None,
            &d,
        );
        assert_eq!(
            (paused.status, body(&paused)["paused"].clone()),
            (200, Value::Bool(true))
        );
        assert_eq!(
            body(&get(&d, "/list?type=active"))["synchronizers"],
            json!([])
        );
        let details = body(&get(&d, "/ops?sync=a.example.com&action=details"));
        assert_eq!(details["status"]["paused"], true);
        assert!(details["status"]["nextRun"].is_null());
        assert_eq!(
            get(&d, "/ops?sync=a.example.com&action=run").status,
            409,
            "no run while paused"
        );
        let resumed = body(&get(&d, "/ops?sync=a.example.com&action=resume"));
        assert!(resumed["nextRun"].is_string(), "{resumed}");
        let run = get(&d, "/ops?sync=a.example.com&action=run");
        assert_eq!(run.status, 202);
        assert_eq!(
            get(&d, "/ops?sync=a.example.com&action=run").status,
            409,
            "one run at a time"
        );
        let changed = get(
            &d,
            "/ops?sync=b.example.com:5000&action=schedule&period=*/5+*+*+*+*",
        );
        assert_eq!(changed.status, 200, "{}", changed.body);
        assert_eq!(body(&changed)["syncPeriod"], "*/5 * * * *");
        assert!(
            body(&changed)["message"]
                .as_str()
                .unwrap()
                .contains("not written to the configuration file")
        );
        let encoded = get(
            &d,
            "/ops?sync=b.example.com%3A5000&action=schedule&period=0%20*%2F2%20*%20*%20*",
        );
        assert_eq!(body(&encoded)["syncPeriod"], "0 */2 * * *");
        let bad = get(
            &d,
            "/ops?sync=b.example.com:5000&action=schedule&period=61+*+*+*+*",
        );
        assert_eq!(bad.status, 400);
        assert!(
            body(&bad)["error"]
                .as_str()
                .unwrap()
                .contains("minute field '61'")
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_say_what_is_valid() {
        let (d, dir) = daemon("errors", None);
        let cases: &[(&Method, &str, u16, &str)] = &[
            (
                &Method::Get,
                "/list",
                400,
                "missing 'type'; valid: configured, active",
            ),
            (
                &Method::Get,
                "/list?type=all",
                400,
                "unknown type 'all'; valid: configured, active",
            ),
            (
                &Method::Get,
                "/ops?action=details",
                400,
                "missing 'sync'; valid: a.example.com, b.example.com:5000",
            ),
            (
                &Method::Get,
                "/ops?sync=a.example.com",
                400,
                "missing 'action'; valid: details, pause, resume, run, schedule",
            ),
            (
                &Method::Get,
                "/ops?sync=a.example.com&action=stop",
                400,
                "unknown action 'stop'; valid: details, pause, resume, run, schedule",
            ),
            (
                &Method::Get,
                "/ops?sync=a.example.com&action=schedule",
                400,
                "missing 'period'",
            ),
            (
                &Method::Get,
                "/ops?sync=nope.example.com&action=details",
                404,
                "no synchronizer for 'nope.example.com'; configured: a.example.com, b.example.com:5000",
            ),
            (
                &Method::Put,
                "/ops?sync=a.example.com&action=pause",
                405,
                "method PUT not allowed on /ops; use GET, HEAD, POST, OPTIONS",
            ),
            (
                &Method::Delete,
                "/list?type=active",
                405,
                "method DELETE not allowed on /list; use GET, HEAD, OPTIONS",
            ),
            (
                &Method::Post,
                "/metrics",
                405,
                "method POST not allowed on /metrics; use GET, HEAD, OPTIONS",
            ),
            (&Method::Get, "/admin", 404, "no such endpoint '/admin'"),
        ];
        for (method, url, status, message) in cases {
            let r = route(method, url, None, &d);
            assert_eq!(r.status, *status, "{method} {url}: {}", r.body);
            let error = body(&r)["error"].as_str().unwrap().to_string();
            assert!(error.starts_with(message), "{method} {url}: {error}");
        }
        let r = route(
            &Method::Put,
            "/ops?sync=a.example.com&action=pause",
            None,
            &d,
        );
        assert!(
            r.headers
                .contains(&("Allow", "GET, HEAD, POST, OPTIONS".to_string()))
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bearer_token_guards_everything_but_healthz() {
        let (d, dir) = daemon("auth", Some("s3cret-token"));
        assert_eq!(get(&d, "/healthz").status, 200);
        let denied = [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cret"),
            Some("Bearer s3cret-token-and-more"),
            Some("Basic s3cret-token"),
            Some("s3cret-token"),
            Some("Bearer "),
        ];
        for header in denied {
            let r = route(&Method::Get, "/list?type=active", header, &d);
            assert_eq!(r.status, 401, "{header:?}");
            assert!(
                r.headers
                    .iter()
                    .any(|(k, v)| *k == "WWW-Authenticate" && v.starts_with("Bearer"))
            );
            assert!(!r.body.contains("s3cret"));
        }
        for url in [
            "/list?type=configured",
            "/metrics",
            "/ops?sync=a.example.com&action=details",
        ] {
            assert_eq!(
                route(&Method::Get, url, Some("Bearer s3cret-token"), &d).status,
                200,
                "{url}"
            );
            assert_eq!(
                route(&Method::Get, url, Some("bearer  s3cret-token "), &d).status,
                200,
                "{url}"
            );
            assert_eq!(route(&Method::Get, url, None, &d).status, 401, "{url}");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let (d, dir) = daemon("metrics", None);
        let r = get(&d, "/metrics");
        assert!(r.content_type.starts_with("text/plain; version=0.0.4"));
        for line in [
            "# TYPE picture_book_runs_total counter",
            "picture_book_runs_total{registry=\"a.example.com\",outcome=\"success\"} 0",
            "picture_book_paused{registry=\"b.example.com:5000\"} 0",
            "# TYPE picture_book_next_run_timestamp_seconds gauge",
        ] {
            assert!(
                r.body.lines().any(|l| l == line),
                "missing {line}:\n{}",
                r.body
            );
        }
        assert!(r.body.lines().any(|l| {
            l.starts_with("picture_book_next_run_timestamp_seconds{registry=\"a.example.com\"} 1")
        }));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn comparison_and_decoding() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcabc", b"abc"));
        assert!(!constant_time_eq(b"", b""));
        assert_eq!(decode("a%20b+c%2a").as_deref(), Ok("a b c*"));
        assert_eq!(decode("%C3%A9").as_deref(), Ok("é"));
        assert_eq!(decode("%252F").as_deref(), Ok("%2F"), "decoded once");
        for (bad, why) in [
            ("%zz", "bad percent-encoding '%zz'"),
            ("a%4", "bad percent-encoding '%4'"),
            ("%", "bad percent-encoding '%'"),
            ("%ff", "not UTF-8 once percent-decoded"),
            ("a%00b", "holds a control character"),
            ("a%0D%0AX-Evil:1", "holds a control character"),
        ] {
            assert_eq!(decode(bad), Err(why.to_string()), "{bad}");
        }
        let q = Query::parse("x=1&type=active&&flag&empty=").unwrap();
        assert_eq!(q.get("type"), Some("active"));
        assert_eq!(q.get("flag"), None, "no value counts as none");
        assert_eq!(q.get("empty"), None);
        assert_eq!(q.get("missing"), None);
        assert!(Query::parse("").unwrap().0.is_empty());
    }

    /// Asserts status and error message of `method url` (without a token).
    fn refuses(d: &Daemon, method: &Method, url: &str, status: u16, message: &str) -> Reply {
        let r = route(method, url, None, d);
        assert_eq!(r.status, status, "{method} {url}: {}", r.body);
        let error = body(&r)["error"].as_str().unwrap().to_string();
        assert!(error.starts_with(message), "{method} {url}: {error}");
        r
    }

    #[test]
    fn odd_queries_are_refused_by_name() {
        let (d, dir) = daemon("queries", None);
        let cases: &[(&str, u16, &str)] = &[
            ("/list?type", 400, "missing 'type'"),
            ("/list?&&==", 400, "parameter '==' has no name"),
            ("/list?type=active%3F", 400, "unknown type 'active?'"),
            ("/list?type=%E9", 400, "parameter 'type=%E9': not UTF-8"),
            (
                "/ops?sync=%zz&action=details",
                400,
                "parameter 'sync=%zz': bad percent-encoding '%zz'",
            ),
            (
                "/ops?sync=a.example.com%00&action=details",
                400,
                "parameter 'sync=a.example.com%00': holds a control character",
            ),
            (
                "/ops?sync=a.example.com&sync=b.example.com:5000&action=details",
                400,
                "parameter 'sync' is given more than once",
            ),
            (
                "/ops?sync=a.example.com&action=details&action=pause",
                400,
                "parameter 'action' is given more than once",
            ),
            (
                "/ops?sync=a.example.com%2F&action=details",
                404,
                "no synchronizer for 'a.example.com/'",
            ),
            (
                "/ops?sync=a.example.com%252F&action=details",
                404,
                "no synchronizer for 'a.example.com%2F'",
            ),
            (
                "/ops?sync=a.example.com%26action%3Dpause",
                400,
                "missing 'action'",
            ),
            (
                "/list%3Ftype=active",
                404,
                "no such endpoint '/list%3Ftype=active'",
            ),
            ("/%6Cist?type=active", 404, "no such endpoint '/%6Cist'"),
            ("/l\u{ef}st", 404, "no such endpoint '/l\u{ef}st'"),
        ];
        for (url, status, message) in cases {
            refuses(&d, &Method::Get, url, *status, message);
        }
        let long = format!("/list?type=active&pad={}", "x".repeat(100_000));
        refuses(&d, &Method::Get, &long, 414, "the URL is 100022 bytes long");
        let details = body(&get(&d, "/ops?sync=a.example.com&action=details"));
        assert_eq!(details["status"]["paused"], false, "nothing was paused");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn head_options_and_unknown_methods() {
        let (d, dir) = daemon("methods", Some("s3cret-token"));
        let token = Some("Bearer s3cret-token");
        for url in [
            "/list?type=active",
            "/ops?sync=a.example.com&action=details",
            "/metrics",
            "/healthz",
        ] {
            let head = route(&Method::Head, url, token, &d);
            let get = route(&Method::Get, url, token, &d);
            assert_eq!(
                (head.status, head.content_type),
                (200, get.content_type),
                "HEAD {url}"
            );
        }
        let r = refuses(
            &d,
            &"BREW".parse().unwrap(),
            "/list?type=active",
            501,
            "method BREW is not implemented; the API takes GET, HEAD, POST, OPTIONS",
        );
        assert!(r.headers.contains(&("Allow", METHODS.to_string())));
        let r = route(
            &Method::Head,
            "/ops?sync=a.example.com&action=pause",
            token,
            &d,
        );
        assert_eq!(r.status, 405, "{}", r.body);
        let error = body(&r)["error"].to_string();
        assert!(
            error.contains("use GET or POST for action=pause"),
            "{error}"
        );
        let details = route(
            &Method::Get,
            "/ops?sync=a.example.com&action=details",
            token,
            &d,
        );
        assert_eq!(body(&details)["status"]["paused"], false, "HEAD paused it");
        for (url, allow) in [
            ("/ops", "GET, HEAD, POST, OPTIONS"),
            ("/list", "GET, HEAD, OPTIONS"),
            ("*", METHODS),
        ] {
            let r = route(&Method::Options, url, token, &d);
            assert_eq!(r.status, 204, "OPTIONS {url}");
            assert!(
                r.headers.contains(&("Allow", allow.to_string())),
                "{url}: {:?}",
                r.headers
            );
        }
        assert_eq!(route(&Method::Options, "/ops", None, &d).status, 401);
        assert_eq!(route(&Method::Options, "/healthz", None, &d).status, 204);
        assert_eq!(route(&Method::Options, "*", None, &d).status, 204);
        fs::remove_dir_all(dir).unwrap();
    }
}
