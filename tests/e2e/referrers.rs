//! Signatures, attestations and SBOMs travel with their images
//! (`referrers: true`, native engine): OCI referrers found through the
//! fallback tag of the distribution registry (which has no referrers API)
//! and through a front that has the API, cosign's `.sig` tags, a signed
//! attestation's signature; the target's fallback index merged with what
//! others put there; a no-op run that costs one request more per image; a
//! new signature copied alone; `referrerTypes`; the docker engine refusing
//! the key. Fixtures are written with the registry API, unsigned: only their
//! bytes matter.

use serde_json::{Value, json};

use crate::fixtures::layout::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, random_bytes};
use crate::fixtures::{Blob, Remote, manifest_raw, push_blob, put_manifest};
use crate::harness::{Registry, Workspace, single};
use crate::referrers_front::ReferrersFront;

pub const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM: &str = "application/spdx+json";
const ATTESTATION: &str = "application/vnd.in-toto+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// An image of one random layer, pushed as `repo:tag`; its manifest.
pub fn image(remote: &impl Remote, repo: &str, tag: &str) -> Blob {
    let layer = Blob::new(OCI_LAYER_GZIP, random_bytes(2048));
    let config = Blob::json(OCI_CONFIG, &json!({"architecture": "amd64", "os": "linux"}));
    let manifest = Blob::json(
        OCI_MANIFEST,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": config.descriptor(), "layers": [layer.descriptor()]}),
    );
    push(remote, repo, &[&config, &layer], &manifest, tag);
    manifest
}

/// Pushes `blobs` and `manifest` as `repo:reference`.
fn push(remote: &impl Remote, repo: &str, blobs: &[&Blob], manifest: &Blob, reference: &str) {
    for blob in blobs {
        push_blob(remote, repo, blob);
    }
    let (status, body) = put_manifest(remote, repo, reference, manifest);
    assert_eq!(status, 201, "PUT {repo}:{reference}: {body}");
}

/// An artifact of `artifact_type` about `subject`, pushed by digest; when
/// `fallback`, added to the fallback index as oras and cosign do where a
/// registry has no referrers API. Returns its manifest.
pub fn refer(
    remote: &impl Remote,
    repo: &str,
    subject: &Blob,
    artifact_type: &str,
    fallback: bool,
) -> Blob {
    let empty = Blob::new(EMPTY, b"{}".to_vec());
    let payload = Blob::new("application/octet-stream", random_bytes(300));
    let manifest = Blob::json(
        OCI_MANIFEST,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                "config": empty.descriptor(), "layers": [payload.descriptor()],
                "subject": subject.descriptor(),
                "annotations": {"org.example.note": format!("about {}", subject.digest)}}),
    );
    push(
        remote,
        repo,
        &[&empty, &payload],
        &manifest,
        &manifest.digest,
    );
    if fallback {
        let mut entry = manifest.descriptor();
        entry["artifactType"] = json!(artifact_type);
        add_to_fallback(remote, repo, &subject.digest, entry);
    }
    manifest
}

/// Adds `entry` to the fallback index of `subject` in `repo`.
fn add_to_fallback(remote: &impl Remote, repo: &str, subject: &str, entry: Value) {
    let tag = subject.replacen(':', "-", 1);
    let mut entries: Vec<Value> = manifest_raw(remote, repo, &tag)
        .map(|(_, _, body)| {
            serde_json::from_slice::<Value>(&body).unwrap()["manifests"]
                .as_array()
                .unwrap()
                .clone()
        })
        .unwrap_or_default();
    entries.push(entry);
    let index = Blob::json(
        OCI_INDEX,
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
    );
    let (status, body) = put_manifest(remote, repo, &tag, &index);
    assert_eq!(status, 201, "{body}");
}

/// A cosign-style signature tag `sha256-<hex>.sig` for `subject`.
pub fn cosign_sig(remote: &impl Remote, repo: &str, subject: &Blob) -> Blob {
    let config = Blob::json(OCI_CONFIG, &json!({"architecture": "", "os": ""}));
    let payload = Blob::new(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        random_bytes(200),
    );
    let manifest = Blob::json(
        OCI_MANIFEST,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
                "layers": [payload.descriptor()]}),
    );
    let tag = format!("{}.sig", subject.digest.replacen(':', "-", 1));
    push(remote, repo, &[&config, &payload], &manifest, &tag);
    manifest
}

/// The digests a fallback index `repo:sha256-<subject>` at `remote` lists.
pub fn fallback(remote: &impl Remote, repo: &str, subject: &str) -> Vec<String> {
    let tag = subject.replacen(':', "-", 1);
    let Some((_, _, body)) = manifest_raw(remote, repo, &tag) else {
        return Vec::new();
    };
    let index: Value = serde_json::from_slice(&body).unwrap();
    let mut digests: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect();
    digests.sort();
    digests
}

fn digest_at(remote: &impl Remote, repo: &str, reference: &str) -> Option<String> {
    manifest_raw(remote, repo, reference).map(|(_, digest, _)| digest)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A workspace mirroring `app:1` of `src` into `dst` with `extra` keys.
fn workspace(src: &str, dst: &Registry, extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{src}/app:1")]);
    ws.config(&single(
        dst,
        &format!("    engine: native\n    referrers: true\n{extra}"),
    ));
    ws
}

fn image_report(out: &crate::harness::Outcome) -> Value {
    out.json()["registries"][0]["images"][0].clone()
}

#[test]
fn signatures_attestations_and_sboms_arrive_through_the_fallback_tag() {
    let (src, dst) = (Registry::start(), Registry::start());
    let app = image(&src, "app", "1");
    let sig = refer(&src, "app", &app, SIG, true);
    let sbom = refer(&src, "app", &app, SBOM, true);
    let att = refer(&src, "app", &app, ATTESTATION, true);
    let att_sig = refer(&src, "app", &att, SIG, true);
    let cosign = cosign_sig(&src, "app", &app);
    let foreign = refer(&dst, "mirror/app", &app, SBOM, true);

    let ws = workspace(&src.host, &dst, "");
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(image_report(&out)["referrers"], 5, "{}", out.stdout);
    for m in [&app, &sig, &sbom, &att, &att_sig] {
        assert_eq!(
            digest_at(&dst, "mirror/app", &m.digest).as_ref(),
            Some(&m.digest)
        );
    }
    let tag = format!("{}.sig", app.digest.replacen(':', "-", 1));
    assert_eq!(
        digest_at(&dst, "mirror/app", &tag),
        Some(cosign.digest.clone())
    );
    assert_eq!(
        fallback(&dst, "mirror/app", &app.digest),
        sorted(vec![
            sig.digest.clone(),
            sbom.digest.clone(),
            att.digest.clone(),
            foreign.digest.clone()
        ]),
        "the fallback index holds ours and the one pushed there before"
    );
    assert_eq!(
        fallback(&dst, "mirror/app", &att.digest),
        std::slice::from_ref(&att_sig.digest)
    );

    let before = (src.requests().len(), dst.requests().len());
    let again = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    let noop = image_report(&again);
    assert_eq!(noop["outcome"], "upToDate", "{noop}");
    assert!(noop.get("referrers").is_none(), "nothing copied: {noop}");
    let (src_seen, dst_seen) = (&src.requests()[before.0..], &dst.requests()[before.1..]);
    assert_eq!(dst_seen.len(), 1, "target: one HEAD: {dst_seen:#?}");
    let cosign_head = 1;
    assert_eq!(
        src_seen.len(),
        1 + 3 + cosign_head,
        "source: the image HEAD, the referrers API (404), the fallback HEAD, the tag list, and the .sig HEAD: {src_seen:#?}"
    );

    let new_sig = refer(&src, "app", &app, SIG, true);
    let third = ws.run_without_daemon(&["load", "--all", "--json"]);
    let changed = image_report(&third);
    assert_eq!(changed["outcome"], "upToDate", "{changed}");
    assert_eq!(
        changed["referrers"], 1,
        "the new signature alone: {changed}"
    );
    assert!(fallback(&dst, "mirror/app", &app.digest).contains(&new_sig.digest));
}

#[test]
fn referrer_types_keep_only_the_types_asked_for() {
    let (src, dst) = (Registry::start(), Registry::start());
    let app = image(&src, "app", "1");
    let sig = refer(&src, "app", &app, SIG, true);
    let sbom = refer(&src, "app", &app, SBOM, true);
    let ws = workspace(&src.host, &dst, &format!("    referrerTypes: ['{SIG}']\n"));
    let dry = ws.run_without_daemon(&["load", "--all", "--dry-run"]);
    assert!(
        dry.stdout
            .contains(&format!("with referrer {SIG} {}", sig.digest)),
        "{}",
        dry.stdout
    );
    assert!(!dry.stdout.contains(&sbom.digest), "{}", dry.stdout);
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        digest_at(&dst, "mirror/app", &sig.digest),
        Some(sig.digest.clone())
    );
    assert_eq!(digest_at(&dst, "mirror/app", &sbom.digest), None);
    assert_eq!(
        fallback(&dst, "mirror/app", &app.digest),
        std::slice::from_ref(&sig.digest)
    );
}

#[test]
fn a_registry_with_the_referrers_api_lists_them_at_both_ends() {
    let (src_registry, dst_registry) = (Registry::start(), Registry::start());
    let (src, dst) = (
        ReferrersFront::start(&src_registry),
        ReferrersFront::start(&dst_registry),
    );
    let src_remote = crate::fixtures::ApiRemote(&src.host);
    let app = image(&src_remote, "app", "1");
    let sig = refer(&src_remote, "app", &app, SIG, false);
    let att = refer(&src_remote, "app", &app, ATTESTATION, false);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    syncerScript: sync.sh\n    engine: native\n    referrers: true\n",
        dst.host
    ));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(image_report(&out)["referrers"], 2, "{}", out.stdout);
    assert!(src.listings() >= 1, "the source's referrers API was asked");
    for m in [&sig, &att] {
        assert_eq!(
            digest_at(&dst_registry, "mirror/app", &m.digest),
            Some(m.digest.clone())
        );
    }
    assert!(
        fallback(&dst_registry, "mirror/app", &app.digest).is_empty(),
        "a target with the API gets no fallback tag"
    );
}

#[test]
fn the_docker_engine_refuses_referrers() {
    let dst = Registry::start();
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[]);
    ws.config(&single(&dst, "    referrers: true\n"));
    let out = ws.run_without_daemon(&["check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "registries[0].referrers: works only with engine: native (this registry's engine is docker)"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
}
