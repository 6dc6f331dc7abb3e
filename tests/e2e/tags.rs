//! `picture-book tags`: a repository's tags listed from a real registry
//! (the issue's tag set and 1,200 more, across the listing's pages of
//! 1,000), the rules alone and combined as the output shows them, `--json`
//! reasons, the exit codes, and the command called from inside a syncer
//! script against an htpasswd source with the configuration's credentials.

use std::sync::OnceLock;

use crate::fixtures;
use crate::front::{Front, Reply};
use crate::harness::{Registry, Workspace, auths};

/// The issue's tags.
pub const ISSUE_TAGS: [&str; 11] = [
    "1.0.0",
    "1.1.0",
    "1.2.0",
    "1.2.1",
    "v1.3.0",
    "1.3",
    "2.0.0-rc.1",
    "2.0.0",
    "1.2.1-alpine",
    "latest",
    "nightly-20261201",
];

/// How many more tags cross the listing's page size.
pub const MORE: usize = 1200;

/// One small image pushed as `repo` under every tag of `tags`: the same
/// manifest put under each tag.
pub fn tagged(src: &Registry, repo: &str, tags: &[String]) {
    let [config, layer, manifest] = fixtures::small_image();
    fixtures::push_via_api(src, repo, &tags[0], &[&config, &layer], &[&manifest]);
    for tag in &tags[1..] {
        let (status, body) = fixtures::put_manifest(src, repo, tag, &manifest);
        assert_eq!(status, 201, "PUT {repo}:{tag}: {body}");
    }
}

/// A registry whose `app` has the issue's tags and `build-0001`..`build-1200`.
pub fn source() -> &'static Registry {
    static SOURCE: OnceLock<Registry> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let src = Registry::start();
        let mut tags: Vec<String> = ISSUE_TAGS.iter().map(|t| t.to_string()).collect();
        tags.extend((1..=MORE).map(|i| format!("build-{i:04}")));
        tagged(&src, "app", &tags);
        src
    })
}

/// `picture-book tags <src>/app ARGS`: its exit code and stdout lines.
fn tags(args: &[&str]) -> (i32, Vec<String>, String) {
    let repo = format!("{}/app", source().host);
    let out = Workspace::new()
        .run()
        .without_daemon()
        .args(["tags", &repo])
        .args(args)
        .run();
    let lines = out.stdout.lines().map(String::from).collect();
    (out.code, lines, out.stderr)
}

/// The tags of `lines`, without the repository.
fn just_tags(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l.rsplit_once(':').expect("a reference with a tag").1)
        .collect()
}

#[test]
fn each_rule_alone_across_pages() {
    let (code, all, err) = tags(&["--all-tags"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(all.len(), ISSUE_TAGS.len() + MORE, "every page was read");
    assert!(all.contains(&format!("{}/app:build-1200", source().host)));

    let (code, lines, err) = tags(&["--semver", ">=1.2, <3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        just_tags(&lines),
        ["2.0.0", "1.3", "v1.3.0", "1.2.1", "1.2.1-alpine", "1.2.0"]
    );

    let (_, lines, _) = tags(&["--match", r"^v1\.[0-9]+\.[0-9]+$"]);
    assert_eq!(just_tags(&lines), ["v1.3.0"]);

    let (_, lines, _) = tags(&["--exclude", "^build-", "--exclude", "[a-z]"]);
    assert_eq!(
        just_tags(&lines),
        ["2.0.0", "1.3", "1.2.1", "1.2.0", "1.1.0", "1.0.0"]
    );

    let (_, lines, _) = tags(&["--latest", "2"]);
    assert_eq!(just_tags(&lines), ["2.0.0", "2.0.0-rc.1"]);
}

#[test]
fn rules_combine_as_the_issue_shows() {
    let (code, lines, err) = tags(&[
        "--semver",
        ">=1.1, <2",
        "--exclude",
        "-alpine",
        "--latest",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    let host = &source().host;
    assert_eq!(
        lines,
        [
            format!("{host}/app:1.3"),
            format!("{host}/app:v1.3.0"),
            format!("{host}/app:1.2.1"),
        ]
    );
    let (_, lines, _) = tags(&["--match", "^1\\.", "--exclude", "alpine", "--latest", "1"]);
    assert_eq!(just_tags(&lines), ["1.3"]);
}

#[test]
fn json_says_which_rule_kept_or_dropped_each_tag() {
    let repo = format!("{}/app", source().host);
    let out = Workspace::new()
        .run()
        .without_daemon()
        .args(["tags", &repo, "--semver", ">=1.2", "--exclude", "^build-"])
        .args(["--latest", "3", "--json"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["listed"], ISSUE_TAGS.len() + MORE);
    assert_eq!(json["chosen"], 3);
    let decision = |tag: &str| {
        json["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["tag"] == tag)
            .unwrap_or_else(|| panic!("{tag} in {json}"))
            .clone()
    };
    assert_eq!(decision("2.0.0")["reason"], "chosen");
    assert_eq!(decision("2.0.0")["rule"], serde_json::Value::Null);
    assert_eq!(decision("build-0007")["rule"], "exclude");
    assert_eq!(decision("latest")["rule"], "semver");
    assert_eq!(decision("latest")["reason"], "not a version");
    assert_eq!(decision("2.0.0-rc.1")["reason"], "not in '>=1.2'");
    assert_eq!(decision("1.2.0")["rule"], "latest");
    assert_eq!(decision("1.2.0")["reason"], "not among the 3 highest");
}

#[test]
fn a_missing_repository_exits_1_naming_it() {
    let out = Workspace::new()
        .run()
        .without_daemon()
        .args(["tags", &format!("{}/nothing/here", source().host)])
        .args(["--all-tags"])
        .run();
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("nothing/here"), "{}", out.stderr);
}

#[test]
fn bad_rules_exit_2_naming_them() {
    for (args, culprit) in [
        (&["--semver", ">=1.x"][..], "--semver"),
        (&["--match", "("][..], "--match"),
        (&["--latest", "0"][..], "--latest"),
        (&["--all-tags", "--match", "x"][..], "--all-tags"),
    ] {
        let (code, lines, err) = tags(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(lines.is_empty());
        assert!(err.contains(culprit), "{args:?}: {err}");
    }
}

/// A front before [`source`] whose every tag list links to itself again.
pub fn looping_front() -> Front {
    Front::start(
        source(),
        |_| None,
        |seen, reply| {
            if seen.path().ends_with("/tags/list") {
                reply.set_header("Link", "</v2/app/tags/list?n=1000>; rel=\"next\"");
            }
        },
    )
}

#[test]
fn a_hostile_listing_fails_clearly() {
    let looping = looping_front();
    let run = |front: &Front| {
        Workspace::new()
            .run()
            .without_daemon()
            .args(["tags", &format!("{}/app", front.host), "--all-tags"])
            .run()
    };
    let out = run(&looping);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("more than 100000 tags"),
        "{}",
        out.stderr
    );
    assert!(looping.count("GET", "/v2/app/tags/list") <= 101);

    let huge = Front::start(
        source(),
        |seen| {
            seen.path().ends_with("/tags/list").then(|| {
                let mut body = b"{\"name\":\"app\",\"tags\":[\"".to_vec();
                body.resize(5 << 20, b'a');
                Reply {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body,
                }
            })
        },
        |_, _| {},
    );
    let out = run(&huge);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("not a tag list"), "{}", out.stderr);
}

#[test]
fn a_syncer_script_lists_with_the_configurations_credentials() {
    let password = "tags-pass-5f3a";
    let src = Registry::with_auth("tagger", password);
    let tags: Vec<String> = ISSUE_TAGS.iter().map(|t| t.to_string()).collect();
    tagged(&src, "app", &tags);
    let target = Registry::start();
    let ws = Workspace::new();
    let out_file = ws.dir.join("chosen.txt");
    let env_file = ws.dir.join("env.txt");
    ws.script(
        "sync.sh",
        &format!(
            "env > '{env}'\n'{bin}' tags {src}/app --semver '>=1.1, <2' --latest 2 > '{out}' 2>&1\necho \"exit $?\" >> '{out}'",
            env = env_file.display(),
            bin = env!("CARGO_BIN_EXE_picture-book"),
            src = src.host,
            out = out_file.display(),
        ),
    );
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    syncerScript: sync.sh\n    pullAuthConfig: '{}'\n",
        target.host,
        auths(&src.host, "tagger", password)
    ));
    let run = ws
        .run()
        .without_daemon()
        .args(["load", "--registry", &target.host, "--dry-run"])
        .run();
    let chosen = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert_eq!(
        chosen,
        format!("{0}/app:1.3\n{0}/app:v1.3.0\nexit 0\n", src.host),
        "{}",
        run.all()
    );
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains(&format!("PICTURE_BOOK_REGISTRY={}", target.host)));
    assert!(env.contains("PICTURE_BOOK_CONFIG=/"));
    let token = base64_of(&format!("tagger:{password}"));
    assert!(!env.contains(password) && !env.contains(&token), "{env}");

    let anonymous = ws
        .run()
        .without_daemon()
        .args(["tags", &format!("{}/app", src.host), "--all-tags"])
        .run();
    assert_eq!(anonymous.code, 1, "without the configuration: 401");
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
