//! The README's first command, `make demo` (here its script, with the
//! binary under test): it mirrors for real on a private loopback
//! environment, says what arrived, and leaves nothing behind, also when it
//! is interrupted with Ctrl-C (SIGINT) halfway.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{eventually, fresh_dir, processes_with};

fn demo(tmp: &Path) -> Command {
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh"));
    cmd.env("PICTURE_BOOK", env!("CARGO_BIN_EXE_picture-book"))
        .env("TMPDIR", tmp)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null());
    cmd
}

/// Whether anything of a demo run under `tmp` is left: a directory or a process.
fn leftovers(tmp: &Path) -> Vec<String> {
    let mut left: Vec<String> = fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    left.extend(processes_with(&tmp.display().to_string()));
    left
}

#[test]
fn the_demo_mirrors_for_real_and_cleans_up_even_when_interrupted() {
    let tmp = fresh_dir("demo");
    let started = Instant::now();
    let out = demo(&tmp).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("demo: 6 of 6 images arrived"), "{stdout}");
    assert!(
        stdout.contains("identical digest; an index of amd64 arm64 arm"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the source's manifest for that platform (platforms filter); one image"),
        "{stdout}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert!(leftovers(&tmp).is_empty(), "{:?}", leftovers(&tmp));

    let log = tmp.join("interrupted.log");
    let errors = tmp.join("interrupted.err");
    let mut running = demo(&tmp)
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap();
    let mut ended = None;
    let reached = eventually(Duration::from_secs(60), || {
        ended = ended.or_else(|| running.try_wait().unwrap());
        ended.is_some()
            || fs::read_to_string(&log)
                .unwrap()
                .contains("picture-book sync")
    });
    assert!(
        reached && ended.is_none(),
        "the demo never reached sync (ended: {ended:?})\n{}\n{}",
        fs::read_to_string(&log).unwrap(),
        fs::read_to_string(&errors).unwrap()
    );
    let interrupt = Command::new("kill")
        .args(["-INT", &running.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let status = running.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    fs::remove_file(&log).unwrap();
    fs::remove_file(&errors).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || leftovers(&tmp).is_empty()),
        "{:?}",
        leftovers(&tmp)
    );
}
