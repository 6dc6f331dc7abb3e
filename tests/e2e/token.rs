//! A read-only front for a real registry that answers as Docker Hub, GHCR or
//! Harbor do: every `/v2/` request without a valid bearer token gets a 401
//! with a `Bearer realm=...,service=...,scope=...` challenge, and `/token`
//! hands out tokens for Basic credentials, each good for one repository
//! scope and a limited time. Valid requests are passed to the registry
//! behind it. The distribution registry's own token mode needs signed JWTs,
//! so this front stands in for the token service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use tiny_http::{Header, Method, Response, Server};

use crate::harness::{Registry, listen};

/// A request the front answered.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `HEAD`.
    pub method: String,
    /// The URL path and query.
    pub url: String,
    /// `User-Agent`.
    pub agent: String,
    /// The status answered.
    pub status: u16,
}

impl Seen {
    /// Whether picture-book sent it (rather than docker).
    pub fn ours(&self) -> bool {
        self.agent.starts_with("picture-book/")
    }
}

/// The running front.
pub struct TokenFront {
    /// `127.0.0.1:PORT`.
    pub host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TokenFront {
    /// Starts a front for `upstream` that gives `user`/`pass` tokens valid for
    /// `life` seconds.
    pub fn start(upstream: &Registry, user: &str, pass: &str, life: u64) -> TokenFront {
        let server = Server::from_listener(listen(), None).unwrap();
        let host = format!("127.0.0.1:{}", server.server_addr().to_ip().unwrap().port());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let upstream = upstream.host.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let front = host.clone();
        thread::spawn(move || {
            let mut tokens: HashMap<String, (String, Instant)> = HashMap::new();
            for request in server.incoming_requests() {
                let header = |name: &str| {
                    request
                        .headers()
                        .iter()
                        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                        .map(|h| h.value.as_str().to_string())
                        .unwrap_or_default()
                };
                let url = request.url().to_string();
                let method = request.method().clone();
                let agent = header("User-Agent");
                let response = if url.starts_with("/token") {
                    if header("Authorization") == expected {
                        let scope = query(&url, "scope");
                        let token = format!("tok-{}", tokens.len() + 1);
                        tokens.insert(
                            token.clone(),
                            (scope, Instant::now() + Duration::from_secs(life)),
                        );
                        json(
                            200,
                            &format!(r#"{{"token":"{token}","expires_in":{life}}}"#),
                        )
                    } else {
                        json(401, r#"{"details":"incorrect username or password"}"#)
                    }
                } else {
                    let scope = scope_of(&url);
                    let bearer = header("Authorization");
                    let valid = bearer
                        .strip_prefix("Bearer ")
                        .and_then(|t| tokens.get(t))
                        .is_some_and(|(s, until)| {
                            (url == "/v2/" || *s == scope) && Instant::now() < *until
                        });
                    if valid {
                        forward(&upstream, &method, &url, &header("Accept"))
                    } else {
                        let challenge = format!(
                            r#"Bearer realm="http://{front}/token",service="test-registry",scope="{scope}""#
                        );
                        json(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
                            .with_header(Header::from_bytes("WWW-Authenticate", challenge).unwrap())
                    }
                };
                log.lock().unwrap().push(Seen {
                    method: method.to_string(),
                    url: url.clone(),
                    agent,
                    status: response.status_code().0,
                });
                let _ = request.respond(response);
            }
        });
        TokenFront { host, seen }
    }

    /// Every request answered so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// picture-book's requests to `/token`.
    pub fn our_token_requests(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.ours() && s.url.starts_with("/token"))
            .collect()
    }
}

fn json(status: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(body.as_bytes().to_vec())
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", "application/json").unwrap())
        .with_header(Header::from_bytes("Docker-Distribution-Api-Version", "registry/2.0").unwrap())
}

fn query(url: &str, name: &str) -> String {
    let raw = url
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap_or_default();
    raw.replace("%3A", ":")
        .replace("%2F", "/")
        .replace("%3a", ":")
        .replace("%2f", "/")
}

/// `repository:<name>:pull` for a `/v2/<name>/manifests|blobs/...` URL.
fn scope_of(url: &str) -> String {
    let rest = url.trim_start_matches("/v2/");
    let name = ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .find_map(|m| rest.split_once(m).map(|(n, _)| n))
        .unwrap_or_default();
    format!("repository:{name}:pull")
}

/// Passes a GET or HEAD on to the registry and returns its answer.
fn forward(
    upstream: &str,
    method: &Method,
    url: &str,
    accept: &str,
) -> Response<std::io::Cursor<Vec<u8>>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let target = format!("http://{upstream}{url}");
    let req = match method {
        Method::Head => agent.head(&target),
        Method::Get => agent.get(&target),
        _ => return Response::from_data(Vec::new()).with_status_code(405),
    };
    let mut resp = match req.header("Accept", accept).call() {
        Ok(r) => r,
        Err(_) => return Response::from_data(Vec::new()).with_status_code(502),
    };
    let status = resp.status().as_u16();
    let mut headers = Vec::new();
    for name in [
        "Content-Type",
        "Docker-Content-Digest",
        "Docker-Distribution-Api-Version",
    ] {
        if let Some(v) = resp.headers().get(name).and_then(|v| v.to_str().ok()) {
            headers.push(Header::from_bytes(name, v).unwrap());
        }
    }
    let body = if *method == Method::Head {
        Vec::new()
    } else {
        resp.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap_or_default()
    };
    let mut response = Response::from_data(body).with_status_code(status);
    for h in headers {
        response.add_header(h);
    }
    response
}
