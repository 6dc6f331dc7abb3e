//! Registry credentials in the DockerConfigJSON format that `docker login`
//! writes and Kubernetes stores as `.dockerconfigjson`: parsing and checking
//! the document (raw or base64-encoded), and finding the user and password
//! it holds for a registry, for picture-book's own requests: from its
//! `auths`, else from the docker credential helper its `credHelpers` or
//! `credsStore` names (`docker-credential-NAME get`, run as docker runs it,
//! with a time limit). How the CLI engines are handed the document is
//! `engine::config_dir`'s business.

use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Map, Value};

use crate::mutex::lock;
use crate::process::{self, Cancel, Spec};
use crate::reference;
use crate::secret::Secret;

/// The key under which the docker CLI looks up Docker Hub credentials.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Base64 as Kubernetes and `docker login` write it; padding optional.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// A checked DockerConfigJSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerAuth {
    /// The registries it holds credentials for, as written.
    hosts: Vec<String>,
    /// The `{"auths": ...}` document docker will read.
    document: Secret,
    /// User and password per registry (normalized host), for the registry API.
    credentials: Vec<(String, Credentials)>,
    /// Credential helpers by registry (normalized host): `credHelpers`.
    helpers: Vec<(String, String)>,
    /// The helper for every other registry: `credsStore`.
    store: Option<String>,
}

/// A user name and password (or token) for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password or token.
    pub password: Secret,
}

impl DockerAuth {
    /// Parses a DockerConfigJSON, raw or base64-encoded. The error names the
    /// part that is wrong and never quotes the secret.
    pub fn parse(text: &str) -> Result<DockerAuth, String> {
        let text = text.trim();
        let json = if text.starts_with('{') {
            text.to_string()
        } else {
            let compact: String = text.split_whitespace().collect();
            let bytes = BASE64.decode(compact.as_bytes()).map_err(|_| {
                "not a DockerConfigJSON: neither JSON nor base64-encoded JSON".to_string()
            })?;
            String::from_utf8(bytes).map_err(|_| {
                "not a DockerConfigJSON: base64 decodes to binary, not JSON".to_string()
            })?
        };
        let root: Value = serde_json::from_str(&json)
            .map_err(|e| format!("not a DockerConfigJSON: invalid JSON ({e})"))?;
        let root = root
            .as_object()
            .ok_or("not a DockerConfigJSON: expected a JSON object")?;
        let (helpers, store) = helpers_of(root)?;
        let empty = Map::new();
        let auths = match root.get("auths") {
            Some(a) => a
                .as_object()
                .ok_or("not a DockerConfigJSON: \"auths\" must be an object")?,
            None if !helpers.is_empty() || store.is_some() => &empty,
            None => return Err("not a DockerConfigJSON: no \"auths\" object".into()),
        };
        let mut out = Map::new();
        let mut hosts = Vec::new();
        for (host, entry) in auths {
            check_entry(host, entry)?;
            hosts.push(host.clone());
            out.insert(host.clone(), entry.clone());
        }
        let hub_entry = hosts
            .iter()
            .find(|h| is_docker_hub(h))
            .map(|h| auths[h.as_str()].clone());
        if let (Some(entry), false) = (hub_entry, out.contains_key(DOCKER_HUB_KEY)) {
            out.insert(DOCKER_HUB_KEY.to_string(), entry);
        }
        let credentials = credentials_of(auths);
        let mut document = serde_json::json!({ "auths": out });
        for key in ["credHelpers", "credsStore"] {
            if let Some(v) = root.get(key) {
                document[key] = v.clone();
            }
        }
        hosts.extend(helpers.iter().map(|(h, _)| h.clone()));
        Ok(DockerAuth {
            hosts,
            document: Secret::new(document.to_string()),
            credentials,
            helpers,
            store,
        })
    }

    /// The registries this document has credentials for.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The `{"auths": ...}` document a CLI engine reads.
    pub fn document(&self) -> &Secret {
        &self.document
    }

    /// The user and password it holds for `host` (Docker Hub under any of
    /// its names), if any: from `auths`, else from its credential helper.
    pub fn credentials_for(&self, host: &str) -> Option<Credentials> {
        lookup(&self.credentials, host).or_else(|| {
            let normalized = normalize_host(host);
            let helper = self
                .helpers
                .iter()
                .find(|(h, _)| *h == normalized)
                .map(|(_, name)| name)
                .or(self.store.as_ref())?;
            from_helper(helper, host)
        })
    }
}

/// The credential helpers of a document: `credHelpers` by normalized host,
/// and `credsStore`.
type Helpers = (Vec<(String, String)>, Option<String>);

/// The credential helpers a document names.
fn helpers_of(root: &Map<String, Value>) -> Result<Helpers, String> {
    let valid = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let mut helpers = Vec::new();
    if let Some(map) = root.get("credHelpers") {
        let map = map
            .as_object()
            .ok_or("not a DockerConfigJSON: \"credHelpers\" must be an object")?;
        for (host, name) in map {
            match name.as_str().filter(|n| valid(n)) {
                Some(n) => helpers.push((normalize_host(host), n.to_string())),
                None => {
                    return Err(format!(
                        "credHelpers[\"{host}\"] must name a helper, like \"ecr-login\""
                    ));
                }
            }
        }
    }
    let store = match root.get("credsStore") {
        None => None,
        Some(v) => match v.as_str() {
            Some("") => None,
            Some(n) if valid(n) => Some(n.to_string()),
            _ => return Err("credsStore must name a helper, like \"pass\"".into()),
        },
    };
    Ok((helpers, store))
}

/// How long what a credential helper said is used before it is asked again.
const HELPER_CACHE: Duration = Duration::from_secs(300);
/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// What credential helpers said, by helper and host.
type HelperCache = Mutex<Vec<((String, String), Option<Credentials>, Instant)>>;
static ASKED: HelperCache = Mutex::new(Vec::new());

/// The credentials `docker-credential-NAME get` gives for `host`, as docker
/// asks it: the server on its standard input, JSON on its output. Nothing
/// of the secret reaches an argument or a log line. An identity token
/// (`Username: <token>`) is not a password and gives none.
pub fn from_helper(name: &str, host: &str) -> Option<Credentials> {
    let key = (name.to_string(), normalize_host(host));
    {
        let mut asked = lock(&ASKED);
        asked.retain(|(_, _, at)| at.elapsed() < HELPER_CACHE);
        if let Some((_, creds, _)) = asked.iter().find(|(k, _, _)| *k == key) {
            return creds.clone();
        }
    }
    let server = if key.1 == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        host.to_string()
    };
    let program = format!("docker-credential-{name}");
    let spec = Spec::new(&program, ["get"], HELPER_TIMEOUT)
        .max_output(1 << 20)
        .input(format!("{server}\n"));
    let creds = match process::run(&spec, &Cancel::default(), &mut |_, _| {}) {
        Ok(done) if done.status.success() => parse_helper_answer(&done.stdout).or_else(|| {
            log::warn!("{program} gave no usable credentials for {host}");
            None
        }),
        Ok(done) => {
            let said = crate::error::excerpt(done.stderr.trim(), 200);
            log::debug!(
                "{program}: no credentials for {host} ({}: {said})",
                done.describe_status()
            );
            None
        }
        Err(process::Failure::NotFound) => {
            log::warn!(
                "command not found: {program} (named by credHelpers or credsStore for {host})"
            );
            None
        }
        Err(e) => {
            log::warn!("{program} could not be run for {host}: {e:?}");
            None
        }
    };
    lock(&ASKED).push((key, creds.clone(), Instant::now()));
    creds
}

/// A helper's `{"ServerURL": ..., "Username": ..., "Secret": ...}`.
fn parse_helper_answer(stdout: &str) -> Option<Credentials> {
    let v: Value = serde_json::from_str(stdout.trim()).ok()?;
    let user = v["Username"]
        .as_str()
        .filter(|u| !u.is_empty() && *u != "<token>")?;
    let secret = v["Secret"].as_str().filter(|s| !s.is_empty())?;
    Some(Credentials {
        user: user.to_string(),
        password: Secret::new(secret),
    })
}

/// The credentials of the operator's own docker login for `host`: the
/// `auths` of `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`),
/// else its `credHelpers` or `credsStore`.
pub fn operator_credentials(host: &str) -> Option<Credentials> {
    let text = fs::read_to_string(operator_config_dir()?.join("config.json")).ok()?;
    let root: Value = serde_json::from_str(&text).ok()?;
    let root = root.as_object()?;
    let empty = Map::new();
    let auths = root
        .get("auths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Some(found) = lookup(&credentials_of(auths), host) {
        return Some(found);
    }
    let (helpers, store) = helpers_of(root).ok()?;
    let normalized = normalize_host(host);
    let helper = helpers
        .iter()
        .find(|(h, _)| *h == normalized)
        .map(|(_, n)| n.clone())
        .or(store)?;
    from_helper(&helper, host)
}

/// The operator's docker configuration directory: `$DOCKER_CONFIG`, else
/// `~/.docker`.
pub fn operator_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// User and password of each `auths` entry that has them, by normalized host.
fn credentials_of(auths: &Map<String, Value>) -> Vec<(String, Credentials)> {
    auths
        .iter()
        .filter_map(|(host, entry)| {
            let text = |k: &str| {
                entry
                    .get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            let (user, password) = match (text("auth"), text("username"), text("password")) {
                (Some(auth), _, _) => {
                    let pair = String::from_utf8(BASE64.decode(auth.trim()).ok()?).ok()?;
                    let (u, p) = pair.split_once(':')?;
                    (u.to_string(), p.to_string())
                }
                (None, Some(u), Some(p)) => (u.to_string(), p.to_string()),
                _ => return None,
            };
            Some((
                normalize_host(host),
                Credentials {
                    user,
                    password: Secret::new(password),
                },
            ))
        })
        .collect()
}

fn lookup(entries: &[(String, Credentials)], host: &str) -> Option<Credentials> {
    let host = normalize_host(host);
    entries
        .iter()
        .find(|(h, _)| *h == host)
        .map(|(_, c)| c.clone())
}

/// `https://host/v1/` and friends to `host`; every Docker Hub name to `docker.io`.
fn normalize_host(host: &str) -> String {
    let bare = host
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if reference::is_docker_hub(&bare) {
        "docker.io".into()
    } else {
        bare
    }
}

fn is_docker_hub(host: &str) -> bool {
    normalize_host(host) == "docker.io"
}

fn check_entry(host: &str, entry: &Value) -> Result<(), String> {
    if host.trim().is_empty() {
        return Err("auths has an entry with an empty registry name".into());
    }
    let entry = entry
        .as_object()
        .ok_or_else(|| format!("auths[\"{host}\"] must be an object"))?;
    let text = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(auth) = entry.get("auth") {
        let decoded = auth
            .as_str()
            .and_then(|a| BASE64.decode(a.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok());
        return match decoded {
            Some(pair) if pair.contains(':') => Ok(()),
            _ => Err(format!(
                "auths[\"{host}\"].auth must be base64 of user:password"
            )),
        };
    }
    if (text("username").is_some() && text("password").is_some())
        || text("identitytoken").is_some()
        || text("registrytoken").is_some()
    {
        return Ok(());
    }
    Err(format!(
        "auths[\"{host}\"] has no credentials (expected \"auth\", or \"username\" and \"password\")"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn accepts_raw_json() {
        let doc = format!(
            r#"{{"auths":{{"reg.example:5000":{{"auth":"{}"}}}}}}"#,
            b64("u:p")
        );
        let auth = DockerAuth::parse(&doc).unwrap();
        assert_eq!(auth.hosts(), ["reg.example:5000"]);
    }

    #[test]
    fn accepts_base64_json_with_line_breaks() {
        let doc = r#"{"auths":{"q.io":{"username":"u","password":"p"}}}"#;
        let mut enc = b64(doc);
        enc.insert(10, '\n');
        assert_eq!(DockerAuth::parse(&enc).unwrap().hosts(), ["q.io"]);
    }

    #[test]
    fn docker_hub_gets_the_key_docker_reads() {
        let doc = format!(r#"{{"auths":{{"docker.io":{{"auth":"{}"}}}}}}"#, b64("u:p"));
        let auth = DockerAuth::parse(&doc).unwrap();
        let written: Value = serde_json::from_str(auth.document.expose()).unwrap();
        assert!(written["auths"][DOCKER_HUB_KEY]["auth"].is_string());
        assert!(written["auths"]["docker.io"]["auth"].is_string());
    }

    #[test]
    fn errors_name_the_problem_and_not_the_secret() {
        let cases = [
            ("hunter2", "neither JSON nor base64"),
            ("{\"auths\": hunter2}", "invalid JSON"),
            ("{\"hunter2\": {}}", "no \"auths\" object"),
            ("{\"auths\": []}", "\"auths\" must be an object"),
            (
                "{\"auths\": {\"r.io\": {\"auth\": \"hunter2\"}}}",
                "auths[\"r.io\"].auth must be base64 of user:password",
            ),
            (
                "{\"auths\": {\"r.io\": {\"username\": \"hunter2\"}}}",
                "auths[\"r.io\"] has no credentials",
            ),
        ];
        for (input, expected) in cases {
            let err = DockerAuth::parse(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
            assert!(!err.contains("hunter2"), "{input}: {err}");
        }
    }

    #[test]
    fn debug_output_hides_the_document() {
        let doc = format!(
            r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
            b64("u:hunter2")
        );
        let auth = DockerAuth::parse(&doc).unwrap();
        assert!(!format!("{auth:?}").contains(&b64("u:hunter2")));
    }

    #[test]
    fn helpers_are_named_by_host_or_as_the_store() {
        let doc = r#"{"credHelpers":{"R.io:5000":"pb-none-x"},"credsStore":"pb-none-y"}"#;
        let auth = DockerAuth::parse(doc).unwrap();
        assert_eq!(
            auth.helpers,
            [("r.io:5000".to_string(), "pb-none-x".to_string())]
        );
        assert_eq!(auth.store.as_deref(), Some("pb-none-y"));
        assert!(auth.document().expose().contains("credHelpers"));
        assert_eq!(auth.credentials_for("r.io:5000"), None, "no such helper");
        for bad in [
            r#"{"credHelpers":{"r.io":"../x"}}"#,
            r#"{"credHelpers":["x"]}"#,
            r#"{"credsStore":"a b"}"#,
        ] {
            assert!(DockerAuth::parse(bad).is_err(), "{bad}");
        }
        assert!(
            DockerAuth::parse("{}")
                .unwrap_err()
                .contains("no \"auths\"")
        );
    }

    #[test]
    fn a_helper_answer_gives_a_password_but_not_an_identity_token() {
        let got =
            parse_helper_answer(r#"{"ServerURL":"r.io","Username":"u","Secret":"s"}"#).unwrap();
        assert_eq!((got.user.as_str(), got.password.expose()), ("u", "s"));
        assert!(parse_helper_answer(r#"{"Username":"<token>","Secret":"t"}"#).is_none());
        assert!(parse_helper_answer("not json").is_none());
    }

    #[test]
    fn credentials_are_found_by_any_spelling_of_the_host() {
        let doc = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"quay.io":{{"username":"qu","password":"qp"}},"r.io:5000":{{"identitytoken":"x"}}}}}}"#,
            b64("hub:hp")
        );
        let auth = DockerAuth::parse(&doc).unwrap();
        let hub = auth.credentials_for("registry-1.docker.io").unwrap();
        assert_eq!((hub.user.as_str(), hub.password.expose()), ("hub", "hp"));
        assert_eq!(auth.credentials_for("docker.io"), Some(hub));
        assert_eq!(auth.credentials_for("QUAY.io").unwrap().user, "qu");
        assert_eq!(
            auth.credentials_for("r.io:5000"),
            None,
            "a token is not a password"
        );
        assert_eq!(auth.credentials_for("r.io"), None);
    }
}
