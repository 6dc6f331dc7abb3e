//! A registry with the OCI 1.1 referrers API, for the tests: no package of
//! this machine's registries ships one (the distribution registry 2.8 has
//! none), so this is a small front for a real registry. It passes every
//! request on, and for a manifest PUT whose body has a `subject` it keeps
//! the manifest's descriptor and answers with `OCI-Subject`, as a registry
//! with the API does; `GET /v2/<name>/referrers/<digest>` is answered from
//! what it kept. What it stores is the registry's behind it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::fixtures::sha256;
use crate::harness::{Registry, listen};

/// The running front.
pub struct ReferrersFront {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// How many referrers listings it answered.
    listings: Arc<Mutex<usize>>,
}

type Kept = Arc<Mutex<HashMap<(String, String), Vec<Value>>>>;

impl ReferrersFront {
    /// A front with the referrers API for `upstream`.
    pub fn start(upstream: &Registry) -> ReferrersFront {
        let server = Server::from_listener(listen(), None).unwrap();
        let host = format!("127.0.0.1:{}", server.server_addr().to_ip().unwrap().port());
        let kept: Kept = Arc::default();
        let listings = Arc::new(Mutex::new(0));
        let counter = Arc::clone(&listings);
        let upstream = upstream.host.clone();
        thread::spawn(move || {
            for request in server.incoming_requests() {
                let (kept, counter, upstream) =
                    (Arc::clone(&kept), Arc::clone(&counter), upstream.clone());
                thread::spawn(move || serve(request, &upstream, &kept, &counter));
            }
        });
        ReferrersFront { host, listings }
    }

    /// How many referrers listings it answered so far.
    pub fn listings(&self) -> usize {
        *self.listings.lock().unwrap()
    }
}

fn serve(mut request: Request, upstream: &str, kept: &Kept, listings: &Mutex<usize>) {
    let url = request.url().to_string();
    if let Some((name, digest)) = referrers_path(&url) {
        *listings.lock().unwrap() += 1;
        let list = kept
            .lock()
            .unwrap()
            .get(&(name, digest))
            .cloned()
            .unwrap_or_default();
        let body = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": list});
        let response = Response::from_data(body.to_string()).with_header(
            Header::from_bytes("Content-Type", "application/vnd.oci.image.index.v1+json").unwrap(),
        );
        let _ = request.respond(response);
        return;
    }
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let subject = manifest_subject(request.method(), &url, &body);
    let mut response = forward(upstream, &request, &body);
    if let Some((name, subject, descriptor)) = subject.filter(|_| response.status_code().0 == 201) {
        kept.lock()
            .unwrap()
            .entry((name, subject.clone()))
            .or_default()
            .push(descriptor);
        response.add_header(Header::from_bytes("OCI-Subject", subject).unwrap());
    }
    let _ = request.respond(response);
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

/// Passes `request` (with `body`) to the registry and returns its answer,
/// upload `Location`s pointed back at the front.
fn forward(upstream: &str, request: &Request, body: &[u8]) -> Response<std::io::Cursor<Vec<u8>>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(request.method().as_str())
        .uri(format!("http://{upstream}{}", request.url()));
    for h in request.headers() {
        let name = h.field.as_str().as_str();
        if [
            "content-type",
            "accept",
            "authorization",
            "range",
            "content-range",
        ]
        .contains(&name.to_ascii_lowercase().as_str())
        {
            builder = builder.header(name, h.value.as_str());
        }
    }
    let sent = builder
        .header("Content-Length", body.len())
        .body(body.to_vec())
        .map_err(ureq::Error::from)
        .and_then(|r| agent.run(r));
    let mut resp = match sent {
        Ok(r) => r,
        Err(_) => return Response::from_data(Vec::new()).with_status_code(502),
    };
    let status = resp.status().as_u16();
    let mut headers = Vec::new();
    for (name, value) in resp.headers() {
        let name = name.as_str();
        if ["content-length", "transfer-encoding", "connection"].contains(&name) {
            continue;
        }
        let value = value
            .to_str()
            .unwrap_or_default()
            .replace(&format!("http://{upstream}"), "");
        headers.push((name.to_string(), value));
    }
    let bytes = if request.method() == &Method::Head {
        Vec::new()
    } else {
        resp.body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .unwrap_or_default()
    };
    let mut response = Response::from_data(bytes).with_status_code(status);
    for (name, value) in headers {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    response
}
