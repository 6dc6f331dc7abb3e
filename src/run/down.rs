//! The one line a run tells instead of a mystery per image when a registry
//! is down: unreachable (the images that needed it not attempted), or
//! failing every image for passing reasons even after retries. Which
//! failures pass is `retry`'s business.

use std::collections::HashMap;

use crate::run::report::{ImageReport, Outcome};

/// One line for a registry that failed every image moved in the run for
/// passing reasons (HTTP 5xx, 429) even after retries.
pub fn looks_down(failed: &[(String, bool)], images: &[ImageReport]) -> Option<String> {
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
pub fn down_message(down: &HashMap<String, String>, images: &[ImageReport]) -> Option<String> {
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
