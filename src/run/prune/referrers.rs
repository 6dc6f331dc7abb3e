//! What refers to a pruned image (signatures, attestations, SBOMs) and
//! goes with it: exactly what picture-book recorded as copied for it (see
//! `Copied`), for each subject no tag that stays holds, and what refers to
//! that in turn. The OCI referrers go by digest, cosign's tags by tag (or
//! digest), and their entries leave the target's fallback index, whose
//! other writers' entries stay.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::Deleter;
use crate::engine::Copied;
use crate::registry::manifests::OCI_INDEX;
use crate::registry::{Deletion, Manifest, Repository};

/// The subjects of `copied` whose referrers go with the image: those that
/// no other subject lists as a referrer (the image, the children of its
/// index) unless `held` keeps them, and then, transitively, the referrers
/// of what goes that have referrers of their own.
pub fn going(copied: &BTreeMap<String, Copied>, held: impl Fn(&str) -> bool) -> Vec<String> {
    let referring = |c: &Copied| -> Vec<String> {
        c.listed
            .iter()
            .cloned()
            .chain(c.tagged.values().cloned())
            .collect()
    };
    let listed_by_others: BTreeSet<String> = copied.values().flat_map(referring).collect();
    let mut going: Vec<String> = copied
        .keys()
        .filter(|s| !listed_by_others.contains(*s) && !held(s))
        .cloned()
        .collect();
    let mut i = 0;
    while let Some(subject) = going.get(i).cloned() {
        for r in copied.get(&subject).map(referring).unwrap_or_default() {
            if copied.contains_key(&r) && !going.contains(&r) {
                going.push(r);
            }
        }
        i += 1;
    }
    going
}

/// How many referrer manifests `going` subjects have in `copied`.
pub fn count(copied: &BTreeMap<String, Copied>, going: &[String]) -> usize {
    going
        .iter()
        .filter_map(|s| copied.get(s))
        .map(|c| c.listed.len() + c.tagged.len())
        .sum()
}

/// The OCI fallback tag of a digest: `sha256-<hex>`.
fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

impl Deleter<'_, '_> {
    /// Deletes in `repo` (`name`) what was copied as referring to the
    /// subjects that go; returns how many referrers went.
    pub(super) fn referrers(
        &mut self,
        repo: &Repository,
        name: &str,
        copied: &BTreeMap<String, Copied>,
    ) -> Result<usize, String> {
        let going = self.going(repo, name, copied)?;
        if self.p.dry_run {
            return Ok(count(copied, &going));
        }
        let mut gone = 0;
        for subject in &going {
            let Some(c) = copied.get(subject) else {
                continue;
            };
            for (tag, digest) in &c.tagged {
                gone += usize::from(self.delete_referrer(repo, name, Some(tag), digest)?);
            }
            for digest in &c.listed {
                gone += usize::from(self.delete_referrer(repo, name, None, digest)?);
            }
            self.trim_fallback(repo, name, subject, &c.listed)?;
        }
        Ok(gone)
    }

    /// The subjects whose referrers go: not held by a tag that stays, other
    /// than the referrers' own tags.
    fn going(
        &mut self,
        repo: &Repository,
        name: &str,
        copied: &BTreeMap<String, Copied>,
    ) -> Result<Vec<String>, String> {
        let staying = self.staying_in(repo, name)?;
        let images: BTreeMap<String, _> = staying
            .into_iter()
            .filter(|(tag, _)| !tag.starts_with("sha256-"))
            .collect();
        Ok(going(copied, |s| {
            super::decide::shared_by(s, &images).is_some()
                || self.kept.contains(&(name.to_string(), s.to_string()))
        }))
    }

    /// Deletes the referrer `digest` (under cosign's `tag`, when it has
    /// one), unless a tag that stays, other than `tag`, holds it; whether
    /// it went.
    fn delete_referrer(
        &mut self,
        repo: &Repository,
        name: &str,
        tag: Option<&str>,
        digest: &str,
    ) -> Result<bool, String> {
        let creds = self.p.access.push();
        let client = self.p.client;
        if let Some(tag) = tag.filter(|_| client.deletes_tags(&repo.host) != Some(false)) {
            match client.delete_manifest(repo, tag, creds) {
                Ok(Deletion::Deleted) => return Ok(true),
                Ok(Deletion::Gone) => return Ok(false),
                Ok(Deletion::Refused { status, answer }) if status != 405 => return Err(answer),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        let staying = self.staying_in(repo, name)?;
        if let Some((other, _)) = staying
            .iter()
            .find(|(t, s)| Some(t.as_str()) != tag && s.digest == digest)
        {
            log::info!("{name}: referrer {digest} kept: tag {other} holds it");
            return Ok(false);
        }
        match client.delete_manifest(repo, digest, creds) {
            Ok(Deletion::Deleted) => Ok(true),
            Ok(Deletion::Gone) => Ok(false),
            Ok(Deletion::Refused { answer, .. }) => Err(answer),
            Ok(Deletion::DigestOnly) => Err(format!("{digest} was refused")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Takes `listed` out of the target's fallback index of `subject`: what
    /// other writers put there stays; an index left empty goes.
    fn trim_fallback(
        &mut self,
        repo: &Repository,
        name: &str,
        subject: &str,
        listed: &BTreeSet<String>,
    ) -> Result<(), String> {
        let tag = fallback_tag(subject);
        let creds = self.p.access.push();
        let client = self.p.client;
        let Some(index) = client
            .get_manifest(repo, &tag, creds)
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let entries: Vec<Value> = index.json()?["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let kept: Vec<Value> = entries
            .iter()
            .filter(|e| !listed.contains(e["digest"].as_str().unwrap_or_default()))
            .cloned()
            .collect();
        if kept.len() == entries.len() {
            return Ok(());
        }
        if kept.is_empty() {
            self.delete_referrer(repo, name, Some(&tag), &index.digest)?;
            return Ok(());
        }
        let bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": kept,
        }))
        .unwrap_or_default();
        client
            .put_manifest(repo, &tag, &Manifest::new(bytes, OCI_INDEX), creds)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(listed: &[&str], tagged: &[(&str, &str)]) -> Copied {
        Copied {
            listed: listed.iter().map(|d| d.to_string()).collect(),
            tagged: tagged
                .iter()
                .map(|(t, d)| (t.to_string(), d.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_referrers_of_what_goes_go_and_those_of_what_stays_stay() {
        let map: BTreeMap<String, Copied> = [
            (
                "image".to_string(),
                copied(&["sbom", "att"], &[("image.sig", "sig")]),
            ),
            ("child".to_string(), copied(&["child-sig"], &[])),
            ("att".to_string(), copied(&["att-sig"], &[])),
        ]
        .into();
        let all = going(&map, |_| false);
        assert_eq!(all, ["child", "image", "att"]);
        assert_eq!(count(&map, &all), 5);
        let held = going(&map, |s| s == "image");
        assert_eq!(
            held,
            ["child"],
            "an image that stays keeps its referrers, and theirs"
        );
        assert_eq!(count(&map, &held), 1);
        assert!(going(&BTreeMap::new(), |_| false).is_empty());
    }
}
