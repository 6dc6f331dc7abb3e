//! What a run's listing says for pruning: the targets it names, and why it
//! may not be whole (a rejected line, an empty listing, a layout cut short
//! or not exported for the registry, a syncer script that gave none).
//! Nothing is pruned by a listing that may not be whole.

use std::collections::BTreeSet;

use crate::config::Registry;
use crate::layout::{Entry, Reader};
use crate::listing::script;
use crate::reference::Reference;
use crate::run::plan::Planned;
use crate::run::report::RegistryReport;

/// What this run's listing says for pruning.
#[derive(Debug, Default, Clone)]
pub struct Listed {
    /// The targets it names, `host/path:tag`.
    pub targets: BTreeSet<String>,
    /// Why it may not be whole (a rejected line, an empty listing, an
    /// entry that could not be listed); nothing is pruned unless empty.
    pub incomplete: Vec<String>,
}

impl Listed {
    /// What a run that `planned` its images names, with `incomplete`.
    pub fn of(planned: &[Planned], incomplete: Vec<String>) -> Listed {
        Listed {
            targets: planned.iter().map(|p| p.target.clone()).collect(),
            incomplete,
        }
    }
}

/// Why a run's `listing` may not be whole, as far as `report` tells so
/// far: a syncer script that failed (the `images` entries listed without
/// it), an `images` entry that could not be listed, each rejected line, an
/// empty listing.
pub fn incomplete(listing: &script::Listing, report: &RegistryReport) -> Vec<String> {
    let mut why: Vec<String> = Vec::new();
    if report.error.is_some() {
        why.push("the syncer script failed".into());
    }
    why.extend(
        report
            .selections
            .iter()
            .filter(|s| s.error.is_some())
            .map(|s| format!("{} could not be listed", s.name())),
    );
    why.extend(
        listing
            .invalid
            .iter()
            .map(|bad| format!("line {} was rejected", bad.line)),
    );
    if listing.images.is_empty() && listing.invalid.is_empty() {
        why.push("the listing is empty".into());
    }
    why
}

/// Why a layout (`load --from`) may not list all that was exported for
/// `host`: it is cut short, it holds no export for `host` (another tool's,
/// or one for other registries), an entry of it has no usable name.
pub fn layout_incomplete(host: &str, layout: &Reader) -> Vec<String> {
    let mut why = Vec::new();
    if layout.warning().is_some() {
        why.push(format!("{} is cut short", layout.shown()));
    }
    let ours = |e: &&Entry| e.referrer_of.is_none() && e.registry.as_deref() == Some(host);
    if !layout.entries().iter().any(|e| ours(&e)) {
        why.push(format!("{} holds no export for {host}", layout.shown()));
    }
    for (i, entry) in layout.entries().iter().enumerate().filter(|(_, e)| ours(e)) {
        let name = entry.source.as_ref().or(entry.ref_name.as_ref());
        if name.is_none_or(|n| Reference::parse(n).is_err()) {
            why.push(format!("entry {} of index.json was rejected", i + 1));
        }
    }
    why
}

/// Notes in `report` that a run of `registry` that prunes got no listing,
/// so that nothing was pruned.
pub fn unlisted(registry: &Registry, report: &mut RegistryReport) {
    if registry.prune {
        report
            .warnings
            .push("nothing pruned: the syncer script gave no listing".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_line_or_an_empty_listing_is_not_whole() {
        let report = RegistryReport::start("r.io", chrono::Local::now());
        let of = |text: &str| incomplete(&script::parse_list(text), &report);
        assert_eq!(of("alpine:3\nNot A Reference!\n"), ["line 2 was rejected"]);
        assert_eq!(of("# nothing\n"), ["the listing is empty"]);
        assert!(of("alpine:3\n").is_empty());
    }

    #[test]
    fn a_failed_script_or_an_unlisted_entry_is_not_whole() {
        let mut report = RegistryReport::start("r.io", chrono::Local::now());
        report.error = Some("sync.sh: exit status 3".into());
        report.selections.push(crate::listing::entries::Selection {
            entry: 1,
            source: "q.io/a/b".into(),
            line: 9,
            listed: 0,
            chosen: 0,
            error: Some("401".into()),
            tags: Vec::new(),
        });
        let listing = script::parse_list("alpine:3\n");
        let why = incomplete(&listing, &report);
        assert_eq!(why.len(), 2, "{why:?}");
        assert_eq!(why[0], "the syncer script failed");
        assert!(why[1].starts_with("images[1]"), "{why:?}");
        assert!(why[1].ends_with("could not be listed"), "{why:?}");
    }
}
