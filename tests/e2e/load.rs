//! `picture-book load` against the real thing: images built offline, pushed
//! to a source registry, mirrored by the binary through the shared docker
//! daemon, and checked by reading the target registry's API.

use std::fs;
use std::path::Path;
use std::time::Duration;

use base64::Engine;

use crate::harness::{Registry, Workspace, docker_ok, eventually, processes_with, single};

#[test]
fn mirrors_several_multilayer_images_under_a_prefix() {
    let (src, dst) = (Registry::start(), Registry::start());
    let app = src.push_image("team/app", "1.0", 3);
    let web = src.push_image("team/web", "2.1", 2);
    let tool = src.push_image("tool", "latest", 4);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/team/app:1.0", src.host),
            format!("{}/team/web:2.1", src.host),
            format!("{}/tool", src.host),
        ],
    );
    ws.config(&single(&dst, ""));
    let out = ws.run().args(["load", "--registry", &dst.host]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(dst.config_digest("mirror/team/app", "1.0"), Some(app));
    assert_eq!(dst.config_digest("mirror/team/web", "2.1"), Some(web));
    assert_eq!(dst.config_digest("mirror/tool", "latest"), Some(tool));
    assert!(
        out.stdout
            .contains(&format!("{}: 3 mirrored, 0 up to date, 0 failed", dst.host)),
        "{}",
        out.stdout
    );
}

#[test]
fn credentials_reach_docker_privately_and_never_show() {
    let src = Registry::with_auth("puller", "pull-secret-81f3");
    let dst = Registry::with_auth("pusher", "push-secret-c07e");
    let id = src.push_image("private/app", "7", 2);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/private/app:7", src.host)]);
    let push_b64 = base64::engine::general_purpose::STANDARD
        .encode(dst.auth_json("pusher", "push-secret-c07e"));
    ws.secret_file("push-auth", &push_b64);
    ws.config(&single(
        &dst,
        &format!(
            "    pullAuthConfig: '{}'\n    pushAuthConfigFile: push-auth\n",
            src.auth_json("puller", "pull-secret-81f3")
        ),
    ));
    // A docker wrapper on PATH records every argument list docker is given.
    let bin = ws.dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v docker"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let argv_log = ws.dir.join("argv.log");
    let env_log = ws.dir.join("env.log");
    ws.script(
        "bin/docker",
        &format!(
            "echo \"$*\" >> {}\nenv >> {}\nexec {} \"$@\"",
            argv_log.display(),
            env_log.display(),
            real.trim()
        ),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = ws
        .run()
        .env("PATH", &path)
        .args(["load", "--all", "-vv", "--json"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(dst.config_digest("mirror/private/app", "7"), Some(id));

    let argv = fs::read_to_string(&argv_log).unwrap();
    let env = fs::read_to_string(&env_log).unwrap();
    let state: String = fs::read_dir(ws.dir.join("state"))
        .unwrap()
        .map(|f| fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert!(state.contains("mirror/private/app:7"), "{state}");
    let secrets = [
        "pull-secret-81f3".to_string(),
        "push-secret-c07e".to_string(),
        base64::engine::general_purpose::STANDARD.encode("puller:pull-secret-81f3"),
        base64::engine::general_purpose::STANDARD.encode("pusher:push-secret-c07e"),
        push_b64,
    ];
    for s in &secrets {
        assert!(
            !argv.contains(s.as_str()),
            "secret in docker's arguments: {argv}"
        );
        assert!(
            !out.all().contains(s.as_str()),
            "secret in output or the JSON report: {}",
            out.all()
        );
        assert!(!env.contains(s.as_str()), "secret in docker's environment");
        assert!(!state.contains(s.as_str()), "secret in the state file");
    }
    let private_dirs: Vec<&str> = argv
        .lines()
        .filter_map(|l| l.strip_prefix("--config "))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    assert!(
        argv.lines()
            .any(|l| l.starts_with("--config ") && l.contains(" pull ")),
        "{argv}"
    );
    assert!(
        argv.lines()
            .any(|l| l.starts_with("--config ") && l.contains(" push ")),
        "{argv}"
    );
    for dir in private_dirs {
        assert!(
            Path::new(dir).starts_with(ws.dir.join("run")),
            "private docker config {dir} is not under $XDG_RUNTIME_DIR"
        );
        assert!(
            !Path::new(dir).exists(),
            "private docker config {dir} was left behind"
        );
    }
}

#[test]
fn wrong_credentials_fail_each_image_with_a_clear_error() {
    let src = Registry::start();
    let dst = Registry::with_auth("pusher", "right-password");
    src.push_image("a", "1", 1);
    src.push_image("b", "1", 1);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[format!("{}/a:1", src.host), format!("{}/b:1", src.host)],
    );
    let wrong = format!(
        "    pushAuthConfig: '{}'\n",
        dst.auth_json("pusher", "wrong-password-5a1")
    );
    let before = src.requests().len();
    for (extra, want) in [
        (
            wrong.as_str(),
            format!(
                "{} refused the push credentials (401): check pushAuthConfig",
                dst.host
            ),
        ),
        (
            "",
            format!(
                "{} asks for credentials (401) and none are configured for it: set pushAuthConfig",
                dst.host
            ),
        ),
    ] {
        ws.config(&single(&dst, extra));
        let out = ws.run().args(["load", "--all", "--json"]).run();
        assert_eq!(out.code, 1, "{out:?}");
        let report = out.json();
        let images = report["registries"][0]["images"].as_array().unwrap();
        assert_eq!(images.len(), 2);
        for image in images {
            assert_eq!(image["outcome"], "failed");
            assert_eq!(image["error"], want.as_str(), "{image}");
        }
        assert!(!out.all().contains("wrong-password-5a1"));
    }
    let docker: Vec<_> = src.requests()[before..]
        .iter()
        .filter(|(_, _, agent)| !agent.starts_with("picture-book/"))
        .cloned()
        .collect();
    assert!(docker.is_empty(), "nothing was pulled: {docker:#?}");
    assert!(dst.catalog().is_empty());
}

#[test]
fn a_missing_image_fails_alone() {
    let (src, dst) = (Registry::start(), Registry::start());
    let one = src.push_image("one", "1", 2);
    let three = src.push_image("three", "3", 2);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/one:1", src.host),
            format!("{}/two:2", src.host),
            format!("{}/three:3", src.host),
        ],
    );
    ws.config(&single(&dst, ""));
    let out = ws
        .run()
        .args(["load", "--registry", &dst.host, "--json"])
        .run();
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(dst.config_digest("mirror/one", "1"), Some(one));
    assert_eq!(dst.config_digest("mirror/three", "3"), Some(three));
    assert_eq!(dst.config_digest("mirror/two", "2"), None);
    let report = out.json();
    let r = &report["registries"][0];
    assert_eq!(
        (r["mirrored"].as_u64(), r["failed"].as_u64()),
        (Some(2), Some(1))
    );
    let images = r["images"].as_array().unwrap();
    let outcomes: Vec<&str> = images
        .iter()
        .map(|i| i["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["mirrored", "failed", "mirrored"]);
    assert_eq!(images[1]["line"], 2);
    assert_eq!(images[1]["source"], format!("{}/two:2", src.host));
    assert_eq!(images[1]["target"], format!("{}/mirror/two:2", dst.host));
    let error = images[1]["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("docker pull {}/two:2 failed: ", src.host)),
        "{error}"
    );
    assert!(
        error.contains("not found") || error.contains("unknown"),
        "docker's own words: {error}"
    );
}

#[test]
fn a_failing_script_mirrors_nothing() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("one", "1", 1);
    let ws = Workspace::new();
    ws.script(
        "sync.sh",
        &format!(
            "echo {}/one:1\necho 'upstream API down' >&2\nexit 3",
            src.host
        ),
    );
    ws.config(&single(&dst, ""));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("failed (exit status 3); nothing was mirrored; it said: upstream API down"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("sync.sh: upstream API down"),
        "script stderr goes to the log: {}",
        out.stderr
    );
    assert!(dst.catalog().is_empty());
}

#[test]
fn a_hanging_script_is_killed_with_its_children() {
    let dst = Registry::start();
    let ws = Workspace::new();
    // Durations unique to this test run, to find exactly these processes.
    let child = format!("sleep 86399.{}", std::process::id());
    let script = format!("sleep 86398.{}", std::process::id());
    ws.script(
        "sync.sh",
        &format!("echo alpine:3.19\n{child} &\n{script}\necho never"),
    );
    ws.config(&single(&dst, "    syncerScriptTimeout: 2s\n"));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.elapsed < Duration::from_secs(30),
        "took {:?}",
        out.elapsed
    );
    assert!(
        out.stdout.contains(
            "did not finish within 2s (syncerScriptTimeout) and was killed with its children"
        ),
        "{}",
        out.stdout
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        processes_with(&child),
        Vec::<String>::new(),
        "the script's child outlived it"
    );
    assert_eq!(
        processes_with(&script),
        Vec::<String>::new(),
        "the script outlived its timeout"
    );
    assert!(dst.catalog().is_empty());
}

#[test]
fn garbage_lines_are_reported_and_the_rest_still_mirror() {
    let (src, dst) = (Registry::start(), Registry::start());
    let good = src.push_image("good", "1", 1);
    let ws = Workspace::new();
    ws.script(
        "sync.sh",
        &format!("printf 'Not/An:Image!\\n'\nprintf '\\377\\376\\001binary\\n'\necho '  {}/good:1  '\necho 'https://x.io/y:1'", src.host),
    );
    ws.config(&single(&dst, ""));
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(dst.config_digest("mirror/good", "1"), Some(good));
    let report = out.json();
    let images = report["registries"][0]["images"].as_array().unwrap();
    let lines: Vec<(u64, &str)> = images
        .iter()
        .map(|i| (i["line"].as_u64().unwrap(), i["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [(1, "failed"), (2, "failed"), (3, "mirrored"), (4, "failed")]
    );
    for i in [0, 1, 3] {
        assert!(
            images[i]["error"]
                .as_str()
                .unwrap()
                .starts_with("not an image reference: "),
            "{}",
            images[i]
        );
        assert!(images[i]["target"].is_null());
    }
}

#[test]
fn dry_run_plans_and_touches_nothing() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("app", "1", 1);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/app:1", src.host),
            "quay.io/jetstack/cert-manager-controller:v1.14.0".into(),
        ],
    );
    ws.config(&single(&dst, ""));
    let out = ws.run().args(["load", "--all", "--dry-run"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "  {}/app:1 -> {}/mirror/app:1 (not at the target)\n",
            src.host, dst.host
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&format!("  quay.io/jetstack/cert-manager-controller:v1.14.0 -> {}/mirror/jetstack/cert-manager-controller:v1.14.0 (cannot check the source: ", dst.host)));
    assert!(dst.catalog().is_empty());
    assert!(!dst.log().contains("\"PUT "), "dry run wrote to the target");
    assert!(
        !src.log().contains("\"GET /v2/app/manifests/"),
        "dry run pulled from the source"
    );
    assert!(
        !docker_ok(&["image", "inspect", &format!("{}/app:1", src.host)]),
        "dry run pulled"
    );
    let planned = ws
        .run()
        .args(["load", "--all", "--dry-run", "--json"])
        .run()
        .json();
    assert_eq!(planned["dryRun"], true);
    assert_eq!(planned["registries"][0]["images"][0]["outcome"], "planned");
}

#[test]
fn delete_local_images_cleans_the_daemon() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("keep", "1", 1);
    src.push_image("drop", "1", 1);
    for (name, delete) in [("keep", false), ("drop", true)] {
        let ws = Workspace::new();
        ws.list_script("sync.sh", &[format!("{}/{name}:1", src.host)]);
        ws.config(&single(&dst, &format!("    deleteLocalImages: {delete}\n")));
        let out = ws.run().args(["load", "--all"]).run();
        assert_eq!(out.code, 0, "{out:?}");
        let source = format!("{}/{name}:1", src.host);
        let target = format!("{}/mirror/{name}:1", dst.host);
        assert!(dst.config_digest(&format!("mirror/{name}"), "1").is_some());
        assert_eq!(
            docker_ok(&["image", "inspect", &source]),
            !delete,
            "{source}"
        );
        assert_eq!(
            docker_ok(&["image", "inspect", &target]),
            !delete,
            "{target}"
        );
    }
}

#[test]
fn empty_display_passes_docker_output_through_prefixed() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("loud", "1", 2);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/loud:1", src.host)]);
    ws.config(&format!("{}display: ''\n", single(&dst, "")));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    let prefix = format!("[{}/loud:1] ", src.host);
    let docker_lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .collect();
    assert!(
        docker_lines
            .iter()
            .any(|l| l.contains("Pulling from loud") || l.contains("Pull complete")),
        "{}",
        out.stderr
    );
    assert!(
        docker_lines.iter().any(|l| l.contains("digest: sha256:")),
        "{}",
        out.stderr
    );
}

#[test]
fn digest_references_pull_by_digest_and_push_a_tag() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("pinned", "1", 1);
    let digest = src.manifest_digest("pinned", "1").expect("pushed");
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/pinned@{digest}", src.host),
            format!("{}/pinned:stable@{digest}", src.host),
        ],
    );
    ws.config(&single(&dst, ""));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    let digest_tag = digest.replacen(':', "-", 1);
    assert_eq!(
        dst.config_digest("mirror/pinned", &digest_tag),
        Some(id.clone())
    );
    assert_eq!(dst.config_digest("mirror/pinned", "stable"), Some(id));
}

#[test]
fn one_image_in_several_spellings_is_mirrored_once() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("dup", "latest", 1);
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            format!("{}/dup", src.host),
            format!("{}/dup:latest", src.host),
            format!("  {}/dup:latest", src.host),
        ],
    );
    ws.config(&single(&dst, ""));
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    let report = out.json();
    assert_eq!(
        report["registries"][0]["images"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert_eq!(report["registries"][0]["mirrored"], 1);
    assert_eq!(dst.config_digest("mirror/dup", "latest"), Some(id));
    assert_eq!(
        src.count("GET", "/v2/dup/manifests/sha256:", false),
        1,
        "pulled once"
    );
}

#[test]
fn sigterm_stops_load_within_the_bound_and_leaves_nothing_behind() {
    let port = hanging_registry();
    let dst = Registry::start();
    let ws = Workspace::new();
    let stuck = format!("127.0.0.1:{port}/stuck:1");
    ws.list_script(
        "sync.sh",
        &[
            stuck.clone(),
            format!("127.0.0.1:{port}/also-stuck:1"),
            format!("127.0.0.1:{port}/never:1"),
        ],
    );
    let auth = format!(r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"dTpw"}}}}}}"#);
    ws.config(&single(
        &dst,
        &format!("    pullAuthConfig: '{auth}'\n    parallel: 2\n"),
    ));
    let running = ws.run().args(["load", "--all"]).spawn();
    let pulling = format!("pull {stuck}");
    let started = eventually(Duration::from_secs(30), || {
        !processes_with(&pulling).is_empty() && ws.private_dirs().len() == 2
    });
    assert!(
        started,
        "the two parallel pulls, each with a private docker config, never started"
    );
    running.signal("TERM");
    let out = running.wait(Duration::from_secs(120));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.elapsed < Duration::from_secs(60),
        "took {:?}",
        out.elapsed
    );
    let stopped = format!("docker pull {stuck} was stopped: picture-book is shutting down");
    assert!(out.all().contains(&stopped), "{}", out.all());
    assert!(
        out.stdout.contains("not attempted: 127.0.0.1:"),
        "{}",
        out.stdout
    );
    assert_eq!(
        processes_with(&pulling),
        Vec::<String>::new(),
        "a docker child outlived picture-book"
    );
    assert_eq!(
        ws.private_dirs(),
        Vec::<std::path::PathBuf>::new(),
        "the private docker config was left behind"
    );
}

/// A fake registry for a fault a real one cannot be made to show on demand:
/// it answers docker's `/v2/` ping, then never answers docker's other
/// requests, so a pull from it hangs. picture-book's own checks get a 404,
/// so that the hang is in docker, where the shutdown bound applies. Returns
/// its port.
pub fn hanging_registry() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = crate::harness::listen();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut request = String::new();
                    if reader.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut header, mut ours) = (String::new(), false);
                    while reader.read_line(&mut header).unwrap_or(0) > 2 {
                        ours |= header
                            .to_ascii_lowercase()
                            .starts_with("user-agent: picture-book/");
                        header.clear();
                    }
                    let (status, body) = match (ours, request.starts_with("GET /v2/ ")) {
                        (true, _) => ("404 Not Found", "{}"),
                        (false, true) => ("200 OK", "{}"),
                        (false, false) => {
                            std::thread::sleep(Duration::from_secs(3600));
                            return;
                        }
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    port
}
