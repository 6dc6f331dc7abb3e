//! Pruning, after a run with `prune` (or `load --prune`): removing at the
//! target the tags picture-book recorded as mirrored there that the
//! listing no longer names, when they are unchanged since, and forgetting
//! their records. It asks the target what each tag holds, deletes by tag
//! (or by digest, where the registry deletes only so and no tag that stays
//! holds the digest), and fills the report's `pruned` and `pruneSkipped`;
//! a dry run asks but deletes nothing. Whether the listing can be trusted
//! is `listed`'s to say, what may be pruned is decided in `decide`, without
//! I/O, and what refers to a pruned image goes in `referrers`.

pub mod decide;
mod listed;
mod referrers;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::config::Registry;
use crate::digest::short;
use crate::engine::Access;
use crate::listing::entries::MAX_LISTED_TAGS;
use crate::registry::{Client, Deletion, Repository};
use crate::run::report::RegistryReport;
use crate::run::state::{Record, StateFile};
use decide::{AtTarget, Staying, Verdict};
pub use listed::{Listed, incomplete, layout_incomplete, unlisted};

/// What pruning needs of the run.
pub struct Pruning<'a> {
    /// The registry, whose `prune` and `pruneLimit` are read.
    pub registry: &'a Registry,
    /// The registry client.
    pub client: &'a Client,
    /// The push credentials and insecurity of the target.
    pub access: &'a Access,
    /// What was recorded as mirrored, and where pruned records are forgotten.
    pub state: &'a StateFile,
    /// Ask, but delete and forget nothing.
    pub dry_run: bool,
    /// Prune beyond `pruneLimit`.
    pub force: bool,
}

/// Prunes what `listed` no longer names, when the registry prunes, and
/// tells it in `report` (`pruned`, `pruneSkipped`, warnings).
pub fn prune(p: &Pruning<'_>, listed: &Listed, report: &mut RegistryReport) {
    if !p.registry.prune {
        return;
    }
    let records = p.state.records();
    let candidates = decide::candidates(&records, &listed.targets);
    if candidates.is_empty() {
        return;
    }
    let decision = match decide::untrusted(&listed.incomplete) {
        Some(why) => decide::keep_all(&candidates, &why),
        None => {
            let seen: Vec<AtTarget> = candidates.iter().map(|c| p.at_target(&c.target)).collect();
            let limit = p
                .registry
                .prune_limit
                .unwrap_or_else(|| decide::default_limit(records.len()));
            decide::decide(&candidates, &seen, limit, p.force)
        }
    };
    let host = &p.registry.hostname;
    for target in &decision.forget {
        log::info!("{host}: {target} is gone from the target already; forgetting it");
        p.forget(target);
    }
    if let Some(warning) = decision.warning {
        log::warn!("{host}: {warning}");
        report.warnings.push(warning);
    }
    let mut deleter = Deleter {
        p,
        records,
        pruning: decision.prune.iter().map(|v| v.tag.clone()).collect(),
        staying: BTreeMap::new(),
        deleted: BTreeSet::new(),
        kept: BTreeSet::new(),
        referring: Vec::new(),
        refused: None,
        report,
    };
    deleter.report.prune_skipped.extend(decision.keep);
    for verdict in decision.prune {
        deleter.one(verdict);
    }
    deleter.referrers_last();
}

impl Pruning<'_> {
    /// What the target holds under `target` now.
    fn at_target(&self, target: &str) -> AtTarget {
        let (repo, tag) = self.split(target);
        match self.client.head_digest(&repo, tag, self.access.push()) {
            Ok(Some(d)) => AtTarget::Digest(d),
            Ok(None) => AtTarget::Gone,
            Err(e) => AtTarget::Unknown(e.to_string()),
        }
    }

    /// Forgets the record of `target`, unless this is a dry run.
    fn forget(&self, target: &str) {
        if !self.dry_run {
            self.state.forget(target);
        }
    }

    /// The repository and tag of `target` (`host/path:tag`).
    fn split<'t>(&self, target: &'t str) -> (Repository, &'t str) {
        let (name, tag) = target.rsplit_once(':').unwrap_or((target, "latest"));
        (self.access.target(name), tag)
    }

    /// What each tag of `repo` that stays holds: every tag but those
    /// being pruned (`pruning`, as `host/path:tag`).
    fn staying(
        &self,
        repo: &Repository,
        name: &str,
        pruning: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Staying>, String> {
        let creds = self.access.push();
        let tags = self
            .client
            .all_tags(repo, creds, MAX_LISTED_TAGS)
            .map_err(|e| e.to_string())?;
        let mut staying = BTreeMap::new();
        for tag in tags {
            if pruning.contains(&format!("{name}:{tag}")) {
                continue;
            }
            let manifest = self
                .client
                .get_manifest(repo, &tag, creds)
                .map_err(|e| e.to_string())?;
            if let Some(m) = manifest {
                let children = if m.is_index() {
                    listed_digests(&m.json()?)
                } else {
                    Vec::new()
                };
                staying.insert(
                    tag,
                    Staying {
                        digest: m.digest,
                        children,
                    },
                );
            }
        }
        Ok(staying)
    }
}

/// The deletes of one run, and what they learnt: which tags of each
/// repository stay, which digests went, whether the target refuses.
struct Deleter<'a, 'r> {
    p: &'a Pruning<'a>,
    /// What was recorded as mirrored, by target.
    records: BTreeMap<String, Record>,
    /// The tags being pruned, `host/path:tag`.
    pruning: BTreeSet<String>,
    /// What the tags that stay hold, by repository name, once asked.
    staying: BTreeMap<String, Result<BTreeMap<String, Staying>, String>>,
    /// The digests deleted, with their repository name.
    deleted: BTreeSet<(String, String)>,
    /// The digests of tags that were to be pruned but stay, with their
    /// repository name: their referrers stay too.
    kept: BTreeSet<(String, String)>,
    /// The entries of `pruned` whose referrers go once every tag is done.
    referring: Vec<usize>,
    /// The target's refusal, once it refused a delete.
    refused: Option<String>,
    report: &'r mut RegistryReport,
}

impl Deleter<'_, '_> {
    /// Prunes the tag of `v`, or keeps it saying why.
    fn one(&mut self, v: Verdict) {
        let (repo, tag) = self.p.split(&v.tag);
        let name = name_of(&v.tag).to_string();
        if self.refused.is_some() {
            return self.keep(v, "the target refuses deletes".into());
        }
        if self.deleted.contains(&(name.clone(), v.digest.clone())) {
            let why = format!("{}; deleted with its digest", v.reason);
            return self.pruned(v, why);
        }
        if self.p.dry_run {
            return self.dry(v, &repo, &name);
        }
        if self.p.client.deletes_tags(&repo.host) == Some(false) {
            return self.by_digest(v, &repo, &name, None);
        }
        match self
            .p
            .client
            .delete_manifest(&repo, tag, self.p.access.push())
        {
            Ok(Deletion::Deleted) => {
                let why = v.reason.clone();
                self.pruned(v, why)
            }
            Ok(Deletion::Gone) => self.p.forget(&v.tag),
            Ok(Deletion::DigestOnly) => self.by_digest(v, &repo, &name, None),
            Ok(Deletion::Refused {
                status: 405,
                answer,
            }) => self.by_digest(v, &repo, &name, Some(answer)),
            Ok(Deletion::Refused { answer, .. }) => self.refuse(v, &repo, answer),
            Err(e) => self.keep(v, format!("cannot delete it: {e}")),
        }
    }

    /// Prunes `v` by deleting its digest, when no tag that stays holds it;
    /// `tag_refused` is the answer to deleting the tag, when it was refused.
    fn by_digest(
        &mut self,
        v: Verdict,
        repo: &Repository,
        name: &str,
        tag_refused: Option<String>,
    ) {
        match self.shared(repo, name, &v.digest) {
            Err(e) => return self.keep(v, format!("cannot tell which tags stay: {e}")),
            Ok(Some(other)) => {
                let way = match &tag_refused {
                    Some(answer) => format!("{} refused deleting the tag ({answer})", repo.host),
                    None => format!("{} deletes only by digest", repo.host),
                };
                let why = format!(
                    "tag {other}, which stays, holds its digest {}, and {way}",
                    short(&v.digest)
                );
                return self.keep(v, why);
            }
            Ok(None) => {}
        }
        match self
            .p
            .client
            .delete_manifest(repo, &v.digest, self.p.access.push())
        {
            Ok(Deletion::Deleted) => {
                self.deleted.insert((name.to_string(), v.digest.clone()));
                let why = format!("{}; deleted by its digest", v.reason);
                self.pruned(v, why)
            }
            Ok(Deletion::Gone) => self.p.forget(&v.tag),
            Ok(Deletion::Refused { answer, .. }) => self.refuse(v, repo, answer),
            Ok(Deletion::DigestOnly) => self.keep(v, "the target refused its digest".into()),
            Err(e) => self.keep(v, format!("cannot delete it: {e}")),
        }
    }

    /// A dry run's verdict on `v`: what the real run would do, as far as
    /// the target is known (whether it deletes tags by name is learnt from
    /// a delete).
    fn dry(&mut self, v: Verdict, repo: &Repository, name: &str) {
        let deletes_tags = self.p.client.deletes_tags(&repo.host);
        if deletes_tags == Some(true) {
            let why = v.reason.clone();
            return self.pruned(v, why);
        }
        match self.shared(repo, name, &v.digest) {
            Err(e) => self.keep(v, format!("cannot tell which tags stay: {e}")),
            Ok(None) => {
                let why = v.reason.clone();
                self.pruned(v, why)
            }
            Ok(Some(other)) if deletes_tags == Some(false) => {
                let why = format!(
                    "tag {other}, which stays, holds its digest {}, and {} deletes only by digest",
                    short(&v.digest),
                    repo.host
                );
                self.keep(v, why)
            }
            Ok(Some(other)) => {
                let why = format!(
                    "{}; kept instead if {} deletes only by digest, since tag {other} holds it too",
                    v.reason, repo.host
                );
                self.pruned(v, why)
            }
        }
    }

    /// The tag that stays in `repo` (`name`) and holds `digest`, if any.
    fn shared(
        &mut self,
        repo: &Repository,
        name: &str,
        digest: &str,
    ) -> Result<Option<String>, String> {
        let staying = self.staying_in(repo, name)?;
        Ok(decide::shared_by(digest, &staying).map(String::from))
    }

    /// What each tag that stays in `repo` (`name`) holds, asked once.
    fn staying_in(
        &mut self,
        repo: &Repository,
        name: &str,
    ) -> Result<BTreeMap<String, Staying>, String> {
        if !self.staying.contains_key(name) {
            let staying = self.p.staying(repo, name, &self.pruning);
            self.staying.insert(name.to_string(), staying);
        }
        self.staying[name].clone()
    }

    /// Keeps `v` because the target refused to delete it (`answer`),
    /// warning once per run how to allow deletes.
    fn refuse(&mut self, v: Verdict, repo: &Repository, answer: String) {
        let warning = format!(
            "{} refuses deletes ({answer}); nothing more is pruned this run. Allow deletes there \
             (a distribution registry: storage.delete.enabled: true); its garbage collection \
             then frees the disk, which a delete alone does not",
            repo.host
        );
        log::warn!("{warning}");
        self.report.warnings.push(warning);
        self.refused = Some(answer);
        self.keep(v, "the target refuses deletes".into());
    }

    fn pruned(&mut self, v: Verdict, reason: String) {
        self.referring.push(self.report.pruned.len());
        let host = &self.p.registry.hostname;
        if self.p.dry_run {
            log::info!("{host}: would prune {} ({})", v.tag, short(&v.digest));
        } else {
            log::info!("{host}: pruned {} ({})", v.tag, short(&v.digest));
        }
        self.p.forget(&v.tag);
        self.report.pruned.push(Verdict { reason, ..v });
    }

    /// Once every tag is pruned or kept, takes their referrers with the
    /// pruned ones, and says so in their reasons.
    fn referrers_last(&mut self) {
        for i in std::mem::take(&mut self.referring) {
            let v = self.report.pruned[i].clone();
            let told = self.with_referrers(&v);
            self.report.pruned[i].reason.push_str(&told);
        }
    }

    /// Takes what was copied as referring to the image of `v` with it;
    /// says how many went (or would), or why they stay.
    fn with_referrers(&mut self, v: &Verdict) -> String {
        let copied = match self.records.get(&v.tag) {
            Some(r) if !r.referrers_copied.is_empty() => r.referrers_copied.clone(),
            _ => return String::new(),
        };
        let (repo, _) = self.p.split(&v.tag);
        match self.referrers(&repo, name_of(&v.tag), &copied) {
            Ok(0) => String::new(),
            Ok(n) => format!("; with {n} referrers"),
            Err(e) => {
                log::warn!(
                    "{}: referrers of {} kept: {e}",
                    self.p.registry.hostname,
                    v.tag
                );
                format!("; its referrers kept: {e}")
            }
        }
    }

    fn keep(&mut self, v: Verdict, reason: String) {
        self.kept
            .insert((name_of(&v.tag).to_string(), v.digest.clone()));
        log::info!(
            "{}: kept {} although unlisted: {reason}",
            self.p.registry.hostname,
            v.tag
        );
        self.report.prune_skipped.push(Verdict { reason, ..v });
    }
}

/// `host/path` of `host/path:tag`.
fn name_of(target: &str) -> &str {
    target.rsplit_once(':').map_or(target, |(name, _)| name)
}

/// The digests an index's JSON lists.
fn listed_digests(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["digest"].as_str().map(String::from))
        .collect()
}
