//! Registries that do not behave like distribution 2.8, emulated by the
//! suite's front (`front.rs`) in front of a real one, and what an operator
//! sees picture-book do there: a challenge given only at `/v2/` (native,
//! docker and podman engines, `export`), no manifest `HEAD`, a refused index, upload
//! `Location`s that are relative, absolute or on a storage front, refused
//! and half-done mounts, refused single-request and chunked uploads, and a
//! `Range` that lags. Each test proves from the front's log that the
//! fallback was taken, and from the registry that the image arrived with
//! the source's digest.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tiny_http::Method;

use crate::fixtures::layout::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, random_bytes, random_hex};
use crate::fixtures::{
    Blob, Layout, Remote, assert_complete, manifest_raw, push_blob, put_manifest,
};
use crate::front::{Front, Reply, Seen, forward};
use crate::harness::{Outcome, Registry, Workspace, auths, basic, fresh_dir};
use crate::native::three_platforms;

/// A configuration of one registry at `host` (a front), repository
/// `mirror`, script `sync.sh`, with `extra` keys.
fn config(host: &str, extra: &str) -> String {
    format!(
        "registries:\n  - hostname: '{host}'\n    repository: mirror\n    syncerScript: sync.sh\n{extra}"
    )
}

/// The `after` hook of a registry that challenges only at `GET /v2/`: every
/// other 401 loses its `WWW-Authenticate`.
fn challenge_only_at_root(seen: &Seen, reply: &mut Reply) {
    if reply.status == 401 && seen.path() != "/v2/" {
        reply.remove_header("WWW-Authenticate");
    }
}

/// A workspace whose script lists `images` for one registry at `host`,
/// with `extra` keys.
fn listing(images: &[String], host: &str, extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.list_script("sync.sh", images);
    ws.config(&config(host, extra));
    ws
}

/// A front for `upstream` that answers what `answer` answers itself.
fn answering(
    upstream: &Registry,
    answer: impl Fn(&Seen) -> Option<Reply> + Send + Sync + 'static,
) -> Front {
    Front::start(upstream, answer, |_, _| {})
}

/// The one image of a `load --json` report.
fn first_image(out: &Outcome) -> Value {
    out.json()["registries"][0]["images"][0].clone()
}

/// The digest of `repo:tag` at `remote`.
fn digest_at(remote: &impl Remote, repo: &str, tag: &str) -> Option<String> {
    manifest_raw(remote, repo, tag).map(|(_, digest, _)| digest)
}

/// An image of one random layer of `size` bytes, pushed as `repo:tag`;
/// returns its manifest.
fn image(remote: &impl Remote, repo: &str, tag: &str, size: usize) -> Blob {
    let layer = Blob::new(OCI_LAYER_GZIP, random_bytes(size));
    let config = Blob::json(
        OCI_CONFIG,
        &json!({"architecture": "amd64", "os": "linux", "author": random_hex(8)}),
    );
    let manifest = Blob::json(
        OCI_MANIFEST,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": config.descriptor(), "layers": [layer.descriptor()]}),
    );
    push_blob(remote, repo, &config);
    push_blob(remote, repo, &layer);
    let (status, body) = put_manifest(remote, repo, tag, &manifest);
    assert_eq!(status, 201, "PUT {repo}:{tag}: {body}");
    manifest
}

/// The requests of the front since `from`: (method, URL, status).
fn since(front: &Front, from: usize) -> Vec<(String, String, u16)> {
    front.requests()[from..].to_vec()
}

/// How many of `requests` are `method` on a URL containing `part`,
/// answered `status` (any status when None).
fn count(
    requests: &[(String, String, u16)],
    method: &str,
    part: &str,
    status: Option<u16>,
) -> usize {
    requests
        .iter()
        .filter(|(m, u, s)| m == method && u.contains(part) && status.is_none_or(|x| x == *s))
        .count()
}

/// A 401 without challenge at a path other than `/v2/`, then `GET /v2/`
/// answered 401 (where the challenge was learnt): what `requests` must show.
fn assert_learnt_at_root(requests: &[(String, String, u16)]) {
    let first = requests
        .iter()
        .position(|(_, u, s)| *s == 401 && u != "/v2/")
        .unwrap_or_else(|| panic!("a refused request: {requests:#?}"));
    assert!(
        requests[first..]
            .iter()
            .any(|(m, u, s)| m == "GET" && u == "/v2/" && *s == 401),
        "the challenge was asked for at /v2/: {requests:#?}"
    );
}

#[test]
fn a_challenge_given_only_at_v2_is_learnt_there_by_the_native_engine() {
    let src = Registry::start();
    let layout = three_platforms(&src, "app", "1");
    let dst = Registry::with_auth("pusher", "push-pass-q1");
    let front = Front::start(&dst, |_| None, challenge_only_at_root);
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    engine: native\n    pushAuthConfigFile: push.json\n",
    );
    ws.secret_file("push.json", &auths(&front.host, "pusher", "push-pass-q1"));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        digest_at(&dst, "mirror/app", "1"),
        Some(layout.top.digest.clone())
    );
    assert_complete(&dst, "mirror/app", &layout);
    assert_learnt_at_root(&front.requests());

    let before = front.requests().len();
    let again = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    let noop = &first_image(&again);
    assert_eq!(noop["outcome"], "upToDate", "{noop}");
    let refused = count(&since(&front, before), "HEAD", "/", Some(401));
    assert_eq!(refused, 0, "the remembered challenge is answered at once");
}

#[test]
fn a_registry_that_gives_no_challenge_at_all_fails_without_asking_in_a_loop() {
    let src = Registry::start();
    image(&src, "app", "1", 2048);
    let dst = Registry::with_auth("pusher", "push-pass-q6");
    let front = Front::start(
        &dst,
        |_| None,
        |_, reply| {
            reply.remove_header("WWW-Authenticate");
        },
    );
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    engine: native\n    pushAuthConfigFile: push.json\n",
    );
    ws.secret_file("push.json", &auths(&front.host, "pusher", "push-pass-q6"));
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("(401)"), "{out:?}");
    let seen: Vec<(String, String, u16)> = front.requests();
    let once = |m: &str, u: &str| (m.to_string(), u.to_string(), 401);
    assert_eq!(
        seen,
        [
            once("HEAD", "/v2/mirror/app/manifests/1"),
            once("GET", "/v2/")
        ],
        "the refusal, one question at /v2/, and no more"
    );
}

#[test]
fn a_challenge_given_only_at_v2_does_not_stop_the_docker_engine() {
    let src = Registry::start();
    let id = src.push_image("app", "1", 2);
    let dst = Registry::with_auth("pusher", "push-pass-q2");
    let front = Front::start(&dst, |_| None, challenge_only_at_root);
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    pushAuthConfigFile: push.json\n",
    );
    ws.secret_file("push.json", &auths(&front.host, "pusher", "push-pass-q2"));
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
    assert_learnt_at_root(&front.requests());
}

#[test]
fn a_challenge_given_only_at_v2_does_not_stop_the_podman_engine() {
    let src = Registry::start();
    let id = src.push_image("app", "1", 1);
    let dst = Registry::with_auth("pusher", "push-pass-q5");
    let front = Front::start(&dst, |_| None, challenge_only_at_root);
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    engine: podman\n    pushAuthConfigFile: push.json\n",
    );
    ws.secret_file("push.json", &auths(&front.host, "pusher", "push-pass-q5"));
    let out = crate::podman::run(&ws).args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
    assert_learnt_at_root(&front.requests());
}

#[test]
fn a_source_that_challenges_only_at_v2_is_copied_and_exported() {
    let upstream = Registry::with_auth("puller", "pull-pass-q3");
    let front = Front::start(&upstream, |_| None, challenge_only_at_root);
    let layout = three_platforms(&upstream, "app", "1");
    let dst = Registry::start();
    let ws = listing(
        &[format!("{}/app:1", front.host)],
        &dst.host,
        "    engine: native\n    pullAuthConfigFile: pull.json\n",
    );
    ws.secret_file("pull.json", &auths(&front.host, "puller", "pull-pass-q3"));
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        digest_at(&dst, "mirror/app", "1"),
        Some(layout.top.digest.clone())
    );
    assert_learnt_at_root(&front.requests());

    let medium = fresh_dir("quirks").join("layout");
    let out = ws.run_without_daemon(&["export", "--all", medium.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let index = std::fs::read_to_string(medium.join("index.json")).unwrap();
    assert!(index.contains(&layout.top.digest), "{index}");
}

#[test]
fn a_registry_without_manifest_head_is_asked_with_get_once_it_said_405() {
    let src = Registry::start();
    let layout = three_platforms(&src, "app", "1");
    let dst = Registry::start();
    let front = answering(&dst, |seen| {
        (seen.method == Method::Head && seen.url.contains("/manifests/"))
            .then(|| Reply::error(405, "UNSUPPORTED", "no HEAD here"))
    });
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    engine: native\n",
    );
    for (run, outcome) in [(1, "mirrored"), (2, "upToDate")] {
        let before = front.requests().len();
        let out = ws.run_without_daemon(&["load", "--all", "--json"]);
        assert_eq!(out.code, 0, "run {run}: {out:?}");
        let image = &first_image(&out);
        assert_eq!(image["outcome"], outcome, "run {run}: {image}");
        let seen = since(&front, before);
        assert_eq!(
            count(&seen, "HEAD", "/manifests/", None),
            1,
            "run {run}: one HEAD, then GETs: {seen:#?}"
        );
        assert!(count(&seen, "GET", "/v2/mirror/app/manifests/1", None) >= 1);
    }
    assert_eq!(digest_at(&dst, "mirror/app", "1"), Some(layout.top.digest));
}

#[test]
fn a_head_404_where_get_finds_the_manifest_is_asked_with_get() {
    let src = Registry::start();
    let layout = three_platforms(&src, "app", "1");
    let dst = Registry::start();
    let front = answering(&dst, |seen| {
        (seen.method == Method::Head && seen.url.contains("/manifests/"))
            .then(|| Reply::error(404, "MANIFEST_UNKNOWN", "HEAD finds nothing here"))
    });
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    engine: native\n",
    );
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(digest_at(&dst, "mirror/app", "1"), Some(layout.top.digest));

    let before = front.requests().len();
    let again = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    let image = &first_image(&again);
    assert_eq!(image["outcome"], "upToDate", "{image}");
    let seen = since(&front, before);
    assert_eq!(count(&seen, "HEAD", "/manifests/", None), 1, "{seen:#?}");
    assert_eq!(
        count(&seen, "GET", "/manifests/1", Some(200)),
        1,
        "{seen:#?}"
    );
}

#[test]
fn a_refused_index_is_named_and_one_platform_is_pushed_alone() {
    let src = Registry::start();
    let layout: Layout = three_platforms(&src, "app", "1");
    let dst = Registry::start();
    let front = answering(&dst, |seen| {
        let index = seen
            .header("Content-Type")
            .is_some_and(|t| t.contains("index") || t.contains("manifest.list"));
        (seen.method == Method::Put && seen.url.contains("/manifests/") && index)
            .then(|| Reply::error(400, "MANIFEST_INVALID", "manifest invalid"))
    });
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    engine: native\n",
    );
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 1, "{out:?}");
    let told = out.all();
    assert!(
        told.contains("refused the media type application/vnd.oci.image.index.v1+json"),
        "{told}"
    );
    assert!(told.contains("`platforms` to one platform"), "{told}");
    assert_eq!(digest_at(&dst, "mirror/app", "1"), None);

    ws.config(&config(
        &front.host,
        "    engine: native\n    platforms: [linux/arm64]\n",
    ));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let arm64 = &layout.image("arm64").manifest;
    assert_eq!(
        digest_at(&dst, "mirror/app", "1"),
        Some(arm64.digest.clone())
    );
    let again = ws.run_without_daemon(&["load", "--all", "--json"]);
    let image = &first_image(&again);
    assert_eq!(image["outcome"], "upToDate", "{image}");
}

#[test]
fn upload_locations_relative_absolute_and_on_a_storage_front_all_work() {
    let src = Registry::start();
    let images: Vec<(&str, Blob)> = ["rel", "abs", "away"]
        .into_iter()
        .map(|repo| (repo, image(&src, repo, "1", 4096)))
        .collect();
    let dst = Registry::with_auth("pusher", "push-pass-q4");
    let authorized: Arc<Mutex<Vec<bool>>> = Arc::default();
    let (seen_auth, upstream) = (Arc::clone(&authorized), dst.host.clone());
    let storage = answering(&dst, move |seen| {
        seen_auth
            .lock()
            .unwrap()
            .push(seen.header("Authorization").is_some());
        // A signed URL: the storage front needs no credentials of ours.
        let mut headers = seen.headers.clone();
        headers.push(("Authorization".into(), basic("pusher", "push-pass-q4")));
        let signed = Seen {
            method: seen.method.clone(),
            url: seen.url.clone(),
            headers,
            body: seen.body.clone(),
        };
        Some(forward(&upstream, &signed))
    });
    let storage_host = storage.host.clone();
    let front_host: Arc<Mutex<String>> = Arc::default();
    let own = Arc::clone(&front_host);
    let front = Front::start(
        &dst,
        |_| None,
        move |seen, reply| {
            let Some(location) = reply.header("Location").map(String::from) else {
                return;
            };
            if seen.method != Method::Post || reply.status != 202 {
                return;
            }
            let moved = if seen.url.starts_with("/v2/mirror/rel/") {
                location.rsplit_once("/uploads/").unwrap().1.to_string()
            } else if seen.url.starts_with("/v2/mirror/abs/") {
                format!("http://{}{location}", own.lock().unwrap())
            } else {
                format!("http://{storage_host}{location}")
            };
            reply.set_header("Location", &moved);
        },
    );
    *front_host.lock().unwrap() = front.host.clone();
    let refs: Vec<String> = images
        .iter()
        .map(|(repo, _)| format!("{}/{repo}:1", src.host))
        .collect();
    let ws = listing(
        &refs,
        &front.host,
        "    engine: native\n    pushAuthConfigFile: push.json\n",
    );
    ws.secret_file("push.json", &auths(&front.host, "pusher", "push-pass-q4"));
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    for (repo, manifest) in &images {
        let at = digest_at(&dst, &format!("mirror/{repo}"), "1");
        assert_eq!(at, Some(manifest.digest.clone()), "{repo}");
    }
    let at_storage = storage.requests();
    assert_eq!(
        count(
            &at_storage,
            "PUT",
            "/v2/mirror/away/blobs/uploads/",
            Some(201)
        ),
        2
    );
    assert!(
        authorized.lock().unwrap().iter().all(|a| !a),
        "no credentials reach the storage front: {at_storage:#?}"
    );
    let at_front = front.requests();
    assert_eq!(
        count(&at_front, "PUT", "/v2/mirror/away/blobs/uploads/", None),
        0
    );
    for repo in ["rel", "abs"] {
        let puts = count(
            &at_front,
            "PUT",
            &format!("/v2/mirror/{repo}/blobs/uploads/"),
            Some(201),
        );
        assert_eq!(puts, 2, "{repo}: {at_front:#?}");
    }
}

#[test]
fn a_mount_refused_with_401_is_uploaded_and_one_answered_202_is_uploaded_there() {
    let src = Registry::start();
    let layout = three_platforms(&src, "one", "1");
    for repo in ["two", "three"] {
        crate::fixtures::push_layout(&layout, &src, repo, "1");
    }
    let dst = Registry::start();
    let upstream = dst.host.clone();
    let front = answering(&dst, move |seen| {
        if !seen.url.contains("?mount=") {
            return None;
        }
        if seen.url.starts_with("/v2/mirror/two/") {
            return Some(Reply::error(401, "UNAUTHORIZED", "authentication required"));
        }
        let plain = Seen {
            method: seen.method.clone(),
            url: seen.url.split('?').next().unwrap().to_string(),
            headers: seen.headers.clone(),
            body: Vec::new(),
        };
        Some(forward(&upstream, &plain))
    });
    let refs: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|r| format!("{}/{r}:1", src.host))
        .collect();
    let ws = listing(&refs, &front.host, "    engine: native\n    parallel: 1\n");
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    for repo in ["one", "two", "three"] {
        assert_complete(&dst, &format!("mirror/{repo}"), &layout);
    }
    let blobs = layout.blobs().len();
    let seen = front.requests();
    // The probe that a repository takes uploads (see create_repository.rs)
    // opens one: in `two` it carries the first blob; in `three`, where
    // each mount opened an upload of its own, it is cancelled at the end.
    let probe = 1;
    assert_eq!(
        count(
            &seen,
            "POST",
            "/v2/mirror/two/blobs/uploads/?mount=",
            Some(401)
        ),
        blobs
    );
    assert_eq!(
        count(&seen, "POST", "/v2/mirror/two/blobs/uploads/", Some(202)),
        blobs
    );
    assert_eq!(
        count(
            &seen,
            "POST",
            "/v2/mirror/three/blobs/uploads/?mount=",
            Some(202)
        ),
        blobs
    );
    assert_eq!(
        count(&seen, "POST", "/v2/mirror/three/blobs/uploads/", None),
        blobs + probe,
        "no upload opened after a mount answered 202"
    );
    assert_eq!(
        count(&seen, "PUT", "/v2/mirror/three/blobs/uploads/", Some(201)),
        blobs
    );
    for (repo, cancelled) in [("two", 0), ("three", probe)] {
        let prefix = format!("/v2/mirror/{repo}/blobs/uploads/");
        assert_eq!(count(&seen, "DELETE", &prefix, None), cancelled, "{repo}");
        assert_eq!(
            count(&seen, "HEAD", &format!("/v2/mirror/{repo}/blobs/"), None),
            blobs,
            "{repo}: a HEAD of each blob once its mount did not do: {seen:#?}"
        );
    }
}

#[test]
fn a_registry_that_refuses_single_request_uploads_gets_chunks() {
    let src = Registry::start();
    let manifest = image(&src, "app", "1", 300_000);
    let dst = Registry::start();
    let front = answering(&dst, |seen| {
        (seen.method == Method::Put
            && seen.url.contains("/blobs/uploads/")
            && !seen.body.is_empty())
        .then(|| Reply::error(405, "UNSUPPORTED", "one request is not enough"))
    });
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    engine: native\n    parallel: 1\n",
    );
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(digest_at(&dst, "mirror/app", "1"), Some(manifest.digest));
    let seen = front.requests();
    assert_eq!(
        count(&seen, "PUT", "/blobs/uploads/", Some(405)),
        1,
        "{seen:#?}"
    );
    assert_eq!(
        count(&seen, "PATCH", "/blobs/uploads/", Some(202)),
        2,
        "{seen:#?}"
    );
    assert_eq!(
        count(&seen, "PUT", "/blobs/uploads/", Some(201)),
        2,
        "{seen:#?}"
    );
}

#[test]
fn a_registry_that_refuses_chunks_gets_single_requests() {
    let src = Registry::start();
    let manifest = image(&src, "app", "1", 300_000);
    let dst = Registry::start();
    let front = answering(&dst, |seen| {
        (seen.method == Method::Patch)
            .then(|| Reply::error(405, "UNSUPPORTED", "single requests only"))
    });
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    engine: native\n    parallel: 1\n    chunkSize: 64KiB\n",
    );
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(digest_at(&dst, "mirror/app", "1"), Some(manifest.digest));
    let seen = front.requests();
    assert_eq!(
        count(&seen, "PATCH", "/", None),
        1,
        "one refusal: {seen:#?}"
    );
    assert_eq!(
        count(&seen, "PUT", "/blobs/uploads/", Some(201)),
        2,
        "{seen:#?}"
    );
}

#[test]
fn a_chunk_range_that_lags_does_not_stop_the_upload() {
    let src = Registry::start();
    let manifest = image(&src, "app", "1", 300_000);
    let dst = Registry::start();
    let front = Front::start(
        &dst,
        |_| None,
        |seen, reply| {
            if seen.method == Method::Patch && reply.status == 202 {
                reply.set_header("Range", "0-65535");
            }
        },
    );
    let ws = listing(
        &[format!("{}/app:1", src.host)],
        &front.host,
        "    engine: native\n    chunkSize: 64KiB\n",
    );
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(digest_at(&dst, "mirror/app", "1"), Some(manifest.digest));
    let patches = count(&front.requests(), "PATCH", "/blobs/uploads/", Some(202));
    assert_eq!(
        patches,
        300_000usize.div_ceil(65536) + 1,
        "every chunk sent once"
    );
}
