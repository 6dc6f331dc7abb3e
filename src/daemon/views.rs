//! The JSON views of a synchronizer that the API answers (`/list`,
//! `details`) and the metrics are drawn from: its status, its last run and
//! the images that failed in it. Field names and which fields are left out
//! when empty are the API's contract. Serving them is `api`'s business.

use std::path::Path;

use serde::Serialize;

use crate::daemon::scheduler::LastSkip;
use crate::daemon::synchronizer::Synchronizer;
use crate::display::rfc3339;
use crate::engine::Stats;
use crate::flock::{self as runlock, Holder};
use crate::listing::entries::{Selection, some_entry};
use crate::registry::limits::Shown;
use crate::run::prune::decide::Verdict;
use crate::run::report::{Outcome, RegistryReport, RunOutcome};

/// The status of a synchronizer, as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub hostname: String,
    pub repository: String,
    pub engine: &'static str,
    pub sync_period: Option<String>,
    pub schedule_overridden: bool,
    pub paused: bool,
    pub running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Bytes the run in progress has sent so far, once it has sent some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_started: Option<String>,
    pub next_run: Option<String>,
    pub number_of_syncs: u64,
    pub skipped_runs: u64,
    /// Another process that runs this registry now, holding its lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<Holder>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_skipped: Option<LastSkip>,
    pub created: String,
    pub last_run: Option<LastRun>,
    /// Tags pruned since the daemon started, for `/metrics`.
    #[serde(skip)]
    pub pruned: u64,
}

/// A synchronizer's last run, as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    pub outcome: RunOutcome,
    pub mirrored: usize,
    pub up_to_date: usize,
    pub failed: usize,
    pub not_attempted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What the native engine moved.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub moved: Option<Stats>,
    pub failed_images: Vec<FailedImage>,
    /// What rate-limited sources said of their pull limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<Shown>,
    /// What each `images` entry with rules chose.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selections: Vec<Selection>,
    /// With `prune`: the tags pruned, and those kept although unlisted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<Verdict>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prune_skipped: Vec<Verdict>,
}

/// An image that failed in the last run.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedImage {
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "some_entry")]
    entry: Option<usize>,
    source: String,
    target: Option<String>,
    error: String,
}

/// The status of `sync`; who holds its lock is looked up in `state_dir`
/// when it is not running itself.
pub fn status(sync: &Synchronizer, state_dir: &Path) -> Status {
    let locked_by = if sync.lock().running.is_some() {
        None
    } else {
        runlock::holder(state_dir, &sync.hostname)
    };
    let st = sync.lock();
    let timing = &st.timing;
    Status {
        hostname: sync.hostname.clone(),
        repository: st.registry.repository.clone(),
        engine: st.registry.engine.name(),
        sync_period: timing.schedule.as_ref().map(|s| s.source().to_string()),
        schedule_overridden: timing.from_api,
        paused: timing.paused,
        running: st.running.is_some(),
        current_image: st.running.as_ref().and_then(|r| r.image.clone()),
        progress: st
            .running
            .as_ref()
            .filter(|r| r.n > 0)
            .map(|r| format!("{} of {}", r.n, r.of)),
        bytes_sent: st.running.as_ref().map(|r| r.bytes).filter(|b| *b > 0),
        run_started: st.running.as_ref().map(|r| rfc3339(&r.started)),
        next_run: timing.next_run.as_ref().map(rfc3339),
        number_of_syncs: st.number_of_syncs,
        skipped_runs: timing.skipped,
        locked_by,
        last_skipped: timing.last_skip.clone(),
        created: rfc3339(&sync.created),
        last_run: st.last_run.as_ref().map(last_run),
        pruned: st.pruned,
    }
}

fn last_run(r: &RegistryReport) -> LastRun {
    LastRun {
        started: r.started.clone(),
        finished: r.finished.clone(),
        seconds: r.seconds,
        outcome: r.outcome,
        mirrored: r.mirrored,
        up_to_date: r.up_to_date,
        failed: r.failed,
        not_attempted: r.not_attempted,
        error: r.error.clone(),
        warnings: r.warnings.clone(),
        moved: r.moved.clone(),
        failed_images: r
            .images
            .iter()
            .filter(|i| i.outcome == Outcome::Failed)
            .map(|i| FailedImage {
                line: i.line,
                entry: i.entry,
                source: i.source.clone(),
                target: i.target.clone(),
                error: i.error.clone().unwrap_or_default(),
            })
            .collect(),
        rate_limits: r.rate_limits.clone(),
        selections: r.selections.clone(),
        pruned: r.pruned.clone(),
        prune_skipped: r.prune_skipped.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::synchronizer::Running;
    use chrono::Local;
    use serde_json::{Value, json};

    fn synchronizer() -> Synchronizer {
        let yaml = "registries:\n  - hostname: a.example.com\n    syncPeriod: '@daily'\n    syncerScript: /bin/true\n";
        let config = crate::config::parse(yaml, Path::new("/nonexistent/c.yaml")).unwrap();
        Synchronizer::new(config.registries[0].clone())
    }

    fn shown(sync: &Synchronizer) -> Value {
        serde_json::to_value(status(sync, Path::new("/nonexistent/state"))).unwrap()
    }

    #[test]
    fn an_idle_synchronizer_leaves_out_what_only_a_run_has() {
        let v = shown(&synchronizer());
        assert_eq!(v["hostname"], "a.example.com");
        assert_eq!(v["syncPeriod"], "@daily");
        assert_eq!(
            (v["paused"].clone(), v["running"].clone()),
            (json!(false), json!(false))
        );
        assert!(v["nextRun"].is_string());
        assert!(v["lastRun"].is_null());
        for absent in [
            "currentImage",
            "progress",
            "bytesSent",
            "runStarted",
            "lockedBy",
            "lastSkipped",
        ] {
            assert!(v.get(absent).is_none(), "{absent} in {v}");
        }
    }

    #[test]
    fn a_run_shows_its_image_and_progress_once_it_has_one() {
        let sync = synchronizer();
        let started = Local::now();
        sync.lock().running = Some(Running {
            started,
            image: None,
            n: 0,
            of: 0,
            bytes: 0,
        });
        let v = shown(&sync);
        assert_eq!(v["running"], true);
        assert_eq!(v["runStarted"], rfc3339(&started));
        assert!(v.get("progress").is_none(), "no image yet");
        assert!(v.get("bytesSent").is_none(), "nothing sent yet");
        if let Some(r) = sync.lock().running.as_mut() {
            (r.n, r.of, r.image, r.bytes) = (2, 5, Some("alpine:3".into()), 4096);
        }
        let v = shown(&sync);
        assert_eq!(
            (v["progress"].clone(), v["currentImage"].clone()),
            (json!("2 of 5"), json!("alpine:3"))
        );
        assert_eq!(v["bytesSent"], 4096);
    }

    #[test]
    fn the_last_run_shows_its_outcome_and_error() {
        let sync = synchronizer();
        let report = RegistryReport::ended_early(
            "a.example.com",
            Local::now(),
            "internal error: boom".into(),
            RunOutcome::Crashed,
        );
        sync.lock().last_run = Some(report);
        let last = shown(&sync)["lastRun"].clone();
        assert_eq!(last["outcome"], "crashed");
        assert_eq!(last["error"], "internal error: boom");
        assert_eq!(last["failedImages"], json!([]));
        assert!(last.get("warnings").is_none());
    }
}
