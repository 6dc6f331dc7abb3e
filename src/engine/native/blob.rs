//! The native engine's blobs: each one copied from scratch on each attempt,
//! as many at once as the run's slots allow. A blob the run already brought
//! to the target repository costs nothing; one another image's move is
//! sending is waited for, then mounted from there. A blob another
//! repository of the target is known to have is mounted from there, with
//! no `HEAD` first (a mount that fails, or opens an upload instead, goes on
//! as below); a blob the target has is skipped; any other is streamed from
//! the source into one `PUT` (into the upload the repository check kept,
//! for the first), or into `PATCH`es of `chunkSize`, its sha256 checked as
//! it passes. A registry that refuses one way (a single request, or chunks)
//! gets the other, from then on.

use std::io::{self, Read};
use std::sync::Arc;

use super::{Blob, Copy};
use crate::digest::Hashing;
use crate::engine::{Failed, Sink, Source, Step, attempt};
use crate::error::Error;
use crate::mutex::lock;
use crate::registry::blobs::{Mounted, Upload};
use crate::registry::quirks::Quirk;

/// The chunk size of a chunked upload when neither `chunkSize` nor the
/// registry says otherwise.
const DEFAULT_CHUNK: u64 = 4 << 20;

impl<'a> Copy<'a> {
    /// Copies `blobs` on the run's blob copiers, as many at once as the
    /// run's slots allow, and waits for them; the first failure keeps the
    /// others from starting.
    pub(super) fn copy_blobs(&self, blobs: &[Blob], total: u64) -> Result<(), Failed> {
        let copy = Arc::new(self.clone());
        let tasks = blobs.iter().map(|blob| {
            let (copy, blob) = (Arc::clone(&copy), blob.clone());
            move || {
                let _slot = copy.job.slots.take();
                copy.copy_blob(&blob, total)
            }
        });
        self.job.pool.all(tasks)
    }

    /// Copies one blob, from scratch on each attempt.
    fn copy_blob(&self, blob: &Blob, total: u64) -> Result<(), Failed> {
        let what = format!("blob {}", blob.digest);
        let step = Step {
            what: &what,
            host: &self.dst.host,
        };
        let how = attempt(&*self.steps, &step, || {
            if self.steps.stopping() {
                return Err(self.interrupted());
            }
            self.blob_once(blob, total)
        })?;
        let mut stats = lock(&self.stats);
        match how {
            Arrived::Present => stats.blobs_present += 1,
            Arrived::Mounted => stats.blobs_mounted += 1,
            Arrived::Copied => {
                stats.blobs_copied += 1;
                stats.bytes += blob.size;
            }
        }
        Ok(())
    }

    /// A stream of `blob` from where the image comes from.
    fn open_blob(&self, blob: &Blob) -> Result<Box<dyn Read + Send>, Error> {
        match self.job.from {
            Source::Layout(layout) => layout.blob(&blob.digest).map(|(r, _)| r),
            Source::Registry => self
                .job
                .client
                .get_blob(&self.src, &blob.digest, self.src_creds.as_ref())
                .map(|s| s.reader),
        }
    }

    /// Copies `blob` into the layout the image goes to, unless it is there.
    fn blob_into(
        &self,
        layout: &crate::layout::Writer,
        blob: &Blob,
        total: u64,
    ) -> Result<Arrived, Error> {
        if layout.has(&blob.digest, blob.size) {
            return Ok(Arrived::Present);
        }
        let _turn = layout.turn();
        if layout.has(&blob.digest, blob.size) {
            return Ok(Arrived::Present);
        }
        let mut checked = self.checked(self.open_blob(blob)?, blob, total);
        let written = layout.put_blob(&blob.digest, blob.size, &mut checked);
        match (written, checked.mismatch()) {
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(e),
            (Ok(()), None) => Ok(Arrived::Copied),
        }
    }

    /// One attempt at `blob`; at a registry, the run notes where it arrived
    /// (for mounts, and for the moves waiting for it) before letting them
    /// look.
    fn blob_once(&self, blob: &Blob, total: u64) -> Result<Arrived, Error> {
        if let Sink::Layout(layout) = self.job.to {
            return self.blob_into(layout, blob, total);
        }
        // This move's turn to send `blob`, held while it does; none when the
        // run found it in the target repository already (sent for another
        // tag, say), after waiting for another image's move that was sending
        // it: then it is mounted from there, not sent twice.
        let memory = self.job.memory;
        let Some(_turn) = memory.sending(&blob.digest, &self.dst.path) else {
            return Ok(Arrived::Present);
        };
        let how = self.blob_to_target(blob, total)?;
        memory.note_blob(&blob.digest, &self.dst.path);
        Ok(how)
    }

    /// Brings `blob` to the target: mounted, found there, or sent.
    fn blob_to_target(&self, blob: &Blob, total: u64) -> Result<Arrived, Error> {
        let client = self.job.client;
        let creds = self.job.access.push();
        let opened = match self.mount(blob) {
            Some(Mounted::Done) => return Ok(Arrived::Mounted),
            Some(Mounted::Upload(u)) => Some(u),
            None => None,
        };
        if client.head_blob(&self.dst, &blob.digest, creds)?.is_some() {
            if let Some(u) = &opened {
                client.cancel_upload(&self.dst, u, creds);
            }
            return Ok(Arrived::Present);
        }
        let upload = match opened.or_else(|| self.job.memory.kept_upload(&self.dst.path)) {
            Some(u) => u,
            None => client.start_upload(&self.dst, creds)?,
        };
        self.upload(blob, upload, total).map(|_| Arrived::Copied)
    }

    /// Sends `blob` into `upload`, the way the registry takes blobs; when it
    /// refuses that way, again into a new upload the other way.
    fn upload(&self, blob: &Blob, upload: Upload, total: u64) -> Result<(), Error> {
        let client = self.job.client;
        let host = &self.dst.host;
        let first = way(
            self.job.registry.chunk_size.or(upload.min_chunk),
            client.has_quirk(host, Quirk::NoSingleUpload),
            client.has_quirk(host, Quirk::NoChunkedUpload),
        );
        match self.send_way(blob, upload, first, total) {
            Err(e) if refuses(first, &e) => {
                let (quirk, then) = match first {
                    Way::Whole => (Quirk::NoSingleUpload, Way::Chunks(DEFAULT_CHUNK)),
                    Way::Chunks(_) => (Quirk::NoChunkedUpload, Way::Whole),
                };
                if client.note_quirk(host, quirk) {
                    log::info!(
                        "{}: {host} refused {} {} ({}); sending it {}, and later blobs too",
                        self.job.item.name(),
                        blob.digest,
                        first.name(),
                        e.http_status().unwrap_or_default(),
                        then.name()
                    );
                }
                let again = client.start_upload(&self.dst, self.job.access.push())?;
                let then = match then {
                    Way::Chunks(size) => Way::Chunks(again.min_chunk.unwrap_or(0).max(size)),
                    whole => whole,
                };
                self.send_way(blob, again, then, total)
            }
            other => other,
        }
    }

    /// Mounts `blob` from another repository of the target that has it,
    /// without asking first whether the target repository has it: a mount
    /// answers that too (201). None when no repository is known to have it,
    /// or the mount failed (Harbor has answered 401): then the blob goes
    /// the way of one never seen, as does one the registry would not mount
    /// (202, with the upload it opened).
    fn mount(&self, blob: &Blob) -> Option<Mounted> {
        let from = self
            .job
            .memory
            .blob_elsewhere(&blob.digest, &self.dst.path)?;
        let creds = self.job.access.push();
        match self
            .job
            .client
            .mount_blob(&self.dst, &blob.digest, &from, creds)
        {
            Ok(mounted) => Some(mounted),
            Err(e) => {
                log::info!(
                    "{}: {} did not mount {} from {from} ({e}); uploading it unless it is there",
                    self.job.item.name(),
                    self.dst.host,
                    blob.digest
                );
                None
            }
        }
    }

    /// Sends `blob` to `upload` the `way` chosen.
    fn send_way(&self, blob: &Blob, upload: Upload, way: Way, total: u64) -> Result<(), Error> {
        match way {
            Way::Whole => self.send_whole(blob, &upload, total),
            Way::Chunks(size) => self.send_chunked(blob, upload, size, total),
        }
    }

    /// Streams the blob from the source into one `PUT`.
    fn send_whole(&self, blob: &Blob, upload: &Upload, total: u64) -> Result<(), Error> {
        let client = self.job.client;
        let stream = self.open_blob(blob)?;
        let mut checked = self.checked(stream, blob, total);
        let sent = client.put_blob(
            &self.dst,
            upload,
            &blob.digest,
            &mut checked,
            blob.size,
            self.job.access.push(),
        );
        self.verdict(sent, checked, upload)
    }

    /// Streams the blob from the source as `PATCH`es of `size` bytes, then
    /// closes the upload.
    fn send_chunked(
        &self,
        blob: &Blob,
        mut upload: Upload,
        size: u64,
        total: u64,
    ) -> Result<(), Error> {
        let client = self.job.client;
        let creds = self.job.access.push();
        let stream = self.open_blob(blob)?;
        let mut checked = self.checked(stream, blob, total);
        let mut offset = 0;
        let mut buffer = Vec::with_capacity(size as usize);
        let result = loop {
            buffer.clear();
            let read = (&mut checked).take(size).read_to_end(&mut buffer);
            match read {
                Err(e) => break Err(self.stream_error(&checked, e)),
                Ok(0) => break client.finish_upload(&self.dst, &upload, &blob.digest, creds),
                Ok(n) => match client.patch_chunk(&self.dst, &upload, offset, &buffer, creds) {
                    Ok(next) => {
                        upload = next;
                        offset += n as u64;
                    }
                    Err(e) => break Err(e),
                },
            }
        };
        self.verdict(result, checked, &upload)
    }

    /// The outcome of an upload, with a stream that did not match its digest
    /// told as such; a failed upload is cancelled so nothing of it stays.
    fn verdict(
        &self,
        sent: Result<(), Error>,
        checked: Checked<'_, '_>,
        upload: &Upload,
    ) -> Result<(), Error> {
        let error = match (sent, checked.mismatch()) {
            (_, Some(e)) => e,
            (Ok(()), None) => return Ok(()),
            (Err(e), None) => e,
        };
        self.job
            .client
            .cancel_upload(&self.dst, upload, self.job.access.push());
        Err(error)
    }

    /// A read of the source stream failed: why, in the terms of the stream.
    fn stream_error(&self, checked: &Checked<'_, '_>, e: io::Error) -> Error {
        checked.mismatch().unwrap_or_else(|| {
            if e.kind() == io::ErrorKind::Interrupted {
                self.interrupted()
            } else {
                Error::Network {
                    host: self.src.host.clone(),
                    detail: format!("reading a blob: {e}"),
                }
            }
        })
    }

    /// The copy was asked to stop (or ran out of time: see `Bounded`).
    fn interrupted(&self) -> Error {
        Error::Interrupted {
            command: format!("the copy of {}", self.job.source),
        }
    }

    fn checked<'c>(
        &'c self,
        reader: Box<dyn Read + Send>,
        blob: &Blob,
        total: u64,
    ) -> Checked<'c, 'a> {
        Checked {
            inner: Hashing::new(reader),
            blob: blob.clone(),
            copy: self,
            total,
            mismatch: None,
        }
    }
}

/// How a blob is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// In one `PUT`.
    Whole,
    /// In `PATCH`es of this many bytes.
    Chunks(u64),
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Whole => "in one request",
            Way::Chunks(_) => "in chunks",
        }
    }
}

/// The way to send a blob first: whole, unless chunks are asked for
/// (`chunkSize`, or the registry's `OCI-Chunk-Min-Length`) or the registry
/// refused a blob in one request before; never in chunks to a registry that
/// refused them.
fn way(chunk: Option<u64>, no_single: bool, no_chunked: bool) -> Way {
    match chunk {
        _ if no_chunked => Way::Whole,
        Some(size) => Way::Chunks(size),
        None if no_single => Way::Chunks(DEFAULT_CHUNK),
        None => Way::Whole,
    }
}

/// Whether `error` is the registry refusing to take a blob `way` (so that
/// the other way is worth a try): 405, 413 for one request, 415 for chunks,
/// or a 400 that does not say the data is wrong.
fn refuses(way: Way, error: &Error) -> bool {
    let Error::Registry {
        status: Some(status),
        code,
        ..
    } = error
    else {
        return false;
    };
    let data_wrong = matches!(code.as_deref(), Some("DIGEST_INVALID" | "SIZE_INVALID"));
    match (way, status) {
        (_, 405) => true,
        (_, 400) => !data_wrong,
        (Way::Whole, 413) => true,
        (Way::Chunks(_), 415) => true,
        _ => false,
    }
}

/// How a blob came to be at the target.
enum Arrived {
    Present,
    Mounted,
    Copied,
}

/// A source stream on its way to the target: hashed and counted as it
/// passes, cut after its declared size, checked as its last byte is read,
/// and stopped when the run is asked to stop. A stream that does not match
/// its digest fails that last read, so that the upload is never completed.
struct Checked<'c, 'a> {
    inner: Hashing<Box<dyn Read + Send>>,
    blob: Blob,
    copy: &'c Copy<'a>,
    total: u64,
    mismatch: Option<String>,
}

impl Checked<'_, '_> {
    fn mismatch(&self) -> Option<Error> {
        self.mismatch.as_ref().map(|detail| Error::Corrupt {
            detail: detail.clone(),
        })
    }

    /// Records that the stream is not the blob, and fails the read.
    fn refuse(&mut self, why: String) -> io::Error {
        let source = match self.copy.job.from {
            Source::Layout(layout) => layout.shown().to_string(),
            Source::Registry => format!("{}/{}", self.copy.src.host, self.copy.src.path),
        };
        let detail = format!(
            "blob {} from {source} does not match its digest ({why})",
            self.blob.digest
        );
        self.mismatch = Some(detail.clone());
        io::Error::new(io::ErrorKind::InvalidData, detail)
    }
}

impl Read for Checked<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.copy.steps.stopping() {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let size = self.blob.size;
        let room = (size + 1).saturating_sub(self.inner.count());
        let max = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        let job = &self.copy.job;
        job.progress.advance(&job.item, n as u64, self.total);
        let done = self.inner.count();
        if done > size {
            return Err(self.refuse(format!("it is longer than its {size} bytes")));
        }
        if n == 0 && done < size {
            return Err(self.refuse(format!("it ended after {done} of its {size} bytes")));
        }
        if n > 0 && done == size {
            let actual = self.inner.digest();
            if actual != self.blob.digest {
                return Err(self.refuse(format!("its bytes hash to {actual}")));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, code: Option<&str>) -> Error {
        Error::Registry {
            host: "r".into(),
            status: Some(status),
            code: code.map(String::from),
            detail: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn the_first_way_follows_what_the_registry_refused_before() {
        assert_eq!(way(None, false, false), Way::Whole);
        assert_eq!(way(Some(65536), false, false), Way::Chunks(65536));
        assert_eq!(way(None, true, false), Way::Chunks(DEFAULT_CHUNK));
        assert_eq!(
            way(Some(65536), false, true),
            Way::Whole,
            "chunkSize or not"
        );
        assert_eq!(way(None, true, true), Way::Whole);
    }

    #[test]
    fn only_a_refusal_of_the_way_itself_falls_back() {
        let chunks = Way::Chunks(1);
        for (way, status, code) in [
            (Way::Whole, 413, None),
            (Way::Whole, 405, None),
            (Way::Whole, 400, Some("BLOB_UPLOAD_INVALID")),
            (chunks, 405, Some("UNSUPPORTED")),
            (chunks, 415, None),
            (chunks, 400, None),
        ] {
            assert!(refuses(way, &refusal(status, code)), "{way:?} {status}");
        }
        for (way, status, code) in [
            (Way::Whole, 400, Some("DIGEST_INVALID")),
            (chunks, 400, Some("SIZE_INVALID")),
            (Way::Whole, 415, None),
            (chunks, 413, None),
            (Way::Whole, 401, None),
            (Way::Whole, 500, None),
        ] {
            assert!(!refuses(way, &refusal(status, code)), "{way:?} {status}");
        }
        let corrupt = Error::Corrupt { detail: "x".into() };
        assert!(!refuses(Way::Whole, &corrupt));
    }
}
