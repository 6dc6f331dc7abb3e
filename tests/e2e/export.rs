//! Air-gapped transfers as an operator makes them: `export` on the
//! connected side writes what a registry's syncer script lists into an OCI
//! image layout (a directory, or one tar archive), and `load --from` on the
//! disconnected side pushes it into a registry under another name, digests
//! unchanged. skopeo reads what picture-book writes and picture-book what
//! skopeo writes. A second export adds only the new blobs. An archive cut
//! short, a flipped byte, a missing blob and a full disk each fail what
//! they touch, by name, and nothing else.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::fixtures::layout::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::fixtures::{self, Blob, Layout, Remote, assert_complete, manifest_raw};
use crate::harness::{Registry, Workspace, fresh_dir};
use crate::native::three_platforms;
use crate::referrers;

/// The name the connected side plans its targets under: a registry it
/// cannot reach, which an export never asks.
const SITE: &str = "registry.site.example";

/// A workspace on the connected side: the registry `SITE` (engine docker,
/// the default: an export is native whatever the engine) listing `images`.
fn connected(images: &[String], extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.list_script("sync.sh", images);
    ws.config(&format!(
        "registries:\n  - hostname: {SITE}\n    repository: mirror\n    syncerScript: sync.sh\n{extra}"
    ));
    ws
}

/// A workspace on the disconnected side: `dst` under the prefix `prefix`,
/// its syncer script one that must not run.
fn disconnected(dst: &Registry, prefix: &str, extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.script("sync.sh", "echo the syncer script ran >&2; exit 1");
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: {prefix}\n    syncerScript: sync.sh\n{extra}",
        dst.host
    ));
    ws
}

/// Runs picture-book in `ws` with `args` and `--json`, no docker daemon.
fn json_run(ws: &Workspace, args: &[&str]) -> (i32, Value, String) {
    let out = ws
        .run()
        .without_daemon()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(args)
        .args(["--json"])
        .run();
    let all = out.all();
    let json = if out.stdout.trim().is_empty() {
        Value::Null
    } else {
        out.json()
    };
    (out.code, json, all)
}

/// The images of a report, by source as listed.
fn images(report: &Value) -> Vec<Value> {
    report["registries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["images"].as_array().unwrap().clone())
        .collect()
}

/// The image whose source contains `needle`.
fn image(report: &Value, needle: &str) -> Value {
    images(report)
        .into_iter()
        .find(|i| i["source"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no {needle} in {report:#}"))
}

/// The error of the image whose source contains `needle`.
fn error_of(report: &Value, needle: &str) -> String {
    let failed = image(report, needle);
    assert_eq!(failed["outcome"], "failed", "{failed}");
    failed["error"].as_str().unwrap().to_string()
}

/// The files under `dir`, relative, without directories.
fn files(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                found.insert(rel.display().to_string());
            }
        }
    }
    found
}

/// `blobs/sha256/<hex>` of a digest.
fn blob_file(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// The entries of the layout's `index.json`.
fn index_entries(dir: &Path) -> Vec<Value> {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array().unwrap().clone()
}

/// The `org.opencontainers.image.ref.name` of every entry of the layout's
/// `index.json`.
fn ref_names(dir: &Path) -> BTreeSet<String> {
    index_entries(dir)
        .iter()
        .map(|e| {
            e["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn digest_at(remote: &impl Remote, repo: &str, reference: &str) -> Option<String> {
    manifest_raw(remote, repo, reference).map(|(_, digest, _)| digest)
}

/// Panics unless skopeo (`copy --all --preserve-digests`) copies
/// `SITE/mirror/NAME` of the layout `layout` (`oci:DIR` or `oci-archive:FILE`)
/// to a registry as `top`: its digest and its media type.
fn skopeo_reads(layout: &str, name: &str, top: &Blob) {
    let check = Registry::start();
    let copied = fixtures::skopeo_copy(
        &check,
        &format!("{layout}:{SITE}/mirror/{name}"),
        &format!("docker://{}/verify/{name}", check.host),
    );
    assert!(copied.status.success(), "skopeo reads {layout}: {copied:?}");
    let (repo, tag) = name.rsplit_once(':').unwrap();
    let (media_type, digest, _) = manifest_raw(&check, &format!("verify/{repo}"), tag).unwrap();
    assert_eq!(
        (media_type, digest),
        (top.media_type.clone(), top.digest.clone())
    );
}

/// A Helm chart at `src` as `repo:tag`.
fn chart(src: &Registry, repo: &str, tag: &str) -> Layout {
    let chart = fixtures::artifact(&fresh_dir("chart"), tag);
    fixtures::push_layout(&chart, src, repo, tag);
    chart
}

#[test]
fn an_export_loads_under_another_name_with_the_sources_digests() {
    let (mut src, dst) = (Registry::start(), Registry::start());
    let app = three_platforms(&src, "app", "1");
    src.push_image("built", "1", 2);
    let built = src.manifest_digest("built", "1").unwrap();
    let helm = chart(&src, "charts/web", "0.1.0");
    let sources = [
        format!("{}/app:1", src.host),
        format!("{}/built:1", src.host),
        format!("{}/charts/web:0.1.0", src.host),
    ];
    let medium = fresh_dir("medium").join("site");
    let ws = connected(&sources, "");
    let (code, report, all) = json_run(
        &ws,
        &["export", "--registry", SITE, medium.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{all}");
    assert_eq!(report["registries"][0]["mirrored"], 3, "{report:#}");
    assert!(
        all.contains(&format!(
            "exported {}/app:1 → {SITE}/mirror/app:1",
            src.host
        )),
        "{all}"
    );
    let on_disk: u64 = files(&medium.join("blobs/sha256"))
        .iter()
        .map(|f| {
            fs::metadata(medium.join("blobs/sha256").join(f))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(report["export"]["bytesWritten"], on_disk, "{report:#}");
    assert!(medium.join("oci-layout").is_file());
    let names = ref_names(&medium);
    let planned: BTreeSet<String> = [
        format!("{SITE}/mirror/app:1"),
        format!("{SITE}/mirror/built:1"),
        format!("{SITE}/mirror/charts/web:0.1.0"),
    ]
    .into();
    assert_eq!(names, planned, "index.json names the planned targets");

    // skopeo accepts the layout as it is.
    skopeo_reads(&format!("oci:{}", medium.display()), "app:1", &app.top);

    // The disconnected side has no way to the sources.
    src.stop();
    let site = disconnected(&dst, "edge", "");
    let from = [
        "load",
        "--registry",
        &dst.host,
        "--from",
        medium.to_str().unwrap(),
    ];
    let (code, report, all) = json_run(&site, &from);
    assert_eq!(code, 0, "{all}");
    assert_eq!(report["from"], medium.display().to_string());
    assert_eq!(
        digest_at(&dst, "edge/app", "1"),
        Some(app.top.digest.clone())
    );
    assert_complete(&dst, "edge/app", &app);
    assert_eq!(digest_at(&dst, "edge/built", "1"), Some(built));
    assert_eq!(
        digest_at(&dst, "edge/charts/web", "0.1.0"),
        Some(helm.top.digest.clone())
    );
    assert_complete(&dst, "edge/charts/web", &helm);
    assert!(!all.contains("the syncer script ran"), "{all}");

    let before = dst.requests().len();
    let (code, again, all) = json_run(&site, &from);
    assert_eq!(code, 0, "{all}");
    for i in images(&again) {
        assert_eq!(i["outcome"], "upToDate", "{i}");
    }
    let seen = &dst.requests()[before..];
    let heads = seen.iter().filter(|(m, _, _)| m == "HEAD").count();
    assert_eq!((heads, seen.len()), (3, 3), "one HEAD per image: {seen:#?}");
}

#[test]
fn layouts_that_skopeo_wrote_load_as_directory_and_archive() {
    let (src, dst) = (Registry::start(), Registry::start());
    let app = three_platforms(&src, "team/app", "2");
    let dir = fresh_dir("skopeo-layout").join("oci");
    let archive = fresh_dir("skopeo-archive").join("app.tar");
    for dest in [
        format!("oci:{}:team/app:2", dir.display()),
        format!("oci-archive:{}:team/app:2", archive.display()),
    ] {
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--all",
                "-q",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{}/team/app:2", src.host))
            .arg(&dest)
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy to {dest}: {out:?}");
    }
    for (path, prefix) in [(&dir, "edge"), (&archive, "tar")] {
        let site = disconnected(&dst, prefix, "");
        let (code, report, all) =
            json_run(&site, &["load", "--all", "--from", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{all}");
        let repo = format!("{prefix}/team/app");
        assert_eq!(
            digest_at(&dst, &repo, "2"),
            Some(app.top.digest.clone()),
            "{report:#}"
        );
        assert_complete(&dst, &repo, &app);
    }
}

#[test]
fn a_second_export_writes_only_the_new_blobs() {
    let src = Registry::start();
    let app = three_platforms(&src, "app", "1");
    let medium = fresh_dir("incremental").join("layout");
    let dir = medium.to_str().unwrap();
    let ws = connected(&[format!("{}/app:1", src.host)], "");
    let (code, _, all) = json_run(&ws, &["export", "--all", dir]);
    assert_eq!(code, 0, "{all}");
    let first = files(&medium);

    let helm = chart(&src, "chart", "1");
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/app:1", src.host),
            format!("{}/chart:1", src.host),
        ],
    );
    let (code, report, all) = json_run(&ws, &["export", "--all", dir]);
    assert_eq!(code, 0, "{all}");
    let second = files(&medium);
    let added: BTreeSet<String> = second.difference(&first).cloned().collect();
    let helm_files: BTreeSet<String> = helm
        .manifests()
        .into_iter()
        .chain(helm.blobs())
        .map(|b| blob_file(&b.digest))
        .collect();
    assert_eq!(added, helm_files, "only the chart's blobs are new");
    assert!(first.is_subset(&second));
    let helm_bytes: u64 = helm
        .manifests()
        .into_iter()
        .chain(helm.blobs())
        .map(|b| b.size)
        .sum();
    assert_eq!(report["export"]["bytesWritten"], helm_bytes, "{report:#}");
    let app_report = image(&report, "app:1");
    assert_eq!(
        app_report["blobsPresent"],
        app.blobs().len(),
        "{app_report}"
    );
    assert_eq!(app_report["blobsCopied"], 0, "{app_report}");
    assert_eq!(index_entries(&medium).len(), 2);

    let index = fs::read(medium.join("index.json")).unwrap();
    let (code, report, all) = json_run(&ws, &["export", "--all", dir]);
    assert_eq!(code, 0, "{all}");
    assert_eq!(report["export"]["bytesWritten"], 0, "{report:#}");
    assert_eq!(files(&medium), second);
    assert_eq!(fs::read(medium.join("index.json")).unwrap(), index);

    // An image that cannot be exported this time keeps its earlier entry.
    src.delete("chart", "1");
    let (code, report, all) = json_run(&ws, &["export", "--all", dir]);
    assert_eq!(code, 1, "{all}");
    assert!(
        error_of(&report, "chart:1").contains("not at the source"),
        "{report:#}"
    );
    assert_eq!(fs::read(medium.join("index.json")).unwrap(), index);
}

#[test]
fn a_dry_run_writes_nothing_and_says_what_is_missing() {
    let (src, dst) = (Registry::start(), Registry::start());
    let app = three_platforms(&src, "app", "1");
    let medium = fresh_dir("dry").join("layout");
    let ws = connected(&[format!("{}/app:1", src.host)], "");
    let out = ws.run_without_daemon(&["export", "--all", "--dry-run", medium.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!medium.exists(), "a dry run made {}", medium.display());
    let blobs = app.blobs().len();
    assert!(
        out.stdout.contains(&format!("{blobs} blobs"))
            && out.stdout.contains("missing in the layout"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("1 to export"), "{}", out.stdout);

    let (code, _, all) = json_run(&ws, &["export", "--all", medium.to_str().unwrap()]);
    assert_eq!(code, 0, "{all}");
    let site = disconnected(&dst, "edge", "");
    let (code, report, all) = json_run(
        &site,
        &[
            "load",
            "--all",
            "--dry-run",
            "--from",
            medium.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{all}");
    assert_eq!(image(&report, "app:1")["outcome"], "planned", "{report:#}");
    assert!(
        dst.catalog().is_empty(),
        "a dry run pushed {:?}",
        dst.catalog()
    );
}

#[test]
fn each_registry_loads_the_images_exported_for_it() {
    let (src, one, two) = (Registry::start(), Registry::start(), Registry::start());
    let app = three_platforms(&src, "app", "1");
    let helm = chart(&src, "chart", "1");
    let ws = Workspace::new();
    ws.list_script("one.sh", &[format!("{}/app:1", src.host)]);
    ws.list_script("two.sh", &[format!("{}/chart:1", src.host)]);
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: m\n    syncerScript: one.sh\n  - hostname: '{}'\n    repository: m\n    syncerScript: two.sh\n",
        one.host, two.host
    ));
    let medium = fresh_dir("both").join("layout");
    let (code, _, all) = json_run(&ws, &["export", "--all", medium.to_str().unwrap()]);
    assert_eq!(code, 0, "{all}");
    assert!(
        one.catalog().is_empty() && two.catalog().is_empty(),
        "an export pushed"
    );
    // Another tool's image in the same layout, then an export of one
    // registry only: the other's entries and the foreign one stay.
    let foreign = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{}/chart:1", src.host))
        .arg(format!("oci:{}:other/chart:9", medium.display()))
        .output()
        .unwrap();
    assert!(foreign.status.success(), "{foreign:?}");
    let (code, _, all) = json_run(
        &ws,
        &["export", "--registry", &one.host, medium.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{all}");
    let names = ref_names(&medium);
    let expected: BTreeSet<String> = [
        format!("{}/m/app:1", one.host),
        format!("{}/m/chart:1", two.host),
        "other/chart:9".to_string(),
    ]
    .into();
    assert_eq!(names, expected);
    // A registry whose syncer script fails replaces none of its entries.
    ws.script("one.sh", "exit 1");
    let (code, _, all) = json_run(&ws, &["export", "--all", medium.to_str().unwrap()]);
    assert_eq!(code, 1, "{all}");
    assert_eq!(index_entries(&medium).len(), 3, "{all}");
    ws.script("two.sh", "exit 1");
    let (code, _, all) = json_run(&ws, &["load", "--all", "--from", medium.to_str().unwrap()]);
    assert_eq!(code, 0, "{all}");
    assert_eq!(one.catalog(), ["m/app"]);
    assert_eq!(two.catalog(), ["m/chart"]);
    assert_eq!(digest_at(&one, "m/app", "1"), Some(app.top.digest.clone()));
    assert_eq!(
        digest_at(&two, "m/chart", "1"),
        Some(helm.top.digest.clone())
    );
}

#[test]
fn signatures_and_the_platforms_filter_cross_the_gap() {
    let (src, dst) = (Registry::start(), Registry::start());
    let app = referrers::image(&src, "app", "1");
    let sig = referrers::refer(&src, "app", &app, referrers::SIG, true);
    let multi = three_platforms(&src, "multi", "1");
    let ws = connected(
        &[
            format!("{}/app:1", src.host),
            format!("{}/multi:1", src.host),
        ],
        "    engine: native\n    referrers: true\n    platforms: [linux/arm64]\n",
    );
    let medium = fresh_dir("signed").join("layout");
    let (code, report, all) = json_run(&ws, &["export", "--all", medium.to_str().unwrap()]);
    assert_eq!(code, 0, "{all}");
    assert_eq!(image(&report, "app:1")["referrers"], 1, "{report:#}");
    assert_eq!(
        image(&report, "multi:1")["platforms"],
        serde_json::json!(["linux/arm64/v8"])
    );

    let site = disconnected(&dst, "edge", "    engine: native\n    referrers: true\n");
    let (code, report, all) = json_run(
        &site,
        &["load", "--all", "--from", medium.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{all}");
    assert_eq!(digest_at(&dst, "edge/app", "1"), Some(app.digest.clone()));
    assert_eq!(
        digest_at(&dst, "edge/app", &sig.digest),
        Some(sig.digest.clone())
    );
    assert_eq!(
        referrers::fallback(&dst, "edge/app", &app.digest),
        std::slice::from_ref(&sig.digest)
    );
    let (_, digest, _) = manifest_raw(&dst, "edge/multi", "1").unwrap();
    assert_eq!(
        digest,
        multi.image("arm64").manifest.digest,
        "one platform kept: its manifest alone is under the tag"
    );
    assert_eq!(image(&report, "multi")["outcome"], "mirrored");
}

/// A source set for the fault tests: the three-platform `app:1`, then the
/// chart `chart:1`, exported one at a time (`parallel: 1`) in that order.
struct Set {
    _src: Registry,
    app: Layout,
    helm: Layout,
    ws: Workspace,
}

fn set() -> Set {
    let src = Registry::start();
    let app = three_platforms(&src, "app", "1");
    let helm = chart(&src, "chart", "1");
    let ws = connected(
        &[
            format!("{}/app:1", src.host),
            format!("{}/chart:1", src.host),
        ],
        "    parallel: 1\n",
    );
    Set {
        _src: src,
        app,
        helm,
        ws,
    }
}

/// Loads `path` into `dst` under `edge`: the exit code, the report, all output.
fn load_from(dst: &Registry, path: &Path) -> (i32, Value, String) {
    json_run(
        &disconnected(dst, "edge", ""),
        &["load", "--all", "--from", path.to_str().unwrap()],
    )
}

/// Where each member's data starts in a tar archive, and its size.
fn tar_members(archive: &[u8]) -> Vec<(String, usize, usize)> {
    let mut members = Vec::new();
    let mut at = 0;
    while at + 512 <= archive.len() && archive[at..at + 512].iter().any(|b| *b != 0) {
        let header = &archive[at..at + 512];
        let name = String::from_utf8_lossy(&header[..100])
            .trim_end_matches('\0')
            .to_string();
        let size_text = String::from_utf8_lossy(&header[124..136]);
        let size =
            usize::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .unwrap();
        members.push((name, at + 512, size));
        at += 512 + size.div_ceil(512) * 512;
    }
    members
}

#[test]
fn an_archive_cut_short_loads_the_images_it_holds_whole() {
    let s = set();
    let archive = fresh_dir("cut").join("site.tar");
    let (code, report, all) = json_run(
        &s.ws,
        &["export", "--all", "--archive", archive.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{all}");
    assert_eq!(report["export"]["archive"], true);
    let listing = Command::new("tar")
        .arg("tf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(listing.status.success(), "tar reads it: {listing:?}");
    skopeo_reads(
        &format!("oci-archive:{}", archive.display()),
        "app:1",
        &s.app.top,
    );
    let whole = fs::read(&archive).unwrap();
    let layer = &s.helm.images[0].layers[0];
    let (_, start, size) = tar_members(&whole)
        .into_iter()
        .find(|(name, _, _)| *name == blob_file(&layer.digest))
        .expect("the chart's layer is in the archive");
    let cut = fresh_dir("cut").join("cut.tar");
    fs::write(&cut, &whole[..start + size / 2]).unwrap();

    let dst = Registry::start();
    let (code, report, all) = load_from(&dst, &cut);
    assert_eq!(code, 1, "{all}");
    assert_eq!(
        digest_at(&dst, "edge/app", "1"),
        Some(s.app.top.digest.clone())
    );
    assert_complete(&dst, "edge/app", &s.app);
    let failed = image(&report, "chart:1");
    assert_eq!(failed["outcome"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains(&layer.digest) && error.contains("cut short"),
        "{error}"
    );
    assert_eq!(
        digest_at(&dst, "edge/chart", "1"),
        None,
        "no tag for the chart"
    );
    let warnings = report["registries"][0]["warnings"].to_string();
    assert!(warnings.contains("truncated"), "{report:#}");
}

#[test]
fn a_flipped_byte_or_a_missing_blob_fails_only_its_image() {
    let s = set();
    let medium = fresh_dir("damaged").join("layout");
    let (code, _, all) = json_run(&s.ws, &["export", "--all", medium.to_str().unwrap()]);
    assert_eq!(code, 0, "{all}");

    let layer = &s.app.image("amd64").layers[0];
    let path = medium.join(blob_file(&layer.digest));
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let dst = Registry::start();
    let (code, report, all) = load_from(&dst, &medium);
    assert_eq!(code, 1, "{all}");
    let error = error_of(&report, "app:1");
    assert!(
        error.contains(&layer.digest) && error.contains("does not match its digest"),
        "{error}"
    );
    assert_eq!(
        digest_at(&dst, "edge/app", "1"),
        None,
        "no tag for a damaged image"
    );
    assert_eq!(
        digest_at(&dst, "edge/chart", "1"),
        Some(s.helm.top.digest.clone())
    );

    bytes[middle] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let chart_layer = &s.helm.images[0].layers[0];
    fs::remove_file(medium.join(blob_file(&chart_layer.digest))).unwrap();
    let dst = Registry::start();
    let (code, report, all) = load_from(&dst, &medium);
    assert_eq!(code, 1, "{all}");
    let error = error_of(&report, "chart:1");
    assert!(
        error.contains(&chart_layer.digest) && error.contains("missing"),
        "{error}"
    );
    assert_eq!(digest_at(&dst, "edge/chart", "1"), None);
    assert_eq!(
        digest_at(&dst, "edge/app", "1"),
        Some(s.app.top.digest.clone())
    );
}

/// An image of one random layer of `size` bytes at `src` as `repo:tag`.
fn big_image(src: &Registry, repo: &str, tag: &str, size: usize) {
    use crate::fixtures::layout::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, random_bytes};
    use crate::fixtures::{Blob, push_blob, put_manifest};
    let layer = Blob::new(OCI_LAYER_GZIP, random_bytes(size));
    let config = Blob::json(
        OCI_CONFIG,
        &serde_json::json!({"architecture": "amd64", "os": "linux"}),
    );
    let manifest = Blob::json(
        OCI_MANIFEST,
        &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": config.descriptor(), "layers": [layer.descriptor()]}),
    );
    push_blob(src, repo, &config);
    push_blob(src, repo, &layer);
    let (status, body) = put_manifest(src, repo, tag, &manifest);
    assert_eq!(status, 201, "{body}");
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = fresh_dir("small-disk");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "pb-small-disk",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount a tmpfs at {}: {out:?}",
            dir.display()
        );
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_leaves_the_previous_export_whole() {
    let src = Registry::start();
    let helm = chart(&src, "chart", "1");
    big_image(&src, "big", "1", 3 << 20);
    let disk = SmallDisk::new("1m");
    let medium = disk.0.join("layout");
    let archive = disk.0.join("site.tar");
    let ws = connected(&[format!("{}/chart:1", src.host)], "");
    for args in [
        vec!["export", "--all", medium.to_str().unwrap()],
        vec!["export", "--all", "--archive", archive.to_str().unwrap()],
    ] {
        let (code, _, all) = json_run(&ws, &args);
        assert_eq!(code, 0, "{all}");
    }
    let index = fs::read(medium.join("index.json")).unwrap();
    let tar = fs::read(&archive).unwrap();
    let before = files(&disk.0);

    ws.list_script(
        "sync.sh",
        &[
            format!("{}/chart:1", src.host),
            format!("{}/big:1", src.host),
        ],
    );
    let (code, report, all) = json_run(
        &ws,
        &["export", "--all", "--archive", archive.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{all}");
    let error = error_of(&report, "big:1");
    assert!(error.contains("No space left"), "{error}");
    assert!(report["export"]["error"].as_str().is_some(), "{report:#}");
    assert_eq!(
        fs::read(&archive).unwrap(),
        tar,
        "the previous archive is untouched"
    );
    let (code, report, all) = json_run(&ws, &["export", "--all", medium.to_str().unwrap()]);
    assert_eq!(code, 1, "{all}");
    let error = error_of(&report, "big:1");
    assert!(error.contains("No space left"), "{error}");
    assert_eq!(index_entries(&medium).len(), 1, "the chart is still listed");
    assert_eq!(fs::read(medium.join("index.json")).unwrap(), index);
    let after = files(&disk.0);
    let left: Vec<&String> = after
        .difference(&before)
        .filter(|f| f.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");

    for path in [&medium, &archive] {
        let dst = Registry::start();
        let (code, _, all) = load_from(&dst, path);
        assert_eq!(code, 0, "{all}");
        assert_eq!(
            digest_at(&dst, "edge/chart", "1"),
            Some(helm.top.digest.clone())
        );
    }
}

/// Manifest `repo:reference` at `remote`, with the media type it is served as.
fn manifest_at(remote: &impl Remote, repo: &str, reference: &str) -> Blob {
    let (media_type, _, bytes) = manifest_raw(remote, repo, reference).unwrap();
    Blob::new(&media_type, bytes)
}

/// A Docker manifest list pushed to `src` as `repo:tag`, of two docker-built
/// images listed as linux/amd64 and linux/arm64: the list, its amd64 image
/// and that image's config digest (its image ID).
fn docker_list(src: &Registry, repo: &str, tag: &str) -> (Blob, Blob, String) {
    let built: Vec<(Blob, String)> = ["amd64", "arm64"]
        .into_iter()
        .map(|arch| {
            let id = src.push_image(repo, arch, 1);
            (manifest_at(src, repo, arch), id)
        })
        .collect();
    let children: Vec<Value> = built
        .iter()
        .zip(["amd64", "arm64"])
        .map(|((m, _), arch)| {
            let mut d = m.descriptor();
            d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
            d
        })
        .collect();
    let list =
        serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": children});
    let list = Blob::json(DOCKER_LIST, &list);
    let (status, body) = fixtures::put_manifest(src, repo, tag, &list);
    assert_eq!(status, 201, "PUT the manifest list: {body}");
    let (amd64, id) = built.into_iter().next().unwrap();
    (list, amd64, id)
}

/// A docker-built image (`built:1`) and a Docker manifest list (`multi:1`),
/// exported into a directory and into an archive.
struct DockerExport {
    src: Registry,
    built: Blob,
    list: Blob,
    amd64: Blob,
    amd64_id: String,
    dir: PathBuf,
    archive: PathBuf,
}

fn docker_export() -> DockerExport {
    let src = Registry::start();
    src.push_image("built", "1", 2);
    let built = manifest_at(&src, "built", "1");
    assert_eq!(
        built.media_type, DOCKER_MANIFEST,
        "docker push writes Docker manifests"
    );
    let (list, amd64, amd64_id) = docker_list(&src, "multi", "1");
    let ws = connected(
        &[
            format!("{}/built:1", src.host),
            format!("{}/multi:1", src.host),
        ],
        "",
    );
    let media = fresh_dir("docker-medium");
    let (dir, archive) = (media.join("site"), media.join("site.tar"));
    for target in [
        vec![dir.to_str().unwrap()],
        vec!["--archive", archive.to_str().unwrap()],
    ] {
        let args = [vec!["export", "--registry", SITE], target].concat();
        let (code, _, all) = json_run(&ws, &args);
        assert_eq!(code, 0, "{all}");
    }
    DockerExport {
        src,
        built,
        list,
        amd64,
        amd64_id,
        dir,
        archive,
    }
}

/// Panics unless skopeo, asked for one platform (linux/amd64) of
/// `SITE/mirror/NAME` in `layout`, copies `image` to a registry as it is.
fn skopeo_reads_one_platform(layout: &str, name: &str, image: &Blob) {
    let check = Registry::start();
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "--override-os", "linux"])
        .args([
            "--override-arch",
            "amd64",
            "copy",
            "-q",
            "--preserve-digests",
        ])
        .args(["--dest-tls-verify=false", "--dest-no-creds"])
        .arg(format!("{layout}:{SITE}/mirror/{name}"))
        .arg(format!("docker://{}/verify/one:1", check.host))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo reads {layout}: {out:?}");
    let arrived = manifest_at(&check, "verify/one", "1");
    assert_eq!(
        (arrived.media_type, arrived.digest),
        (image.media_type.clone(), image.digest.clone())
    );
}

/// Loads the layout at `path` into `dst` under `prefix`, and panics unless
/// `built:1` and `multi:1` arrive with the source's digests and media types.
fn loads_with_the_sources_digests(e: &DockerExport, dst: &Registry, path: &Path, prefix: &str) {
    let site = disconnected(dst, prefix, "");
    let (code, report, all) = json_run(&site, &["load", "--all", "--from", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{all}");
    assert_eq!(images(&report).len(), 2, "{report:#}");
    for (repo, top) in [("built", &e.built), ("multi", &e.list)] {
        let arrived = manifest_at(dst, &format!("{prefix}/{repo}"), "1");
        assert_eq!(
            (arrived.media_type, arrived.digest),
            (top.media_type.clone(), top.digest.clone()),
            "{prefix}/{repo}:1"
        );
    }
    assert_holds(dst, &format!("{prefix}/multi"), &e.amd64);
}

/// Panics unless `repo` at `remote` holds `image` by its digest, as it is.
fn assert_holds(remote: &Registry, repo: &str, image: &Blob) {
    let arrived = manifest_at(remote, repo, &image.digest);
    assert_eq!(arrived, *image, "{repo}@{}", image.digest);
}

#[test]
fn docker_built_images_are_read_by_skopeo_and_load_with_the_sources_digests() {
    let mut e = docker_export();
    let listed: Vec<(String, String)> = index_entries(&e.dir)
        .iter()
        .map(|x| (x["mediaType"].to_string(), x["digest"].to_string()))
        .collect();
    let row = |t: &str, b: &Blob| (format!("\"{t}\""), format!("\"{}\"", b.digest));
    assert_eq!(
        listed,
        [
            row(DOCKER_MANIFEST, &e.built),
            row(OCI_MANIFEST, &e.built),
            row(DOCKER_LIST, &e.list),
            row(OCI_INDEX, &e.list),
        ],
        "each Docker entry, then the same manifest under the OCI type"
    );
    for layout in [
        format!("oci:{}", e.dir.display()),
        format!("oci-archive:{}", e.archive.display()),
    ] {
        skopeo_reads(&layout, "built:1", &e.built);
        skopeo_reads_one_platform(&layout, "multi:1", &e.amd64);
    }
    let root = fresh_dir("podman-oci");
    let pulled = Command::new("podman")
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args(["--storage-driver", "vfs", "pull", "-q", "--arch", "amd64"])
        .arg(format!("oci:{}:{SITE}/mirror/multi:1", e.dir.display()))
        .output()
        .unwrap();
    assert!(pulled.status.success(), "podman pull: {pulled:?}");
    let id = String::from_utf8_lossy(&pulled.stdout).trim().to_string();
    assert_eq!(
        format!("sha256:{id}"),
        e.amd64_id,
        "podman has the amd64 image"
    );

    e.src.stop();
    let dst = Registry::start();
    loads_with_the_sources_digests(&e, &dst, &e.dir, "edge");
    loads_with_the_sources_digests(&e, &dst, &e.archive, "tar");
}

#[test]
fn layouts_without_the_oci_alias_or_with_it_alone_still_load() {
    let mut e = docker_export();
    e.src.stop();
    let dst = Registry::start();
    let alias = "io.picture-book.oci-alias";
    let entries = index_entries(&e.dir);
    // As the previous version wrote them: the Docker entries alone.
    let previous: Vec<Value> = entries
        .iter()
        .filter(|x| x["annotations"][alias].is_null())
        .cloned()
        .collect();
    // As mended by hand for skopeo: the OCI media type alone, no mark of ours.
    let mended: Vec<Value> = entries
        .iter()
        .filter(|x| x["annotations"][alias].is_string())
        .map(|x| {
            let mut x = x.clone();
            x["annotations"].as_object_mut().unwrap().remove(alias);
            x
        })
        .collect();
    for (prefix, kept) in [("previous", previous), ("mended", mended)] {
        assert_eq!(kept.len(), 2, "{kept:#?}");
        let index = serde_json::json!({"schemaVersion": 2, "manifests": kept});
        fs::write(e.dir.join("index.json"), index.to_string()).unwrap();
        loads_with_the_sources_digests(&e, &dst, &e.dir, prefix);
    }
}
