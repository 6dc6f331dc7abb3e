//! The native engine: picture-book copies an image registry to registry
//! over HTTP itself, with no daemon and nothing on the local disk. It reads
//! the source's manifest (an index is walked to every child), copies every
//! blob the target lacks (mounted when another repository of the target has
//! it, else a `HEAD` first, then a stream from the source checked against
//! its digest as it passes; see `blob`), then puts the manifests by
//! digest, children before their index, and the tag last: an interruption
//! never leaves a tag that points at missing blobs. Indexes stay whole and
//! digests unchanged unless a `platforms` filter makes a new index (or, when
//! it keeps one platform, puts that platform's manifest alone).

mod blob;
mod referrers;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use super::{
    Capabilities, Engine, Failed, Freshness, Job, Moved, Naming, Plan, Ready, Sink, Source, Stats,
    Step, Steps, attempt,
};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::mutex::lock;
use crate::platform::Platform;
use crate::registry::{Manifest, Repository};

/// The native engine.
pub struct Native;

impl Engine for Native {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            name: "native",
            naming: Naming::PinnedTag,
            counts: true,
            layouts: true,
            uploads: true,
        }
    }

    fn ready(&self) -> Result<Ready, Error> {
        Ok(Ready {
            version: format!("native {}", env!("CARGO_PKG_VERSION")),
            freshness: Freshness::SameDigest,
        })
    }

    fn transfer<'a>(&self, job: &Job<'a>, steps: Arc<dyn Steps + 'a>) -> Result<Moved, Failed> {
        let bounded = Bounded {
            inner: steps,
            until: Instant::now() + job.registry.transfer_timeout,
            limit: job.registry.transfer_timeout,
            what: format!("the copy of {}", job.source),
        };
        Copy::new(job, Arc::new(bounded)).run()
    }

    fn plan(&self, job: &Job<'_>) -> Result<Option<Plan>, Error> {
        Copy::new(job, Arc::new(NoRetries))
            .plan()
            .map(Some)
            .map_err(|f| f.error)
    }

    fn refresh_referrers<'a>(
        &self,
        job: &Job<'a>,
        steps: Arc<dyn Steps + 'a>,
        source_digest: &str,
        known: &BTreeMap<String, String>,
    ) -> Result<Moved, Failed> {
        if !job.registry.referrers {
            return Ok(Moved::default());
        }
        let copy = Copy::new(job, steps);
        let subjects: Vec<String> = if known.is_empty() {
            vec![source_digest.to_string()]
        } else {
            known.keys().cloned().collect()
        };
        let referring = referrers::Referring::new(&copy);
        let referred = referring.bring(&subjects, known)?;
        let mut stats = lock(&copy.stats).clone();
        stats.referrers = referring.copied();
        Ok(Moved {
            digest: None,
            stats,
            referred,
            copied: referring.brought(),
        })
    }
}

/// A blob an image manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Blob {
    digest: String,
    size: u64,
}

/// What the source holds under the reference: the manifests to put, children
/// first, and the blobs they need.
struct Tree {
    /// The manifest to put under the tag.
    top: Manifest,
    /// The manifests to put by digest before it.
    children: Vec<Manifest>,
    /// Every blob, once.
    blobs: Vec<Blob>,
    /// The platforms of the index copied, if the top is an index.
    platforms: Vec<String>,
    /// Whether a `platforms` filter made a new index.
    filtered: bool,
}

impl Tree {
    /// The tree of one manifest, its blobs not read yet.
    fn of(top: Manifest) -> Tree {
        Tree {
            top,
            children: Vec::new(),
            blobs: Vec::new(),
            platforms: Vec::new(),
            filtered: false,
        }
    }
}

/// One copy of one image; a clone shares its counts, and is what the run's
/// blob copiers hold.
#[derive(Clone)]
struct Copy<'a> {
    job: Job<'a>,
    steps: Arc<dyn Steps + 'a>,
    src: Repository,
    dst: Repository,
    tag: String,
    src_creds: Option<Credentials>,
    stats: Arc<Mutex<Stats>>,
}

impl<'a> Copy<'a> {
    fn new(job: &Job<'a>, steps: Arc<dyn Steps + 'a>) -> Copy<'a> {
        let src = job.access.source(job.source).for_copying();
        let (name, tag) = job
            .target
            .rsplit_once(':')
            .unwrap_or((job.target, "latest"));
        let dst = job.access.target(name).for_copying();
        let src_creds = job.access.pull(&src.host);
        Copy {
            job: job.clone(),
            steps,
            src,
            dst,
            tag: tag.to_string(),
            src_creds,
            stats: Arc::default(),
        }
    }

    fn run(&self) -> Result<Moved, Failed> {
        let tree = self.read_tree()?;
        if let Sink::Layout(layout) = self.job.to {
            return self.export(layout, tree);
        }
        let total: u64 = tree.blobs.iter().map(|b| b.size).sum();
        self.job.progress.bytes(&self.job.item, 0, total);
        self.copy_blobs(&tree.blobs, total)?;
        for child in &tree.children {
            self.put(&child.digest, child)?;
        }
        let stored = self.put(&self.tag, &tree.top)?;
        if let Some(d) = stored.digest.as_ref().filter(|d| **d != tree.top.digest) {
            return Err(Failed::new(
                self.fail(format!(
                    "{} stored the manifest as {d}, not as the source's {}",
                    self.job.target, tree.top.digest
                )),
                &self.dst.host,
            ));
        }
        self.finish(tree)
    }

    /// Brings what refers to the image (with `referrers`), and tells what
    /// the copy moved.
    fn finish(&self, tree: Tree) -> Result<Moved, Failed> {
        let mut referred = BTreeMap::new();
        let mut copied = 0;
        let mut brought = BTreeMap::new();
        if self.job.registry.referrers {
            let mut subjects = vec![tree.top.digest.clone()];
            subjects.extend(tree.children.iter().map(|c| c.digest.clone()));
            let referring = referrers::Referring::new(self);
            referred = referring.bring(&subjects, &BTreeMap::new())?;
            copied = referring.copied();
            brought = referring.brought();
        }
        let mut stats = lock(&self.stats).clone();
        stats.platforms = tree.platforms;
        stats.filtered = tree.filtered;
        stats.referrers = copied;
        Ok(Moved {
            digest: Some(tree.top.digest),
            stats,
            referred,
            copied: brought,
        })
    }

    /// Writes the image into the layout `export` makes: its manifests first,
    /// so that an archive cut short still tells which image each of its
    /// blobs belongs to, then its blobs, then what refers to it; listed in
    /// `index.json` with the target it was planned for and its source once
    /// all of that is written.
    fn export(&self, layout: &crate::layout::Writer, tree: Tree) -> Result<Moved, Failed> {
        let written = |r: Result<(), Error>| r.map_err(|e| Failed::new(e, &self.dst.host));
        for m in tree.children.iter().chain([&tree.top]) {
            written(layout.put_manifest(m))?;
        }
        let entry = crate::layout::descriptor(
            &tree.top,
            serde_json::json!({
                crate::layout::REF_NAME: self.job.target,
                crate::layout::SOURCE: self.job.source.to_string(),
                crate::layout::REGISTRY: self.job.registry.hostname,
            }),
        );
        written(layout.announce(&entry))?;
        let total: u64 = tree.blobs.iter().map(|b| b.size).sum();
        self.job.progress.bytes(&self.job.item, 0, total);
        self.copy_blobs(&tree.blobs, total)?;
        let moved = self.finish(tree)?;
        layout.add_entry(entry);
        Ok(moved)
    }

    /// What a copy would move: the platforms, and the blobs the target lacks.
    fn plan(&self) -> Result<Plan, Failed> {
        let tree = self.read_tree()?;
        let mut plan = Plan {
            platforms: tree.platforms,
            filtered: tree.filtered,
            ..Plan::default()
        };
        if self.job.registry.referrers {
            plan.referrers = referrers::Referring::new(self).list(&tree.top.digest)?;
        }
        for blob in &tree.blobs {
            let there = match self.job.to {
                Sink::Layout(layout) => layout.has(&blob.digest, blob.size),
                Sink::Registry => self
                    .job
                    .client
                    .head_blob(&self.dst, &blob.digest, self.job.access.push())
                    .map_err(|e| Failed::new(e, &self.dst.host))?
                    .is_some(),
            };
            if !there {
                plan.missing_blobs += 1;
                plan.missing_bytes += blob.size;
            }
        }
        Ok(plan)
    }

    /// Reads the source's manifest and, for an index, every child's (the
    /// `platforms` filter applied to the top index).
    fn read_tree(&self) -> Result<Tree, Failed> {
        let reference = self
            .job
            .source
            .digest()
            .map_or_else(|| self.job.source.target_tag(), String::from);
        let top = self.fetch(&reference)?;
        let mut tree = Tree {
            top: top.clone(),
            children: Vec::new(),
            blobs: Vec::new(),
            platforms: Vec::new(),
            filtered: false,
        };
        let mut seen = HashSet::new();
        if top.is_index() {
            let (index, platforms, filtered) = self.filter(&top)?;
            tree.platforms = platforms;
            tree.filtered = filtered;
            match self.alone(&index)? {
                Some(child) => {
                    tree.filtered = true;
                    tree.top = child;
                    if tree.top.is_index() {
                        self.walk_index(&tree.top.clone(), &mut tree, &mut seen, 1)?;
                    } else {
                        self.add_blobs(&tree.top.clone(), &mut tree, &mut seen)?;
                    }
                }
                None => {
                    tree.top = index;
                    self.walk_index(&tree.top.clone(), &mut tree, &mut seen, 0)?;
                }
            }
        } else {
            self.add_blobs(&top, &mut tree, &mut seen)?;
        }
        Ok(tree)
    }

    /// Adds the children of `index` (and theirs) to `tree`, children first.
    fn walk_index(
        &self,
        index: &Manifest,
        tree: &mut Tree,
        seen: &mut HashSet<Blob>,
        depth: usize,
    ) -> Result<(), Failed> {
        if depth > 4 {
            return Err(Failed::new(
                self.fail(format!("index {} nests too deep", index.digest)),
                &self.src.host,
            ));
        }
        let json = self.json(index)?;
        let entries = json["manifests"].as_array().cloned().unwrap_or_default();
        for entry in entries {
            let digest = entry["digest"].as_str().unwrap_or_default().to_string();
            if tree.children.iter().any(|c| c.digest == digest) {
                continue;
            }
            let child = self.fetch(&digest)?;
            if child.is_index() {
                self.walk_index(&child, tree, seen, depth + 1)?;
            } else {
                self.add_blobs(&child, tree, seen)?;
            }
            tree.children.push(child);
        }
        Ok(())
    }

    /// Adds the blobs of the image manifest `m` to `tree`: its config, its
    /// layers (and an artifact's `blobs`), except foreign layers (with
    /// `urls`), which are not distributed by registries.
    fn add_blobs(
        &self,
        m: &Manifest,
        tree: &mut Tree,
        seen: &mut HashSet<Blob>,
    ) -> Result<(), Failed> {
        let json = self.json(m)?;
        let descriptors = json
            .get("config")
            .into_iter()
            .chain(json["layers"].as_array().into_iter().flatten())
            .chain(json["blobs"].as_array().into_iter().flatten());
        for d in descriptors {
            if d.get("urls")
                .is_some_and(|u| u.as_array().is_some_and(|a| !a.is_empty()))
            {
                continue;
            }
            let (Some(digest), Some(size)) = (d["digest"].as_str(), d["size"].as_u64()) else {
                return Err(Failed::new(
                    self.fail(format!(
                        "manifest {} has a descriptor without digest or size",
                        m.digest
                    )),
                    &self.src.host,
                ));
            };
            let blob = Blob {
                digest: digest.to_string(),
                size,
            };
            if seen.insert(blob.clone()) {
                tree.blobs.push(blob);
            }
        }
        Ok(())
    }

    /// The one platform's manifest, to put alone under the tag, when the
    /// registry's `platforms` keep one platform of `index` (a registry that
    /// takes no indexes can be mirrored so); None otherwise.
    fn alone(&self, index: &Manifest) -> Result<Option<Manifest>, Failed> {
        if self.job.registry.platforms.is_empty() {
            return Ok(None);
        }
        let json = self.json(index)?;
        let entries = json["manifests"].as_array().cloned().unwrap_or_default();
        let mut platforms = entries
            .iter()
            .filter(|e| Platform::of_entry(e).is_some_and(|p| p.os != "unknown"));
        match (platforms.next(), platforms.next()) {
            (Some(one), None) => {
                let digest = one["digest"].as_str().unwrap_or_default();
                self.fetch(digest).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The index to put for `index`: itself when the registry's `platforms`
    /// keep every entry, else a new index of the entries kept. Returns the
    /// platforms copied, and whether the index is new.
    fn filter(&self, index: &Manifest) -> Result<(Manifest, Vec<String>, bool), Failed> {
        let json = self.json(index)?;
        let entries = json["manifests"].as_array().cloned().unwrap_or_default();
        let names = |kept: &[Value]| -> Vec<String> {
            kept.iter()
                .filter_map(Platform::of_entry)
                .filter(|p| p.os != "unknown")
                .map(|p| p.to_string())
                .collect()
        };
        let filters = &self.job.registry.platforms;
        if filters.is_empty() {
            return Ok((index.clone(), names(&entries), false));
        }
        let kept = keep(&entries, filters);
        if kept
            .iter()
            .all(|k| !k.get("platform").is_some_and(|p| p["os"] != "unknown"))
        {
            let filter: Vec<String> = filters.iter().map(ToString::to_string).collect();
            return Err(Failed::new(
                self.fail(format!(
                    "the source has none of the platforms {} (it has {})",
                    filter.join(", "),
                    names(&entries).join(", ")
                )),
                &self.src.host,
            ));
        }
        if kept.len() == entries.len() {
            return Ok((index.clone(), names(&entries), false));
        }
        let mut new = json.clone();
        new["manifests"] = Value::Array(kept.clone());
        let bytes = serde_json::to_vec(&new).unwrap_or_default();
        Ok((Manifest::new(bytes, &index.media_type), names(&kept), true))
    }

    /// The manifest `reference` of the source, tried again as `retries`
    /// allows; from a layout, `reference` is a digest.
    fn fetch(&self, reference: &str) -> Result<Manifest, Failed> {
        if let Source::Layout(layout) = self.job.from {
            return self.fetch_from(layout, reference);
        }
        let what = format!("manifest {reference}");
        let step = Step {
            what: &what,
            host: &self.src.host,
        };
        let got = attempt(&*self.steps, &step, || {
            self.paced(&self.src, reference, self.src_creds.as_ref())?;
            self.job
                .client
                .get_manifest(&self.src, reference, self.src_creds.as_ref())
        })?;
        got.ok_or_else(|| {
            Failed::new(
                self.fail_at(
                    &self.src,
                    format!("{}:{reference} is not at the source", self.src.path),
                ),
                &self.src.host,
            )
        })
    }

    /// The manifest `digest` of the layout the image comes from (which
    /// knows manifests by digest only: a tag names the target).
    fn fetch_from(&self, layout: &crate::layout::Reader, digest: &str) -> Result<Manifest, Failed> {
        let found = layout
            .manifest(digest)
            .map_err(|e| Failed::new(e, &self.src.host))?;
        found.ok_or_else(|| {
            Failed::new(
                Error::Corrupt {
                    detail: format!("manifest {digest} is missing from {}", layout.shown()),
                },
                &self.src.host,
            )
        })
    }

    /// Puts `manifest` at the target as `reference` (into the layout the
    /// image goes to, by digest alone).
    fn put(
        &self,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<crate::registry::manifests::Stored, Failed> {
        if let Sink::Layout(layout) = self.job.to {
            layout
                .put_manifest(manifest)
                .map_err(|e| Failed::new(e, &self.dst.host))?;
            return Ok(crate::registry::manifests::Stored {
                digest: Some(manifest.digest.clone()),
                subject: true,
            });
        }
        let what = format!("manifest {reference}");
        let step = Step {
            what: &what,
            host: &self.dst.host,
        };
        attempt(&*self.steps, &step, || {
            self.job
                .client
                .put_manifest(&self.dst, reference, manifest, self.job.access.push())
        })
    }

    /// Waits, before a manifest `GET` of `repo`, while its registry's pull
    /// limit is at the registry's `rateLimitMin` (see `registry::limits`);
    /// the wait ends with the run, or with `transferTimeout`.
    fn paced(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<(), Error> {
        let wait = |d| self.steps.wait(d);
        let pace = crate::registry::limits::Pace {
            floor: self.job.registry.rate_limit_min,
            wait: self.steps.waits().then_some(&wait),
        };
        self.job.client.before_pull(repo, reference, creds, &pace)
    }

    fn json(&self, m: &Manifest) -> Result<Value, Failed> {
        m.json()
            .map_err(|e| Failed::new(self.fail_at(&self.src, e), &self.src.host))
    }

    fn fail(&self, detail: String) -> Error {
        self.fail_at(&self.dst, detail)
    }

    fn fail_at(&self, repo: &Repository, detail: String) -> Error {
        Error::registry(&repo.host, detail)
    }
}

/// The entries of an index that `filters` keep: those of a platform a
/// filter keeps, and the attestations (buildx's `unknown/unknown` entries)
/// of those.
fn keep(entries: &[Value], filters: &[Platform]) -> Vec<Value> {
    let kept: Vec<&Value> = entries
        .iter()
        .filter(|e| Platform::of_entry(e).is_some_and(|p| filters.iter().any(|f| f.keeps(&p))))
        .collect();
    let kept_digests: HashSet<&str> = kept.iter().filter_map(|e| e["digest"].as_str()).collect();
    entries
        .iter()
        .filter(|e| {
            kept.contains(e)
                || e["annotations"]["vnd.docker.reference.digest"]
                    .as_str()
                    .is_some_and(|d| kept_digests.contains(d))
        })
        .cloned()
        .collect()
}

/// `mirror`'s retry policy with the end of `transferTimeout`: past it no
/// step starts, a stream stops, and the failure says so.
struct Bounded<'a> {
    inner: Arc<dyn Steps + 'a>,
    until: Instant,
    limit: std::time::Duration,
    what: String,
}

impl Bounded<'_> {
    fn late(&self) -> bool {
        Instant::now() >= self.until
    }

    fn timed_out(&self) -> Error {
        Error::TransferTimedOut {
            command: self.what.clone(),
            after: self.limit,
            killed: false,
        }
    }
}

impl Steps for Bounded<'_> {
    fn run(
        &self,
        step: &Step<'_>,
        work: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Failed> {
        let result = self.inner.run(step, &mut || {
            if self.late() {
                return Err(self.timed_out());
            }
            work()
        });
        result.map_err(|f| match f.error {
            Error::Interrupted { .. } if self.late() => Failed {
                error: self.timed_out(),
                ..f
            },
            _ => f,
        })
    }

    fn stopping(&self) -> bool {
        self.late() || self.inner.stopping()
    }

    fn wait(&self, wait: std::time::Duration) -> bool {
        let left = self.until.saturating_duration_since(Instant::now());
        self.inner.wait(wait.min(left)) && !self.late()
    }

    fn waits(&self) -> bool {
        self.inner.waits()
    }
}

/// The retry policy of a dry run: one try, no waiting.
struct NoRetries;

impl Steps for NoRetries {
    fn run(
        &self,
        step: &Step<'_>,
        work: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Failed> {
        work().map_err(|e| Failed::new(e, step.host))
    }

    fn stopping(&self) -> bool {
        false
    }

    fn wait(&self, _: std::time::Duration) -> bool {
        false
    }

    fn waits(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_keeps_its_platforms_and_their_attestations() {
        let entries: Vec<Value> = serde_json::from_str(
            r#"[{"digest":"sha256:a","platform":{"os":"linux","architecture":"amd64"}},
                {"digest":"sha256:b","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
                {"digest":"sha256:c","platform":{"os":"unknown","architecture":"unknown"},
                 "annotations":{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"sha256:a"}},
                {"digest":"sha256:d","platform":{"os":"unknown","architecture":"unknown"},
                 "annotations":{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"sha256:b"}}]"#,
        )
        .unwrap();
        let digests = |kept: Vec<Value>| -> Vec<String> {
            kept.iter()
                .map(|e| e["digest"].as_str().unwrap().to_string())
                .collect()
        };
        let amd = [Platform::parse("linux/amd64").unwrap()];
        assert_eq!(digests(keep(&entries, &amd)), ["sha256:a", "sha256:c"]);
        let both = [
            Platform::parse("linux/amd64").unwrap(),
            Platform::parse("linux/arm64").unwrap(),
        ];
        assert_eq!(keep(&entries, &both).len(), 4);
        assert!(keep(&entries, &[Platform::parse("linux/s390x").unwrap()]).is_empty());
    }
}
