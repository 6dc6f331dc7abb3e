//! The status page at `/` as an operator uses it: a real headless chromium
//! (`browser`) against a real `picture-book sync` with its token and real
//! registries. It shows every registry and its last run, runs, pauses and
//! resumes them, refuses a wrong token and never puts the token in a URL.
//! `PB_STATUS_PNG=docs/status.png` makes it save the README's screenshot.

use std::time::Duration;

use crate::browser::{Browser, ENTER};
use crate::harness::{Registry, Workspace, eventually};
use crate::sync::Daemon;

const TOKEN: &str = "page-token-7d41c";

/// A registry entry with the native engine, scheduled once a year only.
fn entry(target: &Registry, script: &str) -> String {
    format!(
        "  - hostname: '{}'\n    repository: mirror\n    syncPeriod: '0 0 1 1 *'\n    syncerScript: {script}\n    engine: native\n",
        target.host
    )
}

/// The CSS selector of `target`'s section, or of something in it.
fn section(target: &Registry, inner: &str) -> String {
    format!("section[data-host=\"{}\"] {inner}", target.host)
}

/// What the console says beyond answers with an error status (a 401, the
/// 409 of a refused run, the browser's own `/favicon.ico`): errors of the
/// script, and what the Content-Security-Policy refused.
fn script_errors(console: &[String]) -> Vec<&String> {
    console
        .iter()
        .filter(|m| !m.contains("Failed to load resource"))
        .collect()
}

#[test]
fn the_status_page_shows_and_controls_every_registry() {
    let src = Registry::start();
    src.push_image("good", "1", 1);
    let (failing, slow) = (Registry::start(), Registry::start());
    let ws = Workspace::new();
    let good = format!("{}/good:1", src.host);
    ws.list_script(
        "failing.sh",
        &[good.clone(), format!("{}/missing:1", src.host)],
    );
    ws.script("slow.sh", &format!("sleep 3\necho '{good}'"));
    let chooser = format!(
        "    images:\n      - source: {}/good\n        allTags: true\n",
        src.host
    );
    let registries = entry(&failing, "failing.sh") + &chooser + &entry(&slow, "slow.sh");
    let d = Daemon::start_with(&ws, &registries, Some(TOKEN), |run| run.without_daemon());
    let page = format!("http://127.0.0.1:{}/", d.port());
    let minute = Duration::from_secs(60);
    let b = Browser::start(900, 1300);
    b.open(&page);

    b.wait_for("#login", "needs its token", minute);
    assert_eq!(b.text("main"), "", "nothing is shown without the token");
    b.type_into("#token", &format!("wrong-token{ENTER}"));
    b.wait_for("#login", "refused this token (401 Unauthorized)", minute);
    b.type_into("#token", &format!("{TOKEN}{ENTER}"));
    b.wait_for("#updated", "Updated", minute);
    assert_eq!(b.text("#login"), "", "the token form stays after the token");
    for target in [&failing, &slow] {
        b.wait_for(&section(target, ""), "Last run: none yet", minute);
        let shown = b.text(&section(target, ""));
        for fact in [
            "Engine\nnative",
            "Schedule\n0 0 1 1 *",
            "Next run\n",
            "Idle",
        ] {
            assert!(shown.contains(fact), "no '{fact}' in:\n{shown}");
        }
    }

    b.click(&section(&failing, "button[data-action=run]"));
    b.wait_for(&section(&failing, ""), "Last run: failed", minute);
    let api = d.status(&failing.host);
    let error = api["lastRun"]["failedImages"][0]["error"].as_str().unwrap();
    let shown = b.wait_for(&section(&failing, ".failed-images"), error, minute);
    assert!(shown.contains("missing:1"), "{shown}");
    assert!(b.text("#message").contains("run started"));
    let chosen = b.wait_for(
        &section(&failing, ".selections"),
        "chose 1 of 1 tags",
        minute,
    );
    assert!(chosen.contains("images[0]"), "{chosen}");

    b.click(&section(&slow, "button[data-action=run]"));
    b.wait_for(
        &section(&slow, ".state"),
        "Running",
        Duration::from_secs(10),
    );
    b.wait_for(&section(&slow, ""), "Last run: success", minute);
    let shown = b.wait_for(&section(&slow, ".state"), "Idle", minute);
    assert!(!shown.contains("Running"), "{shown}");
    assert!(b.text(&section(&slow, "")).contains("1 mirrored"));

    b.click(&section(&failing, "button[data-action=pause]"));
    b.wait_for(&section(&failing, ".state"), "Paused", minute);
    assert_eq!(d.status(&failing.host)["paused"], true);
    b.type_into(&section(&failing, "button[data-action=resume]"), ENTER);
    b.wait_for(&section(&failing, ".state"), "Idle", minute);
    assert_eq!(d.status(&failing.host)["paused"], false);

    let load = ws.run().without_daemon().args(["load", "--all"]).spawn();
    let held = || d.status(&slow.host)["lockedBy"]["pid"].as_u64() == Some(load.pid.into());
    assert!(eventually(Duration::from_secs(10), held), "no lock held");
    b.click(&section(&slow, "button[data-action=run]"));
    let holder = format!("Lock held by\nprocess {} (picture-book", load.pid);
    let shown = b.wait_for(&section(&slow, ""), &holder, Duration::from_secs(10));
    assert!(shown.contains("load --all"), "{shown}");
    assert!(
        b.text(&section(&slow, ".state"))
            .contains("another picture-book runs it")
    );
    let refusal = format!(
        "{}: another picture-book is running this registry",
        slow.host
    );
    let said = b.wait_for("#message", &refusal, minute);
    assert!(said.starts_with(&refusal), "{said}");
    assert_eq!(load.wait(minute).code, 1, "one image is missing");

    let console = b.console();
    assert!(
        console.iter().any(|m| m.contains("409 (Conflict)")),
        "{console:#?}"
    );
    assert_eq!(script_errors(&console), Vec::<&String>::new());
    let border = b.script(&format!(
        "return getComputedStyle(document.querySelector('{}')).borderLeftStyle;",
        section(&failing, "")
    ));
    assert_eq!(border, "solid", "the page's style was refused");

    let sent = b.requests();
    let bearer = Some(format!("Bearer {TOKEN}"));
    let data: Vec<_> = sent
        .iter()
        .filter(|(url, _)| url.contains("/ops?"))
        .collect();
    assert!(data.len() >= 4, "{sent:?}");
    for (url, authorization) in &sent {
        assert!(!url.contains(TOKEN), "the token is in {url}");
        if url.contains("/ops?") {
            assert_eq!(authorization, &bearer, "{url}");
        }
    }

    b.script("document.activeElement.blur(); window.scrollTo(0, 0);");
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    if let Ok(path) = std::env::var("PB_STATUS_PNG") {
        std::fs::write(&path, &png).unwrap();
    }
    b.resize(360, 740);
    let fits = b.script("return document.documentElement.scrollWidth <= window.innerWidth;");
    assert_eq!(fits, true, "the page is wider than a phone");
    drop(b);
    let out = d.stop();
    assert!(
        !out.all().contains(TOKEN),
        "the token is in the daemon's log"
    );
}

#[test]
fn without_auth_the_page_shows_at_once_with_its_headers() {
    let dst = Registry::start();
    let ws = Workspace::new();
    ws.list_script("sync.sh", &[]);
    let d = Daemon::start_with(&ws, &entry(&dst, "sync.sh"), None, |run| {
        run.without_daemon()
    });
    let page = format!("http://127.0.0.1:{}/", d.port());
    let answer = ureq::get(&page).call().unwrap();
    let header = |name: &str| {
        let value = answer.headers().get(name).map(|v| v.to_str().unwrap());
        value.unwrap_or_default().to_string()
    };
    assert_eq!(header("Content-Type"), "text/html; charset=utf-8");
    assert_eq!(header("X-Content-Type-Options"), "nosniff");
    assert_eq!(header("X-Frame-Options"), "DENY");
    let policy = header("Content-Security-Policy");
    for part in [
        "default-src 'none'",
        "script-src 'sha256-",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(part), "{policy}");
    }

    let b = Browser::start(900, 700);
    b.open(&page);
    let minute = Duration::from_secs(60);
    b.wait_for(&section(&dst, ""), "Last run: none yet", minute);
    assert_eq!(b.text("#login"), "", "no token is asked for");
    assert_eq!(script_errors(&b.console()), Vec::<&String>::new());
}
