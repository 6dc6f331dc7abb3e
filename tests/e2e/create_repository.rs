//! Registries that need a repository created before the first push (ECR
//! without create-on-push, Harbor projects), emulated by a front that
//! answers 404 `NAME_UNKNOWN` to an upload into a repository until a file
//! named after it exists in its directory; the tests' `createRepositoryScript`
//! makes that file. Without the hook the failure names the repository; with
//! it the hook runs once per repository and the push goes on, for the
//! native and the docker engine.

use std::fs;
use std::path::{Path, PathBuf};

use crate::front::{Front, Reply};
use crate::harness::{Registry, Workspace, fresh_dir};
use crate::native::three_platforms;

/// A front for `dst` that refuses uploads into repositories with no file
/// in the directory it returns (`mirror_app` for `mirror/app`).
fn refusing_front(dst: &Registry) -> (Front, PathBuf) {
    let created = fresh_dir("created");
    let dir = created.clone();
    let front = Front::start(
        dst,
        move |seen| {
            let path = seen.path().strip_prefix("/v2/")?;
            let name = path.strip_suffix("/blobs/uploads/")?;
            let exists = dir.join(name.replace('/', "_")).exists();
            (!exists).then(|| {
                Reply::error(
                    404,
                    "NAME_UNKNOWN",
                    &format!("The repository with name '{name}' does not exist"),
                )
            })
        },
        |_, _| {},
    );
    (front, created)
}

/// The configuration of one registry at `front` with `extra` keys.
fn config(front: &Front, extra: &str) -> String {
    format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    syncerScript: sync.sh\n{extra}",
        front.host
    )
}

/// A hook that notes its arguments in `called` and creates the repository
/// for the front.
fn hook(ws: &Workspace, created: &Path) -> PathBuf {
    ws.script(
        "create.sh",
        &format!(
            "echo \"$@\" >> '{}/called'\ntouch '{}'/\"$(echo \"$1\" | tr / _)\"",
            ws.dir.display(),
            created.display()
        ),
    )
}

fn calls(ws: &Workspace) -> Vec<String> {
    fs::read_to_string(ws.dir.join("called"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn without_a_hook_the_failure_names_the_repository_to_create() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (front, _) = refusing_front(&dst);
    three_platforms(&src, "app", "1");
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    ws.config(&config(&front, "    engine: native\n"));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let error = out.json()["registries"][0]["images"][0]["error"].clone();
    let said = format!(
        "{} refused to create repository mirror/app (404 NAME_UNKNOWN): create it first, or set createRepositoryScript",
        front.host
    );
    assert_eq!(error, said.as_str());
    assert_eq!(
        src.count("GET", "/v2/app/manifests/", true),
        0,
        "a pull was spent on an image that cannot be pushed"
    );
}

#[test]
fn the_hook_creates_each_repository_once_and_the_native_copy_goes_on() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (front, created) = refusing_front(&dst);
    let layout = three_platforms(&src, "app", "1");
    three_platforms(&src, "app", "2");
    three_platforms(&src, "other", "1");
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &["app:1", "app:2", "other:1"].map(|i| format!("{}/{i}", src.host)),
    );
    let script = hook(&ws, &created);
    ws.config(&config(
        &front,
        &format!(
            "    engine: native\n    createRepositoryScript: {}\n",
            script.display()
        ),
    ));
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    let mut called = calls(&ws);
    called.sort();
    assert_eq!(
        called,
        [
            format!("mirror/app {}", front.host),
            format!("mirror/other {}", front.host)
        ]
    );
    let (_, digest, _) =
        crate::fixtures::manifest_raw(&dst, "mirror/app", "1").expect("the image arrived");
    assert_eq!(digest, layout.top.digest);
    assert!(crate::fixtures::manifest_raw(&dst, "mirror/other", "1").is_some());
}

#[test]
fn the_hook_creates_the_repository_before_docker_pushes() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (front, created) = refusing_front(&dst);
    src.push_image("app", "1", 1);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let script = hook(&ws, &created);
    ws.config(&config(
        &front,
        &format!("    createRepositoryScript: {}\n", script.display()),
    ));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(calls(&ws), [format!("mirror/app {}", front.host)]);
    assert!(dst.config_digest("mirror/app", "1").is_some());
}

#[test]
fn a_failing_hook_is_told_with_its_stderr() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (front, _) = refusing_front(&dst);
    three_platforms(&src, "app", "1");
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let script = ws.script("create.sh", "echo 'project mirror not found' >&2\nexit 4");
    ws.config(&config(
        &front,
        &format!(
            "    engine: native\n    createRepositoryScript: {}\n",
            script.display()
        ),
    ));
    let out = ws.run_without_daemon(&["load", "--all", "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let error = out.json()["registries"][0]["images"][0]["error"].clone();
    let said = format!(
        "{} refused to create repository mirror/app (404 NAME_UNKNOWN), and createRepositoryScript {} failed: exit status 4: project mirror not found",
        front.host,
        script.display()
    );
    assert_eq!(error, said.as_str());
}
