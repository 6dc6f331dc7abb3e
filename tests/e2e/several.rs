//! Several picture-books on one host and one state directory: a `load` by
//! hand while the daemon runs the same registry, two daemons, the API's
//! `run` while a `load` holds the registry, and a holder killed with
//! SIGKILL. Each registry is run by one process at a time; the others
//! wait, skip or refuse, and say who holds it.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Registry, Workspace, docker_ok, eventually, single};
use crate::sync::{Daemon, assert_never_overlapped, marking_script, registry_entry};

/// The records of the state file of `host` in `ws`.
fn records(ws: &Workspace, host: &str) -> serde_json::Map<String, Value> {
    let name = host.replace(':', "_");
    let text = fs::read_to_string(ws.dir.join("state").join(format!("{name}.json")))
        .expect("the state file exists");
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["images"].as_object().unwrap().clone()
}

/// Five images in `src`, listed by `ws`'s `sync.sh` after `delay` seconds.
fn five_images(src: &Registry, ws: &Workspace, delay: u32) -> Vec<(String, String)> {
    let names: Vec<String> = (1..=5).map(|i| format!("img{i}")).collect();
    let ids = names
        .iter()
        .map(|n| (n.clone(), src.push_image(n, "1", 2)))
        .collect();
    let list: String = names
        .iter()
        .map(|n| format!("echo {}/{n}:1\n", src.host))
        .collect();
    ws.script("sync.sh", &format!("sleep {delay}\n{list}"));
    ids
}

#[test]
fn a_load_during_a_daemon_run_waits_for_it_and_tells_the_truth() {
    let (src, dst) = (Registry::start(), Registry::start());
    let ws = Workspace::new();
    let ids = five_images(&src, &ws, 1);
    let extra = "    deleteLocalImages: true\n    parallel: 2\n";
    let d = Daemon::start(&ws, &registry_entry(&dst, "", extra), None);
    let (code, _) = d.call("POST", &format!("/ops?sync={}&action=run", dst.host));
    assert_eq!(code, 202);
    std::thread::sleep(Duration::from_millis(500));
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "another picture-book is running this registry: PID {} (picture-book",
            d.pid()
        )),
        "{}",
        out.stderr
    );
    let report = out.json();
    assert_eq!(report["registries"][0]["upToDate"], 5, "{}", out.stdout);
    for (name, id) in &ids {
        assert_eq!(
            dst.config_digest(&format!("mirror/{name}"), "1").as_ref(),
            Some(id)
        );
    }
    assert_eq!(records(&ws, &dst.host).len(), 5);
    let status = d.status(&dst.host);
    assert_eq!(status["lastRun"]["mirrored"], 5, "{status}");
    assert_eq!(d.stop().code, 0);
}

#[test]
fn two_daemons_on_one_state_directory_take_turns() {
    let dst = Registry::start();
    let ws = Workspace::new();
    let marks = marking_script(&ws, 3);
    let entry = registry_entry(&dst, "*/2 * * * * *", "");
    let first = Daemon::start(&ws, &entry, None);
    let second = Daemon::start(&ws, &entry, None);
    let skipped_for_the_other = |d: &Daemon, other: &Daemon| {
        d.status(&dst.host)["lastSkipped"]["heldBy"]["pid"].as_u64() == Some(other.pid().into())
    };
    assert!(
        eventually(Duration::from_secs(40), || {
            skipped_for_the_other(&first, &second) || skipped_for_the_other(&second, &first)
        }),
        "no run was skipped for the other daemon: {} / {}",
        first.status(&dst.host),
        second.status(&dst.host)
    );
    assert!(eventually(Duration::from_secs(30), || {
        first.syncs(&dst.host) + second.syncs(&dst.host) >= 3
    }));
    let (a, b) = (first.stop(), second.stop());
    assert_eq!((a.code, b.code), (0, 0));
    let logs = format!("{}{}", a.stderr, b.stderr);
    assert!(
        logs.contains("skipped: another picture-book is running this registry: PID "),
        "{logs}"
    );
    assert_never_overlapped(&marks);
}

#[test]
fn the_api_refuses_a_run_while_a_load_holds_the_registry() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("app", "1", 1);
    let ws = Workspace::new();
    ws.script("sync.sh", &format!("sleep 4\necho {}/app:1", src.host));
    let d = Daemon::start(&ws, &registry_entry(&dst, "", ""), None);
    let load = ws.run().args(["load", "--all"]).spawn();
    let path = format!("/ops?sync={}&action=run", dst.host);
    assert!(
        eventually(Duration::from_secs(10), || {
            d.status(&dst.host)["lockedBy"]["pid"].as_u64() == Some(load.pid.into())
        }),
        "details never showed the load: {}",
        d.status(&dst.host)
    );
    let (code, body) = d.call("POST", &path);
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "another picture-book is running this registry: PID {} (picture-book",
            load.pid
        )) && error.contains("load --all"),
        "{error}"
    );
    let out = load.wait(Duration::from_secs(60));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(d.status(&dst.host).get("lockedBy").is_none());
    let (code, _) = d.call("POST", &path);
    assert_eq!(code, 202, "free again");
    assert_eq!(d.stop().code, 0);
}

#[test]
fn a_waiting_load_gives_up_at_its_bound_and_goes_on_at_once_when_the_holder_is_killed() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("app", "1", 1);
    let ws = Workspace::new();
    let flag = ws.file("hang", "");
    ws.script(
        "sync.sh",
        &format!(
            "if [ -e {f} ]; then rm {f}; exec sleep 300; fi\necho {}/app:1",
            src.host,
            f = flag.display()
        ),
    );
    ws.config(&single(&dst, ""));
    let holder = ws.run().args(["load", "--all"]).spawn();
    assert!(eventually(Duration::from_secs(10), || !flag.exists()));

    let gave_up = ws.run().args(["load", "--all", "--wait", "2s"]).run();
    assert_eq!(gave_up.code, 1, "{gave_up:?}");
    assert!(
        gave_up.stdout.contains(&format!(
            "another picture-book still runs this registry after 2s (--wait): PID {} (picture-book",
            holder.pid
        )),
        "{gave_up:?}"
    );
    assert!(
        gave_up.elapsed < Duration::from_secs(15),
        "{:?}",
        gave_up.elapsed
    );

    let dry = ws
        .run()
        .args(["load", "--all", "--dry-run", "--wait", "0"])
        .run();
    assert_eq!(dry.code, 0, "a dry run takes no lock: {dry:?}");

    let waiter = ws.run().args(["load", "--all", "--wait", "2m"]).spawn();
    std::thread::sleep(Duration::from_secs(3));
    assert!(waiter.is_running());
    holder.signal("KILL");
    let killed = Instant::now();
    let out = waiter.wait(Duration::from_secs(60));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "the waiter went on {:?} after the kill",
        killed.elapsed()
    );
    assert!(
        out.stderr
            .contains(&format!("PID {} (picture-book", holder.pid))
            && out.stderr.contains("waiting up to 2m for it to end"),
        "{}",
        out.stderr
    );
    assert_eq!(dst.config_digest("mirror/app", "1"), Some(id));
}

#[test]
fn delete_local_images_keeps_what_was_there_before_the_run() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("mine", "1", 1);
    src.push_image("new", "1", 1);
    let mine = format!("{}/mine:1", src.host);
    let new = format!("{}/new:1", src.host);
    assert!(docker_ok(&["pull", &mine]), "the operator's own pull");
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[mine.clone(), new.clone()]);
    ws.config(&single(&dst, "    deleteLocalImages: true\n"));
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        docker_ok(&["image", "inspect", &mine]),
        "the operator's image was removed"
    );
    for gone in [
        new,
        format!("{}/mirror/mine:1", dst.host),
        format!("{}/mirror/new:1", dst.host),
    ] {
        assert!(!docker_ok(&["image", "inspect", &gone]), "{gone} was left");
    }
    assert!(docker_ok(&["rmi", &mine]));
}

#[test]
fn a_state_directory_that_is_a_file_stops_a_load_before_anything() {
    let (src, dst) = (Registry::start(), Registry::start());
    src.push_image("s1", "1", 1);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/s1:1", src.host)]);
    ws.config(&single(&dst, ""));
    let state = ws.file("state", "I am a file");
    let out = ws.run().args(["load", "--all", "--json"]).run();
    assert_eq!(out.code, 2, "{out:?}");
    let want = format!("the state directory {} is not a directory", state.display());
    assert_eq!(out.stderr.matches(&want).count(), 1, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(!out.all().contains("File exists"), "{}", out.all());
    assert_eq!(dst.config_digest("mirror/s1", "1"), None, "nothing ran");
    let dry = ws.run().args(["load", "--all", "--dry-run"]).run();
    assert_eq!(dry.code, 0, "a dry run takes no lock: {dry:?}");
    let check = ws.run().args(["check"]).run();
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stderr.contains(&want), "{check:?}");
}

/// The probe's case: the state directory is a symlink into a disk that is
/// not mounted yet. Every command names the symlink and where it points;
/// no run goes on without the lock, and once the disk is there, runs do.
#[test]
fn a_state_directory_that_is_a_symlink_to_nothing_is_named_and_nothing_runs_unguarded() {
    let (src, dst) = (Registry::start(), Registry::start());
    let id = src.push_image("s1", "1", 1);
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[format!("{}/s1:1", src.host)]);
    ws.config(&single(&dst, ""));
    let disk = ws.dir.join("disk");
    let target = disk.join("picture-book");
    std::os::unix::fs::symlink(&target, ws.dir.join("state")).unwrap();
    let want = format!(
        "the state directory {} is a symlink to {}, which does not exist",
        ws.dir.join("state").display(),
        target.display()
    );
    let check = ws.run().args(["check"]).run();
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stderr.contains(&want), "{check:?}");
    assert!(check.stderr.contains("runs refuse to start"), "{check:?}");
    let out = ws.run().args(["load", "--all"]).run();
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(out.stderr.matches(&want).count(), 1, "{}", out.stderr);
    assert!(!out.all().contains("File exists"), "{}", out.all());
    assert_eq!(dst.config_digest("mirror/s1", "1"), None, "nothing ran");

    let d = Daemon::start(&ws, &registry_entry(&dst, "", ""), None);
    let (code, _) = d.call("POST", &format!("/ops?sync={}&action=run", dst.host));
    assert_eq!(code, 202);
    assert!(
        eventually(Duration::from_secs(20), || d.status(&dst.host)["lastRun"]
            .is_object()),
        "the run never ended"
    );
    let last = d.status(&dst.host)["lastRun"].clone();
    assert_eq!(last["outcome"], "failed", "{last}");
    assert!(
        last["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&want),
        "{last}"
    );
    assert_eq!(dst.config_digest("mirror/s1", "1"), None, "nothing ran");
    fs::create_dir_all(&target).unwrap();
    let (code, _) = d.call("POST", &format!("/ops?sync={}&action=run", dst.host));
    assert_eq!(code, 202);
    assert!(
        eventually(
            Duration::from_secs(30),
            || d.status(&dst.host)["lastRun"]["outcome"] == "success"
        ),
        "the run after the mount did not succeed: {}",
        d.status(&dst.host)
    );
    assert_eq!(dst.config_digest("mirror/s1", "1"), Some(id));
    assert!(
        target
            .join(format!("{}.lock", dst.host.replace(':', "_")))
            .exists()
    );
    let stopped = d.stop();
    assert_eq!(stopped.code, 0, "{stopped:?}");
    assert!(stopped.stderr.contains(&want), "{}", stopped.stderr);
}
