//! What a registry was found to do differently from the distribution
//! registry, remembered per host for the rest of the process (a `load`, or
//! a `sync` until it restarts), so that a fallback is found once and then
//! taken straight away. Each quirk is learnt from an answer, never assumed:
//! a normal registry never pays for a fallback (a manifest `GET` counts
//! against Docker Hub's pull limit where a `HEAD` does not). What one
//! answer settles is asked once per host, not once per worker.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::inflight::{InFlight, Lead};
use crate::mutex::lock;

/// One thing a registry was seen to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quirk {
    /// It answered a manifest `HEAD` with 200: its 404s mean "not there".
    ManifestHead,
    /// It has no manifest `HEAD`: it answered 405, or 404 where a `GET` of
    /// the same reference found the manifest.
    NoManifestHead,
    /// It refused a blob in one `PUT` (400, 405, 413): chunks go there.
    NoSingleUpload,
    /// It refused a chunk `PATCH` (400, 405, 415): whole `PUT`s go there.
    NoChunkedUpload,
    /// It deleted a tag by name (OCI 1.1).
    TagDelete,
    /// It answered a tag `DELETE` with 400: it deletes manifests by digest
    /// only, and every tag of the digest with them.
    NoTagDelete,
}

/// The quirks seen so far, by host.
#[derive(Default)]
pub struct Quirks {
    seen: Mutex<HashSet<(String, Quirk)>>,
    /// Hosts whose manifest `HEAD` 404 a `GET` is confirming.
    confirming: InFlight<String>,
}

impl Quirks {
    /// Whether `host` was seen to do `quirk`.
    pub fn has(&self, host: &str, quirk: Quirk) -> bool {
        lock(&self.seen).contains(&(host.to_string(), quirk))
    }

    /// Notes that `host` does `quirk`; true the first time, so that a
    /// fallback is said once.
    pub fn note(&self, host: &str, quirk: Quirk) -> bool {
        lock(&self.seen).insert((host.to_string(), quirk))
    }

    /// The lead of the `GET` that confirms a manifest `HEAD` 404 of
    /// `host`, unless `settled()`: None once it is (at once, or after
    /// waiting for another's `GET`).
    pub fn confirming(
        &self,
        host: &str,
        settled: impl FnMut() -> bool,
    ) -> Option<Lead<'_, String>> {
        self.confirming.lead_unless(&host.to_string(), settled)
    }
}

impl super::Client {
    /// Whether `host` was seen to do `quirk` in this process.
    pub fn has_quirk(&self, host: &str, quirk: Quirk) -> bool {
        self.quirks.has(host, quirk)
    }

    /// Notes that `host` does `quirk`; true the first time.
    pub fn note_quirk(&self, host: &str, quirk: Quirk) -> bool {
        self.quirks.note(host, quirk)
    }
}

/// What to make of a manifest `HEAD` answered `status` by a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadAnswer {
    /// Take the answer as it is.
    Trust,
    /// The host has no `HEAD`: ask with `GET`.
    Get,
    /// A 404 from a host whose `HEAD` never answered 200: a `GET` of the
    /// same reference tells whether it means "not there" or "no `HEAD`".
    Confirm,
}

impl Quirks {
    /// What to make of a manifest `HEAD` answered `status` by `host`.
    pub fn head_answer(&self, host: &str, status: u16) -> HeadAnswer {
        match status {
            405 => HeadAnswer::Get,
            404 if self.has(host, Quirk::ManifestHead) => HeadAnswer::Trust,
            404 => HeadAnswer::Confirm,
            _ => HeadAnswer::Trust,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quirk_is_noted_once_per_host() {
        let quirks = Quirks::default();
        assert!(!quirks.has("a:5000", Quirk::NoManifestHead));
        assert!(quirks.note("a:5000", Quirk::NoManifestHead));
        assert!(!quirks.note("a:5000", Quirk::NoManifestHead), "said once");
        assert!(quirks.has("a:5000", Quirk::NoManifestHead));
        assert!(!quirks.has("b:5000", Quirk::NoManifestHead));
        assert!(!quirks.has("a:5000", Quirk::NoChunkedUpload));
    }

    #[test]
    fn a_head_404_is_confirmed_only_until_the_host_answered_200() {
        let quirks = Quirks::default();
        assert_eq!(quirks.head_answer("h", 405), HeadAnswer::Get);
        assert_eq!(quirks.head_answer("h", 404), HeadAnswer::Confirm);
        assert_eq!(quirks.head_answer("h", 200), HeadAnswer::Trust);
        assert_eq!(quirks.head_answer("h", 401), HeadAnswer::Trust);
        quirks.note("h", Quirk::ManifestHead);
        assert_eq!(quirks.head_answer("h", 404), HeadAnswer::Trust);
        assert_eq!(quirks.head_answer("other", 404), HeadAnswer::Confirm);
    }
}
