//! Writing a layout for `export`: blobs as they come, each under a
//! temporary name renamed when whole (in a directory) or as a member cut back
//! out when it fails (in an archive); `index.json` at the end, atomically, so
//! that a failed export leaves the previous one whole, each Docker manifest
//! in it named twice (see [`super::oci_alias`]). A directory is locked
//! for the export's length, so that two exports into it take turns rather
//! than lose each other's entries.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

use super::{
    ANNOUNCED, REF_NAME, REFERRER_OF, REGISTRY, Reader, SOURCE, blob_name, copy_exact, oci_alias,
    tar,
};
use crate::digest;
use crate::error::Error;
use crate::flock::{self as runlock, Refused, RunLock};
use crate::mutex::lock;
use crate::registry::Manifest;

/// Where a writer puts what it writes.
enum Out {
    Dir(PathBuf),
    Tar {
        /// The archive's final name.
        path: PathBuf,
        /// The temporary name it is written to.
        tmp: PathBuf,
        file: File,
        written: HashSet<String>,
        /// A member left incomplete, which loses the archive.
        broken: Option<String>,
    },
}

/// Which entries of the `index.json` an export replaces stay in it, unless
/// the export wrote the same image again: those of registries whose run did
/// not go through its listing, those of images that failed this time (so
/// that nothing exported earlier is lost), and those another tool wrote
/// under a name this export did not write.
#[derive(Debug, Default)]
pub struct Keep {
    /// The registries whose run went through the whole of its listing.
    pub ran: HashSet<String>,
    /// The images that failed, by registry and source as listed.
    pub failed: HashSet<(String, String)>,
}

/// A layout being written: blobs as they come, `index.json` at the end.
pub struct Writer {
    out: Mutex<Out>,
    entries: Mutex<Vec<Value>>,
    /// The entries of the `index.json` already there, by source.
    previous: Vec<Value>,
    /// Bytes written.
    bytes: Mutex<u64>,
    /// Taken by each blob written into an archive (see [`Writer::turn`]).
    turn: Mutex<()>,
    /// A directory's lock, held until the writer is dropped.
    _lock: Option<RunLock>,
}

impl Writer {
    /// A writer into the directory `dir` (made when missing; what it holds
    /// already is kept and reused). Fails when another picture-book exports
    /// into it, and when it has an `index.json` that cannot be read (which
    /// would otherwise be replaced, losing what it listed).
    pub fn dir(dir: &Path) -> Result<Writer, Error> {
        let fail = |detail: String| Error::Layout {
            path: dir.to_path_buf(),
            detail,
        };
        fs::create_dir_all(dir).map_err(|e| fail(format!("cannot make it: {e}")))?;
        // A moment's wait: a child just forked may hold the lock of a writer
        // this process dropped until it runs its program.
        let wait = std::time::Duration::from_secs(3);
        let held = match runlock::lock(dir, "picture-book", wait, &mut |_| {}, &|| false) {
            Ok(held) => held,
            Err(Refused::Held(holder)) => {
                return Err(fail(format!(
                    "another picture-book exports into it: {holder}"
                )));
            }
            Err(Refused::Unusable(why)) => return Err(fail(why)),
        };
        let previous = if dir.join("index.json").exists() {
            let earlier = Reader::open(dir).map_err(|e| {
                fail(format!(
                    "its index.json cannot be read, and an export would replace it: {e}"
                ))
            })?;
            earlier
                .entries
                .iter()
                .map(|e| e.descriptor.clone())
                .collect()
        } else {
            Vec::new()
        };
        fs::create_dir_all(dir.join("blobs/sha256"))
            .map_err(|e| fail(format!("cannot write it: {e}")))?;
        Ok(Writer {
            out: Mutex::new(Out::Dir(dir.to_path_buf())),
            entries: Mutex::new(Vec::new()),
            previous,
            bytes: Mutex::new(0),
            turn: Mutex::new(()),
            _lock: Some(held),
        })
    }

    /// A writer that writes nothing, for a dry run: what `dir` holds
    /// already is there, anything else is missing.
    pub fn planning(dir: &Path) -> Writer {
        Writer {
            out: Mutex::new(Out::Dir(dir.to_path_buf())),
            entries: Mutex::new(Vec::new()),
            previous: Vec::new(),
            bytes: Mutex::new(0),
            turn: Mutex::new(()),
            _lock: None,
        }
    }

    /// A writer of the tar archive `path`, written under a temporary name
    /// next to it and renamed when complete.
    pub fn archive(path: &Path) -> Result<Writer, Error> {
        if path.is_dir() {
            return Err(Error::Layout {
                path: path.to_path_buf(),
                detail: "is a directory: give the archive's file name (or export into the directory without --archive)".into(),
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::Layout {
                path: path.to_path_buf(),
                detail: format!("cannot write {}: {e}", tmp.display()),
            })?;
        let writer = Writer {
            out: Mutex::new(Out::Tar {
                path: path.to_path_buf(),
                tmp,
                file,
                written: HashSet::new(),
                broken: None,
            }),
            entries: Mutex::new(Vec::new()),
            previous: Vec::new(),
            bytes: Mutex::new(0),
            turn: Mutex::new(()),
            _lock: None,
        };
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        writer.write("oci-layout", layout.len() as u64, &mut &layout[..])?;
        Ok(writer)
    }

    /// Whether blob `digest` (of `size` bytes) is in the layout already.
    pub fn has(&self, digest: &str, size: u64) -> bool {
        let Ok(name) = blob_name(digest) else {
            return false;
        };
        match &*lock(&self.out) {
            Out::Dir(dir) => fs::metadata(dir.join(&name)).is_ok_and(|m| m.len() == size),
            Out::Tar { written, .. } => written.contains(&name),
        }
    }

    /// Whether the manifest `digest` is in the layout already.
    pub fn has_manifest(&self, digest: &str) -> bool {
        let Ok(name) = blob_name(digest) else {
            return false;
        };
        match &*lock(&self.out) {
            Out::Dir(dir) => dir.join(&name).exists(),
            Out::Tar { written, .. } => written.contains(&name),
        }
    }

    /// Writes blob `digest` from `data` (`size` bytes, which the caller
    /// checks against the digest as they are read: a read error leaves no
    /// trace of the blob in a directory).
    pub fn put_blob(&self, digest: &str, size: u64, data: &mut dyn Read) -> Result<(), Error> {
        if self.write(&blob_name(digest)?, size, data)? {
            *lock(&self.bytes) += size;
        }
        Ok(())
    }

    /// Writes a manifest as a blob.
    pub fn put_manifest(&self, manifest: &Manifest) -> Result<(), Error> {
        let size = manifest.bytes.len() as u64;
        if self.has(&manifest.digest, size) {
            return Ok(());
        }
        self.put_blob(&manifest.digest, size, &mut &manifest.bytes[..])
    }

    /// Lists `descriptor` (see [`descriptor`]) in `index.json`, once.
    pub fn add_entry(&self, descriptor: Value) {
        let mut entries = lock(&self.entries);
        if !entries.contains(&descriptor) {
            entries.push(descriptor);
        }
    }

    /// Writes `descriptor` into an archive at once, as a member of its own,
    /// for a reader of an archive cut short before its `index.json` (see
    /// [`Reader::open`]); nothing for a directory, whose `index.json` is
    /// replaced whole or not at all.
    pub fn announce(&self, descriptor: &Value) -> Result<(), Error> {
        if matches!(&*lock(&self.out), Out::Dir(_)) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(descriptor).unwrap_or_default();
        let hex = digest::sha256(&bytes).replacen("sha256:", "", 1);
        let name = format!("{ANNOUNCED}{hex}.json");
        self.write(&name, bytes.len() as u64, &mut &bytes[..])
            .map(|_| ())
    }

    /// One blob written into an archive at a time, its source opened only
    /// when its turn comes (a stream opened too early can time out); no
    /// wait for a directory.
    pub fn turn(&self) -> Option<MutexGuard<'_, ()>> {
        let archive = matches!(&*lock(&self.out), Out::Tar { .. });
        archive.then(|| lock(&self.turn))
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        *lock(&self.bytes)
    }

    /// Finishes the layout: `index.json` with the entries added, and those
    /// of the `index.json` it replaces that `keep` says stay. Written
    /// atomically; a tar archive is closed and renamed into place.
    pub fn finish(&self, keep: &Keep) -> Result<(), Error> {
        let mut entries = lock(&self.entries).clone();
        let note = |e: &Value, k: &str| e["annotations"][k].as_str().map(String::from);
        let names: HashSet<String> = entries.iter().filter_map(|e| note(e, REF_NAME)).collect();
        let sources: HashSet<(Option<String>, Option<String>)> = entries
            .iter()
            .map(|e| (note(e, REGISTRY), note(e, SOURCE)))
            .collect();
        let mut subjects = HashSet::new();
        for old in self
            .previous
            .iter()
            .filter(|e| note(e, REFERRER_OF).is_none())
        {
            let (registry, source) = (note(old, REGISTRY), note(old, SOURCE));
            let replaced = sources.contains(&(registry.clone(), source.clone()));
            let stays = match (&registry, &source) {
                (Some(_), _) if replaced => false,
                (Some(r), Some(s)) => {
                    !keep.ran.contains(r) || keep.failed.contains(&(r.clone(), s.clone()))
                }
                (Some(r), None) => !keep.ran.contains(r),
                (None, _) => note(old, REF_NAME).is_none_or(|n| !names.contains(&n)),
            };
            if stays && !entries.contains(old) {
                entries.push(old.clone());
                subjects.extend(old["digest"].as_str().map(String::from));
            }
        }
        // What referred to what is kept, at any depth.
        let mut grew = true;
        while grew {
            grew = false;
            for old in &self.previous {
                let of = old["annotations"][REFERRER_OF].as_str().unwrap_or_default();
                if subjects.contains(of) && !entries.contains(old) {
                    entries.push(old.clone());
                    subjects.extend(old["digest"].as_str().map(String::from));
                    grew = true;
                }
            }
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": crate::registry::manifests::OCI_INDEX,
            "manifests": index_entries(entries),
        }))
        .unwrap_or_default();
        let mut out = lock(&self.out);
        match &mut *out {
            Out::Dir(dir) => {
                let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
                atomic_write(dir, "oci-layout", layout)?;
                atomic_write(dir, "index.json", &index)
            }
            Out::Tar { .. } => {
                drop(out);
                self.write("index.json", index.len() as u64, &mut &index[..])?;
                self.close_archive()
            }
        }
    }

    /// Closes a tar archive (two zero blocks, fsync) and renames it into place.
    fn close_archive(&self) -> Result<(), Error> {
        let mut out = lock(&self.out);
        let Out::Tar {
            path,
            tmp,
            file,
            broken,
            ..
        } = &mut *out
        else {
            return Ok(());
        };
        let fail = |e: io::Error| Error::Layout {
            path: path.clone(),
            detail: format!("cannot finish {}: {e}", tmp.display()),
        };
        if let Some(member) = broken {
            return Err(Error::Layout {
                path: path.clone(),
                detail: format!("{member} could not be written whole; the archive is not complete"),
            });
        }
        tar::end(file)
            .and_then(|_| file.sync_all())
            .and_then(|_| fs::rename(&*tmp, &*path))
            .and_then(|_| sync_dir_of(path))
            .map_err(fail)
    }

    /// Writes the file (or member) `name` of `size` bytes from `data`; false
    /// when an archive has it already (two images that share a blob).
    fn write(&self, name: &str, size: u64, data: &mut dyn Read) -> Result<bool, Error> {
        let mut out = lock(&self.out);
        match &mut *out {
            Out::Dir(dir) => {
                let dir = dir.clone();
                drop(out);
                write_file(&dir, name, size, data).map(|()| true)
            }
            Out::Tar {
                path,
                file,
                written,
                broken,
                ..
            } => {
                let fail = |e: io::Error| Error::Layout {
                    path: path.clone(),
                    detail: format!("writing {name}: {e}"),
                };
                if let Some(member) = broken {
                    return Err(Error::Layout {
                        path: path.clone(),
                        detail: format!("{member} could not be written whole before"),
                    });
                }
                if written.contains(name) {
                    return Ok(false);
                }
                match tar::append(file, name, size, data) {
                    Ok(()) => {
                        written.insert(name.to_string());
                        Ok(true)
                    }
                    Err((e, whole)) => {
                        if !whole {
                            *broken = Some(name.to_string());
                        }
                        Err(fail(e))
                    }
                }
            }
        }
    }

    /// Removes a tar archive's temporary file, when the export failed.
    pub fn abandon(&self) {
        if let Out::Tar { tmp, .. } = &*lock(&self.out) {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// The entries of `index.json` in an order that does not depend on which
/// image finished first: by target, and what refers to them after; each
/// Docker manifest named again under the OCI media type right after itself,
/// for readers that take only OCI types (see [`oci_alias`]).
fn index_entries(mut entries: Vec<Value>) -> Vec<Value> {
    entries.sort_by_key(|e| {
        let note = |k: &str| e["annotations"][k].as_str().unwrap_or_default().to_string();
        (
            !note(REFERRER_OF).is_empty(),
            note(REF_NAME),
            note(REFERRER_OF),
            e["digest"].as_str().unwrap_or_default().to_string(),
        )
    });
    entries
        .into_iter()
        .flat_map(|e| {
            let alias = oci_alias(&e);
            std::iter::once(e).chain(alias)
        })
        .collect()
}

/// Writes `dir/name` through a temporary file in the same directory, which
/// is removed when anything fails.
fn write_file(dir: &Path, name: &str, size: u64, data: &mut dyn Read) -> Result<(), Error> {
    let path = dir.join(name);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_file_name(format!(
        ".{}.{}-{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = File::create(&tmp).and_then(|mut f| {
        copy_exact(data, &mut f, size)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    });
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::Layout {
            path: dir.to_path_buf(),
            detail: format!("writing {name}: {e}"),
        }
    })
}

/// Replaces `dir/name` with `bytes` atomically, the rename itself synced.
fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    write_file(dir, name, bytes.len() as u64, &mut &bytes[..])?;
    sync_dir_of(&dir.join(name)).map_err(|e| Error::Layout {
        path: dir.to_path_buf(),
        detail: format!("syncing it after writing {name}: {e}"),
    })
}

/// Syncs the directory `path` is in, so that a rename into it is on the
/// disk (a medium pulled out right after the export).
fn sync_dir_of(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
