//! One run over one registry: run its syncer script, plan a target for each
//! listed image, skip those already up to date (see `freshness`), and move
//! the others with docker (pull, tag, push, and optionally remove the local
//! copies), `parallel` at a time on scoped threads. One image failing does
//! not stop the others; a docker daemon that is gone does, and so does the
//! caller's stop request (pause, shutdown), after the images in progress.
//! `load` calls this once per registry and the daemon once per scheduled run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};

use crate::auth::{self, Credentials, DockerAuth};
use crate::config::Registry;
use crate::display::{Item, Progress, Step};
use crate::docker::Docker;
use crate::error::{Error, human_duration};
use crate::freshness::{Checker, Verdict};
use crate::local;
use crate::mutex::{into_inner, lock};
use crate::reference::Reference;
use crate::registry::{Client, Platform};
use crate::report::{ImageReport, Outcome, RegistryReport, RunOutcome};
use crate::retry::{self, Kind};
use crate::runlock::{self, Holder, Refused, RunLock};
use crate::script;
use crate::state::StateFile;

/// What a run needs besides the registry.
pub struct Context<'a> {
    /// The docker CLI (and, through it, the cancellation of children).
    pub docker: &'a Docker,
    /// The registry API client.
    pub client: &'a Client,
    /// The platform docker pulls, for comparing images.
    pub platform: &'a Platform,
    /// Where state files live.
    pub state_dir: &'a Path,
    /// Where progress is shown.
    pub progress: &'a Progress,
    /// Run the script and decide, but pull and push nothing.
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
}

impl Context<'_> {
    fn stop_requested(&self) -> bool {
        (self.stop)().is_some()
    }
}

/// An image to mirror: its line, its reference, its target.
struct Planned {
    line: usize,
    reference: Reference,
    target: String,
}

/// Mirrors what `registry`'s syncer script lists, `registry.parallel` images
/// at a time, holding the registry's lock (see `runlock`) throughout unless
/// `ctx.lock_wait` is None. Fails only when another process holds the lock
/// past `ctx.lock_wait`, with who it is; everything else that went wrong is
/// in the report.
pub fn run(registry: &Registry, ctx: &Context<'_>) -> Result<RegistryReport, Holder> {
    let (lock, unusable) = take_lock(registry, ctx)?;
    let started = Local::now();
    let mut report = RegistryReport::start(&registry.hostname, started);
    report.warnings.extend(unusable);
    log::info!(
        "{}: running syncer script {}",
        registry.hostname,
        registry.script.display()
    );
    let listing = match script::run(
        &registry.script,
        &registry.script_args,
        registry.script_timeout,
        ctx.docker.cancel(),
    ) {
        Ok(listing) => listing,
        Err(e) => {
            log::error!("{}: {e}", registry.hostname);
            report.error = Some(e.to_string());
            return Ok(report.finish(started));
        }
    };
    let planned = plan(registry, listing, &mut report);
    let state = StateFile::load(ctx.state_dir, &registry.hostname);
    if let Some(problem) = state.problem().filter(|_| report.warnings.is_empty()) {
        log::warn!("{}: {problem}", registry.hostname);
        report.warnings.push(problem);
    }
    ctx.client.remember_challenges(state.challenges());
    let pull_creds = |host: &str| credentials(registry.pull_auth.as_ref(), host);
    let insecure = |host: &str| registry.is_insecure(host);
    let checker = Checker {
        client: ctx.client,
        platform: ctx.platform,
        state: &state,
        pull_creds: &pull_creds,
        push_creds: credentials(registry.push_auth.as_ref(), &registry.hostname),
        insecure: &insecure,
        target_insecure: registry.insecure,
    };
    let run = Run::new(registry, ctx, &checker, &state, planned.len());
    let panics = run.work_all(&planned);
    state.set_challenges(ctx.client.challenges());
    if ctx.dry_run {
        log::debug!(
            "{}: dry run; {} not written",
            registry.hostname,
            state.path().display()
        );
    } else if let Err(e) = state.save() {
        log::warn!("{}: {e}", registry.hostname);
    }
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

/// Takes the registry's lock as `ctx` says: None when it takes none; the
/// holder when another process keeps it past the wait. A lock that cannot
/// be taken (the state directory is not usable) is a warning, said once:
/// the run goes on without it.
fn take_lock(
    registry: &Registry,
    ctx: &Context<'_>,
) -> Result<(Option<RunLock>, Option<String>), Holder> {
    let Some(wait) = ctx.lock_wait else {
        return Ok((None, None));
    };
    let host = &registry.hostname;
    let waiting = &mut |holder: &Holder| {
        log::info!(
            "{host}: another picture-book is running this registry: {holder}; waiting up to {} for it to end",
            human_duration(wait)
        );
    };
    let stop = || ctx.stop_requested();
    match runlock::lock(ctx.state_dir, host, wait, waiting, &stop) {
        Ok(lock) => Ok((Some(lock), None)),
        Err(Refused::Held(holder)) => Err(holder),
        Err(Refused::Unusable(why)) => {
            let warning = format!(
                "the state directory {why}: this run remembers nothing and is not kept apart from other picture-books"
            );
            log::warn!("{host}: {warning}");
            Ok((None, Some(warning)))
        }
    }
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

/// Gives each listed image its target; reports invalid lines and different
/// images that would land on the same target.
fn plan(
    registry: &Registry,
    listing: script::Listing,
    report: &mut RegistryReport,
) -> Vec<Planned> {
    let mut planned = Vec::new();
    let mut filled: HashMap<String, (usize, String, String)> = HashMap::new();
    for listed in listing.images {
        let source = listed.reference.to_string();
        let identity = listed.reference.identity();
        let target = listed
            .reference
            .target(&registry.hostname, &registry.repository);
        match filled.get(&target) {
            Some((line, _, same)) if *same == identity => {
                log::debug!(
                    "{}: line {}: {source} is line {line} again; mirroring it once",
                    registry.hostname,
                    listed.line
                );
            }
            Some((line, other, _)) => {
                let error = format!(
                    "maps to {target}, which line {line} ({other}) already fills; not mirrored"
                );
                log::error!(
                    "{}: line {}: {source}: {error}",
                    registry.hostname,
                    listed.line
                );
                report.images.push(
                    ImageReport::new(listed.line, source, Some(target), Outcome::Failed)
                        .error(error),
                );
            }
            None => {
                filled.insert(target.clone(), (listed.line, source, identity));
                planned.push(Planned {
                    line: listed.line,
                    reference: listed.reference,
                    target,
                });
            }
        }
    }
    for bad in listing.invalid {
        let error = format!("not an image reference: {}", bad.reason);
        log::error!(
            "{}: syncer script line {}: '{}': {error}",
            registry.hostname,
            bad.line,
            bad.text
        );
        report
            .images
            .push(ImageReport::new(bad.line, bad.text, None, Outcome::Failed).error(error));
    }
    planned
}

/// Credentials for `host`: from the configured DockerConfigJSON, else the
/// operator's own docker login.
fn credentials(auth: Option<&DockerAuth>, host: &str) -> Option<Credentials> {
    match auth {
        Some(a) => a.credentials_for(host),
        None => auth::operator_credentials(host),
    }
}

/// One run's shared progress, worked on by `registry.parallel` threads.
struct Run<'a> {
    registry: &'a Registry,
    ctx: &'a Context<'a>,
    checker: &'a Checker<'a>,
    state: &'a StateFile,
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
}

/// One docker transfer of an image: what it is, the registry it talks to,
/// and how to wait until that registry serves again after a 429.
struct Transfer<'t> {
    what: &'static str,
    host: &'t str,
    served: &'t dyn Fn(),
}

/// A failed transfer: the error, the registry it concerns, the attempts made.
struct Failure {
    error: Error,
    host: String,
    attempts: u32,
}

impl<'a> Run<'a> {
    fn new(
        registry: &'a Registry,
        ctx: &'a Context<'a>,
        checker: &'a Checker<'a>,
        state: &'a StateFile,
        total: usize,
    ) -> Run<'a> {
        Run {
            registry,
            ctx,
            checker,
            state,
            total,
            next: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            stopped: Mutex::new(None),
            results: Mutex::new(Vec::new()),
            repositories: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            failed_hosts: Mutex::new(Vec::new()),
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

    fn image(&self, image: &Planned) -> ImageReport {
        let source = image.reference.to_string();
        let report = |outcome| {
            ImageReport::new(
                image.line,
                source.clone(),
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
        let (verdict, seen) = if self.ctx.force {
            (
                Verdict::Mirror("--force".into()),
                self.checker.source_seen(&image.reference),
            )
        } else {
            self.checker.check(&image.reference, &image.target)
        };
        let label = format!("{} [{n}/{}]", self.registry.hostname, self.total);
        let reason = match verdict {
            Verdict::UpToDate(reason) => {
                log::info!("{label} {source}: up to date ({reason})");
                return report(Outcome::UpToDate).reason(reason);
            }
            Verdict::Refused(error) => {
                log::error!("{label} {source}: {error}");
                return report(Outcome::Failed).error(error);
            }
            Verdict::Mirror(reason) if self.ctx.dry_run => {
                return report(Outcome::Planned).reason(reason);
            }
            Verdict::Mirror(reason) => reason,
        };
        (self.ctx.on_image)(n, self.total, &source);
        log::debug!("{label} {source}: mirroring ({reason})");
        let item = Item::new(
            &self.registry.hostname,
            n,
            self.total,
            &source,
            &image.target,
        );
        let result = self.transfer(&item, &image.reference, &image.target);
        let error = result.as_ref().err().map(|f| f.error.to_string());
        self.ctx.progress.finished(&item, error.as_deref());
        match result {
            Ok((pushed, attempts)) => {
                self.checker.record_mirrored(
                    &image.reference,
                    &image.target,
                    &seen,
                    pushed.as_deref(),
                );
                if let Err(e) = self.state.save_now_and_then() {
                    log::warn!("{}: {e}", self.registry.hostname);
                }
                report(Outcome::Mirrored).reason(reason).attempts(attempts)
            }
            Err(f) if f.error.is_docker_down() => {
                if self.stop_with(f.error.to_string(), RunOutcome::Failed) {
                    log::error!(
                        "{}: docker is unavailable; the remaining images are not attempted",
                        self.registry.hostname
                    );
                }
                report(Outcome::NotAttempted).attempts(f.attempts)
            }
            Err(f) => {
                let kind = retry::kind(&f.error);
                lock(&self.failed_hosts).push((f.host.clone(), kind.is_retryable()));
                if kind == Kind::Unreachable {
                    lock(&self.down)
                        .entry(f.host)
                        .or_insert_with(|| error.clone().unwrap_or_default());
                }
                report(Outcome::Failed)
                    .reason(reason)
                    .error(error.unwrap_or_default())
                    .attempts(f.attempts)
            }
        }
    }

    /// Pulls, tags and pushes one image, each transfer tried again after a
    /// passing failure while `retries` allows, then removes the local copies
    /// if asked; returns the digest the push reported and the attempts made.
    fn transfer(
        &self,
        item: &Item,
        reference: &Reference,
        target: &str,
    ) -> Result<(Option<String>, u32), Failure> {
        let (docker, progress, registry) = (self.ctx.docker, self.ctx.progress, self.registry);
        let repository = target.rsplit_once(':').map_or(target, |(name, _)| name);
        let lock_for_repository = Arc::clone(
            lock(&self.repositories)
                .entry(repository.to_string())
                .or_default(),
        );
        let _one_at_a_time = lock(&lock_for_repository);
        let source = reference.pull_name();
        let present = |name: &str| docker.has_image(name);
        let pins = [
            local::Pin::new(&source, present),
            local::Pin::new(target, present),
        ];
        let timeout = registry.transfer_timeout;
        let mut attempts = 1;
        let mut out = |line: &str| progress.output(item, line);
        progress.step(item, Step::Pulling);
        let pull = Transfer {
            what: "pull",
            host: source_host(reference),
            served: &|| self.checker.wait_until_served(reference, target, true),
        };
        let mut pull_and_tag = |attempts: &mut u32| {
            self.attempt(item, &pull, attempts, &mut || {
                docker.pull(&source, registry.pull_auth.as_ref(), timeout, &mut out)
            })?;
            docker.tag(&source, target).map_err(|error| Failure {
                error,
                host: registry.hostname.clone(),
                attempts: *attempts,
            })
        };
        if let Err(f) = pull_and_tag(&mut attempts) {
            // Another process on this docker daemon may have removed what
            // was just pulled (its own deleteLocalImages); pull it again.
            if !f.error.to_string().contains("No such image") {
                return Err(f);
            }
            log::warn!("{}: {}; pulling it again", item.name(), f.error);
            pull_and_tag(&mut attempts)?;
        }
        progress.step(item, Step::Pushing);
        let mut out = |line: &str| progress.output(item, line);
        let push = Transfer {
            what: "push",
            host: &registry.hostname,
            served: &|| self.checker.wait_until_served(reference, target, false),
        };
        let pushed = self.attempt(item, &push, &mut attempts, &mut || {
            docker.push(target, registry.push_auth.as_ref(), timeout, &mut out)
        })?;
        if registry.delete_local_images {
            if let Err(e) = local::remove_unshared(&pins, |names| docker.remove(names)) {
                log::warn!("{}: could not remove local images: {e}", registry.hostname);
            }
        }
        Ok((pushed, attempts))
    }

    /// Runs one docker transfer, again after each passing failure (waiting
    /// longer each time, and after a 429 as long as the registry says) while
    /// the image has retries left and the run is not asked to stop.
    fn attempt<T>(
        &self,
        item: &Item,
        step: &Transfer<'_>,
        attempts: &mut u32,
        transfer: &mut dyn FnMut() -> Result<T, Error>,
    ) -> Result<T, Failure> {
        let host = step.host;
        loop {
            let error = match transfer() {
                Ok(done) => return Ok(done),
                Err(error) => error,
            };
            let kind = retry::kind(&error);
            let tries = self.registry.retries + 1;
            if !kind.is_retryable() || *attempts >= tries || self.stop_requested() {
                return Err(Failure {
                    error,
                    host: host.to_string(),
                    attempts: *attempts,
                });
            }
            let wait = retry::delay(kind, *attempts);
            log::warn!(
                "{}: {} failed (attempt {} of {tries}): {error}; trying again in {:.1}s{}",
                item.name(),
                step.what,
                *attempts,
                wait.as_secs_f64(),
                if kind == Kind::Throttled {
                    " or when the registry says"
                } else {
                    ""
                }
            );
            *attempts += 1;
            let asked = Instant::now();
            if kind == Kind::Throttled {
                (step.served)();
            }
            let wait = wait.saturating_sub(asked.elapsed());
            if !retry::sleep(wait, &|| self.stop_requested()) {
                return Err(Failure {
                    error,
                    host: host.to_string(),
                    attempts: *attempts - 1,
                });
            }
        }
    }
}

/// The registry docker pulls `reference` from.
fn source_host(reference: &Reference) -> &str {
    reference.domain().unwrap_or("docker.io")
}
