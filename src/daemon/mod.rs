//! The synchronization daemon: one synchronizer per configured registry,
//! each on its own OS thread, and the operations the HTTP API exposes on
//! them (list, details, pause, resume, run now, schedule, metrics), plus
//! reloading the configuration and shutting down. The files beside it do
//! one job each: `scheduler` decides when to run (pure, unit-tested),
//! `synchronizer` holds a registry's shared state, `worker` is its thread,
//! `views` and `metrics` are what the API shows, `memory` keeps the idle
//! daemon small, and `api` serves HTTP (routing, write queues, query
//! decoding, the listening socket).

pub mod api;
mod memory;
mod metrics;
mod scheduler;
mod synchronizer;
mod views;
mod worker;

pub use memory::limit_arenas;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use chrono::Local;
use serde_json::{Value, json};

use crate::config::schedule::Schedule;
use crate::config::{Api, Config, Registry};
use crate::display::rfc3339;
use crate::flock as runlock;
use crate::mutex::lock;
use crate::secret::Secret;
use scheduler::NotNow;
use synchronizer::Synchronizer;
pub use worker::Tools;

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
            .spawn(move || worker::serve(&sync, &daemon.tools))
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
        let active: Vec<views::Status> = self
            .syncs()
            .iter()
            .map(|s| views::status(s, &self.tools.state_dir))
            .filter(|s| !s.paused && s.sync_period.is_some())
            .collect();
        json!({ "synchronizers": active })
    }

    /// `details`: one synchronizer's configuration (redacted) and status.
    pub fn details(&self, host: &str) -> Result<Value, Refusal> {
        let sync = self.find(host)?;
        let configuration = sync.lock().registry.redacted();
        let status = views::status(&sync, &self.tools.state_dir);
        Ok(json!({ "configuration": configuration, "status": status }))
    }

    /// `pause`: no further scheduled runs; a run in progress stops after its
    /// current image.
    pub fn pause(&self, host: &str) -> Result<Value, Refusal> {
        let sync = self.find(host)?;
        let (was, running) =
            sync.update(|st| (st.timing.pause(Local::now()), st.running.is_some()));
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
        let (was, next) = sync.update(|st| (st.timing.resume(Local::now()), st.timing.next_run));
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

    /// `run`: start a run now; it prunes nothing unless `prune` (the
    /// query's `prune=false` turns it off once).
    pub fn run_now(&self, host: &str, prune: bool) -> Result<Value, Refusal> {
        let sync = self.find(host)?;
        let held = runlock::holder(&self.tools.state_dir, &sync.hostname);
        sync.update(|st| {
            st.timing.request_run(st.running.is_some(), held)?;
            st.no_prune = !prune;
            Ok(())
        })
        .map_err(|not_now| conflict(&sync.hostname, not_now))?;
        log::info!("{}: run requested over the API", sync.hostname);
        Ok(json!({ "hostname": sync.hostname, "message": "run started" }))
    }

    /// `schedule`: replace the schedule until the next reload or restart.
    pub fn set_schedule(&self, host: &str, period: &str) -> Result<Value, Refusal> {
        let schedule =
            Schedule::parse(period).map_err(|e| Refusal::Invalid(format!("period: {e}")))?;
        let sync = self.find(host)?;
        let next = sync.update(|st| {
            let timing = &mut st.timing;
            timing.set_schedule(Some(schedule.clone()), true, Local::now());
            timing.next_run
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
        let rows: Vec<metrics::Row> = self
            .syncs()
            .iter()
            .map(|s| (views::status(s, &self.tools.state_dir), s.lock().outcomes))
            .collect();
        metrics::text(&rows)
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
                st.registry = registry.clone();
                let schedule = registry.schedule.clone();
                st.timing.set_schedule(schedule, false, Local::now());
            });
            next.push(sync);
        }
        *syncs = next;
        drop(draining);
        drop(syncs);
        let mut config = lock(&self.config);
        let api = api_after_reload(&config.api, new.api.clone());
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
}

/// Why a run of `host` cannot start now, as the API says it.
fn conflict(host: &str, not_now: NotNow) -> Refusal {
    Refusal::Conflict(match not_now {
        NotNow::Running => format!("{host}: a run is already in progress"),
        NotNow::Paused => format!("{host}: paused; resume it first"),
        NotNow::HeldElsewhere(holder) => format!(
            "{host}: another picture-book is running this registry: {holder}; try again when it has ended"
        ),
    })
}

/// The API settings in force after a reload from `old` to `new`: where the
/// API listens changes only at the next restart, and neither does turning
/// its token off. Says so.
fn api_after_reload(old: &Api, mut new: Api) -> Api {
    if (old.enabled, old.address, old.port) != (new.enabled, new.address, new.port) {
        log::warn!("api.enabled, api.address and api.port changes take effect at the next restart");
    }
    if old.enabled && old.token.is_some() && new.token.is_none() {
        log::warn!(
            "the API keeps requiring its token until the next restart: turning authentication off takes a restart"
        );
        new.token = old.token.clone();
    }
    if old.enabled && new.token.is_none() && !old.address.is_loopback() {
        log::warn!("the API listens on {} without authentication", old.address);
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn api(address: [u8; 4], port: u16, token: Option<&str>) -> Api {
        Api {
            enabled: true,
            address: IpAddr::V4(Ipv4Addr::from(address)),
            port,
            token: token.map(Secret::new),
        }
    }

    #[test]
    fn a_reload_keeps_the_token_but_takes_a_new_one() {
        let old = api([127, 0, 0, 1], 8080, Some("old"));
        let kept = api_after_reload(&old, api([127, 0, 0, 1], 8080, None));
        assert_eq!(kept.token.as_ref().map(Secret::expose), Some("old"));
        let changed = api_after_reload(&old, api([127, 0, 0, 1], 8080, Some("new")));
        assert_eq!(changed.token.as_ref().map(Secret::expose), Some("new"));
        let off = Api {
            enabled: false,
            ..api([127, 0, 0, 1], 8080, None)
        };
        let never = api_after_reload(&off, api([127, 0, 0, 1], 8080, None));
        assert!(never.token.is_none(), "no token to keep");
    }

    #[test]
    fn a_reload_takes_the_new_address_for_the_next_restart() {
        let old = api([127, 0, 0, 1], 8080, None);
        let new = api_after_reload(&old, api([0, 0, 0, 0], 9090, None));
        assert_eq!(
            (new.address, new.port),
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9090)
        );
    }

    #[test]
    fn a_run_refused_says_why_and_what_to_do() {
        let holder = crate::flock::Holder {
            pid: 7,
            command: "picture-book load".into(),
            since: "2026-01-05T10:00:00+00:00".into(),
        };
        for (not_now, message) in [
            (
                NotNow::Running,
                "r.example.com: a run is already in progress",
            ),
            (NotNow::Paused, "r.example.com: paused; resume it first"),
            (
                NotNow::HeldElsewhere(holder.clone()),
                &format!(
                    "r.example.com: another picture-book is running this registry: {holder}; try again when it has ended"
                ),
            ),
        ] {
            assert_eq!(
                conflict("r.example.com", not_now),
                Refusal::Conflict(message.to_string())
            );
        }
    }
}
