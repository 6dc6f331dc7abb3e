//! Turning the raw file into the checked types: each key's value is read,
//! defaulted and bounded, and every problem is collected under its key path
//! (`registries[1].parallel: ...`), so that one run reports them all. How a
//! duration, size or secret file is read is `values`'s business; YAML and
//! type errors are found before, by `salvage`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::commands;
use crate::config::salvage::Readable;
use crate::config::schedule::Schedule;
use crate::config::schema::{RawApi, RawRegistry};
use crate::config::values::{parse_duration, parse_size, read_secret_file, usable_token};
use crate::config::{
    Api, Choice, Config, DEFAULT_API_PORT, DEFAULT_PARALLEL, DEFAULT_RETRIES,
    DEFAULT_SCRIPT_TIMEOUT, DEFAULT_TRANSFER_TIMEOUT, DisplayMode, MAX_PARALLEL,
    MAX_RATE_LIMIT_MIN, MAX_RETRIES, MAX_TIMEOUT, Registry,
};
use crate::credentials::DockerAuth;
use crate::platform::Platform;
use crate::reference;
use crate::secret::Secret;

/// The longest path the system opens (`PATH_MAX`).
const MAX_PATH_LEN: usize = 4096;
/// The API's address when `api.address` is not set.
const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The configuration that `read` holds, from the file at `path` (relative
/// paths in it resolve against its directory), or every problem found.
pub(super) fn config(read: Readable, path: &Path) -> Result<Config, Vec<String>> {
    let Readable {
        raw,
        at,
        mut problems,
    } = read;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut registries = registries(raw.registries, &at, base, &mut problems);
    for r in &mut registries {
        r.config_file = path.to_path_buf();
    }
    if registries.is_empty() && problems.is_empty() {
        problems.push("registries: at least one registry is required".to_string());
    }
    let display = display(raw.display.as_deref(), &mut problems);
    let api = Validator::new("api", &mut problems).api(raw.api.unwrap_or_default(), base);
    let state_dir_len = raw.state_dir.as_ref().map_or(0, |d| d.as_os_str().len());
    if state_dir_len > MAX_PATH_LEN {
        problems.push(format!(
            "stateDir: {state_dir_len} bytes long; a path has at most {MAX_PATH_LEN}"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
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
}

/// Every registry entry, checked; `at` gives each one's index in the file.
/// A hostname configured twice is a problem.
fn registries(
    raw: Vec<RawRegistry>,
    at: &[usize],
    base: &Path,
    problems: &mut Vec<String>,
) -> Vec<Registry> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut registries = Vec::new();
    for (r, &i) in raw.into_iter().zip(at) {
        let mut check = Validator::new(&format!("registries[{i}]"), problems);
        let host = r.hostname.as_deref().unwrap_or_default().trim().to_string();
        if !host.is_empty() {
            if let Some(first) = seen.insert(host.to_ascii_lowercase(), i) {
                check.problem(
                    "hostname",
                    format!("'{host}' is already configured at registries[{first}]"),
                );
            }
        }
        registries.push(check.registry(r, base));
    }
    registries
}

/// The `display` key: the spinner when unset.
fn display(raw: Option<&str>, problems: &mut Vec<String>) -> DisplayMode {
    match raw {
        None | Some("spinner") => DisplayMode::Spinner,
        Some("") => DisplayMode::Verbose,
        Some(other) => {
            problems.push(format!(
                "display: unknown value '{other}'; use 'spinner' or '' (docker's own output)"
            ));
            DisplayMode::Spinner
        }
    }
}

/// The `engine` key: docker when unset.
fn engine(raw: Option<&str>) -> Result<Choice, String> {
    match raw.map(str::trim) {
        None | Some("") => Ok(Choice::default()),
        Some(name) => Choice::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Choice::ALL.iter().map(|c| c.name()).collect();
            format!("unknown engine '{name}'; use {}", known.join(" or "))
        }),
    }
}

/// Checks the keys of one section (a registry entry, `api`) and collects
/// their problems under its key path.
pub(super) struct Validator<'a> {
    key: String,
    problems: &'a mut Vec<String>,
}

impl<'a> Validator<'a> {
    fn new(key: &str, problems: &'a mut Vec<String>) -> Validator<'a> {
        Validator {
            key: key.to_string(),
            problems,
        }
    }

    pub(super) fn problem(&mut self, field: &str, msg: impl fmt::Display) {
        self.problems.push(format!("{}.{field}: {msg}", self.key));
    }

    /// The whole key path of `field`.
    pub(super) fn path(&self, field: &str) -> String {
        format!("{}.{field}", self.key)
    }

    /// Records a problem that names its key path itself.
    pub(super) fn said(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// The value, or None with the problem recorded.
    pub(super) fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.problem(field, e)).ok()
    }

    /// The value, or its type's default with the problem recorded.
    fn value<T: Default>(&mut self, field: &str, result: Result<T, String>) -> T {
        self.check(field, result).unwrap_or_default()
    }

    /// One registry entry. Each key is checked in the order the problems
    /// are told; one that has a problem stands as its type's default, and
    /// then the problem, not this registry, reaches the caller of `parse`.
    fn registry(&mut self, r: RawRegistry, base: &Path) -> Registry {
        let engine = engine(r.engine.as_deref());
        let args = r.syncer_script_args.unwrap_or_default();
        let listed = r.images.as_ref().is_some_and(|i| !i.is_empty());
        let images = self.images(r.images);
        let registry = Registry {
            config_file: PathBuf::new(),
            hostname: self.hostname(r.hostname),
            repository: self.repository(r.repository),
            pull_auth: self.auth(
                "pullAuthConfig",
                r.pull_auth_config,
                r.pull_auth_config_file,
                base,
            ),
            push_auth: self.auth(
                "pushAuthConfig",
                r.push_auth_config,
                r.push_auth_config_file,
                base,
            ),
            schedule: self.schedule(r.sync_period),
            script: self.script(r.syncer_script, base, listed),
            script_args: self.value(
                "syncerScriptArgs",
                commands::split_words(&args).and_then(commands::check_args),
            ),
            script_args_text: args,
            script_timeout: self.timeout(
                "syncerScriptTimeout",
                r.syncer_script_timeout,
                DEFAULT_SCRIPT_TIMEOUT,
            ),
            transfer_timeout: self.timeout(
                "transferTimeout",
                r.transfer_timeout,
                DEFAULT_TRANSFER_TIMEOUT,
            ),
            parallel: self.count(
                "parallel",
                r.parallel,
                1,
                MAX_PARALLEL as u64,
                DEFAULT_PARALLEL as u64,
            ) as usize,
            retries: self.count(
                "retries",
                r.retries,
                0,
                MAX_RETRIES.into(),
                DEFAULT_RETRIES.into(),
            ) as u32,
            insecure_registries: self.hosts("insecureRegistries", r.insecure_registries),
            rate_limit_min: self.count("rateLimitMin", r.rate_limit_min, 0, MAX_RATE_LIMIT_MIN, 0),
            create_repository_script: self.hook(r.create_repository_script, base),
            delete_local_images: r.delete_local_images.unwrap_or(false),
            insecure: r.insecure.unwrap_or(false),
            engine: self.value("engine", engine.clone()),
            platforms: self.platforms(r.platforms.unwrap_or_default()),
            chunk_size: self.chunk_size(r.chunk_size.as_deref()),
            referrers: r.referrers.unwrap_or(false),
            referrer_types: self.referrer_types(r.referrer_types.unwrap_or_default()),
            images,
        };
        if let Ok(engine) = engine {
            self.native_only(engine, &registry);
        }
        registry
    }

    /// The `hostname` key: a registry host, with optional port.
    fn hostname(&mut self, raw: Option<String>) -> String {
        let hostname = raw.unwrap_or_default().trim().to_string();
        let checked = reference::check_registry_host(&hostname).map(|_| hostname);
        self.value("hostname", checked)
    }

    /// The `repository` key: a repository prefix, maybe empty.
    fn repository(&mut self, raw: Option<String>) -> String {
        let repository = raw.unwrap_or_default().trim().trim_matches('/').to_string();
        let checked = reference::check_repository(&repository).map(|_| repository);
        self.value("repository", checked)
    }

    /// A key that lists registry hosts: each one lowercase.
    fn hosts(&mut self, key: &str, raw: Option<Vec<String>>) -> Vec<String> {
        let mut hosts = Vec::new();
        for (i, host) in raw.unwrap_or_default().iter().enumerate() {
            let host = host.trim().to_ascii_lowercase();
            let checked = reference::check_registry_host(&host);
            if self.check(&format!("{key}[{i}]"), checked).is_some() {
                hosts.push(host);
            }
        }
        hosts
    }

    /// The `syncPeriod` key: a cron schedule, or none.
    fn schedule(&mut self, raw: Option<String>) -> Option<Schedule> {
        match raw.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => self.check("syncPeriod", Schedule::parse(p)),
        }
    }

    /// The keys that work only with the native engine, set on a registry
    /// that uses another one.
    fn native_only(&mut self, engine: Choice, r: &Registry) {
        if engine == Choice::Native {
            return;
        }
        for (key, set) in [
            ("platforms", !r.platforms.is_empty()),
            ("chunkSize", r.chunk_size.is_some()),
            ("referrers", r.referrers),
            ("referrerTypes", !r.referrer_types.is_empty()),
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

    /// The `referrerTypes` key: artifact (media) types, `type/subtype`;
    /// none when one is wrong.
    fn referrer_types(&mut self, raw: Vec<String>) -> Vec<String> {
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
        if ok { raw } else { Vec::new() }
    }

    /// The `platforms` key: `os/arch[/variant]` each; none when one is wrong.
    fn platforms(&mut self, raw: Vec<String>) -> Vec<Platform> {
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
        if ok { platforms } else { Vec::new() }
    }

    /// The `chunkSize` key: a size of at least 64 KiB, at most 1 GiB.
    fn chunk_size(&mut self, raw: Option<&str>) -> Option<u64> {
        let text = raw.map(str::trim).filter(|t| !t.is_empty())?;
        let checked = parse_size(text).and_then(|b| {
            if (64 << 10..=1 << 30).contains(&b) {
                Ok(b)
            } else {
                Err(format!("'{text}' is out of range 64KiB-1GiB"))
            }
        });
        self.check("chunkSize", checked)
    }

    /// A duration key: `default` when unset or empty, at most [`MAX_TIMEOUT`].
    fn timeout(&mut self, key: &str, raw: Option<String>, default: Duration) -> Duration {
        match raw.as_deref().map(str::trim) {
            None | Some("") => default,
            Some(t) => self.value(
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
    fn count(&mut self, key: &str, raw: Option<u64>, min: u64, max: u64, default: u64) -> u64 {
        match raw {
            None => default,
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.problem(key, format!("{n} is out of range {min}-{max}"));
                0
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
    ) -> Option<DockerAuth> {
        let inline = inline.filter(|t| !t.trim().is_empty());
        let file_key = format!("{key}File");
        let file = file.filter(|f| !f.as_os_str().is_empty());
        let (field, text) = match (inline, file) {
            (None, None) => return None,
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
        self.check(&field, DockerAuth::parse(&text))
    }

    /// The `createRepositoryScript` key: an executable, when set.
    fn hook(&mut self, raw: Option<PathBuf>, base: &Path) -> Option<PathBuf> {
        let path = base.join(raw.filter(|p| !p.as_os_str().is_empty())?);
        self.check("createRepositoryScript", commands::executable(&path))
    }

    /// The `syncerScript` key: an executable, required unless `images`
    /// lists something.
    fn script(&mut self, script: Option<PathBuf>, base: &Path, images: bool) -> Option<PathBuf> {
        let Some(script) = script.filter(|s| !s.as_os_str().is_empty()) else {
            if !images {
                self.problem(
                    "syncerScript",
                    "is required unless images lists what to mirror: the executable that prints the images to mirror",
                );
            }
            return None;
        };
        self.check("syncerScript", commands::executable(&base.join(script)))
    }

    /// The `api` section; its token only when authentication is on.
    fn api(&mut self, raw: RawApi, base: &Path) -> Api {
        let enabled = raw.enabled.unwrap_or(false);
        let address = match raw.address.as_deref().map(str::trim) {
            None | Some("") => LOCALHOST,
            Some(a) => self
                .check(
                    "address",
                    a.parse().map_err(|_| format!("'{a}' is not an IP address")),
                )
                .unwrap_or(LOCALHOST),
        };
        let port = match raw.port {
            None => DEFAULT_API_PORT,
            Some(0) => {
                self.problem("port", "must be between 1 and 65535");
                DEFAULT_API_PORT
            }
            Some(p) => p,
        };
        let token = self.token(raw.auth_token, raw.auth_token_file, base);
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

    /// The API token, from `authToken` or the file `authTokenFile` names.
    fn token(
        &mut self,
        inline: Option<String>,
        file: Option<PathBuf>,
        base: &Path,
    ) -> Option<Secret> {
        let inline = inline.filter(|t| !t.trim().is_empty());
        let file = file.filter(|f| !f.as_os_str().is_empty());
        match (inline, file) {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::config::fixture::Dir;
    use crate::config::{Choice, DEFAULT_SCRIPT_TIMEOUT, MAX_TIMEOUT};

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

    #[test]
    fn native_only_keys_are_refused_with_another_engine() {
        let dir = Dir::new("native-only");
        let entry = |engine: &str, rest: &str| {
            format!(
                "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n    engine: {engine}\n{rest}"
            )
        };
        let set = "    platforms: [linux/amd64]\n    chunkSize: 1MiB\n    referrers: true\n    referrerTypes: [a/b]\n";
        let tail = ": works only with engine: native (this registry's engine is podman)";
        assert_eq!(
            dir.problems(&entry("podman", set)),
            ["platforms", "chunkSize", "referrers", "referrerTypes"]
                .map(|k| format!("registries[0].{k}{tail}"))
        );
        assert!(dir.parse(&entry("native", set)).is_ok());
        let r = &dir.parse(&entry("''", "")).unwrap().registries[0];
        assert_eq!(r.engine, Choice::Docker);
    }

    #[test]
    fn a_key_with_a_problem_causes_no_second_one() {
        let dir = Dir::new("one-problem");
        let entry = |rest: &str| {
            format!("registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n{rest}")
        };
        assert_eq!(
            dir.problems(&entry("    engine: diesel\n    platforms: [linux/amd64]\n")),
            ["registries[0].engine: unknown engine 'diesel'; use docker or native or podman"]
        );
        assert_eq!(
            dir.problems(&entry(
                "    platforms: [linux/amd64, plan9]\n    chunkSize: 1KiB\n"
            )),
            [
                "registries[0].platforms[1]: 'plan9' is not a platform; write os/architecture[/variant], like linux/arm64 or linux/arm/v7",
                "registries[0].chunkSize: '1KiB' is out of range 64KiB-1GiB",
            ]
        );
    }
}
