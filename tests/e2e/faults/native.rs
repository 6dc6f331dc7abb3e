//! The native engine under faults: a source whose blob bytes are altered on
//! the way, one that dies mid-blob and comes back, one that throttles with
//! `Retry-After`, a target that refuses large requests (413) and one that
//! never answers, picture-book killed with SIGKILL mid-copy, and credentials
//! from a docker credential helper. What must hold: what is at the target
//! (never a tag pointing at missing or altered blobs), the exit status, the
//! time bound, the attempts.

use std::time::{Duration, Instant};

use serde_json::json;

use super::images;
use super::net::{Action, Fault, FaultProxy, silent_peer};
use crate::fixtures::layout::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, gzip, random_bytes, tar};
use crate::fixtures::{Blob, blob_exists, manifest_raw, push_via_api, sha256};
use crate::harness::{Registry, Workspace, eventually, single};
use crate::native::native;

/// A single-platform image with one random layer of about `size` bytes,
/// pushed to `registry` as `repo:tag`; returns its manifest and layer.
fn big_image(registry: &Registry, repo: &str, tag: &str, size: usize) -> (Blob, Blob) {
    let tarball = tar(&[("big".to_string(), random_bytes(size))]);
    let layer = Blob::new(OCI_LAYER_GZIP, gzip(&tarball));
    let config = Blob::json(
        OCI_CONFIG,
        &json!({"architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256(&tarball)]}}),
    );
    let manifest = Blob::json(
        OCI_MANIFEST,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": config.descriptor(), "layers": [layer.descriptor()]}),
    );
    push_via_api(registry, repo, tag, &[&config, &layer], &[&manifest]);
    (manifest, layer)
}

/// `text` for a fault's path, which lives as long as the test binary.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// A workspace mirroring `sources` natively into `target` with `extra` keys.
fn workspace(target: &Registry, sources: &[String], extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.list_script("sync.sh", sources);
    ws.config(&native(target, extra));
    ws
}

#[test]
fn a_blob_altered_on_the_way_is_never_pushed() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (_, layer) = big_image(&src, "app", "1", 300 << 10);
    let proxy = FaultProxy::start(
        &src.host,
        &[Fault::to(
            10,
            "picture-book/",
            "/blobs/sha256:",
            Action::Corrupt,
        )],
    );
    let ws = workspace(&dst, &[format!("{}/app:1", proxy.host)], "    retries: 1\n");
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let image = &images(&out.json())[0];
    let error = image["error"].as_str().unwrap();
    assert!(
        error.contains(" does not match its digest") && error.contains("from 127.0.0.1:"),
        "{error}"
    );
    assert_eq!(
        image["attempts"], 1,
        "a mismatch is not tried again: {image}"
    );
    assert!(!blob_exists(&dst, "mirror/app", &layer.digest));
    assert!(manifest_raw(&dst, "mirror/app", "1").is_none(), "no tag");
}

#[test]
fn a_source_that_dies_mid_blob_is_tried_again_from_scratch() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (manifest, layer) = big_image(&src, "app", "1", 2 << 20);
    let cut = Fault::to(
        1,
        "picture-book/",
        leak(format!("/blobs/{}", layer.digest)),
        Action::Cut(1 << 20),
    );
    let proxy = FaultProxy::start(&src.host, &[cut]);
    let ws = workspace(&dst, &[format!("{}/app:1", proxy.host)], "");
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(proxy.faults(), 1);
    let image = &images(&out.json())[0];
    assert!(image["attempts"].as_u64() >= Some(2), "{image}");
    let (_, digest, _) = manifest_raw(&dst, "mirror/app", "1").unwrap();
    assert_eq!(digest, manifest.digest);
    assert!(blob_exists(&dst, "mirror/app", &layer.digest));
}

#[test]
fn a_throttled_blob_waits_as_retry_after_says() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (manifest, _) = big_image(&src, "app", "1", 64 << 10);
    let throttled = Fault::first(1, "picture-book/", "429 Too Many Requests")
        .with("Retry-After: 3\r\n")
        .on("/blobs/sha256:");
    let proxy = FaultProxy::start(&src.host, &[throttled]);
    let ws = workspace(&dst, &[format!("{}/app:1", proxy.host)], "");
    let started = Instant::now();
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(proxy.faults(), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(images(&out.json())[0]["attempts"], 2);
    assert_eq!(
        manifest_raw(&dst, "mirror/app", "1").map(|m| m.1),
        Some(manifest.digest)
    );
}

#[test]
fn a_target_that_refuses_a_whole_blob_gets_it_in_chunks() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (manifest, layer) = big_image(&src, "app", "1", 5 << 20);
    let whole_layer = leak(format!("digest={}", layer.digest));
    let refuse = Fault::first(1, "picture-book/", "413 Request Entity Too Large").on(whole_layer);
    let proxy = FaultProxy::start(&dst.host, &[refuse]);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    syncerScript: sync.sh\n    engine: native\n    parallel: 1\n",
        proxy.host
    ));
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(proxy.faults(), 1, "the 413 was met");
    assert!(
        out.stderr.contains("(413); sending it in chunks"),
        "{}",
        out.stderr
    );
    let patches = dst
        .requests()
        .iter()
        .filter(|(m, p, _)| m == "PATCH" && p.starts_with("/v2/mirror/app/blobs/uploads/"))
        .count();
    assert!(patches >= 2, "a 5 MiB layer in chunks of 4 MiB: {patches}");
    assert!(blob_exists(&dst, "mirror/app", &layer.digest));
    assert_eq!(
        manifest_raw(&dst, "mirror/app", "1").map(|m| m.1),
        Some(manifest.digest)
    );
}

#[test]
fn a_copy_killed_midway_leaves_no_tag_and_the_next_run_completes() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (manifest, layer) = big_image(&src, "app", "1", 6 << 20);
    let slow = Fault::to(
        1,
        "picture-book/",
        leak(format!("/blobs/{}", layer.digest)),
        Action::Slow(1 << 20),
    );
    let proxy = FaultProxy::start(&src.host, &[slow]);
    let ws = workspace(
        &dst,
        &[format!("{}/app:1", proxy.host)],
        "    parallel: 1\n",
    );
    let running = ws.run().without_daemon().args(["load", "--all"]).spawn();
    assert!(
        eventually(Duration::from_secs(30), || proxy.faults() == 1),
        "the copy never started"
    );
    std::thread::sleep(Duration::from_secs(2));
    running.signal("KILL");
    let killed = running.wait(Duration::from_secs(10));
    assert_ne!(killed.code, 0);
    assert!(
        manifest_raw(&dst, "mirror/app", "1").is_none(),
        "no dangling tag"
    );
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        manifest_raw(&dst, "mirror/app", "1").map(|m| m.1),
        Some(manifest.digest)
    );
    assert!(blob_exists(&dst, "mirror/app", &layer.digest));
}

#[test]
fn a_target_that_never_answers_fails_the_run_within_its_bounds() {
    let src = Registry::start();
    big_image(&src, "a", "1", 64 << 10);
    big_image(&src, "b", "1", 64 << 10);
    let peer = silent_peer();
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[format!("{}/a:1", src.host), format!("{}/b:1", src.host)],
    );
    ws.config(&format!(
        "registries:\n  - hostname: '{peer}'\n    repository: mirror\n    syncerScript: sync.sh\n    engine: native\n    parallel: 1\n    retries: 0\n    transferTimeout: 5s\n"
    ));
    let started = Instant::now();
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(150),
        "{:?}",
        started.elapsed()
    );
    let report = out.json();
    let outcomes: Vec<String> = images(&report)
        .iter()
        .map(|i| i["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["failed", "notAttempted"], "{report}");
    assert!(
        report["registries"][0]["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{peer} is unreachable")),
        "{report}"
    );
}

#[test]
fn credentials_come_from_a_docker_credential_helper() {
    let src = Registry::start();
    let dst = Registry::with_auth("pusher", "helper-pass-7q");
    let (manifest, _) = big_image(&src, "app", "1", 64 << 10);
    let ws = Workspace::new();
    let asked = ws.dir.join("asked");
    let helper = ws.script(
        "docker-credential-pbtest",
        &format!(
            "read server\necho \"$0 $* $server\" >> {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"pusher\",\"Secret\":\"helper-pass-7q\"}}' \"$server\"",
            asked.display()
        ),
    );
    let path = format!(
        "{}:{}",
        helper.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let auth = format!(r#"{{"credHelpers":{{"{}":"pbtest"}}}}"#, dst.host);
    for engine in ["native", "docker"] {
        ws.config(&single(
            &dst,
            &format!("    engine: {engine}\n    pushAuthConfig: '{auth}'\n"),
        ));
        let out = ws
            .run()
            .env("PATH", &path)
            .args(["load", "--all", "--force", "-vv"])
            .run();
        assert_eq!(out.code, 0, "{engine}: {out:?}");
        assert!(
            !out.all().contains("helper-pass-7q"),
            "{engine}: the secret leaked"
        );
        if engine == "native" {
            assert_eq!(
                manifest_raw(&dst, "mirror/app", "1").map(|m| m.1),
                Some(manifest.digest.clone())
            );
        }
    }
    let calls = std::fs::read_to_string(&asked).unwrap();
    assert!(
        calls
            .lines()
            .all(|l| l.ends_with(&format!(" get {}", dst.host))),
        "asked with the server on stdin, nothing secret in argv: {calls}"
    );
}
