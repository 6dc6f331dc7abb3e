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

/// Why a syncer script's `listing` may not be whole: each rejected line,
/// and an empty listing.
pub fn incomplete(listing: &script::Listing) -> Vec<String> {
    let mut why: Vec<String> = listing
        .invalid
        .iter()
        .map(|bad| format!("line {} was rejected", bad.line))
        .collect();
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
        assert_eq!(
            incomplete(&script::parse_list("alpine:3\nNot A Reference!\n")),
            ["line 2 was rejected"]
        );
        assert_eq!(
            incomplete(&script::parse_list("# nothing\n")),
            ["the listing is empty"]
        );
        assert!(incomplete(&script::parse_list("alpine:3\n")).is_empty());
    }
}
