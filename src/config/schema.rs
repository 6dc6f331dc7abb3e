//! The configuration file as written: one serde struct per level (the top,
//! a registry entry, `api`) that refuses unknown keys, and the list of keys
//! each level accepts. Both come from one table per level, so a key is
//! declared once, its camelCase name beside its field. What a value means
//! and whether it is valid is `validate`'s business; explaining a YAML error
//! that serde gives is `salvage`'s.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Declares one level of the file: a `Raw*` struct whose fields are read
/// from the keys written beside them and that refuses any other key, and the
/// list of those keys in the same order (the order serde's "expected one
/// of" gives). Every field is optional unless its type says otherwise.
macro_rules! level {
    (
        $(#[$keys_doc:meta])*
        pub const $keys:ident;
        $(#[$doc:meta])*
        pub struct $name:ident {
            $( $(#[$attr:meta])* $key:literal => $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$keys_doc])*
        pub const $keys: &[&str] = &[$($key),*];

        $(#[$doc])*
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $( $(#[$attr])* #[serde(rename = $key)] pub(super) $field: $ty, )*
        }
    };
}

level! {
    /// The keys of the top level of the file.
    pub const TOP_KEYS;
    /// The whole file.
    pub struct RawConfig {
        "registries" => registries: Vec<RawRegistry>,
        "display" => display: Option<String>,
        "api" => api: Option<RawApi>,
        "stateDir" => state_dir: Option<PathBuf>,
    }
}

level! {
    /// The keys of a registry entry.
    pub const REGISTRY_KEYS;
    /// One entry of `registries`. A key that may hold a secret, or text
    /// that YAML would read as a number, is read by [`scalar_text`].
    pub struct RawRegistry {
        "hostname" => hostname: Option<String>,
        "repository" => repository: Option<String>,
        #[serde(default, deserialize_with = "scalar_text")]
        "pullAuthConfig" => pull_auth_config: Option<String>,
        #[serde(default, deserialize_with = "scalar_text")]
        "pushAuthConfig" => push_auth_config: Option<String>,
        "pullAuthConfigFile" => pull_auth_config_file: Option<PathBuf>,
        "pushAuthConfigFile" => push_auth_config_file: Option<PathBuf>,
        "syncPeriod" => sync_period: Option<String>,
        "syncerScript" => syncer_script: Option<PathBuf>,
        #[serde(default, deserialize_with = "scalar_text")]
        "syncerScriptArgs" => syncer_script_args: Option<String>,
        #[serde(default, deserialize_with = "scalar_text")]
        "syncerScriptTimeout" => syncer_script_timeout: Option<String>,
        "deleteLocalImages" => delete_local_images: Option<bool>,
        "parallel" => parallel: Option<u64>,
        "retries" => retries: Option<u64>,
        #[serde(default, deserialize_with = "scalar_text")]
        "transferTimeout" => transfer_timeout: Option<String>,
        "insecure" => insecure: Option<bool>,
        "insecureRegistries" => insecure_registries: Option<Vec<String>>,
        "engine" => engine: Option<String>,
        "platforms" => platforms: Option<Vec<String>>,
        #[serde(default, deserialize_with = "scalar_text")]
        "chunkSize" => chunk_size: Option<String>,
        "referrers" => referrers: Option<bool>,
        "referrerTypes" => referrer_types: Option<Vec<String>>,
        "rateLimitMin" => rate_limit_min: Option<u64>,
        "createRepositoryScript" => create_repository_script: Option<PathBuf>,
        "images" => images: Option<Vec<RawImage>>,
    }
}

level! {
    /// The keys of an entry of a registry's `images`.
    pub const IMAGE_KEYS;
    /// One entry of `images`: a source, and the rules that choose among
    /// its tags.
    pub struct RawImage {
        "source" => source: Option<String>,
        #[serde(default, deserialize_with = "scalar_text")]
        "semver" => semver: Option<String>,
        #[serde(default, deserialize_with = "scalar_text")]
        "match" => matching: Option<String>,
        #[serde(default, deserialize_with = "texts")]
        "exclude" => exclude: Option<Vec<String>>,
        "latest" => latest: Option<u64>,
        "allTags" => all_tags: Option<bool>,
        #[serde(default, deserialize_with = "flag_or_text")]
        "immutable" => immutable: Option<RawImmutable>,
    }
}

/// `immutable` as written: a flag, or a pattern of the tags it marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawImmutable {
    /// `true` or `false`.
    Flag(bool),
    /// A pattern.
    Pattern(String),
}

level! {
    /// The keys of `api`.
    pub const API_KEYS;
    /// The `api` section.
    pub struct RawApi {
        "enabled" => enabled: Option<bool>,
        "address" => address: Option<String>,
        "port" => port: Option<u16>,
        "enableAuth" => enable_auth: Option<bool>,
        #[serde(default, deserialize_with = "scalar_text")]
        "authToken" => auth_token: Option<String>,
        "authTokenFile" => auth_token_file: Option<PathBuf>,
    }
}

/// The visits of a visitor that reads every number as its text, as
/// `visit_str` reads it.
macro_rules! numbers_as_text {
    () => {
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
    };
}

/// The visits of a visitor (`$visitor`, whose value is an `Option`) that
/// reads null as absent.
macro_rules! absent_as_none {
    ($visitor:ident) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any($visitor)
        }
    };
}

/// Reads any YAML scalar as text: numbers and booleans too.
struct ScalarText;

impl<'de> Visitor<'de> for ScalarText {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    numbers_as_text!();
    absent_as_none!(ScalarText);
}

impl<'de> de::DeserializeSeed<'de> for ScalarText {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarText)
    }
}

/// Reads any YAML scalar as text (so `authToken: 1234` is a token, and a
/// type error never echoes a secret's value), and null as absent.
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(ScalarText)
}

/// Reads one text, or a list of texts (`exclude: -rc` and
/// `exclude: [-rc, -beta]` alike), numbers as text; null as absent.
fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Texts;
    impl<'de> Visitor<'de> for Texts {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a pattern or a list of patterns")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(vec![v.to_string()]))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut all = Vec::new();
            while let Some(Some(text)) = seq.next_element_seed(ScalarText)? {
                all.push(text);
            }
            Ok(Some(all))
        }
        numbers_as_text!();
        absent_as_none!(Texts);
    }
    d.deserialize_any(Texts)
}

/// Reads `true`, `false`, or another scalar as a pattern; null as absent.
fn flag_or_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RawImmutable>, D::Error> {
    struct FlagOrText;
    impl<'de> Visitor<'de> for FlagOrText {
        type Value = Option<RawImmutable>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true, false or a pattern")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(RawImmutable::Flag(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(RawImmutable::Pattern(v.to_string())))
        }
        numbers_as_text!();
        absent_as_none!(FlagOrText);
    }
    d.deserialize_any(FlagOrText)
}

#[cfg(test)]
mod tests {
    use crate::config::fixture::Dir;
    use crate::config::salvage::quoted;
    use crate::config::{API_KEYS, REGISTRY_KEYS, TOP_KEYS};

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
}
