//! Registry credentials in the DockerConfigJSON format that `docker login`
//! writes and Kubernetes stores as `.dockerconfigjson`: parsing and checking
//! the document (raw or base64-encoded), and finding the user and password
//! it holds for a registry, for picture-book's own requests. How the CLI
//! engines are handed it is `engine::private`'s business.

use std::fs;
use std::path::PathBuf;

use base64::Engine;
use serde_json::{Map, Value};

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
        let auths = root
            .as_object()
            .ok_or("not a DockerConfigJSON: expected a JSON object")?
            .get("auths")
            .ok_or("not a DockerConfigJSON: no \"auths\" object")?
            .as_object()
            .ok_or("not a DockerConfigJSON: \"auths\" must be an object")?;
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
        let document = serde_json::json!({ "auths": out }).to_string();
        Ok(DockerAuth {
            hosts,
            document: Secret::new(document),
            credentials,
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
    /// its names), if any.
    pub fn credentials_for(&self, host: &str) -> Option<Credentials> {
        lookup(&self.credentials, host)
    }
}

/// The credentials of the operator's own docker login for `host`: the
/// `auths` of `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`).
/// Credential helpers are not consulted.
pub fn operator_credentials(host: &str) -> Option<Credentials> {
    let text = fs::read_to_string(operator_config_dir()?.join("config.json")).ok()?;
    let root: Value = serde_json::from_str(&text).ok()?;
    lookup(&credentials_of(root.get("auths")?.as_object()?), host)
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
