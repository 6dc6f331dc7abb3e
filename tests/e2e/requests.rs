//! What a run asks the registries, counted from their access logs: no
//! request that an earlier answer of the run settled. A fresh run of
//! images that share blobs, across repositories and across the tags of one
//! repository, sends each blob to the target once (the others mount it, or
//! need nothing), keeps the upload its repository check opened for the
//! first blob, and confirms the target's first manifest 404 once; a
//! repeated run sends one `HEAD` per image at each end. Workers that start
//! at once against a token service meet one 401 and fetch one token.

use std::collections::BTreeMap;

use serde_json::json;

use crate::fixtures::layout::random_bytes;
use crate::fixtures::{Blob, push_via_api};
use crate::harness::{Registry, Workspace, single};
use crate::token::TokenFront;

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An image of `layers` and a config of its own (told apart by `name`),
/// pushed to `remote` as `repo:tag`.
fn push(remote: &Registry, repo: &str, tag: &str, layers: &[&Blob]) {
    let config = Blob::json(
        "application/vnd.oci.image.config.v1+json",
        &json!({"architecture": "amd64", "os": "linux", "name": format!("{repo}:{tag}"),
                "rootfs": {"type": "layers", "diff_ids": []}}),
    );
    let manifest = Blob::json(
        "application/vnd.oci.image.manifest.v1+json",
        &json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": layers.iter().map(|l| l.descriptor()).collect::<Vec<_>>(),
        }),
    );
    let mut blobs = vec![&config];
    blobs.extend_from_slice(layers);
    push_via_api(remote, repo, tag, &blobs, &[&manifest]);
}

/// picture-book's requests in `registry`'s log from the `from`th on, by
/// method and what they address (`blob`, `upload`, `mount`, `manifest`).
fn kinds(registry: &Registry, from: usize) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for (method, path, agent) in &registry.requests()[from..] {
        if !agent.starts_with("picture-book/") {
            continue;
        }
        let what = if path.contains("?mount=") {
            "mount"
        } else if path.contains("/blobs/uploads/") {
            "upload"
        } else if path.contains("/blobs/") {
            "blob"
        } else if path.contains("/manifests/") {
            "manifest"
        } else {
            path.as_str()
        };
        *kinds.entry(format!("{method} {what}")).or_insert(0) += 1;
    }
    kinds
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

#[test]
fn a_fresh_run_sends_each_blob_once_and_a_repeated_one_a_head_per_image() {
    let (src, dst) = (Registry::start(), Registry::start());
    let shared = Blob::new(LAYER, random_bytes(4096));
    let app = Blob::new(LAYER, random_bytes(2048));
    push(&src, "app", "1", &[&shared, &app]);
    push(&src, "app", "2", &[&shared, &app]);
    let others = ["one", "two", "three", "four"];
    for repo in others {
        push(
            &src,
            repo,
            "1",
            &[&shared, &Blob::new(LAYER, random_bytes(2048))],
        );
    }
    let mut refs = vec![format!("{}/app:1", src.host), format!("{}/app:2", src.host)];
    refs.extend(others.iter().map(|r| format!("{}/{r}:1", src.host)));
    let ws = Workspace::new();
    ws.list_script("sync.sh", &refs);
    ws.config(&single(&dst, "    engine: native\n    parallel: 4\n"));
    let (src_before, dst_before) = (src.requests().len(), dst.requests().len());
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["registries"][0]["mirrored"], 6);

    // 6 images in 5 repositories; 12 (blob, repository) pairs to send (the
    // shared layer once, app's layer once for its two tags, 6 configs, 4
    // layers of their own), 4 mounts of the shared layer.
    let sent = 12;
    assert_eq!(
        kinds(&src, src_before),
        counts(&[
            ("HEAD manifest", 6),
            ("GET manifest", 6),
            ("GET blob", sent)
        ]),
        "the source: a HEAD and a GET per image, a GET per blob sent"
    );
    assert_eq!(
        kinds(&dst, dst_before),
        counts(&[
            ("HEAD manifest", 6),
            ("GET manifest", 1),
            ("HEAD blob", sent),
            ("POST upload", sent),
            ("PUT upload", sent),
            ("POST mount", others.len()),
            ("PUT manifest", 6),
        ]),
        "the target: the first 404 confirmed once; per repository one upload \
         opened by its check and used for its first blob (no DELETE); each \
         blob sent once, the shared layer mounted by the others"
    );

    let (src_before, dst_before) = (src.requests().len(), dst.requests().len());
    let again = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["registries"][0]["upToDate"], 6);
    for (name, registry, before) in [("source", &src, src_before), ("target", &dst, dst_before)] {
        assert_eq!(
            kinds(registry, before),
            counts(&[("HEAD manifest", 6)]),
            "{name}: one HEAD per image"
        );
    }
}

#[test]
fn workers_that_start_at_once_meet_one_401_and_fetch_one_token() {
    let (upstream, dst) = (Registry::start(), Registry::start());
    let layer = Blob::new(LAYER, random_bytes(2048));
    let tags = ["1", "2", "3", "4"];
    for tag in tags {
        push(&upstream, "team/app", tag, &[&layer]);
    }
    let front = TokenFront::start(&upstream, "reader", "reader-pass-77", 300);
    let auth = format!(
        r#"{{"auths":{{"{}":{{"username":"reader","password":"reader-pass-77"}}}}}}"#,
        front.host
    );
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &tags.map(|t| format!("{}/team/app:{t}", front.host)),
    );
    ws.config(&single(
        &dst,
        &format!("    engine: native\n    parallel: 4\n    pullAuthConfig: '{auth}'\n"),
    ));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["registries"][0]["mirrored"], 4);
    let ours: Vec<_> = front.seen().into_iter().filter(|s| s.ours()).collect();
    let refused = ours.iter().filter(|s| s.status == 401).count();
    assert_eq!(refused, 1, "one 401 for four workers: {ours:#?}");
    let tokens = front.our_token_requests();
    assert_eq!(tokens.len(), 1, "one token for the one scope: {tokens:#?}");
}
