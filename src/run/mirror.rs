//! One run over one registry, set up and closed: the engine (the
//! registry's, or the one that reads and writes layouts when the run's
//! `Source` or `Sink` is one; see `readiness`), the registry's lock (see
//! `flock`), the plan of what the syncer script or the layout lists (see
//! `plan`), the state file and the run's `Access`; then the images go to
//! the worker pool (`workers`), the tags the listing dropped are pruned
//! (`prune`, with `prune`), and what the run learnt is saved. `load`
//! calls this once per registry and the daemon once per scheduled run.

use std::path::Path;
use std::time::Duration;

use chrono::Local;

use crate::config::Registry;
use crate::display::Progress;
use crate::engine::ends::needs_layouts;
use crate::engine::{Access, Engine, EngineSet, Freshness, RunMemory, Sink, Source, Stats};
use crate::error::{Error, human_duration};
use crate::flock::{self as runlock, Holder, Refused, RunLock};
use crate::listing::entries;
use crate::listing::script;
use crate::listing::union::union;
use crate::process::Cancel;
use crate::reference::Reference;
use crate::registry::Client;
use crate::run::freshness::Checker;
use crate::run::plan::{Planned, plan, plan_layout};
use crate::run::prune::{self, Listed, Pruning};
use crate::run::report::{ImageReport, Outcome, RegistryReport, RunOutcome};
use crate::run::state::StateFile;
use crate::run::workers::Run;

pub use crate::run::readiness::Readiness;

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
    /// Told when an image has moved: the bytes it sent (by an engine that
    /// counts them, else 0).
    pub on_moved: &'a (dyn Fn(u64) + Sync),
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

impl Context<'_> {
    /// Whether the caller asks the run to stop.
    pub fn stop_requested(&self) -> bool {
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
    let access = Access::of(registry, from.is_registry());
    let (planned, incomplete) = match from {
        Source::Layout(layout) => (
            plan_layout(registry, capabilities.naming, layout.entries(), &mut report),
            prune::layout_incomplete(&registry.hostname, layout),
        ),
        Source::Registry => match listed(registry, ctx, &access, &mut report) {
            Ok(listing) => {
                let incomplete = prune::incomplete(&listing, &report);
                let planned = plan(registry, capabilities.naming, listing, &mut report);
                (planned, incomplete)
            }
            Err(e) => return Ok(unlisted(registry, ctx, &e, report).finish(started)),
        },
    };
    let state = load_state(registry, ctx, &mut report);
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
    if panics.is_empty() {
        let listed = Listed::of(&planned, incomplete);
        prune_dropped(registry, ctx, (&access, &state), listed, &mut report);
    }
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
/// registries' challenges (and open hosts) it remembers given to the client.
fn load_state(registry: &Registry, ctx: &Context<'_>, report: &mut RegistryReport) -> StateFile {
    let state = StateFile::load(ctx.state_dir, &registry.hostname);
    if let Some(problem) = state.problem().filter(|_| report.warnings.is_empty()) {
        log::warn!("{}: {problem}", registry.hostname);
        report.warnings.push(problem);
    }
    ctx.client.remember_challenges(state.challenges());
    ctx.client.remember_open(state.open_hosts());
    state
}

/// Keeps what the run learnt (challenges, open hosts, blobs) in `state` and writes it,
/// unless the run is a dry run or an export.
fn save_state(registry: &Registry, ctx: &Context<'_>, state: &StateFile, memory: &RunMemory) {
    state.set_challenges(ctx.client.challenges());
    state.set_open_hosts(ctx.client.open_hosts());
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
    prune::unlisted(registry, &mut report);
    report
}

/// With `prune`, removes at the target what `listed` no longer names (see
/// `prune`), unless the run exports or was stopped.
fn prune_dropped(
    registry: &Registry,
    ctx: &Context<'_>,
    (access, state): (&Access, &StateFile),
    mut listed: Listed,
    report: &mut RegistryReport,
) {
    if !ctx.mode.sink().is_registry() {
        return;
    }
    if let Some(why) = (ctx.stop)() {
        listed
            .incomplete
            .push(format!("the run was stopped ({why})"));
    }
    let pruning = Pruning {
        registry,
        client: ctx.client,
        access,
        state,
        dry_run: ctx.dry_run,
        force: ctx.force,
    };
    prune::prune(&pruning, &listed, report);
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

/// What the registry lists: its syncer script's lines, then what its
/// `images` entries choose (see `listing::entries`). A script that fails
/// fails the run; when the registry has entries too, they are still
/// mirrored, and the script's failure is the run's error.
fn listed(
    registry: &Registry,
    ctx: &Context<'_>,
    access: &Access,
    report: &mut RegistryReport,
) -> Result<script::Listing, Error> {
    let from_script = match &registry.script {
        None => Ok(script::Listing::default()),
        Some(path) => run_script(registry, path, ctx),
    };
    let from_script = match from_script {
        Err(e) if !registry.images.is_empty() && !ctx.cancel.is_cancelled() => {
            log::error!("{}: {e}", registry.hostname);
            report.error = Some(e.to_string());
            script::Listing::default()
        }
        other => other?,
    };
    let chosen = chosen(registry, ctx, access, report);
    let listing = union(&registry.hostname, from_script, chosen);
    let listed = listing.images.len() + listing.invalid.len();
    if listed > script::MAX_IMAGES {
        return Err(Error::ListTooLong {
            listed,
            limit: script::MAX_IMAGES,
        });
    }
    Ok(listing)
}

/// What `registry`'s `images` entries choose, each entry's choice told in
/// `report`: an entry that cannot be listed fails, one that chooses
/// nothing is warned of.
fn chosen(
    registry: &Registry,
    ctx: &Context<'_>,
    access: &Access,
    report: &mut RegistryReport,
) -> Vec<script::Listed> {
    let host = &registry.hostname;
    let tags_of = |source: &Reference| {
        let repo = access.source(source);
        let creds = access.pull(&repo.host);
        ctx.client
            .all_tags(&repo, creds.as_ref(), entries::MAX_LISTED_TAGS)
    };
    let stop = || ctx.stop_requested();
    let chosen = entries::list(
        &registry.images,
        &tags_of,
        registry.parallel,
        ctx.dry_run,
        &stop,
    );
    for selection in &chosen.selections {
        let name = selection.name();
        let source = &selection.source;
        match &selection.error {
            Some(e) => {
                log::error!("{host}: {name}: {e}");
                report.images.push(
                    ImageReport::new(selection.line, source.clone(), None, Outcome::Failed)
                        .entry(Some(selection.entry))
                        .error(e.clone()),
                );
            }
            None if selection.chosen == 0 => {
                let warning = format!(
                    "{name}: {source}: no tag chosen of the {} it has",
                    selection.listed
                );
                log::warn!("{host}: {warning}");
                report.warnings.push(warning);
            }
            None => log::info!(
                "{host}: {name}: {source}: chose {} of {} tags",
                selection.chosen,
                selection.listed
            ),
        }
    }
    report.selections = chosen.selections;
    chosen.images
}

/// What the registry's syncer script lists.
fn run_script(
    registry: &Registry,
    path: &Path,
    ctx: &Context<'_>,
) -> Result<script::Listing, Error> {
    log::info!(
        "{}: running syncer script {}",
        registry.hostname,
        path.display()
    );
    script::run(
        path,
        &registry.script_args,
        registry.script_timeout,
        ctx.cancel,
        &[
            (script::CONFIG_VARIABLE, registry.config_file.clone().into()),
            (script::REGISTRY_VARIABLE, registry.hostname.clone().into()),
        ],
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        Capabilities, Choice, Failed, Job, Moved, Naming, Ready, Step, Steps, attempt,
    };
    use crate::run::report::Outcome;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Instant;

    /// How the fake engine answers a call: given its number, from 0, and
    /// the image.
    type Answer = Box<dyn Fn(usize, &str) -> Result<(), Error> + Sync>;

    /// An engine that answers each transfer call as `answer` says, through
    /// the retry policy.
    struct Fake {
        answer: Answer,
        calls: AtomicUsize,
        /// The bytes `on_moved` was told of.
        told: AtomicU64,
        ready: Result<(), String>,
        layouts: bool,
    }

    impl Fake {
        fn new(answer: impl Fn(usize, &str) -> Result<(), Error> + Sync + 'static) -> Fake {
            Fake {
                answer: Box::new(answer),
                calls: AtomicUsize::new(0),
                told: AtomicU64::new(0),
                ready: Ok(()),
                layouts: false,
            }
        }
    }

    impl Engine for Fake {
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                name: "fake",
                naming: Naming::DigestTag,
                counts: false,
                layouts: self.layouts,
                uploads: false,
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

        fn transfer<'a>(&self, job: &Job<'a>, steps: Arc<dyn Steps + 'a>) -> Result<Moved, Failed> {
            let step = Step {
                what: "fake move",
                host: &job.registry.hostname,
            };
            attempt(&*steps, &step, || {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                (self.answer)(n, &job.source.to_string())
            })?;
            let mut moved = Moved::default();
            moved.stats.bytes = 1000;
            Ok(moved)
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
        run_as(engine, registry, dir, stop, cancel, Mode::Mirror)
    }

    fn run_as(
        engine: &Fake,
        registry: &Registry,
        dir: &Path,
        stop: &(dyn Fn() -> Option<String> + Sync),
        cancel: &Cancel,
        mode: Mode<'_>,
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
            on_moved: &|bytes| {
                engine.told.fetch_add(bytes, Ordering::SeqCst);
            },
            lock_wait: Some(Duration::from_secs(1)),
            readiness: &readiness,
            mode,
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
        std::fs::write(
            registry.script.as_ref().unwrap(),
            "#!/bin/sh\nsleep 90\necho a:1\n",
        )
        .unwrap();
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
        std::fs::write(registry.script.as_ref().unwrap(), "#!/bin/sh\nexit 3\n").unwrap();
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
        assert_eq!(fake.told.load(Ordering::SeqCst), 1000, "only b moved");
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

    #[test]
    fn an_export_takes_the_engine_that_writes_layouts_and_writes_no_state() {
        let (registry, dir) = registry("export", &["a:1"], 0);
        let writer = crate::layout::Writer::planning(&dir.join("out"));
        let export = Mode::Export(&writer);
        let cancel = Cancel::default();
        let cannot = Fake::new(|_, _| Ok(()));
        let report = run_as(&cannot, &registry, &dir, &|| None, &cancel, export);
        assert_eq!(report.outcome, RunOutcome::Failed);
        assert_eq!(
            report.error.as_deref(),
            Some("no engine reads or writes layouts")
        );
        assert_eq!(cannot.calls.load(Ordering::SeqCst), 0);

        let mut can = Fake::new(|_, _| Ok(()));
        can.layouts = true;
        let report = run_as(&can, &registry, &dir, &|| None, &cancel, export);
        assert_eq!(outcomes(&report), [(Outcome::Mirrored, 1)]);
        assert_eq!(report.engine, Some("fake"));
        assert!(!dir.join("state").exists(), "an export keeps no state");
    }
}
