//! What was mirrored, remembered between runs: one small JSON file per
//! target registry under the state directory, recording for each target the
//! source digest it was mirrored from and the digest the target received.
//! Writes are atomic (temporary file, fsync, rename) and merge this
//! process's records into what the file holds then, so that no record of
//! another writer is lost; a file that cannot be read is logged and treated
//! as empty, never fatal, and a directory that cannot be written is told
//! once. Deciding what the records mean is `freshness`'s business, and
//! `prune`'s, which forgets the records of the tags it removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engine::Copied;
use crate::error::Error;
use crate::flock::{dir_problem, file_stem, usable_dir};
use crate::mutex::lock;
use crate::registry::Challenge;

/// The state directory of a root process.
pub const ROOT_STATE_DIR: &str = "/var/lib/picture-book";
/// The version of the file format written.
const FORMAT: u32 = 1;

/// The state directory when none is configured: `$STATE_DIRECTORY` (set by
/// systemd's `StateDirectory=`), else `/var/lib/picture-book` for root, else
/// `$XDG_STATE_HOME/picture-book` (default `~/.local/state`).
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        return PathBuf::from(first);
    }
    if is_root() {
        return PathBuf::from(ROOT_STATE_DIR);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from(".local/state"));
    base.join("picture-book")
}

/// Removes temporary files that a writer of `name` left when it died.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.json.");
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let pid = file
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"));
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[allow(unsafe_code)]
fn is_root() -> bool {
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// What is known about one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The source it was mirrored from, spelt canonically.
    pub source: String,
    /// The source's manifest digest at the time.
    pub source_digest: String,
    /// The manifest digest the target received.
    pub target_digest: String,
    /// When this was recorded (RFC 3339).
    pub recorded: String,
    /// With `referrers`: a fingerprint of what referred to each subject (the
    /// image, the children of an index) when it was last looked at.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub referrers: BTreeMap<String, String>,
    /// With `referrers`: what picture-book copied to the target as
    /// referring to each subject, so that pruning the image takes exactly
    /// that with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub referrers_copied: BTreeMap<String, Copied>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    version: u32,
    registry: String,
    images: BTreeMap<String, Record>,
    /// How each registry host asked to be authenticated.
    #[serde(default)]
    challenges: BTreeMap<String, Challenge>,
    /// Registry hosts that answered without asking for credentials: their
    /// first request need not go alone to learn a challenge.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    open: BTreeSet<String>,
    /// Blobs known to be in a repository of the target, by digest: what the
    /// native engine mounts from. Losing them costs only copies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    blobs: BTreeMap<String, String>,
}

/// The most blobs a state file remembers for mounts.
const MAX_BLOBS: usize = 50_000;

/// How often state is written while a run goes on (it is always written at
/// the end).
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Reads a state file; a missing one is empty, one that cannot be read or
/// parsed is empty with the reason.
fn read(path: &Path) -> (Document, Option<String>) {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Document::default(), None),
        Err(e) => {
            return (
                Document::default(),
                Some(format!("cannot read state ({e})")),
            );
        }
    };
    match serde_json::from_str::<Document>(&text) {
        Ok(doc) if doc.version == FORMAT => (doc, None),
        Ok(doc) => (
            Document::default(),
            Some(format!("unknown state format {}", doc.version)),
        ),
        Err(e) => (Document::default(), Some(format!("unreadable state ({e})"))),
    }
}

/// The state of one target registry, shared by a run's threads.
pub struct StateFile {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Serializes writers.
    written: Mutex<Written>,
}

struct Inner {
    doc: Document,
    generation: u64,
    /// The targets this process recorded: what a write merges into the file.
    changed: BTreeSet<String>,
}

#[derive(Default)]
struct Written {
    /// The generation last written.
    generation: u64,
    /// When.
    at: Option<Instant>,
    /// Why the state cannot be written, once that is known: nothing more is
    /// tried, and the reason is told once.
    problem: Option<String>,
}

impl StateFile {
    /// Loads the state of `hostname` from `dir`. A missing file is empty; one
    /// that cannot be read or parsed is logged and treated as empty. A
    /// directory that cannot hold it gives a state that writes nothing and
    /// says why in [`StateFile::problem`].
    pub fn load(dir: &Path, hostname: &str) -> StateFile {
        let name = file_stem(hostname);
        let path = dir.join(format!("{name}.json"));
        let problem = dir_problem(dir);
        let doc = if problem.is_some() {
            Document::default()
        } else {
            let (doc, unreadable) = read(&path);
            if let Some(why) = unreadable {
                log::warn!(
                    "{}: {why}; starting afresh, images are checked against the registries",
                    path.display()
                );
            }
            remove_stale_temporaries(dir, &name);
            doc
        };
        let doc = Document {
            version: FORMAT,
            registry: hostname.to_string(),
            images: doc.images,
            challenges: doc.challenges,
            open: doc.open,
            blobs: doc.blobs,
        };
        StateFile {
            path,
            inner: Mutex::new(Inner {
                doc,
                generation: 0,
                changed: BTreeSet::new(),
            }),
            written: Mutex::new(Written {
                problem: problem.map(|p| format!("the state directory {p}")),
                ..Written::default()
            }),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why this state cannot be written, if it cannot.
    pub fn problem(&self) -> Option<String> {
        lock(&self.written).problem.clone()
    }

    /// The record of `target`.
    pub fn get(&self, target: &str) -> Option<Record> {
        self.lock().doc.images.get(target).cloned()
    }

    /// Records `target`.
    pub fn set(&self, target: &str, record: Record) {
        let mut inner = self.lock();
        if inner.doc.images.get(target) != Some(&record) {
            inner.doc.images.insert(target.to_string(), record);
            inner.changed.insert(target.to_string());
            inner.generation += 1;
        }
    }

    /// Every record, by target.
    pub fn records(&self) -> BTreeMap<String, Record> {
        self.lock().doc.images.clone()
    }

    /// Forgets `target` (pruned, or gone from the registry): the next write
    /// removes it from the file too.
    pub fn forget(&self, target: &str) {
        let mut inner = self.lock();
        if inner.doc.images.remove(target).is_some() {
            inner.changed.insert(target.to_string());
            inner.generation += 1;
        }
    }

    /// The authentication challenges remembered, by host.
    pub fn challenges(&self) -> Vec<(String, Challenge)> {
        self.lock()
            .doc
            .challenges
            .iter()
            .map(|(h, c)| (h.clone(), c.clone()))
            .collect()
    }

    /// Remembers authentication challenges.
    pub fn set_challenges(&self, challenges: Vec<(String, Challenge)>) {
        let mut inner = self.lock();
        for (host, challenge) in challenges {
            if inner.doc.challenges.get(&host) != Some(&challenge) {
                inner.doc.challenges.insert(host, challenge);
                inner.generation += 1;
            }
        }
    }

    /// The hosts remembered to answer without asking for credentials.
    pub fn open_hosts(&self) -> Vec<String> {
        self.lock().doc.open.iter().cloned().collect()
    }

    /// Remembers hosts that answered without asking for credentials.
    pub fn set_open_hosts(&self, hosts: Vec<String>) {
        let mut inner = self.lock();
        for host in hosts {
            if inner.doc.open.insert(host) {
                inner.generation += 1;
            }
        }
    }

    /// The blobs known to be in repositories of the target, by digest.
    pub fn blobs(&self) -> Vec<(String, String)> {
        self.lock()
            .doc
            .blobs
            .iter()
            .map(|(d, r)| (d.clone(), r.clone()))
            .collect()
    }

    /// Remembers where blobs are, up to [`MAX_BLOBS`] of them.
    pub fn set_blobs(&self, blobs: Vec<(String, String)>) {
        let mut inner = self.lock();
        for (digest, repository) in blobs {
            let full = inner.doc.blobs.len() >= MAX_BLOBS && !inner.doc.blobs.contains_key(&digest);
            if !full && inner.doc.blobs.get(&digest) != Some(&repository) {
                inner.doc.blobs.insert(digest, repository);
                inner.generation += 1;
            }
        }
    }

    /// Writes the state if it changed since it was last written, merged
    /// into what the file holds now: to a temporary file, fsynced, renamed
    /// over the old one. Once a write failed, nothing more is tried and the
    /// error is not repeated.
    pub fn save(&self) -> Result<(), Error> {
        self.write_if(|_| true)
    }

    /// As [`StateFile::save`], but at most every few seconds, for use while
    /// a run goes on.
    pub fn save_now_and_then(&self) -> Result<(), Error> {
        self.write_if(|last| last.is_none_or(|t| t.elapsed() >= SAVE_EVERY))
    }

    fn write_if(&self, due: impl Fn(Option<Instant>) -> bool) -> Result<(), Error> {
        let mut written = lock(&self.written);
        if written.problem.is_some() || !due(written.at) {
            return Ok(());
        }
        let (generation, mine, changed) = {
            let inner = self.lock();
            if inner.generation == written.generation {
                return Ok(());
            }
            let mine = Document {
                version: FORMAT,
                registry: inner.doc.registry.clone(),
                images: inner.doc.images.clone(),
                challenges: inner.doc.challenges.clone(),
                open: inner.doc.open.clone(),
                blobs: inner.doc.blobs.clone(),
            };
            (inner.generation, mine, inner.changed.clone())
        };
        let merged = merge(read(&self.path).0, mine, &changed);
        let text = serde_json::to_string_pretty(&merged).unwrap_or_default();
        if let Err(problem) = self.write_atomically(text.as_bytes()) {
            written.problem = Some(problem.clone());
            return Err(Error::State {
                path: self.path.clone(),
                problem,
            });
        }
        written.generation = generation;
        written.at = Some(Instant::now());
        Ok(())
    }

    fn write_atomically(&self, bytes: &[u8]) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        usable_dir(dir).map_err(|p| format!("the state directory {p}"))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let result = fs::File::create(&tmp).and_then(|mut file| {
            file.write_all(bytes)
                .and_then(|_| file.sync_all())
                .and_then(|_| fs::rename(&tmp, &self.path))
        });
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(format!("cannot write {}: {e}", self.path.display()));
        }
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

/// What the file holds now (`disk`), with this process's records of the
/// `changed` targets (or their absence, when it forgot them) and its
/// challenges laid over it.
fn merge(disk: Document, mine: Document, changed: &BTreeSet<String>) -> Document {
    let mut images = disk.images;
    for target in changed {
        match mine.images.get(target) {
            Some(record) => images.insert(target.clone(), record.clone()),
            None => images.remove(target),
        };
    }
    let mut challenges = disk.challenges;
    challenges.extend(mine.challenges);
    let mut open = disk.open;
    open.extend(mine.open);
    let mut blobs = disk.blobs;
    for (digest, repository) in mine.blobs {
        if blobs.len() < MAX_BLOBS || blobs.contains_key(&digest) {
            blobs.insert(digest, repository);
        }
    }
    Document {
        version: FORMAT,
        registry: mine.registry,
        images,
        challenges,
        open,
        blobs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pb-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn record(n: u8) -> Record {
        Record {
            source: format!("src/{n}"),
            source_digest: format!("sha256:{n}"),
            target_digest: format!("sha256:t{n}"),
            recorded: "2026-01-01T00:00:00+00:00".into(),
            referrers: BTreeMap::new(),
            referrers_copied: BTreeMap::new(),
        }
    }

    #[test]
    fn round_trip_and_one_file_per_registry() {
        let d = dir("roundtrip");
        let s = StateFile::load(&d, "127.0.0.1:5000");
        assert_eq!(s.path(), d.join("127.0.0.1_5000.json"));
        assert_eq!(s.get("t/a:1"), None);
        s.set("t/a:1", record(1));
        s.save().unwrap();
        let again = StateFile::load(&d, "127.0.0.1:5000");
        assert_eq!(again.get("t/a:1"), Some(record(1)));
        assert_eq!(StateFile::load(&d, "other.example.com").get("t/a:1"), None);
        let leftovers: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "no temporary file is left: {leftovers:?}"
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_survived_and_replaced() {
        let d = dir("corrupt");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("r.example.com.json"),
            "{\"version\": 1, \"images\": {\"x\": tru",
        )
        .unwrap();
        let s = StateFile::load(&d, "r.example.com");
        assert_eq!(s.get("x"), None);
        s.set("y", record(2));
        s.save().unwrap();
        assert_eq!(
            StateFile::load(&d, "r.example.com").get("y"),
            Some(record(2))
        );
        fs::write(d.join("r.example.com.json"), "[]").unwrap();
        assert_eq!(StateFile::load(&d, "r.example.com").get("y"), None);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn unchanged_state_is_not_rewritten() {
        let d = dir("unchanged");
        let s = StateFile::load(&d, "r.example.com");
        s.save().unwrap();
        assert!(!d.exists(), "nothing to write, nothing written");
        s.set("a", record(1));
        s.save().unwrap();
        let modified = fs::metadata(s.path()).unwrap().modified().unwrap();
        s.set("a", record(1));
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.save().unwrap();
        assert_eq!(
            fs::metadata(s.path()).unwrap().modified().unwrap(),
            modified
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_the_file() {
        let s = StateFile::load(Path::new("/proc/picture-book-test"), "r.example.com");
        s.set("a", record(1));
        let err = s.save().unwrap_err().to_string();
        assert!(
            err.contains("/proc/picture-book-test/r.example.com.json"),
            "{err}"
        );
    }

    #[test]
    fn challenges_and_open_hosts_are_kept_and_leftovers_of_dead_writers_removed() {
        let d = dir("challenges");
        fs::create_dir_all(&d).unwrap();
        let leftover = d.join(".r.example.com.json.3999999999.tmp");
        fs::write(&leftover, "{").unwrap();
        let s = StateFile::load(&d, "r.example.com");
        assert!(
            !leftover.exists(),
            "a dead writer's temporary file is removed"
        );
        s.set_challenges(vec![("reg.io".into(), Challenge::Basic)]);
        s.set_open_hosts(vec!["open.io".into()]);
        s.save().unwrap();
        let again = StateFile::load(&d, "r.example.com");
        assert_eq!(
            again.challenges(),
            [("reg.io".to_string(), Challenge::Basic)]
        );
        assert_eq!(again.open_hosts(), ["open.io"]);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn two_writers_of_one_file_lose_no_record() {
        let d = dir("merge");
        let first = StateFile::load(&d, "r.example.com");
        let second = StateFile::load(&d, "r.example.com");
        first.set("a", record(1));
        second.set("b", record(2));
        first.save().unwrap();
        second.save().unwrap();
        let both = StateFile::load(&d, "r.example.com");
        assert_eq!(
            both.get("a"),
            Some(record(1)),
            "the first writer's record is kept"
        );
        assert_eq!(both.get("b"), Some(record(2)));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_forgotten_record_leaves_the_file_and_others_stay() {
        let d = dir("forget");
        let first = StateFile::load(&d, "r.example.com");
        first.set("a", record(1));
        first.set("b", record(2));
        first.save().unwrap();
        let second = StateFile::load(&d, "r.example.com");
        second.set("c", record(3));
        second.save().unwrap();
        first.forget("a");
        first.forget("never");
        first.save().unwrap();
        let now = StateFile::load(&d, "r.example.com");
        assert_eq!(now.get("a"), None, "forgotten");
        assert_eq!(now.get("b"), Some(record(2)));
        assert_eq!(
            now.get("c"),
            Some(record(3)),
            "another writer's record stays"
        );
        assert_eq!(now.records().len(), 2);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_directory_that_is_a_file_is_said_once_and_not_tried_again() {
        let d = dir("file");
        fs::write(&d, "").unwrap();
        let s = StateFile::load(&d, "r.example.com");
        let problem = s.problem().unwrap();
        assert_eq!(
            problem,
            format!("the state directory {} is not a directory", d.display())
        );
        s.set("a", record(1));
        assert!(s.save().is_ok(), "the problem is told once, by problem()");
        fs::remove_file(d).unwrap();
    }

    #[test]
    fn a_symlink_to_nothing_is_named_with_its_target() {
        let d = dir("dangling");
        fs::create_dir_all(&d).unwrap();
        let link = d.join("state");
        std::os::unix::fs::symlink("/mnt/picture-book-not-mounted/state", &link).unwrap();
        let want = format!(
            "{} is a symlink to /mnt/picture-book-not-mounted/state, which does not exist",
            link.display()
        );
        assert_eq!(dir_problem(&link), Some(want.clone()));
        assert_eq!(usable_dir(&link), Err(want.clone()), "nothing is created");
        assert_eq!(
            dir_problem(&link.join("inner")),
            Some(format!(
                "{} cannot be created: {want}",
                link.join("inner").display()
            ))
        );
        fs::create_dir(d.join("real")).unwrap();
        let good = d.join("good");
        std::os::unix::fs::symlink(d.join("real"), &good).unwrap();
        assert_eq!(dir_problem(&good), None, "a symlink to a directory is fine");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn saving_now_and_then_waits_between_writes() {
        let d = dir("throttle");
        let s = StateFile::load(&d, "r.example.com");
        s.set("a", record(1));
        s.save_now_and_then().unwrap();
        s.set("b", record(2));
        s.save_now_and_then().unwrap();
        assert_eq!(
            StateFile::load(&d, "r.example.com").get("b"),
            None,
            "the second write waits"
        );
        s.save().unwrap();
        assert_eq!(
            StateFile::load(&d, "r.example.com").get("b"),
            Some(record(2))
        );
        fs::remove_dir_all(d).unwrap();
    }
}
