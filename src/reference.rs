//! Image references and target naming. Parses the Docker reference grammar
//! (`[domain[:port]/]path[:tag][@digest]`) by hand, and maps a source to the
//! name it gets at the target registry. Nothing here touches docker or the
//! network.

use std::fmt;

use crate::error::excerpt;

/// Longest repository name (domain and path) docker accepts.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag docker accepts.
const MAX_TAG_LEN: usize = 128;
/// Longest reference there can be: a name, a tag and a sha512 digest.
const MAX_REFERENCE_LEN: usize = MAX_NAME_LEN + 1 + MAX_TAG_LEN + 1 + 7 + 128;

/// A piece of input quoted for a message: printable and short.
fn quote(text: &str) -> String {
    format!("'{}'", excerpt(text, 80))
}

/// A parsed image reference, as a syncer script lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry domain with optional port, when the reference names one.
    domain: Option<String>,
    /// Repository path after the domain, as written (`library/alpine`, `alpine`).
    path: String,
    /// Tag, when written.
    tag: Option<String>,
    /// Digest (`sha256:...`), when written.
    digest: Option<String>,
}

impl Reference {
    /// Parses `text`, returning a message that says what is wrong.
    pub fn parse(text: &str) -> Result<Reference, String> {
        if text.is_empty() {
            return Err("empty image reference".into());
        }
        if text.len() > MAX_REFERENCE_LEN {
            return Err(format!(
                "{} characters long; no image reference is longer than {MAX_REFERENCE_LEN}",
                text.chars().count()
            ));
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace()) {
            return Err(format!(
                "contains whitespace ({}): one image reference per line, and a comment on a line of its own starting with #",
                quote(&c.to_string())
            ));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!(
                "contains a control character ({})",
                quote(&c.to_string())
            ));
        }
        if let Some(c) = text.chars().find(|c| !c.is_ascii()) {
            return Err(if c == char::REPLACEMENT_CHARACTER {
                "contains bytes that are not UTF-8 text".to_string()
            } else {
                format!("contains {}, which is not ASCII", quote(&c.to_string()))
            });
        }
        if text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("a 64-character hexadecimal string is an image ID, not a name".into());
        }
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => {
                check_digest(d)?;
                (n, Some(d.to_string()))
            }
            None => (text, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = name_tag.split_at(last_slash + i);
                let t = &t[1..];
                check_tag(t)?;
                (n, Some(t.to_string()))
            }
            None => (name_tag, None),
        };
        if name.is_empty() {
            return Err("missing repository name".into());
        }
        if name.len() > MAX_NAME_LEN {
            return Err(format!(
                "repository name longer than {MAX_NAME_LEN} characters"
            ));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_domain(first) => {
                check_domain(first)?;
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        check_path(path)?;
        Ok(Reference {
            domain,
            path: path.to_string(),
            tag,
            digest,
        })
    }

    /// The registry domain, when the reference names one.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// Whether the image is on Docker Hub: no domain, or one of its names.
    pub fn on_docker_hub(&self) -> bool {
        self.domain.as_deref().is_none_or(is_docker_hub)
    }

    /// The repository path as the registry knows it: on Docker Hub, a
    /// one-component name is under `library/`.
    pub fn full_path(&self) -> String {
        if self.on_docker_hub() && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        }
    }

    /// The repository path after the registry domain, as written.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The digest, when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same image, read by `digest` (its tag, if any, still names the
    /// target).
    pub fn pinned_to(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The repository name with its domain, as written.
    pub fn name(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// What `docker pull` is given: `name@digest` when a digest is pinned (a
    /// tag next to it only names the target), else `name:tag`, with `latest`
    /// written out when no tag is given.
    pub fn pull_name(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}@{d}", self.name()),
            (None, Some(t)) => format!("{}:{t}", self.name()),
            (None, None) => format!("{}:latest", self.name()),
        }
    }

    /// The tag the image gets at the target: its own tag, else `latest` for a
    /// plain name, else, for a bare digest, `<algorithm>-<hex>` cut to the
    /// 128 characters a tag may have (the source digest, since a tag is
    /// needed to push and the pushed digest may differ).
    pub fn target_tag(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => d.replacen(':', "-", 1).chars().take(MAX_TAG_LEN).collect(),
            (None, None) => "latest".into(),
        }
    }

    /// The image this reference means, spelt one way: Docker Hub's implied
    /// domain and `library/` written out, `latest` when neither tag nor
    /// digest is given. `alpine` and `docker.io/library/alpine:latest` have
    /// the same identity.
    pub fn identity(&self) -> String {
        let domain = match self.domain.as_deref() {
            Some(d) if !self.on_docker_hub() => d,
            _ => "docker.io",
        };
        let path = self.full_path();
        match (&self.tag, &self.digest) {
            (_, Some(d)) => format!("{domain}/{path}@{d}"),
            (Some(t), None) => format!("{domain}/{path}:{t}"),
            (None, None) => format!("{domain}/{path}:latest"),
        }
    }

    /// The full target name: `<hostname>/<repository>/<path>:<tag>`, where the
    /// repository prefix is left out when empty, and not added again when the
    /// path already starts with all of its components followed by more.
    pub fn target(&self, hostname: &str, repository: &str) -> String {
        self.target_with_tag(hostname, repository, &self.target_tag())
    }

    /// The tag the native engine gives the image at the target: as
    /// [`Reference::target_tag`], except for a bare digest, which becomes
    /// `pinned-<algorithm>-<hex>`. That cannot be mistaken for the OCI 1.1
    /// referrers fallback tag (`sha256-<hex>`) of the same digest, nor for
    /// cosign's `sha256-<hex>.sig`, `.att` and `.sbom`, which tools that
    /// push signatures overwrite; the image itself is reachable by its digest.
    pub fn native_tag(&self) -> String {
        match (&self.tag, &self.digest) {
            (None, Some(d)) => format!("pinned-{}", d.replacen(':', "-", 1))
                .chars()
                .take(MAX_TAG_LEN)
                .collect(),
            _ => self.target_tag(),
        }
    }

    /// The full target name for the native engine: as [`Reference::target`],
    /// with [`Reference::native_tag`].
    pub fn native_target(&self, hostname: &str, repository: &str) -> String {
        self.target_with_tag(hostname, repository, &self.native_tag())
    }

    fn target_with_tag(&self, hostname: &str, repository: &str, tag: &str) -> String {
        let repository = repository.trim_matches('/');
        let prefixed = repository.is_empty() || {
            let repo: Vec<&str> = repository.split('/').collect();
            let path: Vec<&str> = self.path.split('/').collect();
            path.len() > repo.len() && path[..repo.len()] == repo[..]
        };
        if prefixed {
            format!("{hostname}/{}:{tag}", self.path)
        } else {
            format!("{hostname}/{repository}/{}:{tag}", self.path)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The names of Docker Hub's registry.
const DOCKER_HUB: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Whether a registry domain is Docker Hub, under any of its names.
pub fn is_docker_hub(domain: &str) -> bool {
    DOCKER_HUB.iter().any(|h| h.eq_ignore_ascii_case(domain))
}

/// Docker's rule: the first component is a registry domain when it contains a
/// `.` or a `:`, is `localhost`, or has upper-case letters.
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

/// Checks that `host` is usable as the registry part of a docker image name:
/// a domain or IP address with an optional port, which docker will read as a
/// registry (so a bare word like `myregistry` is refused).
pub fn check_registry_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("must not be empty".into());
    }
    if host.contains("://") {
        return Err(format!(
            "{} must be a host name, without a scheme like https://",
            quote(host)
        ));
    }
    if host.contains('/') {
        return Err(format!(
            "{} must be a host name without a path; put the path in 'repository'",
            quote(host)
        ));
    }
    check_domain(host)?;
    if !looks_like_domain(host) {
        return Err(format!(
            "{} would be read by docker as a Docker Hub user, not a registry; use a name with a dot, a :port, or localhost",
            quote(host)
        ));
    }
    Ok(())
}

/// Checks a `repository` prefix: path components as in an image name.
pub fn check_repository(repository: &str) -> Result<(), String> {
    let trimmed = repository.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(());
    }
    if trimmed.len() >= MAX_NAME_LEN {
        return Err(format!(
            "{} characters long; a target name (hostname, repository and image) has at most {MAX_NAME_LEN}",
            trimmed.chars().count()
        ));
    }
    check_path(trimmed)
}

fn check_domain(domain: &str) -> Result<(), String> {
    let bad = || format!("invalid registry domain {}", quote(domain));
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
        if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(bad());
        }
        match after {
            "" => (None, None),
            p => (None, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port {
        if port.is_empty()
            || !port.chars().all(|c| c.is_ascii_digit())
            || port.parse::<u16>().is_err()
        {
            return Err(format!("invalid port in registry domain {}", quote(domain)));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "repository name must be lowercase: {}",
                quote(path)
            ));
        }
        if !path_component_ok(component) {
            return Err(format!(
                "invalid repository name component {} in {}",
                quote(component),
                quote(path)
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    if tag.len() > MAX_TAG_LEN {
        Err(format!(
            "tag {} is {} characters long, longer than {MAX_TAG_LEN}",
            quote(tag),
            tag.chars().count()
        ))
    } else if chars.next().is_some_and(word) && chars.all(|c| word(c) || c == '.' || c == '-') {
        Ok(())
    } else {
        Err(format!("invalid tag {}", quote(tag)))
    }
}

/// `sha256:<64 hex>`, `sha384:<96 hex>` or `sha512:<128 hex>`, lower case:
/// the digests docker can pull by.
fn check_digest(digest: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "invalid digest {} (expected sha256:, sha384: or sha512: and lower-case hex)",
            quote(digest)
        )
    };
    let (algorithm, hex) = digest.split_once(':').ok_or_else(bad)?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(bad()),
    };
    if hex.len() == len
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn target(src: &str, host: &str, repo: &str) -> String {
        Reference::parse(src).unwrap().target(host, repo)
    }

    /// The naming table of the man page, row by row.
    #[test]
    fn naming_table() {
        let rows: &[(&str, &str, &str)] = &[
            (
                "alpine:3.19",
                "test-images",
                "reg.example.com/test-images/alpine:3.19",
            ),
            (
                "alpine",
                "test-images",
                "reg.example.com/test-images/alpine:latest",
            ),
            (
                "docker.io/library/alpine:3.19",
                "test-images",
                "reg.example.com/test-images/library/alpine:3.19",
            ),
            (
                "quay.io/jetstack/cert-manager-controller:v1.14.0",
                "test-images",
                "reg.example.com/test-images/jetstack/cert-manager-controller:v1.14.0",
            ),
            (
                "127.0.0.1:5001/team/app:1.0",
                "test-images",
                "reg.example.com/test-images/team/app:1.0",
            ),
            (
                "localhost/app:2",
                "test-images",
                "reg.example.com/test-images/app:2",
            ),
            ("alpine:3.19", "", "reg.example.com/alpine:3.19"),
            (
                "rancher/fleet:v0.9.0",
                "rancher",
                "reg.example.com/rancher/fleet:v0.9.0",
            ),
            (
                "rancher-labs/x:1",
                "rancher",
                "reg.example.com/rancher/rancher-labs/x:1",
            ),
            (
                "rancher:v2.8",
                "rancher",
                "reg.example.com/rancher/rancher:v2.8",
            ),
            ("a/b/c:1", "a/b", "reg.example.com/a/b/c:1"),
            ("a/c:1", "a/b", "reg.example.com/a/b/a/c:1"),
            (
                &format!("alpine:3.19@{D}"),
                "mirror",
                "reg.example.com/mirror/alpine:3.19",
            ),
            (
                &format!("alpine@{D}"),
                "mirror",
                &format!("reg.example.com/mirror/alpine:sha256-{}", &D[7..]),
            ),
        ];
        for (src, repo, want) in rows {
            assert_eq!(
                &target(src, "reg.example.com", repo),
                want,
                "{src} with repository '{repo}'"
            );
        }
    }

    #[test]
    fn the_native_engine_gives_a_bare_digest_a_tag_no_signature_tool_writes() {
        let r = Reference::parse(&format!("alpine@{D}")).unwrap();
        assert_eq!(
            r.native_target("reg.example.com", "mirror"),
            format!("reg.example.com/mirror/alpine:pinned-sha256-{}", &D[7..])
        );
        let tagged = Reference::parse(&format!("alpine:3.19@{D}")).unwrap();
        assert_eq!(tagged.native_tag(), "3.19");
        assert_eq!(Reference::parse("alpine").unwrap().native_tag(), "latest");
    }

    #[test]
    fn repository_slashes_are_trimmed() {
        assert_eq!(target("x:1", "h:5000", "/team/"), "h:5000/team/x:1");
    }

    #[test]
    fn parts_are_split_like_docker() {
        let r = Reference::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(r.name(), "localhost:5000/a/b");
        assert_eq!(r.path(), "a/b");
        assert_eq!(r.pull_name(), "localhost:5000/a/b:v1");
        let r = Reference::parse("localhost:5000").unwrap();
        assert_eq!(
            (r.name(), r.target_tag()),
            ("localhost".to_string(), "5000".to_string())
        );
        let r = Reference::parse("[::1]:5000/x").unwrap();
        assert_eq!(r.name(), "[::1]:5000/x");
        assert_eq!(r.pull_name(), "[::1]:5000/x:latest");
    }

    #[test]
    fn digest_pulls_by_digest_and_pushes_the_tag() {
        let r = Reference::parse(&format!("quay.io/x/y:1.2@{D}")).unwrap();
        assert_eq!(r.pull_name(), format!("quay.io/x/y@{D}"));
        assert_eq!(r.target_tag(), "1.2");
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.to_string(), format!("quay.io/x/y:1.2@{D}"));
    }

    #[test]
    fn invalid_references_say_why() {
        let cases = [
            ("", "empty"),
            ("Alpine:3", "lowercase"),
            ("docker.io/Library/alpine", "lowercase"),
            ("alpine:", "invalid tag"),
            ("alpine:-x", "invalid tag"),
            ("alpine:3 # comment", "whitespace"),
            ("alpine@sha256:abc", "invalid digest"),
            (
                "alpine@md5:0123456789abcdef0123456789abcdef",
                "invalid digest",
            ),
            (
                &format!("alpine@sha256:{}", "A".repeat(64)),
                "invalid digest",
            ),
            (&"ab12".repeat(16), "image ID"),
            ("a\u{7}b", "control character"),
            ("a//b", "invalid repository name component ''"),
            ("a-/b", "invalid repository name component 'a-'"),
            ("reg.io:99999/x", "invalid port"),
            ("bad_host.io/x", "invalid registry domain"),
            (":tag", "missing repository name"),
            ("x/", "invalid repository name component ''"),
        ];
        for (input, want) in &cases {
            let err = Reference::parse(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let long = format!("{}:1", "a".repeat(300));
        assert!(
            Reference::parse(&long)
                .unwrap_err()
                .contains("longer than 255")
        );
        let tag = format!("a:{}", "t".repeat(129));
        assert!(
            Reference::parse(&tag)
                .unwrap_err()
                .contains("longer than 128")
        );
    }

    /// What a syncer script may print by mistake: each is refused with a
    /// reason that is short and printable, whatever the input.
    #[test]
    fn bad_input_is_refused_with_a_short_printable_reason() {
        let cases: Vec<(String, &str)> = vec![
            ("Alpine".into(), "lowercase: 'Alpine'"),
            ("library/Alpine:3".into(), "lowercase"),
            (
                "alpine!".into(),
                "invalid repository name component 'alpine!'",
            ),
            ("al$pine".into(), "invalid repository name component"),
            ("alpine:3.19;rm".into(), "invalid tag '3.19;rm'"),
            ("a/b?c".into(), "invalid repository name component 'b?c'"),
            ("alpine:3 # pinned".into(), "a comment on a line of its own"),
            (" alpine".into(), "contains whitespace (' ')"),
            ("alpine	".into(), "contains whitespace ('\\t')"),
            ("alpine\r".into(), "contains whitespace ('\\r')"),
            ("al\0pine".into(), "control character ('\\u{0}')"),
            ("\u{1b}[31malpine".into(), "control character ('\\u{1b}')"),
            ("alp\u{fffd}ne".into(), "not UTF-8"),
            ("alpïne".into(), "'ï', which is not ASCII"),
            (
                "#alpine".into(),
                "invalid repository name component '#alpine'",
            ),
            (format!("{}:1", "a".repeat(256)), "longer than 255"),
            (format!("a/{}/b", "c".repeat(300)), "longer than 255"),
            (format!("quay.io/{}", "c".repeat(250)), "longer than 255"),
            (
                format!("a:{}", "t".repeat(129)),
                "129 characters long, longer than 128",
            ),
            ("x".repeat(1 << 20), "1048576 characters long"),
        ];
        for (input, want) in &cases {
            let err = Reference::parse(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
            assert!(err.len() < 400, "{} characters: {err}", err.len());
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
        for ok in [
            format!("a/{}:{}", "b".repeat(253), "t".repeat(128)),
            format!("Quay.IO/x/{}", "y".repeat(200)),
            format!("{}@sha512:{}", "n".repeat(255), "e".repeat(128)),
        ] {
            assert!(Reference::parse(&ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn component_separators() {
        for ok in ["a", "a.b", "a_b", "a__b", "a-b", "a---b", "a1.b2_c3__d4-e5"] {
            assert!(path_component_ok(ok), "{ok}");
        }
        for bad in ["", "-a", "a.", "a..b", "a___b", "a._b", "_a"] {
            assert!(!path_component_ok(bad), "{bad}");
        }
    }

    #[test]
    fn registry_hosts() {
        for ok in [
            "my-registry.com",
            "127.0.0.1:5000",
            "localhost",
            "localhost:5000",
            "reg.io:443",
            "[::1]:5000",
        ] {
            assert_eq!(check_registry_host(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "must not be empty"),
            ("https://reg.io", "without a scheme"),
            ("reg.io/team", "without a path"),
            ("myregistry", "Docker Hub user"),
            ("reg..io", "invalid registry domain"),
            ("reg.io:port", "invalid port"),
        ];
        for (input, want) in cases {
            let err = check_registry_host(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn repository_prefixes() {
        assert_eq!(check_repository(""), Ok(()));
        assert_eq!(check_repository("team/mirror"), Ok(()));
        assert!(check_repository("Team").unwrap_err().contains("lowercase"));
        assert!(check_repository("a b").is_err());
        let huge = check_repository(&"x".repeat(1 << 20)).unwrap_err();
        assert!(huge.starts_with("1048576 characters long"), "{huge}");
    }

    #[test]
    fn long_digests_give_tags_docker_accepts() {
        let r = Reference::parse(&format!("x@sha512:{}", "e".repeat(128))).unwrap();
        assert_eq!(r.target_tag().len(), 128);
        assert!(r.target_tag().starts_with("sha512-eee"));
    }

    #[test]
    fn identity_ignores_how_docker_hub_is_spelt() {
        let id = |s: &str| Reference::parse(s).unwrap().identity();
        assert_eq!(id("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(id("alpine:latest"), id("docker.io/library/alpine"));
        assert_eq!(id("library/x:latest"), id("index.docker.io/library/x"));
        assert_eq!(id("user/app:1"), "docker.io/user/app:1");
        assert_eq!(id("quay.io/a/b"), "quay.io/a/b:latest");
        assert_ne!(id("alpine:3"), id("alpine:3.19"));
        assert_eq!(id(&format!("a:1@{D}")), id(&format!("a@{D}")));
    }
}
