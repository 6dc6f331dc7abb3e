//! One run over one registry: run its syncer script, plan a target for each
//! listed image (see `plan`), skip those already up to date (see
//! `freshness`), and move the others with the registry's engine, `parallel`
//! at a time on scoped threads, each step under the retry policy of
//! `retry`. One image failing does not stop the others; an engine that is
//! gone (the docker daemon) does, and so does the caller's stop request
//! (pause, shutdown), after the images in progress. The registry's lock
//! (see `runlock`) is held throughout. `load` calls this once per registry
//! and the daemon once per scheduled run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use chrono::{DateTime, Local};

use crate::config::Registry;
use crate::display::{Item, Progress};
use crate::engine::ends::needs_layouts;
use crate::engine::{
    Access, Engine, EngineSet, Failed, Freshness, Job, Moved, RunMemory, Sink, Slots, Source, Stats,
};
use crate::error::{Error, human_duration};
use crate::flock::{self as runlock, Holder, Refused, RunLock};
use crate::listing::script;
use crate::mutex::{into_inner, lock};
use crate::platform::Platform;
use crate::process::Cancel;
use crate::reference::Reference;
use crate::registry::Client;
use crate::run::freshness::{Checker, Seen, Verdict};
use crate::run::plan::{Planned, plan, plan_layout};
use crate::run::report::{ImageReport, Outcome, RegistryReport, RunOutcome};
use crate::run::retry::{self, Kind, Policy};
use crate::run::state::StateFile;

/// What a run needs besides the registry.
pub struct Context<'a> {
    /// The engines.
    pub engines: &'a dyn EngineSet,
    /// The registry API client.
    pub client: &'a Client,
    /// The cancellation of children (syncer scripts, docker).
    pub cancel: &'a Cancel,
    /// Where state files live.
    pub state_dir: &'a Path,
    /// Where progress is shown.
    pub progress: &'a Progress,
    /// Run the script and decide, but move nothing.
    pub dry_run: bool,
    /// Mirror every image, up to date or not.
    pub force: bool,
    /// Asked before each image; `Some(reason)` stops the run there (pause,
    /// shutdown), leaving the images in progress to finish.
    pub stop: &'a (dyn Fn() -> Option<String> + Sync),
    /// Told when an image starts: its number, the total, its source.
    pub on_image: &'a (dyn Fn(usize, usize, &str) + Sync),
    /// How long to wait for another process's run of the registry to end;
    /// None to take no lock (a dry run writes nothing).
    pub lock_wait: Option<Duration>,
    /// Whether each engine is ready, asked each run or once.
    pub readiness: &'a Readiness,
    /// Mirror to the target, or export into a layout, or load from one.
    pub mode: Mode<'a>,
}

/// What a run moves images from and to, as its callers say it; the run
/// works with its [`Source`] and [`Sink`].
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// From the sources the syncer script lists, to the target.
    Mirror,
    /// From the sources the syncer script lists, into a layout (`export`),
    /// with the native engine; the target is not asked.
    Export(&'a crate::layout::Writer),
    /// From the images of a layout (`load --from`), with the native engine,
    /// to the target.
    Import(&'a crate::layout::Reader),
}

impl<'a> Mode<'a> {
    /// Where the images come from.
    pub fn source(self) -> Source<'a> {
        match self {
            Mode::Import(layout) => Source::Layout(layout),
            Mode::Mirror | Mode::Export(_) => Source::Registry,
        }
    }

    /// Where they go.
    pub fn sink(self) -> Sink<'a> {
        match self {
            Mode::Export(layout) => Sink::Layout(layout),
            Mode::Mirror | Mode::Import(_) => Sink::Registry,
        }
    }
}

/// Whether the engines are ready: asked at every run (the daemon, whose
/// docker may come and go), or once per engine and process (`load`, which
/// says a missing docker once, not once per registry).
pub struct Readiness {
    once: Option<Mutex<HashMap<&'static str, Result<Freshness, String>>>>,
}

impl Readiness {
    /// Asked at every run.
    pub fn every_run() -> Readiness {
        Readiness { once: None }
    }

    /// Asked once per engine.
    pub fn once() -> Readiness {
        Readiness {
            once: Some(Mutex::new(HashMap::new())),
        }
    }

    /// Whether `engine` can work for `registry`, and how it decides
    /// freshness. A dry run without docker compares images for this host's
    /// platform.
    fn of(
        &self,
        engine: &dyn Engine,
        registry: &Registry,
        dry_run: bool,
    ) -> Result<Freshness, String> {
        let Some(cache) = &self.once else {
            return ready(engine, registry, dry_run);
        };
        let name = engine.capabilities().name;
        if let Some(known) = lock(cache).get(name) {
            return known.clone();
        }
        let known = ready(engine, registry, dry_run);
        lock(cache).insert(name, known.clone());
        known
    }
}

impl Context<'_> {
    fn stop_requested(&self) -> bool {
        (self.stop)().is_some()
    }
}

/// Mirrors what `registry`'s syncer script lists, `registry.parallel` images
/// at a time, holding the registry's lock (see `runlock`) throughout unless
/// `ctx.lock_wait` is None. Fails only when another process holds the lock
/// past `ctx.lock_wait`, with who it is; everything else that went wrong is
/// in the report.
pub fn run(registry: &Registry, ctx: &Context<'_>) -> Result<RegistryReport, Holder> {
    let from = ctx.mode.source();
    let (engine, freshness) = match engine_ready(registry, ctx) {
        Ok(ready) => ready,
        Err(e) => {
            return Ok(RegistryReport::ended_early(
                &registry.hostname,
                Local::now(),
                e,
                RunOutcome::Failed,
            ));
        }
    };
    let lock = match take_lock(registry, ctx) {
        Ok(lock) => lock,
        Err(refused) => return not_locked(registry, refused),
    };
    let started = Local::now();
    let capabilities = engine.capabilities();
    let mut report = RegistryReport::start(&registry.hostname, started);
    report.engine = Some(capabilities.name);
    report.moved = capabilities.counts.then(Stats::default);
    let planned = match from {
        Source::Layout(layout) => {
            plan_layout(registry, capabilities.naming, layout.entries(), &mut report)
        }
        Source::Registry => match listed(registry, ctx) {
            Ok(listing) => plan(registry, capabilities.naming, listing, &mut report),
            Err(e) => return Ok(unlisted(registry, ctx, &e, report).finish(started)),
        },
    };
    let state = load_state(registry, ctx, &mut report);
    let access = Access::of(registry, from.is_registry());
    let stop = || ctx.stop_requested();
    let checker = Checker {
        client: ctx.client,
        freshness: &freshness,
        state: &state,
        access: &access,
        rate_limit_min: registry.rate_limit_min,
        stop: &stop,
    };
    let memory = RunMemory::new(state.blobs());
    let run = Run::new(
        registry,
        ctx,
        engine,
        &checker,
        &state,
        &memory,
        planned.len(),
    );
    let panics = run.work_all(&planned);
    report.rate_limits = rate_limits(ctx.client, &planned, &access);
    save_state(registry, ctx, &state, &memory);
    drop(lock);
    // A worker's panic goes on to the caller as it was, once what the other
    // workers mirrored is saved.
    if let Some(panic) = panics.into_iter().next() {
        std::panic::resume_unwind(panic);
    }
    if report.warnings.is_empty() {
        report.warnings.extend(state.problem());
    }
    Ok(run.finish(report, started))
}

/// The engine of a run over `registry` (the one that reads and writes
/// layouts, when the run has one), when it is ready, and how it decides
/// freshness; else why the run cannot be.
fn engine_ready<'e>(
    registry: &Registry,
    ctx: &Context<'e>,
) -> Result<(&'e dyn Engine, Freshness), String> {
    let engine = if needs_layouts(ctx.mode.source(), ctx.mode.sink()) {
        ctx.engines
            .for_layouts()
            .ok_or_else(|| "no engine reads or writes layouts".to_string())?
    } else {
        ctx.engines.get(registry.engine)
    };
    Ok((engine, ctx.readiness.of(engine, registry, ctx.dry_run)?))
}

/// The registry's state file, its problem told once in `report`, and the
/// registries' challenges it remembers given to the client.
fn load_state(registry: &Registry, ctx: &Context<'_>, report: &mut RegistryReport) -> StateFile {
    let state = StateFile::load(ctx.state_dir, &registry.hostname);
    if let Some(problem) = state.problem().filter(|_| report.warnings.is_empty()) {
        log::warn!("{}: {problem}", registry.hostname);
        report.warnings.push(problem);
    }
    ctx.client.remember_challenges(state.challenges());
    state
}

/// Keeps what the run learnt (challenges, blobs) in `state` and writes it,
/// unless the run is a dry run or an export.
fn save_state(registry: &Registry, ctx: &Context<'_>, state: &StateFile, memory: &RunMemory) {
    state.set_challenges(ctx.client.challenges());
    state.set_blobs(memory.blobs());
    if ctx.dry_run || !ctx.mode.sink().is_registry() {
        log::debug!(
            "{}: a dry run or an export; {} not written",
            registry.hostname,
            state.path().display()
        );
    } else if let Err(e) = state.save() {
        log::warn!("{}: {e}", registry.hostname);
    }
}

/// `report` of a run whose syncer script gave no listing: stopped, when
/// picture-book is stopping (the script is stopped at once for it), else
/// failed with `e`.
fn unlisted(
    registry: &Registry,
    ctx: &Context<'_>,
    e: &Error,
    mut report: RegistryReport,
) -> RegistryReport {
    match (ctx.stop)().filter(|_| ctx.cancel.is_cancelled()) {
        Some(why) => {
            let why = format!("stopped while the syncer script ran: {why}");
            log::warn!("{}: {why}", registry.hostname);
            report.error = Some(why);
            report.outcome = RunOutcome::Stopped;
        }
        None => {
            log::error!("{}: {e}", registry.hostname);
            report.error = Some(e.to_string());
        }
    }
    report
}

/// The outcome of a run that did not get its lock: the holder, or a failed
/// run when the state directory cannot hold the lock (a run that cannot
/// take its lock does not run unguarded).
fn not_locked(registry: &Registry, refused: Refused) -> Result<RegistryReport, Holder> {
    match refused {
        Refused::Held(holder) => Err(holder),
        Refused::Unusable(problem) => {
            let e = Error::StateDirUnusable { problem };
            log::error!("{}: not run: {e}", registry.hostname);
            Ok(RegistryReport::ended_early(
                &registry.hostname,
                Local::now(),
                e.to_string(),
                RunOutcome::Failed,
            ))
        }
    }
}

/// What the registry's syncer script lists.
fn listed(registry: &Registry, ctx: &Context<'_>) -> Result<script::Listing, Error> {
    log::info!(
        "{}: running syncer script {}",
        registry.hostname,
        registry.script.display()
    );
    script::run(
        &registry.script,
        &registry.script_args,
        registry.script_timeout,
        ctx.cancel,
    )
}

/// Whether `engine` can work now, and how it decides freshness.
fn ready(engine: &dyn Engine, registry: &Registry, dry_run: bool) -> Result<Freshness, String> {
    match engine.ready() {
        Ok(ready) => {
            log::debug!("{}: engine {}", registry.hostname, ready.version);
            Ok(ready.freshness)
        }
        Err(e) if dry_run => {
            log::debug!("{e}; comparing images for this host's platform");
            Ok(Freshness::SameConfig(Platform::host()))
        }
        Err(e) => {
            log::error!("{}: not run: {e}", registry.hostname);
            Err(e.to_string())
        }
    }
}

/// Takes the registry's lock as `ctx` says: None when it takes none (nor
/// does an export, which writes no state). A run
/// that cannot take it (the state directory is not usable) does not run
/// unguarded: the caller fails it.
fn take_lock(registry: &Registry, ctx: &Context<'_>) -> Result<Option<RunLock>, Refused> {
    let Some(wait) = ctx.lock_wait.filter(|_| ctx.mode.sink().is_registry()) else {
        return Ok(None);
    };
    let host = &registry.hostname;
    let waiting = &mut |holder: &Holder| {
        log::info!(
            "{host}: another picture-book is running this registry: {holder}; waiting up to {} for it to end",
            human_duration(wait)
        );
    };
    let stop = || ctx.stop_requested();
    runlock::lock(ctx.state_dir, host, wait, waiting, &stop).map(Some)
}

/// One line for a registry that failed every image moved in the run for
/// passing reasons (HTTP 5xx, 429) even after retries.
fn looks_down(failed: &[(String, bool)], images: &[ImageReport]) -> Option<String> {
    let (host, _) = failed.first()?;
    let moved = images.iter().filter(|i| i.attempts > 0).count();
    let all_alike = failed.iter().all(|(h, passing)| h == host && *passing);
    let last = images.iter().rev().find_map(|i| i.error.as_deref())?;
    (failed.len() >= 2 && failed.len() == moved && all_alike).then(|| {
        format!(
            "{host} looks down: all {} images failed, each after its retries; the last said: {last}",
            failed.len()
        )
    })
}

/// One line for the registries that could not be reached, instead of a
/// mystery per image.
fn down_message(down: &HashMap<String, String>, images: &[ImageReport]) -> Option<String> {
    let mut hosts: Vec<(&String, &String)> = down.iter().collect();
    hosts.sort();
    let skipped = images
        .iter()
        .filter(|i| i.outcome == Outcome::NotAttempted)
        .count();
    let what: Vec<String> = hosts
        .iter()
        .map(|(host, error)| format!("{host} is unreachable ({error})"))
        .collect();
    (!what.is_empty()).then(|| {
        format!(
            "{}; {skipped} {} that needed it not attempted",
            what.join("; "),
            if skipped == 1 { "image" } else { "images" }
        )
    })
}

/// What the sources of `planned` last said of their pull limits.
fn rate_limits(
    client: &Client,
    planned: &[Planned],
    access: &Access,
) -> Vec<crate::registry::limits::Shown> {
    let hosts: std::collections::BTreeSet<String> = planned
        .iter()
        .map(|p| access.source(&p.reference).host)
        .collect();
    hosts
        .iter()
        .filter_map(|host| client.rate_limit(host, access.pull(host).as_ref()))
        .collect()
}

/// One run's shared progress, worked on by `registry.parallel` threads.
struct Run<'a> {
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
    results: Mutex<Vec<ImageReport>>,
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
    fn new(
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
            targets: Default::default(),
        }
    }

    /// Works through `planned` on `parallel` threads; returns the panics of
    /// those that panicked.
    fn work_all(&self, planned: &[Planned]) -> Vec<Box<dyn std::any::Any + Send>> {
        let workers = self.registry.parallel.clamp(1, planned.len().max(1));
        thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| scope.spawn(|| self.work(planned)))
                .collect();
            handles.into_iter().filter_map(|h| h.join().err()).collect()
        })
    }

    /// Adds what the run did to `report`, and closes it.
    fn finish(self, mut report: RegistryReport, started: DateTime<Local>) -> RegistryReport {
        let stopped = into_inner(self.stopped);
        if let Some((_, stop_outcome)) = &stopped {
            report.outcome = *stop_outcome;
        }
        report.images.extend(into_inner(self.results));
        report.images.sort_by_key(|i| i.line);
        let down = into_inner(self.down);
        let failed_hosts = into_inner(self.failed_hosts);
        let down_message = down_message(&down, &report.images)
            .or_else(|| looks_down(&failed_hosts, &report.images));
        if let Some(e) = down_message.as_ref().filter(|_| stopped.is_none()) {
            log::error!("{}: {e}", self.registry.hostname);
        }
        report.error = stopped.map(|(why, _)| why).or(down_message);
        report.finish(started)
    }

    /// Takes images off the plan until none is left.
    fn work(&self, planned: &[Planned]) {
        while let Some(image) = planned.get(self.next.fetch_add(1, Ordering::Relaxed)) {
            let report = self.image(image);
            lock(&self.results).push(report);
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
    fn image(&self, image: &Planned) -> ImageReport {
        let report = |outcome| {
            ImageReport::new(
                image.line,
                image.reference.to_string(),
                Some(image.target.clone()),
                outcome,
            )
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
                return self.up_to_date(image, n, &seen, report(Outcome::UpToDate).reason(reason));
            }
            Verdict::Refused(error) => {
                log::error!("{label} {source}: {error}");
                return report(Outcome::Failed).error(error);
            }
            Verdict::Mirror(reason) if self.ctx.dry_run => {
                return self.planned(image, n, report(Outcome::Planned).reason(reason));
            }
            Verdict::Mirror(reason) => reason,
        };
        (self.ctx.on_image)(n, self.total, &source);
        log::debug!("{label} {source}: mirroring ({reason})");
        let item = self.item(image, n).done_as(self.ctx.mode.sink().done_as());
        let (result, attempts) = self.transfer(&item, image);
        let error = result.as_ref().err().map(|f| f.error.to_string());
        self.ctx.progress.finished(&item, error.as_deref());
        match result {
            Ok(moved) => {
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
    fn planned(&self, image: &Planned, n: usize, report: ImageReport) -> ImageReport {
        let item = self.item(image, n);
        let job = self.job(&item, image);
        match self.engine.plan(&job) {
            Ok(Some(plan)) => report.plan(plan),
            Ok(None) => report,
            Err(e) => report.error(format!("cannot tell what would move: {e}")),
        }
    }

    /// Records a mirrored image in the state file.
    fn recorded(&self, image: &Planned, seen: &Seen, moved: &Moved) {
        self.checker.record_mirrored(
            &image.reference,
            &image.target,
            seen,
            moved.digest.as_deref(),
            &moved.referred,
        );
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
    fn transfer(&self, item: &Item, image: &Planned) -> (Result<Moved, Failed>, u32) {
        self.move_with(item, image, &|job, policy| {
            self.targets.ensure(job, self.ctx.cancel)?;
            self.engine.transfer(job, policy)
        })
    }

    /// Runs `work` (a move of `image` by the engine) with one move at a time
    /// per target repository, under the image's retry policy: `retries` per
    /// step, waits that end when the run is asked to stop, and after a 429
    /// the registry asked with a `HEAD` how long to wait. Returns what it did
    /// and how many attempts it took.
    fn move_with(
        &self,
        item: &Item,
        image: &Planned,
        work: &dyn Fn(&Job<'_>, &Policy<'_>) -> Result<Moved, Failed>,
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
        let stop = || self.stop_requested();
        let served = |host: &str| {
            let at_source = !host.eq_ignore_ascii_case(&self.registry.hostname);
            self.checker
                .wait_until_served(&image.reference, target, at_source);
        };
        let policy = Policy {
            label: item.name(),
            retries: self.registry.retries,
            stop: &stop,
            served: &served,
            again: AtomicU32::new(0),
        };
        let job = self.job(item, image);
        let result = work(&job, &policy);
        (result, policy.attempts())
    }

    /// With `referrers`: what refers to an image that is up to date and
    /// changed since the last run is copied (one request per subject when
    /// nothing did).
    fn up_to_date(
        &self,
        image: &Planned,
        n: usize,
        seen: &Seen,
        report: ImageReport,
    ) -> ImageReport {
        let Some(digest) = seen.source_digest.as_deref() else {
            return report;
        };
        if !self.registry.referrers || self.ctx.dry_run {
            return report;
        }
        let known = self.checker.referred(&image.target);
        let source = image.reference.to_string();
        let item = self.item(image, n);
        let (result, attempts) = self.move_with(&item, image, &|job, policy| {
            self.engine.refresh_referrers(job, policy, digest, &known)
        });
        match result {
            Ok(moved) => {
                self.checker
                    .record_referred(&image.reference, &image.target, seen, moved.referred);
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
    fn job<'j>(&'j self, item: &'j Item, image: &'j Planned) -> Job<'j> {
        Job {
            registry: self.registry,
            source: &image.reference,
            target: &image.target,
            item,
            progress: self.ctx.progress,
            client: self.ctx.client,
            access: self.checker.access,
            slots: &self.slots,
            memory: self.memory,
            from: self.ctx.mode.source(),
            to: self.ctx.mode.sink(),
        }
    }
}

/// The registry a source is pulled from.
fn source_host(reference: &Reference) -> &str {
    reference.domain().unwrap_or("docker.io")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Capabilities, Choice, Naming, Ready, Step, Steps, attempt};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    /// How the fake engine answers a call: given its number, from 0, and
    /// the image.
    type Answer = Box<dyn Fn(usize, &str) -> Result<(), Error> + Sync>;

    /// An engine that answers each transfer call as `answer` says, through
    /// the retry policy.
    struct Fake {
        answer: Answer,
        calls: AtomicUsize,
        ready: Result<(), String>,
    }

    impl Fake {
        fn new(answer: impl Fn(usize, &str) -> Result<(), Error> + Sync + 'static) -> Fake {
            Fake {
                answer: Box::new(answer),
                calls: AtomicUsize::new(0),
                ready: Ok(()),
            }
        }
    }

    impl Engine for Fake {
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                name: "fake",
                naming: Naming::DigestTag,
                counts: false,
                layouts: false,
            }
        }

        fn ready(&self) -> Result<Ready, Error> {
            self.ready
                .clone()
                .map_err(|detail| Error::EngineUnreachable { detail })?;
            Ok(Ready {
                version: "fake".into(),
                freshness: Freshness::SameDigest,
            })
        }

        fn transfer(&self, job: &Job<'_>, steps: &dyn Steps) -> Result<Moved, Failed> {
            let step = Step {
                what: "fake move",
                host: &job.registry.hostname,
            };
            attempt(steps, &step, || {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                (self.answer)(n, &job.source.to_string())
            })?;
            Ok(Moved::default())
        }
    }

    impl EngineSet for Fake {
        fn get(&self, _: Choice) -> &dyn Engine {
            self
        }
    }

    /// A registry whose script lists `images` (on 127.0.0.1:1, where
    /// nothing answers, so every check says "mirror").
    fn registry(name: &str, images: &[&str], retries: u32) -> (Registry, PathBuf) {
        let dir = std::env::temp_dir().join(format!("pb-mirror-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let list: String = images
            .iter()
            .map(|i| format!("echo 127.0.0.1:1/{i}\n"))
            .collect();
        let script = dir.join("list.sh");
        std::fs::write(&script, format!("#!/bin/sh\n{list}")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let yaml = format!(
            "registries:\n  - hostname: 127.0.0.1:1\n    repository: m\n    syncerScript: list.sh\n    parallel: 1\n    retries: {retries}\n"
        );
        let config = crate::config::parse(&yaml, &dir.join("c.yaml")).unwrap();
        (config.registries[0].clone(), dir)
    }

    fn run_with(
        engine: &Fake,
        registry: &Registry,
        dir: &Path,
        stop: &(dyn Fn() -> Option<String> + Sync),
    ) -> RegistryReport {
        run_cancelled_by(engine, registry, dir, stop, &Cancel::default())
    }

    fn run_cancelled_by(
        engine: &Fake,
        registry: &Registry,
        dir: &Path,
        stop: &(dyn Fn() -> Option<String> + Sync),
        cancel: &Cancel,
    ) -> RegistryReport {
        let client = Client::default();
        let readiness = Readiness::every_run();
        let ctx = Context {
            engines: engine,
            client: &client,
            cancel,
            state_dir: &dir.join("state"),
            progress: &Progress::Quiet,
            dry_run: false,
            force: false,
            stop,
            on_image: &|_, _, _| {},
            lock_wait: Some(Duration::from_secs(1)),
            readiness: &readiness,
            mode: Mode::Mirror,
        };
        run(registry, &ctx).unwrap()
    }

    fn outcomes(report: &RegistryReport) -> Vec<(Outcome, u32)> {
        report
            .images
            .iter()
            .map(|i| (i.outcome, i.attempts))
            .collect()
    }

    fn unavailable() -> Error {
        Error::Registry {
            host: "127.0.0.1:1".into(),
            status: Some(503),
            code: None,
            detail: "503 for PUT: UNAVAILABLE".into(),
            retry_after: None,
        }
    }

    #[test]
    fn a_stop_while_the_script_runs_ends_it_at_once_as_stopped() {
        let (registry, dir) = registry("script-stop", &[], 0);
        std::fs::write(&registry.script, "#!/bin/sh\nsleep 90\necho a:1\n").unwrap();
        let cancel = Arc::new(Cancel::default());
        let later = Arc::clone(&cancel);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            later.cancel();
        });
        let stop = || cancel.is_cancelled().then(|| "interrupted".to_string());
        let started = Instant::now();
        let report = run_cancelled_by(&Fake::new(|_, _| Ok(())), &registry, &dir, &stop, &cancel);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(report.outcome, RunOutcome::Stopped);
        assert_eq!(
            report.error.as_deref(),
            Some("stopped while the syncer script ran: interrupted")
        );
    }

    #[test]
    fn a_script_that_fails_while_paused_is_a_failure() {
        let (registry, dir) = registry("script-paused", &[], 0);
        std::fs::write(&registry.script, "#!/bin/sh\nexit 3\n").unwrap();
        let report = run_with(&Fake::new(|_, _| Ok(())), &registry, &dir, &|| {
            Some("paused".into())
        });
        assert_eq!(report.outcome, RunOutcome::Failed);
        assert!(report.error.unwrap().contains("exit status 3"));
    }

    #[test]
    fn a_run_that_cannot_take_its_lock_does_not_run() {
        let (registry, dir) = registry("no-lock", &["a:1"], 0);
        std::os::unix::fs::symlink(dir.join("unmounted"), dir.join("state")).unwrap();
        let fake = Fake::new(|_, _| Ok(()));
        let report = run_with(&fake, &registry, &dir, &|| None);
        assert_eq!(report.outcome, RunOutcome::Failed);
        let error = report.error.unwrap();
        assert!(
            error.contains("is a symlink to") && error.contains("which does not exist"),
            "{error}"
        );
        assert!(report.images.is_empty(), "the script did not run");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_passing_failure_is_tried_again_until_it_succeeds() {
        let (registry, dir) = registry("passing", &["a:1"], 3);
        let fake = Fake::new(|n, _| if n < 2 { Err(unavailable()) } else { Ok(()) });
        let report = run_with(&fake, &registry, &dir, &|| None);
        assert_eq!(outcomes(&report), [(Outcome::Mirrored, 3)]);
        assert_eq!(report.outcome, RunOutcome::Success);
    }

    #[test]
    fn a_permanent_failure_is_not_tried_again_and_the_others_go_on() {
        let (registry, dir) = registry("permanent", &["a:1", "b:1"], 3);
        let fake = Fake::new(|_, source| {
            if source.contains("/a:") {
                Err(Error::Registry {
                    host: "127.0.0.1:1".into(),
                    status: Some(401),
                    code: Some("UNAUTHORIZED".into()),
                    detail: "401 for PUT: UNAUTHORIZED".into(),
                    retry_after: None,
                })
            } else {
                Ok(())
            }
        });
        let report = run_with(&fake, &registry, &dir, &|| None);
        assert_eq!(
            outcomes(&report),
            [(Outcome::Failed, 1), (Outcome::Mirrored, 1)]
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        assert!(
            report.images[0]
                .error
                .as_deref()
                .unwrap()
                .contains("UNAUTHORIZED")
        );
        assert_eq!(report.outcome, RunOutcome::Failed);
    }

    #[test]
    fn retries_run_out() {
        let (registry, dir) = registry("exhausted", &["a:1"], 1);
        let fake = Fake::new(|_, _| Err(unavailable()));
        let report = run_with(&fake, &registry, &dir, &|| None);
        assert_eq!(outcomes(&report), [(Outcome::Failed, 2)]);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_stop_ends_the_wait_and_the_rest_is_not_attempted() {
        let (registry, dir) = registry("stop", &["a:1", "b:1", "c:1"], 10);
        let stop_now = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop_now);
        let fake = Fake::new(move |_, _| {
            flag.store(true, Ordering::SeqCst);
            Err(unavailable())
        });
        let stop = || {
            stop_now
                .load(Ordering::SeqCst)
                .then(|| "paused".to_string())
        };
        let started = Instant::now();
        let report = run_with(&fake, &registry, &dir, &stop);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            outcomes(&report),
            [
                (Outcome::Failed, 1),
                (Outcome::NotAttempted, 0),
                (Outcome::NotAttempted, 0)
            ]
        );
        assert_eq!(report.outcome, RunOutcome::Stopped);
        assert!(
            report.error.as_deref().unwrap().contains("paused"),
            "{report:?}"
        );
    }

    #[test]
    fn an_engine_that_is_gone_stops_the_run_and_one_that_is_not_ready_runs_nothing() {
        let (registry, dir) = registry("gone", &["a:1", "b:1"], 3);
        let fake = Fake::new(|_, _| {
            Err(Error::EngineUnreachable {
                detail: "Cannot connect to the Docker daemon".into(),
            })
        });
        let report = run_with(&fake, &registry, &dir, &|| None);
        assert_eq!(
            outcomes(&report),
            [(Outcome::NotAttempted, 1), (Outcome::NotAttempted, 0)]
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        assert!(report.error.as_deref().unwrap().contains("Cannot connect"));

        let mut not_ready = Fake::new(|_, _| Ok(()));
        not_ready.ready = Err("no daemon".into());
        let report = run_with(&not_ready, &registry, &dir, &|| None);
        assert!(report.images.is_empty());
        assert_eq!(not_ready.calls.load(Ordering::SeqCst), 0);
        assert_eq!(report.outcome, RunOutcome::Failed);
        assert!(report.error.as_deref().unwrap().contains("no daemon"));
    }

    #[test]
    fn an_unreachable_registry_is_told_once_and_spares_the_images_that_need_it() {
        let (registry, dir) = registry("down", &["a:1", "b:1", "c:1"], 0);
        let fake = Fake::new(|_, _| {
            Err(Error::Network {
                host: "127.0.0.1:1".into(),
                detail: "connection refused".into(),
            })
        });
        let report = run_with(&fake, &registry, &dir, &|| None);
        assert_eq!(
            outcomes(&report),
            [
                (Outcome::Failed, 1),
                (Outcome::NotAttempted, 0),
                (Outcome::NotAttempted, 0)
            ]
        );
        let error = report.error.as_deref().unwrap();
        assert!(
            error.starts_with("127.0.0.1:1 is unreachable (registry 127.0.0.1:1: connection refused); 2 images that needed it not attempted"),
            "{error}"
        );
    }
}
