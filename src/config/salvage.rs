//! Reading the file into its raw form, and making serde's YAML errors
//! useful: a duplicate key told at its own line, and after a first error,
//! every other unknown key or unreadable value, with the entries that do
//! deserialize kept so that they are checked too. The schema itself is
//! `schema`'s; what a value means is `validate`'s.

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use crate::config::schema::{API_KEYS, REGISTRY_KEYS, RawConfig, TOP_KEYS};

/// What of a file could be read.
pub(super) struct Readable {
    /// The file's raw form; after an error, with the parts that deserialized.
    pub(super) raw: RawConfig,
    /// The index in the file of each entry of `raw.registries`.
    pub(super) at: Vec<usize>,
    /// The problems found while reading.
    pub(super) problems: Vec<String>,
}

/// Reads `text` into its raw form, with every problem that serde finds.
/// The error is the only message when the YAML itself does not parse.
pub(super) fn read(text: &str) -> Result<Readable, String> {
    match serde_yaml::from_str::<RawConfig>(text) {
        Ok(raw) => Ok(Readable {
            at: (0..raw.registries.len()).collect(),
            raw,
            problems: Vec::new(),
        }),
        Err(e) => salvage(text, &e).ok_or_else(|| render_yaml_error(&e, text)),
    }
}

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
fn salvage(text: &str, first: &serde_yaml::Error) -> Option<Readable> {
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
    let mut raw = RawConfig::default();
    let mut at = Vec::new();
    match root.get("registries") {
        Some(Value::Sequence(entries)) => {
            for (i, entry) in entries.iter().enumerate() {
                let key = format!("registries[{i}]");
                if let Some(entry) = section(&key, entry, REGISTRY_KEYS, &mut report) {
                    raw.registries.push(entry);
                    at.push(i);
                }
            }
        }
        Some(_) => {}
        None => report("missing field `registries`".into()),
    }
    if let Some(dir) = root.get("stateDir") {
        raw.state_dir = top_value("stateDir", dir, &mut report).flatten();
    }
    if let Some(display) = root.get("display") {
        raw.display = top_value("display", display, &mut report).flatten();
    }
    if let Some(api) = root.get("api") {
        raw.api = section("api", api, API_KEYS, &mut report).flatten();
    }
    Some(Readable { raw, at, problems })
}

/// A top-level `value` (at `key`) as `T`, or its error reported.
fn top_value<T: DeserializeOwned>(
    key: &str,
    value: &Value,
    report: &mut dyn FnMut(String),
) -> Option<T> {
    serde_yaml::from_value::<T>(value.clone())
        .map_err(|e| report(format!("{key}: {e}")))
        .ok()
}

/// The keys of `map` that are not among `known`.
fn unknown_keys(map: &Mapping, known: &[&str]) -> Vec<String> {
    map.keys()
        .map(|k| k.as_str().map_or_else(|| format!("{k:?}"), String::from))
        .filter(|k| !known.contains(&k.as_str()))
        .collect()
}

/// One section (a registry entry, `api`) of a file that failed the typed
/// parse, read on its own: each unknown key is reported, else the field
/// that does not deserialize; the section when it is fine.
fn section<T: DeserializeOwned>(
    key: &str,
    value: &Value,
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
fn entry_error<T: DeserializeOwned>(key: &str, entry: &Value, fields: &[&str]) -> String {
    let msg = serde_yaml::to_string(entry)
        .ok()
        .and_then(|text| serde_yaml::from_str::<T>(&text).err())
        .map(|e| e.to_string())
        .unwrap_or_else(|| "cannot be read".into());
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    let names_field = fields.iter().any(|f| {
        msg.strip_prefix(f)
            .is_some_and(|rest| rest.starts_with(": ") || rest.starts_with(['[', '.']))
    });
    if names_field {
        format!("{key}.{msg}")
    } else {
        format!("{key}: {msg}")
    }
}

/// `keys` as serde lists them: `` `a`, `b` ``.
pub(super) fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixture::Dir;

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
    fn empty_or_missing_registries() {
        let dir = Dir::new("empty");
        assert_eq!(
            dir.problems("registries: []\n"),
            ["registries: at least one registry is required"]
        );
        assert!(dir.problems("")[0].contains("missing field `registries`"));
        assert!(dir.problems("registries: [")[0].contains("line"));
    }
}
