//! The configuration: the types the rest of the program sees ([`Config`],
//! [`Registry`], [`Api`], [`Choice`]), finding the file, and reading it
//! ([`load`], [`parse`]). Reading goes in steps, each in its own file:
//! `schema` declares the file as written (serde structs that refuse unknown
//! keys, and the key lists); `salvage` reads it and turns serde's YAML
//! errors into every problem, each at its line; `validate` checks the raw
//! values into these types, reporting every problem with its key path;
//! `values` reads durations, sizes and secret files; `view` is the API's
//! redacted view of a registry. Nothing runs on a bad config. Commands the
//! file names are checked by the top-level `commands`, schedules by
//! `schedule`.
//!
//! Adding a key touches three places in this folder:
//! 1. `schema.rs`: one line in its level's table, the key beside its raw
//!    field; this makes it a key the file accepts and the messages list.
//! 2. here: its field in [`Config`], [`Registry`] or [`Api`]. A registry's
//!    field is in the API's view under its own name in camelCase; a
//!    `#[serde]` attribute on it says when the key is named otherwise, or
//!    when the view shows it in another form (`view.rs` has the forms).
//! 3. `validate.rs`: the line that checks it. For a registry key, its line
//!    in the [`Registry`] literal of `Validator::registry`; for an `api` key,
//!    in `Validator::api`; for a top-level key, in `validate::config`.
//!
//! Two kinds of key take one line more: a key of the top level, which
//! `salvage::salvage` reads on its own after a YAML error (registry and
//! `api` keys are read there by their section's struct); a key only the
//! native engine uses, which `Validator::native_only` names.
//!
//! Outside the folder, the README documents the key (tests/e2e/docs.rs
//! checks that it does) and tests/e2e/bad_input.rs gives it a bad value.

mod salvage;
pub mod schedule;
mod schema;
mod validate;
mod values;
mod view;

#[cfg(test)]
mod fixture;
mod images;

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::schedule::Schedule;
use crate::credentials::DockerAuth;
pub use crate::display::DisplayMode;
use crate::error::Error;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::secret::Secret;
use crate::selection::rules::{Immutable, RuleText, Rules};

pub use schema::{API_KEYS, IMAGE_KEYS, REGISTRY_KEYS, TOP_KEYS};
pub use values::{MAX_TOKEN_LEN, parse_duration};

/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "PICTURE_BOOK_CONFIG";
/// The system-wide configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/picture-book/config.yaml";
/// How long a syncer script may run when `syncerScriptTimeout` is not set.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);
/// How many images move at once when `parallel` is not set.
pub const DEFAULT_PARALLEL: usize = 2;
/// The most images a registry may move at once.
pub const MAX_PARALLEL: usize = 32;
/// The longest `syncerScriptTimeout` or `transferTimeout` accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How long one docker pull or push may take when `transferTimeout` is not set.
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a failed image is tried again when `retries` is not set.
pub const DEFAULT_RETRIES: u32 = 3;
/// The most `retries` accepted.
pub const MAX_RETRIES: u32 = 10;
/// The most `rateLimitMin` accepted (Docker Hub's largest limits are in
/// the thousands).
pub const MAX_RATE_LIMIT_MIN: u64 = 100_000;
/// The API port when `api.port` is not set.
pub const DEFAULT_API_PORT: u16 = 8001;
/// How many characters of a problem a message shows: a value pasted by
/// mistake (a megabyte of text) is cut, keeping the key path and the line.
const MAX_PROBLEM_LEN: usize = 1000;

/// A valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (absolute).
    pub path: PathBuf,
    /// The target registries, in file order.
    pub registries: Vec<Registry>,
    /// How progress is shown.
    pub display: DisplayMode,
    /// The HTTP API of `picture-book sync`.
    pub api: Api,
    /// Where state files live (`stateDir`), when configured.
    pub state_dir: Option<PathBuf>,
}

/// One target registry and how to fill it. Its `Serialize` is the API's
/// redacted view (see `view`): each field under the key it is read from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    /// The configuration file it was read from (absolute), which its
    /// syncer script is told (`PICTURE_BOOK_CONFIG`).
    #[serde(skip)]
    pub config_file: PathBuf,
    /// Target registry host, with optional port.
    pub hostname: String,
    /// Prefix for every target repository (may be empty).
    pub repository: String,
    /// Credentials for pulling the sources; `None` uses the operator's docker login.
    #[serde(rename = "pullAuthConfig", serialize_with = "view::secret")]
    pub pull_auth: Option<DockerAuth>,
    /// Credentials for pushing to `hostname`; `None` uses the operator's docker login.
    #[serde(rename = "pushAuthConfig", serialize_with = "view::secret")]
    pub push_auth: Option<DockerAuth>,
    /// When `picture-book sync` runs it; `None` means only on demand.
    #[serde(rename = "syncPeriod", serialize_with = "view::schedule")]
    pub schedule: Option<Schedule>,
    /// The syncer script, as an absolute path; none when `images` alone
    /// lists what to mirror.
    #[serde(rename = "syncerScript", serialize_with = "view::some_path")]
    pub script: Option<PathBuf>,
    /// Its arguments, already split into words.
    #[serde(skip)]
    pub script_args: Vec<String>,
    /// Its arguments as written.
    #[serde(rename = "syncerScriptArgs")]
    pub script_args_text: String,
    /// How long the script may run.
    #[serde(rename = "syncerScriptTimeout", serialize_with = "view::duration")]
    pub script_timeout: Duration,
    /// Remove local images after a successful push.
    pub delete_local_images: bool,
    /// How many images move at once.
    pub parallel: usize,
    /// How often an image that failed for a passing reason is tried again.
    pub retries: u32,
    /// How long one docker pull or push may take.
    #[serde(serialize_with = "view::duration")]
    pub transfer_timeout: Duration,
    /// The target speaks plain HTTP or has a certificate that is not verified.
    pub insecure: bool,
    /// Source registries that are insecure in the same way.
    pub insecure_registries: Vec<String>,
    /// What moves the images.
    pub engine: Choice,
    /// The platforms of an index the native engine copies (all when empty).
    #[serde(serialize_with = "view::texts")]
    pub platforms: Vec<Platform>,
    /// The native engine's upload chunk size, when blobs go in chunks.
    pub chunk_size: Option<u64>,
    /// Copy what refers to each image (signatures, attestations, SBOMs).
    pub referrers: bool,
    /// Only referrers of these artifact types (all when empty).
    pub referrer_types: Vec<String>,
    /// Pulls of a rate-limited source kept unspent (`rateLimitMin`): at or
    /// below it, a pull waits for the window.
    pub rate_limit_min: u64,
    /// The executable that creates a target repository the registry does
    /// not create on push (`createRepositoryScript`), as an absolute path.
    #[serde(serialize_with = "view::some_path")]
    pub create_repository_script: Option<PathBuf>,
    /// What to mirror besides what the syncer script lists (`images`).
    pub images: Vec<Image>,
}

/// One entry of a registry's `images`: a source, and for a repository the
/// rules that choose among its tags. Its `Serialize` is the API's view:
/// the keys as written.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    /// A repository, or exactly one tag or digest (as a script line).
    #[serde(serialize_with = "view::text")]
    pub source: Reference,
    /// The rules as written.
    #[serde(flatten)]
    pub written: RuleText,
    /// The rules checked; none for a tag or a digest, or a repository
    /// given without any (which means its `latest`, as a script line).
    #[serde(skip)]
    pub rules: Option<Rules>,
    /// Which of the tags it mirrors cost no request once recorded.
    pub immutable: Immutable,
    /// The line of its `source` key in the file, when it could be told.
    #[serde(skip)]
    pub line: Option<usize>,
}

/// The engine a registry's images move with (its `engine` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// The docker CLI and daemon: pull, tag, push (the default).
    #[default]
    Docker,
    /// picture-book's own registry-to-registry copy.
    Native,
    /// The podman CLI, daemonless: pull, tag, push.
    Podman,
}

impl Choice {
    /// Every choice, as the configuration spells them.
    pub const ALL: [Choice; 3] = [Choice::Docker, Choice::Native, Choice::Podman];

    /// The name the configuration and reports use.
    pub fn name(self) -> &'static str {
        match self {
            Choice::Docker => "docker",
            Choice::Native => "native",
            Choice::Podman => "podman",
        }
    }

    /// The choice `text` names.
    pub fn parse(text: &str) -> Option<Choice> {
        Choice::ALL.into_iter().find(|c| c.name() == text)
    }
}

/// The HTTP API settings.
#[derive(Debug, Clone)]
pub struct Api {
    /// Whether `picture-book sync` serves the API.
    pub enabled: bool,
    /// Address to listen on.
    pub address: IpAddr,
    /// Port to listen on.
    pub port: u16,
    /// The bearer token every request must carry, when authentication is on.
    pub token: Option<Secret>,
}

/// Finds the configuration file: `--config`, else `$PICTURE_BOOK_CONFIG`, else
/// `./config.yaml`, else `/etc/picture-book/config.yaml`.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let candidates = [PathBuf::from("./config.yaml"), PathBuf::from(SYSTEM_CONFIG)];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(Error::ConfigNotFound {
            searched: candidates.to_vec(),
        })
}

/// Reads and validates the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, Error> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let text = fs::read_to_string(&path).map_err(|source| Error::ConfigRead {
        path: path.clone(),
        source,
    })?;
    parse(&text, &path)
}

/// Validates configuration `text` read from `path` (relative paths in it
/// resolve against `path`'s directory).
pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
    let invalid = |problems: Vec<String>| Error::ConfigInvalid {
        path: path.to_path_buf(),
        problems: problems
            .iter()
            .map(|p| crate::error::excerpt(p, MAX_PROBLEM_LEN))
            .collect(),
    };
    let read = salvage::read(text).map_err(|problem| invalid(vec![problem]))?;
    let mut config = validate::config(read, path).map_err(invalid)?;
    images::locate(text, &mut config.registries);
    Ok(config)
}

impl Config {
    /// The registry configured for `host` (case-insensitive).
    pub fn registry(&self, host: &str) -> Result<&Registry, Error> {
        self.registries
            .iter()
            .find(|r| r.hostname.eq_ignore_ascii_case(host))
            .ok_or_else(|| Error::UnknownRegistry {
                host: host.to_string(),
                known: self.registries.iter().map(|r| r.hostname.clone()).collect(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixture::{Dir, SEED};

    #[test]
    fn seed_schema_is_accepted() {
        let dir = Dir::new("seed");
        let c = dir.parse(SEED).unwrap();
        let r = &c.registries[0];
        assert_eq!(r.hostname, "my-registry.com");
        assert_eq!(r.repository, "test-images");
        assert!(r.pull_auth.is_none() && r.push_auth.is_none());
        assert_eq!(r.script, Some(dir.0.join("sync.sh")));
        assert_eq!(r.script_timeout, DEFAULT_SCRIPT_TIMEOUT);
        assert!(!r.delete_local_images);
        assert_eq!(c.display, DisplayMode::Spinner);
        assert!(c.api.enabled);
        assert_eq!(c.api.port, 8001);
        assert_eq!(c.api.address.to_string(), "127.0.0.1");
        assert_eq!(
            c.api.token.as_ref().unwrap().expose(),
            "this-is-a-token-lol"
        );
    }

    #[test]
    fn additions_are_accepted() {
        let dir = Dir::new("additions");
        let auth = r#"{"auths":{"my-registry.com":{"auth":"dTpw"}}}"#;
        dir.file("push.json", auth, 0o600);
        dir.file("token", "tok\n", 0o640);
        let yaml = r#"
registries:
  - hostname: 127.0.0.1:5000
    pushAuthConfigFile: push.json
    pullAuthConfig: eyJhdXRocyI6eyJxLmlvIjp7ImF1dGgiOiJkVHB3In19fQ==
    syncerScript: ./sync.sh
    syncerScriptArgs: --channel "stable 2"
    syncerScriptTimeout: 90s
    deleteLocalImages: true
display: ''
api:
  address: 0.0.0.0
  enabled: true
  enableAuth: true
  authTokenFile: token
"#;
        let c = dir.parse(yaml).unwrap();
        let r = &c.registries[0];
        assert_eq!(r.push_auth.as_ref().unwrap().hosts(), ["my-registry.com"]);
        assert_eq!(r.pull_auth.as_ref().unwrap().hosts(), ["q.io"]);
        assert_eq!(r.script_args, ["--channel", "stable 2"]);
        assert_eq!(r.script_timeout, Duration::from_secs(90));
        assert!(r.delete_local_images);
        assert!(r.schedule.is_none());
        assert_eq!(c.display, DisplayMode::Verbose);
        assert_eq!(c.api.address.to_string(), "0.0.0.0");
        assert_eq!(c.api.token.as_ref().unwrap().expose(), "tok");
    }

    #[test]
    fn registry_lookup_lists_known_hosts() {
        let dir = Dir::new("lookup");
        let c = dir.parse(SEED).unwrap();
        assert!(c.registry("MY-REGISTRY.com").is_ok());
        let err = c.registry("nope.example.com").unwrap_err().to_string();
        assert_eq!(
            err,
            "no registry 'nope.example.com' in the configuration; configured: my-registry.com"
        );
    }
}
