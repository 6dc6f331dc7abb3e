//! The synchronization daemon's heart: one synchronizer per configured
//! registry, each on its own OS thread, sleeping on a condition variable
//! until its next due time or until something changes (pause, resume,
//! run-now, new schedule, reload, shutdown). It keeps each synchronizer's
//! status and offers the operations the HTTP API exposes; the API itself
//! (routing, JSON over HTTP) lives in `api`.

pub mod api;
pub mod listener;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use chrono::{DateTime, Local};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::schedule::Schedule;
use crate::config::{Config, Registry};
use crate::display::Progress;
use crate::display::rfc3339;
use crate::engine::{Engines, Stats};
use crate::flock::{self as runlock, Holder};
use crate::mutex::lock;
use crate::process::Cancel;
use crate::registry::Client;
use crate::run::mirror;
use crate::run::report::{Outcome, RegistryReport, RunOutcome};
use crate::secret::Secret;

/// The longest a synchronizer sleeps before it looks at the clock again, so
/// that a wall-clock step (NTP, suspend) delays a run by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How long a due run waits for another process's run of its registry to
/// end before it is skipped: long enough to outlast someone looking at the
/// lock (`details`, `run`), which takes it for a moment.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Why an operation was refused; the API maps each to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No synchronizer for that hostname (404).
    NotFound(String),
    /// The operation conflicts with the synchronizer's state (409).
    Conflict(String),
    /// The request's value is invalid (400).
    Invalid(String),
}

/// The daemon: the synchronizers and what they share.
pub struct Daemon {
    config: Mutex<Config>,
    syncs: Mutex<Vec<Arc<Synchronizer>>>,
    /// Removed synchronizers whose last run may still be going.
    draining: Mutex<Vec<Arc<Synchronizer>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    tools: Tools,
}

/// What every run uses, shared by the synchronizers.
pub struct Tools {
    /// The engines.
    pub engines: Engines,
    /// The registry API client (and its token cache).
    pub client: Client,
    /// Where state files live.
    pub state_dir: PathBuf,
    /// The shutdown's cancellation of children.
    pub cancel: Arc<Cancel>,
    /// How progress is shown.
    pub progress: Progress,
}

/// One registry's synchronizer.
struct Synchronizer {
    hostname: String,
    created: DateTime<Local>,
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    registry: Registry,
    /// The schedule in force: the configuration's, or one set over the API.
    schedule: Option<Schedule>,
    schedule_from_api: bool,
    paused: bool,
    run_now: bool,
    /// Removed from the configuration, or shutting down: the thread ends.
    retired: bool,
    /// The thread has ended.
    exited: bool,
    running: Option<Running>,
    next_run: Option<DateTime<Local>>,
    number_of_syncs: u64,
    skipped: u64,
    /// The last due run that another process's run kept from starting.
    last_skip: Option<LastSkip>,
    outcomes: [u64; RunOutcome::ALL.len()],
    last_run: Option<RegistryReport>,
}

/// A due run skipped because another process held the registry's lock.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct LastSkip {
    /// When.
    at: String,
    /// Who held the lock.
    held_by: Holder,
}

struct Running {
    started: DateTime<Local>,
    image: Option<String>,
    n: usize,
    of: usize,
}

/// The status of a synchronizer, as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    hostname: String,
    repository: String,
    engine: &'static str,
    sync_period: Option<String>,
    schedule_overridden: bool,
    paused: bool,
    running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_started: Option<String>,
    next_run: Option<String>,
    number_of_syncs: u64,
    skipped_runs: u64,
    /// Another process that runs this registry now, holding its lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_by: Option<Holder>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_skipped: Option<LastSkip>,
    created: String,
    last_run: Option<LastRun>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LastRun {
    started: String,
    finished: String,
    seconds: f64,
    outcome: RunOutcome,
    mirrored: usize,
    up_to_date: usize,
    failed: usize,
    not_attempted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    /// What the native engine moved.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    moved: Option<Stats>,
    failed_images: Vec<FailedImage>,
    /// What rate-limited sources said of their pull limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rate_limits: Vec<crate::registry::limits::Shown>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailedImage {
    line: usize,
    source: String,
    target: Option<String>,
    error: String,
}

impl Synchronizer {
    fn new(registry: Registry) -> Synchronizer {
        let now = Local::now();
        let schedule = registry.schedule.clone();
        let next_run = schedule.as_ref().and_then(|s| s.next_after(&now));
        Synchronizer {
            hostname: registry.hostname.clone(),
            created: now,
            state: Mutex::new(State {
                registry,
                schedule,
                schedule_from_api: false,
                paused: false,
                run_now: false,
                retired: false,
                exited: false,
                running: None,
                next_run,
                number_of_syncs: 0,
                skipped: 0,
                last_skip: None,
                outcomes: [0; RunOutcome::ALL.len()],
                last_run: None,
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Changes the state and wakes the thread to look at it.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let result = f(&mut self.lock());
        self.wake.notify_all();
        result
    }

    fn status(&self, state_dir: &Path) -> Status {
        let locked_by = if self.lock().running.is_some() {
            None
        } else {
            runlock::holder(state_dir, &self.hostname)
        };
        let st = self.lock();
        Status {
            hostname: self.hostname.clone(),
            repository: st.registry.repository.clone(),
            engine: st.registry.engine.name(),
            sync_period: st.schedule.as_ref().map(|s| s.source().to_string()),
            schedule_overridden: st.schedule_from_api,
            paused: st.paused,
            running: st.running.is_some(),
            current_image: st.running.as_ref().and_then(|r| r.image.clone()),
            progress: st
                .running
                .as_ref()
                .filter(|r| r.n > 0)
                .map(|r| format!("{} of {}", r.n, r.of)),
            run_started: st.running.as_ref().map(|r| rfc3339(&r.started)),
            next_run: st.next_run.as_ref().map(rfc3339),
            number_of_syncs: st.number_of_syncs,
            skipped_runs: st.skipped,
            locked_by,
            last_skipped: st.last_skip.clone(),
            created: rfc3339(&self.created),
            last_run: st.last_run.as_ref().map(last_run),
        }
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
                source: i.source.clone(),
                target: i.target.clone(),
                error: i.error.clone().unwrap_or_default(),
            })
            .collect(),
        rate_limits: r.rate_limits.clone(),
    }
}

impl State {
    /// Recomputes the next due time from now.
    fn reschedule(&mut self) {
        self.next_run = match (&self.schedule, self.paused) {
            (Some(s), false) => s.next_after(&Local::now()),
            _ => None,
        };
    }
}

impl Daemon {
    /// A daemon for `config`, with no thread started yet.
    pub fn new(config: Config, tools: Tools) -> Arc<Daemon> {
        let syncs = config
            .registries
            .iter()
            .map(|r| Arc::new(Synchronizer::new(r.clone())))
            .collect();
        Arc::new(Daemon {
            config: Mutex::new(config),
            syncs: Mutex::new(syncs),
            draining: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            tools,
        })
    }

    /// Starts one thread per synchronizer.
    pub fn start(self: &Arc<Daemon>) {
        for sync in self.syncs() {
            self.spawn(sync);
        }
    }

    fn spawn(self: &Arc<Daemon>, sync: Arc<Synchronizer>) {
        let daemon = Arc::clone(self);
        let name = format!("sync {}", sync.hostname);
        let handle = thread::Builder::new()
            .name(name)
            .spawn(move || daemon.serve(&sync))
            .expect("spawn a synchronizer thread");
        let mut threads = lock(&self.threads);
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
    }

    fn syncs(&self) -> Vec<Arc<Synchronizer>> {
        lock(&self.syncs).clone()
    }

    fn find(&self, host: &str) -> Result<Arc<Synchronizer>, Refusal> {
        let syncs = self.syncs();
        syncs
            .iter()
            .find(|s| s.hostname.eq_ignore_ascii_case(host))
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = syncs.iter().map(|s| s.hostname.as_str()).collect();
                Refusal::NotFound(format!(
                    "no synchronizer for '{host}'; configured: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    /// The hostnames of the synchronizers.
    pub fn hostnames(&self) -> Vec<String> {
        self.syncs().iter().map(|s| s.hostname.clone()).collect()
    }

    /// The bearer token the API requires, if any.
    pub fn api_token(&self) -> Option<Secret> {
        lock(&self.config).api.token.clone()
    }

    /// `/list?type=configured`: every registry of the loaded configuration,
    /// secrets redacted.
    pub fn configured(&self) -> Value {
        let config = lock(&self.config);
        json!({ "registries": config.registries.iter().map(Registry::redacted).collect::<Vec<_>>() })
    }

    /// `/list?type=active`: every synchronizer that is scheduled and not paused.
    pub fn active(&self) -> Value {
        let active: Vec<Status> = self
            .syncs()
            .iter()
            .map(|s| s.status(&self.tools.state_dir))
            .filter(|s| !s.paused && s.sync_period.is_some())
            .collect();
        json!({ "synchronizers": active })
    }

    /// `details`: one synchronizer's configuration (redacted) and status.
    pub fn details(&self, host: &str) -> Result<Value, Refusal> {
        let sync = self.find(host)?;
        let configuration = sync.lock().registry.redacted();
        Ok(json!({ "configuration": configuration, "status": sync.status(&self.tools.state_dir) }))
    }

    /// `pause`: no further scheduled runs; a run in progress stops after its
    /// current image.
    pub fn pause(&self, host: &str) -> Result<Value, Refusal> {
        let sync = self.find(host)?;
        let (was, running) = sync.update(|st| {
            let was = st.paused;
            st.paused = true;
            st.reschedule();
            (was, st.running.is_some())
        });
        if !was {
            log::info!("{}: paused", sync.hostname);
        }
        let message = match (was, running) {
            (true, _) => "already paused",
            (false, true) => "paused; the run in progress stops after its current image",
            (false, false) => "paused",
        };
        Ok(json!({ "hostname": sync.hostname, "paused": true, "message": message }))
    }

    /// `resume`: scheduled again from its next due time, which the answer gives.
    pub fn resume(&self, host: &str) -> Result<Value, Refusal> {
        let sync = self.find(host)?;
        let (was, next) = sync.update(|st| {
            let was = st.paused;
            st.paused = false;
            st.reschedule();
            (was, st.next_run)
        });
        if was {
            log::info!("{}: resumed", sync.hostname);
        }
        Ok(json!({
            "hostname": sync.hostname,
            "paused": false,
            "nextRun": next.as_ref().map(rfc3339),
            "message": if was { "resumed" } else { "was not paused" },
        }))
    }

    /// `run`: start a run now.
    pub fn run_now(&self, host: &str) -> Result<Value, Refusal> {
        let sync = self.find(host)?;
        let held = runlock::holder(&self.tools.state_dir, &sync.hostname);
        sync.update(|st| {
            if st.running.is_some() || st.run_now {
                Err(Refusal::Conflict(format!(
                    "{}: a run is already in progress",
                    sync.hostname
                )))
            } else if st.paused {
                Err(Refusal::Conflict(format!(
                    "{}: paused; resume it first",
                    sync.hostname
                )))
            } else if let Some(holder) = held {
                Err(Refusal::Conflict(format!(
                    "{}: another picture-book is running this registry: {holder}; try again when it has ended",
                    sync.hostname
                )))
            } else {
                st.run_now = true;
                Ok(())
            }
        })?;
        log::info!("{}: run requested over the API", sync.hostname);
        Ok(json!({ "hostname": sync.hostname, "message": "run started" }))
    }

    /// `schedule`: replace the schedule until the next reload or restart.
    pub fn set_schedule(&self, host: &str, period: &str) -> Result<Value, Refusal> {
        let schedule =
            Schedule::parse(period).map_err(|e| Refusal::Invalid(format!("period: {e}")))?;
        let sync = self.find(host)?;
        let next = sync.update(|st| {
            st.schedule = Some(schedule.clone());
            st.schedule_from_api = true;
            st.reschedule();
            st.next_run
        });
        log::info!(
            "{}: schedule set to '{}' over the API",
            sync.hostname,
            schedule.source()
        );
        Ok(json!({
            "hostname": sync.hostname,
            "syncPeriod": schedule.source(),
            "nextRun": next.as_ref().map(rfc3339),
            "message": "schedule changed until the configuration is reloaded; it is not written to the configuration file",
        }))
    }

    /// Prometheus text exposition of every synchronizer.
    pub fn metrics(&self) -> String {
        let statuses: Vec<(Status, [u64; RunOutcome::ALL.len()])> = self
            .syncs()
            .iter()
            .map(|s| (s.status(&self.tools.state_dir), s.lock().outcomes))
            .collect();
        let mut out = String::new();
        let mut family =
            |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, f64)>| {
                let _ = writeln!(out, "# HELP picture_book_{name} {help}");
                let _ = writeln!(out, "# TYPE picture_book_{name} {kind}");
                for (labels, value) in rows {
                    let _ = writeln!(out, "picture_book_{name}{{{labels}}} {value}");
                }
            };
        let reg = |s: &Status| format!("registry=\"{}\"", s.hostname);
        family(
            "runs_total",
            "counter",
            "Runs finished, by outcome.",
            &mut statuses.iter().flat_map(|(s, o)| {
                RunOutcome::ALL
                    .iter()
                    .zip(o.iter())
                    .map(move |(outcome, n)| {
                        let name = outcome.name();
                        (format!("{},outcome=\"{name}\"", reg(s)), *n as f64)
                    })
            }),
        );
        family(
            "runs_skipped_total",
            "counter",
            "Due times skipped because the previous run was still in progress.",
            &mut statuses
                .iter()
                .map(|(s, _)| (reg(s), s.skipped_runs as f64)),
        );
        family(
            "last_run_images",
            "gauge",
            "Images of the last run, by result.",
            &mut statuses.iter().flat_map(|(s, _)| {
                let counts = s.last_run.as_ref().map_or([0; 4], |l| {
                    [l.mirrored, l.up_to_date, l.failed, l.not_attempted]
                });
                ["mirrored", "up_to_date", "failed", "not_attempted"]
                    .into_iter()
                    .zip(counts)
                    .map(move |(name, n)| (format!("{},result=\"{name}\"", reg(s)), n as f64))
            }),
        );
        let timestamp =
            |t: &str| DateTime::parse_from_rfc3339(t).map_or(0.0, |t| t.timestamp() as f64);
        family(
            "last_run_start_timestamp_seconds",
            "gauge",
            "When the last run started (Unix time).",
            &mut statuses
                .iter()
                .filter_map(|(s, _)| s.last_run.as_ref().map(|l| (reg(s), timestamp(&l.started)))),
        );
        family(
            "last_run_bytes",
            "gauge",
            "Bytes the native engine moved in the last run.",
            &mut statuses.iter().filter_map(|(s, _)| {
                let moved = s.last_run.as_ref()?.moved.as_ref()?;
                Some((reg(s), moved.bytes as f64))
            }),
        );
        family(
            "last_run_duration_seconds",
            "gauge",
            "How long the last run took.",
            &mut statuses
                .iter()
                .filter_map(|(s, _)| s.last_run.as_ref().map(|l| (reg(s), l.seconds))),
        );
        family(
            "next_run_timestamp_seconds",
            "gauge",
            "When the next run is due (Unix time).",
            &mut statuses
                .iter()
                .filter_map(|(s, _)| s.next_run.as_deref().map(|t| (reg(s), timestamp(t)))),
        );
        let limits = rate_limits(statuses.iter().map(|(s, _)| s));
        family(
            "rate_limit_remaining",
            "gauge",
            "Pulls a rate-limited source had left at the end of the last run.",
            &mut limits
                .iter()
                .map(|(labels, l)| (labels.clone(), l.remaining as f64)),
        );
        family(
            "rate_limit_limit",
            "gauge",
            "Pulls a rate-limited source allows per window.",
            &mut limits
                .iter()
                .map(|(labels, l)| (labels.clone(), l.limit as f64)),
        );
        family(
            "paused",
            "gauge",
            "1 when the synchronizer is paused.",
            &mut statuses
                .iter()
                .map(|(s, _)| (reg(s), if s.paused { 1.0 } else { 0.0 })),
        );
        family(
            "running",
            "gauge",
            "1 while a run is in progress.",
            &mut statuses
                .iter()
                .map(|(s, _)| (reg(s), if s.running { 1.0 } else { 0.0 })),
        );
        out
    }

    /// Applies a newly loaded configuration: removed registries stop after
    /// their current image, new ones start, kept ones take their new
    /// settings (and the file's schedule again) from their next run on. A
    /// registry removed and added back while its last run still drains gets
    /// its old synchronizer back, so that two runs of it never overlap.
    pub fn reload(self: &Arc<Daemon>, new: Config) {
        let keep: HashSet<String> = new
            .registries
            .iter()
            .map(|r| r.hostname.to_ascii_lowercase())
            .collect();
        let mut syncs = lock(&self.syncs);
        let mut draining = lock(&self.draining);
        draining.retain(|s| !s.lock().exited);
        let (mut added, mut removed, mut changed) = (0, 0, 0);
        for sync in syncs
            .iter()
            .filter(|s| !keep.contains(&s.hostname.to_ascii_lowercase()))
        {
            sync.update(|st| st.retired = true);
            draining.push(Arc::clone(sync));
            removed += 1;
        }
        let mut next = Vec::new();
        for registry in &new.registries {
            let same = |s: &&Arc<Synchronizer>| s.hostname.eq_ignore_ascii_case(&registry.hostname);
            let kept = syncs.iter().find(same).filter(|s| !s.lock().retired);
            let revived = draining.iter().position(|s| same(&s) && !s.lock().exited);
            let sync = match (kept, revived) {
                (Some(sync), _) => {
                    changed += 1;
                    Arc::clone(sync)
                }
                (None, Some(i)) => {
                    added += 1;
                    draining.remove(i)
                }
                (None, None) => {
                    added += 1;
                    let sync = Arc::new(Synchronizer::new(registry.clone()));
                    self.spawn(Arc::clone(&sync));
                    next.push(sync);
                    continue;
                }
            };
            sync.update(|st| {
                st.retired = false;
                st.schedule = registry.schedule.clone();
                st.schedule_from_api = false;
                st.registry = registry.clone();
                st.reschedule();
            });
            next.push(sync);
        }
        *syncs = next;
        drop(draining);
        drop(syncs);
        let mut config = lock(&self.config);
        let (old, mut api) = (&config.api, new.api.clone());
        if (old.enabled, old.address, old.port) != (api.enabled, api.address, api.port) {
            log::warn!(
                "api.enabled, api.address and api.port changes take effect at the next restart"
            );
        }
        if old.enabled && old.token.is_some() && api.token.is_none() {
            log::warn!(
                "the API keeps requiring its token until the next restart: turning authentication off takes a restart"
            );
            api.token = old.token.clone();
        }
        if old.enabled && api.token.is_none() && !old.address.is_loopback() {
            log::warn!("the API listens on {} without authentication", old.address);
        }
        *config = Config { api, ..new };
        drop(config);
        log::info!(
            "configuration reloaded: {added} added, {removed} removed, {changed} kept with their new settings"
        );
    }

    /// Begins the shutdown: cancels docker children (after their grace),
    /// and tells every synchronizer to start nothing more.
    pub fn stop(&self) {
        self.tools.cancel.cancel();
        for sync in self.syncs() {
            sync.update(|st| st.retired = true);
        }
    }

    /// Waits for every synchronizer thread (of this and earlier
    /// configurations) to end.
    pub fn join(&self) {
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// The synchronizer thread: sleep until due or woken, run, repeat.
    fn serve(&self, sync: &Synchronizer) {
        let first = sync.lock().next_run;
        log::info!(
            "{}: synchronizer started; next run {}",
            sync.hostname,
            first.as_ref().map_or("not scheduled".into(), rfc3339)
        );
        loop {
            let Some((registry, schedule, from)) = self.wait_until_due(sync) else {
                log::info!("{}: synchronizer stopped", sync.hostname);
                return;
            };
            let report = match self.run_once(sync, &registry) {
                Ok(report) => report,
                Err(holder) => {
                    self.skip_held(sync, holder);
                    continue;
                }
            };
            let finished = Local::now();
            let skipped = schedule
                .as_ref()
                .map_or(0, |s| count_missed(s, from, finished));
            let summary = format!(
                "{}: run ended: {}, {} mirrored, {} up to date, {} failed ({:.1}s)",
                sync.hostname,
                report.outcome.name(),
                report.mirrored,
                report.up_to_date,
                report.failed,
                report.seconds
            );
            sync.update(|st| {
                st.running = None;
                st.number_of_syncs += 1;
                st.outcomes[report.outcome as usize] += 1;
                st.last_run = Some(report);
                st.skipped += skipped;
                st.reschedule();
            });
            log::info!("{summary}");
            if skipped > 0 {
                log::warn!(
                    "{}: skipped: previous run still in progress ({skipped} due {} passed during it)",
                    sync.hostname,
                    if skipped == 1 { "time" } else { "times" }
                );
            }
        }
    }

    /// A due run that another process's run of the registry kept from
    /// starting: counted as skipped, with who held it.
    fn skip_held(&self, sync: &Synchronizer, holder: Holder) {
        log::warn!(
            "{}: skipped: another picture-book is running this registry: {holder}",
            sync.hostname
        );
        sync.update(|st| {
            st.running = None;
            st.skipped += 1;
            st.last_skip = Some(LastSkip {
                at: rfc3339(&Local::now()),
                held_by: holder,
            });
            st.reschedule();
        });
    }

    /// Sleeps until a run is due or requested, marks it running, and returns
    /// the registry to run, the schedule in force, and the instant from which
    /// due times count as missed; None when the synchronizer retires.
    fn wait_until_due(
        &self,
        sync: &Synchronizer,
    ) -> Option<(Registry, Option<Schedule>, DateTime<Local>)> {
        let mut st = sync.lock();
        let from = loop {
            if st.retired {
                st.exited = true;
                return None;
            }
            let now = Local::now();
            if st.run_now {
                st.run_now = false;
                break now;
            }
            match (st.paused, st.next_run) {
                (false, Some(due)) if now >= due => break due,
                (false, Some(due)) => {
                    let wait = (due - now).to_std().unwrap_or_default().min(MAX_SLEEP);
                    st = sync
                        .wake
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                _ => st = sync.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
            }
        };
        st.running = Some(Running {
            started: Local::now(),
            image: None,
            n: 0,
            of: 0,
        });
        Some((st.registry.clone(), st.schedule.clone(), from))
    }

    /// One run, shielded from panics so that one registry's bug cannot stop
    /// its synchronizer or the daemon.
    fn run_once(&self, sync: &Synchronizer, registry: &Registry) -> Result<RegistryReport, Holder> {
        let stop = || {
            let st = sync.lock();
            if self.tools.cancel.is_cancelled() {
                Some("shutting down".to_string())
            } else if st.retired {
                Some("removed from the configuration".to_string())
            } else if st.paused {
                Some("paused".to_string())
            } else {
                None
            }
        };
        let on_image = |n: usize, of: usize, source: &str| {
            if let Some(r) = sync.lock().running.as_mut() {
                r.n = n;
                r.of = of;
                r.image = Some(source.to_string());
            }
        };
        let started = Local::now();
        let ctx = mirror::Context {
            engines: &self.tools.engines,
            client: &self.tools.client,
            cancel: &self.tools.cancel,
            state_dir: &self.tools.state_dir,
            progress: &self.tools.progress,
            dry_run: false,
            force: false,
            stop: &stop,
            on_image: &on_image,
            lock_wait: Some(LOCK_WAIT),
            readiness: &mirror::Readiness::every_run(),
            mode: mirror::Mode::Mirror,
        };
        catch_unwind(AssertUnwindSafe(|| mirror::run(registry, &ctx))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!(
                "{}: internal error during the run: {what}",
                registry.hostname
            );
            Ok(RegistryReport::ended_early(
                &registry.hostname,
                started,
                format!("internal error: {what}"),
                RunOutcome::Crashed,
            ))
        })
    }
}

/// The pull limits the last runs saw, with their metric labels
/// (`registry="...",source="..."`).
fn rate_limits<'a>(
    statuses: impl Iterator<Item = &'a Status>,
) -> Vec<(String, &'a crate::registry::limits::Shown)> {
    statuses
        .flat_map(|s| {
            let shown = s.last_run.as_ref().map(|l| l.rate_limits.as_slice());
            shown.unwrap_or_default().iter().map(move |l| {
                let labels = format!("registry=\"{}\",source=\"{}\"", s.hostname, l.source);
                (labels, l)
            })
        })
        .collect()
}

/// How many fire times of `schedule` after `due` passed by `now`.
fn count_missed(schedule: &Schedule, due: DateTime<Local>, now: DateTime<Local>) -> u64 {
    let mut missed = 0;
    let mut t = due;
    while let Some(next) = schedule.next_after(&t) {
        if next > now || missed >= 100_000 {
            break;
        }
        missed += 1;
        t = next;
    }
    missed
}
