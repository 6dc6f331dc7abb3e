//! Manifests as registries hold them: the exact bytes, their media type and
//! their digest, never re-serialised JSON. `HEAD` for a digest, `GET` with
//! the digest checked against the bytes, `PUT` with the digest the registry
//! gave checked against ours; and, for the docker engine's freshness, the
//! image config digest an index leads to for one platform.

use std::io::Read;

use serde_json::Value;

use super::quirks::{HeadAnswer, Quirk};
use super::transport::{Body, Method, Request, header};
use super::{Client, Repository, fail, refused};
use crate::credentials::Credentials;
use crate::digest;
use crate::error::Error;
use crate::platform::{self, Platform};

/// The OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The manifest media types asked for.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest read (the distribution registry's own limit is 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

/// A manifest, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its bytes, exactly as the registry gave them.
    pub bytes: Vec<u8>,
    /// Its media type (`Content-Type`, else its `mediaType` field).
    pub media_type: String,
    /// The sha256 of its bytes.
    pub digest: String,
}

impl Manifest {
    /// A manifest of `bytes` with `media_type`.
    pub fn new(bytes: Vec<u8>, media_type: &str) -> Manifest {
        Manifest {
            digest: digest::sha256(&bytes),
            bytes,
            media_type: media_type.to_string(),
        }
    }

    /// Whether it is an index (OCI image index or docker manifest list).
    pub fn is_index(&self) -> bool {
        matches!(self.media_type.as_str(), OCI_INDEX | DOCKER_LIST)
    }

    /// Its JSON.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.bytes).map_err(|e| format!("manifest {}: {e}", self.digest))
    }
}

/// The media type a manifest's bytes declare in their `mediaType` field, if
/// they are JSON with one.
pub fn declared_type(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(String::from))
}

/// What a registry said to a manifest `PUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The digest it says it stored (`Docker-Content-Digest`).
    pub digest: Option<String>,
    /// Whether it answered with `OCI-Subject`: it keeps referrers itself.
    pub subject: bool,
}

impl Client {
    /// The digest of `repo:reference` by `HEAD`, or None when it does not
    /// exist. A registry without manifest `HEAD` (405, or 404 where a `GET`
    /// finds the manifest) is asked with `GET` instead, from then on.
    pub fn head_digest(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, Error> {
        if self.quirks.has(&repo.host, Quirk::NoManifestHead) {
            return self.digest_by_get(repo, reference, creds);
        }
        let path = format!("/v2/{}/manifests/{reference}", repo.path);
        let req = Request::new(Method::Head, &path).header("Accept", ACCEPT);
        let resp = self.send(repo, req, creds, &[])?;
        self.note_limit(repo, creds, &resp);
        let status = resp.status().as_u16();
        match self.quirks.head_answer(&repo.host, status) {
            HeadAnswer::Get => {
                self.no_head(repo, status);
                return self.digest_by_get(repo, reference, creds);
            }
            HeadAnswer::Confirm => return self.confirm_404(repo, reference, creds),
            HeadAnswer::Trust => {}
        }
        match status {
            200 => {
                self.quirks.note(&repo.host, Quirk::ManifestHead);
                header(&resp, "Docker-Content-Digest")
                    .map(Some)
                    .ok_or_else(|| {
                        fail(
                            repo,
                            format!("{path} answered without a Docker-Content-Digest header"),
                        )
                    })
            }
            404 => Ok(None),
            _ => Err(refused(repo, resp, &path)),
        }
    }

    /// The digest of `repo:reference` after a `HEAD` answered 404 by a
    /// host whose `HEAD` never answered 200: a `GET` tells whether that
    /// means "not there" or "no `HEAD`". One request asks it per host; the
    /// others that meet a 404 meanwhile wait for its answer and take it
    /// (a `GET` of their own when the host has no `HEAD`).
    fn confirm_404(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, Error> {
        let host = &repo.host;
        let learnt = || {
            if self.quirks.has(host, Quirk::NoManifestHead) {
                Some(true)
            } else {
                self.quirks.has(host, Quirk::ManifestHead).then_some(false)
            }
        };
        let lead = self.quirks.confirming(host, || learnt().is_some());
        match learnt() {
            Some(true) => return self.digest_by_get(repo, reference, creds),
            Some(false) => return Ok(None),
            None => {}
        }
        let _lead = lead;
        let found = self.digest_by_get(repo, reference, creds)?;
        match found {
            Some(_) => self.no_head(repo, 404),
            None => {
                self.quirks.note(host, Quirk::ManifestHead);
            }
        }
        Ok(found)
    }

    /// Notes that `repo`'s registry has no manifest `HEAD` (it answered
    /// `status`), saying so once.
    fn no_head(&self, repo: &Repository, status: u16) {
        if self.quirks.note(&repo.host, Quirk::NoManifestHead) {
            log::info!(
                "{}: answers a manifest HEAD with {status}; asking with GET from now on",
                repo.host
            );
        }
    }

    /// The digest of `repo:reference` by `GET`, for a registry without
    /// manifest `HEAD`.
    fn digest_by_get(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, Error> {
        Ok(self.get_manifest(repo, reference, creds)?.map(|m| m.digest))
    }

    /// The manifest `repo:reference` by `GET`, or None when it does not
    /// exist. Its bytes must hash to the digest asked for, or to the one the
    /// registry names.
    pub fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<Manifest>, Error> {
        let path = format!("/v2/{}/manifests/{reference}", repo.path);
        let req = Request::new(Method::Get, &path).header("Accept", ACCEPT);
        let mut resp = self.send(repo, req, creds, &[])?;
        self.note_limit(repo, creds, &resp);
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(refused(repo, resp, &path)),
        }
        let named = header(&resp, "Docker-Content-Digest");
        let content_type = header(&resp, "Content-Type");
        let mut bytes = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Network {
                host: repo.host.clone(),
                detail: format!("reading {path}: {e}"),
            })?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(fail(repo, format!("{path} is larger than 4 MiB")));
        }
        let media_type = content_type
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|t| !t.is_empty() && t != "application/json")
            .or_else(|| declared_type(&bytes))
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        let manifest = Manifest::new(bytes, &media_type);
        let expected = [Some(reference), named.as_deref()]
            .into_iter()
            .flatten()
            .find(|d| digest::is_sha256(d));
        match expected {
            Some(d) if d != manifest.digest => Err(fail(
                repo,
                format!(
                    "manifest {path} does not match its digest {d} (its bytes hash to {})",
                    manifest.digest
                ),
            )),
            _ => Ok(Some(manifest)),
        }
    }

    /// PUTs `manifest` as `repo:reference` (a tag, or its digest).
    pub fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        manifest: &Manifest,
        creds: Option<&Credentials>,
    ) -> Result<Stored, Error> {
        let path = format!("/v2/{}/manifests/{reference}", repo.path);
        let req = Request::new(Method::Put, &path)
            .header("Content-Type", manifest.media_type.clone())
            .body(Body::Bytes(&manifest.bytes));
        let resp = self.send(repo, req, creds, &[])?;
        if !matches!(resp.status().as_u16(), 200..=202) {
            let error = refused(repo, resp, &format!("PUT {path}"));
            return Err(refused_type(error, manifest));
        }
        Ok(Stored {
            digest: header(&resp, "Docker-Content-Digest"),
            subject: header(&resp, "OCI-Subject").is_some(),
        })
    }

    /// The image config digest (image ID) of `repo:reference` for `platform`,
    /// following an image index; None when the image or that platform does
    /// not exist.
    pub fn config_digest(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
        platform: &Platform,
    ) -> Result<Option<String>, Error> {
        let Some(manifest) = self.json_manifest(repo, reference, creds)? else {
            return Ok(None);
        };
        let manifest = match manifest.get("manifests").and_then(Value::as_array) {
            Some(entries) => match platform::pick(entries, platform) {
                Some(digest) => match self.json_manifest(repo, &digest, creds)? {
                    Some(m) => m,
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
            None => manifest,
        };
        Ok(manifest["config"]["digest"].as_str().map(String::from))
    }

    fn json_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<Value>, Error> {
        match self.get_manifest(repo, reference, creds)? {
            Some(m) => m.json().map(Some).map_err(|e| fail(repo, e)),
            None => Ok(None),
        }
    }
}

/// A manifest `PUT` refused with 415, or 400 `MANIFEST_INVALID`, which is
/// how registries say they do not take a media type: the error names the
/// type and what the operator can do; any other refusal is left as it is.
fn refused_type(error: Error, manifest: &Manifest) -> Error {
    let Error::Registry {
        host,
        status,
        code,
        detail,
        retry_after,
    } = error
    else {
        return error;
    };
    let of_type =
        status == Some(415) || (status == Some(400) && code.as_deref() == Some("MANIFEST_INVALID"));
    if !of_type {
        return Error::Registry {
            host,
            status,
            code,
            detail,
            retry_after,
        };
    }
    let way = if manifest.is_index() {
        "if it takes no indexes, set the registry's `platforms` to one platform: \
         that platform's image manifest is then pushed alone under the tag"
    } else {
        "picture-book pushes manifests as the source has them and does not convert them"
    };
    Error::Registry {
        detail: format!(
            "{detail}; {host} refused the media type {}: {way}",
            manifest.media_type
        ),
        host,
        status,
        code,
        retry_after,
    }
}

/// What a registry knows of the manifests that refer to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Referrers {
    /// It has the OCI referrers API, which lists these descriptors.
    Listed(Vec<Value>),
    /// It has no referrers API (404): the fallback tag is the way.
    NoApi,
}

impl Client {
    /// `GET /v2/<name>/referrers/<digest>`: the descriptors of the manifests
    /// whose `subject` is `digest`, or that the registry has no such API.
    pub fn referrers(
        &self,
        repo: &Repository,
        digest: &str,
        creds: Option<&Credentials>,
    ) -> Result<Referrers, Error> {
        let path = format!("/v2/{}/referrers/{digest}", repo.path);
        let req = Request::new(Method::Get, &path).header("Accept", OCI_INDEX);
        let mut resp = self.send(repo, req, creds, &[])?;
        match resp.status().as_u16() {
            200 => {}
            404 | 405 => return Ok(Referrers::NoApi),
            _ => return Err(refused(repo, resp, &path)),
        }
        let mut bytes = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(MAX_MANIFEST)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Network {
                host: repo.host.clone(),
                detail: format!("reading {path}: {e}"),
            })?;
        let index: Value = serde_json::from_slice(&bytes)
            .map_err(|e| fail(repo, format!("{path} is not an index: {e}")))?;
        Ok(Referrers::Listed(
            index["manifests"].as_array().cloned().unwrap_or_default(),
        ))
    }

    /// Every tag of `repo` (`GET /v2/<name>/tags/list`, following `Link`
    /// pages), at most `limit` of them; none when the repository is missing.
    pub fn tags(
        &self,
        repo: &Repository,
        creds: Option<&Credentials>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        match self.listed_tags(repo, creds, limit) {
            Err(Error::RepositoryMissing { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Every tag of `repo`, following `Link` pages; an error when the
    /// repository is missing, and when it has more than `limit` tags (a
    /// `Link` that loops ends there too), so that memory stays bounded.
    pub fn all_tags(
        &self,
        repo: &Repository,
        creds: Option<&Credentials>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let tags = self.listed_tags(repo, creds, limit + 1)?;
        if tags.len() > limit {
            return Err(fail(
                repo,
                format!(
                    "{} lists more than {limit} tags (or its Link pages loop); refused",
                    repo.path
                ),
            ));
        }
        Ok(tags)
    }

    /// The tags of `repo`, at most `limit`; a 404 is `RepositoryMissing`.
    fn listed_tags(
        &self,
        repo: &Repository,
        creds: Option<&Credentials>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let mut tags = Vec::new();
        let mut next = Some(format!("/v2/{}/tags/list?n=1000", repo.path));
        while let Some(path) = next.take().filter(|_| tags.len() < limit) {
            let mut resp = self.send(repo, Request::new(Method::Get, &path), creds, &[])?;
            match resp.status().as_u16() {
                200 => {}
                404 => {
                    return Err(Error::RepositoryMissing {
                        host: repo.host.clone(),
                        message: format!(
                            "{}/{}: no such repository (the registry answered 404 to {path})",
                            repo.host, repo.path
                        ),
                    });
                }
                _ => return Err(refused(repo, resp, &path)),
            }
            next = header(&resp, "Link").and_then(|l| next_page(&l));
            let mut text = String::new();
            resp.body_mut()
                .as_reader()
                .take(MAX_MANIFEST)
                .read_to_string(&mut text)
                .map_err(|e| Error::Network {
                    host: repo.host.clone(),
                    detail: format!("reading {path}: {e}"),
                })?;
            let page: Value = serde_json::from_str(&text)
                .map_err(|e| fail(repo, format!("{path} is not a tag list: {e}")))?;
            tags.extend(
                page["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from),
            );
        }
        tags.truncate(limit);
        Ok(tags)
    }
}

/// The path of the next page a `Link: </v2/...>; rel="next"` header names.
fn next_page(link: &str) -> Option<String> {
    let (target, params) = link.split_once(';')?;
    params
        .contains("rel=\"next\"")
        .then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|p| p.starts_with("/v2/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_media_type_is_named_with_the_way_out() {
        let refusal = |status: u16, code: Option<&str>| Error::Registry {
            host: "reg:5000".into(),
            status: Some(status),
            code: code.map(String::from),
            detail: format!("{status} for PUT /v2/a/manifests/1: refused"),
            retry_after: None,
        };
        let index = Manifest::new(b"{}".to_vec(), OCI_INDEX);
        let told = refused_type(refusal(400, Some("MANIFEST_INVALID")), &index).to_string();
        assert!(
            told.contains(&format!("refused the media type {OCI_INDEX}")),
            "{told}"
        );
        assert!(
            told.contains("set the registry's `platforms` to one platform"),
            "{told}"
        );
        let image = Manifest::new(b"{}".to_vec(), OCI_MANIFEST);
        let told = refused_type(refusal(415, None), &image).to_string();
        assert!(
            told.contains(&format!("refused the media type {OCI_MANIFEST}")),
            "{told}"
        );
        assert!(!told.contains("platforms"), "{told}");
        for other in [
            refusal(400, Some("MANIFEST_BLOB_UNKNOWN")),
            refusal(403, None),
        ] {
            let told = refused_type(other, &index).to_string();
            assert!(!told.contains("media type"), "{told}");
        }
    }

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        assert_eq!(
            next_page(r#"</v2/a/tags/list?last=x&n=1000>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=1000")
        );
        assert_eq!(next_page(r#"<https://evil/v2/x>; rel="next""#), None);
        assert_eq!(next_page("nonsense"), None);
    }
}
