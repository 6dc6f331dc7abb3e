//! The `images` key of a registry: each entry checked into an [`Image`]
//! (its source an image reference, its rules checked by `selection`), and
//! the line of each entry in the file, which reports name. Listing the
//! tags and choosing is `listing`'s.

use crate::config::schema::{RawImage, RawImmutable};
use crate::config::validate::Validator;
use crate::config::{Image, Registry};
use crate::reference::Reference;
use crate::selection::rules::{Immutable, RuleText, Rules};

impl Validator<'_> {
    /// The `images` key: each entry checked, its problems under
    /// `images[i]`; the entries that have none.
    pub(super) fn images(&mut self, raw: Option<Vec<RawImage>>) -> Vec<Image> {
        let entries = raw.unwrap_or_default().into_iter().enumerate();
        entries
            .filter_map(|(i, raw)| self.image(&format!("images[{i}]"), raw))
            .collect()
    }

    /// One entry, at key `key`.
    fn image(&mut self, key: &str, raw: RawImage) -> Option<Image> {
        let source = match raw.source.as_deref().map(str::trim) {
            None | Some("") => {
                self.problem(
                    &format!("{key}.source"),
                    "is required: a repository, or one tag or digest of an image",
                );
                None
            }
            Some(text) => self.check(&format!("{key}.source"), Reference::parse(text)),
        };
        let written = RuleText {
            semver: raw.semver,
            matching: raw.matching,
            exclude: raw.exclude.unwrap_or_default(),
            latest: raw.latest.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            all_tags: raw.all_tags.unwrap_or(false),
        };
        let prefix = self.path(key);
        let rules = match Rules::new(&written, &|rule| format!("{prefix}.{rule}")) {
            Ok(rules) => written.any().then_some(rules),
            Err(problem) => {
                self.said(problem);
                return None;
            }
        };
        let immutable = self.immutable(key, raw.immutable)?;
        let source = source?;
        if let Some(rule) = rules.as_ref().and(pinned_rule(&source, &written)) {
            self.problem(
                key,
                format!(
                    "source '{source}' names one image, so it takes no {rule}; give the repository alone ('{}') to choose among its tags",
                    source.name()
                ),
            );
            return None;
        }
        Some(Image {
            source,
            written,
            rules,
            immutable,
            line: None,
        })
    }

    /// `immutable`: none when it is not given; None when it is bad.
    fn immutable(&mut self, key: &str, raw: Option<RawImmutable>) -> Option<Immutable> {
        match raw {
            None | Some(RawImmutable::Flag(false)) => Some(Immutable::None),
            Some(RawImmutable::Flag(true)) => Some(Immutable::All),
            Some(RawImmutable::Pattern(p)) => {
                self.check(&format!("{key}.immutable"), Immutable::pattern(&p))
            }
        }
    }
}

/// The first rule given with a source that names a tag or a digest.
fn pinned_rule(source: &Reference, written: &RuleText) -> Option<&'static str> {
    if source.name() == source.to_string() {
        return None;
    }
    written.given().next()
}

/// Gives each entry of `images` its line in `text`: the lines that hold a
/// `source` key are the entries' in file order, when there are as many of
/// them as entries (a file written in YAML's flow style gets none).
pub(super) fn locate(text: &str, registries: &mut [Registry]) {
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            let key = line.trim_start().trim_start_matches(['-', ' ', '{']);
            ["source:", "'source':", "\"source\":"]
                .iter()
                .any(|k| key.starts_with(k))
        })
        .map(|(n, _)| n + 1)
        .collect();
    if lines.len() == registries.iter().map(|r| r.images.len()).sum::<usize>() {
        let entries = registries.iter_mut().flat_map(|r| r.images.iter_mut());
        for (image, line) in entries.zip(lines) {
            image.line = Some(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::fixture::Dir;

    fn with_images(images: &str) -> String {
        format!("registries:\n  - hostname: t.example\n    images:\n{images}")
    }

    #[test]
    fn entries_are_read_with_their_lines_and_need_no_script() {
        let dir = Dir::new("images-ok");
        let yaml = with_images(
            "      - source: docker.io/library/nginx\n        semver: '>=1.25, <2'\n        exclude: ['-rc', '-beta']\n        latest: 3\n      - source: q.io/p/n\n        match: '^v1'\n        immutable: '^v'\n      - {source: 'ghcr.io/e/app:2.4.1', immutable: true}\n      - source: r.example/tools/debug\n        allTags: true\n",
        );
        let config = dir.parse(&yaml).unwrap();
        let r = &config.registries[0];
        assert!(r.script.is_none());
        let lines: Vec<Option<usize>> = r.images.iter().map(|i| i.line).collect();
        assert_eq!(lines, [Some(4), Some(8), Some(11), Some(12)]);
        assert_eq!(r.images[0].written.exclude, ["-rc", "-beta"]);
        assert!(r.images[0].rules.is_some() && r.images[2].rules.is_none());
        assert!(r.images[1].immutable.marks("v1.2") && !r.images[1].immutable.marks("1.2"));
        assert!(r.images[2].immutable.marks("anything"));
        let one = dir.parse(&with_images("      - source: a/b\n        exclude: -rc\n"));
        assert_eq!(
            one.unwrap().registries[0].images[0].written.exclude,
            ["-rc"]
        );
    }

    #[test]
    fn each_bad_entry_is_named_by_its_key_path() {
        let dir = Dir::new("images-bad");
        let problems = dir.problems(&with_images(
            "      - source: a/b\n        semver: '>=1.x'\n      - source: a/b\n        match: '('\n      - source: a/b\n        latest: 0\n      - source: a/b\n        allTags: true\n        match: x\n      - source: a/b:1\n        latest: 2\n      - source: a/b@sha256:0123456789012345678901234567890123456789012345678901234567890123\n        exclude: x\n      - semver: '1'\n      - source: 'Not An Image'\n      - source: a/b\n        immutable: '['\n      - source: a/b\n        exclude: ['ok', '[']\n",
        ));
        let starts = [
            "registries[0].images[0].semver: ",
            "registries[0].images[1].match: '(' is not a pattern",
            "registries[0].images[2].latest: must be at least 1",
            "registries[0].images[3].allTags: chooses every tag, so it cannot be combined with registries[0].images[3].match",
            "registries[0].images[4]: source 'a/b:1' names one image, so it takes no latest; give the repository alone ('a/b')",
            "registries[0].images[5]: source 'a/b@sha256:",
            "registries[0].images[6].source: is required",
            "registries[0].images[7].source: ",
            "registries[0].images[8].immutable: '[' is not a pattern",
            "registries[0].images[9].exclude: '[' is not a pattern",
        ];
        assert_eq!(problems.len(), starts.len(), "{problems:#?}");
        for (problem, start) in problems.iter().zip(starts) {
            assert!(
                problem.starts_with(start),
                "{problem}\nshould start {start}"
            );
        }
    }

    #[test]
    fn a_registry_needs_a_script_or_images_and_entries_take_known_keys_only() {
        let dir = Dir::new("images-none");
        let problems = dir.problems("registries:\n  - hostname: t.example\n    images: []\n");
        assert_eq!(
            problems,
            [
                "registries[0].syncerScript: is required unless images lists what to mirror: the executable that prints the images to mirror"
            ]
        );
        let problems = dir.problems(&with_images("      - source: a/b\n        latests: 2\n"));
        assert!(
            problems[0].contains("unknown field `latests`, expected one of `source`"),
            "{problems:?}"
        );
        let problems = dir.problems(&with_images("      - source: a/b\n        latest: -1\n"));
        assert!(problems[0].contains("latest"), "{problems:?}");
        let problems = dir.problems(&with_images(
            "      - source: a/b\n        immutable: [x]\n",
        ));
        assert!(
            problems[0].contains("expected true, false or a pattern"),
            "{problems:?}"
        );
    }
}
