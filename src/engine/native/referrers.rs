//! What refers to an image travels with it (`referrers: true`): the OCI 1.1
//! referrers of each image and each child of an index, found through the
//! source's referrers API, or its fallback tag `sha256-<hex>` where it has
//! none; cosign's `sha256-<hex>.sig`, `.att` and `.sbom` tags; and,
//! recursively, what refers to those (a signed attestation brings its
//! signature). At a target without the referrers API (its answer to a
//! manifest PUT has no `OCI-Subject`), the fallback index is kept up to
//! date: merged with what is there, never dropping another writer's entry,
//! and read back to check. A fingerprint of what a subject's referrers are
//! lets an up-to-date image cost one request when nothing changed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::{Copy, Tree};
use crate::digest;
use crate::engine::{Copied, Failed, Sink, Source, Step, attempt};
use crate::error::Error;
use crate::mutex::lock;
use crate::registry::manifests::{OCI_INDEX, Referrers, Stored};
use crate::registry::{Manifest, Repository};

/// How deep referrers of referrers are followed.
const MAX_DEPTH: usize = 3;
/// cosign's tag suffixes.
const COSIGN: [&str; 3] = ["sig", "att", "sbom"];
/// The most tags of a repository read to find cosign's.
const MAX_TAGS: usize = 100_000;

/// The referrers of one image's move. Whether the source has the referrers
/// API, and the tags of its repository, are learnt once a run (see
/// `RunMemory`).
pub(super) struct Referring<'c, 'a> {
    copy: &'c Copy<'a>,
    /// How many manifests were copied.
    copied: Mutex<usize>,
    /// What was copied (or found in place) for each subject.
    brought: Mutex<BTreeMap<String, Copied>>,
}

/// What a subject's referrers are, found at the source.
struct Found {
    /// OCI referrers (descriptors) the referrers API listed, if the source
    /// has it.
    listed: Option<Vec<Value>>,
    /// Otherwise the fallback tag, when the source has one (its entries are
    /// read only when they are needed).
    fallback: Option<String>,
    /// cosign's tags present for it, with their digests.
    cosign: Vec<(String, String)>,
    /// A fingerprint of both: unchanged when nothing was added.
    fingerprint: String,
}

impl<'c, 'a> Referring<'c, 'a> {
    pub(super) fn new(copy: &'c Copy<'a>) -> Referring<'c, 'a> {
        Referring {
            copy,
            copied: Mutex::new(0),
            brought: Mutex::new(BTreeMap::new()),
        }
    }

    /// What was copied (or found at the target already) as referring to
    /// each subject whose referrers were brought: what pruning the image
    /// takes with it.
    pub(super) fn brought(&self) -> BTreeMap<String, Copied> {
        lock(&self.brought).clone()
    }

    /// How many manifests that refer to the image were copied.
    pub(super) fn copied(&self) -> usize {
        *lock(&self.copied)
    }

    /// Copies what refers to each of `subjects` whose fingerprint is not
    /// the one in `known`; returns each subject's fingerprint now.
    pub(super) fn bring(
        &self,
        subjects: &[String],
        known: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, Failed> {
        let mut now = BTreeMap::new();
        for subject in subjects {
            let found = self.find(subject)?;
            if known.get(subject) != Some(&found.fingerprint) {
                self.copy_found(subject, &found, 0)?;
            }
            now.insert(subject.clone(), found.fingerprint);
        }
        Ok(now)
    }

    /// The referrers a dry run lists for `subject`: `artifactType digest`.
    pub(super) fn list(&self, subject: &str) -> Result<Vec<String>, Failed> {
        let found = self.find(subject)?;
        let mut out: Vec<String> = self
            .entries(&found)?
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    artifact_type(d),
                    d["digest"].as_str().unwrap_or("?")
                )
            })
            .collect();
        out.extend(found.cosign.iter().map(|(tag, d)| format!("{tag} {d}")));
        Ok(out)
    }

    /// Finds what refers to `subject` at the source: one request (the
    /// referrers listing, or a `HEAD` of the fallback tag), plus a `HEAD`
    /// of each cosign tag the repository has for it.
    fn find(&self, subject: &str) -> Result<Found, Failed> {
        let copy = self.copy;
        if let Source::Layout(layout) = copy.job.from {
            return Ok(found_in(layout, subject));
        }
        let fallback = fallback_tag(subject);
        let mut fingerprint = String::new();
        let mut found_fallback = None;
        let listed = match self.listing(subject)? {
            Some(listed) => {
                let mut digests: Vec<&str> =
                    listed.iter().filter_map(|d| d["digest"].as_str()).collect();
                digests.sort_unstable();
                fingerprint.push_str(&format!("api:{}", digests.join(",")));
                Some(listed)
            }
            None => {
                let head = self.step(&format!("manifest {fallback}"), &copy.src.host, || {
                    copy.job
                        .client
                        .head_digest(&copy.src, &fallback, copy.src_creds.as_ref())
                })?;
                fingerprint.push_str(&format!("tag:{}", head.as_deref().unwrap_or("none")));
                found_fallback = head.map(|_| fallback);
                None
            }
        };
        let cosign = self.cosign_tags(subject)?;
        for (tag, digest) in &cosign {
            fingerprint.push_str(&format!(";{tag}={digest}"));
        }
        Ok(Found {
            listed,
            fallback: found_fallback,
            cosign,
            fingerprint: digest::sha256(fingerprint.as_bytes()),
        })
    }

    /// The OCI referrers of what was found, filtered by `referrerTypes`:
    /// the API's listing, or the source's fallback index, read now.
    fn entries(&self, found: &Found) -> Result<Vec<Value>, Failed> {
        let all = match (&found.listed, &found.fallback) {
            (Some(listed), _) => listed.clone(),
            (None, Some(tag)) => self.fallback_entries(&self.copy.src, tag)?,
            (None, None) => Vec::new(),
        };
        Ok(all.into_iter().filter(|d| self.wanted(d)).collect())
    }

    /// The source's referrers listing of `subject`, or None when it has no
    /// referrers API (asked once per image move).
    fn listing(&self, subject: &str) -> Result<Option<Vec<Value>>, Failed> {
        let copy = self.copy;
        let memory = copy.job.memory;
        if memory.referrers_api(&copy.src.host) == Some(false) {
            return Ok(None);
        }
        let answer = self.step(&format!("referrers of {subject}"), &copy.src.host, || {
            copy.job
                .client
                .referrers(&copy.src, subject, copy.src_creds.as_ref())
        })?;
        let listed = match answer {
            Referrers::Listed(listed) => Some(listed),
            Referrers::NoApi => None,
        };
        memory.set_referrers_api(&copy.src.host, listed.is_some());
        Ok(listed)
    }

    /// The entries of the fallback index `tag` in `repo`.
    fn fallback_entries(&self, repo: &Repository, tag: &str) -> Result<Vec<Value>, Failed> {
        let copy = self.copy;
        let creds = if repo.push {
            copy.job.access.push().cloned()
        } else {
            copy.src_creds.clone()
        };
        let got = self.step(&format!("manifest {tag}"), &repo.host, || {
            if !repo.push {
                copy.paced(repo, tag, creds.as_ref())?;
            }
            copy.job.client.get_manifest(repo, tag, creds.as_ref())
        })?;
        let Some(index) = got else {
            return Ok(Vec::new());
        };
        let json = copy.json(&index)?;
        Ok(json["manifests"].as_array().cloned().unwrap_or_default())
    }

    /// cosign's tags the source repository has for `subject`, with their
    /// digests (`HEAD`).
    fn cosign_tags(&self, subject: &str) -> Result<Vec<(String, String)>, Failed> {
        let copy = self.copy;
        let repository = format!("{}/{}", copy.src.host, copy.src.path);
        let tags = copy.job.memory.tags(&repository, || {
            copy.job
                .client
                .tags(&copy.src, copy.src_creds.as_ref(), MAX_TAGS)
                .map_err(|e| e.to_string())
        });
        let tags = tags
            .as_ref()
            .as_ref()
            .map_err(|e| Failed::new(Error::registry(&copy.src.host, e.clone()), &copy.src.host))?;
        let mut found = Vec::new();
        for suffix in COSIGN {
            let tag = format!("{}.{suffix}", fallback_tag(subject));
            if !tags.contains(&tag) {
                continue;
            }
            let digest = self.step(&format!("manifest {tag}"), &copy.src.host, || {
                copy.job
                    .client
                    .head_digest(&copy.src, &tag, copy.src_creds.as_ref())
            })?;
            if let Some(d) = digest {
                found.push((tag, d));
            }
        }
        Ok(found)
    }

    /// Copies what was found for `subject`, and what refers to that.
    fn copy_found(&self, subject: &str, found: &Found, depth: usize) -> Result<(), Failed> {
        let mut for_fallback = Vec::new();
        for descriptor in &self.entries(found)? {
            let Some(digest) = descriptor["digest"].as_str() else {
                continue;
            };
            if let Some(entry) = self.copy_manifest(subject, digest, digest, depth)? {
                for_fallback.push(entry);
            }
            self.note(subject, |c| c.listed.insert(digest.to_string()));
        }
        for (tag, digest) in &found.cosign {
            self.copy_manifest(subject, tag, digest, depth)?;
            self.note(subject, |c| c.tagged.insert(tag.clone(), digest.clone()));
        }
        if !for_fallback.is_empty() {
            self.merge_fallback(subject, for_fallback)?;
        }
        Ok(())
    }

    /// Copies the manifest `reference` (`digest`) of the source, its blobs,
    /// and what refers to it; returns its descriptor for the target's
    /// fallback index when the target keeps no referrers itself. One the
    /// target registry holds already is not read from the source.
    fn copy_manifest(
        &self,
        subject: &str,
        reference: &str,
        digest: &str,
        depth: usize,
    ) -> Result<Option<Value>, Failed> {
        let copy = self.copy;
        let at_target = match copy.job.to {
            Sink::Layout(layout) => layout.has_manifest(digest).then(|| digest.to_string()),
            Sink::Registry => {
                self.step(&format!("manifest {reference}"), &copy.dst.host, || {
                    copy.job
                        .client
                        .head_digest(&copy.dst, reference, copy.job.access.push())
                })?
            }
        };
        let there = at_target.as_deref() == Some(digest);
        if there && copy.job.to.is_registry() {
            self.copy_referring_to(digest, depth)?;
            return Ok(None);
        }
        let manifest = copy.fetch(copy.job.from.manifest_key(reference, digest))?;
        let mut entry = None;
        if !there {
            let mut tree = Tree::of(manifest.clone());
            let mut seen = HashSet::new();
            copy.add_blobs(&manifest, &mut tree, &mut seen)?;
            let total = tree.blobs.iter().map(|b| b.size).sum();
            copy.copy_blobs(&tree.blobs, total)?;
            let stored: Stored = copy.put(reference, &manifest)?;
            *lock(&self.copied) += 1;
            if !stored.subject {
                entry = Some(self.descriptor(&manifest)?);
            }
        }
        if let Sink::Layout(layout) = copy.job.to {
            let mut notes = json!({ crate::layout::REFERRER_OF: subject });
            if reference != digest {
                notes[crate::layout::TAG] = json!(reference);
            }
            let listed = crate::layout::descriptor(&manifest, notes);
            layout
                .announce(&listed)
                .map_err(|e| Failed::new(e, &copy.dst.host))?;
            layout.add_entry(listed);
        }
        self.copy_referring_to(&manifest.digest, depth)?;
        Ok(entry)
    }

    /// Copies what refers to the referrer `digest` (found at `depth`), up
    /// to [`MAX_DEPTH`].
    fn copy_referring_to(&self, digest: &str, depth: usize) -> Result<(), Failed> {
        if depth + 1 < MAX_DEPTH {
            let found = self.find(digest)?;
            self.copy_found(digest, &found, depth + 1)?;
        }
        Ok(())
    }

    /// Notes with `add` what was brought for `subject`.
    fn note<T>(&self, subject: &str, add: impl FnOnce(&mut Copied) -> T) {
        add(lock(&self.brought).entry(subject.to_string()).or_default());
    }

    /// The descriptor of `m` as a referrers index lists it.
    fn descriptor(&self, m: &Manifest) -> Result<Value, Failed> {
        let json = self.copy.json(m)?;
        let mut d = json!({
            "mediaType": m.media_type,
            "digest": m.digest,
            "size": m.bytes.len(),
            "artifactType": artifact_type(&json),
        });
        if let Some(a) = json.get("annotations").filter(|a| a.is_object()) {
            d["annotations"] = a.clone();
        }
        Ok(d)
    }

    /// Adds `entries` to the target's fallback index of `subject`: read,
    /// merge (nothing another writer put there is dropped), write, and read
    /// back to check that a concurrent writer did not replace it; again, a
    /// few times, when one did.
    fn merge_fallback(&self, subject: &str, entries: Vec<Value>) -> Result<(), Failed> {
        let copy = self.copy;
        let tag = fallback_tag(subject);
        let ours: Vec<&str> = entries
            .iter()
            .filter_map(|e| e["digest"].as_str())
            .collect();
        for _ in 0..4 {
            let mut index = self.fallback_entries(&copy.dst, &tag)?;
            let present: HashSet<String> = index
                .iter()
                .filter_map(|e| e["digest"].as_str().map(String::from))
                .collect();
            if ours.iter().all(|d| present.contains(*d)) {
                return Ok(());
            }
            index.extend(
                entries
                    .iter()
                    .filter(|e| !present.contains(e["digest"].as_str().unwrap_or_default()))
                    .cloned(),
            );
            let bytes = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": index,
            }))
            .unwrap_or_default();
            copy.put(&tag, &Manifest::new(bytes, OCI_INDEX))?;
        }
        Err(Failed::new(
            Error::registry(
                &copy.dst.host,
                format!("the referrers index {tag} kept being replaced by another writer"),
            ),
            &copy.dst.host,
        ))
    }

    /// Whether `referrerTypes` keeps a referrer of this descriptor.
    fn wanted(&self, descriptor: &Value) -> bool {
        let types = &self.copy.job.registry.referrer_types;
        types.is_empty() || types.iter().any(|t| t == artifact_type(descriptor))
    }

    /// One request, tried again as `retries` allows.
    fn step<T>(
        &self,
        what: &str,
        host: &str,
        work: impl FnMut() -> Result<T, Error>,
    ) -> Result<T, Failed> {
        attempt(&*self.copy.steps, &Step { what, host }, work)
    }
}

/// What a layout (picture-book's export) lists as referring to `subject`.
fn found_in(layout: &crate::layout::Reader, subject: &str) -> Found {
    let of_subject = layout
        .entries()
        .iter()
        .filter(|e| e.referrer_of.as_deref() == Some(subject));
    let (tagged, listed): (Vec<_>, Vec<_>) = of_subject.partition(|e| e.tag.is_some());
    let mut fingerprint: Vec<&str> = listed.iter().map(|e| e.digest.as_str()).collect();
    fingerprint.sort_unstable();
    Found {
        listed: Some(listed.iter().map(|e| e.descriptor.clone()).collect()),
        fallback: None,
        cosign: tagged
            .iter()
            .map(|e| (e.tag.clone().unwrap_or_default(), e.digest.clone()))
            .collect(),
        fingerprint: digest::sha256(fingerprint.join(",").as_bytes()),
    }
}

/// The OCI fallback tag of a digest: `sha256-<hex>`.
fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// A referrer's artifact type: `artifactType`, else its config's media type.
fn artifact_type(v: &Value) -> &str {
    v["artifactType"]
        .as_str()
        .or_else(|| v["config"]["mediaType"].as_str())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_types() {
        assert_eq!(
            fallback_tag("sha256:0123"),
            "sha256-0123",
            "the OCI fallback tag"
        );
        assert_eq!(artifact_type(&json!({"artifactType": "a/b"})), "a/b");
        assert_eq!(
            artifact_type(&json!({"config": {"mediaType": "c/d"}})),
            "c/d"
        );
    }
}
