//! How picture-book reaches a registry over HTTP: HTTPS with the system's
//! CA store plus `certs.d/<host>/*.crt` (docker's and podman's), plain HTTP
//! only to loopback and insecure registries (remembering per host which
//! scheme worked), and two kinds of agents. Small requests (manifests,
//! tokens, checks) have a 20 s limit each and are tried again after a 429 or
//! 503 as `Retry-After` says (through `backoff`'s loop, the one that also
//! retries whole steps of a move); blob streams have no overall limit, only
//! a connect and an idle timeout, and are never repeated here. What the
//! requests mean is for the other `registry` modules.
//!
//! Connections are kept for the next request: one agent (one pool) per
//! kind of TLS trust serves small requests and streams alike, the pool
//! keeps as many idle connections per host as the largest `parallel` plus
//! the checks, and every answer's body is read to its end (a small one at
//! once, into memory), since ureq pools a connection only then. Names are
//! resolved without a thread per request (`resolve`).

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::SendBody;
use ureq::http;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::backoff::{self, Backoff};
use crate::error::Error;
use crate::mutex::lock;
use crate::secret::Secret;

/// Where docker and podman look for a registry's extra CA certificates.
pub const CERTS_DIRS: &[&str] = &["/etc/docker/certs.d", "/etc/containers/certs.d"];

/// System CA bundles, by distribution.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/var/lib/ca-certificates/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The longest one small request (manifest, token) may take, connecting
/// included: a registry that needs longer is as good as down.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a blob stream may go without a byte in either direction.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The idle connections kept per host: the most images a registry moves
/// at once (`parallel`, at most 32), plus the checks and uploads opened
/// beside them.
const IDLE_PER_HOST: usize = 36;
/// The idle connections kept in all, for a source and a target at once.
const IDLE_IN_ALL: usize = 2 * IDLE_PER_HOST;
/// The largest answer body read into memory as it arrives, so that its
/// connection returns to the pool whatever the caller reads of it (every
/// answer but a blob's, in practice).
const SMALL_BODY: u64 = 64 << 10;
/// How often a small request refused with 429 or 503 is tried again.
const RETRIES: u32 = 3;
/// The longest `Retry-After` honoured here.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The waits of a small request's retries when the registry does not say
/// (`Retry-After`): 1, 2, 4 seconds.
const SMALL_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: MAX_BACKOFF,
};

/// An HTTP method picture-book uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    /// `HEAD`.
    Head,
    /// `GET`.
    Get,
    /// `PUT`.
    Put,
    /// `POST`.
    Post,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl Method {
    fn as_http(self) -> http::Method {
        match self {
            Method::Head => http::Method::HEAD,
            Method::Get => http::Method::GET,
            Method::Put => http::Method::PUT,
            Method::Post => http::Method::POST,
            Method::Patch => http::Method::PATCH,
            Method::Delete => http::Method::DELETE,
        }
    }

    /// The method's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Method::Head => "HEAD",
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// What a request sends.
pub enum Body<'a> {
    /// Nothing.
    Empty,
    /// These bytes, which can be sent again.
    Bytes(&'a [u8]),
    /// A stream of this many bytes, which can be sent once.
    Stream(&'a mut dyn Read, u64),
}

impl Body<'_> {
    /// Whether the request can be sent again (after a 401, say).
    pub fn replayable(&self) -> bool {
        !matches!(self, Body::Stream(..))
    }
}

/// One request to a registry host.
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// A path (`/v2/...`) on the host, or a whole URL the registry gave (an
    /// upload `Location`).
    pub target: &'a str,
    /// Headers besides `Authorization`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body<'a>,
    /// Whether this is a blob stream (no overall time limit, never repeated).
    pub stream: bool,
}

impl<'a> Request<'a> {
    /// A small request without a body.
    pub fn new(method: Method, target: &'a str) -> Request<'a> {
        Request {
            method,
            target,
            headers: Vec::new(),
            body: Body::Empty,
            stream: false,
        }
    }

    /// With a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Request<'a> {
        self.headers.push((name, value.into()));
        self
    }

    /// With a body.
    pub fn body(mut self, body: Body<'a>) -> Request<'a> {
        self.body = body;
        self
    }

    /// As a blob stream.
    pub fn streaming(mut self) -> Request<'a> {
        self.stream = true;
        self
    }
}

/// The agents, one per kind of trust: verified, unverified (for insecure
/// registries), and verified with a host's extra CAs. Each serves small
/// requests and streams, from one pool.
struct Agents {
    verified: ureq::Agent,
    unverified: ureq::Agent,
    with_cas: Mutex<HashMap<String, ureq::Agent>>,
}

impl Agents {
    fn new(roots: &Arc<Vec<Certificate<'static>>>) -> Agents {
        Agents {
            verified: agent(tls(roots, false)),
            unverified: agent(tls(roots, true)),
            with_cas: Mutex::new(HashMap::new()),
        }
    }
}

/// The HTTP side of the registry client; one per process.
pub struct Transport {
    roots: Arc<Vec<Certificate<'static>>>,
    certs_dirs: Vec<PathBuf>,
    agents: Mutex<Arc<Agents>>,
    schemes: Mutex<HashMap<String, &'static str>>,
    probes: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Transport {
    /// Trusting the system CAs plus those under `<dir>/<host>/` of each of
    /// `certs_dirs`.
    pub fn new(certs_dirs: &[PathBuf]) -> Transport {
        let roots = Arc::new(system_roots());
        Transport {
            agents: Mutex::new(Arc::new(Agents::new(&roots))),
            roots,
            certs_dirs: certs_dirs.to_vec(),
            schemes: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `req` to `host`: over HTTPS, or for an insecure host over
    /// unverified HTTPS and then plain HTTP (remembering what worked). A
    /// small `HEAD` or `GET` answered 429 or 503 is tried again after
    /// `Retry-After` (or 1, 2, 4 seconds).
    pub fn send(
        &self,
        host: &str,
        insecure: bool,
        mut req: Request<'_>,
        authorization: Option<&Secret>,
    ) -> Result<http::Response<ureq::Body>, Error> {
        let absolute = req.target.contains("://");
        let mut known = lock(&self.schemes).get(host).copied();
        // The first request to an insecure host finds out its scheme while
        // the others wait for it: one TLS probe per host, not per worker.
        let probe = (insecure && !absolute && known.is_none()).then(|| self.probe_lock(host));
        let _probing = probe.as_ref().map(|p| lock(p));
        if probe.is_some() {
            known = lock(&self.schemes).get(host).copied();
        }
        let schemes = schemes(absolute, insecure, known);
        let mut last = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let url = if absolute {
                req.target.to_string()
            } else {
                format!("{scheme}://{host}{}", req.target)
            };
            let https = url.starts_with("https://");
            let agent = self.agent(host, insecure && https);
            match self.send_retrying(&agent, &url, &mut req, authorization) {
                Ok(resp) => {
                    if !absolute {
                        lock(&self.schemes).insert(host.to_string(), scheme);
                    }
                    return Ok(resp);
                }
                Err(e) if i + 1 < schemes.len() && req.body.replayable() => {
                    log::debug!("{host}: {scheme} failed ({e}); trying the next scheme");
                    last = Some(e);
                }
                Err(e) => return Err(network(host, req.method, &url, &e)),
            }
        }
        let detail = last.map(|e| e.to_string()).unwrap_or_default();
        Err(Error::Network {
            host: host.to_string(),
            detail: format!("no answer: {detail}"),
        })
    }

    /// Closes the idle connections (and drops their buffers): the pools
    /// start afresh. For a daemon with nothing in progress; requests under
    /// way finish on the connections they have.
    pub fn forget_idle(&self) {
        *lock(&self.agents) = Arc::new(Agents::new(&self.roots));
    }

    /// The lock that the requests to `host` take while its scheme is not
    /// known.
    fn probe_lock(&self, host: &str) -> Arc<Mutex<()>> {
        Arc::clone(lock(&self.probes).entry(host.to_string()).or_default())
    }

    /// The scheme (`https`, `http`) that reached `host`, once one has.
    pub fn scheme(&self, host: &str) -> Option<&'static str> {
        lock(&self.schemes).get(host).copied()
    }

    fn send_retrying(
        &self,
        agent: &ureq::Agent,
        url: &str,
        req: &mut Request<'_>,
        authorization: Option<&Secret>,
    ) -> Result<http::Response<ureq::Body>, ureq::Error> {
        let repeatable = !req.stream
            && matches!(req.method, Method::Head | Method::Get)
            && req.body.replayable();
        let tries = if repeatable { RETRIES + 1 } else { 1 };
        let send = || self.send_once(agent, url, req, authorization);
        backoff::retry(tries, &backoff::never, send, |outcome, retry| {
            let resp = outcome.as_ref().ok()?;
            let status = resp.status().as_u16();
            if !matches!(status, 429 | 503) {
                return None;
            }
            let wait = retry_after(resp)
                .unwrap_or(SMALL_BACKOFF.full(retry))
                .min(MAX_BACKOFF);
            log::debug!("{status} on {url}; trying again in {wait:?}");
            Some(wait)
        })
    }

    fn send_once(
        &self,
        agent: &ureq::Agent,
        url: &str,
        req: &mut Request<'_>,
        authorization: Option<&Secret>,
    ) -> Result<http::Response<ureq::Body>, ureq::Error> {
        let mut builder = http::Request::builder()
            .method(req.method.as_http())
            .uri(url);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        if let Some(a) = authorization {
            builder = builder.header("Authorization", a.expose());
        }
        let stream = req.stream;
        let resp = match &mut req.body {
            Body::Empty => {
                if matches!(req.method, Method::Put | Method::Post | Method::Patch) {
                    builder = builder.header("Content-Length", "0");
                }
                run(agent, builder.body(SendBody::none()), stream)?
            }
            Body::Bytes(b) => {
                let mut bytes: &[u8] = b;
                let builder = builder.header("Content-Length", bytes.len());
                run(
                    agent,
                    builder.body(SendBody::from_reader(&mut bytes)),
                    stream,
                )?
            }
            Body::Stream(reader, len) => {
                let builder = builder.header("Content-Length", *len);
                run(agent, builder.body(SendBody::from_reader(*reader)), stream)?
            }
        };
        settle(resp, req.method)
    }

    /// The agent for `host`: unverified for an insecure host's HTTPS, else
    /// verified with the host's extra CAs from `certs.d`, if any (built
    /// once, outside the cache's lock).
    fn agent(&self, host: &str, unverified: bool) -> ureq::Agent {
        let agents = Arc::clone(&lock(&self.agents));
        if unverified {
            return agents.unverified.clone();
        }
        if let Some(a) = lock(&agents.with_cas).get(host) {
            return a.clone();
        }
        let extra: Vec<Certificate<'static>> = self
            .certs_dirs
            .iter()
            .flat_map(|d| extra_cas(&d.join(host)))
            .collect();
        let agent = if extra.is_empty() {
            agents.verified.clone()
        } else {
            log::debug!("{host}: trusting {} extra CA certificates", extra.len());
            let mut all: Vec<Certificate<'static>> = self.roots.as_ref().clone();
            all.extend(extra);
            agent(tls(&Arc::new(all), false))
        };
        lock(&agents.with_cas)
            .entry(host.to_string())
            .or_insert(agent)
            .clone()
    }

    /// A small GET of a whole URL (a token service's), with `authorization`.
    pub fn get_url(
        &self,
        url: &str,
        insecure: bool,
        authorization: Option<&Secret>,
    ) -> Result<http::Response<ureq::Body>, ureq::Error> {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_default();
        let agent = self.agent(host, insecure);
        let mut req = Request::new(Method::Get, url);
        self.send_once(&agent, url, &mut req, authorization)
    }
}

/// The schemes to try, in turn, for a request: a whole URL as it is; a
/// registry that is not insecure over HTTPS only, whatever else reached
/// it; an insecure one by the scheme that reached it, else HTTPS and then
/// plain HTTP.
fn schemes(absolute: bool, insecure: bool, known: Option<&str>) -> &'static [&'static str] {
    match (absolute, insecure, known) {
        (true, _, _) => &[""],
        (_, false, _) => &["https"],
        (_, true, Some("http")) => &["http"],
        (_, true, Some(_)) => &["https"],
        (_, true, None) => &["https", "http"],
    }
}

/// A transport failure (no answer) as an error naming the request.
fn network(host: &str, method: Method, url: &str, e: &ureq::Error) -> Error {
    let detail = format!("{} {url}: {e}", method.name());
    match e {
        ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::BadUri(_)
        | ureq::Error::Http(_) => Error::registry(host, detail),
        _ => Error::Network {
            host: host.to_string(),
            detail,
        },
    }
}

/// The wait a `Retry-After` header asks for, in seconds.
pub fn retry_after(resp: &http::Response<ureq::Body>) -> Option<Duration> {
    header(resp, "Retry-After")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A response header as text.
pub fn header(resp: &http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// The user agent of the native engine's requests.
pub static COPY_AGENT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("picture-book/{} native", env!("CARGO_PKG_VERSION")));

/// An agent: its defaults are a small request's (an overall limit); a
/// stream sets its own limits per request. Both share its pool.
fn agent(tls: TlsConfig) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(3)
        .max_idle_connections(IDLE_IN_ALL)
        .max_idle_connections_per_host(IDLE_PER_HOST)
        .user_agent(format!("picture-book/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        super::resolve::Cached::default(),
    )
}

/// Sends `request` with `agent`: as a small request (the agent's overall
/// limit), or as a stream (only an idle limit each way).
fn run<S: ureq::AsSendBody>(
    agent: &ureq::Agent,
    request: Result<http::Request<S>, http::Error>,
    stream: bool,
) -> Result<http::Response<ureq::Body>, ureq::Error> {
    let request = request.map_err(ureq::Error::from)?;
    if !stream {
        return agent.run(request);
    }
    let request = agent
        .configure_request(request)
        .timeout_global(None)
        .timeout_per_read(Some(IDLE_TIMEOUT))
        .timeout_per_write(Some(IDLE_TIMEOUT))
        .build();
    agent.run(request)
}

/// `resp` with its body read into memory when it is small (and a `HEAD`'s
/// left alone: it has none), so that the connection returns to the pool
/// now, whatever the caller reads of it.
fn settle(
    mut resp: http::Response<ureq::Body>,
    method: Method,
) -> Result<http::Response<ureq::Body>, ureq::Error> {
    let small = header(&resp, "Content-Length")
        .and_then(|l| l.trim().parse::<u64>().ok())
        .is_some_and(|l| l <= SMALL_BODY);
    if method == Method::Head || !small {
        return Ok(resp);
    }
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(SMALL_BODY)
        .read_to_vec()?;
    let (parts, _) = resp.into_parts();
    Ok(http::Response::from_parts(
        parts,
        ureq::Body::builder().data(bytes),
    ))
}

fn tls(roots: &Arc<Vec<Certificate<'static>>>, unverified: bool) -> TlsConfig {
    let builder = TlsConfig::builder().disable_verification(unverified);
    if roots.is_empty() {
        builder.root_certs(RootCerts::WebPki).build()
    } else {
        builder
            .root_certs(RootCerts::Specific(Arc::clone(roots)))
            .build()
    }
}

/// The system's CA certificates (the first bundle found), or none, in which
/// case the built-in Mozilla roots are used.
fn system_roots() -> Vec<Certificate<'static>> {
    for path in CA_BUNDLES {
        if let Ok(pem) = fs::read(path) {
            let certs = certificates(&pem);
            if !certs.is_empty() {
                log::debug!("trusting {} CA certificates from {path}", certs.len());
                return certs;
            }
        }
    }
    log::debug!("no system CA bundle found; using the built-in Mozilla roots");
    Vec::new()
}

/// The `*.crt` files of a `certs.d/<host>` directory, as docker reads them.
fn extra_cas(dir: &Path) -> Vec<Certificate<'static>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "crt"))
        .filter_map(|e| fs::read(e.path()).ok())
        .flat_map(|pem| certificates(&pem))
        .collect()
}

fn certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (public data, made for this test).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBlDCCATugAwIBAgIUO/W9IV6VkcAMApiKPYYTKzsgAwowCgYIKoZIzj0EAwIw\nHzEdMBsGA1UEAwwUcGljdHVyZS1ib29rIHRlc3QgQ0EwIBcNMjYxMTI2MTg0ODI0\nWhgPMjEyNjExMDIxODQ4MjRaMB8xHTAbBgNVBAMMFHBpY3R1cmUtYm9vayB0ZXN0\nIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsDcbt67s/QitWUqGQrJPgP4K\nhAWI+k+ar5b17RSJM+mCKt4ZH7M8IQZXQxtiZ3eofgVntmrIncnWhw/7oxZA+qNT\nMFEwHQYDVR0OBBYEFCpmswhSMzQiLUIV4YyiLqwpcV+9MB8GA1UdIwQYMBaAFCpm\nswhSMzQiLUIV4YyiLqwpcV+9MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID\nRwAwRAIgd/1uORd4B57BFyZ0Mb2c4UuLsk+FhNLJrMVD0Mm42jECIFQIQnxno0Rm\nfTj6iZwcNZn9fTuTCLoNwynTMd7k7CpL\n-----END CERTIFICATE-----\n";

    #[test]
    fn certs_d_gives_its_crt_files_as_extra_cas() {
        let dir = std::env::temp_dir().join(format!("pb-certs-{}", std::process::id()));
        let host = dir.join("reg.example.com:5000");
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("ca.crt"), TEST_CA).unwrap();
        fs::write(host.join("client.cert"), TEST_CA).unwrap();
        fs::write(host.join("notes.txt"), "not a certificate").unwrap();
        assert_eq!(
            extra_cas(&host).len(),
            1,
            "only *.crt files are CAs, as for docker"
        );
        assert!(extra_cas(&dir.join("other.example.com")).is_empty());
        let transport = Transport::new(std::slice::from_ref(&dir));
        transport.agent("reg.example.com:5000", false);
        transport.agent("other.example.com", false);
        transport.agent("other.example.com", false);
        assert_eq!(
            lock(&lock(&transport.agents).with_cas).len(),
            2,
            "agents are built once per host"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn plain_http_is_for_insecure_registries_alone() {
        assert_eq!(schemes(false, false, None), ["https"]);
        assert_eq!(schemes(false, false, Some("http")), ["https"]);
        assert_eq!(schemes(false, true, None), ["https", "http"]);
        assert_eq!(schemes(false, true, Some("http")), ["http"]);
        assert_eq!(schemes(false, true, Some("https")), ["https"]);
        assert_eq!(schemes(true, true, None), [""]);
    }

    #[test]
    fn the_pool_holds_the_largest_parallel_and_the_checks() {
        const { assert!(IDLE_PER_HOST >= crate::config::MAX_PARALLEL + 4) };
    }

    #[test]
    fn the_system_ca_bundle_is_read() {
        if CA_BUNDLES.iter().any(|p| Path::new(p).exists()) {
            assert!(!system_roots().is_empty());
        }
    }
}
