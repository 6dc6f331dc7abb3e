//! The configuration as the API shows it: a registry's keys as the file
//! names them, with credentials replaced by `<redacted>`. The view derives
//! from [`Registry`] (its `#[serde]` attributes give each field's key and
//! form), so a new field is in it without a line here; this file holds how
//! the fields that are not plain values are shown.

use std::path::Path;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::config::schedule::Schedule;
use crate::config::{Choice, Registry};
use crate::credentials::DockerAuth;

impl Registry {
    /// The registry as the API shows it: the configuration's keys, with
    /// credentials replaced by `<redacted>` (or empty when there are none).
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// An engine by the name the configuration gives it.
impl Serialize for Choice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Credentials: `<redacted>` when there are some, else empty.
pub(super) fn secret<S: Serializer>(auth: &Option<DockerAuth>, s: S) -> Result<S::Ok, S::Error> {
    let shown = if auth.is_some() {
        crate::secret::REDACTED
    } else {
        ""
    };
    s.serialize_str(shown)
}

/// A schedule as written in the file.
pub(super) fn schedule<S: Serializer>(
    schedule: &Option<Schedule>,
    s: S,
) -> Result<S::Ok, S::Error> {
    schedule.as_ref().map(Schedule::source).serialize(s)
}

/// A duration as the file may write it: `90s`, `10m`, `2h`.
pub(super) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::error::human_duration(*d))
}

/// A value by its `Display` form.
pub(super) fn text<T: std::fmt::Display, S: Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// A path when there is one, else null.
pub(super) fn some_path<S: Serializer>(
    path: &Option<std::path::PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    path.as_deref().map(Path::to_string_lossy).serialize(s)
}

/// Values by their `Display` text.
pub(super) fn texts<S: Serializer, T: ToString>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(ToString::to_string))
}

#[cfg(test)]
mod tests {
    use crate::config::REGISTRY_KEYS;
    use crate::config::fixture::Dir;

    #[test]
    fn the_view_shows_every_key_and_no_secret() {
        let dir = Dir::new("view");
        let yaml = "registries:\n  - hostname: a.example.com\n    repository: team\n    pushAuthConfig: '{\"auths\":{}}'\n    syncPeriod: '@daily'\n    syncerScript: sync.sh\n    syncerScriptArgs: -x 'y z'\n    syncerScriptTimeout: 90\n    deleteLocalImages: true\n    parallel: 4\n    retries: 1\n    transferTimeout: 1h30m\n    insecure: true\n    insecureRegistries: [Q.io]\n    engine: native\n    platforms: [linux/arm/v7, linux/amd64]\n    chunkSize: 8MiB\n    referrers: true\n    referrerTypes: [a/b]\n    rateLimitMin: 7\n    createRepositoryScript: sync.sh\n    images:\n      - source: q.io/a/b\n        semver: '>=1'\n        exclude: -rc\n        latest: 2\n        immutable: ^1\\.\n      - source: q.io/a/c:1\n        immutable: true\n  - hostname: b.example.com\n    syncerScript: sync.sh\n";
        let config = dir.parse(yaml).unwrap();
        let script = dir.0.join("sync.sh");
        let script = script.display();
        let full = format!(
            r#"{{"chunkSize":8388608,"createRepositoryScript":"{script}","deleteLocalImages":true,"engine":"native","hostname":"a.example.com","images":[{{"exclude":["-rc"],"immutable":"^1\\.","latest":2,"semver":">=1","source":"q.io/a/b"}},{{"immutable":true,"source":"q.io/a/c:1"}}],"insecure":true,"insecureRegistries":["q.io"],"parallel":4,"platforms":["linux/arm/v7","linux/amd64"],"pullAuthConfig":"","pushAuthConfig":"<redacted>","rateLimitMin":7,"referrerTypes":["a/b"],"referrers":true,"repository":"team","retries":1,"syncPeriod":"@daily","syncerScript":"{script}","syncerScriptArgs":"-x 'y z'","syncerScriptTimeout":"90s","transferTimeout":"90m"}}"#
        );
        let plain = format!(
            r#"{{"chunkSize":null,"createRepositoryScript":null,"deleteLocalImages":false,"engine":"docker","hostname":"b.example.com","images":[],"insecure":false,"insecureRegistries":[],"parallel":2,"platforms":[],"pullAuthConfig":"","pushAuthConfig":"","rateLimitMin":0,"referrerTypes":[],"referrers":false,"repository":"","retries":3,"syncPeriod":null,"syncerScript":"{script}","syncerScriptArgs":"","syncerScriptTimeout":"10m","transferTimeout":"30m"}}"#
        );
        assert_eq!(config.registries[0].redacted().to_string(), full);
        assert_eq!(config.registries[1].redacted().to_string(), plain);
        let view = config.registries[0].redacted();
        let shown: Vec<&str> = view
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut keys: Vec<&str> = REGISTRY_KEYS
            .iter()
            .copied()
            .filter(|k| !k.ends_with("File"))
            .collect();
        keys.sort_unstable();
        assert_eq!(shown, keys, "every key but the ...File twins of a secret");
    }
}
