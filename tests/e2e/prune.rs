//! Pruning as an operator meets it: a tag the listing dropped goes from
//! the target, and nothing else does (someone else's tag, a tag someone
//! overwrote, the content of a tag that stays); nothing goes after an
//! incomplete listing, past `pruneLimit` without `--force`, or at a
//! registry that refuses deletes (one warning); a dry run lists exactly
//! what the real run removes. Proven at real distribution registries, one
//! with `storage.delete.enabled` and one without.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tiny_http::Method;

use crate::fixtures;
use crate::front::{Front, Reply};
use crate::harness::{Outcome, Registry, Workspace, eventually};
use crate::limits::small_image;
use crate::native::native;
use crate::sync::{Daemon, registry_entry};

/// A workspace whose native registry `dst` prunes, with `extra` keys.
fn pruning(dst: &Registry, extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.config(&native(dst, &format!("    prune: true\n{extra}")));
    ws
}

/// Lists `tags` of `src`'s `app` and runs `load --all --json` with `args`.
fn load(ws: &Workspace, src: &Registry, tags: &[&str], args: &[&str]) -> Outcome {
    let listed: Vec<String> = tags
        .iter()
        .map(|t| format!("{}/app:{t}", src.host))
        .collect();
    ws.list_script("sync.sh", &listed);
    ws.run()
        .without_daemon()
        .args(["load", "--all", "--json"])
        .args(args)
        .run()
}

/// `src` with `app:1`, `app:2`, ... each a different image; their digests.
fn source(n: usize) -> (Registry, Vec<String>) {
    let src = Registry::start();
    let digests = (1..=n)
        .map(|i| small_image(&src, "app", &i.to_string()))
        .collect();
    (src, digests)
}

/// `n` images at a source, mirrored by a first run into a target (that
/// deletes) whose registry prunes, with `extra` keys.
struct Mirrored {
    src: Registry,
    digests: Vec<String>,
    dst: Registry,
    ws: Workspace,
}

fn mirrored(n: usize, extra: &str) -> Mirrored {
    let (src, digests) = source(n);
    let dst = Registry::start();
    let ws = pruning(&dst, extra);
    let all: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let first = load(&ws, &src, &all, &[]);
    assert_eq!(first.code, 0, "{first:?}");
    Mirrored {
        src,
        digests,
        dst,
        ws,
    }
}

/// The tags (`tag` of `host/mirror/app:tag`) of a report's list `key`.
fn tags(report: &Value, key: &str) -> Vec<String> {
    report["registries"][0][key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let tag = v["tag"].as_str().unwrap();
            tag.rsplit_once(':').unwrap().1.to_string()
        })
        .collect()
}

/// The report's warnings.
fn warnings(report: &Value) -> Vec<String> {
    report["registries"][0]["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

/// Asserts that `report` pruned nothing and warned why, naming `why`.
fn nothing_pruned(report: &Value, why: &str) {
    assert!(tags(report, "pruned").is_empty(), "{report}");
    assert!(
        warnings(report)
            .iter()
            .any(|w| w.starts_with("nothing pruned") && w.contains(why)),
        "no warning naming {why:?}: {report}"
    );
}

/// `src` with one image as `app:1`, and as `app:same` too; its digests.
fn one_image_twice() -> (Registry, Vec<String>) {
    let (src, digests) = source(1);
    let (media_type, _, body) = fixtures::manifest_raw(&src, "app", "1").unwrap();
    let same = fixtures::Blob::new(&media_type, body);
    let (status, answer) = fixtures::put_manifest(&src, "app", "same", &same);
    assert_eq!(status, 201, "{answer}");
    (src, digests)
}

fn at(dst: &Registry, tag: &str) -> Option<String> {
    dst.manifest_digest("mirror/app", tag)
}

#[test]
fn a_dropped_tag_goes_and_the_others_and_someone_elses_stay() {
    let Mirrored {
        src,
        digests,
        dst,
        ws,
    } = mirrored(3, "");
    let theirs = small_image(&dst, "mirror/app", "theirs");

    let out = load(&ws, &src, &["1", "3"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(tags(&report, "pruned"), ["2"], "{report}");
    assert_eq!(
        report["registries"][0]["pruned"][0]["digest"],
        digests[1].as_str()
    );
    assert_eq!(at(&dst, "2"), None, "the dropped tag is gone");
    assert_eq!(at(&dst, "1").as_ref(), Some(&digests[0]));
    assert_eq!(at(&dst, "3").as_ref(), Some(&digests[2]));
    assert_eq!(
        at(&dst, "theirs"),
        Some(theirs),
        "a tag picture-book did not put there stays"
    );
    assert!(
        tags(&report, "pruneSkipped").is_empty(),
        "a tag never recorded is not even considered: {report}"
    );

    let again = load(&ws, &src, &["1", "3"], &[]).json();
    assert!(
        tags(&again, "pruned").is_empty() && tags(&again, "pruneSkipped").is_empty(),
        "the state forgot the pruned tag: {again}"
    );
}

#[test]
fn a_tag_overwritten_at_the_target_stays() {
    let Mirrored {
        src,
        digests: _,
        dst,
        ws,
    } = mirrored(2, "");
    let overwritten = small_image(&dst, "mirror/app", "2");

    let report = load(&ws, &src, &["1"], &[]).json();
    assert!(tags(&report, "pruned").is_empty(), "{report}");
    assert_eq!(tags(&report, "pruneSkipped"), ["2"]);
    let reason = report["registries"][0]["pruneSkipped"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("changed at the target"), "{reason}");
    assert_eq!(at(&dst, "2"), Some(overwritten));
}

#[test]
fn two_tags_of_one_digest_keep_the_content_of_the_one_that_stays() {
    let (src, digests) = one_image_twice();
    let dst = Registry::start();
    let ws = pruning(&dst, "");
    assert_eq!(load(&ws, &src, &["1", "same"], &[]).code, 0);

    let out = load(&ws, &src, &["1"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert!(tags(&report, "pruned").is_empty(), "{report}");
    assert_eq!(tags(&report, "pruneSkipped"), ["same"]);
    let reason = report["registries"][0]["pruneSkipped"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("tag 1, which stays"), "{reason}");
    assert_eq!(
        at(&dst, "1").as_ref(),
        Some(&digests[0]),
        "its content stays"
    );
    assert_eq!(
        dst.count("DELETE", "/v2/mirror/app/manifests/sha256:", true),
        0,
        "no digest was deleted"
    );
}

#[test]
fn an_incomplete_listing_prunes_nothing_and_says_why() {
    let Mirrored {
        src,
        digests,
        dst,
        ws,
    } = mirrored(2, "    syncerScriptTimeout: 1s\n");
    let listed = format!("echo '{}/app:1'\n", src.host);
    let cases = [
        (
            "failing",
            format!("{listed}exit 3\n"),
            1,
            "the syncer script gave no listing",
        ),
        (
            "timeout",
            format!("{listed}sleep 5\n"),
            1,
            "the syncer script gave no listing",
        ),
        (
            "rejected",
            format!("{listed}echo 'Not A Reference!'\n"),
            1,
            "line 2 was rejected",
        ),
        ("empty", String::new(), 0, "the listing is empty"),
    ];
    for (name, script, code, why) in cases {
        ws.script("sync.sh", &script);
        let out = ws
            .run()
            .without_daemon()
            .args(["load", "--all", "--json"])
            .run();
        assert_eq!(out.code, code, "{name}: {out:?}");
        nothing_pruned(&out.json(), why);
        assert_eq!(at(&dst, "2").as_ref(), Some(&digests[1]), "{name}");
    }
}

#[test]
fn prune_limit_stops_a_mass_deletion_and_force_passes_it() {
    let (src, _) = source(3);
    let dst = Registry::start();
    let ws = Workspace::new();
    ws.config(&native(&dst, "    pruneLimit: 1\n"));
    assert_eq!(load(&ws, &src, &["1", "2", "3"], &[]).code, 0);

    let off = load(&ws, &src, &["1"], &[]).json();
    assert!(
        off["registries"][0].get("pruneSkipped").is_none(),
        "prune is off by default: {off}"
    );
    let held = load(&ws, &src, &["1"], &["--prune"]);
    assert_eq!(held.code, 0, "{held:?}");
    let report = held.json();
    assert!(tags(&report, "pruned").is_empty(), "{report}");
    assert_eq!(tags(&report, "pruneSkipped"), ["2", "3"]);
    assert!(
        warnings(&report)
            .iter()
            .any(|w| w.contains("more than pruneLimit (1)")),
        "{report}"
    );
    assert!(at(&dst, "2").is_some() && at(&dst, "3").is_some());

    let forced = load(&ws, &src, &["1"], &["--prune", "--force"]).json();
    assert_eq!(tags(&forced, "pruned"), ["2", "3"], "{forced}");
    assert!(at(&dst, "2").is_none() && at(&dst, "3").is_none());
    assert!(at(&dst, "1").is_some());
}

#[test]
fn a_registry_without_deletes_is_warned_of_once_and_the_run_succeeds() {
    let (src, digests) = source(3);
    let dst = Registry::without_deletes();
    let ws = pruning(&dst, "");
    assert_eq!(load(&ws, &src, &["1", "2", "3"], &[]).code, 0);

    let out = load(&ws, &src, &["1"], &[]);
    assert_eq!(out.code, 0, "the run's outcome stands: {out:?}");
    let report = out.json();
    let refusals: Vec<String> = warnings(&report)
        .into_iter()
        .filter(|w| w.contains("refuses deletes"))
        .collect();
    assert_eq!(refusals.len(), 1, "{report}");
    assert!(
        refusals[0].contains("storage.delete.enabled"),
        "{refusals:?}"
    );
    assert!(refusals[0].contains("garbage collection"), "{refusals:?}");
    let warned = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("[WARN]") && l.contains("refuses deletes"));
    assert_eq!(warned.count(), 1, "{}", out.stderr);
    assert_eq!(tags(&report, "pruneSkipped"), ["2", "3"]);
    assert_eq!(at(&dst, "2").as_ref(), Some(&digests[1]));
    assert_eq!(at(&dst, "3").as_ref(), Some(&digests[2]));
}

#[test]
fn a_dry_run_lists_exactly_what_the_real_run_removes() {
    let Mirrored {
        src,
        digests: _,
        dst,
        ws,
    } = mirrored(4, "");
    small_image(&dst, "mirror/app", "4");

    let dry = load(&ws, &src, &["1"], &["--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    let planned = dry.json();
    assert_eq!(tags(&planned, "pruned"), ["2", "3"], "{planned}");
    assert_eq!(tags(&planned, "pruneSkipped"), ["4"], "{planned}");
    assert_eq!(planned["dryRun"], true);
    assert!(
        at(&dst, "2").is_some() && at(&dst, "3").is_some(),
        "nothing removed"
    );
    assert_eq!(
        dst.count("DELETE", "/v2/mirror/app/manifests/", true),
        0,
        "no manifest DELETE was sent"
    );

    let summary = ws
        .run()
        .without_daemon()
        .args(["load", "--all", "--dry-run"])
        .run();
    assert!(
        summary
            .stdout
            .contains(&format!("  would prune: {}/mirror/app:2 (", dst.host)),
        "{}",
        summary.stdout
    );

    let real = load(&ws, &src, &["1"], &[]).json();
    assert_eq!(tags(&real, "pruned"), tags(&planned, "pruned"));
    assert_eq!(tags(&real, "pruneSkipped"), tags(&planned, "pruneSkipped"));
    assert!(at(&dst, "2").is_none() && at(&dst, "3").is_none());
    assert!(at(&dst, "4").is_some());
}

#[test]
fn the_docker_engine_mirrors_and_picture_book_prunes_what_it_pushed() {
    let src = Registry::start();
    src.push_image("app", "1", 1);
    src.push_image("app", "2", 1);
    let dst = Registry::start();
    let ws = Workspace::new();
    ws.config(&crate::harness::single(&dst, "    prune: true\n"));
    let listed = |tags: &[&str]| -> Vec<String> {
        tags.iter()
            .map(|t| format!("{}/app:{t}", src.host))
            .collect()
    };
    ws.list_script("sync.sh", &listed(&["1", "2"]));
    let first = ws.run().args(["load", "--all"]).run();
    assert_eq!(first.code, 0, "{first:?}");
    let pushed = at(&dst, "2").expect("docker pushed it");

    ws.list_script("sync.sh", &listed(&["1"]));
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(report["registries"][0]["engine"], "docker");
    assert_eq!(tags(&report, "pruned"), ["2"], "{report}");
    assert_eq!(
        report["registries"][0]["pruned"][0]["digest"],
        pushed.as_str(),
        "the digest recorded is the one docker's push gave"
    );
    assert_eq!(at(&dst, "2"), None);
    assert!(at(&dst, "1").is_some());
}

#[test]
fn the_daemon_prunes_on_schedule_and_run_with_prune_false_does_not() {
    let Mirrored {
        src,
        digests,
        dst,
        ws,
    } = mirrored(3, "");
    let list = |tags: &[&str]| {
        let listed: Vec<String> = tags
            .iter()
            .map(|t| format!("{}/app:{t}", src.host))
            .collect();
        ws.list_script("sync.sh", &listed);
    };
    let entry =
        |period: &str| registry_entry(&dst, period, "    engine: native\n    prune: true\n");

    list(&["1", "2"]);
    let on_demand = Daemon::start(&ws, &entry("0 0 1 1 *"), None);
    let run = |query: &str, syncs: u64| {
        let (status, body) =
            on_demand.call("POST", &format!("/ops?sync={}&action=run{query}", dst.host));
        assert_eq!(status, 202, "{body}");
        assert!(eventually(Duration::from_secs(30), || on_demand
            .syncs(&dst.host)
            >= syncs));
        on_demand.status(&dst.host)["lastRun"].clone()
    };
    let kept = run("&prune=false", 1);
    assert_eq!(kept["outcome"], "success", "{kept}");
    assert!(kept.get("pruned").is_none(), "{kept}");
    assert_eq!(
        at(&dst, "3").as_ref(),
        Some(&digests[2]),
        "prune=false kept it"
    );
    let (status, body) = on_demand.call(
        "POST",
        &format!("/ops?sync={}&action=run&prune=maybe", dst.host),
    );
    assert_eq!(status, 400, "{body}");
    let pruned = run("", 2);
    assert_eq!(
        pruned["pruned"][0]["tag"],
        format!("{}/mirror/app:3", dst.host),
        "details shows what the last run pruned: {pruned}"
    );
    assert_eq!(at(&dst, "3"), None);
    assert_eq!(on_demand.stop().code, 0);

    list(&["1"]);
    let scheduled = Daemon::start(&ws, &entry("*/2 * * * * *"), None);
    let line = format!("picture_book_pruned_total{{registry=\"{}\"}} 1", dst.host);
    assert!(
        eventually(Duration::from_secs(30), || {
            let metrics = scheduled.call("GET", "/metrics").1;
            metrics.as_str().is_some_and(|m| m.contains(&line))
        }),
        "a scheduled run pruned one tag"
    );
    assert_eq!(at(&dst, "2"), None);
    assert!(at(&dst, "1").is_some());
    assert_eq!(scheduled.stop().code, 0);
}

#[test]
fn load_from_prunes_what_the_layout_no_longer_lists_unless_it_is_cut_short() {
    let (src, digests) = source(3);
    let dst = Registry::start();
    let ws = pruning(&dst, "");
    let export = |tags: &[&str]| {
        let listed: Vec<String> = tags
            .iter()
            .map(|t| format!("{}/app:{t}", src.host))
            .collect();
        ws.list_script("sync.sh", &listed);
        let archive = crate::harness::fresh_dir("prune-export").join("site.tar");
        let out = ws
            .run()
            .without_daemon()
            .args(["export", "--all", "--archive"])
            .args([&archive])
            .run();
        assert_eq!(out.code, 0, "{out:?}");
        archive
    };
    let load_from = |archive: &std::path::Path| {
        ws.run()
            .without_daemon()
            .args(["load", "--all", "--json", "--from"])
            .args([archive])
            .run()
    };
    assert_eq!(load_from(&export(&["1", "2", "3"])).code, 0);
    let smaller = export(&["1"]);

    let bytes = std::fs::read(&smaller).unwrap();
    let cut = smaller.with_file_name("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() - 1536]).unwrap();
    let report = load_from(&cut).json();
    nothing_pruned(&report, "is cut short");
    assert_eq!(at(&dst, "2").as_ref(), Some(&digests[1]));

    let out = load_from(&smaller);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(tags(&out.json(), "pruned"), ["2", "3"]);
    assert_eq!(at(&dst, "2"), None);
    assert_eq!(at(&dst, "1").as_ref(), Some(&digests[0]));
}

#[test]
fn a_signed_image_goes_with_its_signatures_and_a_foreign_entry_stays() {
    use crate::referrers::{SIG, cosign_sig, fallback, image, refer};
    let src = Registry::start();
    let one = image(&src, "app", "1");
    let two = image(&src, "app", "2");
    let sig_one = refer(&src, "app", &one, SIG, true);
    let sig_two = refer(&src, "app", &two, SIG, true);
    let cosign_two = cosign_sig(&src, "app", &two);
    let dst = Registry::start();
    let ws = pruning(&dst, "    referrers: true\n");
    assert_eq!(load(&ws, &src, &["1", "2"], &[]).code, 0);
    assert_eq!(
        fallback(&dst, "mirror/app", &two.digest),
        [sig_two.digest.as_str()]
    );
    let theirs = refer(&dst, "mirror/app", &two, "application/spdx+json", true);

    let out = load(&ws, &src, &["1"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(tags(&report, "pruned"), ["2"], "{report}");
    let reason = report["registries"][0]["pruned"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.ends_with("; with 2 referrers"), "{reason}");
    let gone = |reference: &str| fixtures::manifest_raw(&dst, "mirror/app", reference).is_none();
    assert!(gone(&sig_two.digest), "its signature went");
    let cosign_tag = format!("{}.sig", two.digest.replacen(':', "-", 1));
    assert!(
        gone(&cosign_tag) && gone(&cosign_two.digest),
        "its cosign tag went"
    );
    assert_eq!(
        fallback(&dst, "mirror/app", &two.digest),
        [theirs.digest.as_str()],
        "the fallback index keeps the entry someone else put there"
    );
    assert!(!gone(&theirs.digest));
    assert_eq!(
        fallback(&dst, "mirror/app", &one.digest),
        [sig_one.digest.as_str()]
    );
    assert!(
        !gone(&sig_one.digest),
        "the referrer of an image that stays stays"
    );
    assert!(!gone("1"));
}

#[test]
fn an_images_entry_that_cannot_be_listed_prunes_nothing() {
    let Mirrored {
        src,
        digests,
        dst,
        ws,
    } = mirrored(2, "");
    ws.config(&native(
        &dst,
        &format!(
            "    prune: true\n    images:\n      - source: {}/missing\n        latest: 1\n",
            src.host
        ),
    ));
    let out = load(&ws, &src, &["1"], &[]);
    assert_eq!(out.code, 1, "the entry fails the run: {out:?}");
    let report = out.json();
    nothing_pruned(&report, "images[0]");
    assert_eq!(at(&dst, "2").as_ref(), Some(&digests[1]));
}

/// A front for `dst` that deletes tags by name, as OCI 1.1 registries do:
/// a deleted tag answers 404 and leaves the tag list; its manifest stays.
fn deleting_tags(dst: &Registry) -> Front {
    let deleted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (before, after) = (Arc::clone(&deleted), deleted);
    Front::start(
        dst,
        move |seen| {
            let (name, reference) = seen
                .path()
                .strip_prefix("/v2/")?
                .split_once("/manifests/")?;
            let key = format!("{name}:{reference}");
            let mut deleted = before.lock().unwrap();
            match seen.method {
                Method::Put => {
                    deleted.remove(&key);
                    None
                }
                _ if reference.starts_with("sha256:") => None,
                Method::Delete if deleted.insert(key.clone()) => Some(Reply {
                    status: 202,
                    headers: Vec::new(),
                    body: Vec::new(),
                }),
                _ if deleted.contains(&key) => {
                    Some(Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown"))
                }
                _ => None,
            }
        },
        move |seen, reply| {
            let Some(name) = seen
                .path()
                .strip_prefix("/v2/")
                .and_then(|p| p.strip_suffix("/tags/list"))
            else {
                return;
            };
            let deleted = after.lock().unwrap();
            let mut list: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
            if let Some(tags) = list["tags"].as_array_mut() {
                tags.retain(|t| !deleted.contains(&format!("{name}:{}", t.as_str().unwrap_or(""))));
            }
            reply.body = list.to_string().into_bytes();
        },
    )
}

#[test]
fn a_registry_that_deletes_tags_loses_the_tag_and_keeps_the_shared_content() {
    let (src, digests) = one_image_twice();
    let dst = Registry::start();
    let front = deleting_tags(&dst);
    let ws = Workspace::new();
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    syncerScript: sync.sh\n    engine: native\n    prune: true\n",
        front.host
    ));
    assert_eq!(load(&ws, &src, &["1", "same"], &[]).code, 0);

    let dry = load(&ws, &src, &["1"], &["--dry-run"]).json();
    assert_eq!(tags(&dry, "pruned"), ["same"], "{dry}");
    let told = dry["registries"][0]["pruned"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(
        told.contains("kept instead if") && told.contains("deletes only by digest"),
        "a dry run cannot tell how the target deletes, and says so: {told}"
    );

    let real = load(&ws, &src, &["1"], &[]).json();
    assert_eq!(tags(&real, "pruned"), ["same"], "{real}");
    assert_eq!(front.count("DELETE", "/v2/mirror/app/manifests/same"), 1);
    assert_eq!(
        front.count("DELETE", "/v2/mirror/app/manifests/sha256:"),
        0,
        "the tag went, not its content"
    );
    let front_view = fixtures::ApiRemote(&front.host);
    assert!(fixtures::manifest_raw(&front_view, "mirror/app", "same").is_none());
    assert_eq!(
        fixtures::manifest_raw(&front_view, "mirror/app", "1").map(|(_, d, _)| d),
        Some(digests[0].clone())
    );
}
