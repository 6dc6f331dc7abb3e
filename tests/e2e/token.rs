//! A read-only front for a real registry that answers as Docker Hub, GHCR or
//! Harbor do: every `/v2/` request without a valid bearer token gets a 401
//! with a `Bearer realm=...,service=...,scope=...` challenge, and `/token`
//! hands out tokens for Basic credentials. Valid requests are passed to the
//! registry behind it. The distribution registry's own token mode needs
//! signed JWTs, so this front stands in for the token service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use base64::Engine;
use tiny_http::{Header, Method, Response, Server};

use crate::harness::Registry;

/// A token request seen by the front: its user agent and whether its
/// credentials were right.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `User-Agent`.
    pub agent: String,
    /// The `scope` asked for.
    pub scope: String,
    /// Whether the Basic credentials were the right ones.
    pub accepted: bool,
}

/// The running front.
pub struct TokenFront {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Every token request, in order.
    pub token_requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenFront {
    /// Starts a front for `upstream` that gives tokens to `user`/`pass`.
    pub fn start(upstream: &Registry, user: &str, pass: &str) -> TokenFront {
        let server = Server::http("127.0.0.1:0").unwrap();
        let host = format!("127.0.0.1:{}", server.server_addr().to_ip().unwrap().port());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let upstream = upstream.host.clone();
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&token_requests);
        let issued = Arc::new(AtomicUsize::new(0));
        let front = host.clone();
        thread::spawn(move || {
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
                if url.starts_with("/token") {
                    let accepted = header("Authorization") == expected;
                    let scope = url
                        .split("scope=")
                        .nth(1)
                        .unwrap_or_default()
                        .split('&')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    seen.lock().unwrap().push(TokenRequest {
                        agent: header("User-Agent"),
                        scope,
                        accepted,
                    });
                    let response = if accepted {
                        let n = issued.fetch_add(1, Ordering::Relaxed) + 1;
                        Response::from_string(format!(r#"{{"token":"tok-{n}","expires_in":300}}"#))
                            .with_status_code(200)
                    } else {
                        Response::from_string(r#"{"details":"incorrect username or password"}"#)
                            .with_status_code(401)
                    };
                    let _ = request.respond(response);
                    continue;
                }
                let token_ok = header("Authorization")
                    .strip_prefix("Bearer tok-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| n >= 1 && n <= issued.load(Ordering::Relaxed));
                if !token_ok {
                    let repo = url
                        .trim_start_matches("/v2/")
                        .split("/manifests/")
                        .next()
                        .unwrap_or_default()
                        .split("/blobs/")
                        .next()
                        .unwrap_or_default();
                    let challenge = if url == "/v2/" {
                        format!(r#"Bearer realm="http://{front}/token",service="test-registry""#)
                    } else {
                        format!(
                            r#"Bearer realm="http://{front}/token",service="test-registry",scope="repository:{repo}:pull""#
                        )
                    };
                    let response = Response::from_string(r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
                        .with_status_code(401)
                        .with_header(Header::from_bytes("WWW-Authenticate", challenge).unwrap())
                        .with_header(
                            Header::from_bytes("Docker-Distribution-Api-Version", "registry/2.0")
                                .unwrap(),
                        );
                    let _ = request.respond(response);
                    continue;
                }
                let response = forward(&upstream, request.method(), &url, &header("Accept"));
                let _ = request.respond(response);
            }
        });
        TokenFront {
            host,
            token_requests,
        }
    }

    /// Token requests picture-book made.
    pub fn ours(&self) -> Vec<TokenRequest> {
        self.token_requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.agent.starts_with("picture-book/"))
            .cloned()
            .collect()
    }
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
