//! A docker daemon that is gone before a run, or goes away during one.

use std::time::{Duration, Instant};

use super::{images, records_hold};
use crate::harness::{PrivateDockerd, Registry, Workspace, eventually, processes_with, single};
use crate::sync::{Daemon, registry_entry};

#[test]
fn docker_down_at_a_run_fails_it_fast_and_the_next_run_works() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("app", "1", 1);
    let mut dockerd = PrivateDockerd::start();
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/app:1", src.host)]);
    let host = dockerd.host.clone();
    let d = Daemon::start_with(&ws, &registry_entry(&dst, "0 0 0 1 1 *", ""), None, |run| {
        run.without_daemon().env("DOCKER_HOST", &host)
    });
    dockerd.stop("TERM");
    let run = format!("/ops?sync={}&action=run", dst.host);
    let asked = Instant::now();
    assert_eq!(d.call("POST", &run).0, 202);
    assert!(eventually(Duration::from_secs(30), || d.syncs(&dst.host) == 1));
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "a run without docker took {:?}",
        asked.elapsed()
    );
    let last = d.status(&dst.host)["lastRun"].clone();
    assert_eq!(last["outcome"], "failed", "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("docker"),
        "the run says docker is the problem: {last}"
    );
    assert_eq!(dst.config_digest("mirror/app", "1"), None);

    dockerd.restart();
    assert_eq!(d.call("POST", &run).0, 202);
    assert!(eventually(Duration::from_secs(60), || d.syncs(&dst.host) == 2));
    let last = d.status(&dst.host)["lastRun"].clone();
    assert_eq!(last["outcome"], "success", "{last}");
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
    let out = d.stop();
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stderr.matches("not run: ").count(),
        1,
        "one message for the run without docker: {}",
        out.stderr
    );
}

#[test]
fn docker_dying_mid_run_fails_cleanly_and_records_only_what_arrived() {
    let (src, dst) = (Registry::start(), Registry::start());
    let tags = ["1", "2", "3", "4", "5", "6"];
    let ids: Vec<String> = tags.iter().map(|t| src.push_image("app", t, 3)).collect();
    let mut dockerd = PrivateDockerd::start();
    let ws = Workspace::new();
    ws.list_script("sync.sh", &tags.map(|t| format!("{}/app:{t}", src.host)));
    ws.config(&single(&dst, "    parallel: 1\n"));
    let host = dockerd.host.clone();
    let load = || {
        ws.run()
            .without_daemon()
            .env("DOCKER_HOST", &host)
            .args(["load", "--all", "--json"])
    };
    let running = load().spawn();
    assert!(eventually(Duration::from_secs(60), || dst
        .manifest_digest("mirror/app", "1")
        .is_some()));
    dockerd.stop("KILL");
    let out = running.wait(Duration::from_secs(60));
    assert_eq!(out.code, 1, "{out:?}");
    let report = out.json();
    let done = images(&report)
        .iter()
        .filter(|i| i["outcome"] == "mirrored")
        .count();
    assert!(
        done < tags.len(),
        "docker died too late to matter: {report}"
    );
    assert!(
        report["registries"][0]["error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("docker")),
        "{report}"
    );
    let recorded = records_hold(&ws.dir.join("state"), &dst);
    assert_eq!(recorded, done, "{report}");
    assert_eq!(
        processes_with(&format!(" {}/app:", src.host)),
        Vec::<String>::new()
    );
    assert!(ws.private_dirs().is_empty());

    dockerd.restart();
    let out = load().run();
    assert_eq!(out.code, 0, "{out:?}");
    for (tag, id) in tags.iter().zip(&ids) {
        assert_eq!(dst.config_digest("mirror/app", tag).as_ref(), Some(id));
    }
}
