//! A registry with the OCI 1.1 referrers API, for the tests: no package of
//! this machine's registries ships one (the distribution registry 2.8 has
//! none), so this is a small front for a real registry. It passes every
//! request on, and for a manifest PUT whose body has a `subject` it keeps
//! the manifest's descriptor and answers with `OCI-Subject`, as a registry
//! with the API does; `GET /v2/<name>/referrers/<digest>` is answered from
//! what it kept. What it stores is the registry's behind it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tiny_http::Method;

use crate::fixtures::sha256;
use crate::front::{Front, Reply, Seen};
use crate::harness::Registry;

/// The running front.
pub struct ReferrersFront {
    /// `127.0.0.1:PORT`.
    pub host: String,
    front: Front,
}

type Kept = Arc<Mutex<HashMap<(String, String), Vec<Value>>>>;

impl ReferrersFront {
    /// A front with the referrers API for `upstream`.
    pub fn start(upstream: &Registry) -> ReferrersFront {
        let kept: Kept = Arc::default();
        let listed = Arc::clone(&kept);
        let front = Front::start(
            upstream,
            move |seen| listing(seen, &listed),
            move |seen, reply| keep(seen, reply, &kept),
        );
        ReferrersFront {
            host: front.host.clone(),
            front,
        }
    }

    /// How many referrers listings it answered so far.
    pub fn listings(&self) -> usize {
        self.front
            .requests()
            .iter()
            .filter(|(_, url, _)| referrers_path(url).is_some())
            .count()
    }
}

/// The answer to a referrers listing, from what was kept.
fn listing(seen: &Seen, kept: &Kept) -> Option<Reply> {
    let (name, digest) = referrers_path(&seen.url)?;
    let list = kept
        .lock()
        .unwrap()
        .get(&(name, digest))
        .cloned()
        .unwrap_or_default();
    let body = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": list});
    Some(Reply {
        status: 200,
        headers: vec![(
            "Content-Type".into(),
            "application/vnd.oci.image.index.v1+json".into(),
        )],
        body: body.to_string().into_bytes(),
    })
}

/// Keeps the descriptor of a manifest stored with a subject, and answers
/// with `OCI-Subject` as a registry with the API does.
fn keep(seen: &Seen, reply: &mut Reply, kept: &Kept) {
    let subject = manifest_subject(&seen.method, &seen.url, &seen.body);
    if let Some((name, subject, descriptor)) = subject.filter(|_| reply.status == 201) {
        kept.lock()
            .unwrap()
            .entry((name, subject.clone()))
            .or_default()
            .push(descriptor);
        reply.set_header("OCI-Subject", &subject);
    }
}

/// `(name, digest)` of a `/v2/<name>/referrers/<digest>` URL.
fn referrers_path(url: &str) -> Option<(String, String)> {
    let path = url.split('?').next()?.strip_prefix("/v2/")?;
    let (name, digest) = path.rsplit_once("/referrers/")?;
    Some((name.to_string(), digest.to_string()))
}

/// For a manifest PUT whose body has a subject: the repository, the
/// subject's digest and the descriptor the listing gives.
fn manifest_subject(method: &Method, url: &str, body: &[u8]) -> Option<(String, String, Value)> {
    if *method != Method::Put {
        return None;
    }
    let path = url.split('?').next()?.strip_prefix("/v2/")?;
    let (name, _) = path.rsplit_once("/manifests/")?;
    let m: Value = serde_json::from_slice(body).ok()?;
    let subject = m["subject"]["digest"].as_str()?.to_string();
    let artifact_type = m["artifactType"]
        .as_str()
        .or_else(|| m["config"]["mediaType"].as_str())
        .unwrap_or_default();
    let mut descriptor = json!({
        "mediaType": m["mediaType"],
        "digest": sha256(body),
        "size": body.len(),
        "artifactType": artifact_type,
    });
    if m["annotations"].is_object() {
        descriptor["annotations"] = m["annotations"].clone();
    }
    Some((name.to_string(), subject, descriptor))
}
