//! The native engine as an operator meets it: multi-platform indexes,
//! digest-pinned sources, OCI artifacts and docker-built images copied
//! registry to registry with identical digests and no docker daemon at all;
//! the `platforms` filter; mounts, chunked uploads, credentials and HTTPS;
//! and the no-op run, proven from the registries' access logs.

use serde_json::Value;

use crate::fixtures::{self, Layout, Remote, assert_complete, manifest_raw};
use crate::harness::{Registry, Workspace, docker, docker_ok, fresh_dir, single};

/// A configuration of one native registry for `target`, with `extra` keys.
pub fn native(target: &Registry, extra: &str) -> String {
    single(target, &format!("    engine: native\n{extra}"))
}

/// The three-platform layout, pushed to `src` as `repo:tag`.
pub fn three_platforms(src: &impl Remote, repo: &str, tag: &str) -> Layout {
    let layout = fixtures::multi_platform(&fresh_dir("layout"), tag);
    fixtures::push_layout(&layout, src, repo, tag);
    layout
}

/// The requests picture-book's native engine sent to `registry`.
fn copy_requests(registry: &Registry) -> Vec<(String, String)> {
    registry
        .requests()
        .into_iter()
        .filter(|(_, _, agent)| agent.starts_with("picture-book/") && agent.ends_with(" native"))
        .map(|(m, p, _)| (m, p))
        .collect()
}

/// The one image of a `load --json` report.
fn image(report: &Value) -> Value {
    report["registries"][0]["images"][0].clone()
}

#[test]
fn a_multi_platform_index_arrives_whole_with_its_digests_and_no_docker() {
    let (src, dst) = (Registry::start(), Registry::start());
    let layout = three_platforms(&src, "app", "1");
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    ws.config(&native(&dst, ""));
    let out = ws
        .run()
        .without_daemon()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["load", "--all", "--json"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    let (_, digest, _) = manifest_raw(&dst, "mirror/app", "1").expect("the tag arrived");
    assert_eq!(digest, layout.top.digest, "the index keeps its digest");
    assert_complete(&dst, "mirror/app", &layout);
    let report = out.json();
    let moved = image(&report);
    let blobs = layout.blobs();
    let bytes: u64 = blobs.iter().map(|b| b.size).sum();
    assert_eq!(moved["blobsCopied"], blobs.len(), "{moved}");
    assert_eq!(moved["bytes"], bytes, "{moved}");
    assert_eq!(
        moved["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8", "linux/arm/v7"])
    );
    assert_eq!(report["registries"][0]["engine"], "native");
    assert_eq!(report["registries"][0]["bytes"], bytes);

    let gets = copy_requests(&src)
        .iter()
        .filter(|(m, p)| m == "GET" && p.contains("/blobs/"))
        .count();
    assert_eq!(
        gets,
        blobs.len(),
        "one GET per blob at the source: {:#?}",
        src.requests()
    );

    let (src_before, dst_before) = (src.requests().len(), dst.requests().len());
    let again = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    let noop = image(&again.json());
    assert_eq!(noop["outcome"], "upToDate", "{noop}");
    assert!(
        noop["reason"]
            .as_str()
            .unwrap()
            .starts_with("the same digest")
    );
    for (name, seen) in [
        ("source", &src.requests()[src_before..]),
        ("target", &dst.requests()[dst_before..]),
    ] {
        let heads = seen.iter().filter(|(m, _, _)| m == "HEAD").count();
        assert_eq!((heads, seen.len()), (1, 1), "{name}: {seen:#?}");
    }
}

#[test]
fn the_host_platform_runs_the_same_image_and_arm64_is_byte_identical() {
    let (src, dst) = (Registry::start(), Registry::start());
    let layout = three_platforms(&src, "multi", "2");
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/multi:2", src.host)]);
    ws.config(&native(&dst, ""));
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    let arm64 = layout.image("arm64");
    let oci = fresh_dir("arm64");
    let copied = std::process::Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
        .arg(format!(
            "docker://{}/mirror/multi@{}",
            dst.host, arm64.manifest.digest
        ))
        .arg(format!("oci:{}:arm64", oci.display()))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    for blob in std::iter::once(&arm64.config).chain(&arm64.layers) {
        let hex = blob.digest.trim_start_matches("sha256:");
        let bytes = std::fs::read(oci.join("blobs/sha256").join(hex)).unwrap();
        assert!(bytes == blob.bytes, "{} differs", blob.digest);
    }
    let name = format!("{}/mirror/multi:2", dst.host);
    docker(&["pull", &name]);
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &name]);
    assert_eq!(id.trim(), layout.image("amd64").config.digest);
    assert!(docker_ok(&["rmi", &name]));
}

#[test]
fn a_digest_pinned_source_is_reachable_by_its_digest_under_a_tag_of_its_own() {
    let (src, dst) = (Registry::start(), Registry::start());
    let layout = three_platforms(&src, "pinned", "x");
    let ws = Workspace::new();
    let pinned = format!("{}/pinned@{}", src.host, layout.top.digest);
    ws.list_script("sync.sh", &[pinned]);
    ws.config(&native(&dst, ""));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let hex = layout.top.digest.trim_start_matches("sha256:");
    let tag = format!("pinned-sha256-{hex}");
    assert_eq!(
        image(&out.json())["target"],
        format!("{}/mirror/pinned:{tag}", dst.host)
    );
    let (_, digest, _) = manifest_raw(&dst, "mirror/pinned", &tag).unwrap();
    assert_eq!(digest, layout.top.digest);
    assert!(manifest_raw(&dst, "mirror/pinned", &layout.top.digest).is_some());
    assert!(
        manifest_raw(&dst, "mirror/pinned", &format!("sha256-{hex}")).is_none(),
        "the referrers fallback tag is left to signature tools"
    );
}

#[test]
fn the_platforms_filter_writes_a_new_index_and_says_so() {
    let (src, dst) = (Registry::start(), Registry::start());
    let layout = three_platforms(&src, "app", "1");
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    ws.config(&native(&dst, "    platforms: [linux/amd64, linux/arm64]\n"));
    let dry = ws.run_without_daemon(&["load", "--all", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout
            .contains("platforms linux/amd64, linux/arm64/v8;")
            && dry
                .stdout
                .contains("the platforms filter writes a new index"),
        "{}",
        dry.stdout
    );
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let moved = image(&out.json());
    assert_eq!(moved["filtered"], true, "{moved}");
    let (_, digest, body) = manifest_raw(&dst, "mirror/app", "1").unwrap();
    assert_ne!(digest, layout.top.digest, "a new index");
    let index: Value = serde_json::from_slice(&body).unwrap();
    let kept: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["amd64", "arm64"]);
    for arch in ["amd64", "arm64"] {
        let child = &layout.image(arch).manifest;
        let (_, d, _) = manifest_raw(&dst, "mirror/app", &child.digest).unwrap();
        assert_eq!(d, child.digest, "the children keep their digests");
    }
    let arm = &layout.image("arm").manifest;
    assert!(manifest_raw(&dst, "mirror/app", &arm.digest).is_none());
    let again = ws.run_without_daemon(&["load", "--all", "--json"]);
    let noop = image(&again.json());
    assert_eq!(noop["outcome"], "upToDate", "{noop}");

    ws.config(&native(&dst, "    platforms: [linux/s390x]\n"));
    let none = ws.run_without_daemon(&["load", "--all", "--json", "--force"]);
    assert_eq!(none.code, 1, "{none:?}");
    let failed = image(&none.json());
    assert!(
        failed["error"].as_str().unwrap().contains(
            "the source has none of the platforms linux/s390x (it has linux/amd64, linux/arm64/v8, linux/arm/v7)"
        ),
        "{failed}"
    );
}

#[test]
fn an_artifact_and_a_docker_built_image_keep_their_digests() {
    let (src, dst) = (Registry::start(), Registry::start());
    let chart = fixtures::artifact(&fresh_dir("chart"), "0.1.0");
    fixtures::push_layout(&chart, &src, "charts/app", "0.1.0");
    let id = src.push_image("built", "1", 2);
    let built = src.manifest_digest("built", "1").unwrap();
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/charts/app:0.1.0", src.host),
            format!("{}/built:1", src.host),
        ],
    );
    ws.config(&native(&dst, ""));
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_complete(&dst, "mirror/charts/app", &chart);
    let (_, digest, _) = manifest_raw(&dst, "mirror/charts/app", "0.1.0").unwrap();
    assert_eq!(digest, chart.top.digest);
    assert_eq!(dst.manifest_digest("mirror/built", "1"), Some(built));
    assert_eq!(dst.config_digest("mirror/built", "1"), Some(id));
}

/// The sizes of the config and layers of the image manifest `repo:tag`.
fn blob_sizes(registry: &Registry, repo: &str, tag: &str) -> Vec<u64> {
    let (_, _, body) = manifest_raw(registry, repo, tag).unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap())
        .map(|d| d["size"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_blob_another_repository_has_is_mounted_and_chunks_are_sent_when_asked() {
    let (src, dst) = (Registry::start(), Registry::start());
    let layout = three_platforms(&src, "one", "1");
    fixtures::push_layout(&layout, &src, "two", "1");
    let id = src.push_image("big", "1", 3);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/one:1", src.host),
            format!("{}/two:1", src.host),
            format!("{}/big:1", src.host),
        ],
    );
    ws.config(&native(&dst, "    parallel: 1\n    chunkSize: 64KiB\n"));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_complete(&dst, "mirror/one", &layout);
    assert_complete(&dst, "mirror/two", &layout);
    let report = out.json();
    let blobs = layout.blobs().len();
    let images = report["registries"][0]["images"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(images[0]["blobsCopied"], blobs);
    assert_eq!(images[1]["blobsMounted"], blobs, "{}", images[1]);
    let mounts = dst
        .requests()
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.contains("/v2/mirror/two/blobs/uploads/?mount="))
        .count();
    assert_eq!(mounts, blobs, "the target's log shows the mounts");
    let heads = dst.count("HEAD", "/v2/mirror/two/blobs/", true);
    assert_eq!(heads, 0, "no HEAD before a mount: the mount answers it");
    assert_eq!(dst.config_digest("mirror/big", "1"), Some(id));
    let patches = copy_requests(&dst)
        .iter()
        .filter(|(m, p)| m == "PATCH" && p.starts_with("/v2/mirror/big/blobs/uploads/"))
        .count();
    let chunks: u64 = blob_sizes(&src, "big", "1")
        .iter()
        .map(|size| size.div_ceil(64 << 10))
        .sum();
    assert!(chunks > 4, "the layers are larger than one chunk");
    assert_eq!(patches as u64, chunks, "one PATCH per 64 KiB");
}

#[test]
fn credentials_at_both_ends_and_a_token_service_at_the_source() {
    let src = Registry::with_auth("puller", "pull-pass-n1");
    let dst = Registry::with_auth("pusher", "push-pass-n2");
    let layout = three_platforms(&src, "app", "1");
    let upstream = Registry::start();
    let tokened = three_platforms(&upstream, "team/app", "1");
    let front = crate::token::TokenFront::start(&upstream, "reader", "reader-pass-n3", 300);
    let pull = format!(
        r#"{{"auths":{{"{}":{{"username":"puller","password":"pull-pass-n1"}},"{}":{{"username":"reader","password":"reader-pass-n3"}}}}}}"#,
        src.host, front.host
    );
    let ws = Workspace::new();
    ws.secret_file("pull.json", &pull);
    ws.secret_file("push.json", &dst.auth_json("pusher", "push-pass-n2"));
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/app:1", src.host),
            format!("{}/team/app:1", front.host),
        ],
    );
    ws.config(&native(
        &dst,
        "    pullAuthConfigFile: pull.json\n    pushAuthConfigFile: push.json\n",
    ));
    let out = ws.run_without_daemon(&["load", "--all", "-vv"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_complete(&dst, "mirror/app", &layout);
    assert_complete(&dst, "mirror/team/app", &tokened);
    for secret in ["pull-pass-n1", "push-pass-n2", "reader-pass-n3"] {
        assert!(!out.all().contains(secret), "{secret} leaked");
    }
}

#[test]
fn over_https_with_a_private_ca_and_names_that_are_not_loopback() {
    use crate::fixtures::tls::{TlsRegistry, unique_name};
    let src = TlsRegistry::with_auth(&unique_name(), "puller", "tls-pull-8x");
    let dst = TlsRegistry::start(&unique_name());
    let layout = three_platforms(&src, "app", "1");
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let pull = format!(
        r#"{{"auths":{{"{}":{{"username":"puller","password":"tls-pull-8x"}}}}}}"#,
        src.host
    );
    ws.secret_file("pull.json", &pull);
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    syncerScript: sync.sh\n    engine: native\n    pullAuthConfigFile: pull.json\n",
        dst.host
    ));
    let out = ws
        .run()
        .without_daemon()
        .env("NO_PROXY", "127.0.0.1,localhost,.test")
        .args(["load", "--all", "--json"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_complete(&dst, "mirror/app", &layout);
    assert_eq!(
        manifest_raw(&dst, "mirror/app", "1").map(|m| m.1),
        Some(layout.top.digest.clone())
    );
    assert!(!out.all().contains("tls-pull-8x"));
}

#[test]
fn the_daemon_runs_native_registries_and_shows_what_they_moved() {
    use crate::sync::{Daemon, registry_entry};
    use std::time::Duration;
    let (src, dst) = (Registry::start(), Registry::start());
    let layout = three_platforms(&src, "app", "1");
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let entry = registry_entry(&dst, "*/2 * * * * *", "    engine: native\n");
    let d = Daemon::start_with(&ws, &entry, None, |run| run.without_daemon());
    assert!(crate::harness::eventually(Duration::from_secs(30), || {
        d.syncs(&dst.host) >= 2
    }));
    assert_complete(&dst, "mirror/app", &layout);
    let status = d.status(&dst.host);
    assert_eq!(status["engine"], "native", "{status}");
    assert_eq!(status["lastRun"]["upToDate"], 1, "{status}");
    let configured = d.get("/list?type=configured");
    assert_eq!(configured["registries"][0]["engine"], "native");
    let (_, metrics) = d.call("GET", "/metrics");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("picture_book_last_run_bytes{"),
        "{metrics}"
    );
    assert_eq!(d.stop().code, 0);
}
