//! `picture-book sync`, the daemon, as an operator drives it: the real binary
//! with second-granularity schedules, against the shared docker daemon and
//! real registries, queried and controlled over its HTTP API with ureq.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    Outcome, Registry, Run, Running, Workspace, eventually, free_port, processes_with,
};
use crate::load::hanging_registry;

const TOKEN: &str = "tok-5e2f-a8c1";

/// A running daemon and how to reach its API.
pub struct Daemon {
    running: Option<Running>,
    port: u16,
    token: Option<String>,
}

impl Daemon {
    /// Starts `picture-book sync` in `ws` with `registries` (YAML list items)
    /// and the API on a free port, and waits until it answers.
    pub fn start(ws: &Workspace, registries: &str, token: Option<&str>) -> Daemon {
        Daemon::start_with(ws, registries, token, |run| run)
    }

    /// As [`Daemon::start`], with the run set up by `setup` first.
    pub fn start_with(
        ws: &Workspace,
        registries: &str,
        token: Option<&str>,
        setup: impl FnOnce(Run) -> Run,
    ) -> Daemon {
        let port = free_port();
        ws.config(&config_text(registries, port, token));
        let running = setup(ws.run()).args(["-v", "sync"]).spawn();
        let d = Daemon {
            running: Some(running),
            port,
            token: token.map(String::from),
        };
        let up = eventually(Duration::from_secs(20), || {
            d.raw("GET", "/healthz", None)
                .is_ok_and(|(s, _, _)| s == 200)
        });
        assert!(up, "the daemon's API never came up");
        d
    }

    /// A request with the daemon's token (when it has one).
    pub fn call(&self, method: &str, path: &str) -> (u16, Value) {
        let (status, _, body) = self
            .raw(method, path, self.token.as_deref())
            .expect("the API answers");
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Status, `WWW-Authenticate` and body of a request with `token`.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<(u16, Option<String>, String), ureq::Error> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut resp = match (method, token) {
            ("GET", None) => agent.get(&url).call()?,
            ("GET", Some(t)) => agent
                .get(&url)
                .header("Authorization", &format!("Bearer {t}"))
                .call()?,
            ("POST", None) => agent.post(&url).send_empty()?,
            ("POST", Some(t)) => agent
                .post(&url)
                .header("Authorization", &format!("Bearer {t}"))
                .send_empty()?,
            ("PUT", _) => agent.put(&url).send_empty()?,
            ("DELETE", _) => agent.delete(&url).call()?,
            (m, _) => panic!("method {m}"),
        };
        let challenge = resp
            .headers()
            .get("WWW-Authenticate")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        Ok((
            resp.status().as_u16(),
            challenge,
            resp.body_mut().read_to_string()?,
        ))
    }

    pub fn status(&self, host: &str) -> Value {
        self.get(&format!("/ops?sync={host}&action=details"))["status"].clone()
    }

    pub fn syncs(&self, host: &str) -> u64 {
        self.status(host)["numberOfSyncs"].as_u64().unwrap()
    }

    /// The port of its API.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.running.as_ref().unwrap().pid
    }

    pub fn signal(&self, signal: &str) {
        self.running.as_ref().unwrap().signal(signal);
    }

    /// SIGTERM, then the outcome.
    pub fn stop(mut self) -> Outcome {
        let running = self.running.take().unwrap();
        running.signal("TERM");
        running.wait(Duration::from_secs(90))
    }
}

pub fn config_text(registries: &str, port: u16, token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| {
        format!("  enableAuth: true\n  authToken: {t}\n")
    });
    format!("registries:\n{registries}api:\n  enabled: true\n  port: {port}\n{auth}")
}

pub fn registry_entry(target: &Registry, period: &str, extra: &str) -> String {
    format!(
        "  - hostname: '{}'\n    repository: mirror\n    syncPeriod: '{period}'\n    syncerScript: sync.sh\n{extra}",
        target.host
    )
}

#[test]
fn runs_on_schedule_and_reports_status_and_metrics() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("app", "1", 2);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let d = Daemon::start(&ws, &registry_entry(&dst, "*/2 * * * * *", ""), None);
    assert!(
        eventually(Duration::from_secs(30), || d.syncs(&dst.host) >= 2),
        "fewer than 2 runs in 30s"
    );
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
    let status = d.status(&dst.host);
    assert_eq!(status["lastRun"]["outcome"], "success", "{status}");
    let last = &status["lastRun"];
    assert_eq!(
        (last["mirrored"].as_u64(), last["upToDate"].as_u64()),
        (Some(0), Some(1)),
        "a later run finds the image up to date: {status}"
    );
    assert_eq!(status["syncPeriod"], "*/2 * * * * *");
    assert!(
        status["created"].is_string() && status["nextRun"].is_string(),
        "{status}"
    );
    let active = d.get("/list?type=active");
    assert_eq!(active["synchronizers"][0]["hostname"], dst.host);
    let (code, metrics) = d.call("GET", "/metrics");
    assert_eq!(code, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    let success = format!(
        "picture_book_runs_total{{registry=\"{}\",outcome=\"success\"}} ",
        dst.host
    );
    let runs: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&success))
        .unwrap()
        .parse()
        .unwrap();
    assert!(runs >= 2.0, "{metrics}");
    let out = d.stop();
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn pause_stops_scheduling_and_resume_restarts_it() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("app", "1", 1);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let d = Daemon::start(&ws, &registry_entry(&dst, "* * * * * *", ""), None);
    assert!(eventually(Duration::from_secs(20), || d.syncs(&dst.host) >= 1));
    let (code, paused) = d.call("POST", &format!("/ops?sync={}&action=pause", dst.host));
    assert_eq!(
        (code, &paused["paused"]),
        (200, &Value::Bool(true)),
        "{paused}"
    );
    assert!(eventually(Duration::from_secs(20), || d.status(&dst.host)
        ["running"]
        == false));
    let before = d.syncs(&dst.host);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(d.syncs(&dst.host), before, "runs went on while paused");
    assert_eq!(
        d.get("/list?type=active")["synchronizers"],
        serde_json::json!([])
    );
    let status = d.status(&dst.host);
    assert_eq!(
        (status["paused"].clone(), status["nextRun"].clone()),
        (Value::Bool(true), Value::Null)
    );
    let resumed = d.get(&format!("/ops?sync={}&action=resume", dst.host));
    let next = chrono::DateTime::parse_from_rfc3339(resumed["nextRun"].as_str().unwrap()).unwrap();
    let wait = next
        .signed_duration_since(chrono::Local::now())
        .num_milliseconds();
    assert!(
        (-5000..=5000).contains(&wait),
        "next run of a per-second schedule is {wait} ms away"
    );
    assert!(
        eventually(Duration::from_secs(20), || d.syncs(&dst.host) > before),
        "no run after resume"
    );
    assert_eq!(d.stop().code, 0);
}

#[test]
fn run_now_conflicts_and_schedule_changes() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("app", "1", 1);
    let ws = Workspace::new();
    ws.script("sync.sh", &format!("sleep 2\necho {}/app:1", src.host));
    let d = Daemon::start(&ws, &registry_entry(&dst, "0 0 0 1 1 *", ""), None);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.syncs(&dst.host), 0, "a yearly schedule ran");
    let (code, body) = d.call("POST", &format!("/ops?sync={}&action=run", dst.host));
    assert_eq!(code, 202, "{body}");
    let (code, body) = d.call("GET", &format!("/ops?sync={}&action=run", dst.host));
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already in progress")
    );
    assert!(eventually(Duration::from_secs(30), || d.syncs(&dst.host) == 1));
    assert!(dst.config_digest("mirror/app", "1").is_some());
    let (code, body) = d.call(
        "GET",
        &format!("/ops?sync={}&action=schedule&period=*+*+*", dst.host),
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = d.call(
        "POST",
        &format!(
            "/ops?sync={}&action=schedule&period=*/1+*+*+*+*+*",
            dst.host
        ),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not written to the configuration file")
    );
    let status = d.status(&dst.host);
    assert_eq!(
        (
            status["syncPeriod"].clone(),
            status["scheduleOverridden"].clone()
        ),
        ("*/1 * * * * *".into(), Value::Bool(true))
    );
    assert!(
        eventually(Duration::from_secs(30), || d.syncs(&dst.host) >= 3),
        "the new schedule did not run"
    );
    assert_eq!(d.stop().code, 0);
}

/// A syncer script that lists nothing, marks its start and end in a file
/// and takes `seconds` in between; returns the file.
/// Panics when the marks `marking_script` left show two runs at once.
pub fn assert_never_overlapped(marks: &std::path::Path) {
    let marks = fs::read_to_string(marks).unwrap();
    let mut depth = 0;
    for line in marks.lines() {
        depth += if line == "start" { 1 } else { -1 };
        assert!((0..=1).contains(&depth), "runs overlapped: {marks}");
    }
}

pub fn marking_script(ws: &Workspace, seconds: u32) -> std::path::PathBuf {
    let marks = ws.dir.join("marks");
    let body = format!(
        "echo start >> {m}\nsleep {seconds}\necho end >> {m}",
        m = marks.display()
    );
    ws.script("sync.sh", &body);
    marks
}

#[test]
fn a_due_time_during_a_run_is_skipped_never_overlapped() {
    let dst = Registry::start();
    let ws = Workspace::new();
    let marks = marking_script(&ws, 3);
    let d = Daemon::start(&ws, &registry_entry(&dst, "* * * * * *", ""), None);
    assert!(eventually(Duration::from_secs(30), || d.syncs(&dst.host) >= 2));
    let status = d.status(&dst.host);
    assert!(status["skippedRuns"].as_u64().unwrap() >= 2, "{status}");
    let out = d.stop();
    assert!(
        out.stderr
            .contains("skipped: previous run still in progress"),
        "{}",
        out.stderr
    );
    assert_never_overlapped(&marks);
}

#[test]
fn authentication_and_no_secret_in_any_answer_or_log() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("app", "1", 1);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let pull = r#"{"auths":{"src.example.com":{"auth":"cHVsbGVyOnB1bGwtcGFzcy05ZDE="}}}"#;
    let push = r#"{"auths":{"dst.example.com":{"username":"pusher","password":"push-pass-77b"}}}"#;
    ws.secret_file("push.json", push);
    let extra = format!("    pullAuthConfig: '{pull}'\n    pushAuthConfigFile: push.json\n");
    let d = Daemon::start(
        &ws,
        &registry_entry(&dst, "* * * * * *", &extra),
        Some(TOKEN),
    );
    let path = "/list?type=configured";
    let (status, challenge, _) = d.raw("GET", path, None).unwrap();
    assert_eq!(
        (
            status,
            challenge.as_deref().map(|c| c.starts_with("Bearer"))
        ),
        (401, Some(true))
    );
    for wrong in ["nope", "tok-5e2f", "tok-5e2f-a8c1x", "TOK-5E2F-A8C1"] {
        assert_eq!(
            d.raw("GET", path, Some(wrong)).unwrap().0,
            401,
            "token {wrong}"
        );
    }
    assert_eq!(d.raw("GET", path, Some(TOKEN)).unwrap().0, 200);
    assert_eq!(d.raw("GET", "/healthz", None).unwrap().0, 200);

    let mut answers = String::new();
    for path in [
        "/list?type=configured".to_string(),
        "/list?type=active".into(),
        format!("/ops?sync={}&action=details", dst.host),
        "/metrics".into(),
        "/ops?sync=nope&action=details".into(),
        "/ops?sync=x".into(),
        "/nothing".into(),
    ] {
        answers.push_str(&d.raw("GET", &path, Some(TOKEN)).unwrap().2);
        answers.push_str(&d.raw("GET", &path, Some("wrong")).unwrap().2);
    }
    assert!(answers.contains("<redacted>"), "{answers}");
    assert!(eventually(Duration::from_secs(20), || d.syncs(&dst.host) >= 1));
    let out = d.stop();
    let everything = format!("{answers}\n{}", out.all());
    for secret in [
        "cHVsbGVyOnB1bGwtcGFzcy05ZDE=",
        "pull-pass-9d1",
        "push-pass-77b",
        TOKEN,
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
}

#[test]
fn sigterm_during_a_run_exits_0_and_leaves_no_docker_child() {
    let port = hanging_registry();
    let dst = Registry::start();
    let ws = Workspace::new();
    let stuck = format!("127.0.0.1:{port}/stuck:1");
    ws.list_script("sync.sh", std::slice::from_ref(&stuck));
    // With credentials, so that the pull has a private docker config.
    let auth = r#"{"auths":{"example.invalid":{"auth":"dTpw"}}}"#;
    let extra = format!("    pullAuthConfig: '{auth}'\n");
    let d = Daemon::start(&ws, &registry_entry(&dst, "* * * * * *", &extra), None);
    let pulling = format!("pull {stuck}");
    assert!(
        eventually(Duration::from_secs(30), || !processes_with(&pulling)
            .is_empty()),
        "the pull never started"
    );
    assert_eq!(ws.private_dirs().len(), 1, "the pull's private config");
    let signalled = Instant::now();
    let out = d.stop();
    let took = signalled.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        took < Duration::from_secs(30 + 10),
        "shutdown took {took:?}"
    );
    assert!(
        out.stderr
            .contains("was stopped: picture-book is shutting down"),
        "{}",
        out.stderr
    );
    assert_eq!(
        processes_with(&pulling),
        Vec::<String>::new(),
        "a docker child outlived the daemon"
    );
    assert!(ws.private_dirs().is_empty(), "{:?}", ws.private_dirs());
}

/// A debugger that calls a function in the daemon interrupts the system
/// call its main thread waits for signals in; the kernel can then end that
/// call with its internal ERESTARTSYS (512), as it does here whether or not
/// gdb manages the call (on some machines it cannot restore the registers:
/// "Couldn't write extended state status"). The daemon lives on, and its
/// signals still work: a reload, then a stop with exit 0.
#[test]
fn a_debugger_calling_into_the_daemon_leaves_it_running() {
    let (one, two) = (Registry::start(), Registry::start());
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[]);
    let d = Daemon::start(&ws, &registry_entry(&one, "0 0 1 1 *", ""), None);
    for _ in 0..3 {
        let gdb = std::process::Command::new("gdb")
            .args(["-batch", "-p", &d.pid().to_string()])
            .args(["-ex", "call (int)getpid()"])
            .output()
            .expect("run gdb (Debian package gdb)");
        let said = String::from_utf8_lossy(&gdb.stdout);
        assert!(
            said.contains(&format!("process {}) detached", d.pid())),
            "gdb did not attach: {said}{}",
            String::from_utf8_lossy(&gdb.stderr)
        );
        let health = d.raw("GET", "/healthz", None).map(|(status, _, _)| status);
        assert!(
            matches!(health, Ok(200)),
            "the daemon stopped answering after gdb: {health:?}"
        );
    }
    ws.config(&config_text(
        &registry_entry(&two, "0 0 1 1 *", ""),
        d.port,
        None,
    ));
    d.signal("HUP");
    let hosts = || d.get("/list?type=configured")["registries"][0]["hostname"].clone();
    assert!(
        eventually(Duration::from_secs(10), || hosts() == two.host.as_str()),
        "no reload after the debugger: {}",
        hosts()
    );
    let out = d.stop();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn sighup_reloads_and_a_broken_config_keeps_the_old_one() {
    let (one, two) = (Registry::start(), Registry::start());
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[]);
    let d = Daemon::start(&ws, &registry_entry(&one, "* * * * * *", ""), None);
    assert!(eventually(Duration::from_secs(20), || d.syncs(&one.host) >= 1));
    ws.config("registries:\n  - hostname: ''\n    syncerScript: missing.sh\n");
    d.signal("HUP");
    std::thread::sleep(Duration::from_secs(1));
    let before = d.syncs(&one.host);
    assert!(
        eventually(Duration::from_secs(20), || d.syncs(&one.host) > before),
        "the old configuration stopped running"
    );
    assert_eq!(
        d.get("/list?type=configured")["registries"][0]["hostname"],
        one.host
    );

    ws.config(&config_text(
        &registry_entry(&two, "* * * * * *", ""),
        d.port,
        None,
    ));
    d.signal("HUP");
    let hosts = || -> Vec<String> {
        d.get("/list?type=configured")["registries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["hostname"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(10), || hosts() == [two.host.clone()]),
        "{:?}",
        hosts()
    );
    let (code, _) = d.call("GET", &format!("/ops?sync={}&action=details", one.host));
    assert_eq!(code, 404, "a removed registry still answers");

    // A kept registry takes its new settings.
    ws.config(&config_text(
        &registry_entry(&two, "*/2 * * * * *", "    parallel: 3\n"),
        d.port,
        None,
    ));
    d.signal("HUP");
    let settings =
        || d.get(&format!("/ops?sync={}&action=details", two.host))["configuration"].clone();
    assert!(
        eventually(Duration::from_secs(10), || settings()["syncPeriod"]
            == "*/2 * * * * *"
            && settings()["parallel"] == 3),
        "{}",
        settings()
    );
    assert!(
        eventually(Duration::from_secs(20), || d.syncs(&two.host) >= 1),
        "the new registry never ran"
    );
    let out = d.stop();
    assert_eq!(out.code, 0);
    assert!(
        out.stderr
            .contains(&format!("{}: synchronizer stopped", one.host)),
        "the removed registry's thread did not end: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("keeping the running configuration"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("registries[0].hostname: must not be empty"),
        "{}",
        out.stderr
    );
}

#[test]
fn refuses_to_start_on_a_bad_config() {
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[]);
    ws.config("registries:\n  - hostname: r.example.com\n    syncerScript: sync.sh\n    syncPeriod: '* * * * * * * *'\n");
    let out = ws.run_without_daemon(&["sync"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("registries[0].syncPeriod"),
        "{}",
        out.stderr
    );
    ws.config("registries:\n  - hostname: r.example.com\n    syncerScript: sync.sh\napi:\n  enabled: true\n  enableAuth: true\n");
    let out = ws.run_without_daemon(&["sync"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("api.authToken: is required when api.enableAuth is true"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_registry_removed_and_added_back_during_a_run_never_overlaps_itself() {
    let dst = Registry::start();
    let ws = Workspace::new();
    let marks = marking_script(&ws, 4);
    let entry = registry_entry(&dst, "0 0 0 1 1 *", "");
    let d = Daemon::start(&ws, &entry, None);
    let (code, body) = d.call("POST", &format!("/ops?sync={}&action=run", dst.host));
    assert_eq!(code, 202, "{body}");
    assert!(
        eventually(Duration::from_secs(5), || fs::read_to_string(&marks)
            .is_ok()),
        "the run never started"
    );
    let other = Registry::start();
    ws.config(&config_text(
        &registry_entry(&other, "0 0 0 1 1 *", ""),
        d.port,
        None,
    ));
    d.signal("HUP");
    let gone = || {
        d.call("GET", &format!("/ops?sync={}&action=details", dst.host))
            .0
            == 404
    };
    assert!(
        eventually(Duration::from_secs(10), gone),
        "the registry was not removed"
    );
    ws.config(&config_text(&entry, d.port, None));
    d.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || !gone()),
        "the registry did not come back"
    );
    let run = || {
        d.call("POST", &format!("/ops?sync={}&action=run", dst.host))
            .0
    };
    assert!(
        eventually(Duration::from_secs(20), || run() == 202),
        "no second run"
    );
    assert!(eventually(Duration::from_secs(20), || fs::read_to_string(
        &marks
    )
    .unwrap()
    .matches("end")
    .count()
        == 2));
    let marks = fs::read_to_string(&marks).unwrap();
    assert_eq!(marks, "start\nend\nstart\nend\n", "runs overlapped");
    assert_eq!(d.stop().code, 0);
}

#[test]
fn expired_tokens_are_refreshed_between_runs() {
    let (upstream, dst) = (Registry::start(), Registry::start());
    upstream.push_image("app", "1", 1);
    let front = crate::token::TokenFront::start(&upstream, "reader", "reader-pass-4f", 1);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", front.host)]);
    let auth = format!(
        r#"{{"auths":{{"{}":{{"username":"reader","password":"reader-pass-4f"}}}}}}"#,
        front.host
    );
    let extra = format!("    pullAuthConfig: '{auth}'\n");
    let d = Daemon::start(&ws, &registry_entry(&dst, "*/2 * * * * *", &extra), None);
    assert!(
        eventually(Duration::from_secs(40), || d.syncs(&dst.host) >= 3),
        "fewer than 3 runs"
    );
    let status = d.status(&dst.host);
    assert_eq!(status["lastRun"]["upToDate"], 1, "{status}");
    let ours: Vec<_> = front.seen().into_iter().filter(|s| s.ours()).collect();
    let tokens = ours.iter().filter(|s| s.url.starts_with("/token")).count();
    let refused = ours.iter().filter(|s| s.status == 401).count();
    assert!(
        tokens >= 3,
        "a token that lives 1 s was reused across runs: {ours:#?}"
    );
    assert_eq!(
        refused, 1,
        "only the first request learns the challenge: {ours:#?}"
    );
    assert_eq!(d.stop().code, 0);
}
