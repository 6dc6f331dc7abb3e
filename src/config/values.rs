//! The values the configuration writes as text: durations (`1h30m`), sizes
//! (`8MiB`), and secrets, inline or in a file whose permissions are
//! checked. Each is read into its value or a message saying what is wrong;
//! which key it is and which range a key accepts is `validate`'s business.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::secret::Secret;

/// The longest API token accepted: it must fit in a request header.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Parses a duration: `90` or `90s` (seconds), `10m`, `2h`, or a sum like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("'{text}' is not a duration; use e.g. 90s, 10m, 1h or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return if secs == 0 {
            Err("must be longer than 0".into())
        } else {
            Ok(Duration::from_secs(secs))
        };
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    if total == 0 {
        return Err("must be longer than 0".into());
    }
    Ok(Duration::from_secs(total))
}

/// Parses a size: bytes, or a number with KiB, MiB or GiB (K, M, G).
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let multiplier = match unit.trim() {
        "" | "B" => Some(1u64),
        "KiB" | "K" | "k" => Some(1 << 10),
        "MiB" | "M" => Some(1 << 20),
        "GiB" | "G" => Some(1 << 30),
        _ => None,
    };
    digits
        .parse::<u64>()
        .ok()
        .zip(multiplier)
        .and_then(|(n, m)| n.checked_mul(m))
        .ok_or_else(|| format!("'{text}' is not a size; write bytes, or e.g. 8MiB"))
}

/// A token as a client can send it in a header: trimmed, at most
/// [`MAX_TOKEN_LEN`] long, without control characters. The message never
/// shows the token.
pub(super) fn usable_token(text: &str) -> Result<Secret, String> {
    let token = text.trim();
    if token.len() > MAX_TOKEN_LEN {
        Err(format!(
            "{} bytes long; a token has at most {MAX_TOKEN_LEN}",
            token.len()
        ))
    } else if token.chars().any(char::is_control) {
        Err("contains a control character, which a request header cannot carry".into())
    } else {
        Ok(Secret::new(token))
    }
}

/// Reads a file that holds a secret. One that every user may read or write
/// is refused (`chmod o-rw` it); one its group may read is accepted with a
/// warning, since `root:picture-book 0640` is how packages install such files.
pub(super) fn read_secret_file(path: &Path, key: &str) -> Result<String, String> {
    let mode = fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o006 != 0 {
        return Err(format!(
            "{} holds a secret but every user may {} it (mode {:04o}); chmod o-rw it",
            path.display(),
            if mode & 0o004 != 0 { "read" } else { "write" },
            mode & 0o7777
        ));
    }
    if mode & 0o040 != 0 {
        log::warn!(
            "{key}: {} holds a secret and its group may read it (mode {:04o}); chmod 600 it unless that group is meant to",
            path.display(),
            mode & 0o7777
        );
    }
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixture::Dir;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0").unwrap_err().contains("longer than 0"));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5m3").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("8 MiB"), Ok(8 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(
            parse_size("8MB"),
            Err("'8MB' is not a size; write bytes, or e.g. 8MiB".into())
        );
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn tokens_must_fit_in_a_header() {
        assert_eq!(usable_token(" tok\n").unwrap().expose(), "tok");
        assert!(
            usable_token("a\u{7}b")
                .unwrap_err()
                .contains("control character")
        );
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        assert!(!usable_token(&long).unwrap_err().contains(&long));
    }

    #[test]
    fn secret_files_that_cannot_be_used_are_named() {
        let dir = Dir::new("files");
        dir.file("empty-token", "  \n", 0o600);
        let yaml = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n    pullAuthConfigFile: nope.json\napi:\n  enabled: true\n  enableAuth: true\n  authTokenFile: empty-token\n";
        let problems = dir.problems(yaml);
        let missing = dir.0.join("nope.json");
        assert!(
            problems[0].starts_with(&format!(
                "registries[0].pullAuthConfigFile: cannot read {}: ",
                missing.display()
            )),
            "{problems:?}"
        );
        assert_eq!(
            problems[1],
            format!(
                "api.authTokenFile: {} is empty",
                dir.0.join("empty-token").display()
            )
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        dir.file("shared.json", "{}", 0o644);
        dir.file("token", "tok", 0o602);
        let open = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\n    pushAuthConfigFile: shared.json\napi:\n  authTokenFile: token\n";
        let shared = dir.0.join("shared.json");
        let token = dir.0.join("token");
        assert_eq!(
            dir.problems(open),
            [
                format!(
                    "registries[0].pushAuthConfigFile: {} holds a secret but every user may read it (mode 0644); chmod o-rw it",
                    shared.display()
                ),
                format!(
                    "api.authTokenFile: {} holds a secret but every user may write it (mode 0602); chmod o-rw it",
                    token.display()
                ),
            ]
        );
        let both = "registries:\n  - hostname: a.example.com\n    syncerScript: sync.sh\napi:\n  authToken: t\n  authTokenFile: empty-token\n";
        assert_eq!(
            dir.problems(both),
            ["api.authToken: set authToken or authTokenFile, not both"]
        );
    }
}
