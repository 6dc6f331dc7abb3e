//! Whether a target already holds its source's image, decided from the
//! registry API without pulling, as the engine says: a `HEAD` of the source
//! and of the target, then, for the native engine, equal digests (or the
//! digests recorded when a platform-filtered index was copied); for the CLI
//! engines, what the state file recorded at the last mirror, and without a
//! record the image config digests (what survives docker's pull and push),
//! compared by `GET`. Moving images is the engines' business.

use std::collections::BTreeMap;

use chrono::Local;

use crate::credentials::Credentials;
use crate::display::rfc3339;
use crate::engine::{Access, Freshness};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{Client, Repository};
use crate::run::state::{Record, StateFile};

/// The decision for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The target holds the source's image; nothing to do.
    UpToDate(String),
    /// The image must be mirrored, for this reason.
    Mirror(String),
    /// The target refuses the push credentials: mirroring would pull for
    /// nothing. The text says which key to look at.
    Refused(String),
}

/// What the check saw, kept so a successful mirror can be recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The source's manifest digest (by `HEAD`, or pinned in the reference).
    pub source_digest: Option<String>,
}

/// Everything a check needs, for one run over one target registry.
pub struct Checker<'a> {
    /// The registry client.
    pub client: &'a Client,
    /// How the engine decides freshness.
    pub freshness: &'a Freshness,
    /// The run's state.
    pub state: &'a StateFile,
    /// Credentials and insecurity for the hosts of the run.
    pub access: &'a Access,
    /// Pulls of a rate-limited source kept unspent (`rateLimitMin`).
    pub rate_limit_min: u64,
    /// Whether the run is asked to stop (ends a wait for a rate limit).
    pub stop: &'a (dyn Fn() -> bool + Sync),
}

impl Checker<'_> {
    /// Decides whether `source` must be mirrored to `target` (`host/path:tag`).
    /// Every failure to find out means "mirror", with the reason.
    pub fn check(&self, source: &Reference, target: &str) -> (Verdict, Seen) {
        let (src_repo, dst_repo, tag) = self.repositories(source, target);
        let src_creds = self.access.pull(&src_repo.host);
        let source_digest = match self.source_digest(source, &src_repo, src_creds.as_ref()) {
            Ok(digest) => digest,
            Err(verdict) => return (verdict, Seen::default()),
        };
        let seen = Seen {
            source_digest: Some(source_digest.clone()),
        };
        let target_digest = match self.target_digest(&dst_repo, &tag) {
            Ok(digest) => digest,
            Err(verdict) => return (verdict, seen),
        };
        let digests = Digests {
            source: &source_digest,
            target: &target_digest,
        };
        let verdict = match self.freshness {
            Freshness::SameDigest => self.same_digest(target, digests.source, digests.target),
            Freshness::SameConfig(platform) => match self.state.get(target) {
                Some(record) => since_recorded(&record, &digests),
                None => {
                    let sides = Sides {
                        src: &src_repo,
                        src_creds: src_creds.as_ref(),
                        dst: &dst_repo,
                        tag: &tag,
                    };
                    self.same_config(source, target, &sides, &digests, platform)
                }
            },
        };
        (verdict, seen)
    }

    /// The source's manifest digest, pinned or by `HEAD`; else why the
    /// image must be mirrored.
    fn source_digest(
        &self,
        source: &Reference,
        repo: &Repository,
        creds: Option<&Credentials>,
    ) -> Result<String, Verdict> {
        let digest = match source.digest() {
            Some(pinned) => Ok(Some(pinned.to_string())),
            None => self.client.head_digest(repo, &source.target_tag(), creds),
        };
        match digest {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(Verdict::Mirror("not found at the source".into())),
            Err(e) => Err(Verdict::Mirror(format!("cannot check the source: {e}"))),
        }
    }

    /// The target's manifest digest under `tag`; else why the image must be
    /// mirrored, or that the target refuses the push credentials.
    fn target_digest(&self, repo: &Repository, tag: &str) -> Result<String, Verdict> {
        match self.client.head_digest(repo, tag, self.access.push()) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(Verdict::Mirror("not at the target".into())),
            Err(e) if matches!(e.http_status(), Some(401 | 403)) => Err(self.refused(repo, &e)),
            Err(e) => Err(Verdict::Mirror(format!("cannot check the target: {e}"))),
        }
    }

    /// The CLI engines' verdict without a record: the image config digests
    /// for `platform` compared (what survives docker's pull and push),
    /// recorded when equal.
    fn same_config(
        &self,
        source: &Reference,
        target: &str,
        sides: &Sides<'_>,
        digests: &Digests<'_>,
        platform: &Platform,
    ) -> Verdict {
        let pull_ref = source
            .digest()
            .map_or_else(|| source.target_tag(), String::from);
        let Sides {
            src: src_repo,
            src_creds,
            dst: dst_repo,
            tag,
        } = *sides;
        if let Err(e) = self.paced(src_repo, &pull_ref, src_creds) {
            return Verdict::Mirror(format!("cannot compare images: {e}"));
        }
        let source_config = self
            .client
            .config_digest(src_repo, &pull_ref, src_creds, platform);
        let target_config = self
            .client
            .config_digest(dst_repo, tag, self.access.push(), platform);
        match (source_config, target_config) {
            (Ok(Some(a)), Ok(Some(b))) if a == b => {
                self.state
                    .set(target, record(source, digests.source, digests.target));
                Verdict::UpToDate(format!("the target holds the same image ({})", short(&a)))
            }
            (Ok(Some(_)), Ok(Some(_))) => {
                Verdict::Mirror("the target holds a different image".into())
            }
            (Ok(None), _) => Verdict::Mirror(format!("no {platform} image at the source")),
            (_, Ok(None)) => {
                Verdict::Mirror("the target's image is not one docker can compare".into())
            }
            (Err(e), _) | (_, Err(e)) => Verdict::Mirror(format!("cannot compare images: {e}")),
        }
    }

    /// Waits before a manifest `GET` of the source while its pull limit is
    /// at `rateLimitMin` (see `registry::limits`).
    fn paced(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<(), crate::error::Error> {
        let pace = crate::registry::limits::Pace {
            floor: self.rate_limit_min,
            wait: Some(&|d| crate::run::retry::sleep(d, self.stop)),
        };
        self.client.before_pull(repo, reference, creds, &pace)
    }

    /// The native engine's verdict: the target holds the source's manifest
    /// when the digests are equal, or equal those recorded when a filtered
    /// index (which has a digest of its own) was copied.
    fn same_digest(&self, target: &str, source: &str, at_target: &str) -> Verdict {
        if source == at_target {
            return Verdict::UpToDate(format!("the same digest, {}", short(source)));
        }
        match self.state.get(target) {
            Some(r) if r.source_digest == source && r.target_digest == at_target => {
                Verdict::UpToDate("unchanged since it was mirrored (filtered by platforms)".into())
            }
            _ => Verdict::Mirror(format!(
                "the target holds another manifest ({} at the source, {} at the target)",
                short(source),
                short(at_target)
            )),
        }
    }

    /// The verdict for a target that answered 401 or 403 (`e`) with the push
    /// credentials, naming the key that gives them.
    fn refused(&self, repo: &Repository, e: &crate::error::Error) -> Verdict {
        let status = e.http_status().unwrap_or_default();
        let host = &repo.host;
        Verdict::Refused(match (status, self.access.push()) {
            (403, _) => format!(
                "{host} denies pushing to {} (403): give the user of pushAuthConfig push access there",
                repo.path
            ),
            (_, Some(_)) => {
                format!("{host} refused the push credentials (401): check pushAuthConfig")
            }
            (_, None) => format!(
                "{host} asks for credentials (401) and none are configured for it: set pushAuthConfig"
            ),
        })
    }

    /// What `--force` needs to record a mirror afterwards: the source's
    /// digest, pinned or by `HEAD` (nothing when that fails).
    pub fn source_seen(&self, source: &Reference) -> Seen {
        let source_digest = match source.digest() {
            Some(pinned) => Some(pinned.to_string()),
            None => {
                let repo = self.access.source(source);
                let creds = self.access.pull(&repo.host);
                self.client
                    .head_digest(&repo, &source.target_tag(), creds.as_ref())
                    .ok()
                    .flatten()
            }
        };
        Seen { source_digest }
    }

    /// After docker was told "too many requests", asks the registry again
    /// with a `HEAD` of the manifest (Docker Hub does not count those as
    /// pulls); the client waits as long as its `Retry-After` says (see
    /// `registry`), so this returns once it serves again or has said enough.
    pub fn wait_until_served(&self, source: &Reference, target: &str, at_source: bool) {
        let (src, dst, tag) = self.repositories(source, target);
        let asked = if at_source {
            let creds = self.access.pull(&src.host);
            let reference = source
                .digest()
                .map_or_else(|| source.target_tag(), String::from);
            self.client.head_digest(&src, &reference, creds.as_ref())
        } else {
            self.client.head_digest(&dst, &tag, self.access.push())
        };
        if let Err(e) = asked {
            log::debug!(
                "asking whether {} serves again: {e}",
                if at_source { &src.host } else { &dst.host }
            );
        }
    }

    /// Records a successful mirror: the source digest seen before the pull
    /// and the digest the push gave the target (or, failing that, a `HEAD`).
    pub fn record_mirrored(
        &self,
        source: &Reference,
        target: &str,
        seen: &Seen,
        pushed: Option<&str>,
        referred: &BTreeMap<String, String>,
    ) {
        let Some(source_digest) = &seen.source_digest else {
            return;
        };
        let target_digest = match pushed {
            Some(d) => Some(d.to_string()),
            None => {
                let (_, dst_repo, tag) = self.repositories(source, target);
                self.client
                    .head_digest(&dst_repo, &tag, self.access.push())
                    .ok()
                    .flatten()
            }
        };
        if let Some(target_digest) = target_digest {
            let mut record = record(source, source_digest, &target_digest);
            record.referrers = referred.clone();
            self.state.set(target, record);
        }
    }

    /// Up to date, without a request, when the state file records `target`
    /// mirrored from `source` (an immutable tag does not change); None
    /// when it records nothing for them.
    pub fn recorded(&self, source: &Reference, target: &str) -> Option<Verdict> {
        let record = self.state.get(target)?;
        (record.source == source.identity()).then(|| {
            Verdict::UpToDate(format!(
                "immutable: mirrored {} as {}, not asked again",
                record.recorded,
                short(&record.target_digest)
            ))
        })
    }

    /// What referred to `target`'s subjects when they were last looked at.
    pub fn referred(&self, target: &str) -> BTreeMap<String, String> {
        self.state
            .get(target)
            .map(|r| r.referrers)
            .unwrap_or_default()
    }

    /// Records what refers to `target`'s subjects now, for an image that was
    /// up to date: in its record, or in a new one (the native engine needs
    /// none to tell an image up to date, the referrers' fingerprints do).
    pub fn record_referred(
        &self,
        source: &Reference,
        target: &str,
        seen: &Seen,
        referred: BTreeMap<String, String>,
    ) {
        let existing = self.state.get(target);
        let mut record = match (existing, &seen.source_digest) {
            (Some(r), _) => r,
            (None, Some(digest)) => record(source, digest, digest),
            (None, None) => return,
        };
        if record.referrers != referred {
            record.referrers = referred;
            self.state.set(target, record);
        }
    }

    fn repositories(&self, source: &Reference, target: &str) -> (Repository, Repository, String) {
        let (name, tag) = target.rsplit_once(':').unwrap_or((target, "latest"));
        (
            self.access.source(source),
            self.access.target(name),
            tag.to_string(),
        )
    }
}

/// The two repositories a check compares, with the source's credentials.
#[derive(Clone, Copy)]
struct Sides<'s> {
    src: &'s Repository,
    src_creds: Option<&'s Credentials>,
    dst: &'s Repository,
    tag: &'s str,
}

/// The manifest digests of the source and of the target, as the check saw
/// them.
struct Digests<'d> {
    source: &'d str,
    target: &'d str,
}

/// The CLI engines' verdict from the record of the last mirror: up to date
/// while neither side changed since.
fn since_recorded(record: &Record, digests: &Digests<'_>) -> Verdict {
    if record.source_digest != digests.source {
        Verdict::Mirror(format!(
            "the source changed ({} -> {})",
            short(&record.source_digest),
            short(digests.source)
        ))
    } else if record.target_digest != digests.target {
        Verdict::Mirror(format!(
            "the target changed ({} -> {})",
            short(&record.target_digest),
            short(digests.target)
        ))
    } else {
        Verdict::UpToDate("unchanged since it was mirrored".into())
    }
}

fn record(source: &Reference, source_digest: &str, target_digest: &str) -> Record {
    Record {
        source: source.identity(),
        source_digest: source_digest.to_string(),
        target_digest: target_digest.to_string(),
        recorded: rfc3339(&Local::now()),
        referrers: BTreeMap::new(),
    }
}

/// `sha256:0123456789ab` for messages.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn recorded(source: &str, target: &str) -> Record {
        let reference = Reference::parse("src.example/a:1").unwrap();
        record(&reference, source, target)
    }

    /// A check against a target on 127.0.0.1:1, where nothing answers, with
    /// a state file of its own.
    fn with_checker(name: &str, freshness: Freshness, test: impl FnOnce(&Checker<'_>)) {
        let dir = std::env::temp_dir().join(format!("pb-fresh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = "registries:\n  - hostname: 127.0.0.1:1\n    repository: m\n    syncerScript: /bin/sh\n";
        let config = crate::config::parse(yaml, &dir.join("c.yaml")).unwrap();
        let access = Access::of(&config.registries[0], true);
        let state = StateFile::load(&dir, "127.0.0.1:1");
        let client = Client::default();
        let checker = Checker {
            client: &client,
            freshness: &freshness,
            state: &state,
            access: &access,
            rate_limit_min: 0,
            stop: &|| false,
        };
        test(&checker);
    }

    #[test]
    fn a_record_tells_up_to_date_while_neither_side_changed() {
        let digests = |source, target| Digests { source, target };
        assert_eq!(
            since_recorded(&recorded(A, B), &digests(A, B)),
            Verdict::UpToDate("unchanged since it was mirrored".into())
        );
        assert!(matches!(
            since_recorded(&recorded(A, B), &digests(B, B)),
            Verdict::Mirror(r) if r.starts_with("the source changed")
        ));
        assert!(matches!(
            since_recorded(&recorded(A, B), &digests(A, A)),
            Verdict::Mirror(r) if r.starts_with("the target changed")
        ));
    }

    #[test]
    fn equal_digests_or_those_recorded_for_a_filtered_index_are_up_to_date() {
        with_checker("digest", Freshness::SameDigest, |checker| {
            let target = "127.0.0.1:1/m/a:1";
            assert!(matches!(
                checker.same_digest(target, A, A),
                Verdict::UpToDate(_)
            ));
            assert!(matches!(
                checker.same_digest(target, A, B),
                Verdict::Mirror(_)
            ));
            checker.state.set(target, recorded(A, B));
            assert_eq!(
                checker.same_digest(target, A, B),
                Verdict::UpToDate("unchanged since it was mirrored (filtered by platforms)".into())
            );
        });
    }

    #[test]
    fn a_source_that_cannot_be_asked_means_mirror() {
        with_checker("unreachable", Freshness::SameDigest, |checker| {
            let source = Reference::parse("127.0.0.1:1/a:1").unwrap();
            let (verdict, seen) = checker.check(&source, "127.0.0.1:1/m/a:1");
            assert!(
                matches!(&verdict, Verdict::Mirror(r) if r.starts_with("cannot check the source")),
                "{verdict:?}"
            );
            assert_eq!(seen, Seen::default());
        });
    }
}
