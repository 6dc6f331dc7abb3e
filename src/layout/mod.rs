//! OCI image layouts, the medium of air-gapped transfers: `oci-layout`,
//! `index.json` and `blobs/sha256/<hex>`, in a directory or in one tar file.
//! Reading (`Reader`) gives the index's entries, manifests and blobs by
//! digest (checking each blob is the caller's business: the native engine
//! checks every blob as it reads it); writing is `writer`'s, the tar format
//! `tar`'s. What goes into a layout is the engines' business.

mod tar;
mod writer;

pub use writer::{Keep, Writer};

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::Error;
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
/// The annotation that marks an entry repeating the one before it under the
/// OCI media type (see [`oci_alias`]); its value is the manifest's own,
/// Docker, media type.
pub const OCI_ALIAS: &str = "io.picture-book.oci-alias";
/// Where an archive announces each entry as soon as it is known, so that an
/// archive cut short before its `index.json` can still be read.
const ANNOUNCED: &str = "picture-book/entry-";
/// The largest manifest read.
const MAX_MANIFEST: u64 = 4 << 20;
/// The largest `index.json` (or announced entry) read.
const MAX_INDEX: u64 = 64 << 20;

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
            let members =
                tar::members(path).map_err(|e| fail(format!("not a tar archive: {e}")))?;
            let short = members
                .short
                .clone()
                .or_else(|| (!members.cut.is_empty()).then(|| "it ends inside a file".to_string()));
            if let Some(why) = short {
                warning = Some(format!(
                    "{shown} is cut short (truncated: {why}): the images whose blobs are in it whole are loaded, the others fail"
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
            .filter(|d| d["annotations"][OCI_ALIAS].is_null())
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
            Ok((_, len)) if len > MAX_INDEX => {
                return Err(fail(format!(
                    "{name} is larger than {} MiB ({len} bytes)",
                    MAX_INDEX >> 20
                )));
            }
            Ok((reader, _)) => reader.take(MAX_INDEX).read_to_string(&mut text),
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
        // The manifest's own `mediaType` first: a registry holds a manifest
        // to it, and a descriptor may name another (an OCI alias).
        let media_type = crate::registry::manifests::declared_type(&manifest.bytes)
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|e| e.digest == digest)
                    .and_then(|e| e.descriptor["mediaType"].as_str().map(String::from))
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

/// The descriptor of `manifest` in `index.json`, with `annotations`.
pub fn descriptor(manifest: &Manifest, annotations: Value) -> Value {
    json!({
        "mediaType": manifest.media_type,
        "digest": manifest.digest,
        "size": manifest.bytes.len(),
        "annotations": annotations,
    })
}

/// For an entry of `index.json` that names a Docker manifest or manifest
/// list, an entry that repeats it under the OCI media type, marked
/// [`OCI_ALIAS`]; None for any other entry. Readers that take only OCI
/// media types from `index.json` (skopeo and podman before containers/image
/// 5.35) skip the first and find the image by its name there; its bytes and
/// digest are the same. picture-book's own reader skips the alias.
pub fn oci_alias(entry: &Value) -> Option<Value> {
    use crate::registry::manifests::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
    let docker = entry["mediaType"].as_str()?;
    let oci = match docker {
        DOCKER_MANIFEST => OCI_MANIFEST,
        DOCKER_LIST => OCI_INDEX,
        _ => return None,
    };
    entry["annotations"][REF_NAME].as_str()?;
    let mut alias = entry.clone();
    alias["mediaType"] = json!(oci);
    alias["annotations"][OCI_ALIAS] = json!(docker);
    Some(alias)
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

/// Copies exactly `size` bytes of `from` into `to`, in large writes. A read
/// that is interrupted (the run is stopping) ends the copy with that error,
/// where `io::copy` would try again, forever.
fn copy_exact(from: &mut dyn Read, to: &mut dyn Write, size: u64) -> io::Result<()> {
    let mut buffer = vec![0u8; (256 << 10).min(size as usize)];
    let mut left = size;
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = from.read(&mut buffer[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} of {size} bytes", size - left),
            ));
        }
        to.write_all(&buffer[..n])?;
        left -= n as u64;
    }
    Ok(())
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

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pb-layout-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Ten bytes, then what a stopping run's reader says.
    struct Stopping(usize);

    impl Read for Stopping {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 >= 10 {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            self.0 += 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_stopping_read_ends_the_write_and_leaves_nothing() {
        let dir = scratch("stop");
        let digest = crate::digest::sha256(b"any");
        let layout = dir.join("layout");
        let w = Writer::dir(&layout).unwrap();
        assert!(w.put_blob(&digest, 100, &mut Stopping(0)).is_err());
        assert!(!w.has(&digest, 100));
        let names: Vec<_> = fs::read_dir(layout.join("blobs/sha256")).unwrap().collect();
        assert!(names.is_empty(), "{names:?}");
        let a = Writer::archive(&dir.join("a.tar")).unwrap();
        assert!(a.put_blob(&digest, 100, &mut Stopping(0)).is_err());
        a.put_blob(&digest, 3, &mut &b"any"[..]).unwrap();
        a.finish(&Keep::default()).unwrap();
        let r = Reader::open(&dir.join("a.tar")).unwrap();
        assert!(r.warning().is_none());
        let (mut blob, len) = r.blob(&digest).unwrap();
        let mut text = String::new();
        blob.read_to_string(&mut text).unwrap();
        assert_eq!(
            (text.as_str(), len),
            ("any", 3),
            "the failed member was cut back out"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_entry_announced_at_once_is_read_from_an_unfinished_archive() {
        let dir = scratch("announce");
        let path = dir.join("a.tar");
        let w = Writer::archive(&path).unwrap();
        std::thread::scope(|s| {
            for n in 0..32 {
                let w = &w;
                s.spawn(move || {
                    let m = Manifest::new(format!("{{\"n\":{n}}}").into_bytes(), "x");
                    w.put_manifest(&m).unwrap();
                    w.announce(&descriptor(&m, json!({REF_NAME: format!("r.io/a:{n}")})))
                        .unwrap();
                });
            }
        });
        let tmp = fs::read_dir(&dir).unwrap().flatten().next().unwrap().path();
        let r = Reader::open(&tmp).unwrap();
        assert_eq!(r.entries().len(), 32);
        assert!(r.warning().unwrap().contains("truncated"));
        fs::remove_dir_all(dir).unwrap();
    }

    /// The names in the `index.json` of `dir`.
    fn names(dir: &Path) -> Vec<String> {
        let r = Reader::open(dir).unwrap();
        let mut names: Vec<String> = r
            .entries()
            .iter()
            .filter_map(|e| e.ref_name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_export_keeps_what_it_did_not_replace() {
        let dir = scratch("keep").join("layout");
        let entry = |n: &str, registry: Option<&str>| {
            let m = Manifest::new(format!("{{\"n\":\"{n}\"}}").into_bytes(), "x");
            let mut notes = json!({REF_NAME: n});
            if let Some(r) = registry {
                notes[REGISTRY] = json!(r);
                notes[SOURCE] = json!(format!("src/{n}"));
            }
            (m.clone(), descriptor(&m, notes))
        };
        let write = |entries: &[(Manifest, Value)], keep: Keep| {
            let w = Writer::dir(&dir).unwrap();
            for (m, d) in entries {
                w.put_manifest(m).unwrap();
                w.add_entry(d.clone());
            }
            w.finish(&keep).unwrap();
        };
        let ran = |r: &[&str]| r.iter().map(|s| s.to_string()).collect();
        write(
            &[
                entry("a1", Some("a")),
                entry("a2", Some("a")),
                entry("b1", Some("b")),
                entry("t1", None),
            ],
            Keep {
                ran: ran(&["a", "b"]),
                ..Keep::default()
            },
        );
        assert_eq!(names(&dir), ["a1", "a2", "b1", "t1"]);
        // a ran again without a2, which failed; b did not run; a referrer
        // without a name is no reason to drop another tool's entry.
        let referrer = {
            let m = Manifest::new(b"{\"sig\":1}".to_vec(), "x");
            (m.clone(), descriptor(&m, json!({REFERRER_OF: "sha256:00"})))
        };
        let failed = [("a".to_string(), "src/a2".to_string())].into();
        write(
            &[entry("a1", Some("a")), referrer],
            Keep {
                ran: ran(&["a"]),
                failed,
            },
        );
        assert_eq!(names(&dir), ["a1", "a2", "b1", "t1"]);
        // a ran through its listing, which no longer has a2; its script
        // failing (not in `ran`) would have kept it.
        write(
            &[entry("a1", Some("a"))],
            Keep {
                ran: ran(&["a"]),
                ..Keep::default()
            },
        );
        assert_eq!(names(&dir), ["a1", "b1", "t1"]);
        write(&[], Keep::default());
        assert_eq!(names(&dir), ["a1", "b1", "t1"]);
    }

    /// The raw entries of the `index.json` in `dir`.
    fn raw_entries(dir: &Path) -> Vec<Value> {
        let index: Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
        index["manifests"].as_array().unwrap().clone()
    }

    #[test]
    fn a_docker_manifest_is_named_again_under_the_oci_type_and_read_once() {
        use crate::registry::manifests::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
        let dir = scratch("alias").join("layout");
        let named = |media_type: &str, name: &str| {
            let body = format!("{{\"mediaType\":\"{media_type}\",\"n\":\"{name}\"}}");
            let m = Manifest::new(body.into_bytes(), media_type);
            (m.clone(), descriptor(&m, json!({REF_NAME: name})))
        };
        let docker = named(DOCKER_MANIFEST, "r.io/a:1");
        let list = named(DOCKER_LIST, "r.io/b:1");
        let oci = named(OCI_MANIFEST, "r.io/c:1");
        let signature = {
            let m = Manifest::new(b"{\"sig\":1}".to_vec(), DOCKER_MANIFEST);
            (
                m.clone(),
                descriptor(&m, json!({REFERRER_OF: docker.0.digest})),
            )
        };
        for _ in 0..2 {
            let w = Writer::dir(&dir).unwrap();
            for (m, d) in [&docker, &list, &oci, &signature] {
                w.put_manifest(m).unwrap();
                w.add_entry(d.clone());
            }
            w.finish(&Keep::default()).unwrap();
        }
        let raw = raw_entries(&dir);
        let summary: Vec<(String, String, bool)> = raw
            .iter()
            .map(|e| {
                (
                    e["mediaType"].as_str().unwrap().to_string(),
                    e["digest"].as_str().unwrap().to_string(),
                    e["annotations"][OCI_ALIAS].is_string(),
                )
            })
            .collect();
        let row = |t: &str, m: &Manifest, alias| (t.to_string(), m.digest.clone(), alias);
        assert_eq!(
            summary,
            [
                row(DOCKER_MANIFEST, &docker.0, false),
                row(OCI_MANIFEST, &docker.0, true),
                row(DOCKER_LIST, &list.0, false),
                row(OCI_INDEX, &list.0, true),
                row(OCI_MANIFEST, &oci.0, false),
                row(DOCKER_MANIFEST, &signature.0, false),
            ],
            "each named Docker entry once more under the OCI type, right after it, on every export"
        );
        assert_eq!(raw[1]["annotations"][REF_NAME], "r.io/a:1");
        assert_eq!(raw[1]["annotations"][OCI_ALIAS], DOCKER_MANIFEST);
        let r = Reader::open(&dir).unwrap();
        assert_eq!(
            r.entries().len(),
            4,
            "the aliases are not images of their own"
        );
        let read = r.manifest(&docker.0.digest).unwrap().unwrap();
        assert_eq!(read.media_type, DOCKER_MANIFEST);
    }

    #[test]
    fn a_manifest_is_read_as_the_type_its_bytes_declare() {
        use crate::registry::manifests::{DOCKER_MANIFEST, OCI_MANIFEST};
        let dir = scratch("declared");
        let docker = Manifest::new(
            format!("{{\"mediaType\":\"{DOCKER_MANIFEST}\"}}").into_bytes(),
            DOCKER_MANIFEST,
        );
        let bare = Manifest::new(b"{\"schemaVersion\":2}".to_vec(), "x");
        let w = Writer::dir(&dir).unwrap();
        for m in [&docker, &bare] {
            w.put_manifest(m).unwrap();
        }
        let hand_made = json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": docker.digest, "size": docker.bytes.len()},
                {"mediaType": "application/x.other", "digest": bare.digest, "size": bare.bytes.len()},
            ],
        });
        drop(w);
        fs::write(dir.join("index.json"), hand_made.to_string()).unwrap();
        let r = Reader::open(&dir).unwrap();
        let type_of = |m: &Manifest| r.manifest(&m.digest).unwrap().unwrap().media_type;
        assert_eq!(type_of(&docker), DOCKER_MANIFEST, "the bytes' own type");
        assert_eq!(type_of(&bare), "application/x.other", "else the entry's");
    }

    #[test]
    fn a_directory_is_exported_into_by_one_writer_at_a_time_and_never_blindly() {
        let dir = scratch("one").join("layout");
        let first = Writer::dir(&dir).unwrap();
        let second = Writer::dir(&dir).err().unwrap().to_string();
        assert!(
            second.contains("another picture-book exports into it"),
            "{second}"
        );
        first.finish(&Keep::default()).unwrap();
        drop(first);
        fs::write(dir.join("index.json"), "{not json").unwrap();
        let archive = Writer::archive(&dir).err().unwrap().to_string();
        assert!(archive.contains("is a directory"), "{archive}");
        let broken = Writer::dir(&dir).err().unwrap().to_string();
        assert!(broken.contains("index.json cannot be read"), "{broken}");
        assert_eq!(
            fs::read_to_string(dir.join("index.json")).unwrap(),
            "{not json"
        );
    }
}
