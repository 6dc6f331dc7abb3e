//! The `images` key against real registries: the rules choose what is
//! mirrored, joined to the syncer script's lines with each image once; the
//! requests of a first and a second run (one tag listing per repository,
//! then one `HEAD` at each end per image), counted at a front; immutable
//! tags that cost no request once mirrored, and `--force` that checks them;
//! the dry run's every tag with its rule; an entry that cannot be listed
//! failing alone, and one that chooses nothing warned of.

use crate::fixtures::{self, layout::Blob};
use crate::front::Front;
use crate::harness::{Outcome, Registry, Workspace};
use crate::tags::{ISSUE_TAGS, MORE, source};

/// The tags of `repo` at `registry`, sorted.
fn tags_at(registry: &Registry, repo: &str) -> Vec<String> {
    let (status, body) = registry
        .get(&format!("/v2/{repo}/tags/list"))
        .unwrap_or((404, String::new()));
    if status != 200 {
        return Vec::new();
    }
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut tags: Vec<String> = json["tags"]
        .as_array()
        .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

/// A workspace whose configuration mirrors to `target` (repository
/// `mirror`, the native engine) what `images` (YAML list items, indented
/// for the key) and, when given, the syncer script's `lines` list.
fn workspace(target: &Registry, images: &str, lines: Option<&[String]>) -> Workspace {
    let ws = Workspace::new();
    let script = match lines {
        Some(lines) => {
            ws.list_script("sync.sh", lines);
            "    syncerScript: sync.sh\n"
        }
        None => "",
    };
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    engine: native\n{script}    images:\n{images}",
        target.host
    ));
    ws
}

/// `load` of `target` with `extra` flags, as JSON.
fn load(ws: &Workspace, target: &Registry, extra: &[&str]) -> Outcome {
    ws.run()
        .without_daemon()
        .args(["load", "--registry", &target.host, "--json"])
        .args(extra)
        .run()
}

/// `(method, path)` requests the front saw since `from`.
fn since(front: &Front, from: usize) -> Vec<(String, String)> {
    front.requests()[from..]
        .iter()
        .map(|(m, u, _)| (m.clone(), u.clone()))
        .collect()
}

fn counted(requests: &[(String, String)], method: &str, part: &str) -> usize {
    requests
        .iter()
        .filter(|(m, u)| m == method && u.contains(part))
        .count()
}

#[test]
fn the_rules_choose_what_is_mirrored_with_the_scripts_lines_each_once() {
    let front = Front::start(source(), |_| None, |_, _| {});
    let target = Registry::start();
    let src = &front.host;
    let images = format!(
        "      - source: {src}/app\n        semver: '>=1.1, <2'\n        exclude: ['-alpine']\n        latest: 3\n      - source: {src}/app:nightly-20261201\n      - source: {src}/app\n        match: '^v1'\n"
    );
    let lines = [format!("{src}/app:1.0.0"), format!("{src}/app:1.3")];
    let ws = workspace(&target, &images, Some(&lines));
    let first = load(&ws, &target, &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(
        tags_at(&target, "mirror/app"),
        ["1.0.0", "1.2.1", "1.3", "nightly-20261201", "v1.3.0"]
    );
    let report = &first.json()["registries"][0];
    assert_eq!(report["mirrored"], 5, "{report}");
    let selections = report["selections"].as_array().unwrap();
    let seen: Vec<(&str, u64, u64, u64)> = selections
        .iter()
        .map(|s| {
            (
                s["entry"].as_str().unwrap(),
                s["line"].as_u64().unwrap(),
                s["listed"].as_u64().unwrap(),
                s["chosen"].as_u64().unwrap(),
            )
        })
        .collect();
    let all = (ISSUE_TAGS.len() + MORE) as u64;
    assert_eq!(seen, [("images[0]", 7, all, 3), ("images[2]", 12, all, 1)]);
    let origins: Vec<String> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["entry"].as_str().unwrap_or("script"),
                i["source"]
            )
        })
        .collect();
    assert_eq!(
        origins,
        [
            format!("script \"{src}/app:1.0.0\""),
            format!("script \"{src}/app:1.3\""),
            format!("images[0] \"{src}/app:v1.3.0\""),
            format!("images[0] \"{src}/app:1.2.1\""),
            format!("images[1] \"{src}/app:nightly-20261201\""),
        ],
        "script lines first, then each entry's highest first; v1.3.0 and 1.3 once"
    );
    let summary = ws
        .run()
        .without_daemon()
        .args(["load", "--registry", &target.host])
        .run();
    assert!(
        summary.stdout.contains(&format!(
            "images[0] (line 7 of the configuration): {src}/app: chose 3 of {all} tags"
        )),
        "{}",
        summary.all()
    );
}

/// How many tags a page of [`paginating`] holds at most.
const PAGE: usize = 100;

/// A front that lists tags in pages of at most [`PAGE`], each with a
/// `Link` to the next (`last=` the page's last tag), as registries that
/// paginate do; distribution 2.8 answers with every tag at once.
fn paginating() -> Front {
    Front::start(
        source(),
        |_| None,
        |seen, reply| {
            if !seen.path().ends_with("/tags/list") || reply.status != 200 {
                return;
            }
            let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            let mut tags: Vec<String> = json["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            tags.sort();
            let last = seen
                .url
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("last="))
                .unwrap_or_default()
                .to_string();
            let page: Vec<String> = tags
                .into_iter()
                .filter(|t| last.is_empty() || *t > last)
                .take(PAGE + 1)
                .collect();
            if page.len() > PAGE {
                reply.set_header(
                    "Link",
                    &format!(
                        "</v2/app/tags/list?n={PAGE}&last={}>; rel=\"next\"",
                        page[PAGE - 1]
                    ),
                );
            }
            let shown = &page[..page.len().min(PAGE)];
            reply.body =
                serde_json::to_vec(&serde_json::json!({"name": "app", "tags": shown})).unwrap();
        },
    )
}

#[test]
fn a_first_and_a_second_run_cost_what_the_readme_says() {
    let front = paginating();
    let target = Registry::start();
    let src = &front.host;
    let images = format!(
        "      - source: {src}/app\n        semver: '>=1.1, <2'\n        exclude: -alpine\n        latest: 3\n      - source: {src}/app\n        match: '^1\\.0\\.0$'\n"
    );
    let ws = workspace(&target, &images, None);
    let target_before = target.requests().len();
    let first = load(&ws, &target, &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    let at_source = since(&front, 0);
    let pages = (ISSUE_TAGS.len() + MORE).div_ceil(PAGE);
    assert_eq!(
        counted(&at_source, "GET", "/tags/list"),
        pages,
        "one listing of the repository for both entries: {at_source:?}"
    );
    let first_source = at_source.len();
    let first_target = target.requests().len() - target_before;
    let by_kind = |requests: Vec<(String, String)>| {
        let mut kinds = std::collections::BTreeMap::new();
        for (method, path) in requests {
            let part = [
                "/tags/list",
                "/manifests/",
                "/blobs/uploads/",
                "/blobs/",
                "/v2/",
            ]
            .into_iter()
            .find(|p| path.contains(p))
            .unwrap_or("other");
            *kinds.entry(format!("{method} {part}")).or_insert(0) += 1;
        }
        kinds
    };
    let target_first: Vec<(String, String)> = target.requests()[target_before..]
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    eprintln!(
        "first run: source {:?}; target {:?}",
        by_kind(at_source.clone()),
        by_kind(target_first)
    );
    let mid = front.requests().len();
    let target_mid = target.requests().len();
    let second = load(&ws, &target, &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(second.json()["registries"][0]["upToDate"], 4);
    let again = since(&front, mid);
    assert_eq!(counted(&again, "GET", "/tags/list"), pages, "{again:?}");
    assert_eq!(counted(&again, "HEAD", "/manifests/"), 4, "{again:?}");
    assert_eq!(again.len(), pages + 4, "nothing else: {again:?}");
    let at_target: Vec<_> = target.requests()[target_mid..].to_vec();
    let heads = at_target
        .iter()
        .filter(|(m, p, _)| m == "HEAD" && p.contains("/manifests/"))
        .count();
    assert_eq!(heads, 4, "{at_target:?}");
    eprintln!(
        "requests: first run {first_source} at the source, {first_target} at the target; second run {} at the source, {} at the target",
        again.len(),
        at_target.len()
    );

    let immutable = workspace(
        &target,
        &images
            .replace("latest: 3\n", "latest: 3\n        immutable: true\n")
            .replace("$'\n", "$'\n        immutable: true\n"),
        None,
    );
    std::fs::rename(ws.dir.join("state"), immutable.dir.join("state")).unwrap();
    let mid = front.requests().len();
    let target_mid = target.requests().len();
    let third = load(&immutable, &target, &[]);
    assert_eq!(third.code, 0, "{}", third.all());
    assert_eq!(third.json()["registries"][0]["upToDate"], 4);
    let listed_only = since(&front, mid);
    assert_eq!(
        counted(&listed_only, "GET", "/tags/list"),
        listed_only.len(),
        "immutable: only the listing: {listed_only:?}"
    );
    assert_eq!(listed_only.len(), pages);
    assert_eq!(target.requests().len(), target_mid, "nothing at the target");
}

#[test]
fn immutable_tags_cost_no_request_once_mirrored_and_force_checks_them() {
    let front = Front::start(source(), |_| None, |_, _| {});
    let target = Registry::start();
    let src = &front.host;
    let images = format!(
        "      - source: {src}/app:1.2.0\n        immutable: true\n      - source: {src}/app:1.0.0\n        immutable: '^2'\n"
    );
    let ws = workspace(&target, &images, None);
    let first = load(&ws, &target, &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(tags_at(&target, "mirror/app"), ["1.0.0", "1.2.0"]);
    let mid = front.requests().len();
    let target_mid = target.requests().len();
    let second = load(&ws, &target, &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    let again = since(&front, mid);
    assert_eq!(
        again,
        [("HEAD".to_string(), "/v2/app/manifests/1.0.0".to_string())],
        "1.2.0 is immutable: not asked; 1.0.0 is not marked"
    );
    let at_target = &target.requests()[target_mid..];
    assert_eq!(at_target.len(), 1, "{at_target:?}");
    let images = second.json()["registries"][0]["images"].clone();
    assert_eq!(images[0]["outcome"], "upToDate");
    assert!(
        images[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("immutable: mirrored "),
        "{images}"
    );

    let mid = front.requests().len();
    let forced = load(&ws, &target, &["--force"]);
    assert_eq!(forced.code, 0, "{}", forced.all());
    let asked = since(&front, mid);
    assert!(
        asked.iter().any(|(_, u)| u.ends_with("/manifests/1.2.0")),
        "--force asks about immutable tags: {asked:?}"
    );
}

#[test]
fn the_dry_run_shows_every_tag_with_the_rule_that_dropped_it() {
    let target = Registry::start();
    let src = &source().host;
    let images = format!(
        "      - source: {src}/app\n        semver: '>=1.1, <2'\n        exclude: -alpine\n        latest: 2\n"
    );
    let ws = workspace(&target, &images, None);
    let out = ws
        .run()
        .without_daemon()
        .args(["load", "--registry", &target.host, "--dry-run"])
        .run();
    assert_eq!(out.code, 0, "{}", out.all());
    for line in [
        "    1.3: chosen",
        "    v1.3.0: chosen",
        "    1.2.1: dropped by latest: not among the 2 highest",
        "    1.2.1-alpine: dropped by exclude: matches '-alpine'",
        "    2.0.0-rc.1: dropped by semver: not in '>=1.1, <2'",
        "    latest: dropped by semver: not a version",
        "    build-0042: dropped by semver: not a version",
    ] {
        assert!(out.stdout.contains(line), "{line}\n{}", out.stdout);
    }
    let decisions = out.stdout.lines().filter(|l| l.starts_with("    ")).count();
    assert!(
        decisions >= ISSUE_TAGS.len() + MORE,
        "every tag seen is shown"
    );
    assert!(target.catalog().is_empty(), "a dry run moves nothing");
    let json = ws
        .run()
        .without_daemon()
        .args(["load", "--registry", &target.host, "--dry-run", "--json"])
        .run()
        .json();
    let tags = json["registries"][0]["selections"][0]["tags"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tags, ISSUE_TAGS.len() + MORE);
}

#[test]
fn an_entry_that_cannot_be_listed_fails_alone_and_one_that_chooses_nothing_warns() {
    let target = Registry::start();
    let src = &source().host;
    let images = format!(
        "      - source: {src}/missing/repo\n        latest: 1\n      - source: {src}/app\n        match: '^1\\.0\\.0$'\n      - source: {src}/app\n        match: '^zzz'\n"
    );
    let ws = workspace(&target, &images, Some(&[format!("{src}/app:latest")]));
    let out = ws
        .run()
        .without_daemon()
        .args(["load", "--registry", &target.host])
        .run();
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(tags_at(&target, "mirror/app"), ["1.0.0", "latest"]);
    assert!(
        out.stdout.contains(&format!(
            "failed: images[0] (line 7 of the configuration): {src}/missing/repo: cannot list the tags of {src}/missing/repo"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "warning: images[2] (line 11 of the configuration): {src}/app: no tag chosen of the {} it has",
            ISSUE_TAGS.len() + MORE
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn a_failing_script_fails_the_run_but_the_entries_are_mirrored() {
    let target = Registry::start();
    let src = &source().host;
    let ws = Workspace::new();
    ws.script("sync.sh", "echo broken >&2; exit 3");
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    engine: native\n    syncerScript: sync.sh\n    images:\n      - source: {src}/app:1.1.0\n",
        target.host
    ));
    let out = load(&ws, &target, &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(tags_at(&target, "mirror/app"), ["1.1.0"]);
    let report = &out.json()["registries"][0];
    assert_eq!(report["outcome"], "failed");
    assert!(
        report["error"].as_str().unwrap().contains("exit status 3"),
        "{report}"
    );
}

/// A source whose `app` has a real image (docker and podman unpack its
/// layer) under `1.2.0`, `1.2.1`, `1.2.1-alpine` and `1.3.0`.
fn unpackable_source() -> Registry {
    let src = Registry::start();
    src.push_image("app", "1.2.0", 1);
    let (media_type, _, bytes) = fixtures::manifest_raw(&src, "app", "1.2.0").unwrap();
    let manifest = Blob::new(&media_type, bytes);
    for tag in ["1.2.1", "1.2.1-alpine", "1.3.0"] {
        assert_eq!(fixtures::put_manifest(&src, "app", tag, &manifest).0, 201);
    }
    src
}

#[test]
fn the_docker_and_podman_engines_mirror_what_the_rules_choose() {
    let src = unpackable_source();
    for engine in ["docker", "podman"] {
        let target = Registry::start();
        let ws = Workspace::new();
        ws.config(&format!(
            "registries:\n  - hostname: '{}'\n    repository: mirror\n    engine: {engine}\n    images:\n      - source: {}/app\n        match: '^1\\.2\\.1'\n",
            target.host, src.host
        ));
        let run = match engine {
            "podman" => crate::podman::run(&ws),
            _ => ws.run(),
        };
        let out = run.args(["load", "--registry", &target.host]).run();
        assert_eq!(out.code, 0, "{engine}: {}", out.all());
        assert_eq!(
            tags_at(&target, "mirror/app"),
            ["1.2.1", "1.2.1-alpine"],
            "{engine}"
        );
        assert!(
            out.stdout.contains("chose 2 of 4 tags"),
            "{engine}: {}",
            out.stdout
        );
    }
}

#[test]
fn entries_list_an_htpasswd_source_with_the_pull_credentials() {
    let password = "images-pass-81c2";
    let src = Registry::with_auth("chooser", password);
    let tags: Vec<String> = ISSUE_TAGS.iter().map(|t| t.to_string()).collect();
    crate::tags::tagged(&src, "app", &tags);
    let target = Registry::start();
    let ws = Workspace::new();
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    engine: native\n    pullAuthConfig: '{}'\n    images:\n      - source: {}/app\n        semver: '>=1.1, <2'\n        latest: 2\n",
        target.host,
        crate::harness::auths(&src.host, "chooser", password),
        src.host
    ));
    let out = load(&ws, &target, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(tags_at(&target, "mirror/app"), ["1.3", "v1.3.0"]);
    assert!(!out.all().contains(password), "no secret in the output");
}

#[test]
fn a_hostile_tag_list_fails_its_entry_clearly_and_the_rest_mirrors() {
    let looping = crate::tags::looping_front();
    let target = Registry::start();
    let images = format!(
        "      - source: {}/app\n        latest: 1\n      - source: {}/app:1.1.0\n",
        looping.host,
        source().host
    );
    let ws = workspace(&target, &images, None);
    let out = ws
        .run()
        .without_daemon()
        .args(["load", "--registry", &target.host])
        .run();
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout
            .contains("failed: images[0] (line 6 of the configuration)")
            && out.stdout.contains("more than 100000 tags"),
        "{}",
        out.stdout
    );
    assert_eq!(tags_at(&target, "mirror/app"), ["1.1.0"]);
    assert!(looping.count("GET", "/v2/app/tags/list") <= 101);
}
