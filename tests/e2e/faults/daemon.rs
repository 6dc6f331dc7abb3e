//! picture-book itself killed outright, panicking, or stuck in a script;
//! a script stopped by a signal, and what a script leaves running.

use std::fs;
use std::time::{Duration, Instant};

use super::records_hold;
use crate::harness::{Registry, Workspace, eventually, processes_with, single};
use crate::sync::{Daemon, registry_entry};

#[test]
fn sigkill_mid_run_then_a_restart_completes_the_mirror() {
    let (src, dst) = (Registry::start(), Registry::start());
    let tags = ["1", "2", "3", "4", "5", "6"];
    let ids: Vec<String> = tags.iter().map(|t| src.push_image("app", t, 3)).collect();
    let ws = Workspace::new();
    ws.list_script("sync.sh", &tags.map(|t| format!("{}/app:{t}", src.host)));
    // Credentials, so that private docker config directories exist mid-run.
    let auth = r#"{"auths":{"example.invalid":{"auth":"dTpw"}}}"#;
    let entry = registry_entry(
        &dst,
        "0 0 0 1 1 *",
        &format!("    parallel: 1\n    pullAuthConfig: '{auth}'\n"),
    );
    let d = Daemon::start(&ws, &entry, None);
    let run = format!("/ops?sync={}&action=run", dst.host);
    assert_eq!(d.call("POST", &run).0, 202);
    assert!(eventually(Duration::from_secs(60), || dst
        .manifest_digest("mirror/app", "2")
        .is_some()));
    d.signal("KILL");
    drop(d);
    let state = ws.dir.join("state");
    // The state file is whole, and holds nothing that did not arrive.
    let before_restart = records_hold(&state, &dst);
    // docker children die with picture-book.
    assert!(
        eventually(Duration::from_secs(5), || processes_with(&format!(
            " {}/app:",
            src.host
        ))
        .is_empty()),
        "a docker command outlived picture-book"
    );

    let d = Daemon::start(&ws, &entry, None);
    assert!(
        eventually(Duration::from_secs(10), || ws.private_dirs().is_empty()),
        "the private directories of the killed process were not removed: {:?}",
        ws.private_dirs()
    );
    assert_eq!(d.call("POST", &run).0, 202);
    assert!(eventually(Duration::from_secs(90), || d.syncs(&dst.host) == 1));
    assert_eq!(d.status(&dst.host)["lastRun"]["outcome"], "success");
    for (tag, id) in tags.iter().zip(&ids) {
        assert_eq!(dst.config_digest("mirror/app", tag).as_ref(), Some(id));
    }
    assert!(before_restart < tags.len());
    assert_eq!(records_hold(&state, &dst), tags.len());
    assert_eq!(d.stop().code, 0);
    assert!(ws.private_dirs().is_empty());
}

#[test]
fn a_panicking_run_is_reported_as_crashed_and_nothing_else_notices() {
    let (src, bad, good) = (Registry::start(), Registry::start(), Registry::start());
    let id = src.push_image("app", "1", 1);
    let other = src.push_image("app", "2", 1);
    let ws = Workspace::new();
    ws.list_script("bad.sh", &[format!("{}/app:1", src.host)]);
    ws.list_script("sync.sh", &[format!("{}/app:2", src.host)]);
    // The pull panics once its private docker configuration exists.
    let pull = format!("docker pull {}/app:1", src.host);
    let panic_file = ws.file("panic-on", &pull);
    let auth = r#"{"auths":{"example.invalid":{"auth":"dTpw"}}}"#;
    let extra = format!("    pullAuthConfig: '{auth}'\n");
    let registries = format!(
        "{}{}",
        registry_entry(&bad, "*/2 * * * * *", &extra).replace("sync.sh", "bad.sh"),
        registry_entry(&good, "*/2 * * * * *", "")
    );
    let d = Daemon::start_with(&ws, &registries, None, |run| {
        run.env("PICTURE_BOOK_PANIC_FILE", &panic_file)
    });
    assert!(eventually(Duration::from_secs(30), || d.syncs(&bad.host)
        >= 2
        && d.syncs(&good.host) >= 2));
    let last = d.status(&bad.host)["lastRun"].clone();
    assert_eq!(last["outcome"], "crashed", "{last}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains(&format!("internal error: injected panic in {pull}")),
        "{last}"
    );
    assert!(
        ws.private_dirs().is_empty(),
        "the panicking pull's private config was left: {:?}",
        ws.private_dirs()
    );
    assert_eq!(d.status(&good.host)["lastRun"]["outcome"], "success");
    assert_eq!(good.config_digest("mirror/app", "2").as_ref(), Some(&other));
    let metrics = d.call("GET", "/metrics").1;
    assert!(
        metrics.as_str().unwrap().contains(&format!(
            "picture_book_runs_total{{registry=\"{}\",outcome=\"crashed\"}}",
            bad.host
        )),
        "{metrics}"
    );
    // The synchronizer runs again at its next due time, and succeeds once
    // the fault is gone.
    fs::remove_file(&panic_file).unwrap();
    let crashed = d.syncs(&bad.host);
    assert!(eventually(Duration::from_secs(30), || d.syncs(&bad.host)
        > crashed
        && d.status(&bad.host)["lastRun"]["outcome"] == "success"));
    assert_eq!(bad.config_digest("mirror/app", "1").as_ref(), Some(&id));
    let out = d.stop();
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains(&format!(
            "{}: internal error during the run: injected panic",
            bad.host
        )),
        "the panic is logged with the registry's name: {}",
        out.stderr
    );
    assert!(ws.private_dirs().is_empty(), "{:?}", ws.private_dirs());
}

#[test]
fn a_hanging_script_stalls_neither_other_registries_nor_the_api() {
    let (src, stuck, free) = (Registry::start(), Registry::start(), Registry::start());
    src.push_image("app", "1", 1);
    let ws = Workspace::new();
    let marker = format!("sleep 86397.{}", std::process::id());
    ws.script(
        "hang.sh",
        &format!("echo {}/app:1\n{marker} &\n{marker}", src.host),
    );
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let registries = format!(
        "{}    syncerScriptTimeout: 15s\n{}",
        registry_entry(&stuck, "* * * * * *", "").replace("sync.sh", "hang.sh"),
        registry_entry(&free, "*/2 * * * * *", "")
    );
    let d = Daemon::start(&ws, &registries, None);
    let started = Instant::now();
    assert!(eventually(Duration::from_secs(5), || d.status(&stuck.host)
        ["running"]
        == true));
    // While the script hangs, the other registry runs and the API answers.
    assert!(eventually(Duration::from_secs(12), || d.syncs(&free.host) >= 2));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(d.syncs(&stuck.host), 0, "the script did not hang after all");
    assert!(eventually(Duration::from_secs(30), || d.syncs(&stuck.host) >= 1));
    let last = d.status(&stuck.host)["lastRun"].clone();
    assert_eq!(last["outcome"], "failed");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 15s"),
        "{last}"
    );
    assert!(
        eventually(Duration::from_secs(3), || processes_with(&marker)
            .is_empty()),
        "the hanging script or its child outlived the timeout"
    );
    assert_eq!(d.stop().code, 0);
}

/// The probe's case: SIGINT (or SIGTERM) while the syncer script sleeps,
/// for 90 s or for 30 s (as long as the old grace). Either way the script
/// is stopped at once, and the run is `stopped`, not waited for.
#[test]
fn a_stop_while_the_script_runs_stops_load_at_once_as_stopped() {
    let dst = Registry::start();
    for (seconds, signal) in [(90, "INT"), (30, "INT"), (90, "TERM")] {
        let ws = Workspace::new();
        let marker = format!("sleep {seconds}.{}", std::process::id());
        ws.script(
            "sync.sh",
            &format!("touch started\n{marker}\necho 127.0.0.1:1/app:1"),
        );
        ws.config(&single(&dst, ""));
        let running = ws.run().args(["load", "--all", "--json"]).spawn();
        assert!(eventually(Duration::from_secs(10), || ws
            .dir
            .join("started")
            .exists()));
        let signalled = Instant::now();
        running.signal(signal);
        let out = running.wait(Duration::from_secs(60));
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "SIG{signal} with a {seconds}s script took {:?}",
            signalled.elapsed()
        );
        assert_eq!(out.code, 1, "{out:?}");
        let run = &out.json()["registries"][0];
        assert_eq!(run["outcome"], "stopped", "{run}");
        assert_eq!(
            run["error"], "stopped while the syncer script ran: interrupted",
            "{run}"
        );
        assert!(
            processes_with(&marker).is_empty(),
            "the script's sleep outlived picture-book"
        );
    }
}

#[test]
fn sigterm_while_the_script_runs_stops_the_daemon_at_once() {
    let dst = Registry::start();
    let ws = Workspace::new();
    let marker = format!("sleep 91.{}", std::process::id());
    ws.script("sync.sh", &format!("{marker}\necho 127.0.0.1:1/app:1"));
    let d = Daemon::start(&ws, &registry_entry(&dst, "", ""), None);
    let (code, _) = d.call("POST", &format!("/ops?sync={}&action=run", dst.host));
    assert_eq!(code, 202);
    assert!(eventually(Duration::from_secs(10), || !processes_with(
        &marker
    )
    .is_empty()));
    let signalled = Instant::now();
    let out = d.stop();
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("stopped while the syncer script ran: shutting down"),
        "{}",
        out.stderr
    );
    assert!(processes_with(&marker).is_empty());
}

/// The probe's case: a grandchild that calls `setsid` and keeps the
/// script's output open. It is killed, as the log says, and does not
/// outlive picture-book.
#[test]
fn a_grandchild_that_left_the_scripts_group_does_not_outlive_load() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("app", "1", 1);
    let ws = Workspace::new();
    let marker = format!("sleep 86396.{}", std::process::id());
    ws.script(
        "sync.sh",
        &format!("setsid {marker} &\necho {}/app:1", src.host),
    );
    ws.config(&single(&dst, "    engine: native\n"));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
    assert!(
        out.stderr
            .contains("left background processes holding its output; killed them (PIDs "),
        "{}",
        out.stderr
    );
    assert!(
        eventually(Duration::from_secs(2), || processes_with(&marker)
            .is_empty()),
        "the grandchild outlived picture-book: {:?}",
        processes_with(&marker)
    );
}

/// Under `sync`, a script that starts a daemon of its own (its own session,
/// its output elsewhere) leaves nothing behind, run after run.
#[test]
fn a_daemon_the_script_started_ends_with_each_run() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("app", "1", 1);
    let ws = Workspace::new();
    let marker = format!("sleep 86395.{}", std::process::id());
    ws.script(
        "sync.sh",
        &format!(
            "setsid sh -c '{marker}' </dev/null >/dev/null 2>&1 &\nsleep 1\necho {}/app:1",
            src.host
        ),
    );
    let d = Daemon::start(
        &ws,
        &registry_entry(&dst, "*/2 * * * * *", "    engine: native\n"),
        None,
    );
    assert!(eventually(Duration::from_secs(30), || d.syncs(&dst.host) >= 3));
    assert!(
        processes_with(&marker).len() <= 1,
        "daemons of earlier runs live on: {:?}",
        processes_with(&marker)
    );
    let out = d.stop();
    assert!(
        out.stderr
            .contains("left processes running when it ended; killed them (PIDs "),
        "{}",
        out.stderr
    );
    assert!(
        eventually(Duration::from_secs(2), || processes_with(&marker)
            .is_empty()),
        "{:?}",
        processes_with(&marker)
    );
}
