//! Docker Hub's pull rate limits, emulated by a front that counts manifest
//! `GET`s in a sliding window and says what is left on every manifest
//! answer (`front::PullLimit`): a run at the floor (`rateLimitMin`) waits
//! and says so instead of spending into 429s, `SIGTERM` and
//! `transferTimeout` end a long wait, `details` and `/metrics` show what is
//! left, and a registry without the headers is not waited for.

use std::time::{Duration, Instant};

use crate::fixtures::{self, manifest_raw};
use crate::front::{Front, PullLimit};
use crate::harness::{Registry, Workspace, eventually, single};
use crate::sync::{Daemon, registry_entry};

/// Pushes a small single-platform image (one manifest, one `GET` to pull)
/// to `src` as `repo:tag`; returns its digest.
pub fn small_image(src: &Registry, repo: &str, tag: &str) -> String {
    let [config, layer, manifest] = fixtures::small_image();
    fixtures::push_via_api(src, repo, tag, &[&config, &layer], &[&manifest]);
    manifest.digest
}

/// `n` small images at `src`, listed through `front` by the workspace's
/// `sync.sh`.
fn images_behind(src: &Registry, front: &Front, ws: &Workspace, n: usize) -> Vec<String> {
    let listed: Vec<String> = (1..=n)
        .map(|i| {
            small_image(src, &format!("app{i}"), "1");
            format!("{}/app{i}:1", front.host)
        })
        .collect();
    ws.list_script("sync.sh", &listed);
    listed
}

/// A front for `src` with a pull limit of `limit` per `window`.
fn limited(src: &Registry, limit: usize, window: Duration) -> (Front, std::sync::Arc<PullLimit>) {
    let pulls = PullLimit::new(limit, window);
    let counted = std::sync::Arc::clone(&pulls);
    let front = Front::start(src, |_| None, move |seen, reply| counted.after(seen, reply));
    (front, pulls)
}

/// How many manifest `GET`s (pulls) `front` answered for repositories
/// starting with `repo`.
fn pulls_of(front: &Front, repo: &str) -> usize {
    front
        .requests()
        .iter()
        .filter(|(m, u, _)| {
            m == "GET" && u.starts_with(&format!("/v2/{repo}")) && u.contains("/manifests/")
        })
        .count()
}

fn native(dst: &Registry, extra: &str) -> String {
    single(dst, &format!("    engine: native\n{extra}"))
}

#[test]
fn a_run_at_the_floor_waits_for_the_window_says_so_and_completes() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (front, pulls) = limited(&src, 3, Duration::from_secs(4));
    let ws = Workspace::new();
    images_behind(&src, &front, &ws, 4);
    ws.config(&native(&dst, "    rateLimitMin: 1\n    parallel: 1\n"));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let said = format!("{}: 1 pulls left of 3 per 4s; waiting ", front.host);
    assert!(out.stderr.contains(&said), "{}", out.stderr);
    assert!(
        out.stderr.contains("before the next pull (rateLimitMin 1)"),
        "{}",
        out.stderr
    );
    assert_eq!(pulls.refused(), 0, "a pull was spent into a 429");
    for i in 1..=4 {
        assert!(
            manifest_raw(&dst, &format!("mirror/app{i}"), "1").is_some(),
            "app{i} did not arrive"
        );
    }
    assert_eq!(pulls_of(&front, "app"), 4, "one pull per image");
    let limits = &out.json()["registries"][0]["rateLimits"];
    assert_eq!(limits[0]["source"], front.host.as_str(), "{limits}");
    assert_eq!(
        (
            limits[0]["limit"].as_u64(),
            limits[0]["windowSeconds"].as_u64()
        ),
        (Some(3), Some(4)),
        "{limits}"
    );
}

#[test]
fn a_dry_run_at_the_floor_says_it_does_not_wait_and_spends_no_more() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (front, pulls) = limited(&src, 2, Duration::from_secs(600));
    let ws = Workspace::new();
    images_behind(&src, &front, &ws, 3);
    ws.config(&native(&dst, "    rateLimitMin: 1\n    parallel: 1\n"));
    let started = Instant::now();
    let out = ws.run_without_daemon(&["load", "--all", "--dry-run"]);
    assert!(started.elapsed() < Duration::from_secs(30), "it waited");
    assert_eq!(out.code, 0, "a dry run plans: {out:?}");
    let said = "1 pulls left of 2 per 10m (rateLimitMin 1); a dry run does not wait for them";
    assert!(out.stdout.contains(said), "{}", out.all());
    assert!(!out.all().contains("shutting down"), "{}", out.all());
    assert_eq!(pulls.refused(), 0, "a pull was spent into a 429");
}

#[test]
fn a_registry_without_the_headers_is_not_waited_for() {
    let (src, dst) = (Registry::start(), Registry::start());
    let front = Front::plain(&src);
    let ws = Workspace::new();
    images_behind(&src, &front, &ws, 3);
    ws.config(&native(&dst, "    rateLimitMin: 1000\n"));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("waiting"), "{}", out.stderr);
    assert!(out.json()["registries"][0].get("rateLimits").is_none());
}

/// Starts `load` of three images through a front that allows 2 pulls per
/// 10 minutes, with `extra` keys, and returns once the third image waits.
fn start_long_wait(extra: &str) -> (crate::harness::Running, Registry, Front, Workspace) {
    let (src, dst) = (Registry::start(), Registry::start());
    let (front, _) = limited(&src, 2, Duration::from_secs(600));
    let ws = Workspace::new();
    images_behind(&src, &front, &ws, 3);
    ws.config(&native(&dst, extra));
    let running = ws
        .run()
        .without_daemon()
        .args(["load", "--all", "--json"])
        .spawn();
    let waiting = eventually(Duration::from_secs(30), || {
        pulls_of(&front, "app") == 2 && front.count("HEAD", "/v2/app3/manifests/") >= 1
    });
    assert!(waiting, "the third image never came to wait");
    std::thread::sleep(Duration::from_millis(500));
    (running, dst, front, ws)
}

#[test]
fn sigterm_ends_a_long_wait_promptly() {
    let (running, dst, front, _ws) = start_long_wait("");
    let signalled = Instant::now();
    running.signal("TERM");
    let out = running.wait(Duration::from_secs(30));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
    assert_eq!(out.code, 1, "{out:?}");
    let said = format!("{}: 0 pulls left of 2 per 10m; waiting 5m", front.host);
    assert!(out.stderr.contains(&said), "{}", out.stderr);
    let run = &out.json()["registries"][0];
    assert_eq!(run["outcome"], "stopped", "{run}");
    assert_eq!(run["images"][2]["outcome"], "notAttempted", "{run}");
    assert_eq!(pulls_of(&front, "app3/"), 0, "the third pull was spent");
    assert!(manifest_raw(&dst, "mirror/app3", "1").is_none());
}

#[test]
fn transfer_timeout_ends_a_long_wait() {
    let (running, dst, front, _ws) = start_long_wait("    transferTimeout: 3s\n");
    let out = running.wait(Duration::from_secs(60));
    assert_eq!(out.code, 1, "{out:?}");
    let image = &out.json()["registries"][0]["images"][2];
    assert_eq!(image["outcome"], "failed", "{image}");
    let error = image["error"].as_str().unwrap_or_default();
    assert!(error.contains("transferTimeout"), "{error}");
    assert!(
        out.elapsed < Duration::from_secs(30),
        "took {:?}",
        out.elapsed
    );
    assert_eq!(pulls_of(&front, "app3/"), 0, "the third pull was spent");
    assert!(manifest_raw(&dst, "mirror/app2", "1").is_some());
}

#[test]
fn details_and_metrics_show_what_is_left() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (front, _) = limited(&src, 100, Duration::from_secs(21600));
    let ws = Workspace::new();
    images_behind(&src, &front, &ws, 1);
    let entry = registry_entry(&dst, "*/2 * * * * *", "    engine: native\n");
    let d = Daemon::start(&ws, &entry, None);
    assert!(
        eventually(Duration::from_secs(30), || d.syncs(&dst.host) >= 2),
        "fewer than 2 runs in 30s"
    );
    let status = d.status(&dst.host);
    let limits = &status["lastRun"]["rateLimits"][0];
    assert_eq!(limits["source"], front.host.as_str(), "{status}");
    // One pull; the later runs' checks are HEADs, which do not count.
    assert_eq!(
        (limits["remaining"].as_u64(), limits["limit"].as_u64()),
        (Some(99), Some(100)),
        "{status}"
    );
    let (_, metrics) = d.call("GET", "/metrics");
    let line = format!(
        "picture_book_rate_limit_remaining{{registry=\"{}\",source=\"{}\"}} 99",
        dst.host, front.host
    );
    assert!(metrics.as_str().unwrap().contains(&line), "{metrics}");
    let out = d.stop();
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn the_docker_engine_waits_before_handing_the_pull_to_docker() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (front, pulls) = limited(&src, 2, Duration::from_secs(5));
    let ws = Workspace::new();
    let listed: Vec<String> = (1..=3)
        .map(|i| {
            src.push_image(&format!("app{i}"), "1", 1);
            format!("{}/app{i}:1", front.host)
        })
        .collect();
    ws.list_script("sync.sh", &listed);
    ws.config(&single(&dst, "    rateLimitMin: 0\n"));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    let said = format!("{}: 0 pulls left of 2 per 5s; waiting ", front.host);
    assert!(out.stderr.contains(&said), "{}", out.stderr);
    assert_eq!(pulls.refused(), 0, "docker spent a pull into a 429");
    for i in 1..=3 {
        assert!(dst.config_digest(&format!("mirror/app{i}"), "1").is_some());
    }
}
