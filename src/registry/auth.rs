//! How a registry wants to be authenticated and what to answer: challenges
//! learnt from a 401 (`Basic`, or `Bearer` with a token service), and bearer
//! tokens fetched for the scopes a request needs (`pull`; `pull,push` on a
//! target; plus `pull` on the repository a blob is mounted from), cached per
//! host, scope and credentials until they expire. Workers that start at
//! once ask once: the first request to a host whose challenge is unknown
//! goes alone (one 401), and one token is fetched per scope while the
//! others that need it wait for it. Credentials themselves come from
//! `credentials`.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use super::transport::{Transport, header};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::inflight::{InFlight, Lead};
use crate::mutex::lock;
use crate::secret::Secret;

/// Longest a cached token is trusted when the registry does not say.
const DEFAULT_TOKEN_LIFE: u64 = 60;

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
    pub fn parse(header: &str) -> Option<Challenge> {
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

/// What a token is cached under: host, scopes and owner (see [`who`]).
type TokenKey = (String, String, String);

/// The challenges and tokens of one process.
#[derive(Default)]
pub struct Auth {
    challenges: Mutex<HashMap<String, Challenge>>,
    /// Hosts that answered without asking for credentials.
    open: Mutex<HashSet<String>>,
    tokens: Mutex<HashMap<TokenKey, (Secret, Instant)>>,
    /// Hosts whose first request is on its way, to learn their challenge.
    asking: InFlight<String>,
    /// Hosts whose first request went: later ones never wait, whatever it
    /// learnt (a host that is down costs one wait, not one per worker).
    asked: Mutex<HashSet<String>>,
    /// Tokens being fetched.
    fetching: InFlight<TokenKey>,
}

impl Auth {
    /// Learns the challenge of a 401 answer from `host`; false when it has
    /// none picture-book can answer.
    pub fn learn(&self, host: &str, resp: &ureq::http::Response<ureq::Body>) -> bool {
        let text = header(resp, "WWW-Authenticate").unwrap_or_default();
        match Challenge::parse(&text) {
            Some(challenge) => {
                log::debug!("{host}: answers with a {} challenge", challenge.kind());
                lock(&self.challenges).insert(host.to_string(), challenge);
                true
            }
            None => false,
        }
    }

    /// Whether it is known how `host` wants to be authenticated, if at all.
    pub fn knows(&self, host: &str) -> bool {
        lock(&self.challenges).contains_key(host) || lock(&self.open).contains(host)
    }

    /// For a host whose challenge is not known yet: the lead of its first
    /// request, which learns it (one 401, not one per worker); None for any
    /// other request (after waiting for the first, when another worker
    /// sends it).
    pub fn first_request(&self, host: &str) -> Option<First<'_>> {
        let host = host.to_string();
        let asked = || self.knows(&host) || lock(&self.asked).contains(&host);
        let lead = self.asking.lead_unless(&host, asked)?;
        Some(First {
            auth: self,
            host,
            _lead: lead,
        })
    }

    /// Notes that `host` answered a request without credentials.
    pub fn open(&self, host: &str) {
        if !lock(&self.open).contains(host) {
            lock(&self.open).insert(host.to_string());
        }
    }

    /// The challenges learnt so far, by host, to keep for the next process.
    pub fn challenges(&self) -> Vec<(String, Challenge)> {
        lock(&self.challenges)
            .iter()
            .map(|(h, c)| (h.clone(), c.clone()))
            .collect()
    }

    /// The hosts that answered without asking for credentials.
    pub fn open_hosts(&self) -> Vec<String> {
        lock(&self.open).iter().cloned().collect()
    }

    /// Hosts an earlier process found open: their first request need not
    /// go alone (a host that asks for credentials now is answered as ever,
    /// after its 401).
    pub fn remember_open(&self, hosts: impl IntoIterator<Item = String>) {
        lock(&self.open).extend(hosts);
    }

    /// Challenges an earlier process learnt, so that no request of this one
    /// has to be refused first.
    pub fn remember(&self, known: impl IntoIterator<Item = (String, Challenge)>) {
        let mut challenges = lock(&self.challenges);
        for (host, challenge) in known {
            challenges.entry(host).or_insert(challenge);
        }
    }

    /// The `Authorization` value for `scopes` at `host`, as its known
    /// challenge asks: a (cached or new) bearer token, or Basic credentials.
    pub fn authorization(
        &self,
        transport: &Transport,
        host: &str,
        insecure: bool,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<Option<Secret>, Error> {
        let challenge = lock(&self.challenges).get(host).cloned();
        match challenge {
            Some(Challenge::Basic) => Ok(creds.map(basic)),
            Some(Challenge::Bearer { realm, service }) => {
                let key = (host.to_string(), scopes.join(" "), who(creds));
                let token = self.fetching.once(
                    &key,
                    || self.cached(&key),
                    || {
                        let got = TokenRequest {
                            host,
                            insecure,
                            realm: &realm,
                            service: service.as_deref(),
                        };
                        let (token, until) = got.fetch(transport, scopes, creds)?;
                        self.keep(key.clone(), token.clone(), until);
                        Ok::<_, Error>(token)
                    },
                )?;
                Ok(Some(Secret::new(format!("Bearer {}", token.expose()))))
            }
            None => Ok(None),
        }
    }

    /// The token cached under `key`, unless it expired.
    fn cached(&self, key: &TokenKey) -> Option<Secret> {
        lock(&self.tokens)
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| token.clone())
    }

    /// Caches `token` until `until`, and forgets the tokens that expired:
    /// a daemon asks for new scopes (repository pairs of mounts) for weeks.
    fn keep(&self, key: TokenKey, token: Secret, until: Instant) {
        let now = Instant::now();
        let mut tokens = lock(&self.tokens);
        tokens.retain(|_, (_, expires)| *expires > now);
        tokens.insert(key, (token, until));
    }
}

/// The lead of a host's first request: when it ends, whatever it learnt,
/// the host's later requests never wait.
pub struct First<'a> {
    auth: &'a Auth,
    host: String,
    _lead: Lead<'a, String>,
}

impl Drop for First<'_> {
    fn drop(&mut self) {
        lock(&self.auth.asked).insert(self.host.clone());
    }
}

/// A token to ask `realm` for, on behalf of `host`.
struct TokenRequest<'a> {
    host: &'a str,
    insecure: bool,
    realm: &'a str,
    service: Option<&'a str>,
}

impl TokenRequest<'_> {
    /// Gets a token for `scopes`, with Basic credentials when there are
    /// some, and returns it with the instant it expires.
    fn fetch(
        &self,
        transport: &Transport,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<(Secret, Instant), Error> {
        let realm = self.realm;
        if creds.is_some() && realm.starts_with("http://") && !self.insecure {
            return Err(self.fail(None, format!(
                "refusing to send credentials to the plain-HTTP token service {realm}; mark the registry insecure if that is intended"
            )));
        }
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        let service = self.service.map(|s| ("service", s.to_string()));
        let scopes = scopes.iter().map(|s| ("scope", s.clone()));
        for (k, v) in service.into_iter().chain(scopes) {
            url.push(sep);
            url.push_str(&format!("{k}={}", encode(&v)));
            sep = '&';
        }
        let authorization = creds.map(basic);
        let mut resp = transport
            .get_url(&url, self.insecure, authorization.as_ref())
            .map_err(|e| Error::Network {
                host: self.host.to_string(),
                detail: format!("token request to {realm} failed: {e}"),
            })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let hint = if creds.is_some() {
                "; check the credentials"
            } else {
                ""
            };
            return Err(self.fail(
                Some(status),
                format!("the token service {realm} refused ({status}){hint}"),
            ));
        }
        let mut text = String::new();
        resp.body_mut()
            .as_reader()
            .take(1 << 20)
            .read_to_string(&mut text)
            .map_err(|e| self.fail(None, format!("reading the token: {e}")))?;
        self.token_of(&text)
    }

    fn token_of(&self, text: &str) -> Result<(Secret, Instant), Error> {
        let realm = self.realm;
        let body: Value = serde_json::from_str(text).map_err(|_| {
            self.fail(
                None,
                format!("the token service {realm} did not answer JSON"),
            )
        })?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(Value::as_str)
            .ok_or_else(|| self.fail(None, format!("the token service {realm} sent no token")))?;
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

    fn fail(&self, status: Option<u16>, detail: String) -> Error {
        Error::Registry {
            host: self.host.to_string(),
            status,
            code: None,
            detail,
            retry_after: None,
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

fn basic(c: &Credentials) -> Secret {
    let pair = format!("{}:{}", c.user, c.password.expose());
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
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

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_expired_token_is_forgotten_when_another_is_kept() {
        let auth = Auth::default();
        let key = |scope: &str| ("h".to_string(), scope.to_string(), String::new());
        let now = Instant::now();
        auth.keep(key("a"), Secret::new("x"), now);
        auth.keep(key("b"), Secret::new("y"), now + Duration::from_secs(60));
        auth.keep(key("c"), Secret::new("z"), now + Duration::from_secs(60));
        let mut kept: Vec<String> = lock(&auth.tokens).keys().map(|k| k.1.clone()).collect();
        kept.sort();
        assert_eq!(kept, ["b", "c"]);
    }

    #[test]
    fn a_hosts_first_request_goes_alone_and_only_the_first() {
        let auth = Auth::default();
        auth.open("open:5000");
        assert!(
            auth.first_request("open:5000").is_none(),
            "known: nobody waits"
        );
        let first = auth.first_request("new:5000").expect("the first leads");
        let waited = std::thread::scope(|s| {
            let other = s.spawn(|| {
                let started = Instant::now();
                let lead = auth.first_request("new:5000");
                (lead.is_none(), started.elapsed())
            });
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
            other.join().unwrap()
        });
        assert!(waited.0, "the second does not lead");
        assert!(
            waited.1 >= Duration::from_millis(40),
            "it waited: {:?}",
            waited.1
        );
        assert!(
            auth.first_request("new:5000").is_none(),
            "the first went, whatever it learnt: later ones never wait"
        );
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            encode("repository:library/alpine:pull"),
            "repository%3Alibrary%2Falpine%3Apull"
        );
        assert_eq!(encode("registry.docker.io"), "registry.docker.io");
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
