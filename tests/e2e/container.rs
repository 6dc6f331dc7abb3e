//! The container image of `packaging/container/`: built offline by its
//! `build.sh` with the suite's docker daemon (no registry to pull from),
//! then run as an operator would, on the host's network with the
//! configuration and the state mounted: `--version`, `check`, `load --all`
//! against the suite's registries, and `sync` with its API, stopped with
//! SIGTERM.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::harness::{Registry, Workspace, docker, docker_once, dockerd, eventually, free_port};

const IMAGE: &str = "picture-book-e2e:container";

/// `docker run --rm --network host` of the image with `ws` as its
/// configuration and `state` as its state; the command's output.
fn run_in_image(ws: &Workspace, state: &str, args: &[&str]) -> Output {
    let config = format!("{}:/etc/picture-book:ro", ws.dir.display());
    let state = format!("{state}:/var/lib/picture-book");
    let mut all = vec![
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        &config,
        "-v",
        &state,
        image(),
    ];
    all.extend_from_slice(args);
    docker_once(&all)
}

/// Builds the image with `build.sh` from the binary under test, once for
/// this test binary; its tag.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let built = Command::new("packaging/container/build.sh")
            .args([IMAGE, env!("CARGO_BIN_EXE_picture-book")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DOCKER_HOST", &dockerd().host)
            .output()
            .unwrap();
        assert!(built.status.success(), "build.sh: {}", text(&built));
    });
    IMAGE
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_image_builds_offline_and_runs_load_and_sync_as_non_root() {
    let image = image();
    let user = docker(&["image", "inspect", "-f", "{{.Config.User}}", image]);
    assert_eq!(user.trim(), "10001:10001", "runs as non-root");

    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("app", "1", 1);
    let ws = Workspace::new();
    let tool = src.push_image("tool", "1", 1);
    src.push_image("app", "2-rc", 1);
    ws.list_script("sync.sh", &[format!("{}/tool:1", src.host)]);
    let port = free_port();
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    engine: native\n    images:\n      - source: '{}/app'\n        exclude: ['-rc']\n    syncerScript: /etc/picture-book/sync.sh\napi:\n  enabled: true\n  port: {port}\n",
        dst.host, src.host
    ));
    let state = ws.dir.join("state-in-image");
    fs::create_dir(&state).unwrap();
    chown(&state, Some(10001), Some(10001)).unwrap();
    let state = state.display().to_string();

    let version = run_in_image(&ws, &state, &["--version"]);
    assert!(
        text(&version).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&version)
    );
    let check = run_in_image(&ws, &state, &["check"]);
    assert!(check.status.success(), "check: {}", text(&check));
    let load = run_in_image(&ws, &state, &["load", "--all"]);
    assert_eq!(load.status.code(), Some(0), "load: {}", text(&load));
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id), "by images");
    assert_eq!(
        dst.config_digest("mirror/tool", "1"),
        Some(tool),
        "by the script in busybox sh"
    );
    assert_eq!(dst.config_digest("mirror/app", "2-rc"), None, "excluded");
    let written: Vec<u32> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().uid())
        .collect();
    assert!(!written.is_empty(), "load wrote no state");
    assert!(written.iter().all(|&uid| uid == 10001), "{written:?}");

    let name = format!("pb-e2e-sync-{port}");
    let config = format!("{}:/etc/picture-book:ro", ws.dir.display());
    let state = format!("{state}:/var/lib/picture-book");
    let confined = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"];
    let mut args = vec!["run", "-d", "--name", &name, "--network", "host"];
    args.extend(confined);
    args.extend(["-v", &config, "-v", &state, image]);
    docker(&args);
    let api = |path: &str| {
        ureq::get(&format!("http://127.0.0.1:{port}{path}"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
    };
    let up = eventually(Duration::from_secs(30), || {
        api("/healthz").as_deref() == Some("ok\n")
    });
    assert!(up, "no /healthz: {}", docker(&["logs", &name]));
    let listed = api("/list?type=configured").unwrap_or_default();
    assert!(listed.contains(&dst.host), "{listed}");
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &name]);
    let environ = fs::read(format!("/proc/{}/environ", pid.trim())).unwrap();
    assert!(
        environ
            .split(|&b| b == 0)
            .any(|v| v == b"GLIBC_TUNABLES=glibc.malloc.tcache_count=0"),
        "sync runs with glibc's per-thread cache: {}",
        String::from_utf8_lossy(&environ)
    );
    docker(&["stop", "-t", "30", &name]);
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]);
    let logs = docker(&["logs", &name]);
    docker(&["rm", &name]);
    assert_eq!(code.trim(), "0", "sync after SIGTERM: {logs}");
}

/// The YAML document `packaging/kubernetes/NAME`.
fn manifest(name: &str) -> Value {
    let path = format!("{}/packaging/kubernetes/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `docker image inspect -f FORMAT` of the image, trimmed.
fn inspect(format: &str) -> String {
    docker(&["image", "inspect", "-f", format, image()])
        .trim()
        .to_string()
}

/// Writes each of `files` (name, text) into `dir` with `mode`.
fn materialise(dir: &Path, files: &Mapping, mode: u32) {
    fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        let path = dir.join(name.as_str().unwrap());
        fs::write(&path, text.as_str().unwrap()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        chown(&path, Some(0), Some(10001)).unwrap();
    }
}

/// Checks a pod template against the image: non-root as the image's user,
/// read-only root, no capabilities; returns its one container.
fn confined_container(spec: &Value) -> &Value {
    let pod = &spec["securityContext"];
    assert_eq!(pod["runAsNonRoot"], Value::Bool(true));
    let user = format!(
        "{}:{}",
        pod["runAsUser"].as_u64().unwrap(),
        pod["runAsGroup"].as_u64().unwrap()
    );
    assert_eq!(user, inspect("{{.Config.User}}"));
    let container = &spec["containers"][0];
    let own = &container["securityContext"];
    assert_eq!(own["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(own["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(own["capabilities"]["drop"][0], "ALL");
    let tag = format!("picture-book:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(container["image"], tag.as_str());
    container
}

#[test]
fn the_kubernetes_manifests_match_the_image_and_the_binary() {
    let kustomization = manifest("kustomization.yaml");
    for resource in kustomization["resources"].as_sequence().unwrap() {
        let doc = manifest(resource.as_str().unwrap());
        assert!(
            doc["apiVersion"].is_string() && doc["kind"].is_string(),
            "{resource:?}"
        );
    }
    let deployment = manifest("deployment.yaml");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    let daemon = confined_container(pod);
    assert_eq!(
        daemon["args"],
        serde_yaml::from_str::<Value>("[sync]").unwrap()
    );
    let cronjob = manifest("cronjob.yaml");
    let job_pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let job = confined_container(job_pod);
    assert_eq!(
        job["args"],
        serde_yaml::from_str::<Value>("[load, --all]").unwrap()
    );
    assert_eq!(job["volumeMounts"], daemon["volumeMounts"]);
    assert_eq!(job_pod["volumes"], pod["volumes"]);

    let config_map = manifest("config.yaml");
    let config: Value =
        serde_yaml::from_str(config_map["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let port = config["api"]["port"].as_u64().unwrap();
    assert_eq!(daemon["ports"][0]["containerPort"].as_u64(), Some(port));
    assert!(inspect("{{json .Config.ExposedPorts}}").contains(&format!("\"{port}/tcp\"")));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(daemon[probe]["httpGet"]["path"], "/healthz");
        assert_eq!(daemon[probe]["httpGet"]["port"], daemon["ports"][0]["name"]);
    }
    let service = manifest("service.yaml");
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"],
        daemon["ports"][0]["name"]
    );
    assert_eq!(service["spec"]["selector"], pod_labels(&deployment));

    // The pod's volumes, as the manifests lay them out, in the image with
    // docker's equivalents of its security context: `check` accepts them.
    let ws = Workspace::new();
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--network",
        "none",
    ]
    .map(String::from)
    .to_vec();
    let mounts = daemon["volumeMounts"].as_sequence().unwrap();
    for mount in mounts {
        let name = mount["name"].as_str().unwrap();
        let path = mount["mountPath"].as_str().unwrap();
        let volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap();
        let host = ws.dir.join(name);
        fs::create_dir_all(&host).unwrap();
        if volume.get("configMap").is_some() {
            materialise(&host, config_map["data"].as_mapping().unwrap(), 0o555);
        } else if volume.get("secret").is_some() {
            materialise(
                &host,
                manifest("secret.yaml")["stringData"].as_mapping().unwrap(),
                0o440,
            );
        } else {
            chown(&host, Some(10001), Some(10001)).unwrap();
        }
        for outer in mounts {
            let inner = path.strip_prefix(&format!("{}/", outer["mountPath"].as_str().unwrap()));
            if let Some(inner) = inner {
                fs::create_dir_all(ws.dir.join(outer["name"].as_str().unwrap()).join(inner))
                    .unwrap();
            }
        }
        let ro = if mount["readOnly"] == Value::Bool(true) {
            ":ro"
        } else {
            ""
        };
        args.extend(["-v".into(), format!("{}:{path}{ro}", host.display())]);
    }
    args.extend([image().to_string(), "check".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let check = docker_once(&args);
    assert!(
        check.status.success(),
        "check in the pod's layout: {}",
        text(&check)
    );
}

fn pod_labels(deployment: &Value) -> Value {
    deployment["spec"]["template"]["metadata"]["labels"].clone()
}
