//! The command line and configuration as an operator meets them: help,
//! usage errors, config discovery and validation, `check`, and what happens
//! when docker is missing or unreachable. No registry is needed here.

use crate::harness::Workspace;

fn seed(ws: &Workspace) {
    ws.list_script("sync.sh", &["alpine:3.19".to_string()]);
    ws.config(
        "registries:\n  - hostname: 'my-registry.com'\n    repository: 'test-images'\n    syncPeriod: '30 4 * * 1-5'\n    syncerScript: 'sync.sh'\n  - hostname: 'other.example.com:5000'\n    syncerScript: 'sync.sh'\n",
    );
}

#[test]
fn help_reads_well_and_exits_0() {
    let ws = Workspace::new();
    let main = ws.run_without_daemon(&["--help"]);
    assert_eq!(main.code, 0);
    for word in ["load", "check", "sync", "--config", "Exit status"] {
        assert!(
            main.stdout.contains(word),
            "{word} missing from --help:\n{}",
            main.stdout
        );
    }
    let load = ws.run_without_daemon(&["load", "--help"]);
    assert_eq!(load.code, 0);
    for word in ["--registry <HOST>", "--all", "--dry-run", "--json"] {
        assert!(
            load.stdout.contains(word),
            "{word} missing from load --help"
        );
    }
    let version = ws.run_without_daemon(&["--version"]);
    assert_eq!(
        version.stdout,
        format!("picture-book {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let ws = Workspace::new();
    seed(&ws);
    let cases: &[(&[&str], &str)] = &[
        (&["load", "--all", "--bogus"], "unknown option '--bogus'"),
        (&["load", "--all", "stray"], "unexpected argument 'stray'"),
        (&["load"], "load needs --registry HOST or --all"),
        (&[], "a command is required"),
        (&["frobnicate"], "unknown command 'frobnicate'"),
    ];
    for (args, want) in cases {
        let out = ws.run().without_daemon().args(*args).run();
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

#[test]
fn unknown_registry_lists_the_configured_ones() {
    let ws = Workspace::new();
    seed(&ws);
    let out = ws.run_without_daemon(&["load", "--registry", "nope.example.com"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no registry 'nope.example.com' in the configuration; configured: my-registry.com, other.example.com:5000"),
        "{}",
        out.stderr
    );
}

#[test]
fn config_is_found_by_flag_env_and_working_directory() {
    let ws = Workspace::new();
    seed(&ws);
    let elsewhere = Workspace::new();
    let by_flag = elsewhere.run_without_daemon(&[
        "--config",
        ws.dir.join("config.yaml").to_str().unwrap(),
        "check",
    ]);
    assert_eq!(by_flag.code, 0, "{by_flag:?}");
    let by_env = elsewhere
        .run()
        .without_daemon()
        .env("PICTURE_BOOK_CONFIG", ws.dir.join("config.yaml"))
        .args(["check"])
        .run();
    assert_eq!(by_env.code, 0, "{by_env:?}");
    assert_eq!(by_env.stdout, by_flag.stdout);
    let by_cwd = ws.run_without_daemon(&["check"]);
    assert_eq!(by_cwd.code, 0, "{by_cwd:?}");
    let missing = elsewhere
        .run()
        .without_daemon()
        .env("PICTURE_BOOK_CONFIG", "/nonexistent/pb.yaml")
        .args(["check"])
        .run();
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("cannot read configuration /nonexistent/pb.yaml"),
        "{}",
        missing.stderr
    );
    if !std::path::Path::new("/etc/picture-book/config.yaml").exists() {
        let none = elsewhere.run_without_daemon(&["check"]);
        assert_eq!(none.code, 2);
        assert!(
            none.stderr
                .contains("looked at: ./config.yaml, /etc/picture-book/config.yaml"),
            "{}",
            none.stderr
        );
    }
}

#[test]
fn relative_script_resolves_against_the_config_directory() {
    let ws = Workspace::new();
    seed(&ws);
    let out = Workspace::new()
        .run()
        .without_daemon()
        .args([
            "--config",
            ws.dir.join("config.yaml").to_str().unwrap(),
            "load",
            "--all",
            "--dry-run",
        ])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("alpine:3.19 -> my-registry.com/test-images/alpine:3.19"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("alpine:3.19 -> other.example.com:5000/alpine:3.19"),
        "{}",
        out.stdout
    );
}

#[test]
fn invalid_config_lists_every_problem_and_runs_nothing() {
    let ws = Workspace::new();
    let marker = ws.dir.join("ran");
    ws.script(
        "sync.sh",
        &format!("touch {}\necho alpine", marker.display()),
    );
    ws.config(
        "registries:\n  - hostname: good.example.com\n    syncerScript: sync.sh\n  - hostname: ''\n    syncerScript: missing.sh\n    syncPeriod: '* * *'\n",
    );
    let out = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(out.code, 2, "{out:?}");
    for want in [
        "registries[1].hostname: must not be empty",
        "registries[1].syncPeriod: '* * *' has 3 fields",
        "registries[1].syncerScript:",
        "does not exist",
    ] {
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
    }
    assert!(!marker.exists(), "a bad config must not half-run");
    let check = ws.run_without_daemon(&["check"]);
    assert_eq!(check.code, 2);
}

#[test]
fn secret_files_others_may_read_are_refused_and_group_readable_ones_warned_of() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[]);
    let auth = ws.file(
        "push.json",
        r#"{"auths":{"r.example.com":{"auth":"dTpw"}}}"#,
    );
    let token = ws.file("token", "s3cret-token");
    ws.config("registries:\n  - hostname: r.example.com\n    syncerScript: sync.sh\n    pushAuthConfigFile: push.json\napi:\n  enabled: true\n  enableAuth: true\n  authTokenFile: token\n");
    let mode = |path: &std::path::Path, m: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&auth, 0o644);
    mode(&token, 0o604);
    let out = ws.run_without_daemon(&["check"]);
    assert_eq!(out.code, 2, "{out:?}");
    for (key, file) in [
        ("registries[0].pushAuthConfigFile", &auth),
        ("api.authTokenFile", &token),
    ] {
        assert!(
            out.stderr.contains(&format!(
                "{key}: {} holds a secret but every user may read it",
                file.display()
            )),
            "{}",
            out.stderr
        );
    }
    assert!(!out.all().contains("s3cret-token"));
    mode(&auth, 0o640);
    mode(&token, 0o600);
    let out = ws.run_without_daemon(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("holds a secret and its group may read it (mode 0640)"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[]);
    ws.config("registries:\n  - hostname: r.example.com\n    syncerScript: sync.sh\n    deleteLocalImage: true\n");
    let out = ws.run_without_daemon(&["check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("registries[0]: unknown field `deleteLocalImage`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("line 4"), "{}", out.stderr);
}

#[test]
fn check_prints_three_runs_in_local_time() {
    let ws = Workspace::new();
    seed(&ws);
    let out = ws
        .run()
        .without_daemon()
        .env("TZ", "IST-5:30")
        .args(["check"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let fields: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(fields[..2], ["my-registry.com", "docker"]);
    assert_eq!(fields.len(), 5, "{}", lines[0]);
    for t in &fields[2..] {
        let parsed = chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339");
        assert_eq!(
            parsed.offset().local_minus_utc(),
            5 * 3600 + 1800,
            "TZ is honoured: {t}"
        );
        assert!(t.contains("T04:30:00"), "{t}");
        let weekday = chrono::Datelike::weekday(&parsed);
        assert!(
            !matches!(weekday, chrono::Weekday::Sat | chrono::Weekday::Sun),
            "{t}"
        );
    }
    assert_eq!(lines[1], "other.example.com:5000 docker unscheduled");
}

#[test]
fn docker_not_installed_is_said_once() {
    let ws = Workspace::new();
    seed(&ws);
    let empty = ws.dir.join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let out = ws
        .run()
        .without_daemon()
        .env("PATH", &empty)
        .args(["load", "--all"])
        .run();
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.matches("command not found: docker").count(),
        1,
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("my-registry.com: failed"),
        "{}",
        out.stdout
    );
}

#[test]
fn unreachable_daemon_is_said_once() {
    let ws = Workspace::new();
    seed(&ws);
    let out = ws
        .run()
        .without_daemon()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["load", "--all", "--json"])
        .run();
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.matches("cannot reach the docker daemon").count(),
        1,
        "{}",
        out.stderr
    );
    let report: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("JSON report even when docker is down");
    assert!(
        report["registries"][0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the docker daemon")
    );
}

#[test]
fn script_arguments_are_split_like_a_shell_and_passed_as_words() {
    let ws = Workspace::new();
    let args_file = ws.dir.join("args");
    ws.script(
        "sync.sh",
        &format!(
            "for a in \"$@\"; do printf '%s\\n' \"$a\" >> {}; done\necho alpine",
            args_file.display()
        ),
    );
    ws.config(concat!(
        "registries:\n  - hostname: r.example.com\n    syncerScript: sync.sh\n",
        "    syncerScriptArgs: >-\n      --channel \"stable 2\" \"it's\" '$HOME' a\\ b\n",
    ));
    let out = ws.run_without_daemon(&["load", "--all", "--dry-run"]);
    assert_eq!(out.code, 0, "{out:?}");
    let got = std::fs::read_to_string(&args_file).unwrap();
    assert_eq!(got, "--channel\nstable 2\nit's\n$HOME\na b\n");
}

#[test]
fn spellings_of_one_image_plan_once_and_collisions_fail() {
    let ws = Workspace::new();
    ws.list_script(
        "sync.sh",
        &[
            "alpine".into(),
            "alpine:latest".into(),
            "docker.io/library/alpine".into(),
            "quay.io/x/app:1".into(),
            "ghcr.io/x/app:1".into(),
        ],
    );
    ws.config(
        "registries:\n  - hostname: r.example.com\n    repository: m\n    syncerScript: sync.sh\n",
    );
    let out = ws.run_without_daemon(&["load", "--all", "--dry-run", "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let images = report["registries"][0]["images"].as_array().unwrap();
    let rows: Vec<String> = images
        .iter()
        .map(|i| {
            format!(
                "{} {} {}",
                i["line"],
                i["target"].as_str().unwrap(),
                i["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "1 r.example.com/m/alpine:latest planned",
            "3 r.example.com/m/library/alpine:latest planned",
            "4 r.example.com/m/x/app:1 planned",
            "5 r.example.com/m/x/app:1 failed",
        ]
    );
    assert_eq!(
        images[3]["error"],
        "maps to r.example.com/m/x/app:1, which line 4 (quay.io/x/app:1) already fills; not mirrored"
    );
}

#[test]
fn check_names_what_keeps_a_script_from_starting_and_the_line_of_a_duplicate() {
    let ws = Workspace::new();
    let crlf = ws.file("crlf.sh", "#!/bin/sh\r\necho alpine\r\n");
    let missing = ws.file(
        "missing.sh",
        "#!/usr/local/bin/no-such-shell\necho alpine\n",
    );
    for script in [&crlf, &missing] {
        std::fs::set_permissions(script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    ws.config("registries:\n  - hostname: a.example.com\n    syncerScript: crlf.sh\n  - hostname: b.example.com\n    syncerScript: missing.sh\n");
    let out = ws.run_without_daemon(&["check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "registries[0].syncerScript: {} cannot run: its first line ends in a carriage return (the file has CRLF line ends)",
            crlf.display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "registries[1].syncerScript: {} cannot run: its interpreter /usr/local/bin/no-such-shell (on its #! line) does not exist",
            missing.display()
        )),
        "{}",
        out.stderr
    );
    let load = ws.run_without_daemon(&["load", "--all"]);
    assert_eq!(load.code, 2, "the same check before a run: {load:?}");
    ws.list_script("sync.sh", &[]);
    let lines = [
        "registries:",
        "  - hostname: a.example.com",
        "    syncerScript: sync.sh",
        "    # the next key is given twice",
        "    parallel: 2",
        "    retries: 1",
        "    parallel: 3",
    ];
    ws.config(&lines.join("\n"));
    let dup = ws.run_without_daemon(&["check"]);
    assert!(
        dup.stderr
            .contains("registries[0]: duplicate field `parallel` at line 7"),
        "{}",
        dup.stderr
    );
}

#[test]
fn the_test_command_tells_a_user_without_the_packages_the_one_line_to_run() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/deps.sh");
    let out = std::process::Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            "env",
            "DEPS_PACKAGES=bash pb-no-such-package-1 pb-no-such-package-2",
        ])
        .arg(&script)
        .arg("test")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "missing packages; install them with:\n  sudo apt-get install -y pb-no-such-package-1 pb-no-such-package-2\n"
    );
    let present = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "env", "DEPS_PACKAGES=bash coreutils"])
        .arg(&script)
        .arg("demo")
        .output()
        .unwrap();
    assert!(present.status.success(), "{present:?}");
}
