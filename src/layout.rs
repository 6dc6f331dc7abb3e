//! OCI image layouts, the medium of air-gapped transfers: `oci-layout`,
//! `index.json` and `blobs/sha256/<hex>`, in a directory or in one tar file.
//! Reading (`Reader`) gives the index's entries, manifests and blobs by
//! digest (checking each is the caller's business: the native engine checks
//! every blob as it reads it); writing (`Writer`) adds blobs that are not
//! there yet, through a temporary name, and replaces `index.json` at the
//! end, atomically, so that a failed export leaves the previous one whole.
//! A tar archive is written in one stream to a temporary name and renamed
//! when complete. What goes into the layout is the engines' business.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::error::Error;
use crate::mutex::lock;
use crate::registry::Manifest;

/// The annotation that names an entry (OCI): picture-book writes the
/// target reference it planned.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation with which picture-book records an entry's source.
pub const SOURCE: &str = "io.picture-book.source";
/// The annotation that marks an entry as a referrer of another manifest.
pub const REFERRER_OF: &str = "io.picture-book.referrer-of";
/// The annotation that names the tag a referrer has (cosign's).
pub const TAG: &str = "io.picture-book.tag";
/// The annotation that names the registry an image was exported for.
pub const REGISTRY: &str = "io.picture-book.registry";
/// Where an archive announces each entry as soon as it is known, so that an
/// archive cut short before its `index.json` can still be read.
const ANNOUNCED: &str = "picture-book/entry-";
/// The largest manifest (or `index.json`) read.
const MAX_MANIFEST: u64 = 4 << 20;

/// A reader of one file of a layout, and its length.
pub type Member = (Box<dyn Read + Send>, u64);

/// One entry of a layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The descriptor, as written.
    pub descriptor: Value,
    /// Its digest.
    pub digest: String,
    /// `org.opencontainers.image.ref.name`, if any.
    pub ref_name: Option<String>,
    /// picture-book's record of the source, if it wrote the layout.
    pub source: Option<String>,
    /// The registry picture-book exported it for, if it wrote the layout.
    pub registry: Option<String>,
    /// The manifest it refers to, for a referrer.
    pub referrer_of: Option<String>,
    /// The tag a referrer has (cosign's), if any.
    pub tag: Option<String>,
}

/// Where a layout's files are.
enum Files {
    Dir(PathBuf),
    /// A tar archive, with each member's offset and size.
    Tar {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
        /// Members whose data the file cuts short.
        cut: HashSet<String>,
    },
}

/// What a tar archive holds.
struct Members {
    /// Each member's offset and size, by name.
    found: HashMap<String, (u64, u64)>,
    /// Members whose data the file cuts short.
    cut: HashSet<String>,
    /// Whether the archive ends with its end-of-archive blocks.
    ended: bool,
}

/// A layout to read from.
pub struct Reader {
    files: Files,
    entries: Vec<Entry>,
    shown: String,
    warning: Option<String>,
}

impl Reader {
    /// Opens the layout at `path`: a directory, or a tar archive.
    pub fn open(path: &Path) -> Result<Reader, Error> {
        let shown = path.display().to_string();
        let fail = |detail: String| Error::Layout {
            path: path.to_path_buf(),
            detail,
        };
        let meta = fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let mut warning = None;
        let files = if meta.is_dir() {
            Files::Dir(path.to_path_buf())
        } else {
            let members = tar_members(path).map_err(|e| fail(format!("not a tar archive: {e}")))?;
            if !members.ended || !members.cut.is_empty() {
                warning = Some(format!(
                    "{shown} is cut short (truncated): the images whose blobs are in it whole are loaded, the others fail"
                ));
            }
            Files::Tar {
                path: path.to_path_buf(),
                members: members.found,
                cut: members.cut,
            }
        };
        let mut reader = Reader {
            files,
            entries: Vec::new(),
            shown,
            warning,
        };
        let descriptors = match reader.read_json("index.json", &fail) {
            Ok(Some(index)) => index["manifests"]
                .as_array()
                .ok_or_else(|| fail("index.json has no manifests".into()))?
                .clone(),
            Ok(None) => reader.announced(&fail)?,
            Err(e) => return Err(e),
        };
        reader.entries = descriptors
            .iter()
            .map(entry_of)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| fail("an entry of index.json has no digest".into()))?;
        Ok(reader)
    }

    /// The member `name` read as JSON; None when the layout does not have it.
    fn read_json(
        &self,
        name: &str,
        fail: &dyn Fn(String) -> Error,
    ) -> Result<Option<Value>, Error> {
        if self.is_cut(name) {
            return Ok(None);
        }
        let mut text = String::new();
        match self.open_member(name) {
            Ok((reader, _)) => reader.take(MAX_MANIFEST).read_to_string(&mut text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => Err(e),
        }
        .map_err(|e| fail(format!("cannot read {name}: {e}")))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| fail(format!("{name} is not JSON: {e}")))
    }

    /// For an archive cut short before its `index.json`: the entries its
    /// writer announced (see [`Writer::announce`]).
    fn announced(&self, fail: &dyn Fn(String) -> Error) -> Result<Vec<Value>, Error> {
        let missing = || fail("there is no index.json: it is not an OCI image layout".into());
        let Files::Tar { members, .. } = &self.files else {
            return Err(missing());
        };
        let mut names: Vec<(u64, &String)> = members
            .iter()
            .filter(|(name, _)| name.starts_with(ANNOUNCED))
            .map(|(name, (offset, _))| (*offset, name))
            .collect();
        if names.is_empty() {
            return Err(missing());
        }
        names.sort();
        let mut entries = Vec::new();
        for (_, name) in names {
            if let Some(d) = self.read_json(name, fail)? {
                if !entries.contains(&d) {
                    entries.push(d);
                }
            }
        }
        Ok(entries)
    }

    /// What is wrong with the layout as a whole that does not stop it from
    /// being read (an archive cut short).
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    fn is_cut(&self, name: &str) -> bool {
        matches!(&self.files, Files::Tar { cut, .. } if cut.contains(name))
    }

    /// The directory or archive, as given.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The entries of its `index.json`, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The manifest `digest`, its bytes checked against it; None when the
    /// layout does not hold it.
    pub fn manifest(&self, digest: &str) -> Result<Option<Manifest>, Error> {
        let Some((mut reader, _)) = self.blob_if_there(digest)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        reader
            .by_ref()
            .take(MAX_MANIFEST)
            .read_to_end(&mut bytes)
            .map_err(|e| self.fail(format!("reading {digest}: {e}")))?;
        let manifest = Manifest::new(bytes, "");
        if manifest.digest != digest {
            return Err(Error::Corrupt {
                detail: format!(
                    "manifest {digest} in {} does not match its digest (its bytes hash to {})",
                    self.shown, manifest.digest
                ),
            });
        }
        let media_type = self
            .entries
            .iter()
            .find(|e| e.digest == digest)
            .and_then(|e| e.descriptor["mediaType"].as_str().map(String::from))
            .or_else(|| {
                serde_json::from_slice::<Value>(&manifest.bytes)
                    .ok()
                    .and_then(|v| v["mediaType"].as_str().map(String::from))
            })
            .unwrap_or_else(|| crate::registry::manifests::OCI_MANIFEST.to_string());
        Ok(Some(Manifest {
            media_type,
            ..manifest
        }))
    }

    /// A reader of blob `digest` and its length; an error that names the
    /// blob when the layout does not hold it whole.
    pub fn blob(&self, digest: &str) -> Result<Member, Error> {
        self.blob_if_there(digest)?.ok_or_else(|| Error::Corrupt {
            detail: format!("blob {digest} is missing from {}", self.shown),
        })
    }

    fn blob_if_there(&self, digest: &str) -> Result<Option<Member>, Error> {
        let name = blob_name(digest)?;
        if self.is_cut(&name) {
            return Err(Error::Corrupt {
                detail: format!(
                    "blob {digest} is cut short in {} (the archive is truncated)",
                    self.shown
                ),
            });
        }
        match self.open_member(&name) {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail(format!("reading {name}: {e}"))),
        }
    }

    /// A member of the layout, as a reader of its bytes, and its length.
    fn open_member(&self, name: &str) -> io::Result<Member> {
        match &self.files {
            Files::Dir(dir) => {
                let file = File::open(dir.join(name))?;
                let len = file.metadata()?.len();
                Ok((Box::new(file), len))
            }
            Files::Tar { path, members, .. } => {
                let (offset, size) = *members
                    .get(name)
                    .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(offset))?;
                Ok((Box::new(file.take(size)), size))
            }
        }
    }

    fn fail(&self, detail: String) -> Error {
        Error::Layout {
            path: PathBuf::from(&self.shown),
            detail,
        }
    }
}

fn entry_of(d: &Value) -> Option<Entry> {
    let note = |k: &str| d["annotations"][k].as_str().map(String::from);
    Some(Entry {
        digest: d["digest"].as_str()?.to_string(),
        ref_name: note(REF_NAME),
        source: note(SOURCE),
        registry: note(REGISTRY),
        referrer_of: note(REFERRER_OF),
        tag: note(TAG),
        descriptor: d.clone(),
    })
}

/// The members of a tar archive (`name -> (offset, size)`), and those whose
/// data the file cuts short. Reading stops at the end-of-archive blocks or
/// at the end of the file.
fn tar_members(path: &Path) -> io::Result<Members> {
    let mut file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut members = HashMap::new();
    let mut cut = HashSet::new();
    let mut ended = false;
    let mut offset = 0u64;
    let mut header = [0u8; 512];
    while offset + 512 <= total {
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut header)?;
        if header.iter().all(|b| *b == 0) {
            ended = true;
            break;
        }
        if !checksum_ok(&header) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a damaged header at byte {offset}"),
            ));
        }
        let name = String::from_utf8_lossy(&header[..100])
            .trim_end_matches('\0')
            .trim_start_matches("./")
            .to_string();
        let size = octal(&header[124..136]);
        let data = offset + 512;
        if data + size > total {
            cut.insert(name.clone());
        }
        if header[156] == b'0' || header[156] == 0 {
            members.insert(name, (data, size));
        }
        offset = data + size.div_ceil(512) * 512;
    }
    if members.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no members"));
    }
    Ok(Members {
        found: members,
        cut,
        ended,
    })
}

fn octal(field: &[u8]) -> u64 {
    field
        .iter()
        .filter(|b| (b'0'..=b'7').contains(*b))
        .fold(0, |n, b| n * 8 + u64::from(b - b'0'))
}

fn checksum_ok(header: &[u8; 512]) -> bool {
    let stored = octal(&header[148..156]);
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    stored == sum
}

/// A ustar header for a regular file `name` of `size` bytes.
fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let field = |h: &mut [u8; 512], at: usize, len: usize, value: u64| {
        let text = format!("{value:0width$o}\0", width = len - 1);
        h[at..at + len].copy_from_slice(text.as_bytes());
    };
    field(&mut h, 100, 8, 0o644);
    field(&mut h, 108, 8, 0);
    field(&mut h, 116, 8, 0);
    field(&mut h, 124, 12, size);
    field(&mut h, 136, 12, 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

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
        /// Whether a member was left incomplete: the archive is lost.
        broken: bool,
    },
}

/// Which entries of the `index.json` an export replaces stay in it: those of
/// the registries it did not run, those of images that failed this time
/// (so that nothing exported earlier is lost), and those another tool wrote
/// under a name this export did not write.
#[derive(Debug, Default)]
pub struct Keep {
    /// The registries the export ran.
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
}

impl Writer {
    /// A writer into the directory `dir` (made when missing; what it holds
    /// already is kept and reused).
    pub fn dir(dir: &Path) -> Result<Writer, Error> {
        let fail = |e: io::Error| Error::Layout {
            path: dir.to_path_buf(),
            detail: format!("cannot write it: {e}"),
        };
        fs::create_dir_all(dir.join("blobs/sha256")).map_err(fail)?;
        let previous = Reader::open(dir)
            .map(|r| r.entries.iter().map(|e| e.descriptor.clone()).collect())
            .unwrap_or_default();
        Ok(Writer {
            out: Mutex::new(Out::Dir(dir.to_path_buf())),
            entries: Mutex::new(Vec::new()),
            previous,
            bytes: Mutex::new(0),
            turn: Mutex::new(()),
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
        }
    }

    /// A writer of the tar archive `path`, written under a temporary name
    /// next to it and renamed when complete.
    pub fn archive(path: &Path) -> Result<Writer, Error> {
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
                broken: false,
            }),
            entries: Mutex::new(Vec::new()),
            previous: Vec::new(),
            bytes: Mutex::new(0),
            turn: Mutex::new(()),
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
        let n = match &*lock(&self.out) {
            Out::Dir(_) => return Ok(()),
            Out::Tar { written, .. } => written.len(),
        };
        let bytes = serde_json::to_vec(descriptor).unwrap_or_default();
        let name = format!("{ANNOUNCED}{n}.json");
        self.write(&name, bytes.len() as u64, &mut &bytes[..])
            .map(|_| ())
    }

    /// One blob written into an archive at a time, its source opened only
    /// when its turn comes (a stream opened too early can time out); no
    /// wait for a directory.
    pub fn turn(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
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
        let names: HashSet<Option<String>> = entries.iter().map(|e| note(e, REF_NAME)).collect();
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
            let stays = match (&registry, &source) {
                (Some(r), _) if !keep.ran.contains(r) => true,
                (Some(r), Some(s)) => {
                    keep.failed.contains(&(r.clone(), s.clone()))
                        && !sources.contains(&(registry.clone(), source.clone()))
                }
                _ => !names.contains(&note(old, REF_NAME)),
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
        // In an order that does not depend on which image finished first:
        // by target, and what refers to them after.
        entries.sort_by_key(|e| {
            let note = |k: &str| e["annotations"][k].as_str().unwrap_or_default().to_string();
            (
                !note(REFERRER_OF).is_empty(),
                note(REF_NAME),
                note(REFERRER_OF),
                e["digest"].as_str().unwrap_or_default().to_string(),
            )
        });
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": crate::registry::manifests::OCI_INDEX,
            "manifests": entries,
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
        if *broken {
            return Err(Error::Layout {
                path: path.clone(),
                detail: "a blob could not be written whole; the archive is not complete".into(),
            });
        }
        file.write_all(&[0u8; 1024])
            .and_then(|_| file.sync_all())
            .and_then(|_| fs::rename(&*tmp, &*path))
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
                if *broken {
                    return Err(Error::Layout {
                        path: path.clone(),
                        detail: "an earlier blob could not be written whole".into(),
                    });
                }
                if written.contains(name) {
                    return Ok(false);
                }
                match append_member(file, name, size, data) {
                    Ok(()) => {
                        written.insert(name.to_string());
                        Ok(true)
                    }
                    Err((e, whole)) => {
                        *broken = !whole;
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

/// Appends the member `name` (`size` bytes from `data`) to the archive
/// `file`. When that fails (the source broke off, the disk is full), the
/// archive is cut back to where the member began, so that it stays whole
/// and the member can be written again; the error says whether it could be
/// (false: the archive is lost).
fn append_member(
    file: &mut File,
    name: &str,
    size: u64,
    data: &mut dyn Read,
) -> Result<(), (io::Error, bool)> {
    let start = file.stream_position().map_err(|e| (e, false))?;
    let written = (|| {
        file.write_all(&tar_header(name, size))?;
        let n = io::copy(&mut data.take(size), file)?;
        if n != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{n} of {size} bytes"),
            ));
        }
        let pad = (512 - size % 512) % 512;
        file.write_all(&vec![0u8; pad as usize])
    })();
    let Err(e) = written else {
        return Ok(());
    };
    let undone = file
        .set_len(start)
        .and_then(|_| file.seek(SeekFrom::Start(start)));
    Err((e, undone.is_ok()))
}

/// The descriptor of `manifest` in `index.json`, with `annotations`.
pub fn descriptor(manifest: &Manifest, annotations: Value) -> Value {
    json!({
        "mediaType": manifest.media_type,
        "digest": manifest.digest,
        "size": manifest.bytes.len(),
        "annotations": annotations,
    })
}

/// Where blob `digest` is in a layout; an error for a digest that is not
/// `sha256:` and 64 hexadecimal digits (which, written by a hostile
/// manifest, could name a path outside the layout).
fn blob_name(digest: &str) -> Result<String, Error> {
    if !crate::digest::is_sha256(digest) {
        return Err(Error::Corrupt {
            detail: format!(
                "{} is not a sha256 digest",
                crate::error::excerpt(digest, 80)
            ),
        });
    }
    Ok(format!("blobs/sha256/{}", &digest["sha256:".len()..]))
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
        let n = io::copy(&mut data.take(size), &mut f)?;
        if n != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{n} of {size} bytes"),
            ));
        }
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

fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    write_file(dir, name, bytes.len() as u64, &mut &bytes[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_read_back() {
        let dir = std::env::temp_dir().join(format!("pb-layout-tar-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.tar");
        let w = Writer::archive(&archive).unwrap();
        let m = Manifest::new(
            br#"{"schemaVersion":2}"#.to_vec(),
            "application/vnd.oci.image.manifest.v1+json",
        );
        w.put_manifest(&m).unwrap();
        w.add_entry(descriptor(&m, json!({REF_NAME: "r.io/a:1", SOURCE: "a:1"})));
        assert!(w.has(&m.digest, m.bytes.len() as u64));
        w.finish(&Keep::default()).unwrap();
        let listing = std::process::Command::new("tar")
            .arg("tf")
            .arg(&archive)
            .output()
            .unwrap();
        let names = String::from_utf8(listing.stdout).unwrap();
        assert!(
            names.contains("oci-layout") && names.contains("index.json"),
            "{names}"
        );
        let r = Reader::open(&archive).unwrap();
        assert_eq!(r.entries()[0].source.as_deref(), Some("a:1"));
        assert_eq!(r.manifest(&m.digest).unwrap().unwrap().bytes, m.bytes);
        assert!(r.blob("sha256:00").is_err());
        let hostile = "sha256:../../../../etc/passwd";
        assert!(!w.has(hostile, 1));
        assert!(w.put_blob(hostile, 1, &mut &b"x"[..]).is_err());
        assert!(r.blob(hostile).is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
