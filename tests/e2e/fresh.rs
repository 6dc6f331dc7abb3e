//! Never moving what is already there: a no-op run costs a `HEAD` per image
//! at the source and at the target and nothing else (proven from the
//! registries' access logs), a moved tag or a deleted target is mirrored
//! again, a lost or corrupt state file is survived, and images move in
//! parallel without mixing their output. Also the Bearer token flow, against
//! a token-issuing front for a real registry.

use std::fs;

use crate::harness::{Registry, Workspace, single};
use crate::token::TokenFront;

/// (outcome, reason) of each image of the first registry, by line.
fn outcomes(report: &serde_json::Value) -> Vec<(String, String)> {
    report["registries"][0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["outcome"].as_str().unwrap().to_string(),
                i["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Mirrors `images` (repo, tag) of `src` into `dst` once.
fn mirrored_once(
    src: &Registry,
    dst: &Registry,
    images: &[(&str, &str)],
    extra: &str,
) -> Workspace {
    let ws = Workspace::new();
    let list: Vec<String> = images
        .iter()
        .map(|(r, t)| format!("{}/{r}:{t}", src.host))
        .collect();
    ws.list_script("sync.sh", &list);
    ws.config(&single(dst, extra));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

#[test]
fn a_second_run_of_an_unchanged_set_moves_nothing() {
    let (src, dst) = (Registry::start(), Registry::start());
    let images = [("a", "1"), ("b", "2"), ("c", "3")];
    for (r, t) in images {
        src.push_image(r, t, 2);
    }
    let ws = mirrored_once(&src, &dst, &images, "");
    let (src_before, dst_before) = (src.requests().len(), dst.requests().len());
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(report["registries"][0]["upToDate"], 3, "{report}");
    assert_eq!(report["registries"][0]["mirrored"], 0);
    let reasons: Vec<String> = outcomes(&report)
        .into_iter()
        .map(|(o, r)| format!("{o}: {r}"))
        .collect();
    assert_eq!(
        reasons,
        vec!["upToDate: unchanged since it was mirrored"; 3]
    );
    let at_source = &src.requests()[src_before..];
    let at_target = &dst.requests()[dst_before..];
    for (name, seen) in [("source", at_source), ("target", at_target)] {
        assert_eq!(seen.len(), 3, "{name}: {seen:#?}");
        for (method, path, agent) in seen {
            assert_eq!(
                method, "HEAD",
                "{name}: only HEADs in a no-op run: {seen:#?}"
            );
            assert!(path.contains("/manifests/"), "{name}: {path}");
            assert!(
                agent.starts_with("picture-book/"),
                "{name}: docker was used: {agent}"
            );
        }
    }
}

#[test]
fn a_moved_source_tag_is_mirrored_again_and_only_it() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("moves", "1", 1);
    src.push_image("stays", "1", 1);
    let ws = mirrored_once(&src, &dst, &[("moves", "1"), ("stays", "1")], "");
    let new = src.push_image("moves", "1", 2);
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    let got = outcomes(&out.json());
    assert_eq!(got[0].0, "mirrored");
    assert!(
        got[0].1.starts_with("the source changed (sha256:"),
        "{got:?}"
    );
    assert_eq!(
        got[1],
        (
            "upToDate".to_string(),
            "unchanged since it was mirrored".to_string()
        )
    );
    assert_eq!(dst.config_digest("mirror/moves", "1"), Some(new));
}

#[test]
fn a_deleted_target_is_restored() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("gone", "1", 1);
    src.push_image("kept", "1", 1);
    let ws = mirrored_once(&src, &dst, &[("gone", "1"), ("kept", "1")], "");
    dst.delete("mirror/gone", "1");
    assert_eq!(dst.config_digest("mirror/gone", "1"), None);
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    let got = outcomes(&out.json());
    assert_eq!(
        got[0],
        ("mirrored".to_string(), "not at the target".to_string())
    );
    assert_eq!(got[1].0, "upToDate");
    assert_eq!(dst.config_digest("mirror/gone", "1"), Some(id));
}

#[test]
fn a_corrupt_or_lost_state_file_is_survived_by_comparing_images() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("x", "1", 2);
    src.push_image("y", "1", 2);
    let ws = mirrored_once(&src, &dst, &[("x", "1"), ("y", "1")], "");
    let state = ws
        .dir
        .join("state")
        .join(format!("{}.json", dst.host.replace(':', "_")));
    assert!(state.exists(), "no state file at {}", state.display());
    fs::write(&state, "{\"version\": 1, \"images\": {\"trunc").unwrap();
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("unreadable state"), "{}", out.stderr);
    for (outcome, reason) in outcomes(&out.json()) {
        assert_eq!(outcome, "upToDate");
        assert!(
            reason.starts_with("the target holds the same image (sha256:"),
            "{reason}"
        );
    }
    let rewritten: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&state).unwrap()).expect("valid state again");
    assert_eq!(rewritten["images"].as_object().unwrap().len(), 2);
    let again = ws.run().args(["load", "--all", "--json"]).run().json();
    assert!(
        outcomes(&again)
            .iter()
            .all(|(_, r)| r == "unchanged since it was mirrored"),
        "{again}"
    );
}

#[test]
fn force_mirrors_what_is_up_to_date() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("f", "1", 1);
    let ws = mirrored_once(&src, &dst, &[("f", "1")], "");
    let pushes = dst.count("PUT", "/v2/mirror/f/manifests/", false);
    let out = ws.run().args(["load", "--all", "--force", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        outcomes(&out.json()),
        [("mirrored".to_string(), "--force".to_string())]
    );
    assert_eq!(
        dst.count("PUT", "/v2/mirror/f/manifests/", false),
        pushes + 1
    );
}

#[test]
fn dry_run_says_what_is_up_to_date_and_why_and_writes_nothing() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("d", "1", 1);
    src.push_image("e", "1", 1);
    let ws = mirrored_once(&src, &dst, &[("d", "1")], "");
    ws.list_script(
        "sync.sh",
        &[format!("{}/d:1", src.host), format!("{}/e:1", src.host)],
    );
    let state = ws.dir.join("state");
    fs::remove_dir_all(&state).unwrap();
    let out = ws.run().args(["load", "--all", "--dry-run"]).run();
    assert!(!state.exists(), "a dry run wrote state");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(": 1 to mirror, 1 up to date (dry run)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "  up to date: {}/d:1 -> {}/mirror/d:1 (the target holds the same image (sha256:",
            src.host, dst.host
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "  {}/e:1 -> {}/mirror/e:1 (not at the target)",
            src.host, dst.host
        )),
        "{}",
        out.stdout
    );
    assert_eq!(dst.config_digest("mirror/e", "1"), None);
}

#[test]
fn parallel_transfers_mirror_everything_with_whole_lines() {
    let (src, dst) = (Registry::start(), Registry::start());
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let ids: Vec<String> = names.iter().map(|n| src.push_image(n, "1", 2)).collect();
    let ws = Workspace::new();
    let sources: Vec<String> = names
        .iter()
        .map(|n| format!("{}/{n}:1", src.host))
        .collect();
    ws.list_script("sync.sh", &sources);
    ws.config(&format!(
        "{}display: ''\n",
        single(&dst, "    parallel: 4\n")
    ));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    for (n, id) in names.iter().zip(&ids) {
        assert_eq!(
            dst.config_digest(&format!("mirror/{n}"), "1").as_ref(),
            Some(id),
            "{n}"
        );
    }
    let prefixes: Vec<String> = sources.iter().map(|s| format!("[{s}] ")).collect();
    let mut docker_lines = 0;
    for line in out.stderr.lines() {
        let owners = prefixes
            .iter()
            .filter(|p| line.contains(p.as_str()))
            .count();
        if line.starts_with("[INFO]") || line.starts_with("[WARN]") || line.starts_with("[DEBUG]") {
            assert_eq!(owners, 0, "a log line mixed with docker output: {line}");
            continue;
        }
        assert!(
            prefixes.iter().any(|p| line.starts_with(p.as_str())),
            "a line without its image: {line:?}"
        );
        assert_eq!(owners, 1, "two images' output in one line: {line}");
        docker_lines += 1;
    }
    // Images overlapped: before the first push completed, several images
    // had already written output.
    let first_push = out
        .stderr
        .lines()
        .position(|l| l.contains("digest: sha256:"))
        .unwrap();
    let busy: std::collections::HashSet<&String> = out
        .stderr
        .lines()
        .take(first_push)
        .flat_map(|l| prefixes.iter().filter(move |p| l.starts_with(p.as_str())))
        .collect();
    assert!(
        busy.len() >= 2,
        "no two images in flight at once:\n{}",
        out.stderr
    );
    assert!(docker_lines >= 8 * 2, "{}", out.stderr);
}

#[test]
fn bearer_token_flow_with_a_cached_token_per_repository() {
    let (upstream, dst) = (Registry::start(), Registry::start());
    upstream.push_image("team/app", "1", 1);
    upstream.push_image("team/app", "2", 1);
    upstream.push_image("team/web", "1", 1);
    let front = TokenFront::start(&upstream, "reader", "reader-pass-31", 300);
    let auth = format!(
        r#"{{"auths":{{"{}":{{"username":"reader","password":"reader-pass-31"}}}}}}"#,
        front.host
    );
    let ws = Workspace::new();
    let images = ["team/app:1", "team/app:2", "team/web:1"];
    ws.list_script("sync.sh", &images.map(|i| format!("{}/{i}", front.host)));
    ws.config(&single(
        &dst,
        &format!("    pullAuthConfig: '{auth}'\n    parallel: 1\n"),
    ));
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["registries"][0]["mirrored"], 3);
    let tokens = front.our_token_requests();
    assert_eq!(tokens.len(), 2, "one token per repository: {tokens:#?}");
    assert!(tokens.iter().all(|t| t.status == 200), "{tokens:#?}");

    // A new process remembers the challenge: one HEAD per image, no 401.
    let before = front.seen().len();
    let again = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(
        again.json()["registries"][0]["upToDate"],
        3,
        "{}",
        again.stdout
    );
    let ours: Vec<_> = front.seen()[before..]
        .iter()
        .filter(|s| s.ours())
        .cloned()
        .collect();
    let heads = ours.iter().filter(|s| s.method == "HEAD").count();
    let refused = ours.iter().filter(|s| s.status == 401).count();
    let gets = ours
        .iter()
        .filter(|s| s.method == "GET" && !s.url.starts_with("/token"))
        .count();
    assert_eq!((heads, refused, gets), (3, 0, 0), "{ours:#?}");

    let wrong = auth.replace("reader-pass-31", "wrong");
    ws.config(&single(&dst, &format!("    pullAuthConfig: '{wrong}'\n")));
    let denied = ws
        .run()
        .args(["load", "--all", "--dry-run", "--json"])
        .run();
    let got = outcomes(&denied.json());
    assert!(
        got[0].1.contains("refused (401); check the credentials"),
        "{got:?}"
    );
    assert!(
        !denied.all().contains("reader-pass-31") && !denied.all().contains("wrong"),
        "{}",
        denied.all()
    );
}

#[test]
fn basic_registries_cost_one_head_per_image_on_a_no_op_run() {
    let src = Registry::with_auth("puller", "pull-pass-6c");
    let dst = Registry::with_auth("pusher", "push-pass-9e");
    src.push_image("b", "1", 1);
    src.push_image("c", "1", 1);
    let extra = format!(
        "    pullAuthConfig: '{}'\n    pushAuthConfig: '{}'\n",
        src.auth_json("puller", "pull-pass-6c"),
        dst.auth_json("pusher", "push-pass-9e")
    );
    let ws = mirrored_once(&src, &dst, &[("b", "1"), ("c", "1")], &extra);
    let (src_before, dst_before) = (src.requests().len(), dst.requests().len());
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.json()["registries"][0]["upToDate"], 2, "{}", out.stdout);
    let after = (src.requests(), dst.requests());
    for (name, seen) in [
        ("source", &after.0[src_before..]),
        ("target", &after.1[dst_before..]),
    ] {
        let heads = seen.iter().filter(|(m, _, _)| m == "HEAD").count();
        assert_eq!((heads, seen.len()), (2, 2), "{name}: {seen:#?}");
    }
    assert!(!out.all().contains("pass-6c") && !out.all().contains("pass-9e"));
}
