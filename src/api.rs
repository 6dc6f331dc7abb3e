//! The HTTP control API of `picture-book sync`, served by tiny_http on its
//! own thread: the seed's `/list` and `/ops` endpoints with their query
//! parameters, plus `/healthz` and `/metrics`. Requests are routed by
//! [`route`], a plain function of method, URL and `Authorization` header, so
//! it can be tested without a socket. What the operations do is `daemon`'s
//! business.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response};

use crate::config::Api;
use crate::daemon::{Daemon, Refusal};
use crate::error::Error;
use crate::secret::Secret;

const LIST_TYPES: &str = "configured, active";
const ACTIONS: &str = "details, pause, resume, run, schedule";
const ENDPOINTS: &str = "/list, /ops, /healthz, /metrics";

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

    fn method_not_allowed(allow: &'static str) -> Reply {
        let mut reply = Reply::error(405, format!("method not allowed; use {allow}"));
        reply.headers.push(("Allow", allow.replace(" or ", ", ")));
        reply
    }
}

/// The running API server.
pub struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `settings.address:settings.port` and serves `daemon` on a thread.
pub fn serve(daemon: Arc<Daemon>, settings: &Api) -> Result<Server, Error> {
    let address = SocketAddr::new(settings.address, settings.port);
    let server = tiny_http::Server::http(address).map_err(|e| Error::ApiBind {
        address: address.to_string(),
        detail: e.to_string(),
    })?;
    if settings.token.is_none() && !settings.address.is_loopback() {
        log::warn!(
            "the API listens on {address} without authentication: anyone who can reach it can pause and reconfigure the synchronizers; set api.enableAuth"
        );
    }
    log::info!("API listening on http://{address}");
    let server = Arc::new(server);
    let serving = Arc::clone(&server);
    let thread = thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                handle(request, &daemon);
            }
        })
        .map_err(|e| Error::ApiBind {
            address: address.to_string(),
            detail: e.to_string(),
        })?;
    Ok(Server {
        server,
        thread: Some(thread),
    })
}

fn handle(request: Request, daemon: &Daemon) {
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let reply = route(
        request.method(),
        request.url(),
        authorization.as_deref(),
        daemon,
    );
    log::debug!(
        "API {} {} -> {}",
        request.method(),
        request.url().split('?').next().unwrap_or_default(),
        reply.status
    );
    let mut response = Response::from_string(reply.body).with_status_code(reply.status);
    let headers =
        std::iter::once(("Content-Type", reply.content_type.to_string())).chain(reply.headers);
    for (name, value) in headers {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        log::debug!("API: could not send an answer: {e}");
    }
}

/// Answers one request.
pub fn route(method: &Method, url: &str, authorization: Option<&str>, daemon: &Daemon) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    if path == "/healthz" {
        return match method {
            Method::Get | Method::Head => Reply {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                body: "ok\n".into(),
                headers: Vec::new(),
            },
            _ => Reply::method_not_allowed("GET"),
        };
    }
    if let Some(token) = daemon.api_token() {
        if !authorized(authorization, &token) {
            let mut reply = Reply::error(
                401,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            );
            reply
                .headers
                .push(("WWW-Authenticate", "Bearer realm=\"picture-book\"".into()));
            return reply;
        }
    }
    let param = |name: &str| query_param(query, name);
    match path {
        "/list" => {
            if *method != Method::Get {
                return Reply::method_not_allowed("GET");
            }
            match param("type").as_deref() {
                Some("configured") => Reply::json(200, &daemon.configured()),
                Some("active") => Reply::json(200, &daemon.active()),
                Some(other) => {
                    Reply::error(400, format!("unknown type '{other}'; valid: {LIST_TYPES}"))
                }
                None => Reply::error(400, format!("missing 'type'; valid: {LIST_TYPES}")),
            }
        }
        "/ops" => {
            if !matches!(method, Method::Get | Method::Post) {
                return Reply::method_not_allowed("GET or POST");
            }
            let Some(host) = param("sync").filter(|h| !h.is_empty()) else {
                let valid = daemon.hostnames().join(", ");
                return Reply::error(400, format!("missing 'sync'; valid: {valid}"));
            };
            let result = match param("action").as_deref() {
                Some("details") => daemon.details(&host),
                Some("pause") => daemon.pause(&host),
                Some("resume") => daemon.resume(&host),
                Some("run") => daemon.run_now(&host),
                Some("schedule") => match param("period").filter(|p| !p.trim().is_empty()) {
                    Some(period) => daemon.set_schedule(&host, &period),
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
                Ok(body) if param("action").as_deref() == Some("run") => Reply::json(202, &body),
                Ok(body) => Reply::json(200, &body),
                Err(refusal) => Reply::refused(refusal),
            }
        }
        "/metrics" => {
            if *method != Method::Get {
                return Reply::method_not_allowed("GET");
            }
            Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: daemon.metrics(),
                headers: Vec::new(),
            }
        }
        _ => Reply::error(
            404,
            format!("no such endpoint '{path}'; endpoints: {ENDPOINTS}"),
        ),
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

/// The first value of `name` in a query string, percent-decoded (`+` is a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::Progress;
    use crate::docker::Docker;
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
            docker: Docker::new(cancel.clone()),
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
                "method not allowed; use GET or POST",
            ),
            (
                &Method::Delete,
                "/list?type=active",
                405,
                "method not allowed; use GET",
            ),
            (
                &Method::Post,
                "/metrics",
                405,
                "method not allowed; use GET",
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
        assert!(r.headers.contains(&("Allow", "GET, POST".to_string())));
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
        assert_eq!(decode("a%20b+c%2a%zz%4"), "a b c*%zz%4");
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(
            query_param("x=1&type=active&type=configured", "type").as_deref(),
            Some("active")
        );
        assert_eq!(query_param("flag&y=2", "flag").as_deref(), Some(""));
        assert_eq!(query_param("", "type"), None);
    }
}
