//! The documentation keeps up with the code: every option any `--help`
//! prints and every configuration key the parser accepts is in the man
//! pages and the shell completions, and the man pages carry Cargo.toml's
//! version. The lists come from the code, not from a copy.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use picture_book::cli::HELP_TEXTS;
use picture_book::config::{API_KEYS, IMAGE_KEYS, REGISTRY_KEYS, TOP_KEYS};

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A man page's text with roff's escaped hyphens made plain.
fn man(path: &str) -> String {
    read(path).replace("\\-", "-")
}

/// Every option an option line of a help text names (`-r`, `--registry`).
fn options() -> BTreeSet<String> {
    HELP_TEXTS
        .iter()
        .flat_map(|text| text.lines())
        .filter(|line| line.trim_start().starts_with('-'))
        .flat_map(|line| {
            line.split(|c: char| c.is_whitespace() || c == ',')
                .take_while(|w| w.is_empty() || w.starts_with('-') || w.starts_with('<'))
                .filter(|w| w.starts_with('-'))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether `word` stands in `text` as a whole word (not inside a longer one).
fn has_word(text: &str, word: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !part(c));
        let after = text[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !part(c));
        before && after
    })
}

#[test]
fn every_option_is_in_the_man_page_and_the_completions() {
    let options = options();
    for must in [
        "--config",
        "--registry",
        "--all",
        "--dry-run",
        "--force",
        "--json",
        "--state-dir",
        "-q",
    ] {
        assert!(
            options.contains(must),
            "the help texts lost {must}: {options:?}"
        );
    }
    let page = man("man/picture-book.1");
    let bash = read("packaging/completions/picture-book.bash");
    let zsh = read("packaging/completions/_picture-book");
    for option in &options {
        assert!(
            has_word(&page, option),
            "{option} is missing from man/picture-book.1"
        );
        assert!(
            has_word(&bash, option),
            "{option} is missing from the bash completion"
        );
        assert!(
            has_word(&zsh, option),
            "{option} is missing from the zsh completion"
        );
    }
}

#[test]
fn every_configuration_key_is_in_the_man_page() {
    let page = man("man/picture-book.yaml.5");
    let sample = read("config.yaml");
    for key in TOP_KEYS
        .iter()
        .chain(REGISTRY_KEYS)
        .chain(IMAGE_KEYS)
        .chain(API_KEYS)
    {
        assert!(
            has_word(&page, key),
            "{key} is missing from man/picture-book.yaml.5"
        );
        assert!(
            has_word(&sample, key),
            "{key} is missing from the sample config.yaml"
        );
    }
}

#[test]
fn man_pages_carry_the_crate_version() {
    let version = format!("\"picture-book {}\"", env!("CARGO_PKG_VERSION"));
    for page in ["man/picture-book.1", "man/picture-book.yaml.5"] {
        let th = read(page)
            .lines()
            .find(|l| l.starts_with(".TH "))
            .unwrap_or_default()
            .to_string();
        assert!(th.contains(&version), "{page}: {th} does not say {version}");
    }
    let spec = read("packaging/rpm/picture-book.spec");
    assert!(
        spec.lines().any(|l| l
            .split_whitespace()
            .eq(["Version:", env!("CARGO_PKG_VERSION")])),
        "the RPM spec's Version differs from Cargo.toml's"
    );
}

#[test]
fn bash_completion_completes_commands_options_and_hosts() {
    let setup = "/usr/share/bash-completion/bash_completion";
    assert!(
        Path::new(setup).exists(),
        "install bash-completion to test the completion"
    );
    let ws = crate::harness::Workspace::new();
    ws.list_script("sync.sh", &[]);
    ws.config("registries:\n  - hostname: one.example.com\n    syncerScript: sync.sh\n  - hostname: two.example.com:5000\n    syncerScript: sync.sh\n");
    let complete = |line: &str| -> String {
        let script = format!(
            "source {setup}; source {}/packaging/completions/picture-book.bash; \
             COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; read -ra COMP_WORDS <<< \"$COMP_LINE\"; \
             [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=(''); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _picture_book; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            env!("CARGO_MANIFEST_DIR")
        );
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_picture-book"))
            .parent()
            .unwrap()
            .to_path_buf();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&ws.dir)
            .env("PATH", path)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(complete("picture-book lo"), "load\n");
    assert_eq!(complete("picture-book load --dr"), "--dry-run\n");
    assert!(complete("picture-book load --").contains("--force\n"));
    assert!(
        !complete("picture-book check --").contains("--registry"),
        "check takes no --registry"
    );
    assert_eq!(
        complete("picture-book load --registry "),
        "one.example.com\ntwo.example.com:5000\n"
    );
}

#[test]
fn zsh_completion_parses() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/completions/_picture-book");
    let status = Command::new("zsh")
        .arg("-n")
        .arg(&file)
        .status()
        .expect("install zsh to test the completion");
    assert!(status.success());
}

/// The README's fenced block that follows the line containing `after`.
fn readme_block(after: &str) -> String {
    let readme = read("README.md");
    let from = readme
        .find(after)
        .unwrap_or_else(|| panic!("README lost {after:?}"));
    let rest = &readme[from..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

/// Whether `real` has every key `shown` has, at the same place.
fn has_fields(shown: &serde_json::Value, real: &serde_json::Value, at: &str) -> Vec<String> {
    use serde_json::Value;
    match (shown, real) {
        (Value::Object(s), Value::Object(r)) => s
            .iter()
            .flat_map(|(k, v)| match r.get(k) {
                Some(rv) => has_fields(v, rv, &format!("{at}.{k}")),
                None => vec![format!("{at}.{k}")],
            })
            .collect(),
        (Value::Array(s), Value::Array(r)) => match (s.first(), r.first()) {
            (Some(sv), Some(rv)) => has_fields(sv, rv, &format!("{at}[0]")),
            (Some(_), None) => vec![format!("{at}[0] (the answer's list is empty)")],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[test]
fn the_readme_api_examples_work_against_a_real_daemon() {
    use crate::harness::{Registry, Workspace, eventually};
    use crate::sync::{Daemon, registry_entry};
    use std::time::Duration;
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("good", "1", 1);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/good:1", src.host),
            format!("{}/missing:1", src.host),
        ],
    );
    let push = dst.auth_json("pusher", "push-pass-readme");
    ws.secret_file("push.json", &push);
    let extra = "    pushAuthConfigFile: push.json\n    deleteLocalImages: true\n";
    let token = "readme-token-3c9";
    let d = Daemon::start(
        &ws,
        &registry_entry(&dst, "*/30 * * * *", extra),
        Some(token),
    );
    let (code, _) = d.call("POST", &format!("/ops?sync={}&action=run", dst.host));
    assert_eq!(code, 202);
    assert!(eventually(Duration::from_secs(60), || d.syncs(&dst.host) >= 1));

    let shown: serde_json::Value = serde_json::from_str(&readme_block(
        "`details` answers with the registry's configuration",
    ))
    .expect("the README's details example is JSON");
    let real = d.get(&format!("/ops?sync={}&action=details", dst.host));
    let missing = has_fields(&shown, &real, "");
    assert!(missing.is_empty(), "the API lacks {missing:?}: {real:#}");
    assert_eq!(real["status"]["lastRun"]["outcome"], "failed", "{real:#}");

    let api = format!("http://127.0.0.1:{}", d.port());
    let readme = read("README.md");
    let at = readme
        .find("T=this-is-a-token-lol; API=")
        .expect("README's curl examples");
    let start = readme[..at].rfind("```").unwrap();
    let curls: Vec<String> = readme[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| l.starts_with("curl "))
        .map(|l| l.replace("my-registry.com", &dst.host))
        .collect();
    assert!(curls.len() >= 9, "{curls:?}");
    for line in curls {
        let command = line.replacen("curl ", "curl -sS -w '\\n%{http_code}' ", 1);
        let out = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("T", token)
            .env("API", &api)
            .output()
            .expect("curl must be installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        assert!(
            out.status.success() && status.starts_with('2'),
            "{line}: {status} {body} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !line.contains("/metrics") && !line.contains("/healthz") {
            let json: serde_json::Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{line}: not JSON ({e}): {body}"));
            assert!(json.get("error").is_none(), "{line}: {json}");
        }
    }
    assert_eq!(d.stop().code, 0);
}

/// The `module::name` test references of the README's table of registry
/// behaviours (its last column); a `*` stands for any run of characters.
fn tested_behaviours() -> Vec<String> {
    let readme = read("README.md");
    let table = readme
        .split("## Registries\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a section Registries");
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| behaviour"))
        .filter_map(|l| l.trim_end_matches('|').rsplit('|').next())
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether `name` matches `pattern`, where `*` stands for any run.
fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == name;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[test]
fn every_test_the_registries_table_names_exists() {
    let references = tested_behaviours();
    assert!(references.len() >= 14, "{references:?}");
    for reference in references {
        let (module, pattern) = reference
            .rsplit_once("::")
            .unwrap_or_else(|| panic!("{reference} is not module::test"));
        let file = format!("tests/e2e/{}.rs", module.replace("::", "/"));
        let tests: Vec<String> = read(&file)
            .split("#[test]\nfn ")
            .skip(1)
            .filter_map(|t| t.split('(').next().map(String::from))
            .collect();
        assert!(
            tests.iter().any(|t| matches(pattern, t)),
            "README names {reference}, but {file} has no such test"
        );
    }
}
