//! Operating system and architecture, as an image index names them: parsing
//! `os/arch[/variant]`, the host's own, and which entry of an index a
//! platform (or a `platforms` filter) picks. Copying indexes is the
//! engines' business; this is only the vocabulary.

use serde_json::Value;

/// An operating system and architecture, as in an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, when it matters.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Option<Platform> {
        let mut parts = text.trim().split('/');
        let os = parts.next().filter(|s| !s.is_empty())?.to_string();
        let architecture = parts.next().filter(|s| !s.is_empty())?.to_string();
        let variant = parts.next().filter(|s| !s.is_empty()).map(String::from);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// The platform of this host, as docker names it.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// The platform an index entry (`{"platform": {...}}`) declares, if any.
    pub fn of_entry(entry: &Value) -> Option<Platform> {
        let p = entry.get("platform")?;
        Some(Platform {
            os: p.get("os")?.as_str()?.to_string(),
            architecture: p.get("architecture")?.as_str()?.to_string(),
            variant: p.get("variant").and_then(Value::as_str).map(String::from),
        })
    }

    /// Whether this platform, given as a filter, keeps `other`: same OS and
    /// architecture, and the same variant when the filter names one.
    pub fn keeps(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && self
                .variant
                .as_ref()
                .is_none_or(|v| other.variant.as_deref() == Some(v))
    }

    /// The variant a platform without one means, as docker reads it.
    fn implied_variant(&self) -> Option<&str> {
        self.variant
            .as_deref()
            .or(match self.architecture.as_str() {
                "arm" => Some("v7"),
                "arm64" => Some("v8"),
                _ => None,
            })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// The digest of the entry of an index that matches `platform`: same OS and
/// architecture, and the same variant, which defaults as docker's does
/// (`v7` for `arm`, `v8` for `arm64`) when the platform names none.
pub fn pick(entries: &[Value], platform: &Platform) -> Option<String> {
    let variant = platform.implied_variant();
    let candidates: Vec<(&Value, Platform)> = entries
        .iter()
        .filter_map(|e| Some((e, Platform::of_entry(e)?)))
        .filter(|(_, p)| p.os == platform.os && p.architecture == platform.architecture)
        .collect();
    let exact = candidates
        .iter()
        .find(|(_, p)| p.variant.as_deref() == variant);
    exact
        .or(candidates.first())
        .and_then(|(e, _)| e["digest"].as_str())
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_selection() {
        let index: Vec<Value> = serde_json::from_str(
            r#"[{"digest":"sha256:arm7","platform":{"os":"linux","architecture":"arm","variant":"v7"}},
                {"digest":"sha256:arm6","platform":{"os":"linux","architecture":"arm","variant":"v6"}},
                {"digest":"sha256:amd","platform":{"os":"linux","architecture":"amd64"}},
                {"digest":"sha256:win","platform":{"os":"windows","architecture":"amd64"}}]"#,
        )
        .unwrap();
        let p = |t: &str| Platform::parse(t).unwrap();
        assert_eq!(
            pick(&index, &p("linux/amd64")).as_deref(),
            Some("sha256:amd")
        );
        assert_eq!(
            pick(&index, &p("linux/arm/v6")).as_deref(),
            Some("sha256:arm6")
        );
        assert_eq!(
            pick(&index, &p("linux/arm")).as_deref(),
            Some("sha256:arm7"),
            "arm means arm/v7"
        );
        assert_eq!(pick(&index, &p("linux/s390x")), None);
        assert_eq!(Platform::parse("linux"), None);
        assert_eq!(Platform::parse("linux/arm/v7/x"), None);
    }

    #[test]
    fn a_filter_without_variant_keeps_every_variant() {
        let p = |t: &str| Platform::parse(t).unwrap();
        assert!(p("linux/arm").keeps(&p("linux/arm/v6")));
        assert!(p("linux/arm/v7").keeps(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v7").keeps(&p("linux/arm/v6")));
        assert!(!p("linux/arm64").keeps(&p("linux/amd64")));
        assert!(!p("linux/amd64").keeps(&p("windows/amd64")));
    }
}
