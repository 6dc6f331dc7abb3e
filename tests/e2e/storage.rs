//! Registries that serve blobs from storage on another host: Docker Hub,
//! ECR, GAR and ACR answer a blob `GET` with a redirect to a signed URL of
//! their storage. The native engine follows it, and the registry's
//! credentials never go with it.

use std::sync::{Arc, Mutex};

use tiny_http::Method;

use crate::fixtures::assert_complete;
use crate::front::{Front, Reply, Seen, forward};
use crate::harness::{Registry, Workspace, auths, basic};
use crate::native::{native, three_platforms};

/// Whether `seen` is a blob `GET`.
fn blob_get(seen: &Seen) -> bool {
    seen.method == Method::Get && seen.path().contains("/blobs/sha256:")
}

#[test]
fn blobs_served_from_storage_on_another_host_arrive_and_no_credential_follows() {
    let src = Registry::with_auth("puller", "pull-pass-s1");
    let dst = Registry::start();
    let layout = three_platforms(&src, "app", "1");

    // The storage: serves a blob for a signed URL only, and notes whether a
    // request came with an Authorization header.
    let authorized: Arc<Mutex<Vec<bool>>> = Arc::default();
    let noted = Arc::clone(&authorized);
    let upstream = src.host.clone();
    let storage = Front::start(
        &src,
        move |seen| {
            noted
                .lock()
                .unwrap()
                .push(seen.header("Authorization").is_some());
            if !seen.url.ends_with("sig=signed") {
                return Some(Reply::error(403, "DENIED", "not signed"));
            }
            let mut signed = Seen {
                method: seen.method.clone(),
                url: seen.path().to_string(),
                headers: vec![],
                body: vec![],
            };
            signed
                .headers
                .push(("Authorization".into(), basic("puller", "pull-pass-s1")));
            Some(forward(&upstream, &signed))
        },
        |_, _| {},
    );
    // The registry: every blob GET is redirected to the storage.
    let storage_host = storage.host.clone();
    let registry = Front::start(
        &src,
        move |seen| {
            blob_get(seen).then(|| Reply {
                status: 307,
                headers: vec![(
                    "Location".into(),
                    format!("http://{storage_host}{}?sig=signed", seen.path()),
                )],
                body: vec![],
            })
        },
        |_, _| {},
    );

    let ws = Workspace::new();
    ws.secret_file(
        "pull.json",
        &auths(&registry.host, "puller", "pull-pass-s1"),
    );
    ws.list_script("sync.sh", &[format!("{}/app:1", registry.host)]);
    ws.config(&native(&dst, "    pullAuthConfigFile: pull.json\n"));
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_complete(&dst, "mirror/app", &layout);

    let redirected = registry
        .requests()
        .iter()
        .filter(|(m, u, status)| m == "GET" && u.contains("/blobs/") && *status == 307)
        .count();
    assert_eq!(
        redirected,
        layout.blobs().len(),
        "{:#?}",
        registry.requests()
    );
    let seen = authorized.lock().unwrap().clone();
    assert_eq!(seen.len(), layout.blobs().len(), "one storage GET per blob");
    assert!(
        seen.iter().all(|with| !with),
        "credentials went to the storage host: {seen:?}"
    );
}
