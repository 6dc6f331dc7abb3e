//! A small, blocking client for the registry HTTP API (Docker Registry V2 /
//! OCI distribution): `HEAD` and `GET` of manifests, following an index to
//! one platform's image config digest. It authenticates as registries
//! expect (anonymous, Basic, or the Bearer token flow with a token cache),
//! speaks HTTPS with the system's CA store plus `/etc/docker/certs.d`, and
//! plain HTTP only to loopback and insecure registries. Deciding what is up
//! to date is `mirror`'s business, not this module's.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use ureq::http;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::auth::Credentials;
use crate::error::Error;
use crate::mutex::lock;
use crate::reference::Reference;
use crate::secret::Secret;

/// The manifest media types asked for, most specific last.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Where docker looks for a registry's extra CA certificates.
pub const CERTS_DIR: &str = "/etc/docker/certs.d";

/// System CA bundles, by distribution.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/var/lib/ca-certificates/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The longest one request (manifest, token) may take, connecting included:
/// they are small, so a registry that needs longer is as good as down.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a cached token is trusted when the registry does not say.
const DEFAULT_TOKEN_LIFE: u64 = 60;
/// How often a request refused with 429 or 503 is tried again.
const RETRIES: u32 = 3;
/// The longest `Retry-After` honoured.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
                }
            }
        };
        Repository { push: true, ..repo }
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

/// An operating system and architecture, as in an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, when it matters.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Option<Platform> {
        let mut parts = text.trim().split('/');
        let os = parts.next().filter(|s| !s.is_empty())?.to_string();
        let architecture = parts.next().filter(|s| !s.is_empty())?.to_string();
        let variant = parts.next().map(String::from);
        Some(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// The platform of this host, as docker names it.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// The registry client; one per process, shared by all threads.
pub struct Client {
    verified: ureq::Agent,
    unverified: ureq::Agent,
    with_extra_cas: Mutex<HashMap<String, ureq::Agent>>,
    roots: Arc<Vec<Certificate<'static>>>,
    certs_dir: PathBuf,
    schemes: Mutex<HashMap<String, &'static str>>,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<TokenKey, (Secret, Instant)>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Method {
    Head,
    Get,
}

impl Default for Client {
    fn default() -> Self {
        Client::new(Path::new(CERTS_DIR))
    }
}

impl Client {
    /// A client trusting the system CAs plus those under `certs_dir/<host>/`.
    pub fn new(certs_dir: &Path) -> Client {
        let roots = Arc::new(system_roots());
        Client {
            verified: agent(tls(&roots, false)),
            unverified: agent(tls(&roots, true)),
            with_extra_cas: Mutex::new(HashMap::new()),
            roots,
            certs_dir: certs_dir.to_path_buf(),
            schemes: Mutex::new(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The digest of `repo:reference` by `HEAD`, or None when it does not exist.
    pub fn head_digest(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, Error> {
        let path = format!("/v2/{}/manifests/{reference}", repo.path);
        let resp = self.send(Method::Head, repo, &path, creds)?;
        match resp.status().as_u16() {
            200 => header(&resp, "Docker-Content-Digest")
                .map(Some)
                .ok_or_else(|| {
                    fail(
                        repo,
                        format!("{path} answered without a Docker-Content-Digest header"),
                    )
                }),
            404 => Ok(None),
            status => Err(refused(repo, status, &path)),
        }
    }

    /// The manifest `repo:reference` by `GET`, or None when it does not exist.
    pub fn manifest(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<Value>, Error> {
        let path = format!("/v2/{}/manifests/{reference}", repo.path);
        let mut resp = self.send(Method::Get, repo, &path, creds)?;
        match resp.status().as_u16() {
            200 => {
                let text = read_body(repo, &mut resp, 4 << 20, &path)?;
                let body = serde_json::from_str(&text)
                    .map_err(|e| fail(repo, format!("{path} is not JSON: {e}")))?;
                Ok(Some(body))
            }
            404 => Ok(None),
            status => Err(refused(repo, status, &path)),
        }
    }

    /// The image config digest (image ID) of `repo:reference` for `platform`,
    /// following an image index; None when the image or that platform does
    /// not exist.
    pub fn config_digest(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
        platform: &Platform,
    ) -> Result<Option<String>, Error> {
        let Some(manifest) = self.manifest(repo, reference, creds)? else {
            return Ok(None);
        };
        let manifest = match manifest.get("manifests").and_then(Value::as_array) {
            Some(entries) => match pick_platform(entries, platform) {
                Some(digest) => match self.manifest(repo, &digest, creds)? {
                    Some(m) => m,
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
            None => manifest,
        };
        Ok(manifest["config"]["digest"].as_str().map(String::from))
    }

    /// Sends a request. Known challenges are answered before the first try
    /// (a token fetched for the scope, or Basic credentials), so a repository
    /// costs one request; a new challenge is learnt from a 401 and answered
    /// once.
    fn send(
        &self,
        method: Method,
        repo: &Repository,
        path: &str,
        creds: Option<&Credentials>,
    ) -> Result<http::Response<ureq::Body>, Error> {
        let scope = repo.scope();
        let mut answered = false;
        loop {
            let authorization = self.authorization(repo, &scope, creds)?;
            let resp = self.request(method, repo, path, authorization.as_ref())?;
            if resp.status().as_u16() != 401 || answered {
                return Ok(resp);
            }
            answered = true;
            let header = header(&resp, "WWW-Authenticate").unwrap_or_default();
            match Challenge::parse(&header) {
                Some(challenge) => {
                    log::debug!(
                        "{}: answers with a {} challenge",
                        repo.host,
                        challenge.kind()
                    );
                    lock(&self.challenges).insert(repo.host.clone(), challenge);
                }
                None => return Ok(resp),
            }
        }
    }

    /// The `Authorization` value for `scope` at `repo`'s host, as its known
    /// challenge asks: a (cached or new) bearer token, or Basic credentials.
    fn authorization(
        &self,
        repo: &Repository,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<Secret>, Error> {
        let challenge = lock(&self.challenges).get(&repo.host).cloned();
        match challenge {
            Some(Challenge::Basic) => Ok(creds.map(basic)),
            Some(Challenge::Bearer { realm, service }) => {
                let key = (repo.host.clone(), scope.to_string(), who(creds));
                let cached = lock(&self.tokens).get(&key).cloned();
                let token = match cached {
                    Some((token, until)) if Instant::now() < until => token,
                    _ => {
                        let (token, until) =
                            self.fetch_token(repo, &realm, service.as_deref(), scope, creds)?;
                        lock(&self.tokens).insert(key, (token.clone(), until));
                        token
                    }
                };
                Ok(Some(Secret::new(format!("Bearer {}", token.expose()))))
            }
            None => Ok(None),
        }
    }

    /// Gets a token for `scope` from `realm`, with Basic credentials when
    /// there are some, and returns it with the instant it expires.
    fn fetch_token(
        &self,
        repo: &Repository,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<(Secret, Instant), Error> {
        if creds.is_some() && realm.starts_with("http://") && !repo.insecure {
            return Err(fail(
                repo,
                format!(
                    "refusing to send credentials to the plain-HTTP token service {realm}; mark the registry insecure if that is intended"
                ),
            ));
        }
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (k, v) in [("service", service), ("scope", Some(scope))] {
            if let Some(v) = v {
                url.push(sep);
                url.push_str(&format!("{k}={}", encode(v)));
                sep = '&';
            }
        }
        let agent = if repo.insecure {
            self.unverified.clone()
        } else {
            let host = realm
                .split("://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap_or_default();
            self.agent_for_host(host)
        };
        let mut req = agent.get(&url);
        if let Some(c) = creds {
            req = req.header("Authorization", basic(c).expose());
        }
        let mut resp = req
            .call()
            .map_err(|e| fail(repo, format!("token request to {realm} failed: {e}")))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let hint = if creds.is_some() {
                "; check the credentials"
            } else {
                ""
            };
            return Err(Error::Registry {
                host: repo.host.clone(),
                status: Some(status),
                detail: format!("the token service {realm} refused ({status}){hint}"),
            });
        }
        let text = read_body(repo, &mut resp, 1 << 20, "the token")?;
        let body: Value = serde_json::from_str(&text).map_err(|_| {
            fail(
                repo,
                format!("the token service {realm} did not answer JSON"),
            )
        })?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(Value::as_str)
            .ok_or_else(|| fail(repo, format!("the token service {realm} sent no token")))?;
        let life = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_TOKEN_LIFE);
        let margin = if life > 10 { 5 } else { 0 };
        Ok((
            Secret::new(token),
            Instant::now() + Duration::from_secs(life - margin),
        ))
    }

    /// The challenges learnt so far, by host, to keep for the next process.
    pub fn challenges(&self) -> Vec<(String, Challenge)> {
        lock(&self.challenges)
            .iter()
            .map(|(h, c)| (h.clone(), c.clone()))
            .collect()
    }

    /// Challenges an earlier process learnt, so that no request of this one
    /// has to be refused first.
    pub fn remember_challenges(&self, known: impl IntoIterator<Item = (String, Challenge)>) {
        let mut challenges = lock(&self.challenges);
        for (host, challenge) in known {
            challenges.entry(host).or_insert(challenge);
        }
    }

    /// One request, over HTTPS, or for insecure registries over unverified
    /// HTTPS and then plain HTTP (remembering what worked); 429 and 503 are
    /// tried again after `Retry-After` (or 1, 2, 4 seconds).
    fn request(
        &self,
        method: Method,
        repo: &Repository,
        path: &str,
        authorization: Option<&Secret>,
    ) -> Result<http::Response<ureq::Body>, Error> {
        let known = lock(&self.schemes).get(&repo.host).copied();
        let schemes: &[&'static str] = match (repo.insecure, known) {
            (false, _) => &["https"],
            (true, Some("http")) => &["http"],
            (true, Some(_)) => &["https"],
            (true, None) => &["https", "http"],
        };
        let mut last_error = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let url = format!("{scheme}://{}{path}", repo.host);
            let agent = if *scheme == "https" && repo.insecure {
                self.unverified.clone()
            } else {
                self.agent_for_host(&repo.host)
            };
            let mut attempt = 0;
            let result = loop {
                let mut req = match method {
                    Method::Head => agent.head(&url),
                    Method::Get => agent.get(&url),
                }
                .header("Accept", ACCEPT);
                if let Some(a) = authorization {
                    req = req.header("Authorization", a.expose());
                }
                match req.call() {
                    Ok(resp)
                        if matches!(resp.status().as_u16(), 429 | 503) && attempt < RETRIES =>
                    {
                        let wait = header(&resp, "Retry-After")
                            .and_then(|s| s.parse::<u64>().ok())
                            .map_or(Duration::from_secs(1 << attempt), Duration::from_secs)
                            .min(MAX_BACKOFF);
                        log::debug!(
                            "{}: {} on {path}; trying again in {wait:?}",
                            repo.host,
                            resp.status()
                        );
                        thread::sleep(wait);
                        attempt += 1;
                    }
                    other => break other,
                }
            };
            match result {
                Ok(resp) => {
                    lock(&self.schemes).insert(repo.host.clone(), scheme);
                    return Ok(resp);
                }
                Err(e) if i + 1 < schemes.len() => {
                    log::debug!(
                        "{}: {scheme} failed ({e}); trying the next scheme",
                        repo.host
                    );
                    last_error = Some(e);
                }
                Err(e) => {
                    let verb = if method == Method::Head {
                        "HEAD"
                    } else {
                        "GET"
                    };
                    return Err(fail(repo, format!("{verb} {url}: {e}")));
                }
            }
        }
        let detail = last_error.map(|e| e.to_string()).unwrap_or_default();
        Err(fail(repo, format!("no answer: {detail}")))
    }

    /// The verified agent for `host`: with its extra CAs from `certs.d`, if
    /// any. The agent is built outside the cache's lock.
    fn agent_for_host(&self, host: &str) -> ureq::Agent {
        if let Some(a) = lock(&self.with_extra_cas).get(host) {
            return a.clone();
        }
        let dir = self.certs_dir.join(host);
        let extra = extra_cas(&dir);
        let agent = if extra.is_empty() {
            self.verified.clone()
        } else {
            log::debug!(
                "{host}: trusting {} extra CA certificates from {}",
                extra.len(),
                dir.display()
            );
            let mut all: Vec<Certificate<'static>> = self.roots.as_ref().clone();
            all.extend(extra);
            agent(tls(&Arc::new(all), false))
        };
        lock(&self.with_extra_cas)
            .entry(host.to_string())
            .or_insert(agent)
            .clone()
    }
}

/// What a token is cached under: host, scope and owner (see [`who`]).
type TokenKey = (String, String, String);

/// How a registry wants to be authenticated, learnt from its 401.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "scheme", rename_all = "camelCase")]
pub enum Challenge {
    /// `WWW-Authenticate: Basic`.
    Basic,
    /// `WWW-Authenticate: Bearer realm=...,service=...`.
    Bearer {
        /// Where tokens come from.
        realm: String,
        /// The service to name in token requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header.
    fn parse(header: &str) -> Option<Challenge> {
        let (scheme, params) = parse_challenge(header)?;
        if scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
            })
        } else {
            None
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Challenge::Basic => "Basic",
            Challenge::Bearer { .. } => "Bearer",
        }
    }
}

/// Who a token belongs to: anonymous, or a user and a fingerprint of their
/// password (so that registries configured with different credentials never
/// share a token).
fn who(creds: Option<&Credentials>) -> String {
    use std::hash::{Hash, Hasher};
    match creds {
        None => "anonymous".into(),
        Some(c) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            c.password.expose().hash(&mut h);
            format!("{}#{:016x}", c.user, h.finish())
        }
    }
}

/// Reads a response body of at most `limit` bytes as text.
fn read_body(
    repo: &Repository,
    resp: &mut http::Response<ureq::Body>,
    limit: u64,
    what: &str,
) -> Result<String, Error> {
    let mut text = String::new();
    resp.body_mut()
        .as_reader()
        .take(limit)
        .read_to_string(&mut text)
        .map_err(|e| fail(repo, format!("reading {what}: {e}")))?;
    Ok(text)
}

fn agent(tls: TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(3)
        .user_agent(format!("picture-book/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
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

fn basic(c: &Credentials) -> Secret {
    let pair = format!("{}:{}", c.user, c.password.expose());
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

fn header(resp: &http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// Splits `Bearer realm="...",service="...",scope="..."` into the scheme and
/// its parameters.
fn parse_challenge(header: &str) -> Option<(String, HashMap<String, String>)> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, r)| (v, r))
        };
        params.insert(key, value.to_string());
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_string(), params))
}

/// The digest of the entry of an index that matches `platform`: same OS and
/// architecture, and the same variant, which defaults as docker's does
/// (`v7` for `arm`, `v8` for `arm64`) when the platform names none.
fn pick_platform(entries: &[Value], platform: &Platform) -> Option<String> {
    let variant = platform
        .variant
        .as_deref()
        .or(match platform.architecture.as_str() {
            "arm" => Some("v7"),
            "arm64" => Some("v8"),
            _ => None,
        });
    let matches = |e: &&Value| {
        let p = &e["platform"];
        p["os"].as_str() == Some(platform.os.as_str())
            && p["architecture"].as_str() == Some(platform.architecture.as_str())
    };
    let candidates: Vec<&Value> = entries.iter().filter(matches).collect();
    let exact = candidates
        .iter()
        .find(|e| e["platform"]["variant"].as_str() == variant);
    exact
        .or(candidates.first())
        .and_then(|e| e["digest"].as_str())
        .map(String::from)
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn fail(repo: &Repository, detail: String) -> Error {
    Error::Registry {
        host: repo.host.clone(),
        status: None,
        detail,
    }
}

fn refused(repo: &Repository, status: u16, path: &str) -> Error {
    let why = match status {
        401 => "unauthorized: check the credentials",
        403 => "denied",
        429 => "too many requests (rate limited)",
        _ => "unexpected answer",
    };
    Error::Registry {
        host: repo.host.clone(),
        status: Some(status),
        detail: format!("{status} for {path}: {why}"),
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

    #[test]
    fn challenges() {
        let (scheme, p) = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#).unwrap();
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (scheme.as_str(), p["realm"].as_str()),
            ("Basic", "Registry Realm")
        );
        let (_, p) = parse_challenge("Bearer realm=https://a/t, service=s").unwrap();
        assert_eq!(
            (p["realm"].as_str(), p["service"].as_str()),
            ("https://a/t", "s")
        );
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn platform_selection() {
        let index: Vec<Value> = serde_json::from_str(
            r#"[{"digest":"sha256:arm7","platform":{"os":"linux","architecture":"arm","variant":"v7"}},
                {"digest":"sha256:arm6","platform":{"os":"linux","architecture":"arm","variant":"v6"}},
                {"digest":"sha256:amd","platform":{"os":"linux","architecture":"amd64"}},
                {"digest":"sha256:win","platform":{"os":"windows","architecture":"amd64"}}]"#,
        )
        .unwrap();
        let pick = |p: &str| pick_platform(&index, &Platform::parse(p).unwrap());
        assert_eq!(pick("linux/amd64").as_deref(), Some("sha256:amd"));
        assert_eq!(pick("linux/arm/v6").as_deref(), Some("sha256:arm6"));
        assert_eq!(
            pick("linux/arm").as_deref(),
            Some("sha256:arm7"),
            "arm means arm/v7"
        );
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(Platform::parse("linux"), None);
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            encode("repository:library/alpine:pull"),
            "repository%3Alibrary%2Falpine%3Apull"
        );
        assert_eq!(encode("registry.docker.io"), "registry.docker.io");
    }

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
        let client = Client::new(&dir);
        client.agent_for_host("reg.example.com:5000");
        client.agent_for_host("other.example.com");
        assert_eq!(
            lock(&client.with_extra_cas).len(),
            2,
            "agents are built once per host"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_system_ca_bundle_is_read() {
        if CA_BUNDLES.iter().any(|p| Path::new(p).exists()) {
            assert!(!system_roots().is_empty());
        }
    }

    #[test]
    fn challenges_are_remembered_as_json() {
        let bearer =
            Challenge::parse(r#"Bearer realm="https://auth.example.com/token",service="reg""#)
                .unwrap();
        assert_eq!(
            serde_json::to_string(&bearer).unwrap(),
            r#"{"scheme":"bearer","realm":"https://auth.example.com/token","service":"reg"}"#
        );
        assert_eq!(Challenge::parse("Basic realm=x"), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn tokens_belong_to_their_credentials() {
        let c = |u: &str, p: &str| Credentials {
            user: u.into(),
            password: Secret::new(p),
        };
        assert_eq!(who(None), "anonymous");
        assert_ne!(who(Some(&c("u", "a"))), who(Some(&c("u", "b"))));
        assert_eq!(who(Some(&c("u", "a"))), who(Some(&c("u", "a"))));
        assert!(!who(Some(&c("u", "hunter2"))).contains("hunter2"));
    }
}
