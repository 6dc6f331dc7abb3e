//! The workers of one run: `parallel` scoped threads take images off the
//! plan, decide each (see `freshness`), move it with the engine under the
//! retry policy (see `retry`), one move at a time per target repository,
//! and gather the reports; a stop request or an engine that is gone ends
//! the run after the images in progress. Beside them, the run's blob
//! copiers (`engine::pool`, at most `parallel`) start with the first blob
//! and end with the run. Setting the run up and saving what it learnt is
//! `mirror`'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use chrono::{DateTime, Local};

use crate::config::Registry;
use crate::display::Item;
use crate::engine::pool::Pool;
use crate::engine::{Engine, Failed, Job, Moved, RunMemory, Slots, Steps};
use crate::error::Error;
use crate::mutex::{into_inner, lock};
use crate::reference::Reference;
use crate::run::down::{down_message, looks_down};
use crate::run::freshness::{Checker, Seen, Verdict};
use crate::run::mirror::Context;
use crate::run::plan::Planned;
use crate::run::report::{ImageReport, Outcome, RegistryReport, RunOutcome};
use crate::run::retry::{self, Kind, Policy};
use crate::run::state::StateFile;

/// One run's shared progress, worked on by `registry.parallel` threads.
pub struct Run<'a> {
    registry: &'a Registry,
    ctx: &'a Context<'a>,
    engine: &'a dyn Engine,
    checker: &'a Checker<'a>,
    state: &'a StateFile,
    memory: &'a RunMemory,
    /// Transfers in flight, images and blobs alike.
    slots: Slots,
    total: usize,
    next: AtomicUsize,
    started: AtomicUsize,
    /// Why the run stopped early, and as what.
    stopped: Mutex<Option<(String, RunOutcome)>>,
    results: Mutex<Vec<(usize, ImageReport)>>,
    /// One lock per target repository: two tags of one repository share
    /// layers, and registries can fail concurrent uploads of the same blob.
    repositories: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Registries found unreachable in this run, with the error that told:
    /// the images that need them are not attempted.
    down: Mutex<HashMap<String, String>>,
    /// For each image that failed to move: the registry it failed with, and
    /// whether the failure was a passing one.
    failed_hosts: Mutex<Vec<(String, bool)>>,
    /// Which target repositories take uploads, or must be created first.
    targets: crate::run::repositories::Targets,
}

impl<'a> Run<'a> {
    /// A run of `total` images over `registry`, with `engine`.
    pub fn new(
        registry: &'a Registry,
        ctx: &'a Context<'a>,
        engine: &'a dyn Engine,
        checker: &'a Checker<'a>,
        state: &'a StateFile,
        memory: &'a RunMemory,
        total: usize,
    ) -> Run<'a> {
        Run {
            registry,
            ctx,
            engine,
            checker,
            state,
            memory,
            slots: Slots::new(registry.parallel),
            total,
            next: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            stopped: Mutex::new(None),
            results: Mutex::new(Vec::new()),
            repositories: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            failed_hosts: Mutex::new(Vec::new()),
            targets: crate::run::repositories::Targets::new(engine.capabilities().uploads),
        }
    }

    /// Works through `planned` on `parallel` threads, which hand their
    /// blobs to the run's copiers, then cancels the uploads the repository
    /// checks kept and no blob used; returns the panics of those that
    /// panicked.
    pub fn work_all(&self, planned: &[Planned]) -> Vec<Box<dyn std::any::Any + Send>> {
        let workers = self.registry.parallel.clamp(1, planned.len().max(1));
        let panics = thread::scope(|scope| {
            let copiers = Pool::open(scope, self.registry.parallel);
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let pool = copiers.share();
                    scope.spawn(move || self.work(planned, &pool))
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().err()).collect()
        });
        let access = self.checker.access;
        self.targets
            .cancel_unused(self.ctx.client, access, self.memory);
        panics
    }

    /// Adds what the run did to `report`, and closes it.
    pub fn finish(self, mut report: RegistryReport, started: DateTime<Local>) -> RegistryReport {
        let stopped = into_inner(self.stopped);
        if let Some((_, stop_outcome)) = &stopped {
            report.outcome = *stop_outcome;
        }
        let mut results = into_inner(self.results);
        results.sort_by_key(|(n, _)| *n);
        report.images.extend(results.into_iter().map(|(_, r)| r));
        report.images.sort_by_key(ImageReport::order);
        let down = into_inner(self.down);
        let failed_hosts = into_inner(self.failed_hosts);
        let down_message = down_message(&down, &report.images)
            .or_else(|| looks_down(&failed_hosts, &report.images));
        if let Some(e) = down_message.as_ref().filter(|_| stopped.is_none()) {
            log::error!("{}: {e}", self.registry.hostname);
        }
        report.error = stopped
            .map(|(why, _)| why)
            .or(down_message)
            .or(report.error.take());
        report.finish(started)
    }

    /// Takes images off the plan until none is left.
    fn work<'p>(&'p self, planned: &'p [Planned], pool: &Arc<Pool<'p>>) {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(image) = planned.get(n) else { break };
            let report = self.image(image, pool);
            lock(&self.results).push((n, report));
        }
    }

    fn stop_requested(&self) -> bool {
        if lock(&self.stopped).is_some() {
            return true;
        }
        let Some(why) = (self.ctx.stop)() else {
            return false;
        };
        let done = self.started.load(Ordering::Relaxed);
        let message = format!("stopped after {done} of {} images: {why}", self.total);
        if self.stop_with(message.clone(), RunOutcome::Stopped) {
            log::warn!("{}: {message}", self.registry.hostname);
        }
        true
    }

    /// Records why the run stops; true for the first reason given.
    fn stop_with(&self, why: String, outcome: RunOutcome) -> bool {
        let mut stopped = lock(&self.stopped);
        let first = stopped.is_none();
        if first {
            *stopped = Some((why, outcome));
        }
        first
    }

    /// Decides on one image and moves it when it must be.
    fn image<'p>(&'p self, image: &'p Planned, pool: &Arc<Pool<'p>>) -> ImageReport {
        let report = |outcome| {
            ImageReport::new(
                image.line,
                image.reference.to_string(),
                Some(image.target.clone()),
                outcome,
            )
            .entry(image.entry)
        };
        if self.stop_requested() {
            return report(Outcome::NotAttempted);
        }
        let hosts = [source_host(&image.reference), &self.registry.hostname];
        if let Some(host) = hosts.iter().find(|h| lock(&self.down).contains_key(**h)) {
            return report(Outcome::NotAttempted).error(format!("{host} is unreachable"));
        }
        let n = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let (verdict, seen) = if !self.ctx.mode.sink().is_registry() {
            (Verdict::Mirror("into the layout".into()), Seen::default())
        } else if let Some(verdict) = self.immutable(image) {
            (verdict, Seen::default())
        } else if self.ctx.force {
            (
                Verdict::Mirror("--force".into()),
                self.checker.source_seen(&image.reference),
            )
        } else {
            self.checker.check(&image.reference, &image.target)
        };
        let label = format!("{} [{n}/{}]", self.registry.hostname, self.total);
        let source = image.reference.to_string();
        let reason = match verdict {
            Verdict::UpToDate(reason) => {
                log::info!("{label} {source}: up to date ({reason})");
                let up_to_date = report(Outcome::UpToDate).reason(reason);
                return self.up_to_date(image, n, &seen, up_to_date, pool);
            }
            Verdict::Refused(error) => {
                log::error!("{label} {source}: {error}");
                return report(Outcome::Failed).error(error);
            }
            Verdict::Mirror(reason) if self.ctx.dry_run => {
                return self.planned(image, n, report(Outcome::Planned).reason(reason), pool);
            }
            Verdict::Mirror(reason) => reason,
        };
        (self.ctx.on_image)(n, self.total, &source);
        log::debug!("{label} {source}: mirroring ({reason})");
        let item = Arc::new(self.item(image, n).done_as(self.ctx.mode.sink().done_as()));
        let (result, attempts) = self.transfer(&item, image, pool);
        let error = result.as_ref().err().map(|f| f.error.to_string());
        self.ctx.progress.finished(&item, error.as_deref());
        match result {
            Ok(moved) => {
                (self.ctx.on_moved)(moved.stats.bytes);
                if self.ctx.mode.sink().is_registry() {
                    self.recorded(image, &seen, &moved);
                }
                report(Outcome::Mirrored)
                    .reason(reason)
                    .attempts(attempts)
                    .moved(self.engine.capabilities().counts, moved.stats)
            }
            Err(f) => self.failed(report(Outcome::Failed).reason(reason), f, attempts),
        }
    }

    /// An immutable image already mirrored: up to date without a request
    /// (`--force` asks all the same).
    fn immutable(&self, image: &Planned) -> Option<Verdict> {
        if !image.immutable || self.ctx.force {
            return None;
        }
        self.checker.recorded(&image.reference, &image.target)
    }

    /// The progress line of `image`, number `n` of the run.
    fn item(&self, image: &Planned, n: usize) -> Item {
        let source = image.reference.to_string();
        Item::new(
            &self.registry.hostname,
            n,
            self.total,
            &source,
            &image.target,
        )
    }

    /// A dry run's report of an image to mirror, with what the engine can
    /// tell of the move.
    fn planned<'p>(
        &'p self,
        image: &'p Planned,
        n: usize,
        report: ImageReport,
        pool: &Arc<Pool<'p>>,
    ) -> ImageReport {
        let item = Arc::new(self.item(image, n));
        let job = self.job(&item, image, pool);
        match self.engine.plan(&job) {
            Ok(Some(plan)) => report.plan(plan),
            Ok(None) => report,
            Err(e) => report.error(format!("cannot tell what would move: {e}")),
        }
    }

    /// Records a mirrored image in the state file.
    fn recorded(&self, image: &Planned, seen: &Seen, moved: &Moved) {
        self.checker
            .record_mirrored(&image.reference, &image.target, seen, moved);
        if let Err(e) = self.state.save_now_and_then() {
            log::warn!("{}: {e}", self.registry.hostname);
        }
    }

    /// The report of an image that did not move, and what it says of the run.
    fn failed(&self, report: ImageReport, f: Failed, attempts: u32) -> ImageReport {
        let error = f.error.to_string();
        if f.error.is_docker_down() {
            if self.stop_with(error, RunOutcome::Failed) {
                log::error!(
                    "{}: the engine is unavailable; the remaining images are not attempted",
                    self.registry.hostname
                );
            }
            return ImageReport {
                outcome: Outcome::NotAttempted,
                ..report
            }
            .attempts(attempts);
        }
        if matches!(f.error, Error::Interrupted { .. }) && self.stop_requested() {
            return ImageReport {
                outcome: Outcome::NotAttempted,
                ..report
            }
            .error(error);
        }
        let kind = retry::kind(&f.error);
        lock(&self.failed_hosts).push((f.host.clone(), kind.is_retryable()));
        if kind == Kind::Unreachable {
            lock(&self.down)
                .entry(f.host)
                .or_insert_with(|| error.clone());
        }
        report.error(error).attempts(attempts)
    }

    /// Moves one image with the engine, one move at a time per target
    /// repository; returns what it did and how many attempts it took.
    fn transfer<'p>(
        &'p self,
        item: &Arc<Item>,
        image: &'p Planned,
        pool: &Arc<Pool<'p>>,
    ) -> (Result<Moved, Failed>, u32) {
        self.move_with(item, image, pool, &|job, policy| {
            self.targets.ensure(job, self.ctx.cancel)?;
            self.engine.transfer(job, policy)
        })
    }

    /// Runs `work` (a move of `image` by the engine) with one move at a time
    /// per target repository, under the image's retry policy: `retries` per
    /// step, waits that end when the run is asked to stop, and after a 429
    /// the registry asked with a `HEAD` how long to wait. Returns what it did
    /// and how many attempts it took.
    fn move_with<'p>(
        &'p self,
        item: &Arc<Item>,
        image: &'p Planned,
        pool: &Arc<Pool<'p>>,
        work: &Move<'_, 'p>,
    ) -> (Result<Moved, Failed>, u32) {
        let target = &image.target;
        let repository = target
            .rsplit_once(':')
            .map_or(target.as_str(), |(name, _)| name);
        let lock_for_repository = Arc::clone(
            lock(&self.repositories)
                .entry(repository.to_string())
                .or_default(),
        );
        let _one_at_a_time = lock(&lock_for_repository);
        let served = move |host: &str| {
            let at_source = !host.eq_ignore_ascii_case(&self.registry.hostname);
            self.checker
                .wait_until_served(&image.reference, &image.target, at_source);
        };
        let policy = Arc::new(Policy {
            label: item.name(),
            retries: self.registry.retries,
            stop: Box::new(|| self.stop_requested()),
            served: Box::new(served),
            again: AtomicU32::new(0),
        });
        let job = self.job(item, image, pool);
        let result = work(&job, Arc::clone(&policy) as Arc<dyn Steps + 'p>);
        (result, policy.attempts())
    }

    /// With `referrers`: what refers to an image that is up to date and
    /// changed since the last run is copied (one request per subject when
    /// nothing did).
    fn up_to_date<'p>(
        &'p self,
        image: &'p Planned,
        n: usize,
        seen: &Seen,
        report: ImageReport,
        pool: &Arc<Pool<'p>>,
    ) -> ImageReport {
        let Some(digest) = seen.source_digest.as_deref() else {
            return report;
        };
        if !self.registry.referrers || self.ctx.dry_run {
            return report;
        }
        let known = self.checker.referred(&image.target);
        let source = image.reference.to_string();
        let item = Arc::new(self.item(image, n));
        let (result, attempts) = self.move_with(&item, image, pool, &|job, policy| {
            self.engine.refresh_referrers(job, policy, digest, &known)
        });
        match result {
            Ok(moved) => {
                self.checker
                    .record_referred(&image.reference, &image.target, seen, &moved);
                if let Err(e) = self.state.save_now_and_then() {
                    log::warn!("{}: {e}", self.registry.hostname);
                }
                let copied = moved.stats.referrers;
                if copied == 0 {
                    return report;
                }
                log::info!("{} {source}: {copied} new referrers copied", item.name());
                let reason = format!(
                    "{}; {copied} new referrers copied",
                    report.reason.clone().unwrap_or_default()
                );
                report
                    .reason(reason)
                    .moved(self.engine.capabilities().counts, moved.stats)
            }
            Err(f) => {
                let failed = ImageReport {
                    outcome: Outcome::Failed,
                    ..report
                };
                self.failed(failed, f, attempts)
            }
        }
    }

    /// The job of moving `image`: what an engine is given.
    fn job<'p>(&'p self, item: &Arc<Item>, image: &'p Planned, pool: &Arc<Pool<'p>>) -> Job<'p> {
        Job {
            registry: self.registry,
            source: &image.reference,
            target: &image.target,
            item: Arc::clone(item),
            progress: self.ctx.progress,
            client: self.ctx.client,
            access: self.checker.access,
            slots: &self.slots,
            pool: Arc::clone(pool),
            memory: self.memory,
            from: self.ctx.mode.source(),
            to: self.ctx.mode.sink(),
        }
    }
}

/// A move of one image by the engine, under a retry policy.
type Move<'w, 'p> = dyn Fn(&Job<'p>, Arc<dyn Steps + 'p>) -> Result<Moved, Failed> + 'w;

/// The registry a source is pulled from.
fn source_host(reference: &Reference) -> &str {
    reference.domain().unwrap_or("docker.io")
}
