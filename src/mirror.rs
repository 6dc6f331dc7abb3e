//! One run over one registry: run its syncer script, plan a target for each
//! listed image, and move each with docker (pull, tag, push, and optionally
//! remove the local copies). One image failing does not stop the others; a
//! docker daemon that is gone does. `load` calls this once per registry and
//! the daemon once per scheduled run.

use std::collections::HashMap;

use chrono::Local;

use crate::config::Registry;
use crate::display::{Item, Progress, Step};
use crate::docker::Docker;
use crate::error::Error;
use crate::reference::Reference;
use crate::report::{ImageReport, Outcome, RegistryReport};
use crate::script;

/// How a run behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Run the script and plan, but pull and push nothing.
    pub dry_run: bool,
}

/// Mirrors what `registry`'s syncer script lists; never fails as a whole,
/// everything that went wrong is in the report.
pub fn run(
    registry: &Registry,
    docker: &Docker,
    progress: &Progress,
    options: Options,
) -> RegistryReport {
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
    ) {
        Ok(listing) => listing,
        Err(e) => {
            log::error!("{}: {e}", registry.hostname);
            report.error = Some(e.to_string());
            return report.finish(started);
        }
    };

    let mut planned: Vec<(usize, Reference, String)> = Vec::new();
    let mut filled: HashMap<String, (usize, String)> = HashMap::new();
    for listed in listing.images {
        let source = listed.reference.to_string();
        let target = listed
            .reference
            .target(&registry.hostname, &registry.repository);
        if let Some((line, other)) = filled.get(&target) {
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
            continue;
        }
        filled.insert(target.clone(), (listed.line, source));
        planned.push((listed.line, listed.reference, target));
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
    let mut stopped: Option<Error> = None;
    for (n, (line, reference, target)) in planned.into_iter().enumerate() {
        let source = reference.to_string();
        let (outcome, error) = if options.dry_run {
            (Outcome::Planned, None)
        } else if stopped.is_some() {
            (Outcome::NotAttempted, None)
        } else {
            let item = Item::new(n + 1, total, &source, &target);
            match transfer(registry, docker, progress, &item, &reference, &target) {
                Ok(()) => {
                    progress.finished(&item, None);
                    (Outcome::Mirrored, None)
                }
                Err(e) if e.is_docker_down() => {
                    progress.finished(&item, Some(&e.to_string()));
                    log::error!(
                        "{}: docker is unavailable; the remaining images are not attempted",
                        registry.hostname
                    );
                    stopped = Some(e);
                    (Outcome::NotAttempted, None)
                }
                Err(e) => {
                    let text = e.to_string();
                    progress.finished(&item, Some(&text));
                    (Outcome::Failed, Some(text))
                }
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
    report.error = stopped.map(|e| e.to_string());
    report.finish(started)
}

/// Pulls, tags and pushes one image, then removes the local copies if asked.
fn transfer(
    registry: &Registry,
    docker: &Docker,
    progress: &Progress,
    item: &Item,
    reference: &Reference,
    target: &str,
) -> Result<(), Error> {
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
