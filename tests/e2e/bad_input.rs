//! Bad input, as an operator or a broken syncer script gives it: every
//! configuration key with a value of the wrong type, an empty one and a huge
//! one, and scripts that print a flood of lines, endless output, binary
//! garbage, a megabyte on one line, or nothing. Each is refused or reported
//! with the key or the line it is about, in a message that is short and
//! printable, in bounded time, and never with a panic.

use std::fs;
use std::time::{Duration, Instant};

use picture_book::config::{API_KEYS, IMAGE_KEYS, REGISTRY_KEYS, TOP_KEYS};
use picture_book::exit::ExitCode;

use crate::harness::{Outcome, Registry, Workspace, single};

/// Where a configuration key lives.
#[derive(Clone, Copy, Debug)]
enum Level {
    Top,
    Registry,
    Image,
    Api,
}

/// A kind of bad value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A YAML value of another type than the key takes.
    WrongType,
    /// `''`.
    Empty,
    /// A megabyte of text.
    HugeText,
    /// An integer no integer type holds.
    HugeInteger,
    /// A float far beyond any sensible number.
    HugeFloat,
}

const KINDS: [Kind; 5] = [
    Kind::WrongType,
    Kind::Empty,
    Kind::HugeText,
    Kind::HugeInteger,
    Kind::HugeFloat,
];

/// A value of the wrong type for each key. A key the parser accepts but
/// this table lacks fails `every_config_key_refuses_bad_values`.
const WRONG_TYPE: &[(&str, &str)] = &[
    ("registries", "5"),
    ("display", "[spinner]"),
    ("api", "[1, 2]"),
    ("stateDir", "{dir: state}"),
    ("hostname", "[reg.example.com]"),
    ("repository", "{team: mirror}"),
    ("pullAuthConfig", "[1]"),
    ("pushAuthConfig", "[1]"),
    ("pullAuthConfigFile", "[pull.json]"),
    ("pushAuthConfigFile", "[push.json]"),
    ("syncPeriod", "[1, 2]"),
    ("syncerScript", "{path: sync.sh}"),
    ("syncerScriptArgs", "[--a, --b]"),
    ("syncerScriptTimeout", "[10m]"),
    ("deleteLocalImages", "yes"),
    ("parallel", "two"),
    ("retries", "three"),
    ("transferTimeout", "[30m]"),
    ("insecure", "sometimes"),
    ("insecureRegistries", "reg.example.com"),
    ("engine", "[native]"),
    ("platforms", "linux/amd64"),
    ("chunkSize", "[1MiB]"),
    ("rateLimitMin", "five"),
    ("createRepositoryScript", "{path: create.sh}"),
    ("images", "{source: a/b}"),
    ("source", "[a/b]"),
    ("semver", "[1]"),
    ("match", "[x]"),
    ("exclude", "{a: b}"),
    ("latest", "three"),
    ("allTags", "yes"),
    ("immutable", "[x]"),
    ("referrers", "sometimes"),
    ("referrerTypes", "application/x"),
    ("enabled", "maybe"),
    ("address", "[127.0.0.1]"),
    ("port", "http"),
    ("enableAuth", "yes"),
    ("authToken", "{token: x}"),
    ("authTokenFile", "[token]"),
];

/// The bad values a key takes on purpose, and why.
const ACCEPTED: &[(&str, Kind, &str)] = &[
    (
        "display",
        Kind::Empty,
        "'' shows docker's own progress output",
    ),
    ("stateDir", Kind::Empty, "empty means the default directory"),
    (
        "stateDir",
        Kind::HugeInteger,
        "a directory may have a number for a name",
    ),
    (
        "stateDir",
        Kind::HugeFloat,
        "a directory may be named '1e30'",
    ),
    ("repository", Kind::Empty, "no prefix"),
    (
        "repository",
        Kind::HugeInteger,
        "digits are a repository name",
    ),
    ("repository", Kind::HugeFloat, "'1e30' is a repository name"),
    ("pullAuthConfig", Kind::Empty, "the operator's docker login"),
    ("pushAuthConfig", Kind::Empty, "the operator's docker login"),
    ("pullAuthConfigFile", Kind::Empty, "as pullAuthConfig: ''"),
    ("pushAuthConfigFile", Kind::Empty, "as pushAuthConfig: ''"),
    ("syncPeriod", Kind::Empty, "unscheduled: mirrored on demand"),
    ("syncerScriptArgs", Kind::Empty, "no arguments"),
    ("syncerScriptArgs", Kind::HugeInteger, "a number is a word"),
    ("syncerScriptArgs", Kind::HugeFloat, "a number is a word"),
    ("syncerScriptTimeout", Kind::Empty, "the default, 10m"),
    ("transferTimeout", Kind::Empty, "the default, 30m"),
    ("engine", Kind::Empty, "the default, docker"),
    ("chunkSize", Kind::Empty, "no chunks: one PUT per blob"),
    ("createRepositoryScript", Kind::Empty, "no hook"),
    ("source", Kind::HugeInteger, "digits are a repository name"),
    ("source", Kind::HugeFloat, "'1e30' is a repository name"),
    ("match", Kind::Empty, "'' matches every tag"),
    ("match", Kind::HugeInteger, "digits are a pattern"),
    ("match", Kind::HugeFloat, "'1e30' is a pattern"),
    (
        "exclude",
        Kind::Empty,
        "'' drops every tag, which a warning then says",
    ),
    ("exclude", Kind::HugeInteger, "digits are a pattern"),
    ("exclude", Kind::HugeFloat, "'1e30' is a pattern"),
    ("immutable", Kind::Empty, "'' marks every tag"),
    ("immutable", Kind::HugeInteger, "digits are a pattern"),
    ("immutable", Kind::HugeFloat, "'1e30' is a pattern"),
    ("address", Kind::Empty, "the default, 127.0.0.1"),
    ("authToken", Kind::Empty, "no token (needed for enableAuth)"),
    ("authToken", Kind::HugeInteger, "a token may be all digits"),
    ("authToken", Kind::HugeFloat, "a token may be '1e30'"),
    ("authTokenFile", Kind::Empty, "as authToken: ''"),
];

/// How long one `check` may take, whatever the file holds.
const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// The longest stderr a refused configuration may produce.
const MAX_MESSAGE: usize = 2000;

fn value(key: &str, kind: Kind, huge: &str) -> String {
    match kind {
        Kind::WrongType => WRONG_TYPE
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .unwrap_or_default(),
        Kind::Empty => "''".into(),
        Kind::HugeText => format!("'{huge}'"),
        Kind::HugeInteger => "99999999999999999999".into(),
        Kind::HugeFloat => "1e30".into(),
    }
}

/// A valid configuration with `key` set to `value`, and the key's path as
/// messages name it.
fn config_with(level: Level, key: &str, value: &str) -> (String, String) {
    let mut registry = vec![("hostname", "reg.example.com"), ("syncerScript", "sync.sh")];
    let mut api = Vec::new();
    let mut top = String::new();
    let mut images = String::new();
    let path = match level {
        Level::Top => {
            top = format!("{key}: {value}\n");
            key.to_string()
        }
        Level::Registry => {
            registry.retain(|(k, _)| *k != key);
            registry.push((key, value));
            format!("registries[0].{key}")
        }
        Level::Image => {
            let mut entry = vec![("source", "reg.example.com/a/b"), ("latest", "1")];
            entry.retain(|(k, _)| *k != key && (*k != "latest" || key != "allTags"));
            entry.push((key, value));
            let lines: Vec<String> = entry
                .iter()
                .enumerate()
                .map(|(i, (k, v))| format!("{}{k}: {v}", if i == 0 { "- " } else { "  " }))
                .collect();
            images = lines.join("\n      ");
            format!("registries[0].images[0].{key}")
        }
        Level::Api => {
            if key != "enabled" {
                api.push(("enabled", "true"));
            }
            api.push((key, value));
            format!("api.{key}")
        }
    };
    let mut yaml = top;
    if key != "registries" {
        yaml.push_str("registries:\n");
        for (i, (k, v)) in registry.iter().enumerate() {
            let lead = if i == 0 { "  - " } else { "    " };
            yaml.push_str(&format!("{lead}{k}: {v}\n"));
        }
        if !images.is_empty() {
            yaml.push_str(&format!("    images:\n      {images}\n"));
        }
    }
    if !api.is_empty() {
        yaml.push_str("api:\n");
        for (k, v) in api {
            yaml.push_str(&format!("  {k}: {v}\n"));
        }
    }
    (yaml, path)
}

/// What is wrong with how picture-book refused (or took) a bad value.
fn judge(out: &Outcome, path: &str, accepted: Option<&str>) -> Option<String> {
    if out.stderr.contains("panicked") {
        return Some(format!("panicked: {}", out.stderr));
    }
    if out.elapsed > CHECK_LIMIT {
        return Some(format!("took {:?}", out.elapsed));
    }
    if out.stderr.len() > MAX_MESSAGE {
        return Some(format!("{} bytes of stderr", out.stderr.len()));
    }
    if let Some(c) = out.all().chars().find(|c| c.is_control() && *c != '\n') {
        return Some(format!("raw control character {c:?} in {:?}", out.stderr));
    }
    match accepted {
        Some(reason) if out.code != 0 => Some(format!(
            "should be accepted ({reason}), got {}: {}",
            out.code, out.stderr
        )),
        Some(_) => None,
        None if out.code != i32::from(ExitCode::Usage.code()) => {
            Some(format!("exit {} (want 2): {}", out.code, out.stderr))
        }
        None if !out.stderr.contains(&format!("{path}:")) => {
            Some(format!("the message does not name {path}: {}", out.stderr))
        }
        None => None,
    }
}

#[test]
fn every_config_key_refuses_bad_values() {
    let ws = Workspace::new();
    ws.list_script("sync.sh", &["alpine:3.19".to_string()]);
    let huge = "x".repeat(1 << 20);
    let keys = TOP_KEYS
        .iter()
        .map(|k| (Level::Top, *k))
        .chain(REGISTRY_KEYS.iter().map(|k| (Level::Registry, *k)))
        .chain(IMAGE_KEYS.iter().map(|k| (Level::Image, *k)))
        .chain(API_KEYS.iter().map(|k| (Level::Api, *k)));
    let mut failures = Vec::new();
    let mut cases = 0;
    for (level, key) in keys {
        if !WRONG_TYPE.iter().any(|(k, _)| *k == key) {
            failures.push(format!(
                "{key}: no bad-input case; add it to WRONG_TYPE (and ACCEPTED)"
            ));
            continue;
        }
        for kind in KINDS {
            let (yaml, path) = config_with(level, key, &value(key, kind, &huge));
            ws.config(&yaml);
            let out = ws.run_without_daemon(&["--config", "config.yaml", "check"]);
            let accepted = ACCEPTED
                .iter()
                .find(|(k, c, _)| *k == key && *c == kind)
                .map(|(_, _, why)| *why);
            if let Some(problem) = judge(&out, &path, accepted) {
                failures.push(format!("{key} {kind:?}: {problem}"));
            }
            cases += 1;
        }
    }
    assert!(cases >= 100, "only {cases} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn control_characters_in_config_values_are_shown_escaped() {
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[]);
    ws.config(
        "registries:\n  - hostname: \"\\e[31mreg.example.com\\0\"\n    syncerScript: sync.sh\ndisplay: \"\\e]0;owned\\a\"\n",
    );
    for command in [&["check"][..], &["load", "--all", "--dry-run"]] {
        let out = ws.run().without_daemon().args(command).run();
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            !out.all().contains(['\u{1b}', '\0', '\u{7}']),
            "{:?}",
            out.stderr
        );
        says(
            &out.stderr,
            "registries[0].hostname: invalid registry domain '\\u{1b}[31mreg.example.com\\u{0}'",
        );
        says(
            &out.stderr,
            "display: unknown value '\\u{1b}]0;owned\\u{7}'",
        );
    }
}

/// Asserts that `text` contains `want`, showing `text` when it does not.
fn says(text: &str, want: &str) {
    assert!(text.contains(want), "no {want:?} in: {text}");
}

/// A workspace whose syncer script is `body`, for target `127.0.0.1:9`
/// (nothing listens there: a dry run plans every image it cannot check).
fn script_workspace(body: &str) -> Workspace {
    let ws = Workspace::new();
    ws.script("sync.sh", body);
    ws.config("registries:\n  - hostname: 127.0.0.1:9\n    syncerScript: sync.sh\n");
    ws
}

/// `load --dry-run` (with `extra` arguments) without a docker daemon.
fn dry_run(ws: &Workspace, extra: &[&str]) -> Outcome {
    let out = ws
        .run()
        .without_daemon()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["load", "--all", "--dry-run"])
        .args(extra)
        .run();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out
}

/// A workspace whose script lists `n` different images.
fn numbered_images(n: usize) -> Workspace {
    script_workspace(&format!(
        "awk 'BEGIN {{ for (i = 1; i <= {n}; i++) printf \"127.0.0.1:9/team/img%d:v1\\n\", i }}'"
    ))
}

#[test]
fn a_hundred_thousand_lines_are_refused_quickly() {
    let out = dry_run(&numbered_images(100000), &["--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);
    let registry = &out.json()["registries"][0];
    let error = registry["error"].as_str().unwrap();
    says(
        error,
        "listed 100000 images, more than the 10000 one run takes; nothing was mirrored",
    );
    assert_eq!(registry["images"].as_array().unwrap().len(), 0);
}

#[test]
fn ten_thousand_lines_are_all_planned() {
    let out = dry_run(&numbered_images(10000), &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(60), "{:?}", out.elapsed);
    let images = out.json()["registries"][0]["images"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(images.len(), 10_000);
    assert!(images.iter().all(|i| i["outcome"] == "planned"));
    assert_eq!(images[9_999]["source"], "127.0.0.1:9/team/img10000:v1");
}

#[test]
fn endless_output_stops_at_the_limit_in_bounded_memory() {
    let ws = script_workspace("yes 127.0.0.1:9/team/img:v1");
    let running = ws
        .run()
        .without_daemon()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["load", "--all", "--dry-run", "--json"])
        .spawn();
    let status = format!("/proc/{}/status", running.pid);
    let mut peak_kib = 0u64;
    let started = Instant::now();
    while running.is_running() && started.elapsed() < Duration::from_secs(60) {
        let rss = fs::read_to_string(&status)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        peak_kib = peak_kib.max(rss);
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = running.wait(Duration::from_secs(10));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.elapsed < Duration::from_secs(30), "{:?}", out.elapsed);
    assert!(peak_kib < 200 * 1024, "picture-book used {peak_kib} KiB");
    let error = out.json()["registries"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    says(
        &error,
        "wrote more than 16 MiB to standard output and was killed; nothing was mirrored",
    );
}

#[test]
fn a_megabyte_line_is_named_by_its_number_with_an_excerpt() {
    let ws = script_workspace(
        "echo 127.0.0.1:9/before:1\nhead -c 1048576 /dev/zero | tr '\\0' a\necho\necho 127.0.0.1:9/after:1",
    );
    let out = dry_run(&ws, &["--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.all().len() < 20_000,
        "{} bytes of output",
        out.all().len()
    );
    let images = out.json()["registries"][0]["images"]
        .as_array()
        .unwrap()
        .clone();
    let summary: Vec<(u64, &str)> = images
        .iter()
        .map(|i| (i["line"].as_u64().unwrap(), i["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(summary, [(1, "planned"), (2, "failed"), (3, "planned")]);
    let source = images[1]["source"].as_str().unwrap();
    assert!(
        source.starts_with("aaaa") && source.contains("characters cut") && source.len() < 200,
        "{source}"
    );
    let error = images[1]["error"].as_str().unwrap();
    says(
        error,
        "1048576 characters long; no image reference is longer than",
    );
    says(&out.stderr, "syncer script line 2: 'aaaa");
}

#[test]
fn binary_garbage_is_reported_escaped_and_good_lines_still_planned() {
    let ws = script_workspace(concat!(
        "printf '127.0.0.1:9/one:1\\r\\n'\n",
        "printf '\\033[31mred\\033[0m\\n'\n",
        "printf 'nul\\000byte\\001\\n'\n",
        "printf '\\377\\376not-utf8\\n'\n",
        "printf '\\t127.0.0.1:9/two:2 # pinned\\n'\n",
        "printf '# a comment\\r\\n\\r\\n'\n",
        "printf 'Upper/Case:1\\n'\n",
        "printf '127.0.0.1:9/three:3'",
    ));
    let json = dry_run(&ws, &["--json"]);
    assert_eq!(json.code, 1, "{}", json.stderr);
    let images = json.json()["registries"][0]["images"]
        .as_array()
        .unwrap()
        .clone();
    let seen: Vec<(u64, &str, &str)> = images
        .iter()
        .map(|i| {
            (
                i["line"].as_u64().unwrap(),
                i["source"].as_str().unwrap(),
                i["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, "127.0.0.1:9/one:1", "planned"),
            (2, "\\u{1b}[31mred\\u{1b}[0m", "failed"),
            (3, "nul\\u{0}byte\\u{1}", "failed"),
            (4, "\\u{fffd}\\u{fffd}not-utf8", "failed"),
            (5, "127.0.0.1:9/two:2 # pinned", "failed"),
            (8, "Upper/Case:1", "failed"),
            (9, "127.0.0.1:9/three:3", "planned"),
        ]
    );
    let errors: Vec<&str> = images.iter().filter_map(|i| i["error"].as_str()).collect();
    says(errors[0], "control character ('\\u{1b}')");
    says(errors[2], "not UTF-8");
    says(errors[3], "a comment on a line of its own");
    says(errors[4], "must be lowercase");
    let human = dry_run(&ws, &[]);
    for out in [&json, &human] {
        assert!(
            !out.all().chars().any(|c| c.is_control() && c != '\n'),
            "raw control characters: {:?}",
            out.all()
        );
    }
    says(&human.stdout, "failed: line 2: \\u{1b}[31mred");
}

#[test]
fn an_empty_listing_warns_and_succeeds_unless_the_script_failed() {
    let ws = script_workspace("printf '# nothing today\\n\\n'");
    let out = dry_run(&ws, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    says(&out.stderr, "exited successfully but listed no images");
    says(&out.stdout, "0 to mirror");
    let failed = script_workspace("exit 3");
    let out = dry_run(&failed, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    says(&out.stdout, "failed (exit status 3); nothing was mirrored");
}

#[test]
fn good_lines_among_garbage_are_mirrored() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("team/app", "1", 1);
    let ws = Workspace::new();
    ws.script(
        "sync.sh",
        &format!(
            "printf '\\033[2J\\000\\377\\n{}/team/app:1\\r\\n'\nhead -c 100000 /dev/urandom | tr -d '\\n#'",
            src.host
        ),
    );
    ws.config(&single(&dst, ""));
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(dst.config_digest("mirror/team/app", "1"), Some(id));
    let images = out.json()["registries"][0]["images"]
        .as_array()
        .unwrap()
        .clone();
    let outcomes: Vec<&str> = images
        .iter()
        .map(|i| i["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "mirrored", "failed"], "{images:?}");
    assert!(
        out.all().len() < 50_000,
        "{} bytes of output",
        out.all().len()
    );
}
