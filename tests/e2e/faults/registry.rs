//! Registries that go away, fail, throttle or never answer.

use std::thread;
use std::time::Duration;

use super::images;
use super::net::{Fault, FaultProxy, silent_peer};
use crate::harness::{Outcome, Registry, Workspace, eventually, processes_with, single};

/// The run's first image comes from a healthy registry; the others from one
/// that is down when the run reaches them and returns a second later.
#[test]
fn a_source_that_is_down_mid_run_and_returns_is_waited_for() {
    let (first, mut src, dst) = (Registry::start(), Registry::start(), Registry::start());
    first.push_image("first", "1", 1);
    let tags = ["1", "2", "3"];
    let ids: Vec<String> = tags.iter().map(|t| src.push_image("app", t, 2)).collect();
    let ws = Workspace::new();
    let mut listed = vec![format!("{}/first:1", first.host)];
    listed.extend(tags.map(|t| format!("{}/app:{t}", src.host)));
    ws.list_script("sync.sh", &listed);
    ws.config(&single(&dst, "    parallel: 1\n    retries: 4\n"));
    src.stop();
    let running = ws.run().args(["load", "--all", "--json"]).spawn();
    assert!(eventually(Duration::from_secs(60), || dst
        .manifest_digest("mirror/first", "1")
        .is_some()));
    thread::sleep(Duration::from_secs(1));
    src.restart();
    let out = running.wait(Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out:?}");
    for (tag, id) in tags.iter().zip(&ids) {
        assert_eq!(dst.config_digest("mirror/app", tag).as_ref(), Some(id));
    }
    let report = out.json();
    let waited = &images(&report)[1];
    assert!(waited["attempts"].as_u64() >= Some(2), "{report}");
    assert!(
        out.stderr.contains("connection refused; trying again in"),
        "retries are logged: {}",
        out.stderr
    );
}

/// Mirrors one image from a source behind a proxy with `faults`; checks
/// that every fault was met and the image arrived on a later attempt, and
/// returns what picture-book printed.
fn through_faults(faults: &[Fault]) -> Outcome {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("app", "1", 2);
    let proxy = FaultProxy::start(&src.host, faults);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", proxy.host)]);
    ws.config(&single(&dst, ""));
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
    let injected: usize = faults.iter().map(|f| f.count).sum();
    assert_eq!(proxy.faults(), injected, "not every fault was met");
    let image = &images(&out.json())[0];
    assert!(image["attempts"].as_u64() >= Some(2), "{image}");
    out
}

#[test]
fn a_source_answering_500_is_tried_again_until_it_recovers() {
    let out = through_faults(&[Fault::first(4, "docker/", "500 Internal Server Error")]);
    assert!(
        out.stderr.contains("500 Internal Server Error"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_source_answering_429_is_given_a_longer_rest() {
    let throttled = Fault::first(4, "docker/", "429 Too Many Requests").with("Retry-After: 1\r\n");
    let out = through_faults(&[throttled]);
    assert!(out.stderr.contains("toomanyrequests"), "{}", out.stderr);
    assert!(
        out.elapsed >= Duration::from_millis(2500),
        "a 429 is waited out for at least 2.5s, took {:?}",
        out.elapsed
    );
}

#[test]
fn picture_books_own_requests_wait_as_retry_after_says() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("app", "1", 1);
    let proxy = FaultProxy::start(
        &src.host,
        &[Fault::first(1, "picture-book/", "429 Too Many Requests").with("Retry-After: 3\r\n")],
    );
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", proxy.host)]);
    ws.config(&single(&dst, ""));
    let out = ws
        .run()
        .args(["load", "--all", "--dry-run", "--json"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(proxy.faults(), 1);
    let report = out.json();
    assert_eq!(
        images(&report)[0]["reason"],
        "not at the target",
        "{report}"
    );
    assert!(
        out.elapsed >= Duration::from_secs(3),
        "Retry-After: 3 was not waited for: {:?}",
        out.elapsed
    );
}

/// Docker is told "too many requests" and cannot say for how long; the
/// registry says `Retry-After: 8` to picture-book's own question afterwards.
#[test]
fn after_docker_is_throttled_the_registrys_retry_after_is_waited_for() {
    let throttled = "429 Too Many Requests";
    // The second fault is met only if picture-book asks the registry.
    let out = through_faults(&[
        Fault::first(3, "docker/", throttled),
        Fault::first(1, "picture-book/", throttled)
            .with("Retry-After: 8\r\n")
            .after(1),
    ]);
    assert_eq!(images(&out.json())[0]["attempts"], 2);
    assert!(
        out.elapsed >= Duration::from_secs(8),
        "Retry-After: 8 was not waited for: {:?}",
        out.elapsed
    );
}

#[test]
fn a_source_failing_every_image_is_reported_once_as_down() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("a", "1", 1);
    src.push_image("b", "1", 1);
    let failing = Fault::first(usize::MAX, "docker/", "503 Service Unavailable");
    let proxy = FaultProxy::start(&src.host, &[failing]);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[format!("{}/a:1", proxy.host), format!("{}/b:1", proxy.host)],
    );
    ws.config(&single(&dst, "    retries: 1\n"));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 1, "{out:?}");
    let down = format!(
        "error: {} looks down: all 2 images failed, each after its retries; the last said: ",
        proxy.host
    );
    assert_eq!(out.stdout.matches(&down).count(), 1, "{}", out.stdout);
    assert_eq!(
        out.stdout.matches("(after 2 attempts)").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(dst.catalog().is_empty());
}

#[test]
fn a_target_that_is_down_is_reported_once_and_the_next_run_completes() {
    let (src, mut dst) = (Registry::start(), Registry::start());
    let ids: Vec<String> = (1..=3)
        .map(|n| src.push_image(&format!("app{n}"), "1", 1))
        .collect();
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &(1..=3)
            .map(|n| format!("{}/app{n}:1", src.host))
            .collect::<Vec<_>>(),
    );
    ws.config(&single(&dst, "    parallel: 1\n    retries: 1\n"));
    dst.stop();
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.elapsed < Duration::from_secs(60),
        "took {:?}",
        out.elapsed
    );
    assert!(
        out.stdout
            .contains("0 mirrored, 0 up to date, 1 failed, 2 not attempted"),
        "{}",
        out.stdout
    );
    let down = format!("error: {} is unreachable (", dst.host);
    assert_eq!(out.stdout.matches(&down).count(), 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("2 images that needed it not attempted"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.matches("connection refused").count(),
        2,
        "the error is told by the run and its one failed image, not by every image: {}",
        out.stdout
    );
    dst.restart();
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    for (n, id) in (1..=3).zip(&ids) {
        assert_eq!(
            dst.config_digest(&format!("mirror/app{n}"), "1").as_ref(),
            Some(id)
        );
    }
}

#[test]
fn a_peer_that_never_answers_cannot_hang_a_run() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("app", "1", 1);
    let silent = silent_peer();
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{silent}/ghost:1"),
            format!("{silent}/ghost:2"),
            format!("{}/app:1", src.host),
        ],
    );
    ws.config(&single(
        &dst,
        "    parallel: 1\n    retries: 1\n    transferTimeout: 3s\n",
    ));
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        // 10 s for a TLS handshake, 20 s for a plain HTTP answer, twice 3 s
        // for docker: about 40 s.
        out.elapsed < Duration::from_secs(75),
        "a silent peer held the run for {:?}",
        out.elapsed
    );
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
    let report = out.json();
    let images = images(&report);
    assert_eq!(images[0]["outcome"], "failed", "{report}");
    assert_eq!(images[0]["attempts"], 2, "{report}");
    assert!(
        images[0]["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 3s and was killed"),
        "{report}"
    );
    assert_eq!(images[1]["outcome"], "notAttempted", "{report}");
    assert_eq!(images[2]["outcome"], "mirrored", "{report}");
    assert!(
        report["registries"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{silent} is unreachable")),
        "{report}"
    );
    assert_eq!(
        processes_with(&format!("pull {silent}")),
        Vec::<String>::new()
    );
    assert!(ws.private_dirs().is_empty());
}
