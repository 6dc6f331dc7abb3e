//! `engine: podman` as an operator meets it, with the real podman (daemonless,
//! test-private storage on the vfs driver) against the harness's registries:
//! anonymous and htpasswd targets, a missing image, wrong credentials, no
//! secret in any argument or file left behind, SIGTERM mid-run, and
//! `deleteLocalImages`; and the docker engine with podman behind the name,
//! as podman-docker installs it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{Registry, Run, Workspace, eventually, processes_with, single};

/// Podman's storage for one workspace: vfs, under the workspace.
fn storage(ws: &Workspace) -> PathBuf {
    let conf = ws.dir.join("storage.conf");
    if !conf.exists() {
        let root = ws.dir.join("podman");
        fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}/root\"\nrunroot = \"{}/runroot\"\n",
                root.display(),
                root.display()
            ),
        )
        .unwrap();
    }
    conf
}

/// A run of picture-book with podman's storage set up and no docker daemon.
pub fn run(ws: &Workspace) -> Run {
    ws.run()
        .without_daemon()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("CONTAINERS_STORAGE_CONF", storage(ws))
}

/// Whether the workspace's podman storage has an image called `name`.
fn podman_has(ws: &Workspace, name: &str) -> bool {
    std::process::Command::new("podman")
        .args(["image", "exists", name])
        .env("CONTAINERS_STORAGE_CONF", storage(ws))
        .status()
        .unwrap()
        .success()
}

/// A directory on PATH before the real one, holding `name` that logs its
/// arguments to `log` and runs `real` with them.
fn wrapper(ws: &Workspace, name: &str, real: &str, log: &Path) -> String {
    let bin = ws.dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    ws.script(
        &format!("bin/{name}"),
        &format!("echo \"$*\" >> {}\nexec {real} \"$@\"", log.display()),
    );
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

#[test]
fn podman_mirrors_without_a_daemon_and_keeps_credentials_out_of_its_arguments() {
    let src = Registry::with_auth("puller", "podman-pull-5k");
    let dst = Registry::with_auth("pusher", "podman-push-6m");
    let id = src.push_image("team/app", "1", 2);
    let open = Registry::start();
    let open_id = open.push_image("plain", "2", 1);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/team/app:1", src.host),
            format!("{}/plain:2", open.host),
        ],
    );
    ws.secret_file("push.json", &dst.auth_json("pusher", "podman-push-6m"));
    ws.config(&single(
        &dst,
        &format!(
            "    engine: podman\n    pullAuthConfig: '{}'\n    pushAuthConfigFile: push.json\n",
            src.auth_json("puller", "podman-pull-5k")
        ),
    ));
    let argv = ws.dir.join("argv.log");
    let path = wrapper(&ws, "podman", "/usr/bin/podman", &argv);
    let out = run(&ws)
        .env("PATH", &path)
        .args(["load", "--all", "-vv", "--json"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(dst.config_digest("mirror/team/app", "1"), Some(id));
    assert_eq!(dst.config_digest("mirror/plain", "2"), Some(open_id));
    let argv = fs::read_to_string(&argv).unwrap();
    assert!(
        argv.lines()
            .any(|l| l.starts_with("pull --authfile ") && l.contains("--tls-verify=false")),
        "{argv}"
    );
    assert!(
        argv.lines().any(|l| l.starts_with("push --authfile ")),
        "{argv}"
    );
    for secret in [
        "podman-pull-5k",
        "podman-push-6m",
        "cHVsbGVyOnBvZG1hbi1wdWxsLTVr",
    ] {
        assert!(
            !argv.contains(secret),
            "a secret in podman's arguments: {argv}"
        );
        assert!(!out.all().contains(secret), "a secret in the output");
    }
    assert!(ws.private_dirs().is_empty(), "{:?}", ws.private_dirs());
    let report = out.json();
    assert_eq!(report["registries"][0]["engine"], "podman");

    let again = run(&ws).args(["load", "--all", "--json"]).run();
    assert_eq!(
        again.json()["registries"][0]["upToDate"],
        2,
        "{}",
        again.stdout
    );
}

#[test]
fn a_missing_image_and_wrong_credentials_fail_alone_with_podmans_words() {
    let src = Registry::with_auth("puller", "right-pass-3c");
    let dst = Registry::start();
    let id = src.push_image("here", "1", 1);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/here:1", src.host),
            format!("{}/missing:1", src.host),
        ],
    );
    ws.config(&single(
        &dst,
        &format!(
            "    engine: podman\n    pullAuthConfig: '{}'\n",
            src.auth_json("puller", "right-pass-3c")
        ),
    ));
    let out = run(&ws).args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(dst.config_digest("mirror/here", "1"), Some(id));
    let report = out.json();
    let missing = &report["registries"][0]["images"][1];
    assert_eq!(missing["outcome"], "failed");
    let error = missing["error"].as_str().unwrap();
    assert!(error.starts_with("podman pull "), "{error}");
    assert!(error.contains("manifest unknown"), "{error}");

    ws.config(&single(
        &dst,
        &format!(
            "    engine: podman\n    pullAuthConfig: '{}'\n",
            src.auth_json("puller", "wrong-pass-3c")
        ),
    ));
    let denied = run(&ws).args(["load", "--all", "--json", "--force"]).run();
    assert_eq!(denied.code, 1, "{denied:?}");
    let first = &denied.json()["registries"][0]["images"][0];
    let error = first["error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("unauthorized") || error.contains("authentication required"),
        "{error}"
    );
    assert!(!denied.all().contains("wrong-pass-3c"));
}

#[test]
fn sigterm_stops_podman_and_leaves_no_child() {
    let port = crate::load::hanging_registry();
    let dst = Registry::start();
    let ws = Workspace::new();
    let stuck = format!("127.0.0.1:{port}/stuck:1");
    ws.list_script("sync.sh", std::slice::from_ref(&stuck));
    ws.config(&single(&dst, "    engine: podman\n"));
    let running = run(&ws).args(["load", "--all"]).spawn();
    let pulling = format!("podman pull --tls-verify=false {stuck}");
    assert!(
        eventually(Duration::from_secs(30), || !processes_with(&pulling)
            .is_empty()),
        "podman never started pulling"
    );
    running.signal("TERM");
    let out = running.wait(Duration::from_secs(90));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.elapsed < Duration::from_secs(60), "{:?}", out.elapsed);
    assert!(
        eventually(Duration::from_secs(10), || processes_with(&pulling)
            .is_empty()),
        "a podman child outlived picture-book"
    );
}

#[test]
fn delete_local_images_removes_what_podman_pulled_and_keeps_the_rest() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("kept", "1", 1);
    src.push_image("pulled", "1", 1);
    let ws = Workspace::new();
    let kept = format!("{}/kept:1", src.host);
    let status = std::process::Command::new("podman")
        .args(["pull", "-q", "--tls-verify=false", &kept])
        .env("CONTAINERS_STORAGE_CONF", storage(&ws))
        .status()
        .unwrap();
    assert!(status.success(), "the operator's own pull");
    let pulled = format!("{}/pulled:1", src.host);
    ws.list_script("sync.sh", &[kept.clone(), pulled.clone()]);
    ws.config(&single(
        &dst,
        "    engine: podman\n    deleteLocalImages: true\n",
    ));
    let out = run(&ws).args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(podman_has(&ws, &kept), "the operator's image was removed");
    assert!(!podman_has(&ws, &pulled));
    assert!(!podman_has(&ws, &format!("{}/mirror/pulled:1", dst.host)));
}

#[test]
fn the_docker_engine_drives_podman_behind_the_docker_name() {
    let src = Registry::with_auth("puller", "pd-pull-2w");
    let dst = Registry::with_auth("pusher", "pd-push-9z");
    let id = src.push_image("app", "1", 1);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    ws.config(&single(
        &dst,
        &format!(
            "    pullAuthConfig: '{}'\n    pushAuthConfig: '{}'\n",
            src.auth_json("puller", "pd-pull-2w"),
            dst.auth_json("pusher", "pd-push-9z")
        ),
    ));
    // What podman-docker installs as /usr/bin/docker.
    let argv = ws.dir.join("argv.log");
    let path = wrapper(&ws, "docker", "/usr/bin/podman", &argv);
    let out = run(&ws)
        .env("PATH", &path)
        .args(["load", "--all", "-v"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("docker is podman (4."),
        "{}",
        out.stderr
    );
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
    let argv = fs::read_to_string(&argv).unwrap();
    assert!(argv.contains("push --authfile "), "{argv}");
    assert!(
        !argv.contains("--config"),
        "podman ignores --config: {argv}"
    );
}

/// A user of this machine for rootless podman, with subordinate IDs.
fn rootless_user() -> &'static str {
    const USER: &str = "pb-rootless";
    let exists = std::process::Command::new("id")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let made = std::process::Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", USER])
            .status()
            .unwrap();
        assert!(made.success(), "useradd {USER}");
    }
    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    if !subuid.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
        let added = std::process::Command::new("usermod")
            .args([
                "--add-subuids",
                "400000-465535",
                "--add-subgids",
                "400000-465535",
                USER,
            ])
            .status()
            .unwrap();
        assert!(added.success(), "usermod --add-subuids {USER}");
    }
    USER
}

#[test]
fn a_rootless_podman_user_mirrors_with_storage_of_its_own() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("app", "1", 1);
    let user = rootless_user();
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    ws.config(&single(
        &dst,
        "    engine: podman\n    deleteLocalImages: true\n",
    ));
    let conf = storage(&ws);
    let run = ws.dir.join("run-rootless");
    fs::create_dir_all(&run).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{user}:"), ws.dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let out = std::process::Command::new("runuser")
        .args(["-u", user, "--", "env"])
        .arg(format!("HOME=/home/{user}"))
        .arg(format!("XDG_RUNTIME_DIR={}", run.display()))
        .arg(format!("CONTAINERS_STORAGE_CONF={}", conf.display()))
        .arg("NO_PROXY=127.0.0.1,localhost")
        .arg(env!("CARGO_BIN_EXE_picture-book"))
        .arg("--config")
        .arg(ws.dir.join("config.yaml"))
        .arg("--state-dir")
        .arg(ws.dir.join("state"))
        .args(["load", "--all"])
        .current_dir(&ws.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
    let _ = std::process::Command::new("runuser")
        .args(["-u", user, "--", "env"])
        .arg(format!("XDG_RUNTIME_DIR={}", run.display()))
        .arg(format!("CONTAINERS_STORAGE_CONF={}", conf.display()))
        .args(["podman", "system", "reset", "--force"])
        .output();
}
