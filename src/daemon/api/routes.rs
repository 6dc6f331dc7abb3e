//! The API's routing: the seed's `/list` and `/ops` endpoints with their
//! query parameters, plus `/healthz`, `/metrics` and the status page at `/`,
//! the methods each takes and the bearer token that guards them. [`route`] is a plain function of
//! method, URL and `Authorization` header, so it is tested without a
//! socket. What the operations do is `daemon`'s business; how answers reach
//! the client, `writers`'.

use serde_json::{Value, json};
use tiny_http::Method;

use crate::daemon::api::page;
use crate::daemon::api::query::Query;
use crate::daemon::{Daemon, Refusal};
use crate::secret::Secret;

const LIST_TYPES: &str = "configured, active";
const ACTIONS: &str = "details, pause, resume, run, schedule";
/// Every method the API knows; others are answered 501.
const METHODS: &str = "GET, HEAD, POST, OPTIONS";
/// The longest URL answered; longer ones get 414.
const MAX_URL: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    List,
    Ops,
    Healthz,
    Metrics,
    Page,
}

impl Endpoint {
    /// Whether it is answered without the token: `/healthz` for probes,
    /// and the page, which holds no data and asks for the token itself.
    fn open(self) -> bool {
        matches!(self, Endpoint::Healthz | Endpoint::Page)
    }
}

/// The endpoints and the methods each takes.
const ENDPOINTS: [(&str, Endpoint, &str); 5] = [
    ("/list", Endpoint::List, "GET, HEAD, OPTIONS"),
    ("/ops", Endpoint::Ops, "GET, HEAD, POST, OPTIONS"),
    ("/healthz", Endpoint::Healthz, "GET, HEAD, OPTIONS"),
    ("/metrics", Endpoint::Metrics, "GET, HEAD, OPTIONS"),
    ("/", Endpoint::Page, "GET, HEAD, OPTIONS"),
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

    /// An error answer: `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
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
    if endpoint.is_none_or(|(_, e, _)| !e.open()) && !server_wide {
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
        Endpoint::Page => page::reply(),
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
        Some("run") => match query.get("prune") {
            None | Some("true") => daemon.run_now(host, true),
            Some("false") => daemon.run_now(host, false),
            Some(other) => Err(Refusal::Invalid(format!(
                "prune: '{other}' is not true or false"
            ))),
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::Progress;
    use crate::process::Cancel;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::sync::Arc;

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
    fn the_page_is_served_without_the_token_and_holds_no_data() {
        let (d, dir) = daemon("page", Some("s3cret-token"));
        let page = get(&d, "/");
        assert_eq!(page.status, 200);
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        assert!(!page.body.contains("a.example.com"), "no data in the page");
        assert!(
            page.headers
                .iter()
                .any(|(k, v)| *k == "Content-Security-Policy" && v.contains("script-src 'sha256-"))
        );
        assert_eq!(get(&d, "/list?type=configured").status, 401);
        assert_eq!(route(&Method::Post, "/", None, &d).status, 405);
        assert_eq!(route(&Method::Head, "/", None, &d).status, 200);
        assert_eq!(route(&Method::Options, "/", None, &d).status, 204);
        assert_eq!(get(&d, "/index.html").status, 401, "only / is open");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_token_comparison_takes_no_shortcut() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcabc", b"abc"));
        assert!(!constant_time_eq(b"", b""));
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
