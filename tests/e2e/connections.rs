//! What a run costs in connections and threads: a counting TCP front
//! before the source and one before the target count the connections the
//! native engine opens, fresh and in a no-op run. Connections are kept and
//! reused, so a run opens no more than `parallel` plus the checks to each
//! registry, however many images it moves. The threads a run starts, which
//! strace counts, are as many for many images as for few: its blob copiers
//! live as long as the run.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crate::fixtures::{push_via_api, small_image};
use crate::harness::{Registry, Workspace, fresh_dir, listen};

/// A TCP front on 127.0.0.1 that passes every byte on to a registry and
/// counts the connections it accepted.
struct Counting {
    host: String,
    accepted: Arc<AtomicUsize>,
}

impl Counting {
    fn before(upstream: &Registry) -> Counting {
        let listener = listen();
        let host = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let upstream = upstream.host.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                if let Ok(server) = TcpStream::connect(&upstream) {
                    pass(client, server);
                }
            }
        });
        Counting { host, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Copies bytes both ways between `a` and `b` until each side ends.
fn pass(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

#[test]
fn a_run_connects_to_each_registry_no_more_than_parallel_and_the_checks() {
    let (src, dst) = (Registry::start(), Registry::start());
    let images = 12;
    for i in 0..images {
        let [config, layer, manifest] = small_image();
        push_via_api(
            &src,
            &format!("app{i}"),
            "1",
            &[&config, &layer],
            &[&manifest],
        );
    }
    let (src_front, dst_front) = (Counting::before(&src), Counting::before(&dst));
    let ws = Workspace::new();
    let refs: Vec<String> = (0..images)
        .map(|i| format!("{}/app{i}:1", src_front.host))
        .collect();
    ws.list_script("sync.sh", &refs);
    let parallel = 2;
    ws.config(&format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    syncerScript: sync.sh\n    engine: native\n    parallel: {parallel}\n",
        dst_front.host
    ));
    let most = parallel + 4;
    for run in ["fresh", "no-op"] {
        let (src_before, dst_before) = (src_front.accepted(), dst_front.accepted());
        let out = ws.run_without_daemon(&["load", "--all", "--json"]);
        assert_eq!(out.code, 0, "{run}: {out:?}");
        let (at_src, at_dst) = (
            src_front.accepted() - src_before,
            dst_front.accepted() - dst_before,
        );
        eprintln!("{run}: {at_src} connections to the source, {at_dst} to the target");
        assert!(at_src <= most, "{run}: {at_src} connections to the source");
        assert!(at_dst <= most, "{run}: {at_dst} connections to the target");
    }
    for i in 0..images {
        assert!(
            dst.manifest_digest(&format!("mirror/app{i}"), "1")
                .is_some(),
            "app{i} arrived"
        );
    }
}

/// The threads (not processes) a run of picture-book ARGS in `ws` starts:
/// its `clone` and `clone3` calls with `CLONE_THREAD`, as strace sees them.
fn threads_started(ws: &Workspace, args: &[&str]) -> usize {
    let trace = fresh_dir("strace").join("trace");
    let trace_arg = trace.to_str().unwrap();
    let wrapper = [
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=clone,clone3",
        "-o",
        trace_arg,
    ];
    let out = ws.run_under(&wrapper).without_daemon().args(args).run();
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    let text = std::fs::read_to_string(&trace).unwrap();
    text.lines().filter(|l| l.contains("CLONE_THREAD")).count()
}

#[test]
fn a_run_starts_as_many_threads_for_many_images_as_for_few() {
    let src = Registry::start();
    let parallel = 2;
    let mut started = Vec::new();
    for images in [3, 24] {
        let dst = Registry::start();
        let refs: Vec<String> = (0..images)
            .map(|i| {
                let [config, layer, manifest] = small_image();
                let repo = format!("of{images}/app{i}");
                push_via_api(&src, &repo, "1", &[&config, &layer], &[&manifest]);
                format!("{}/{repo}:1", src.host)
            })
            .collect();
        let ws = Workspace::new();
        ws.list_script("sync.sh", &refs);
        ws.config(&format!(
            "registries:\n  - hostname: '{}'\n    repository: mirror\n    syncerScript: sync.sh\n    engine: native\n    parallel: {parallel}\n",
            dst.host
        ));
        let args = ["load", "--all"];
        let (fresh, no_op) = (threads_started(&ws, &args), threads_started(&ws, &args));
        eprintln!("{images} images: {fresh} threads started fresh, {no_op} in a no-op run");
        assert!(
            fresh <= no_op + parallel,
            "{images} images: {fresh} threads fresh, {no_op} in a no-op: more than {parallel} blob copiers"
        );
        assert!(no_op >= parallel, "{no_op} threads: strace saw the workers");
        for i in 0..images {
            let repo = format!("mirror/of{images}/app{i}");
            assert!(dst.manifest_digest(&repo, "1").is_some(), "{repo} arrived");
        }
        started.push((fresh, no_op));
    }
    assert_eq!(started[0], started[1], "threads for 3 images and for 24");
}
