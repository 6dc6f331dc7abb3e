//! The engines that move images, and the one small trait `mirror` drives
//! them through: is the engine ready (and how does it decide freshness),
//! then move one image, with progress, under `mirror`'s retry policy.
//! `docker` and `podman` pull, tag and push with their CLIs (`tool`, which
//! `docker` and `podman` tell how to spell things);
//! `native` copies registry to registry over HTTP itself. Which engine a
//! registry uses is its `engine` key; nothing outside this folder asks:
//! the run asks an engine its `Capabilities` (its naming rule, whether it
//! counts what it moves, whether it reads and writes layouts) instead.
//! Each move is told where its image comes from and goes to (`ends`: a
//! registry or a layout) and who picture-book is at each host (`access`,
//! resolved once per run); the native engine copies blobs on the run's
//! copiers (`pool`).

pub mod access;
pub mod config_dir;
pub mod docker;
pub mod ends;
pub mod local;
pub mod native;
pub mod podman;
pub mod pool;
pub mod tool;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex};

pub use crate::config::Choice;
use crate::config::Registry;
use crate::display::{Item, Progress};
use crate::error::Error;
use crate::inflight::{InFlight, Lead};
use crate::mutex::{lock, wait};
use crate::platform::Platform;
use crate::process::Cancel;
use crate::reference::Reference;
use crate::registry::blobs::Upload;
use crate::registry::{Client, Repository};
pub use access::Access;
pub use ends::{Sink, Source};

/// How an engine decides that the target already holds the source's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The target holds the source's manifest, byte for byte: equal digests
    /// (or, for a platform-filtered index, the digests recorded when it was
    /// copied).
    SameDigest,
    /// The target holds the image the engine would pull for this platform:
    /// the same image config (what survives a pull and push through docker).
    SameConfig(Platform),
}

/// What an engine says of itself when it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Its name and version, for the log (`docker 20.10.24`).
    pub version: String,
    /// How it decides freshness.
    pub freshness: Freshness,
}

/// What an engine can do, asked of it (nothing outside `engine/` asks which
/// engine a registry chose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Its name as the `engine` key spells it, for reports and the log.
    pub name: &'static str,
    /// How it names the tag of an image listed by digest alone.
    pub naming: Naming,
    /// Whether it counts what it moves ([`Stats`]) for the report.
    pub counts: bool,
    /// Whether it can read images from a layout and write them into one.
    pub layouts: bool,
    /// Whether it sends blobs through the registry's upload API itself: the
    /// upload the repository check opens is kept for its first blob there.
    pub uploads: bool,
}

/// How an engine names the target of an image listed by digest alone (see
/// `reference`); tagged images are named alike by every engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `<algorithm>-<hex>`: what the CLI engines push.
    DigestTag,
    /// `pinned-<algorithm>-<hex>`: the native engine's.
    PinnedTag,
}

impl Naming {
    /// The full target name of `reference` under `hostname/repository`.
    pub fn target(self, reference: &Reference, hostname: &str, repository: &str) -> String {
        match self {
            Naming::DigestTag => reference.target(hostname, repository),
            Naming::PinnedTag => reference.native_target(hostname, repository),
        }
    }
}

/// One image to move, and everything the move needs to know; what lives as
/// long as the run is borrowed for `'a`, so that the run's blob copiers
/// can hold a copy.
#[derive(Clone)]
pub struct Job<'a> {
    /// The registry whose run this is.
    pub registry: &'a Registry,
    /// The source.
    pub source: &'a Reference,
    /// The target, `host/path:tag`.
    pub target: &'a str,
    /// The image's place in the run, for progress.
    pub item: Arc<Item>,
    /// Where progress is shown.
    pub progress: &'a Progress,
    /// The registry API client.
    pub client: &'a Client,
    /// Credentials and insecurity for the hosts of the run.
    pub access: &'a Access,
    /// The run's shared limit on transfers in flight (`parallel`).
    pub slots: &'a Slots,
    /// The run's blob copiers.
    pub pool: Arc<pool::Pool<'a>>,
    /// What the run learnt that moves share (blobs for mounts, referrers).
    pub memory: &'a RunMemory,
    /// Where the image comes from: its source registry, or a layout
    /// (`load --from`).
    pub from: Source<'a>,
    /// Where it goes: the target, or a layout (`export`).
    pub to: Sink<'a>,
}

/// One step of a move (a docker command, a request), as the retry policy
/// sees it.
pub struct Step<'a> {
    /// What it is, for messages: `pull`, `push`, `blob sha256:...`.
    pub what: &'a str,
    /// The registry it talks to.
    pub host: &'a str,
}

/// What `mirror` offers an engine while it moves one image (shared with
/// the run's blob copiers).
pub trait Steps: Send + Sync {
    /// Runs `work` until it succeeds, again after each passing failure (a
    /// connection refused, a 5xx, a 429) while `retries` allows and the run
    /// is not asked to stop, waiting longer each time.
    fn run(
        &self,
        step: &Step<'_>,
        work: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Failed>;

    /// Whether the run is asked to stop (pause, shutdown).
    fn stopping(&self) -> bool;

    /// Waits `wait` (for a pull limit, say), or less when the run is asked
    /// to stop; false then, or when this policy does not wait (a dry run).
    fn wait(&self, wait: std::time::Duration) -> bool;

    /// Whether this policy waits at all (a dry run does not).
    fn waits(&self) -> bool {
        true
    }
}

/// Runs `work` as [`Steps::run`] does, keeping what it returns.
pub fn attempt<T>(
    steps: &dyn Steps,
    step: &Step<'_>,
    mut work: impl FnMut() -> Result<T, Error>,
) -> Result<T, Failed> {
    let mut out = None;
    steps.run(step, &mut || {
        out = Some(work()?);
        Ok(())
    })?;
    out.ok_or_else(|| {
        Failed::new(
            Error::Interrupted {
                command: step.what.to_string(),
            },
            step.host,
        )
    })
}

/// A move that failed: the error, and the registry it failed with.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong.
    pub error: Error,
    /// The registry the failing step talked to.
    pub host: String,
}

impl Failed {
    /// `error`, met talking to `host`.
    pub fn new(error: Error, host: &str) -> Failed {
        Failed {
            error,
            host: host.to_string(),
        }
    }
}

/// What a move did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    /// The manifest digest the target now has under the tag, when known.
    pub digest: Option<String>,
    /// What the native engine counted.
    pub stats: Stats,
    /// With `referrers`: what the referrers of each subject (the image, the
    /// children of an index) were, as fingerprints to compare next time.
    pub referred: BTreeMap<String, String>,
    /// With `referrers`: what was copied (or found in place) as referring
    /// to each subject whose referrers were brought.
    pub copied: BTreeMap<String, Copied>,
}

/// What picture-book copied as referring to one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Copied {
    /// OCI referrers, by digest (listed by the referrers API, or in the
    /// fallback index `sha256-<hex>`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub listed: BTreeSet<String>,
    /// cosign's tags (`sha256-<hex>.sig`), with their digests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged: BTreeMap<String, String>,
}

impl Copied {
    /// Adds what `other` holds.
    pub fn add(&mut self, other: &Copied) {
        self.listed.extend(other.listed.iter().cloned());
        self.tagged
            .extend(other.tagged.iter().map(|(t, d)| (t.clone(), d.clone())));
    }
}

/// `into` with what `more` holds for each subject added.
pub fn add_copied(into: &mut BTreeMap<String, Copied>, more: &BTreeMap<String, Copied>) {
    for (subject, copied) in more {
        into.entry(subject.clone()).or_default().add(copied);
    }
}

/// What the native engine counts of a move (all zero for the CLI engines).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Bytes of blobs sent to the target.
    pub bytes: u64,
    /// Blobs copied from the source.
    pub blobs_copied: usize,
    /// Blobs mounted from another repository of the target.
    pub blobs_mounted: usize,
    /// Blobs the target had already.
    pub blobs_present: usize,
    /// Manifests that refer to the image (signatures, attestations, SBOMs)
    /// copied with it.
    #[serde(skip_serializing_if = "is_zero")]
    pub referrers: usize,
    /// The platforms of an index that were copied, when filtered or whole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Whether a `platforms` filter made a new index (with a new digest).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub filtered: bool,
}

impl Stats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Stats) {
        self.bytes += other.bytes;
        self.blobs_copied += other.blobs_copied;
        self.blobs_mounted += other.blobs_mounted;
        self.blobs_present += other.blobs_present;
        self.referrers += other.referrers;
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a dry run can tell of a move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The platforms that would be copied.
    pub platforms: Vec<String>,
    /// Whether a `platforms` filter makes a new index.
    pub filtered: bool,
    /// Blobs missing at the target, and their bytes.
    pub missing_blobs: usize,
    /// Their bytes.
    pub missing_bytes: u64,
    /// With `referrers`: what refers to the image (`type digest`, or
    /// `tag digest` for cosign's tags).
    pub referrers: Vec<String>,
}

/// An engine.
pub trait Engine: Sync {
    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Whether it can work now, and how it decides freshness.
    fn ready(&self) -> Result<Ready, Error>;

    /// Moves one image.
    fn transfer<'a>(&self, job: &Job<'a>, steps: Arc<dyn Steps + 'a>) -> Result<Moved, Failed>;

    /// For a dry run: what a move would do, where the engine can tell
    /// without moving anything.
    fn plan(&self, job: &Job<'_>) -> Result<Option<Plan>, Error> {
        let _ = job;
        Ok(None)
    }

    /// With `referrers`: for an image that is up to date, copies what
    /// refers to it that changed since `known` (fingerprints by subject,
    /// from the last run; the image's `source_digest` alone when none).
    fn refresh_referrers<'a>(
        &self,
        job: &Job<'a>,
        steps: Arc<dyn Steps + 'a>,
        source_digest: &str,
        known: &BTreeMap<String, String>,
    ) -> Result<Moved, Failed> {
        let _ = (job, steps, source_digest, known);
        Ok(Moved::default())
    }
}

/// Where `mirror` finds the engine a registry chooses.
pub trait EngineSet: Sync {
    /// The engine `choice` names.
    fn get(&self, choice: Choice) -> &dyn Engine;

    /// The first engine that can read and write layouts (`export`, `load
    /// --from`), whatever a registry chose.
    fn for_layouts(&self) -> Option<&dyn Engine> {
        Choice::ALL
            .into_iter()
            .map(|c| self.get(c))
            .find(|e| e.capabilities().layouts)
    }
}

/// Every engine, made once per process.
pub struct Engines {
    docker: tool::ToolEngine,
    native: native::Native,
    podman: tool::ToolEngine,
}

impl Engines {
    /// The engines, whose children honour `cancel`.
    pub fn new(cancel: Arc<Cancel>) -> Engines {
        let cli = |program, flavor| {
            tool::ToolEngine::new(tool::Tool::new(program, flavor, Arc::clone(&cancel)))
        };
        Engines {
            docker: cli("docker", tool::Flavor::Docker),
            native: native::Native,
            podman: cli("podman", tool::Flavor::Podman),
        }
    }
}

impl EngineSet for Engines {
    fn get(&self, choice: Choice) -> &dyn Engine {
        match choice {
            Choice::Docker => &self.docker,
            Choice::Native => &self.native,
            Choice::Podman => &self.podman,
        }
    }
}

/// A count of transfers that may be in flight at once, shared by a run's
/// images and their blobs.
pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A slot taken, given back when dropped.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    /// `n` slots.
    pub fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a slot.
    pub fn take(&self) -> Slot<'_> {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = wait(&self.freed, free);
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

/// What a run learns that its images' moves share: the blobs known to be
/// in a repository of the target (for mounts; filled from the state file
/// and as blobs arrive), those that arrived in this run and those on their
/// way, the uploads the repository check opened and kept, which source
/// registries have the referrers API, and the tags of source repositories
/// (for cosign's).
#[derive(Default)]
pub struct RunMemory {
    blobs: Mutex<std::collections::HashMap<String, String>>,
    /// (digest, repository) of the blobs that arrived in this run.
    arrived: Mutex<std::collections::HashSet<(String, String)>>,
    /// Blobs on their way to the target, by digest.
    sending: InFlight<String>,
    /// Uploads opened and not used yet, by repository path.
    uploads: Mutex<std::collections::HashMap<String, (Repository, Upload)>>,
    referrers_api: Mutex<std::collections::HashMap<String, bool>>,
    tags: Mutex<std::collections::HashMap<String, Tags>>,
}

/// The tags of a repository, or why they could not be read.
pub type Tags = Arc<Result<Vec<String>, String>>;

impl RunMemory {
    /// A memory that knows these (digest, repository) pairs of blobs.
    pub fn new(blobs: impl IntoIterator<Item = (String, String)>) -> RunMemory {
        RunMemory {
            blobs: Mutex::new(blobs.into_iter().collect()),
            ..RunMemory::default()
        }
    }

    /// A repository other than `not` known to hold blob `digest`.
    pub fn blob_elsewhere(&self, digest: &str, not: &str) -> Option<String> {
        lock(&self.blobs).get(digest).filter(|r| *r != not).cloned()
    }

    /// Notes that `repository` holds blob `digest`, as this run found.
    pub fn note_blob(&self, digest: &str, repository: &str) {
        lock(&self.blobs).insert(digest.to_string(), repository.to_string());
        lock(&self.arrived).insert((digest.to_string(), repository.to_string()));
    }

    /// Whether this run found blob `digest` in `repository` (sent, mounted
    /// or there already): nothing more to ask.
    pub fn arrived(&self, digest: &str, repository: &str) -> bool {
        lock(&self.arrived).contains(&(digest.to_string(), repository.to_string()))
    }

    /// The lead of sending blob `digest` to `repository` of the target;
    /// None once this run found it there (at once, or after waiting for
    /// the move that was sending it).
    pub fn sending(&self, digest: &str, repository: &str) -> Option<Lead<'_, String>> {
        let here = || self.arrived(digest, repository);
        self.sending.lead_unless(&digest.to_string(), here)
    }

    /// Keeps `upload`, opened in `repo`, for the first blob sent there.
    pub fn keep_upload(&self, repo: &Repository, upload: Upload) {
        lock(&self.uploads).insert(repo.path.clone(), (repo.clone(), upload));
    }

    /// The upload kept for `repository`, taken.
    pub fn kept_upload(&self, repository: &str) -> Option<Upload> {
        lock(&self.uploads).remove(repository).map(|(_, u)| u)
    }

    /// The uploads kept and never used, taken (to cancel at the run's end).
    pub fn unused_uploads(&self) -> Vec<(Repository, Upload)> {
        lock(&self.uploads).drain().map(|(_, kept)| kept).collect()
    }

    /// Every (digest, repository) pair of blobs known.
    pub fn blobs(&self) -> Vec<(String, String)> {
        lock(&self.blobs)
            .iter()
            .map(|(d, r)| (d.clone(), r.clone()))
            .collect()
    }

    /// Whether `host` has the referrers API, when a move found out.
    pub fn referrers_api(&self, host: &str) -> Option<bool> {
        lock(&self.referrers_api).get(host).copied()
    }

    /// Notes whether `host` has the referrers API.
    pub fn set_referrers_api(&self, host: &str, has: bool) {
        lock(&self.referrers_api).insert(host.to_string(), has);
    }

    /// The tags of `repository` (`host/path`), read with `read` once a run.
    pub fn tags(
        &self,
        repository: &str,
        read: impl FnOnce() -> Result<Vec<String>, String>,
    ) -> Tags {
        if let Some(known) = lock(&self.tags).get(repository) {
            return Arc::clone(known);
        }
        let read = Arc::new(read());
        lock(&self.tags)
            .entry(repository.to_string())
            .or_insert(read)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_bound_what_is_in_flight() {
        let slots = Slots::new(2);
        let in_flight = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let _slot = slots.take();
                    let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.into_inner(), 2);
    }

    #[test]
    fn a_run_remembers_where_blobs_arrived_and_hands_a_kept_upload_out_once() {
        let memory = RunMemory::new([("sha256:old".to_string(), "m/a".to_string())]);
        assert!(
            !memory.arrived("sha256:old", "m/a"),
            "an earlier run's word is not this run's"
        );
        memory.note_blob("sha256:b", "m/a");
        assert!(memory.arrived("sha256:b", "m/a"));
        assert!(
            !memory.arrived("sha256:b", "m/c"),
            "another repository still asks"
        );
        assert_eq!(
            memory.blob_elsewhere("sha256:b", "m/c").as_deref(),
            Some("m/a")
        );
        let repo = Repository::target("r.example.com/m/a", false);
        let upload = |n: &str| Upload {
            location: format!("https://r.example.com/v2/m/a/blobs/uploads/{n}"),
            min_chunk: None,
        };
        memory.keep_upload(&repo, upload("1"));
        assert_eq!(memory.kept_upload("m/c"), None);
        assert_eq!(memory.kept_upload("m/a"), Some(upload("1")));
        assert_eq!(memory.kept_upload("m/a"), None, "taken once");
        memory.keep_upload(&repo, upload("2"));
        let unused = memory.unused_uploads();
        assert_eq!(unused, [(repo, upload("2"))]);
        assert!(memory.unused_uploads().is_empty());
    }

    #[test]
    fn a_blob_on_its_way_is_waited_for_by_the_other_moves() {
        let memory = RunMemory::default();
        let sent = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for repo in ["m/a", "m/b", "m/c"] {
                let (memory, sent) = (&memory, &sent);
                s.spawn(move || {
                    let Some(_turn) = memory.sending("sha256:x", repo) else {
                        assert!(memory.blob_elsewhere("sha256:x", repo).is_some());
                        return;
                    };
                    if memory.blob_elsewhere("sha256:x", repo).is_none() {
                        std::thread::sleep(std::time::Duration::from_millis(30));
                        sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    memory.note_blob("sha256:x", repo);
                });
            }
        });
        assert_eq!(sent.into_inner(), 1, "sent once; the others find it there");
    }

    #[test]
    fn engines_say_what_they_can_do_and_layouts_go_to_the_one_that_can() {
        let engines = Engines::new(Arc::new(Cancel::default()));
        for choice in Choice::ALL {
            assert_eq!(engines.get(choice).capabilities().name, choice.name());
        }
        let layouts = engines.for_layouts().map(|e| e.capabilities());
        assert_eq!(layouts.map(|c| c.name), Some("native"));
        assert_eq!(layouts.map(|c| c.naming), Some(Naming::PinnedTag));
        assert!(!engines.get(Choice::Docker).capabilities().layouts);
    }

    #[test]
    fn naming_differs_only_for_an_image_listed_by_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = Reference::parse(&format!("docker.io/library/alpine@{digest}")).unwrap();
        let tagged = Reference::parse("docker.io/library/alpine:3").unwrap();
        let name = |naming: Naming, r: &Reference| naming.target(r, "reg.example", "m");
        assert_eq!(
            name(Naming::DigestTag, &tagged),
            name(Naming::PinnedTag, &tagged)
        );
        assert!(
            name(Naming::PinnedTag, &pinned)
                .ends_with(&format!(":pinned-sha256-{}", "a".repeat(64)))
        );
        assert!(name(Naming::DigestTag, &pinned).ends_with(&format!(":sha256-{}", "a".repeat(64))));
    }

    #[test]
    fn choices_are_named_as_the_configuration_spells_them() {
        assert_eq!(Choice::parse("native"), Some(Choice::Native));
        assert_eq!(Choice::parse("docker"), Some(Choice::Docker));
        assert_eq!(Choice::parse("Docker"), None);
    }
}
