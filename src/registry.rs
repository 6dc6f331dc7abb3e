//! A small, blocking client for the registry HTTP API (Docker Registry V2 /
//! OCI distribution): `HEAD` and `GET` of manifests, following an index to
//! one platform's image config digest. It authenticates as registries
//! expect (anonymous, Basic, or the Bearer token flow with a token cache),
//! speaks HTTPS with the system's CA store plus `/etc/docker/certs.d`, and
//! plain HTTP only to loopback and insecure registries. Deciding what is up
//! to date is `mirror`'s business, not this module's.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use ureq::http;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::auth::Credentials;
use crate::error::Error;
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
}

impl Repository {
    /// Where the source `reference` lives. Docker Hub is `registry-1.docker.io`
    /// and its one-component names are under `library/`.
    pub fn of(reference: &Reference, insecure: &dyn Fn(&str) -> bool) -> Repository {
        let domain = reference.domain().unwrap_or("docker.io");
        let hub = matches!(
            domain,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        );
        let host = if hub {
            "registry-1.docker.io".to_string()
        } else {
            domain.to_string()
        };
        let path = if hub && !reference.path().contains('/') {
            format!("library/{}", reference.path())
        } else {
            reference.path().to_string()
        };
        Repository {
            insecure: insecure(domain) || is_loopback(&host),
            host,
            path,
        }
    }

    /// Where the target `name` (`host/path`, without tag) lives.
    pub fn target(name: &str, insecure: bool) -> Repository {
        let (host, path) = name.split_once('/').unwrap_or((name, ""));
        Repository {
            host: host.to_string(),
            path: path.to_string(),
            insecure: insecure || is_loopback(host),
        }
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

/// A manifest as fetched.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `Docker-Content-Digest`, when the registry sent it.
    pub digest: Option<String>,
    /// The parsed document.
    pub body: Value,
}

/// The registry client; one per process, shared by all threads.
pub struct Client {
    verified: ureq::Agent,
    unverified: ureq::Agent,
    with_extra_cas: Mutex<HashMap<String, ureq::Agent>>,
    roots: Arc<Vec<Certificate<'static>>>,
    certs_dir: PathBuf,
    schemes: Mutex<HashMap<String, &'static str>>,
    basic: Mutex<HashSet<String>>,
    tokens: Mutex<HashMap<(String, String), (Secret, Instant)>>,
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
            basic: Mutex::new(HashSet::new()),
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
            200 => Ok(header(&resp, "Docker-Content-Digest")),
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
    ) -> Result<Option<Manifest>, Error> {
        let path = format!("/v2/{}/manifests/{reference}", repo.path);
        let mut resp = self.send(Method::Get, repo, &path, creds)?;
        match resp.status().as_u16() {
            200 => {
                let digest = header(&resp, "Docker-Content-Digest");
                let mut text = String::new();
                resp.body_mut()
                    .as_reader()
                    .take(4 << 20)
                    .read_to_string(&mut text)
                    .map_err(|e| fail(repo, format!("reading {path}: {e}")))?;
                let body = serde_json::from_str(&text)
                    .map_err(|e| fail(repo, format!("{path} is not JSON: {e}")))?;
                Ok(Some(Manifest { digest, body }))
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
        let manifest = match manifest.body.get("manifests").and_then(Value::as_array) {
            Some(entries) => match pick_platform(entries, platform) {
                Some(digest) => match self.manifest(repo, &digest, creds)? {
                    Some(m) => m,
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
            None => manifest,
        };
        Ok(manifest.body["config"]["digest"].as_str().map(String::from))
    }

    /// Sends a request, answering an authentication challenge once.
    fn send(
        &self,
        method: Method,
        repo: &Repository,
        path: &str,
        creds: Option<&Credentials>,
    ) -> Result<http::Response<ureq::Body>, Error> {
        let scope = format!("repository:{}:pull", repo.path);
        let mut answered = false;
        loop {
            let authorization = self.authorization(&repo.host, &scope, creds);
            let resp = self.request(method, repo, path, authorization.as_ref())?;
            if resp.status().as_u16() != 401 || answered {
                return Ok(resp);
            }
            answered = true;
            let challenge = header(&resp, "WWW-Authenticate").unwrap_or_default();
            match parse_challenge(&challenge) {
                Some((scheme, params)) if scheme.eq_ignore_ascii_case("bearer") => {
                    let realm = params
                        .get("realm")
                        .ok_or_else(|| fail(repo, "Bearer challenge without a realm".into()))?;
                    let scope = params.get("scope").cloned().unwrap_or(scope.clone());
                    self.fetch_token(repo, realm, params.get("service"), &scope, creds)?;
                    // The challenge's scope is what the token is cached under.
                    if scope != format!("repository:{}:pull", repo.path) {
                        let token = lock(&self.tokens)
                            .get(&(repo.host.clone(), scope.clone()))
                            .cloned();
                        if let Some(t) = token {
                            lock(&self.tokens).insert(
                                (repo.host.clone(), format!("repository:{}:pull", repo.path)),
                                t,
                            );
                        }
                    }
                }
                Some((scheme, _)) if scheme.eq_ignore_ascii_case("basic") && creds.is_some() => {
                    lock(&self.basic).insert(repo.host.clone());
                }
                _ => return Ok(resp),
            }
        }
    }

    /// The `Authorization` value for `host` and `scope`: a cached bearer
    /// token, else Basic when the host asked for it before.
    fn authorization(
        &self,
        host: &str,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Option<Secret> {
        let key = (host.to_string(), scope.to_string());
        if let Some((token, until)) = lock(&self.tokens).get(&key) {
            if Instant::now() < *until {
                return Some(Secret::new(format!("Bearer {}", token.expose())));
            }
        }
        match creds {
            Some(c) if lock(&self.basic).contains(host) => Some(basic(c)),
            _ => None,
        }
    }

    /// Gets a token from `realm` (with Basic credentials when there are some)
    /// and caches it for `host` and `scope` until it expires.
    fn fetch_token(
        &self,
        repo: &Repository,
        realm: &str,
        service: Option<&String>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<(), Error> {
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (k, v) in [
            ("service", service.map(String::as_str)),
            ("scope", Some(scope)),
        ] {
            if let Some(v) = v {
                url.push(sep);
                url.push_str(&format!("{k}={}", encode(v)));
                sep = '&';
            }
        }
        let agent = self.agent_for_url(&url);
        let mut req = agent.get(&url);
        if let Some(c) = creds {
            req = req.header("Authorization", basic(c).expose());
        }
        let mut resp = req
            .call()
            .map_err(|e| fail(repo, format!("token request to {realm} failed: {e}")))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(fail(
                repo,
                format!(
                    "the token service {realm} refused ({status}){}",
                    if creds.is_some() {
                        "; check the credentials"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let mut text = String::new();
        resp.body_mut()
            .as_reader()
            .take(1 << 20)
            .read_to_string(&mut text)
            .map_err(|e| fail(repo, format!("reading the token: {e}")))?;
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
        let until = Instant::now() + Duration::from_secs(life.saturating_sub(5).max(1));
        lock(&self.tokens).insert(
            (repo.host.clone(), scope.to_string()),
            (Secret::new(token), until),
        );
        Ok(())
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
        let schemes: &[&'static str] = match (known, repo.insecure) {
            (Some("http"), _) => &["http"],
            (Some(_), _) | (None, false) => &["https"],
            (None, true) => &["https", "http"],
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
                    return Err(fail(
                        repo,
                        format!(
                            "{} {url}: {e}",
                            if method == Method::Head {
                                "HEAD"
                            } else {
                                "GET"
                            }
                        ),
                    ));
                }
            }
        }
        Err(fail(
            repo,
            format!(
                "no answer: {}",
                last_error.map(|e| e.to_string()).unwrap_or_default()
            ),
        ))
    }

    /// The verified agent for `host`: with its extra CAs from `certs.d`, if any.
    fn agent_for_host(&self, host: &str) -> ureq::Agent {
        let mut cache = lock(&self.with_extra_cas);
        if let Some(a) = cache.get(host) {
            return a.clone();
        }
        let extra = extra_cas(&self.certs_dir.join(host));
        let agent = if extra.is_empty() {
            self.verified.clone()
        } else {
            log::debug!(
                "{host}: trusting {} extra CA certificates from {}",
                extra.len(),
                self.certs_dir.join(host).display()
            );
            let mut all: Vec<Certificate<'static>> = self.roots.as_ref().clone();
            all.extend(extra);
            agent(tls(&Arc::new(all), false))
        };
        cache.insert(host.to_string(), agent.clone());
        agent
    }

    fn agent_for_url(&self, url: &str) -> ureq::Agent {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_default();
        if url.starts_with("http://") {
            self.verified.clone()
        } else {
            self.agent_for_host(host)
        }
    }
}

fn agent(tls: TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(60)))
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
/// architecture, the same variant when both name one.
fn pick_platform(entries: &[Value], platform: &Platform) -> Option<String> {
    let matches = |e: &&Value| {
        let p = &e["platform"];
        p["os"].as_str() == Some(platform.os.as_str())
            && p["architecture"].as_str() == Some(platform.architecture.as_str())
    };
    let candidates: Vec<&Value> = entries.iter().filter(matches).collect();
    let exact = candidates
        .iter()
        .find(|e| e["platform"]["variant"].as_str() == platform.variant.as_deref());
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
    fail(repo, format!("{status} for {path}: {why}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        assert_eq!(pick("linux/arm").as_deref(), Some("sha256:arm7"));
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
}
