//! How a container tag is read as a version, and version ranges. A tag is a
//! version when it is an optional `v`, one to three dot-separated numbers
//! (missing parts are 0: `1.25` is 1.25.0), and optionally `-` and a
//! suffix. A suffix that starts with `alpha`, `beta`, `rc`, `pre`, `dev` or
//! `snapshot` is a pre-release (`2.0.0-rc.1`), ordered below its release;
//! any other suffix is a variant (`1.2.1-alpine`): the same version, in
//! another flavour, chosen or not by patterns. Nothing here knows tags'
//! patterns or `latest`; that is `select`'s.

use std::cmp::Ordering;

/// Words that make a suffix a pre-release.
const PRE_WORDS: [&str; 7] = ["alpha", "beta", "rc", "pre", "dev", "snapshot", "preview"];

/// A tag read as a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major, minor, patch.
    pub parts: [u64; 3],
    /// The pre-release (`rc.1`), when the suffix is one.
    pub pre: Option<String>,
    /// The variant (`alpine`), when the suffix is not a pre-release.
    pub variant: Option<String>,
}

impl Version {
    /// Reads `tag`; None when it is not a version.
    pub fn parse(tag: &str) -> Option<Version> {
        let text = tag.strip_prefix('v').unwrap_or(tag);
        let (numbers, suffix) = match text.split_once('-') {
            Some((n, s)) if !s.is_empty() => (n, Some(s)),
            Some(_) => return None,
            None => (text, None),
        };
        let parts = numbers_of(numbers)?;
        let (pre, variant) = match suffix {
            Some(s) if is_pre(s) => (Some(s.to_string()), None),
            Some(s) => (None, Some(s.to_string())),
            None => (None, None),
        };
        Some(Version {
            parts: pad(&parts),
            pre,
            variant,
        })
    }
}

impl Ord for Version {
    /// Versions by their numbers, a pre-release below its release, then a
    /// plain tag before its variants.
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts
            .cmp(&other.parts)
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => compare_pre(a, b),
            })
            .then_with(|| other.variant.cmp(&self.variant))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One to three dot-separated numbers.
fn numbers_of(text: &str) -> Option<Vec<u64>> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    parts
        .iter()
        .map(|p| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect()
}

fn pad(parts: &[u64]) -> [u64; 3] {
    let mut out = [0; 3];
    out[..parts.len()].copy_from_slice(parts);
    out
}

fn is_pre(suffix: &str) -> bool {
    let lower = suffix.to_ascii_lowercase();
    PRE_WORDS.iter().any(|w| {
        lower
            .strip_prefix(w)
            .is_some_and(|rest| rest.is_empty() || !rest.starts_with(|c: char| c.is_alphabetic()))
    })
}

/// Pre-releases identifier by identifier (split at `.` and `-`): numbers
/// numerically and below words, words as text; fewer identifiers first.
fn compare_pre(a: &str, b: &str) -> Ordering {
    let ids = |s: &str| -> Vec<String> { s.split(['.', '-']).map(String::from).collect() };
    let (a, b) = (ids(a), ids(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// How a comparator compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Caret,
    Tilde,
}

/// One comparator of a range: `>=1.25`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    /// The numbers as written (one to three).
    parts: Vec<u64>,
    pre: Option<String>,
}

/// A version range, Cargo's syntax: comparators joined by `,`, all of which
/// must hold (`>=1.25, <2`); `*` holds for every version. A pre-release is
/// in a range only when one of its comparators names a pre-release of the
/// same major.minor.patch, as Cargo has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    comparators: Vec<Comparator>,
}

impl Range {
    /// Reads `text`; the error names the part that is not understood.
    pub fn parse(text: &str) -> Result<Range, String> {
        let mut comparators = Vec::new();
        for piece in text.split(',').map(str::trim) {
            if piece == "*" {
                continue;
            }
            comparators.push(comparator(piece).ok_or_else(|| {
                format!("'{text}' is not a version range: '{piece}' is not understood (write e.g. '>=1.25, <2')")
            })?);
        }
        Ok(Range { comparators })
    }

    /// Whether `version` is in the range.
    pub fn contains(&self, version: &Version) -> bool {
        if version.pre.is_some() {
            let named = self
                .comparators
                .iter()
                .any(|c| c.pre.is_some() && pad(&c.parts) == version.parts);
            if !named {
                return false;
            }
        }
        self.comparators.iter().all(|c| c.holds(version))
    }
}

fn comparator(piece: &str) -> Option<Comparator> {
    let ops = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("=", Op::Eq),
        ("^", Op::Caret),
        ("~", Op::Tilde),
    ];
    let (op, rest) = ops
        .iter()
        .find_map(|(s, op)| piece.strip_prefix(s).map(|r| (*op, r)))
        .unwrap_or((Op::Caret, piece));
    let rest = rest.trim();
    let (numbers, pre) = match rest.split_once('-') {
        Some((n, p)) if !p.is_empty() => (n, Some(p.to_string())),
        Some(_) => return None,
        None => (rest, None),
    };
    let parts = numbers_of(numbers)?;
    if pre.is_some() && parts.len() != 3 {
        return None;
    }
    Some(Comparator { op, parts, pre })
}

impl Comparator {
    /// The lowest version the written parts name.
    fn low(&self) -> Version {
        Version {
            parts: pad(&self.parts),
            pre: self.pre.clone(),
            variant: None,
        }
    }

    /// The first version past the written parts (`1.2` → 1.3.0).
    fn past(&self, level: usize) -> Version {
        let mut parts = [0; 3];
        parts[..level].copy_from_slice(&self.parts[..level]);
        parts[level - 1] += 1;
        Version {
            parts,
            pre: Some("0".into()),
            variant: None,
        }
    }

    fn holds(&self, v: &Version) -> bool {
        let v = &Version {
            variant: None,
            ..v.clone()
        };
        let n = self.parts.len();
        match self.op {
            Op::Ge => *v >= self.low(),
            Op::Lt => *v < self.low(),
            Op::Gt if n < 3 => *v >= self.past(n),
            Op::Gt => *v > self.low(),
            Op::Le if n < 3 => *v < self.past(n),
            Op::Le => *v <= self.low(),
            Op::Eq if n < 3 => *v >= self.low() && *v < self.past(n),
            Op::Eq => *v == self.low(),
            Op::Tilde => *v >= self.low() && *v < self.past(n.min(2)),
            Op::Caret => {
                let level = self
                    .parts
                    .iter()
                    .position(|&p| p != 0)
                    .map_or(n, |i| i + 1)
                    .min(n);
                *v >= self.low() && *v < self.past(level)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(tag: &str) -> Version {
        Version::parse(tag).unwrap()
    }

    fn within(range: &str, tag: &str) -> bool {
        Range::parse(range).unwrap().contains(&v(tag))
    }

    #[test]
    fn tags_are_read_as_versions() {
        assert_eq!(v("1.25").parts, [1, 25, 0]);
        assert_eq!(v("v1.3.0").parts, [1, 3, 0]);
        assert_eq!(v("2").parts, [2, 0, 0]);
        assert_eq!(v("2.0.0-rc.1").pre.as_deref(), Some("rc.1"));
        assert_eq!(v("1.2.1-alpine").variant.as_deref(), Some("alpine"));
        assert_eq!(v("1.2.1-alpine").pre, None);
        assert_eq!(v("1.0-beta2").pre.as_deref(), Some("beta2"));
        assert_eq!(v("1.0-rcfoo").pre, None);
        for not in [
            "latest",
            "nightly-20261201",
            "1.2.3.4",
            "1..2",
            "v",
            "1.2-",
            "x1",
        ] {
            assert_eq!(Version::parse(not), None, "{not}");
        }
    }

    #[test]
    fn versions_are_ordered() {
        assert!(v("2.0.0-rc.1") < v("2.0.0"));
        assert!(v("2.0.0-rc.1") > v("1.9.9"));
        assert!(v("2.0.0-rc.2") < v("2.0.0-rc.10"));
        assert!(v("1.2.1-alpine") < v("1.2.1"));
        assert!(v("1.2.1-alpine") > v("1.2.0"));
        assert_eq!(v("1.3").cmp(&v("v1.3.0")), Ordering::Equal);
        assert!(v("1.10") > v("1.9.9"));
    }

    #[test]
    fn ranges_hold_as_cargo_has_them() {
        assert!(within(">=1.25, <2", "1.25"));
        assert!(within(">=1.25, <2", "1.27.3"));
        assert!(!within(">=1.25, <2", "2.0.0"));
        assert!(!within(">=1.25, <2", "1.24.9"));
        assert!(within("1.2", "1.9.0"));
        assert!(!within("1.2", "2.0.0"));
        assert!(!within("1.2", "1.1.0"));
        assert!(within("~1.2", "1.2.9"));
        assert!(!within("~1.2", "1.3.0"));
        assert!(within("^0.2.3", "0.2.9"));
        assert!(!within("^0.2.3", "0.3.0"));
        assert!(within("=1.2", "1.2.7"));
        assert!(!within("=1.2.0", "1.2.7"));
        assert!(within(">1.2", "1.3.0"));
        assert!(!within(">1.2", "1.2.9"));
        assert!(within("<=1.2", "1.2.9"));
        assert!(!within("<=1.2", "1.3.0"));
        assert!(within("*", "7.0"));
    }

    #[test]
    fn a_pre_release_is_in_only_a_range_that_names_one() {
        assert!(!within(">=1", "2.0.0-rc.1"));
        assert!(!within("*", "2.0.0-rc.1"));
        assert!(within(">=2.0.0-rc.0", "2.0.0-rc.1"));
        assert!(!within(">=2.0.0-rc.0", "3.0.0-rc.1"));
    }

    #[test]
    fn a_variant_is_in_the_range_of_its_version() {
        assert!(within(">=1.2.1", "1.2.1-alpine"));
        assert!(within("=1.2.1", "1.2.1-alpine"));
    }

    #[test]
    fn bad_ranges_name_the_culprit() {
        let e = Range::parse(">=1.25, <<2").unwrap_err();
        assert!(e.contains("'<<2'"), "{e}");
        assert!(Range::parse("").is_err());
        assert!(Range::parse(">=x").is_err());
        assert!(Range::parse(">=1.2-rc.1").is_err());
    }
}
