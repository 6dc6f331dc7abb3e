//! One run over one registry: run its syncer script, plan a target for each
//! listed image, and move each with docker (pull, tag, push, and optionally
//! remove the local copies). One image failing does not stop the others; a
//! docker daemon that is gone does, and so does the caller's stop request
//! (pause, shutdown), after the image in progress. `load` calls this once per
//! registry and the daemon once per scheduled run.

use std::collections::HashMap;

use chrono::Local;

use crate::config::Registry;
use crate::display::{Item, Progress, Step};
use crate::docker::Docker;
use crate::error::Error;
use crate::reference::Reference;
use crate::report::{ImageReport, Outcome, RegistryReport, RunOutcome};
use crate::script;

/// What a run needs besides the registry.
pub struct Context<'a> {
    /// The docker CLI (and, through it, the cancellation of children).
    pub docker: &'a Docker,
    /// Where progress is shown.
    pub progress: &'a Progress,
    /// Run the script and plan, but pull and push nothing.
    pub dry_run: bool,
    /// Asked before each image; `Some(reason)` stops the run there (pause,
    /// shutdown), leaving the image in progress to finish.
    pub stop: &'a (dyn Fn() -> Option<String> + Sync),
    /// Told when an image starts: its number, the total, its source.
    pub on_image: &'a (dyn Fn(usize, usize, &str) + Sync),
}

/// Mirrors what `registry`'s syncer script lists; never fails as a whole,
/// everything that went wrong is in the report.
pub fn run(registry: &Registry, ctx: &Context<'_>) -> RegistryReport {
    let started = Local::now();
    let mut report = RegistryReport::start(&registry.hostname, started);
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
            return report.finish(started);
        }
    };

    let mut planned: Vec<(usize, Reference, String)> = Vec::new();
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
                report.images.push(ImageReport {
                    line: listed.line,
                    source,
                    target: Some(target),
                    outcome: Outcome::Failed,
                    error: Some(error),
                });
            }
            None => {
                filled.insert(target.clone(), (listed.line, source, identity));
                planned.push((listed.line, listed.reference, target));
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
        report.images.push(ImageReport {
            line: bad.line,
            source: bad.text,
            target: None,
            outcome: Outcome::Failed,
            error: Some(error),
        });
    }

    let total = planned.len();
    let mut stopped: Option<String> = None;
    for (n, (line, reference, target)) in planned.into_iter().enumerate() {
        let source = reference.to_string();
        if stopped.is_none() && !ctx.dry_run {
            if let Some(why) = (ctx.stop)() {
                log::warn!(
                    "{}: stopping after {n} of {total} images: {why}",
                    registry.hostname
                );
                stopped = Some(format!("stopped after {n} of {total} images: {why}"));
                report.outcome = RunOutcome::Stopped;
            }
        }
        let (outcome, error) = if ctx.dry_run {
            (Outcome::Planned, None)
        } else if stopped.is_some() {
            (Outcome::NotAttempted, None)
        } else {
            (ctx.on_image)(n + 1, total, &source);
            let item = Item::new(&registry.hostname, n + 1, total, &source, &target);
            let result = transfer(registry, ctx, &item, &reference, &target);
            let error = result.as_ref().err().map(ToString::to_string);
            ctx.progress.finished(&item, error.as_deref());
            match result {
                Ok(()) => (Outcome::Mirrored, None),
                Err(e) if e.is_docker_down() => {
                    log::error!(
                        "{}: docker is unavailable; the remaining images are not attempted",
                        registry.hostname
                    );
                    stopped = Some(e.to_string());
                    (Outcome::NotAttempted, None)
                }
                Err(_) => (Outcome::Failed, error),
            }
        };
        report.images.push(ImageReport {
            line,
            source,
            target: Some(target),
            outcome,
            error,
        });
    }
    report.images.sort_by_key(|i| i.line);
    report.error = stopped;
    report.finish(started)
}

/// Pulls, tags and pushes one image, then removes the local copies if asked.
fn transfer(
    registry: &Registry,
    ctx: &Context<'_>,
    item: &Item,
    reference: &Reference,
    target: &str,
) -> Result<(), Error> {
    let (docker, progress) = (ctx.docker, ctx.progress);
    let source = reference.pull_name();
    let mut out = |line: &str| progress.output(item, line);
    progress.step(item, Step::Pulling);
    docker.pull(&source, registry.pull_auth.as_ref(), &mut out)?;
    docker.tag(&source, target)?;
    progress.step(item, Step::Pushing);
    docker.push(target, registry.push_auth.as_ref(), &mut out)?;
    if registry.delete_local_images {
        if let Err(e) = docker.remove(&[target, &source]) {
            log::warn!("{}: could not remove local images: {e}", registry.hostname);
        }
    }
    Ok(())
}
