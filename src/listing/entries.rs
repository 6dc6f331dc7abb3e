//! What a registry's `images` entries list: an entry that names one tag or
//! digest lists exactly that, as a script line would; an entry with rules
//! lists its repository's tags (once per repository per run, however many
//! entries name it) and lists those its rules choose. An entry whose tags
//! cannot be listed fails alone, and one that chooses nothing is warned of;
//! the others go on. Joining what the entries list to what the syncer
//! script lists is `union`. Asking the registry is the caller's (`tags_of`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Serialize, Serializer};

use crate::config::Image;
use crate::error::Error;
use crate::listing::script::{Listed, entry_name};
use crate::mutex::lock;
use crate::reference::Reference;
use crate::selection::rules::Decision;

/// The most tags listed from one repository: a bound on memory, and the
/// end of a `Link` that loops.
pub const MAX_LISTED_TAGS: usize = 100_000;

/// What one entry with rules chose, for the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// The entry, `images[i]`.
    #[serde(serialize_with = "entry_key")]
    pub entry: usize,
    /// Its source repository.
    pub source: String,
    /// Its line in the configuration file (0 when it could not be told).
    pub line: usize,
    /// How many tags the repository has.
    pub listed: usize,
    /// How many of them the rules chose.
    pub chosen: usize,
    /// Why its tags could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every tag with what the rules made of it (kept for a dry run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Decision>,
}

impl Selection {
    /// `images[0] (line 12 of the configuration)`.
    pub fn name(&self) -> String {
        entry_name(self.entry, self.line)
    }
}

/// An entry index as its key, `images[i]`.
pub fn entry_key<S: Serializer>(entry: &usize, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("images[{entry}]"))
}

/// An entry index, when there is one, as its key.
pub fn some_entry<S: Serializer>(entry: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
    match entry {
        Some(i) => entry_key(i, s),
        None => s.serialize_none(),
    }
}

/// What the entries list.
#[derive(Debug, Default)]
pub struct Chosen {
    /// The images, entry by entry, each entry's highest version first.
    pub images: Vec<Listed>,
    /// What each entry with rules chose, or why it could not.
    pub selections: Vec<Selection>,
}

/// How a repository's tags are listed: by the caller, from any thread.
pub type TagsOf<'a> = dyn Fn(&Reference) -> Result<Vec<String>, Error> + Sync + 'a;

/// Lists what `images` names. `tags_of` lists a repository's tags, up to
/// `workers` repositories at once; `keep_tags` keeps every decision in the
/// selections (a dry run shows them); `stop` is asked before each
/// repository is listed, and what was not listed by then is left out.
pub fn list(
    images: &[Image],
    tags_of: &TagsOf<'_>,
    workers: usize,
    keep_tags: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Chosen {
    let listed = listed_tags(images, tags_of, workers, stop);
    let mut chosen = Chosen::default();
    for (i, image) in images.iter().enumerate() {
        let line = image.line.unwrap_or(0);
        let listing = |reference: Reference| Listed {
            line,
            immutable: image.immutable.marks(&reference.target_tag()),
            reference,
            entry: Some(i),
        };
        let Some(rules) = &image.rules else {
            chosen.images.push(listing(image.source.clone()));
            continue;
        };
        let name = image.source.name();
        let Some(tags) = listed.get(&name) else {
            break;
        };
        let mut selection = Selection {
            entry: i,
            source: name.clone(),
            line,
            listed: 0,
            chosen: 0,
            error: None,
            tags: Vec::new(),
        };
        match tags {
            Err(e) => selection.error = Some(format!("cannot list the tags of {name}: {e}")),
            Ok(tags) => {
                let decisions = rules.choose(tags);
                selection.listed = tags.len();
                for d in decisions.iter().filter(|d| d.chosen) {
                    match Reference::parse(&format!("{name}:{}", d.tag)) {
                        Ok(reference) => chosen.images.push(listing(reference)),
                        Err(e) => log::warn!("{name}: tag '{}' is not usable: {e}", d.tag),
                    }
                    selection.chosen += 1;
                }
                if keep_tags {
                    selection.tags = decisions;
                }
            }
        }
        chosen.selections.push(selection);
    }
    chosen
}

/// The tags of each repository an entry with rules names, each listed
/// once, `workers` at a time; by repository name.
fn listed_tags(
    images: &[Image],
    tags_of: &TagsOf<'_>,
    workers: usize,
    stop: &(dyn Fn() -> bool + Sync),
) -> HashMap<String, Result<Vec<String>, String>> {
    let mut repositories: Vec<&Reference> = Vec::new();
    for image in images.iter().filter(|i| i.rules.is_some()) {
        if !repositories.iter().any(|r| r.name() == image.source.name()) {
            repositories.push(&image.source);
        }
    }
    let listed = Mutex::new(HashMap::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, repositories.len().max(1)) {
            scope.spawn(|| {
                while let Some(repo) = repositories.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if stop() {
                        break;
                    }
                    let tags = tags_of(repo).map_err(|e| e.to_string());
                    lock(&listed).insert(repo.name(), tags);
                }
            });
        }
    });
    listed.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::rules::{Immutable, RuleText, Rules};

    fn entry(source: &str, rules: RuleText, immutable: Immutable) -> Image {
        Image {
            source: Reference::parse(source).unwrap(),
            rules: rules
                .any()
                .then(|| Rules::new(&rules, &|k| k.to_string()).unwrap()),
            written: rules,
            immutable,
            line: Some(7),
        }
    }

    fn latest(n: usize) -> RuleText {
        RuleText {
            latest: Some(n),
            ..RuleText::default()
        }
    }

    #[test]
    fn each_repository_is_listed_once_and_a_failure_stays_with_its_entries() {
        let images = [
            entry("r.example/a", latest(2), Immutable::None),
            entry("r.example/b:1", RuleText::default(), Immutable::All),
            entry("r.example/a", latest(1), Immutable::None),
            entry("r.example/gone", latest(1), Immutable::None),
        ];
        let asked = Mutex::new(Vec::new());
        let tags_of = |r: &Reference| {
            lock(&asked).push(r.name());
            match r.name().as_str() {
                "r.example/a" => Ok(vec!["1.0".into(), "1.2".into(), "1.1".into()]),
                _ => Err(Error::RepositoryMissing {
                    host: "r.example".into(),
                    message: "404".into(),
                }),
            }
        };
        let chosen = list(&images, &tags_of, 4, false, &|| false);
        let mut asked = asked.into_inner().unwrap();
        asked.sort();
        assert_eq!(asked, ["r.example/a", "r.example/gone"], "each once");
        let shown: Vec<(String, Option<usize>, bool)> = chosen
            .images
            .iter()
            .map(|l| (l.reference.to_string(), l.entry, l.immutable))
            .collect();
        assert_eq!(
            shown,
            [
                ("r.example/a:1.2".to_string(), Some(0), false),
                ("r.example/a:1.1".to_string(), Some(0), false),
                ("r.example/b:1".to_string(), Some(1), true),
                ("r.example/a:1.2".to_string(), Some(2), false),
            ]
        );
        let counts: Vec<(usize, usize, usize)> = chosen
            .selections
            .iter()
            .map(|s| (s.entry, s.listed, s.chosen))
            .collect();
        assert_eq!(counts, [(0, 3, 2), (2, 3, 1), (3, 0, 0)]);
        let failed = &chosen.selections[2];
        assert_eq!(
            failed.error.as_deref(),
            Some("cannot list the tags of r.example/gone: 404")
        );
        assert_eq!(failed.name(), "images[3] (line 7 of the configuration)");
        assert!(chosen.selections[0].tags.is_empty());
    }

    #[test]
    fn immutable_marks_by_pattern_and_a_dry_run_keeps_every_decision() {
        let images = [entry(
            "r.example/a",
            RuleText {
                exclude: vec!["-rc".into()],
                ..RuleText::default()
            },
            Immutable::pattern("^1\\.").unwrap(),
        )];
        let tags_of = |_: &Reference| Ok(vec!["1.0".into(), "2.0-rc".into(), "main".into()]);
        let chosen = list(&images, &tags_of, 1, true, &|| false);
        let marked: Vec<(String, bool)> = chosen
            .images
            .iter()
            .map(|l| (l.reference.to_string(), l.immutable))
            .collect();
        assert_eq!(
            marked,
            [
                ("r.example/a:1.0".to_string(), true),
                ("r.example/a:main".to_string(), false)
            ]
        );
        let tags = &chosen.selections[0].tags;
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[2].tag, "2.0-rc");
        assert_eq!(tags[2].rule, Some("exclude"));
    }

    #[test]
    fn repositories_are_listed_up_to_workers_at_once() {
        let images: Vec<Image> = ["a", "b", "c", "d"]
            .iter()
            .map(|r| entry(&format!("r.example/{r}"), latest(1), Immutable::None))
            .collect();
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let tags_of = |_: &Reference| {
            let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(at_once, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(200));
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(vec!["1.0".to_string()])
        };
        let chosen = list(&images, &tags_of, 2, false, &|| false);
        assert_eq!(chosen.images.len(), 4);
        assert_eq!(most.load(Ordering::SeqCst), 2, "two at a time, never more");
    }

    #[test]
    fn a_stop_ends_the_listing() {
        let images = [entry("r.example/a", latest(1), Immutable::None)];
        let tags_of = |_: &Reference| -> Result<Vec<String>, Error> { panic!("asked") };
        let chosen = list(&images, &tags_of, 2, false, &|| true);
        assert!(chosen.images.is_empty() && chosen.selections.is_empty());
    }
}
