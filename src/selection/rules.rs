//! The selection rules and the choice they make among a repository's tags:
//! `match` (a pattern a tag must match), `exclude` (patterns it must not
//! match), `semver` (a version range), `latest` (the N highest versions
//! that remain) and `allTags`. Patterns are regular expressions
//! (`regex-lite`), not anchored, as grep has them: `-rc` drops every tag
//! that contains `-rc`; `^` and `$` anchor. The rules apply in that order;
//! every tag dropped says which rule dropped it. The chosen tags come
//! highest version first, then the tags that are not versions by name
//! (registries list tags in no order to rely on). Listing the tags is the
//! registry client's; how a tag reads as a version is `version`'s.

use regex_lite::Regex;
use serde::Serialize;

use super::version::{Range, Version};

/// The rules as written, before they are checked; serialized under the
/// configuration's keys, each only when given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleText {
    /// `semver`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// `match`.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub matching: Option<String>,
    /// `exclude`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// `latest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<usize>,
    /// `allTags`.
    #[serde(rename = "allTags", skip_serializing_if = "std::ops::Not::not")]
    pub all_tags: bool,
}

impl RuleText {
    /// The names of the rules given, in the order they apply.
    pub fn given(&self) -> impl Iterator<Item = &'static str> {
        [
            ("match", self.matching.is_some()),
            ("exclude", !self.exclude.is_empty()),
            ("semver", self.semver.is_some()),
            ("latest", self.latest.is_some()),
            ("allTags", self.all_tags),
        ]
        .into_iter()
        .filter_map(|(rule, given)| given.then_some(rule))
    }

    /// Whether any rule is given.
    pub fn any(&self) -> bool {
        self.given().next().is_some()
    }
}

/// Which tags, once mirrored, are not asked about again (`immutable`).
#[derive(Debug, Clone, Default)]
pub enum Immutable {
    /// None of them (`false`, or not given).
    #[default]
    None,
    /// Every one (`true`).
    All,
    /// Those that match the pattern, unanchored as every pattern.
    Matching(Regex),
}

impl Immutable {
    /// `pattern` checked.
    pub fn pattern(pattern: &str) -> Result<Immutable, String> {
        Regex::new(pattern)
            .map(Immutable::Matching)
            .map_err(|e| not_a_pattern(pattern, &e))
    }

    /// Whether `tag` is marked immutable.
    pub fn marks(&self, tag: &str) -> bool {
        match self {
            Immutable::None => false,
            Immutable::All => true,
            Immutable::Matching(pattern) => pattern.is_match(tag),
        }
    }
}

/// As written: `false`, `true`, or the pattern.
impl Serialize for Immutable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Immutable::None => s.serialize_bool(false),
            Immutable::All => s.serialize_bool(true),
            Immutable::Matching(pattern) => s.serialize_str(pattern.as_str()),
        }
    }
}

/// Checked rules.
#[derive(Debug, Clone)]
pub struct Rules {
    semver: Option<(String, Range)>,
    matching: Option<Regex>,
    exclude: Vec<Regex>,
    latest: Option<usize>,
}

/// What the rules made of one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The tag.
    pub tag: String,
    /// Whether it is chosen.
    pub chosen: bool,
    /// The rule that dropped it (`match`, `exclude`, `semver`, `latest`);
    /// none when it is chosen.
    pub rule: Option<&'static str>,
    /// Why, in words: "chosen", or what the rule found.
    pub reason: String,
}

impl Rules {
    /// Checks `text`; the error names the rule at fault (`key` is how the
    /// caller writes a rule's name, e.g. `--semver` or `semver`).
    pub fn new(text: &RuleText, key: &dyn Fn(&str) -> String) -> Result<Rules, String> {
        if text.all_tags {
            if let Some(rule) = text.given().find(|rule| *rule != "allTags") {
                return Err(format!(
                    "{}: chooses every tag, so it cannot be combined with {}",
                    key("allTags"),
                    key(rule)
                ));
            }
        }
        if text.latest == Some(0) {
            return Err(format!("{}: must be at least 1", key("latest")));
        }
        let pattern = |p: &str, rule: &str| {
            Regex::new(p).map_err(|e| format!("{}: {}", key(rule), not_a_pattern(p, &e)))
        };
        let semver = text
            .semver
            .as_ref()
            .map(|r| {
                Range::parse(r)
                    .map(|range| (r.clone(), range))
                    .map_err(|e| format!("{}: {e}", key("semver")))
            })
            .transpose()?;
        Ok(Rules {
            semver,
            matching: text
                .matching
                .as_deref()
                .map(|p| pattern(p, "match"))
                .transpose()?,
            exclude: text
                .exclude
                .iter()
                .map(|p| pattern(p, "exclude"))
                .collect::<Result<_, _>>()?,
            latest: text.latest,
        })
    }

    /// Decides on each of `tags`: the chosen ones first (highest version
    /// first, then the others by name), then the dropped ones by name.
    pub fn choose(&self, tags: &[String]) -> Vec<Decision> {
        let mut tags = tags.to_vec();
        tags.sort();
        let mut chosen: Vec<(String, Option<Version>)> = Vec::new();
        let mut dropped = Vec::new();
        for tag in &tags {
            match self.first_rule_against(tag) {
                Some((rule, reason)) => dropped.push(drop(tag, rule, reason)),
                None => chosen.push((tag.clone(), Version::parse(tag))),
            }
        }
        chosen.sort_by(|(ta, a), (tb, b)| match (a, b) {
            (Some(a), Some(b)) => b.cmp(a).then_with(|| ta.cmp(tb)),
            _ => b.is_some().cmp(&a.is_some()).then_with(|| ta.cmp(tb)),
        });
        if let Some(n) = self.latest {
            let (versions, others): (Vec<_>, Vec<_>) =
                chosen.into_iter().partition(|(_, v)| v.is_some());
            for (tag, _) in others {
                dropped.push(drop(&tag, "latest", "not a version".into()));
            }
            chosen = versions;
            for (tag, _) in chosen.split_off(n.min(chosen.len())) {
                dropped.push(drop(&tag, "latest", format!("not among the {n} highest")));
            }
        }
        dropped.sort_by(|a, b| a.tag.cmp(&b.tag));
        chosen
            .into_iter()
            .map(|(tag, _)| Decision {
                tag,
                chosen: true,
                rule: None,
                reason: "chosen".into(),
            })
            .chain(dropped)
            .collect()
    }

    /// The first rule, in order, that drops `tag` before `latest`, and why.
    fn first_rule_against(&self, tag: &str) -> Option<(&'static str, String)> {
        if let Some(m) = self.matching.as_ref().filter(|m| !m.is_match(tag)) {
            return Some(("match", format!("does not match '{}'", m.as_str())));
        }
        if let Some(x) = self.exclude.iter().find(|x| x.is_match(tag)) {
            return Some(("exclude", format!("matches '{}'", x.as_str())));
        }
        let (text, range) = self.semver.as_ref()?;
        match Version::parse(tag) {
            None => Some(("semver", "not a version".into())),
            Some(v) if !range.contains(&v) => Some(("semver", format!("not in '{text}'"))),
            Some(_) => None,
        }
    }
}

/// `'(' is not a pattern: ...`, a long pattern cut.
fn not_a_pattern(pattern: &str, e: &regex_lite::Error) -> String {
    format!(
        "'{}' is not a pattern: {e}",
        crate::error::excerpt(pattern, 80)
    )
}

fn drop(tag: &str, rule: &'static str, reason: String) -> Decision {
    Decision {
        tag: tag.to_string(),
        chosen: false,
        rule: Some(rule),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_TAGS: &str = "1.0.0 1.1.0 1.2.0 1.2.1 v1.3.0 1.3 2.0.0-rc.1 2.0.0 \
                              1.2.1-alpine latest nightly-20261201";

    fn tags() -> Vec<String> {
        ISSUE_TAGS.split_whitespace().map(String::from).collect()
    }

    fn rules(text: RuleText) -> Result<Rules, String> {
        Rules::new(&text, &|k| format!("--{k}"))
    }

    fn chosen(text: RuleText) -> Vec<String> {
        rules(text)
            .unwrap()
            .choose(&tags())
            .into_iter()
            .filter(|d| d.chosen)
            .map(|d| d.tag)
            .collect()
    }

    fn reason(text: RuleText, tag: &str) -> (Option<&'static str>, String) {
        let d = rules(text).unwrap().choose(&tags());
        let d = d.into_iter().find(|d| d.tag == tag).unwrap();
        (d.rule, d.reason)
    }

    #[test]
    fn semver_alone_orders_highest_first_and_leaves_pre_releases() {
        let text = RuleText {
            semver: Some(">=1.2, <3".into()),
            ..RuleText::default()
        };
        assert_eq!(
            chosen(text.clone()),
            ["2.0.0", "1.3", "v1.3.0", "1.2.1", "1.2.1-alpine", "1.2.0"]
        );
        assert_eq!(
            reason(text.clone(), "2.0.0-rc.1"),
            (Some("semver"), "not in '>=1.2, <3'".into())
        );
        assert_eq!(
            reason(text, "latest"),
            (Some("semver"), "not a version".into())
        );
    }

    #[test]
    fn match_is_not_anchored_unless_written() {
        let text = |p: &str| RuleText {
            matching: Some(p.into()),
            ..RuleText::default()
        };
        assert_eq!(chosen(text("alpine")), ["1.2.1-alpine"]);
        assert_eq!(chosen(text(r"^v1\.[0-9]+\.[0-9]+$")), ["v1.3.0"]);
        assert_eq!(
            reason(text("^v"), "latest"),
            (Some("match"), "does not match '^v'".into())
        );
    }

    #[test]
    fn exclude_drops_what_matches_any_pattern() {
        let text = RuleText {
            exclude: vec!["-rc".into(), "-".into(), "^[a-z]".into()],
            ..RuleText::default()
        };
        assert_eq!(
            chosen(text.clone()),
            ["2.0.0", "1.3", "1.2.1", "1.2.0", "1.1.0", "1.0.0"]
        );
        assert_eq!(
            reason(text, "2.0.0-rc.1"),
            (Some("exclude"), "matches '-rc'".into())
        );
    }

    #[test]
    fn latest_keeps_the_highest_versions_and_drops_the_rest() {
        let text = RuleText {
            latest: Some(3),
            ..RuleText::default()
        };
        assert_eq!(chosen(text.clone()), ["2.0.0", "2.0.0-rc.1", "1.3"]);
        assert_eq!(
            reason(text.clone(), "nightly-20261201"),
            (Some("latest"), "not a version".into())
        );
        assert_eq!(
            reason(text, "1.0.0"),
            (Some("latest"), "not among the 3 highest".into())
        );
    }

    #[test]
    fn the_issue_example_combines_the_rules() {
        let text = RuleText {
            semver: Some(">=1.1, <2".into()),
            exclude: vec!["-alpine".into()],
            latest: Some(3),
            ..RuleText::default()
        };
        assert_eq!(chosen(text.clone()), ["1.3", "v1.3.0", "1.2.1"]);
        assert_eq!(
            reason(text, "1.2.1-alpine"),
            (Some("exclude"), "matches '-alpine'".into())
        );
    }

    #[test]
    fn all_tags_orders_versions_first_then_names() {
        let text = RuleText {
            all_tags: true,
            ..RuleText::default()
        };
        assert_eq!(
            chosen(text),
            [
                "2.0.0",
                "2.0.0-rc.1",
                "1.3",
                "v1.3.0",
                "1.2.1",
                "1.2.1-alpine",
                "1.2.0",
                "1.1.0",
                "1.0.0",
                "latest",
                "nightly-20261201"
            ]
        );
    }

    #[test]
    fn bad_rules_name_the_culprit() {
        let bad = |text: RuleText| rules(text).unwrap_err();
        let e = bad(RuleText {
            semver: Some(">=1.x".into()),
            ..RuleText::default()
        });
        assert!(e.starts_with("--semver: "), "{e}");
        let e = bad(RuleText {
            matching: Some("(".into()),
            ..RuleText::default()
        });
        assert!(e.starts_with("--match: '(' is not a pattern"), "{e}");
        let e = bad(RuleText {
            exclude: vec!["ok".into(), "[".into()],
            ..RuleText::default()
        });
        assert!(e.starts_with("--exclude: '['"), "{e}");
        let e = bad(RuleText {
            latest: Some(0),
            ..RuleText::default()
        });
        assert_eq!(e, "--latest: must be at least 1");
        let e = bad(RuleText {
            all_tags: true,
            matching: Some("x".into()),
            ..RuleText::default()
        });
        assert!(e.contains("--allTags") && e.contains("--match"), "{e}");
    }
}
