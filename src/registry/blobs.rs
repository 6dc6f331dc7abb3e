//! Blobs (image configs and layers) by digest: `HEAD` for presence, a
//! cross-repository mount, a streamed `GET`, and the two upload paths the
//! OCI distribution spec has: one `PUT` of the whole blob, or `PATCH`es of
//! chunks with `Content-Range` and a final `PUT`. An upload `Location` may
//! be relative, absolute, or on another host (a storage front, which gets
//! no credentials). Streams are never held in memory; checking what they
//! hash to is the caller's business.

use std::io::Read;

use super::transport::{Body, Method, Request, header};
use super::{Client, Repository, fail, refused};
use crate::credentials::Credentials;
use crate::error::Error;

/// An upload session the registry opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Where to send the data: a whole URL.
    pub location: String,
    /// The smallest chunk the registry takes (`OCI-Chunk-Min-Length`).
    pub min_chunk: Option<u64>,
}

/// What a mount request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounted {
    /// The blob is in the repository now (201).
    Done,
    /// The registry did not mount it and opened an upload instead (202).
    Upload(Upload),
}

/// A blob being read from a registry.
pub struct BlobStream {
    /// Its bytes.
    pub reader: Box<dyn Read + Send>,
    /// Its length, when the registry said.
    pub length: Option<u64>,
}

impl Client {
    /// The size of blob `digest` in `repo`, or None when it is not there.
    pub fn head_blob(
        &self,
        repo: &Repository,
        digest: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<u64>, Error> {
        let path = format!("/v2/{}/blobs/{digest}", repo.path);
        let resp = self.send(repo, Request::new(Method::Head, &path), creds, &[])?;
        match resp.status().as_u16() {
            200 => Ok(Some(
                header(&resp, "Content-Length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            _ => Err(refused(repo, resp, &format!("HEAD {path}"))),
        }
    }

    /// Asks `repo`'s registry to mount blob `digest` from its repository
    /// `from`; a registry that does not opens an upload instead.
    pub fn mount_blob(
        &self,
        repo: &Repository,
        digest: &str,
        from: &str,
        creds: Option<&Credentials>,
    ) -> Result<Mounted, Error> {
        let path = format!(
            "/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            repo.path
        );
        let scope = format!("repository:{from}:pull");
        let resp = self.send(
            repo,
            Request::new(Method::Post, &path),
            creds,
            std::slice::from_ref(&scope),
        )?;
        match resp.status().as_u16() {
            201 => Ok(Mounted::Done),
            202 => self
                .upload_of(repo, &resp, &path, "a mount")
                .map(Mounted::Upload),
            _ => Err(refused(repo, resp, &format!("POST {path}"))),
        }
    }

    /// Opens an upload in `repo`.
    pub fn start_upload(
        &self,
        repo: &Repository,
        creds: Option<&Credentials>,
    ) -> Result<Upload, Error> {
        let path = format!("/v2/{}/blobs/uploads/", repo.path);
        let resp = self.send(repo, Request::new(Method::Post, &path), creds, &[])?;
        match resp.status().as_u16() {
            202 => self.upload_of(repo, &resp, &path, "POST"),
            _ => Err(refused(repo, resp, &format!("POST {path}"))),
        }
    }

    /// Starts reading blob `digest` of `repo`.
    pub fn get_blob(
        &self,
        repo: &Repository,
        digest: &str,
        creds: Option<&Credentials>,
    ) -> Result<BlobStream, Error> {
        let path = format!("/v2/{}/blobs/{digest}", repo.path);
        let resp = self.send(
            repo,
            Request::new(Method::Get, &path).streaming(),
            creds,
            &[],
        )?;
        if resp.status().as_u16() != 200 {
            return Err(refused(repo, resp, &format!("GET {path}")));
        }
        let length = header(&resp, "Content-Length").and_then(|l| l.parse().ok());
        let reader = resp.into_body().into_reader();
        let reader: Box<dyn Read + Send> = match length {
            Some(left) => Box::new(ToTheEnd {
                inner: reader,
                left,
            }),
            None => Box::new(reader),
        };
        Ok(BlobStream { reader, length })
    }

    /// Sends the whole blob `digest` (`length` bytes from `data`) to
    /// `upload` in one `PUT`.
    pub fn put_blob(
        &self,
        repo: &Repository,
        upload: &Upload,
        digest: &str,
        data: &mut dyn Read,
        length: u64,
        creds: Option<&Credentials>,
    ) -> Result<(), Error> {
        let url = with_digest(&upload.location, digest);
        let req = Request::new(Method::Put, &url)
            .header("Content-Type", "application/octet-stream")
            .body(Body::Stream(data, length))
            .streaming();
        let resp = self.send(repo, req, creds, &[])?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            _ => Err(refused(repo, resp, &format!("PUT of blob {digest}"))),
        }
    }

    /// Sends `chunk`, the bytes from `offset` on, to `upload`; returns the
    /// upload as it goes on (the registry may move it).
    pub fn patch_chunk(
        &self,
        repo: &Repository,
        upload: &Upload,
        offset: u64,
        chunk: &[u8],
        creds: Option<&Credentials>,
    ) -> Result<Upload, Error> {
        let end = offset + chunk.len() as u64 - 1;
        let req = Request::new(Method::Patch, &upload.location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{offset}-{end}"))
            .body(Body::Bytes(chunk))
            .streaming();
        let resp = self.send(repo, req, creds, &[])?;
        match resp.status().as_u16() {
            202 => {
                lagging(repo, &resp, end);
                let next = self.upload_of(repo, &resp, &upload.location, "PATCH")?;
                Ok(Upload {
                    min_chunk: upload.min_chunk,
                    ..next
                })
            }
            _ => Err(refused(
                repo,
                resp,
                &format!("PATCH of bytes {offset}-{end}"),
            )),
        }
    }

    /// Closes a chunked upload of blob `digest`.
    pub fn finish_upload(
        &self,
        repo: &Repository,
        upload: &Upload,
        digest: &str,
        creds: Option<&Credentials>,
    ) -> Result<(), Error> {
        let url = with_digest(&upload.location, digest);
        let resp = self.send(repo, Request::new(Method::Put, &url), creds, &[])?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            _ => Err(refused(repo, resp, &format!("PUT closing blob {digest}"))),
        }
    }

    /// Gives up an upload, so that nothing of it stays; errors are only
    /// logged, since there is nothing more to do about them.
    pub fn cancel_upload(&self, repo: &Repository, upload: &Upload, creds: Option<&Credentials>) {
        let req = Request::new(Method::Delete, &upload.location);
        match self.send(repo, req, creds, &[]) {
            Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 404 => {}
            Ok(resp) => log::debug!("{}: cancelling an upload: {}", repo.host, resp.status()),
            Err(e) => log::debug!("{}: cancelling an upload: {e}", repo.host),
        }
    }

    /// The upload a 202 answer to `what` (sent to `base`, a path on the
    /// registry or a whole URL) opened: its `Location` made a whole URL.
    fn upload_of(
        &self,
        repo: &Repository,
        resp: &ureq::http::Response<ureq::Body>,
        base: &str,
        what: &str,
    ) -> Result<Upload, Error> {
        let location = header(resp, "Location")
            .filter(|l| !l.is_empty())
            .ok_or_else(|| fail(repo, format!("{what} answered 202 without a Location")))?;
        let base = if base.contains("://") {
            base.to_string()
        } else {
            let scheme = self.transport.scheme(&repo.host).unwrap_or("https");
            format!("{scheme}://{}{base}", repo.host)
        };
        let min_chunk = header(resp, "OCI-Chunk-Min-Length").and_then(|l| l.parse().ok());
        Ok(Upload {
            location: resolve(&base, &location),
            min_chunk,
        })
    }
}

/// A blob's body that, once its last byte is read, reads on to its end:
/// ureq pools a connection only then, and a `PUT` stops reading its body
/// at its `Content-Length`.
struct ToTheEnd<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ToTheEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.left;
        self.left = self.left.saturating_sub(n as u64);
        if before > 0 && self.left == 0 && self.inner.read(&mut [0; 1])? > 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the blob is longer than its Content-Length",
            ));
        }
        Ok(n)
    }
}

/// `location` (whole, absolute-path or relative) as a whole URL, resolved
/// against the URL `base` of the request it answered.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = rest[authority.len()..]
        .split('?')
        .next()
        .unwrap_or_default();
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    if location.starts_with('?') {
        return format!("{scheme}://{authority}{path}{location}");
    }
    format!("{scheme}://{authority}{dir}/{location}")
}

/// Logs a chunk answer whose `Range` does not reach `end`, the last byte
/// sent. It is not believed: the registry took the chunk (202), so the
/// upload goes on from picture-book's own offset (ECR's `Range` has been
/// seen stuck at the first chunk), and the final `PUT` names the digest,
/// which the registry checks against all it holds.
fn lagging(repo: &Repository, resp: &ureq::http::Response<ureq::Body>, end: u64) {
    let range = header(resp, "Range");
    let said = range
        .as_deref()
        .and_then(|r| r.rsplit_once('-'))
        .and_then(|(_, e)| e.trim().parse::<u64>().ok());
    if said.is_some_and(|said| said != end) {
        log::debug!(
            "{}: a chunk answer says Range {}, not up to byte {end}; going on from our own offset",
            repo.host,
            range.unwrap_or_default()
        );
    }
}

/// `location` with `digest=` added to its query.
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_resolved_against_its_request() {
        let post = "http://reg:5000/v2/a/blobs/uploads/";
        for (location, whole) in [
            (
                "/v2/a/blobs/uploads/u?_state=x",
                "http://reg:5000/v2/a/blobs/uploads/u?_state=x",
            ),
            (
                "u?_state=x",
                "http://reg:5000/v2/a/blobs/uploads/u?_state=x",
            ),
            (
                "https://store.example/up/1?sig=s",
                "https://store.example/up/1?sig=s",
            ),
        ] {
            assert_eq!(resolve(post, location), whole, "{location}");
        }
        let at_store = "https://store.example/up/1?sig=s";
        assert_eq!(
            resolve(at_store, "/up/1?sig=t"),
            "https://store.example/up/1?sig=t"
        );
        assert_eq!(
            resolve(at_store, "2?sig=t"),
            "https://store.example/up/2?sig=t"
        );
        assert_eq!(
            resolve(at_store, "?sig=t"),
            "https://store.example/up/1?sig=t"
        );
    }

    #[test]
    fn a_blob_is_read_to_its_end_with_its_last_byte() {
        struct Counted<'a>(&'a [u8], usize);
        impl Read for Counted<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.1 += 1;
                self.0.read(buf)
            }
        }
        let mut inner = Counted(b"abcd", 0);
        let mut reader = ToTheEnd {
            inner: &mut inner,
            left: 4,
        };
        let mut buf = [0; 4];
        assert_eq!(reader.read(&mut buf).unwrap(), 4);
        assert_eq!(inner.1, 2, "the read that sees the end comes at once");
        let mut longer = ToTheEnd {
            inner: &b"abcde"[..],
            left: 4,
        };
        assert!(longer.read(&mut buf).is_err());
    }

    #[test]
    fn the_digest_joins_the_query() {
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u?_state=x", "sha256:1"),
            "http://r/v2/a/blobs/uploads/u?_state=x&digest=sha256:1"
        );
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u", "sha256:1"),
            "http://r/v2/a/blobs/uploads/u?digest=sha256:1"
        );
    }
}
