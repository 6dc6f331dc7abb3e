//! The configuration file: where it is found, its schema (the seed's
//! camelCase keys plus the additions of this project), and validation. Raw
//! YAML is read into private structs that refuse unknown keys, then checked
//! as a whole into a [`Config`], the only form the rest of the program sees.
//! Every problem is reported with its key path; nothing runs on a bad config.

pub mod commands;
pub mod schedule;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::config::schedule::Schedule;
use crate::credentials::DockerAuth;
pub use crate::display::DisplayMode;
use crate::error::Error;
use crate::platform::Platform;
use crate::reference;
use crate::secret::Secret;

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
/// The longest API token accepted: it must fit in a request header.
pub const MAX_TOKEN_LEN: usize = 4096;
/// The longest path the system opens (`PATH_MAX`).
const MAX_PATH_LEN: usize = 4096;
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

/// One target registry and how to fill it.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Target registry host, with optional port.
    pub hostname: String,
    /// Prefix for every target repository (may be empty).
    pub repository: String,
    /// Credentials for pulling the sources; `None` uses the operator's docker login.
    pub pull_auth: Option<DockerAuth>,
    /// Credentials for pushing to `hostname`; `None` uses the operator's docker login.
    pub push_auth: Option<DockerAuth>,
    /// When `picture-book sync` runs it; `None` means only on demand.
    pub schedule: Option<Schedule>,
    /// The syncer script, as an absolute path.
    pub script: PathBuf,
    /// Its arguments, already split into words.
    pub script_args: Vec<String>,
    /// Its arguments as written.
    pub script_args_text: String,
    /// How long the script may run.
    pub script_timeout: Duration,
    /// Remove local images after a successful push.
    pub delete_local_images: bool,
    /// How many images move at once.
    pub parallel: usize,
    /// How often an image that failed for a passing reason is tried again.
    pub retries: u32,
    /// How long one docker pull or push may take.
    pub transfer_timeout: Duration,
    /// The target speaks plain HTTP or has a certificate that is not verified.
    pub insecure: bool,
    /// Source registries that are insecure in the same way.
    pub insecure_registries: Vec<String>,
    /// What moves the images.
    pub engine: Choice,
    /// The platforms of an index the native engine copies (all when empty).
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
    pub create_repository_script: Option<PathBuf>,
}

/// The engine a registry's images move with (its `engine` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The docker CLI and daemon: pull, tag, push (the default).
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    registries: Vec<RawRegistry>,
    #[serde(default)]
    display: Option<String>,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default)]
    state_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRegistry {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default, deserialize_with = "scalar_text")]
    pull_auth_config: Option<String>,
    #[serde(default, deserialize_with = "scalar_text")]
    push_auth_config: Option<String>,
    #[serde(default)]
    pull_auth_config_file: Option<PathBuf>,
    #[serde(default)]
    push_auth_config_file: Option<PathBuf>,
    #[serde(default)]
    sync_period: Option<String>,
    #[serde(default)]
    syncer_script: Option<PathBuf>,
    #[serde(default, deserialize_with = "scalar_text")]
    syncer_script_args: Option<String>,
    #[serde(default, deserialize_with = "scalar_text")]
    syncer_script_timeout: Option<String>,
    #[serde(default)]
    delete_local_images: Option<bool>,
    #[serde(default)]
    parallel: Option<u64>,
    #[serde(default)]
    retries: Option<u64>,
    #[serde(default, deserialize_with = "scalar_text")]
    transfer_timeout: Option<String>,
    #[serde(default)]
    insecure: Option<bool>,
    #[serde(default)]
    insecure_registries: Option<Vec<String>>,
    #[serde(default)]
    engine: Option<String>,
    #[serde(default)]
    platforms: Option<Vec<String>>,
    #[serde(default, deserialize_with = "scalar_text")]
    chunk_size: Option<String>,
    #[serde(default)]
    referrers: Option<bool>,
    #[serde(default)]
    referrer_types: Option<Vec<String>>,
    #[serde(default)]
    rate_limit_min: Option<u64>,
    #[serde(default)]
    create_repository_script: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawApi {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    enable_auth: Option<bool>,
    #[serde(default, deserialize_with = "scalar_text")]
    auth_token: Option<String>,
    #[serde(default)]
    auth_token_file: Option<PathBuf>,
}

/// Reads any YAML scalar as text (so `authToken: 1234` is a token, and a
/// type error never echoes a secret's value), and null as absent.
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Text)
        }
    }
    d.deserialize_any(Text)
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
    let (raw, mut problems) = match serde_yaml::from_str::<RawConfig>(text) {
        Ok(raw) => {
            let entries = raw.registries.into_iter().enumerate().collect();
            (
                Salvaged {
                    entries,
                    display: raw.display,
                    api: raw.api,
                    state_dir: raw.state_dir,
                },
                Vec::new(),
            )
        }
        Err(e) => match salvage(text, &e) {
            Some(salvaged) => salvaged,
            None => return Err(invalid(vec![render_yaml_error(&e, text)])),
        },
    };
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut registries = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, r) in raw.entries {
        let mut check = Checker {
            key: format!("registries[{i}]"),
            problems: &mut problems,
        };
        let host = r.hostname.as_deref().unwrap_or_default().trim().to_string();
        if !host.is_empty() {
            if let Some(first) = seen.insert(host.to_ascii_lowercase(), i) {
                check.problem(
                    "hostname",
                    format!("'{host}' is already configured at registries[{first}]"),
                );
            }
        }
        registries.extend(check.registry(r, base));
    }
    if registries.is_empty() && problems.is_empty() {
        problems.push("registries: at least one registry is required".to_string());
    }
    let display = match raw.display.as_deref() {
        None | Some("spinner") => DisplayMode::Spinner,
        Some("") => DisplayMode::Verbose,
        Some(other) => {
            problems.push(format!(
                "display: unknown value '{other}'; use 'spinner' or '' (docker's own output)"
            ));
            DisplayMode::Spinner
        }
    };
    let api = Checker {
        key: "api".into(),
        problems: &mut problems,
    }
    .api(raw.api, base);
    let state_dir_len = raw.state_dir.as_ref().map_or(0, |d| d.as_os_str().len());
    if state_dir_len > MAX_PATH_LEN {
        problems.push(format!(
            "stateDir: {state_dir_len} bytes long; a path has at most {MAX_PATH_LEN}"
        ));
    }
    if problems.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            registries,
            display,
            api,
            state_dir: raw
                .state_dir
                .filter(|d| !d.as_os_str().is_empty())
                .map(|d| base.join(d)),
        })
    } else {
        Err(invalid(problems))
    }
}

/// The parts of a configuration that deserialized.
struct Salvaged {
    /// Registry entries with their index in the file.
    entries: Vec<(usize, RawRegistry)>,
    display: Option<String>,
    api: Option<RawApi>,
    state_dir: Option<PathBuf>,
}

/// The keys each level of the file accepts (they must match the `Raw*`
/// structs; a unit test checks that serde names the same ones).
pub const TOP_KEYS: &[&str] = &["registries", "display", "api", "stateDir"];
/// The keys of a registry entry.
pub const REGISTRY_KEYS: &[&str] = &[
    "hostname",
    "repository",
    "pullAuthConfig",
    "pushAuthConfig",
    "pullAuthConfigFile",
    "pushAuthConfigFile",
    "syncPeriod",
    "syncerScript",
    "syncerScriptArgs",
    "syncerScriptTimeout",
    "deleteLocalImages",
    "parallel",
    "retries",
    "transferTimeout",
    "insecure",
    "insecureRegistries",
    "engine",
    "platforms",
    "chunkSize",
    "referrers",
    "referrerTypes",
    "rateLimitMin",
    "createRepositoryScript",
];
/// The keys of `api`.
pub const API_KEYS: &[&str] = &[
    "enabled",
    "address",
    "port",
    "enableAuth",
    "authToken",
    "authTokenFile",
];

/// `msg at line N` for a serde_yaml error of `text`. A duplicate key is
/// told at the line of its second appearance (serde_yaml gives the start of
/// the mapping that holds it).
fn render_yaml_error(e: &serde_yaml::Error, text: &str) -> String {
    let msg = e.to_string();
    let duplicate = msg
        .split_once("duplicate field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .and_then(|(key, _)| duplicate_key_line(text, key, e.location()?.line()));
    if let Some(line) = duplicate {
        let core = msg.split(" at line ").next().unwrap_or(&msg);
        return format!("{core} at line {line}");
    }
    match e.location() {
        Some(loc) if !msg.contains(" at line ") => format!("{msg} at line {}", loc.line()),
        _ => msg,
    }
}

/// The line (from 1) at which `key` appears a second time in one mapping of
/// the YAML `text`, looking from line `from` on: mappings are told apart by
/// indentation and sequence dashes, which is all a configuration file uses.
fn duplicate_key_line(text: &str, key: &str, from: usize) -> Option<usize> {
    let mut open: Vec<(usize, Vec<String>)> = Vec::new();
    for (n, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        let mut indent = line.len() - line.trim_start_matches(' ').len();
        let mut rest = line.trim_start_matches(' ');
        let mut item = false;
        while let Some(after) = rest.strip_prefix("- ") {
            let inner = after.trim_start_matches(' ');
            indent += rest.len() - inner.len();
            rest = inner;
            item = true;
        }
        let Some(name) = rest
            .split_once(':')
            .filter(|(_, after)| after.is_empty() || after.starts_with([' ', '\t']))
            .map(|(name, _)| name.trim().trim_matches(['\'', '"']))
            .filter(|name| !name.is_empty() && !name.starts_with('#'))
        else {
            continue;
        };
        open.retain(|(at, _)| *at < indent || (*at == indent && !item));
        if open.last().is_none_or(|(at, _)| *at < indent) {
            open.push((indent, Vec::new()));
        }
        let keys = &mut open.last_mut()?.1;
        if keys.iter().any(|k| k == name) && name == key {
            return Some(n + 1);
        }
        keys.push(name.to_string());
    }
    None
}

/// After the typed parse failed with `first`, reads the file again as plain
/// YAML to find every other problem: all unknown keys, and the entries that
/// do deserialize (so they can be checked too). None when the YAML itself
/// does not parse.
fn salvage(text: &str, first: &serde_yaml::Error) -> Option<(Salvaged, Vec<String>)> {
    use serde_yaml::Value;
    let first_text = render_yaml_error(first, text);
    let mut problems = vec![first_text.clone()];
    let mut report = |p: String| {
        let core = p.split(" at line ").next().unwrap_or(&p).to_string();
        if !first_text.contains(&core) && !problems.contains(&p) {
            problems.push(p);
        }
    };
    let root: Value = serde_yaml::from_str(text).ok()?;
    let root = root.as_mapping()?;
    for key in unknown_keys(root, TOP_KEYS) {
        report(format!(
            "unknown field `{key}`, expected one of {}",
            quoted(TOP_KEYS)
        ));
    }
    let mut salvaged = Salvaged {
        entries: Vec::new(),
        display: None,
        api: None,
        state_dir: None,
    };
    match root.get("registries") {
        Some(Value::Sequence(entries)) => {
            for (i, entry) in entries.iter().enumerate() {
                let key = format!("registries[{i}]");
                if let Some(raw) = section(&key, entry, REGISTRY_KEYS, &mut report) {
                    salvaged.entries.push((i, raw));
                }
            }
        }
        Some(_) => {}
        None => report("missing field `registries`".into()),
    }
    if let Some(dir) = root.get("stateDir") {
        match serde_yaml::from_value::<Option<PathBuf>>(dir.clone()) {
            Ok(d) => salvaged.state_dir = d,
            Err(e) => report(format!("stateDir: {e}")),
        }
    }
    if let Some(display) = root.get("display") {
        match serde_yaml::from_value::<Option<String>>(display.clone()) {
            Ok(d) => salvaged.display = d,
            Err(e) => report(format!("display: {e}")),
        }
    }
    if let Some(api) = root.get("api") {
        salvaged.api = section::<Option<RawApi>>("api", api, API_KEYS, &mut report).flatten();
    }
    Some((salvaged, problems))
}

/// The keys of `map` that are not among `known`.
fn unknown_keys(map: &serde_yaml::Mapping, known: &[&str]) -> Vec<String> {
    map.keys()
        .map(|k| k.as_str().map_or_else(|| format!("{k:?}"), String::from))
        .filter(|k| !known.contains(&k.as_str()))
        .collect()
}

/// One section (a registry entry, `api`) of a file that failed the typed
/// parse, read on its own: each unknown key is reported, else the field
/// that does not deserialize; the section when it is fine.
fn section<T: serde::de::DeserializeOwned>(
    key: &str,
    value: &serde_yaml::Value,
    known: &[&str],
    report: &mut dyn FnMut(String),
) -> Option<T> {
    let bad_keys = value
        .as_mapping()
        .map(|m| unknown_keys(m, known))
        .unwrap_or_default();
    for k in &bad_keys {
        report(format!(
            "{key}: unknown field `{k}`, expected one of {}",
            quoted(known)
        ));
    }
    match serde_yaml::from_value::<T>(value.clone()) {
        Ok(t) => Some(t),
        Err(_) if bad_keys.is_empty() => {
            report(entry_error::<T>(key, value, known));
            None
        }
        Err(_) => None,
    }
}

/// Why `entry` (at `key`) does not deserialize as `T`, with the failing
/// field named: the entry is written out and read back, since serde_yaml
/// tracks field paths only when reading text (the line it gives is then
/// meaningless and dropped).
fn entry_error<T: serde::de::DeserializeOwned>(
    key: &str,
    entry: &serde_yaml::Value,
    fields: &[&str],
) -> String {
    let msg = serde_yaml::to_string(entry)
        .ok()
        .and_then(|text| serde_yaml::from_str::<T>(&text).err())
        .map(|e| e.to_string())
        .unwrap_or_else(|| "cannot be read".into());
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    let names_field = fields.iter().any(|f| {
        msg.strip_prefix(f)
            .is_some_and(|rest| rest.starts_with(": "))
    });
    if names_field {
        format!("{key}.{msg}")
    } else {
        format!("{key}: {msg}")
    }
}

fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Collects problems under a key path.
struct Checker<'a> {
    key: String,
    problems: &'a mut Vec<String>,
}

impl Checker<'_> {
    fn problem(&mut self, field: &str, msg: impl fmt::Display) {
        self.problems.push(format!("{}.{field}: {msg}", self.key));
    }

    fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.problem(field, e)).ok()
    }

    fn registry(&mut self, r: RawRegistry, base: &Path) -> Option<Registry> {
        let hostname = r.hostname.unwrap_or_default().trim().to_string();
        let host_ok = self.check("hostname", reference::check_registry_host(&hostname));
        let repository = r
            .repository
            .unwrap_or_default()
            .trim()
            .trim_matches('/')
            .to_string();
        let repo_ok = self.check("repository", reference::check_repository(&repository));
        let pull_auth = self.auth(
            "pullAuthConfig",
            r.pull_auth_config,
            r.pull_auth_config_file,
            base,
        );
        let push_auth = self.auth(
            "pushAuthConfig",
            r.push_auth_config,
            r.push_auth_config_file,
            base,
        );
        let schedule = match r.sync_period.as_deref().map(str::trim) {
            None | Some("") => Some(None),
            Some(p) => self.check("syncPeriod", Schedule::parse(p)).map(Some),
        };
        let script = self.script(r.syncer_script, base);
        let script_args_text = r.syncer_script_args.unwrap_or_default();
        let script_args = self.check(
            "syncerScriptArgs",
            commands::split_words(&script_args_text).and_then(commands::check_args),
        );
        let script_timeout = self.timeout(
            "syncerScriptTimeout",
            r.syncer_script_timeout,
            DEFAULT_SCRIPT_TIMEOUT,
        );
        let transfer_timeout = self.timeout(
            "transferTimeout",
            r.transfer_timeout,
            DEFAULT_TRANSFER_TIMEOUT,
        );
        let parallel = self.count(
            "parallel",
            r.parallel,
            1,
            MAX_PARALLEL as u64,
            DEFAULT_PARALLEL as u64,
        );
        let retries = self.count(
            "retries",
            r.retries,
            0,
            MAX_RETRIES.into(),
            DEFAULT_RETRIES.into(),
        );
        let mut insecure_registries = Vec::new();
        for (i, host) in r.insecure_registries.unwrap_or_default().iter().enumerate() {
            let host = host.trim().to_ascii_lowercase();
            if self
                .check(
                    &format!("insecureRegistries[{i}]"),
                    reference::check_registry_host(&host),
                )
                .is_some()
            {
                insecure_registries.push(host);
            }
        }
        let rate_limit_min = self.count("rateLimitMin", r.rate_limit_min, 0, MAX_RATE_LIMIT_MIN, 0);
        let create_repository_script = self.hook(r.create_repository_script, base);
        let engine = self.engine(r.engine.as_deref());
        let platforms = self.platforms(r.platforms.unwrap_or_default());
        let chunk_size = self.chunk_size(r.chunk_size.as_deref());
        let referrers = r.referrers.unwrap_or(false);
        let referrer_types = self.referrer_types(r.referrer_types.unwrap_or_default());
        if let Some(engine) = engine.filter(|e| *e != Choice::Native) {
            for (key, set) in [
                (
                    "platforms",
                    platforms.as_ref().is_some_and(|p| !p.is_empty()),
                ),
                ("chunkSize", chunk_size.is_some_and(|c| c.is_some())),
                ("referrers", referrers),
                (
                    "referrerTypes",
                    referrer_types.as_ref().is_some_and(|t| !t.is_empty()),
                ),
            ] {
                if set {
                    self.problem(
                        key,
                        format!(
                            "works only with engine: native (this registry's engine is {})",
                            engine.name()
                        ),
                    );
                }
            }
        }
        Some(Registry {
            hostname: host_ok.map(|_| hostname)?,
            repository: repo_ok.map(|_| repository)?,
            pull_auth: pull_auth?,
            push_auth: push_auth?,
            schedule: schedule?,
            script: script?,
            script_args: script_args?,
            script_args_text,
            script_timeout: script_timeout?,
            delete_local_images: r.delete_local_images.unwrap_or(false),
            parallel: parallel? as usize,
            retries: retries? as u32,
            transfer_timeout: transfer_timeout?,
            insecure: r.insecure.unwrap_or(false),
            insecure_registries,
            engine: engine?,
            platforms: platforms?,
            chunk_size: chunk_size?,
            referrers,
            referrer_types: referrer_types?,
            rate_limit_min: rate_limit_min?,
            create_repository_script: create_repository_script?,
        })
    }

    /// The `referrerTypes` key: artifact (media) types, `type/subtype`.
    fn referrer_types(&mut self, raw: Vec<String>) -> Option<Vec<String>> {
        let mut ok = true;
        for (i, t) in raw.iter().enumerate() {
            let valid = t.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/.+-_".contains(c))
            });
            if !valid {
                ok = false;
                self.problem(
                    &format!("referrerTypes[{i}]"),
                    format!("'{t}' is not a media type; write e.g. application/vnd.dev.cosign.artifact.sig.v1+json"),
                );
            }
        }
        ok.then_some(raw)
    }

    /// The `engine` key: `docker` when unset.
    fn engine(&mut self, raw: Option<&str>) -> Option<Choice> {
        match raw.map(str::trim) {
            None | Some("") => Some(Choice::Docker),
            Some(name) => {
                let known: Vec<&str> = Choice::ALL.iter().map(|c| c.name()).collect();
                self.check(
                    "engine",
                    Choice::parse(name).ok_or_else(|| {
                        format!("unknown engine '{name}'; use {}", known.join(" or "))
                    }),
                )
            }
        }
    }

    /// The `platforms` key: `os/arch[/variant]` each.
    fn platforms(&mut self, raw: Vec<String>) -> Option<Vec<Platform>> {
        let mut platforms = Vec::new();
        let mut ok = true;
        for (i, text) in raw.iter().enumerate() {
            match Platform::parse(text) {
                Some(p) => platforms.push(p),
                None => {
                    ok = false;
                    self.problem(
                        &format!("platforms[{i}]"),
                        format!("'{text}' is not a platform; write os/architecture[/variant], like linux/arm64 or linux/arm/v7"),
                    );
                }
            }
        }
        ok.then_some(platforms)
    }

    /// The `chunkSize` key: bytes, or a number with KiB, MiB or GiB; at
    /// least 64 KiB, at most 1 GiB.
    fn chunk_size(&mut self, raw: Option<&str>) -> Option<Option<u64>> {
        let Some(text) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
            return Some(None);
        };
        let (digits, unit) = text
            .find(|c: char| !c.is_ascii_digit())
            .map_or((text, ""), |i| text.split_at(i));
        let multiplier = match unit.trim() {
            "" | "B" => Some(1u64),
            "KiB" | "K" | "k" => Some(1 << 10),
            "MiB" | "M" => Some(1 << 20),
            "GiB" | "G" => Some(1 << 30),
            _ => None,
        };
        let bytes = digits
            .parse::<u64>()
            .ok()
            .zip(multiplier)
            .and_then(|(n, m)| n.checked_mul(m));
        let checked = match bytes {
            Some(b) if (64 << 10..=1 << 30).contains(&b) => Ok(Some(b)),
            Some(_) => Err(format!("'{text}' is out of range 64KiB-1GiB")),
            None => Err(format!("'{text}' is not a size; write bytes, or e.g. 8MiB")),
        };
        self.check("chunkSize", checked)
    }

    /// A duration key: `default` when unset or empty, at most [`MAX_TIMEOUT`].
    fn timeout(&mut self, key: &str, raw: Option<String>, default: Duration) -> Option<Duration> {
        match raw.as_deref().map(str::trim) {
            None | Some("") => Some(default),
            Some(t) => self.check(
                key,
                parse_duration(t).and_then(|d| {
                    if d > MAX_TIMEOUT {
                        Err(format!("'{t}' is longer than the longest allowed, 24h"))
                    } else {
                        Ok(d)
                    }
                }),
            ),
        }
    }

    /// A count key: `default` when unset, else within `min..=max`.
    fn count(
        &mut self,
        key: &str,
        raw: Option<u64>,
        min: u64,
        max: u64,
        default: u64,
    ) -> Option<u64> {
        match raw {
            None => Some(default),
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.problem(key, format!("{n} is out of range {min}-{max}"));
                None
            }
        }
    }

    /// Reads one DockerConfigJSON from the inline key or its `...File` twin.
    fn auth(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
        base: &Path,
    ) -> Option<Option<DockerAuth>> {
        let inline = inline.filter(|t| !t.trim().is_empty());
        let file_key = format!("{key}File");
        let file = file.filter(|f| !f.as_os_str().is_empty());
        let (field, text) = match (inline, file) {
            (None, None) => return Some(None),
            (Some(_), Some(_)) => {
                self.problem(key, format!("set {key} or {file_key}, not both"));
                return None;
            }
            (Some(text), None) => (key.to_string(), text),
            (None, Some(file)) => {
                let path = base.join(file);
                let text = read_secret_file(&path, &format!("{}.{file_key}", self.key));
                (file_key.clone(), self.check(&file_key, text)?)
            }
        };
        self.check(&field, DockerAuth::parse(&text)).map(Some)
    }

    /// The `createRepositoryScript` key: an executable, when set.
    fn hook(&mut self, raw: Option<PathBuf>, base: &Path) -> Option<Option<PathBuf>> {
        match raw {
            Some(p) if !p.as_os_str().is_empty() => self
                .check(
                    "createRepositoryScript",
                    commands::executable(&base.join(p)),
                )
                .map(Some),
            _ => Some(None),
        }
    }

    fn script(&mut self, script: Option<PathBuf>, base: &Path) -> Option<PathBuf> {
        let Some(script) = script.filter(|s| !s.as_os_str().is_empty()) else {
            self.problem(
                "syncerScript",
                "is required: the executable that prints the images to mirror",
            );
            return None;
        };
        self.check("syncerScript", commands::executable(&base.join(script)))
    }

    fn api(&mut self, raw: Option<RawApi>, base: &Path) -> Api {
        let raw = raw.unwrap_or(RawApi {
            enabled: None,
            address: None,
            port: None,
            enable_auth: None,
            auth_token: None,
            auth_token_file: None,
        });
        let enabled = raw.enabled.unwrap_or(false);
        let address = match raw.address.as_deref().map(str::trim) {
            None | Some("") => IpAddr::from([127, 0, 0, 1]),
            Some(a) => self
                .check(
                    "address",
                    a.parse().map_err(|_| format!("'{a}' is not an IP address")),
                )
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        };
        let port = match raw.port {
            None => DEFAULT_API_PORT,
            Some(0) => {
                self.problem("port", "must be between 1 and 65535");
                DEFAULT_API_PORT
            }
            Some(p) => p,
        };
        let inline = raw.auth_token.filter(|t| !t.trim().is_empty());
        let file = raw.auth_token_file.filter(|f| !f.as_os_str().is_empty());
        let token = match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem("authToken", "set authToken or authTokenFile, not both");
                None
            }
            (Some(t), None) => self.check("authToken", usable_token(&t)),
            (None, Some(f)) => {
                let path = base.join(f);
                let text = read_secret_file(&path, "api.authTokenFile");
                match self.check("authTokenFile", text) {
                    Some(t) if !t.trim().is_empty() => self.check(
                        "authTokenFile",
                        usable_token(&t).map_err(|e| format!("{}: {e}", path.display())),
                    ),
                    Some(_) => {
                        self.problem("authTokenFile", format!("{} is empty", path.display()));
                        None
                    }
                    None => None,
                }
            }
            (None, None) => None,
        };
        let enable_auth = raw.enable_auth.unwrap_or(false);
        if enabled
            && enable_auth
            && token.is_none()
            && !self.problems.iter().any(|p| p.starts_with("api.authToken"))
        {
            self.problem(
                "authToken",
                "is required when api.enableAuth is true (or set api.authTokenFile)",
            );
        }
        Api {
            enabled,
            address,
            port,
            token: if enable_auth { token } else { None },
        }
    }
}

/// A token as a client can send it in a header: trimmed, at most
/// [`MAX_TOKEN_LEN`] long, without control characters. The message never
/// shows the token.
fn usable_token(text: &str) -> Result<Secret, String> {
    let token = text.trim();
    if token.len() > MAX_TOKEN_LEN {
        Err(format!(
            "{} bytes long; a token has at most {MAX_TOKEN_LEN}",
            token.len()
        ))
    } else if token.chars().any(char::is_control) {
        Err("contains a control character, which a request header cannot carry".into())
    } else {
        Ok(Secret::new(token))
    }
}

/// Reads a file that holds a secret. One that every user may read or write
/// is refused (`chmod o-rw` it); one its group may read is accepted with a
/// warning, since `root:picture-book 0640` is how packages install such files.
fn read_secret_file(path: &Path, key: &str) -> Result<String, String> {
    let mode = fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o006 != 0 {
        return Err(format!(
            "{} holds a secret but every user may {} it (mode {:04o}); chmod o-rw it",
            path.display(),
            if mode & 0o004 != 0 { "read" } else { "write" },
            mode & 0o7777
        ));
    }
    if mode & 0o040 != 0 {
        log::warn!(
            "{key}: {} holds a secret and its group may read it (mode {:04o}); chmod 600 it unless that group is meant to",
            path.display(),
            mode & 0o7777
        );
    }
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Parses a duration: `90` or `90s` (seconds), `10m`, `2h`, or a sum like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("'{text}' is not a duration; use e.g. 90s, 10m, 1h or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return if secs == 0 {
            Err("must be longer than 0".into())
        } else {
            Ok(Duration::from_secs(secs))
        };
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    if total == 0 {
        return Err("must be longer than 0".into());
    }
    Ok(Duration::from_secs(total))
}

impl Registry {
    /// Whether `host` (a source registry, or this target) is insecure: plain
    /// HTTP allowed and TLS certificates not verified.
    pub fn is_insecure(&self, host: &str) -> bool {
        (self.insecure && host.eq_ignore_ascii_case(&self.hostname))
            || self
                .insecure_registries
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// The registry as the API shows it: the configuration's keys, with
    /// credentials replaced by `<redacted>` (or empty when there are none).
    pub fn redacted(&self) -> serde_json::Value {
        let secret = |a: &Option<DockerAuth>| {
            if a.is_some() {
                crate::secret::REDACTED
            } else {
                ""
            }
        };
        serde_json::json!({
            "hostname": self.hostname,
            "repository": self.repository,
            "pullAuthConfig": secret(&self.pull_auth),
            "pushAuthConfig": secret(&self.push_auth),
            "syncPeriod": self.schedule.as_ref().map(Schedule::source),
            "syncerScript": self.script,
            "syncerScriptArgs": self.script_args_text,
            "syncerScriptTimeout": crate::error::human_duration(self.script_timeout),
            "deleteLocalImages": self.delete_local_images,
            "parallel": self.parallel,
            "retries": self.retries,
            "transferTimeout": crate::error::human_duration(self.transfer_timeout),
            "insecure": self.insecure,
            "insecureRegistries": self.insecure_registries,
            "engine": self.engine.name(),
            "platforms": self.platforms.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "chunkSize": self.chunk_size,
            "referrers": self.referrers,
            "referrerTypes": self.referrer_types,
            "rateLimitMin": self.rate_limit_min,
            "createRepositoryScript": self.create_repository_script,
        })
    }
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
    use std::os::unix::fs::PermissionsExt;

    /// A directory holding an executable `sync.sh` and a config file.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("pb-config-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let script = dir.join("sync.sh");
            fs::write(&script, "#!/bin/sh\necho alpine\n").unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
            Dir(dir)
        }

        /// Writes a file with `mode`.
        fn file(&self, name: &str, text: &str, mode: u32) {
            let path = self.0.join(name);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }

        fn parse(&self, yaml: &str) -> Result<Config, Error> {
            parse(yaml, &self.0.join("config.yaml"))
        }

        fn problems(&self, yaml: &str) -> Vec<String> {
            match self.parse(yaml) {
                Err(Error::ConfigInvalid { problems, .. }) => problems,
                other => panic!("expected invalid config, got {other:?}"),
            }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const SEED: &str = r#"
registries:
  - hostname: 'my-registry.com'
    repository: 'test-images'
    pullAuthConfig: ''
    pushAuthConfig: ''
    syncPeriod: '*/1 * * * *'
    syncerScript: 'sync.sh'
    syncerScriptArgs: ''
display: "spinner"
api:
  enabled: true
  port: 8001
  enableAuth: true
  authToken: this-is-a-token-lol
"#;

    #[test]
    fn seed_schema_is_accepted() {
        let dir = Dir::new("seed");
        let c = dir.parse(SEED).unwrap();
        let r = &c.registries[0];
        assert_eq!(r.hostname, "my-registry.com");
        assert_eq!(r.repository, "test-images");
        assert!(r.pull_auth.is_none() && r.push_auth.is_none());
        assert_eq!(r.script, dir.0.join("sync.sh"));
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
    fn each_problem_names_its_key() {
        let dir = Dir::new("problems");
        fs::write(dir.0.join("noexec.sh"), "#!/bin/sh\n").unwrap();
        let yaml = r#"
registries:
  - hostname: ''
    syncerScript: sync.sh
  - hostname: reg.example.com
    syncPeriod: '61 * * * *'
    syncerScript: missing.sh
  - hostname: reg.example.com
    syncerScript: noexec.sh
    pullAuthConfig: '{"auths": {'
    syncerScriptArgs: '"unbalanced'
    syncerScriptTimeout: soon
  - hostname: other.example.com
    repository: Upper
    syncerScript: /
    pushAuthConfig: x
    pushAuthConfigFile: y
  - hostname: myregistry
display: fancy
api:
  enabled: true
  enableAuth: true
  port: 0
  address: localhost
"#;
        let problems = dir.problems(yaml);
        let expected = [
            "registries[0].hostname: must not be empty",
            "registries[1].syncPeriod: minute field '61': 61 is out of range 0-59",
            &format!(
                "registries[1].syncerScript: {} does not exist",
                dir.0.join("missing.sh").display()
            ),
            "registries[2].pullAuthConfig: not a DockerConfigJSON: invalid JSON",
            &format!(
                "registries[2].syncerScript: {} is not executable (chmod +x it)",
                dir.0.join("noexec.sh").display()
            ),
            "registries[2].syncerScriptArgs: unterminated double quote",
            "registries[2].syncerScriptTimeout: 'soon' is not a duration",
            "registries[2].hostname: 'reg.example.com' is already configured at registries[1]",
            "registries[3].repository: repository name must be lowercase",
            "registries[3].pushAuthConfig: set pushAuthConfig or pushAuthConfigFile, not both",
            "registries[3].syncerScript: / is not a file",
            "registries[4].hostname: 'myregistry' would be read by docker as a Docker Hub user",
            "registries[4].syncerScript: is required",
            "display: unknown value 'fancy'",
            "api.address: 'localhost' is not an IP address",
            "api.port: must be between 1 and 65535",
            "api.authToken: is required when api.enableAuth is true",
        ];
        for want in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn the_repository_hook_is_checked_like_the_syncer_script() {
        let dir = Dir::new("hook");
        dir.file("noexec.sh", "#!/bin/sh\n", 0o644);
        let yaml = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n    createRepositoryScript: missing.sh\n  - hostname: b.example.com\n    syncerScript: sync.sh\n    createRepositoryScript: noexec.sh\n    rateLimitMin: 100001\n";
        assert_eq!(
            dir.problems(yaml),
            [
                format!(
                    "registries[0].createRepositoryScript: {} does not exist",
                    dir.0.join("missing.sh").display()
                ),
                "registries[1].rateLimitMin: 100001 is out of range 0-100000".to_string(),
                format!(
                    "registries[1].createRepositoryScript: {} is not executable (chmod +x it)",
                    dir.0.join("noexec.sh").display()
                ),
            ]
        );
        let good = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n    createRepositoryScript: sync.sh\n    rateLimitMin: 5\n";
        let r = &dir.parse(good).unwrap().registries[0];
        assert_eq!(r.create_repository_script, Some(dir.0.join("sync.sh")));
        assert_eq!(r.rate_limit_min, 5);
        let plain = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n";
        let r = &dir.parse(plain).unwrap().registries[0];
        assert_eq!(
            (r.create_repository_script.as_ref(), r.rate_limit_min),
            (None, 0)
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let dir = Dir::new("unknown");
        let yaml = "registries:\n  - hostname: reg.example.com\n    syncerScript: sync.sh\n    syncPerod: '* * * * *'\n";
        let problems = dir.problems(yaml);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("registries[0]: unknown field `syncPerod`"),
            "{}",
            problems[0]
        );
        assert!(problems[0].contains("line 4"), "{}", problems[0]);
        let top = dir.problems("registries: []\nregistry: x\n");
        assert!(
            top[0].contains("unknown field `registry`") && top[0].contains("line"),
            "{top:?}"
        );
        let api = dir.problems("registries: []\napi:\n  token: x\n");
        assert!(api[0].starts_with("api: unknown field `token`"), "{api:?}");
    }

    #[test]
    fn type_errors_never_echo_secrets() {
        let dir = Dir::new("secrets");
        let yaml = "registries:\n  - hostname: r.example.com\n    syncerScript: sync.sh\n    pullAuthConfig: 123456789\napi:\n  authToken: 987654321\n";
        let problems = dir.problems(yaml);
        assert!(
            problems
                .iter()
                .all(|p| !p.contains("123456789") && !p.contains("987654321")),
            "{problems:?}"
        );
        assert!(problems[0].starts_with("registries[0].pullAuthConfig: not a DockerConfigJSON"));
    }

    #[test]
    fn empty_or_missing_registries() {
        let dir = Dir::new("empty");
        assert_eq!(
            dir.problems("registries: []\n"),
            ["registries: at least one registry is required"]
        );
        assert!(dir.problems("")[0].contains("missing field `registries`"));
        assert!(dir.problems("registries: [")[0].contains("line"));
    }

    #[test]
    fn a_duplicate_key_is_told_at_its_own_line() {
        let dir = Dir::new("duplicate");
        let yaml = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n  - hostname: b.example.com\n    repository: y\n    syncerScript: sync.sh\n    # a comment\n\n    repository: z\n";
        let problems = dir.problems(yaml);
        assert_eq!(
            problems,
            ["registries[1]: duplicate field `repository` at line 9"]
        );
        let top = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\napi:\n  enabled: true\n  port: 8001\n  enabled: false\ndisplay: spinner\n";
        assert_eq!(
            dir.problems(top),
            ["api: duplicate field `enabled` at line 7"]
        );
        assert_eq!(
            duplicate_key_line("a: 1\nb:\n  a: 2\n  c: 3\na: 4\n", "a", 1),
            Some(5)
        );
        assert_eq!(duplicate_key_line("- a: 1\n- a: 2\n", "a", 1), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0").unwrap_err().contains("longer than 0"));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5m3").is_err());
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

    #[test]
    fn every_problem_is_reported_even_after_a_type_error() {
        let dir = Dir::new("salvage");
        let yaml = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n    syncPerod: x\n    colour: blue\n  - hostname: b.example.com\n    syncerScript: sync.sh\n    deleteLocalImages: maybe\n  - hostname: c.example.com\n    syncerScript: sync.sh\n    syncPeriod: '0 25 * * *'\nfrobnicate: 1\napi:\n  prot: 80\n";
        let problems = dir.problems(yaml);
        let expected = [
            "registries[0]: unknown field `syncPerod`",
            "registries[0]: unknown field `colour`",
            "registries[1].deleteLocalImages: invalid type: string \"maybe\", expected a boolean",
            "registries[2].syncPeriod: hour field '25'",
            "unknown field `frobnicate`",
            "api: unknown field `prot`",
        ];
        for want in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {problems:#?}"
            );
        }
        assert!(
            problems[0].contains("line 4"),
            "the first problem keeps its line: {}",
            problems[0]
        );
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn key_lists_match_what_serde_accepts() {
        let dir = Dir::new("keys");
        let expected_one_of = |yaml: &str| {
            let p = dir.problems(yaml).remove(0);
            p.split("expected one of ")
                .nth(1)
                .unwrap()
                .split(" at line")
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            expected_one_of("registries:\n  - zzz: 1\n"),
            quoted(REGISTRY_KEYS)
        );
        assert_eq!(
            expected_one_of("registries: []\napi:\n  zzz: 1\n"),
            quoted(API_KEYS)
        );
        assert_eq!(
            expected_one_of("zzz: 1\nregistries: []\n"),
            quoted(TOP_KEYS)
        );
    }

    #[test]
    fn secret_files_that_cannot_be_used_are_named() {
        let dir = Dir::new("files");
        dir.file("empty-token", "  \n", 0o600);
        let yaml = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n    pullAuthConfigFile: nope.json\napi:\n  enabled: true\n  enableAuth: true\n  authTokenFile: empty-token\n";
        let problems = dir.problems(yaml);
        let missing = dir.0.join("nope.json");
        assert!(
            problems[0].starts_with(&format!(
                "registries[0].pullAuthConfigFile: cannot read {}: ",
                missing.display()
            )),
            "{problems:?}"
        );
        assert_eq!(
            problems[1],
            format!(
                "api.authTokenFile: {} is empty",
                dir.0.join("empty-token").display()
            )
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        dir.file("shared.json", "{}", 0o644);
        dir.file("token", "tok", 0o602);
        let open = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n    pushAuthConfigFile: shared.json\napi:\n  authTokenFile: token\n";
        let shared = dir.0.join("shared.json");
        let token = dir.0.join("token");
        assert_eq!(
            dir.problems(open),
            [
                format!(
                    "registries[0].pushAuthConfigFile: {} holds a secret but every user may read it (mode 0644); chmod o-rw it",
                    shared.display()
                ),
                format!(
                    "api.authTokenFile: {} holds a secret but every user may write it (mode 0602); chmod o-rw it",
                    token.display()
                ),
            ]
        );
        let both = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\napi:\n  authToken: t\n  authTokenFile: empty-token\n";
        assert_eq!(
            dir.problems(both),
            ["api.authToken: set authToken or authTokenFile, not both"]
        );
    }

    #[test]
    fn script_timeouts() {
        let dir = Dir::new("timeouts");
        let with = |t: &str| {
            format!(
                "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n    syncerScriptTimeout: {t}\n"
            )
        };
        assert_eq!(
            dir.parse(&with("''")).unwrap().registries[0].script_timeout,
            DEFAULT_SCRIPT_TIMEOUT
        );
        assert_eq!(
            dir.parse(&with("24h")).unwrap().registries[0].script_timeout,
            MAX_TIMEOUT
        );
        assert!(dir.problems(&with("25h"))[0].contains("longer than the longest allowed, 24h"));
        assert!(
            dir.problems(&with("18446744073709551615"))[0]
                .contains("longer than the longest allowed")
        );
    }
}
