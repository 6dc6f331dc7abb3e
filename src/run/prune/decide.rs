//! The decisions of pruning, without I/O: which tags picture-book recorded
//! as mirrored that the listing no longer names, whether the listing can be
//! trusted, which of them are unchanged at the target, whether the run
//! stays under `pruneLimit`, and whether a digest may be deleted while
//! other tags stay. Asking the registry and deleting is `prune`'s.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::digest::short;
use crate::run::state::Record;

/// The least `pruneLimit` when it is not configured.
pub const MIN_DEFAULT_LIMIT: usize = 5;

/// `pruneLimit` when it is not configured: 10% of the tags recorded as
/// mirrored to the target, at least [`MIN_DEFAULT_LIMIT`].
pub fn default_limit(mirrored: usize) -> usize {
    (mirrored / 10).max(MIN_DEFAULT_LIMIT)
}

/// A tag recorded as mirrored that the listing no longer names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The target, `host/path:tag`.
    pub target: String,
    /// The digest the target received when picture-book mirrored it.
    pub recorded: String,
}

/// The recorded targets that `listed` does not name, in order. A tag that
/// is not recorded is never one: picture-book did not put it there.
pub fn candidates(records: &BTreeMap<String, Record>, listed: &BTreeSet<String>) -> Vec<Candidate> {
    records
        .iter()
        .filter(|(target, _)| !listed.contains(*target))
        .map(|(target, record)| Candidate {
            target: target.clone(),
            recorded: record.target_digest.clone(),
        })
        .collect()
}

/// What the target holds under a candidate's tag now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtTarget {
    /// Nothing: the tag is gone already.
    Gone,
    /// This manifest digest.
    Digest(String),
    /// It could not be asked; why.
    Unknown(String),
}

/// One tag pruned, or kept although unlisted, with its digest and why: an
/// entry of the report's `pruned` and `pruneSkipped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The tag, `host/path:tag`.
    pub tag: String,
    /// The digest recorded for it.
    pub digest: String,
    /// Why it is (or would be) pruned, or kept.
    pub reason: String,
}

/// What to do with the candidates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decision {
    /// To delete at the target.
    pub prune: Vec<Verdict>,
    /// Kept, each with why.
    pub keep: Vec<Verdict>,
    /// Gone at the target already: only their records go.
    pub forget: Vec<String>,
    /// Why nothing at all is pruned, said once, when that is so.
    pub warning: Option<String>,
}

/// Every candidate kept for `reason`, which is also the warning.
pub fn keep_all(candidates: &[Candidate], reason: &str) -> Decision {
    Decision {
        keep: candidates
            .iter()
            .map(|c| verdict(c, reason.to_string()))
            .collect(),
        warning: Some(format!("nothing pruned: {reason}")),
        ..Decision::default()
    }
}

/// Why a listing with these problems (`incomplete`) cannot be trusted to
/// prune by, if it cannot.
pub fn untrusted(incomplete: &[String]) -> Option<String> {
    (!incomplete.is_empty())
        .then(|| format!("the listing is incomplete ({})", incomplete.join("; ")))
}

/// Decides from what the target holds (`seen`, one per candidate): a tag
/// gone is forgotten; a tag that cannot be asked, or that holds another
/// digest than recorded (someone overwrote it), is kept; the others are
/// pruned, unless there are more than `limit` of them and the run is not
/// `force`d, when all are kept.
pub fn decide(candidates: &[Candidate], seen: &[AtTarget], limit: usize, force: bool) -> Decision {
    let mut decision = Decision::default();
    for (c, at) in candidates.iter().zip(seen) {
        match at {
            AtTarget::Gone => decision.forget.push(c.target.clone()),
            AtTarget::Unknown(why) => decision
                .keep
                .push(verdict(c, format!("cannot check the target: {why}"))),
            AtTarget::Digest(d) if *d != c.recorded => decision.keep.push(verdict(
                c,
                format!(
                    "changed at the target since it was mirrored (now {}): not picture-book's any more",
                    short(d)
                ),
            )),
            AtTarget::Digest(_) => decision
                .prune
                .push(verdict(c, "no longer listed, and unchanged at the target".into())),
        }
    }
    if decision.prune.len() > limit && !force {
        let reason = format!(
            "{} tags would be pruned, more than pruneLimit ({limit}); `load --prune --force` prunes them",
            decision.prune.len()
        );
        for v in std::mem::take(&mut decision.prune) {
            decision.keep.push(Verdict {
                reason: reason.clone(),
                ..v
            });
        }
        decision.warning = Some(format!("nothing pruned: {reason}"));
    }
    decision
}

/// What a tag that stays holds: its manifest digest, and the digests of
/// the manifests its index lists, when it is an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staying {
    /// Its manifest digest.
    pub digest: String,
    /// The manifests its index lists.
    pub children: Vec<String>,
}

/// The tag among those that stay (`staying`, by tag) whose content the
/// manifest `digest` is, directly or as an entry of its index: deleting
/// `digest` would take it away.
pub fn shared_by<'s>(digest: &str, staying: &'s BTreeMap<String, Staying>) -> Option<&'s str> {
    staying
        .iter()
        .find(|(_, s)| s.digest == digest || s.children.iter().any(|c| c == digest))
        .map(|(tag, _)| tag.as_str())
}

fn verdict(c: &Candidate, reason: String) -> Verdict {
    Verdict {
        tag: c.target.clone(),
        digest: c.recorded.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(digest: &str) -> Record {
        Record {
            source: "src".into(),
            source_digest: digest.into(),
            target_digest: digest.into(),
            recorded: "2026-01-01T00:00:00+00:00".into(),
            referrers: BTreeMap::new(),
            referrers_copied: BTreeMap::new(),
        }
    }

    fn records(tags: &[(&str, &str)]) -> BTreeMap<String, Record> {
        tags.iter()
            .map(|(t, d)| (format!("r.io/m/a:{t}"), record(d)))
            .collect()
    }

    fn listed(tags: &[&str]) -> BTreeSet<String> {
        tags.iter().map(|t| format!("r.io/m/a:{t}")).collect()
    }

    fn at(digest: &str) -> AtTarget {
        AtTarget::Digest(digest.into())
    }

    fn targets(verdicts: &[Verdict]) -> Vec<&str> {
        verdicts.iter().map(|v| v.tag.as_str()).collect()
    }

    #[test]
    fn only_recorded_tags_the_listing_dropped_are_candidates() {
        let recorded = records(&[("1", "sha256:1"), ("2", "sha256:2"), ("3", "sha256:3")]);
        let c = candidates(&recorded, &listed(&["1", "3", "someone-elses"]));
        assert_eq!(
            c,
            [Candidate {
                target: "r.io/m/a:2".into(),
                recorded: "sha256:2".into()
            }]
        );
        assert!(
            candidates(&BTreeMap::new(), &listed(&[])).is_empty(),
            "a tag picture-book did not record is never pruned, listed or not"
        );
    }

    #[test]
    fn an_unchanged_dropped_tag_is_pruned_an_overwritten_one_kept() {
        let c = candidates(
            &records(&[("1", "sha256:1"), ("2", "sha256:2"), ("3", "sha256:3")]),
            &listed(&[]),
        );
        let seen = [at("sha256:1"), at("sha256:other"), AtTarget::Gone];
        let d = decide(&c, &seen, 10, false);
        assert_eq!(targets(&d.prune), ["r.io/m/a:1"]);
        assert_eq!(d.prune[0].digest, "sha256:1");
        assert_eq!(targets(&d.keep), ["r.io/m/a:2"]);
        assert!(
            d.keep[0].reason.contains("changed at the target"),
            "{}",
            d.keep[0].reason
        );
        assert_eq!(d.forget, ["r.io/m/a:3"], "gone already: only forgotten");
        assert_eq!(d.warning, None);
    }

    #[test]
    fn a_target_that_cannot_be_asked_keeps_the_tag() {
        let c = candidates(&records(&[("1", "sha256:1")]), &listed(&[]));
        let d = decide(
            &c,
            &[AtTarget::Unknown("connection refused".into())],
            10,
            false,
        );
        assert!(d.prune.is_empty());
        assert_eq!(
            d.keep[0].reason,
            "cannot check the target: connection refused"
        );
    }

    #[test]
    fn an_incomplete_listing_prunes_nothing_and_says_why() {
        assert_eq!(untrusted(&[]), None);
        let why = untrusted(&["line 3 was rejected".into(), "x".into()]).unwrap();
        assert_eq!(why, "the listing is incomplete (line 3 was rejected; x)");
        let c = candidates(
            &records(&[("1", "sha256:1"), ("2", "sha256:2")]),
            &listed(&[]),
        );
        let d = keep_all(&c, &why);
        assert!(d.prune.is_empty() && d.forget.is_empty());
        assert_eq!(targets(&d.keep), ["r.io/m/a:1", "r.io/m/a:2"]);
        assert!(d.keep.iter().all(|v| v.reason == why));
        assert_eq!(d.warning, Some(format!("nothing pruned: {why}")));
    }

    #[test]
    fn more_than_the_limit_prunes_nothing_unless_forced() {
        let tags: Vec<(String, String)> = (0..6)
            .map(|i| (i.to_string(), format!("sha256:{i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = tags.iter().map(|(t, d)| (t.as_str(), d.as_str())).collect();
        let c = candidates(&records(&pairs), &listed(&[]));
        let seen: Vec<AtTarget> = c.iter().map(|c| at(&c.recorded)).collect();
        let held = decide(&c, &seen, 5, false);
        assert!(held.prune.is_empty());
        assert_eq!(held.keep.len(), 6);
        assert!(held.keep[0].reason.contains("more than pruneLimit (5)"));
        assert!(held.warning.unwrap().contains("--force"));
        assert_eq!(decide(&c, &seen, 6, false).prune.len(), 6, "at the limit");
        assert_eq!(decide(&c, &seen, 5, true).prune.len(), 6, "forced");
    }

    #[test]
    fn the_default_limit_is_a_tenth_and_at_least_five() {
        assert_eq!(default_limit(0), 5);
        assert_eq!(default_limit(59), 5);
        assert_eq!(default_limit(100), 10);
        assert_eq!(default_limit(1234), 123);
    }

    #[test]
    fn a_digest_a_staying_tag_holds_is_not_deleted() {
        let staying: BTreeMap<String, Staying> = [
            (
                "theirs".to_string(),
                Staying {
                    digest: "sha256:a".into(),
                    children: vec![],
                },
            ),
            (
                "index".to_string(),
                Staying {
                    digest: "sha256:i".into(),
                    children: vec!["sha256:amd64".into()],
                },
            ),
        ]
        .into();
        assert_eq!(shared_by("sha256:a", &staying), Some("theirs"));
        assert_eq!(
            shared_by("sha256:amd64", &staying),
            Some("index"),
            "an entry of a staying index is its content"
        );
        assert_eq!(shared_by("sha256:b", &staying), None);
    }
}
