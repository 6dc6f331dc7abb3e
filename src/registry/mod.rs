//! A small, blocking client for the registry HTTP API (OCI distribution,
//! Docker Registry V2), split by job: `transport` (TLS, schemes, timeouts,
//! the retries of small requests), `backoff` (the retry loop and waits that
//! those retries and `run::retry` share), `auth` (challenges and tokens),
//! `manifests` (exact bytes, media type and digest), `blobs` (HEAD,
//! mount, streamed and chunked upload) and `delete` (manifests by tag or
//! digest). This file holds the client that
//! ties them together, the repositories it addresses, and the errors it
//! makes of what registries answer. Deciding what to copy is for `engine`
//! and `freshness`.

pub mod auth;
pub mod backoff;
pub mod blobs;
pub mod delete;
pub mod limits;
pub mod manifests;
pub mod quirks;
pub mod resolve;
pub mod transport;

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;
use ureq::http;

pub use auth::Challenge;
pub use delete::Deletion;
pub use manifests::Manifest;
use transport::{Body, Request, Transport};

use crate::credentials::Credentials;
use crate::error::Error;
use crate::reference::Reference;

/// A repository as the registry API addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// The API host: `registry-1.docker.io` for Docker Hub.
    pub host: String,
    /// The path: `library/alpine` for Docker Hub's `alpine`.
    pub path: String,
    /// Whether plain HTTP (and unverified HTTPS) is allowed.
    pub insecure: bool,
    /// Whether picture-book pushes here: its tokens are asked for `pull,push`,
    /// so that credentials that cannot push are refused before anything moves.
    pub push: bool,
    /// Whether the requests are the native engine's copy: their user agent
    /// says so (`picture-book/VERSION native`), checks' do not.
    pub copying: bool,
}

impl Repository {
    /// Where the source `reference` lives. Docker Hub is `registry-1.docker.io`
    /// and its one-component names are under `library/`.
    pub fn of(reference: &Reference, insecure: &dyn Fn(&str) -> bool) -> Repository {
        let domain = reference.domain().unwrap_or("docker.io");
        let host = if reference.on_docker_hub() {
            "registry-1.docker.io".to_string()
        } else {
            domain.to_string()
        };
        let path = reference.full_path();
        Repository {
            insecure: insecure(domain) || is_loopback(&host),
            host,
            path,
            push: false,
            copying: false,
        }
    }

    /// Where the target `name` (`host/path`, without tag) lives; Docker Hub
    /// names are expanded as for sources.
    pub fn target(name: &str, insecure: bool) -> Repository {
        let repo = match Reference::parse(name) {
            Ok(r) => Repository::of(&r, &|_| insecure),
            Err(_) => {
                let (host, path) = name.split_once('/').unwrap_or((name, ""));
                Repository {
                    host: host.to_string(),
                    path: path.to_string(),
                    insecure: insecure || is_loopback(host),
                    push: false,
                    copying: false,
                }
            }
        };
        Repository { push: true, ..repo }
    }

    /// The same repository, for the native engine's copy.
    pub fn for_copying(self) -> Repository {
        Repository {
            copying: true,
            ..self
        }
    }

    /// The token scope picture-book needs here.
    fn scope(&self) -> String {
        let actions = if self.push { "pull,push" } else { "pull" };
        format!("repository:{}:{actions}", self.path)
    }
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port: docker
/// treats these as insecure registries by default.
pub fn is_loopback(host: &str) -> bool {
    if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
    {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The registry client; one per process, shared by all threads.
pub struct Client {
    transport: Transport,
    auth: auth::Auth,
    quirks: quirks::Quirks,
    limits: limits::Known,
}

impl Default for Client {
    fn default() -> Self {
        let dirs: Vec<PathBuf> = transport::CERTS_DIRS.iter().map(PathBuf::from).collect();
        Client::new(&dirs)
    }
}

impl Client {
    /// A client trusting the system CAs plus those under `<dir>/<host>/`.
    pub fn new(certs_dirs: &[PathBuf]) -> Client {
        Client {
            transport: Transport::new(certs_dirs),
            auth: auth::Auth::default(),
            quirks: quirks::Quirks::default(),
            limits: limits::Known::default(),
        }
    }

    /// Closes the idle connections, for a daemon that has nothing to do.
    pub fn forget_idle(&self) {
        self.transport.forget_idle();
    }

    /// The challenges learnt so far, by host, to keep for the next process.
    pub fn challenges(&self) -> Vec<(String, Challenge)> {
        self.auth.challenges()
    }

    /// The hosts that answered without asking for credentials, to keep for
    /// the next process.
    pub fn open_hosts(&self) -> Vec<String> {
        self.auth.open_hosts()
    }

    /// Hosts an earlier process found open.
    pub fn remember_open(&self, hosts: impl IntoIterator<Item = String>) {
        self.auth.remember_open(hosts);
    }

    /// Challenges an earlier process learnt, so that no request of this one
    /// has to be refused first.
    pub fn remember_challenges(&self, known: impl IntoIterator<Item = (String, Challenge)>) {
        self.auth.remember(known);
    }

    /// Sends `req` to `repo` with the scopes it needs (its own, and `extra`
    /// ones). Known challenges are answered before the first try (a token
    /// fetched for the scopes, or Basic credentials), so a repository costs
    /// one request; a new challenge is learnt from a 401 (or, when that
    /// carries none, from `GET /v2/`, where some registries alone give it)
    /// and answered once, when the body can be sent again. A stream is sent
    /// only once the host's challenge is known. A URL on another host (an
    /// upload `Location` at a storage front) gets no `Authorization`: the
    /// registry's credentials are for the registry alone. While a host's
    /// challenge is unknown, its first request goes alone: the others wait
    /// for what it learns.
    fn send(
        &self,
        repo: &Repository,
        req: Request<'_>,
        creds: Option<&Credentials>,
        extra: &[String],
    ) -> Result<http::Response<ureq::Body>, Error> {
        let req = agent(repo, req);
        if elsewhere(repo, req.target) {
            log::debug!(
                "{}: a {} to another host, without the registry's credentials",
                repo.host,
                req.method.name()
            );
            return self.transport.send(&repo.host, repo.insecure, req, None);
        }
        let _first = self.auth.first_request(&repo.host);
        if !req.body.replayable() && !self.auth.knows(&repo.host) {
            let root = agent(repo, Request::new(transport::Method::Get, "/v2/"));
            self.answered(repo, root, creds, &[])?;
        }
        self.answered(repo, req, creds, extra)
    }

    /// Sends `req` to `repo`'s registry with the `Authorization` its known
    /// challenge asks for, and once more after a 401 that taught a new one.
    fn answered(
        &self,
        repo: &Repository,
        mut req: Request<'_>,
        creds: Option<&Credentials>,
        extra: &[String],
    ) -> Result<http::Response<ureq::Body>, Error> {
        let mut scopes = vec![repo.scope()];
        scopes.extend_from_slice(extra);
        let mut answered = false;
        loop {
            let authorization = self.auth.authorization(
                &self.transport,
                &repo.host,
                repo.insecure,
                &scopes,
                creds,
            )?;
            let replayable = req.body.replayable();
            let again = Request {
                method: req.method,
                target: req.target,
                headers: req.headers.clone(),
                body: match &req.body {
                    Body::Bytes(b) => Body::Bytes(b),
                    _ => Body::Empty,
                },
                stream: req.stream,
            };
            let resp =
                self.transport
                    .send(&repo.host, repo.insecure, req, authorization.as_ref())?;
            if authorization.is_none() && resp.status().as_u16() != 401 {
                self.auth.open(&repo.host);
            }
            if resp.status().as_u16() != 401 || answered || !replayable {
                return Ok(resp);
            }
            answered = true;
            if !self.auth.learn(&repo.host, &resp) && !self.learn_at_root(repo) {
                return Ok(resp);
            }
            req = again;
        }
    }

    /// Learns `repo`'s challenge from `GET /v2/` after a 401 that carried
    /// none: some registries give it there alone (docker, containerd and
    /// skopeo always ask there first). Asked once per refused request and
    /// without credentials, so an open host, or one that answers there
    /// without a challenge either, ends in the refusal, never in a loop.
    fn learn_at_root(&self, repo: &Repository) -> bool {
        let root = Request::new(transport::Method::Get, "/v2/");
        match self.transport.send(&repo.host, repo.insecure, root, None) {
            Ok(resp) if resp.status().as_u16() == 401 => {
                let learnt = self.auth.learn(&repo.host, &resp);
                if learnt {
                    log::debug!("{}: learnt its challenge at /v2/", repo.host);
                }
                learnt
            }
            Ok(_) => false,
            Err(e) => {
                log::debug!("{}: asking /v2/ for a challenge: {e}", repo.host);
                false
            }
        }
    }
}

/// `req` with the native engine's user agent when it is part of a copy.
fn agent<'r>(repo: &Repository, mut req: Request<'r>) -> Request<'r> {
    if repo.copying {
        req.headers
            .push(("User-Agent", transport::COPY_AGENT.clone()));
    }
    req
}

/// Whether `target` is a whole URL on another host than `repo`'s (an
/// upload `Location` at a storage front); default ports do not count.
fn elsewhere(repo: &Repository, target: &str) -> bool {
    let Some((scheme, rest)) = target.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    let bare = |a: &str| {
        a.strip_suffix(default)
            .filter(|_| !default.is_empty())
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    bare(authority) != bare(&repo.host)
}

/// An error for `repo`'s registry that is not an HTTP answer.
fn fail(repo: &Repository, detail: String) -> Error {
    Error::registry(&repo.host, detail)
}

/// An error for a registry's answer `status` to `what`, with the code and
/// message of the OCI error body it sent, if any.
fn refused(repo: &Repository, mut resp: http::Response<ureq::Body>, what: &str) -> Error {
    let status = resp.status().as_u16();
    let mut text = String::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(64 << 10)
        .read_to_string(&mut text);
    let first = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["errors"].get(0).cloned());
    let code = first
        .as_ref()
        .and_then(|e| e["code"].as_str())
        .map(String::from);
    let message = first
        .as_ref()
        .and_then(|e| e["message"].as_str())
        .map(|m| crate::error::excerpt(m, 200));
    let why = match (status, &code) {
        (_, Some(code)) => match &message {
            Some(m) => format!("{code}: {m}"),
            None => code.clone(),
        },
        (401, None) => "unauthorized: check the credentials".into(),
        (403, None) => "denied".into(),
        (429, None) => "too many requests (rate limited)".into(),
        _ => "unexpected answer".into(),
    };
    let retry_after = transport::retry_after(&resp);
    Error::Registry {
        host: repo.host.clone(),
        status: Some(status),
        code,
        detail: format!("{status} for {what}: {why}"),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(text: &str) -> Repository {
        Repository::of(&Reference::parse(text).unwrap(), &|_| false)
    }

    #[test]
    fn docker_hub_names_are_expanded() {
        let r = repo("alpine:3.19");
        assert_eq!(
            (r.host.as_str(), r.path.as_str(), r.insecure),
            ("registry-1.docker.io", "library/alpine", false)
        );
        assert_eq!(repo("docker.io/bitnami/redis").path, "bitnami/redis");
        assert_eq!(repo("index.docker.io/nginx").path, "library/nginx");
        assert_eq!(repo("quay.io/a/b").host, "quay.io");
        assert!(repo("127.0.0.1:5000/x").insecure);
        assert!(repo("localhost/x").insecure);
        let marked = Repository::of(&Reference::parse("reg.lan:5000/x").unwrap(), &|h| {
            h == "reg.lan:5000"
        });
        assert!(marked.insecure);
        let hub = Repository::target("docker.io/mirror/x", false);
        assert_eq!(
            (hub.host.as_str(), hub.path.as_str()),
            ("registry-1.docker.io", "mirror/x")
        );
        let t = Repository::target("127.0.0.1:5001/mirror/x/y", false);
        assert_eq!(
            (t.host.as_str(), t.path.as_str(), t.insecure),
            ("127.0.0.1:5001", "mirror/x/y", true)
        );
        assert_eq!(t.scope(), "repository:mirror/x/y:pull,push");
        assert_eq!(repo("quay.io/a/b").scope(), "repository:a/b:pull");
    }

    #[test]
    fn credentials_stay_on_the_registry_host() {
        let r = Repository::target("reg.example.com/mirror/x", false);
        for same in [
            "/v2/mirror/x/blobs/uploads/1",
            "https://reg.example.com/v2/mirror/x/blobs/uploads/1?_state=a",
            "https://REG.example.com:443/v2/u",
            "http://reg.example.com:80/v2/u",
        ] {
            assert!(!elsewhere(&r, same), "{same}");
        }
        for other in [
            "https://storage.example.com/upload/1?sig=x",
            "https://reg.example.com:8443/v2/u",
            "https://reg.example.com.evil.io/v2/u",
            "https://user@storage.example.com/u",
        ] {
            assert!(elsewhere(&r, other), "{other}");
        }
        let p = Repository::target("127.0.0.1:5000/mirror/x", false);
        assert!(!elsewhere(&p, "http://127.0.0.1:5000/v2/u"));
        assert!(elsewhere(&p, "http://127.0.0.1:5001/v2/u"));
    }

    #[test]
    fn loopback_hosts() {
        for yes in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "reg.io",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }
}
