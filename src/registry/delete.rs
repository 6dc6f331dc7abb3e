//! Deleting manifests (`DELETE /v2/<name>/manifests/<reference>`), by tag
//! or by digest, and what the registry's answer means: deleted, already
//! gone, deletes refused, or tags deleted only with their digest. Whether
//! to delete is `run::prune`'s business.

use super::quirks::Quirk;
use super::transport::{Method, Request};
use super::{Client, Repository, refused};
use crate::credentials::Credentials;
use crate::digest;
use crate::error::Error;

/// What a registry did with a manifest `DELETE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// 202 (or 200): the tag, or the manifest and every tag of it, is gone.
    Deleted,
    /// 404: it was not there.
    Gone,
    /// A tag `DELETE` answered 400: the registry deletes a manifest by its
    /// digest only, and with it every tag of that digest (distribution 2.8).
    DigestOnly,
    /// 405 or `UNSUPPORTED`, 403 or `DENIED`: the registry refuses deletes
    /// (a 405 to a tag may refuse tag deletes alone).
    Refused {
        /// Its status.
        status: u16,
        /// Its answer, for messages.
        answer: String,
    },
}

impl Client {
    /// Deletes `repo:reference`, a tag or a digest, and says what became
    /// of it; an answer that says none of that is an error. A registry that
    /// deleted a tag, or deletes by digest only, is remembered as such (see
    /// [`Client::deletes_tags`]).
    pub fn delete_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Deletion, Error> {
        let path = format!("/v2/{}/manifests/{reference}", repo.path);
        let resp = self.send(repo, Request::new(Method::Delete, &path), creds, &[])?;
        let status = resp.status().as_u16();
        let is_tag = !digest::is_sha256(reference);
        if matches!(status, 200 | 202 | 404) {
            if is_tag && status != 404 {
                self.quirks.note(&repo.host, Quirk::TagDelete);
            }
            return Ok(if status == 404 {
                Deletion::Gone
            } else {
                Deletion::Deleted
            });
        }
        let error = refused(repo, resp, &format!("DELETE {path}"));
        let deletion = classify(status, error_code(&error), is_tag, error.to_string());
        if deletion == Some(Deletion::DigestOnly) {
            self.quirks.note(&repo.host, Quirk::NoTagDelete);
        }
        deletion.ok_or(error)
    }

    /// Whether `host` deletes tags by name: `Some(true)` once it deleted
    /// one, `Some(false)` once it answered that it deletes by digest only,
    /// None while that is not known in this process.
    pub fn deletes_tags(&self, host: &str) -> Option<bool> {
        if self.quirks.has(host, Quirk::TagDelete) {
            Some(true)
        } else if self.quirks.has(host, Quirk::NoTagDelete) {
            Some(false)
        } else {
            None
        }
    }
}

/// The OCI error code of a registry's refusal.
fn error_code(error: &Error) -> Option<&str> {
    match error {
        Error::Registry { code, .. } => code.as_deref(),
        _ => None,
    }
}

/// What a refusal of a `DELETE` (`status`, `code`; of a tag when `is_tag`)
/// means, when it means one of [`Deletion`]'s answers; `text` says it.
fn classify(status: u16, code: Option<&str>, is_tag: bool, text: String) -> Option<Deletion> {
    match (status, code) {
        (403 | 405, _) | (_, Some("UNSUPPORTED" | "DENIED")) => Some(Deletion::Refused {
            status,
            answer: text,
        }),
        (400, _) if is_tag => Some(Deletion::DigestOnly),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(status: u16, code: Option<&str>, is_tag: bool) -> Option<Deletion> {
        classify(status, code, is_tag, "answer".into())
    }

    #[test]
    fn refusals_are_told_apart_by_status_and_code() {
        let refused = |status| {
            Some(Deletion::Refused {
                status,
                answer: "answer".into(),
            })
        };
        assert_eq!(said(405, Some("UNSUPPORTED"), true), refused(405));
        assert_eq!(said(405, None, false), refused(405));
        assert_eq!(said(403, Some("DENIED"), false), refused(403));
        assert_eq!(said(400, Some("UNSUPPORTED"), false), refused(400));
        assert_eq!(
            said(400, Some("DIGEST_INVALID"), true),
            Some(Deletion::DigestOnly),
            "distribution 2.8 answers a tag DELETE so"
        );
        assert_eq!(said(400, Some("DIGEST_INVALID"), false), None);
        assert_eq!(said(401, Some("UNAUTHORIZED"), true), None);
        assert_eq!(said(500, None, true), None);
    }
}
