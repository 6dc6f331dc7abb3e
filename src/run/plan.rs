//! Which target each image a syncer script listed goes to (see
//! `reference` for the naming rules, which the engine chooses between): the
//! images to mirror, each once, and the lines that cannot be, reported as
//! failed (a line that is not an image reference, a second image for a
//! target another line already fills).

use std::collections::HashMap;

use crate::config::Registry;
use crate::engine::Naming;
use crate::layout::{Entry, REF_NAME};
use crate::listing::script;
use crate::reference::Reference;
use crate::run::report::{ImageReport, Outcome, RegistryReport};

/// An image to mirror: its line, its reference, its target.
pub struct Planned {
    /// Its line in the script's output.
    pub line: usize,
    /// What it is.
    pub reference: Reference,
    /// Where it goes, `host/path:tag`.
    pub target: String,
    /// The `images` entry that chose it; none for a script line.
    pub entry: Option<usize>,
    /// Whether it is marked immutable: once recorded, not asked about.
    pub immutable: bool,
}

/// Gives each image of a layout (`load --from`) its target, named from the
/// source picture-book recorded at export, else from
/// `org.opencontainers.image.ref.name` (what other tools write), under the
/// registry's naming rule; each is read by its digest in the layout. The
/// images exported for this registry, when some were; else all of them
/// (another tool's layout, or an export for another name). The line of an
/// image is its entry's place in `index.json`; referrers travel with their
/// subjects and are not listed.
pub fn plan_layout(
    registry: &Registry,
    naming: Naming,
    entries: &[Entry],
    report: &mut RegistryReport,
) -> Vec<Planned> {
    let host = registry.hostname.as_str();
    let ours = entries.iter().any(|e| e.registry.as_deref() == Some(host));
    if !ours && entries.iter().any(|e| e.registry.is_some()) {
        log::info!("{host}: the layout was exported for other registries; loading all of it");
    }
    let mut listing = script::Listing::default();
    let mut digests = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.referrer_of.is_some() || (ours && entry.registry.as_deref() != Some(host)) {
            continue;
        }
        let line = i + 1;
        let Some(name) = entry.source.as_ref().or(entry.ref_name.as_ref()) else {
            listing.invalid.push(script::InvalidLine {
                line,
                text: entry.digest.clone(),
                reason: format!("entry {line} of index.json has no {REF_NAME} annotation"),
            });
            continue;
        };
        match Reference::parse(name) {
            Ok(reference) => {
                digests.insert(line, entry.digest.clone());
                listing.images.push(script::Listed::line(line, reference));
            }
            Err(reason) => listing.invalid.push(script::InvalidLine {
                line,
                text: name.clone(),
                reason: format!("{reason} (entry {line} of index.json)"),
            }),
        }
    }
    let mut planned = plan(registry, naming, listing, report);
    for p in &mut planned {
        p.reference = p.reference.pinned_to(&digests[&p.line]);
    }
    planned
}

/// Gives each listed image its target, named by the engine's `naming`; reports invalid lines and different
/// images that would land on the same target.
pub fn plan(
    registry: &Registry,
    naming: Naming,
    listing: script::Listing,
    report: &mut RegistryReport,
) -> Vec<Planned> {
    let mut planned = Vec::new();
    let mut filled: HashMap<String, (String, String, String)> = HashMap::new();
    for listed in listing.images {
        let source = listed.reference.to_string();
        let identity = listed.reference.identity();
        let origin = listed.origin();
        let target = naming.target(&listed.reference, &registry.hostname, &registry.repository);
        match filled.get(&target) {
            Some((first, _, same)) if *same == identity => {
                log::debug!(
                    "{}: {origin}: {source} is {first} again; mirroring it once",
                    registry.hostname,
                );
            }
            Some((first, other, _)) => {
                let error = format!(
                    "maps to {target}, which {first} ({other}) already fills; not mirrored"
                );
                log::error!("{}: {origin}: {source}: {error}", registry.hostname);
                report.images.push(
                    ImageReport::new(listed.line, source, Some(target), Outcome::Failed)
                        .entry(listed.entry)
                        .error(error),
                );
            }
            None => {
                filled.insert(target.clone(), (origin, source, identity));
                planned.push(Planned {
                    line: listed.line,
                    reference: listed.reference,
                    target,
                    entry: listed.entry,
                    immutable: listed.immutable,
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
