//! Blobs (image configs and layers) by digest: `HEAD` for presence, a
//! cross-repository mount, a streamed `GET`, and the two upload paths the
//! OCI distribution spec has: one `PUT` of the whole blob, or `PATCH`es of
//! chunks with `Content-Range` and a final `PUT`. Streams are never held in
//! memory; checking what they hash to is the caller's business.

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
            202 => self.upload_of(repo, &resp, &path).map(Mounted::Upload),
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
            202 => self.upload_of(repo, &resp, &path),
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
        Ok(BlobStream {
            reader: Box::new(resp.into_body().into_reader()),
            length,
        })
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
                let next = self.upload_of(repo, &resp, "PATCH")?;
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

    /// The upload a 202 answer opened: its `Location` made a whole URL.
    fn upload_of(
        &self,
        repo: &Repository,
        resp: &ureq::http::Response<ureq::Body>,
        what: &str,
    ) -> Result<Upload, Error> {
        let location = header(resp, "Location")
            .filter(|l| !l.is_empty())
            .ok_or_else(|| fail(repo, format!("{what} answered 202 without a Location")))?;
        let location = if location.contains("://") {
            location
        } else {
            let scheme = self.transport.scheme(&repo.host).unwrap_or("https");
            let slash = if location.starts_with('/') { "" } else { "/" };
            format!("{scheme}://{}{slash}{location}", repo.host)
        };
        let min_chunk = header(resp, "OCI-Chunk-Min-Length").and_then(|l| l.parse().ok());
        Ok(Upload {
            location,
            min_chunk,
        })
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
