//! The syncer script contract: splitting `syncerScriptArgs` into words the way
//! a POSIX shell would, running the script (directly, no shell) under its time
//! limit, and reading its stdout as the list of images to mirror.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::commands::check_runnable;
use crate::error::{self, Error};
use crate::process::{self, Cancel, Failure, Spec, Stream};
use crate::reference::Reference;

/// How much the script may write to stdout (and to stderr) before it is
/// killed: some 200,000 lines of the longest references.
pub const MAX_OUTPUT: usize = 16 << 20;
/// The most images (lines that are not images counted too) one run takes.
pub const MAX_IMAGES: usize = 10_000;
/// How many characters of a bad line, or of the script's stderr, a message
/// or a log line shows.
pub const EXCERPT: usize = 120;
/// The variable that tells a syncer script the configuration file it was
/// run from, so that `picture-book tags` in it reads the same one.
pub const CONFIG_VARIABLE: &str = "PICTURE_BOOK_CONFIG";
/// The variable that tells a syncer script the registry it lists for, so
/// that `picture-book tags` in it uses that registry's `pullAuthConfig`:
/// the script gets the credentials' whereabouts, never the credentials.
pub const REGISTRY_VARIABLE: &str = "PICTURE_BOOK_REGISTRY";

/// One image reference listed: by the script, or chosen by an entry of
/// `images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its line number in the script's output, from 1; for an entry of
    /// `images`, the entry's line in the configuration file (0 when it
    /// could not be told).
    pub line: usize,
    /// The parsed reference.
    pub reference: Reference,
    /// The entry of `images` (its index) that chose it; none for a line
    /// of the script.
    pub entry: Option<usize>,
    /// Whether its entry marks it `immutable`.
    pub immutable: bool,
}

impl Listed {
    /// `reference`, listed on `line` by the script.
    pub fn line(line: usize, reference: Reference) -> Listed {
        Listed {
            line,
            reference,
            entry: None,
            immutable: false,
        }
    }

    /// Where it was listed, for messages: `line 3`, or `images[1] (line 12
    /// of the configuration)`.
    pub fn origin(&self) -> String {
        match self.entry {
            None => format!("line {}", self.line),
            Some(i) => entry_name(i, self.line),
        }
    }
}

/// `images[i]`, with its line in the configuration when it is known.
pub fn entry_name(i: usize, line: usize) -> String {
    match line {
        0 => format!("images[{i}]"),
        n => format!("images[{i}] (line {n} of the configuration)"),
    }
}

/// A line of the script's output that is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLine {
    /// Its line number, from 1.
    pub line: usize,
    /// The line, trimmed, as a printable excerpt (see [`error::excerpt`]).
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What a syncer script listed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The references, in order, each once.
    pub images: Vec<Listed>,
    /// Lines that are not references.
    pub invalid: Vec<InvalidLine>,
}

/// Reads a script's stdout: one reference per line, surrounding whitespace
/// trimmed, blank lines and `#` comments skipped, duplicates kept once, a
/// trailing carriage return (CRLF line ends) dropped.
pub fn parse_list(stdout: &str) -> Listing {
    let mut listing = Listing::default();
    let mut seen = HashSet::new();
    for (i, raw) in stdout.lines().enumerate() {
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match Reference::parse(text) {
            Ok(reference) => {
                if seen.insert(reference.clone()) {
                    listing.images.push(Listed::line(i + 1, reference));
                } else {
                    log::debug!("line {}: {text} is listed again; mirroring it once", i + 1);
                }
            }
            Err(reason) => listing.invalid.push(InvalidLine {
                line: i + 1,
                text: error::excerpt(text, EXCERPT),
                reason,
            }),
        }
    }
    listing
}

/// Runs the syncer script and returns its listing. A script that exits with a
/// failure or runs past `timeout` yields an error and no listing: a
/// half-printed list must not be taken for the whole list. So does one that
/// writes more than [`MAX_OUTPUT`] or lists more than [`MAX_IMAGES`]. A
/// `cancel` stops the script at once (SIGTERM to it and its descendants):
/// what it would list is not used after a stop.
pub fn run(
    script: &Path,
    args: &[String],
    timeout: Duration,
    cancel: &Cancel,
    env: &[(&'static str, OsString)],
) -> Result<Listing, Error> {
    let name = script.file_name().map_or_else(
        || script.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    log::debug!("running syncer script {}", script.display());
    // A stop throws the listing away, so the script is given no grace.
    let spec = Spec::new(script.as_os_str(), args, timeout)
        .max_output(MAX_OUTPUT)
        .cancel_grace(Duration::ZERO)
        .ending_descendants();
    let spec = env
        .iter()
        .fold(spec, |spec, (name, value)| spec.with_env(name, value));
    let mut last_stderr = None;
    let result = process::run(&spec, cancel, &mut |stream, line| {
        if stream == Stream::Stderr && !line.trim().is_empty() {
            let line = error::excerpt(line.trim(), EXCERPT);
            log::info!("{name}: {line}");
            last_stderr = Some(line);
        }
    });
    let finished = result.map_err(|failure| match failure {
        Failure::TimedOut => Error::ScriptTimedOut {
            script: script.to_path_buf(),
            after: timeout,
        },
        Failure::Cancelled => Error::Interrupted {
            command: script.display().to_string(),
        },
        Failure::NotFound => Error::ScriptUnusable {
            script: script.to_path_buf(),
            problem: check_runnable(script)
                .err()
                .unwrap_or_else(|| "it does not exist".into()),
        },
        Failure::Spawn(source) => Error::ScriptSpawn {
            script: script.to_path_buf(),
            source,
        },
        Failure::TooMuchOutput(stream) => Error::ScriptOutputTooLarge {
            script: script.to_path_buf(),
            stream: match stream {
                Stream::Stdout => "standard output",
                Stream::Stderr => "standard error",
            },
            limit: MAX_OUTPUT,
        },
    })?;
    if !finished.status.success() {
        return Err(Error::ScriptFailed {
            script: script.to_path_buf(),
            status: finished.describe_status(),
            last_stderr,
        });
    }
    let listing = parse_list(&finished.stdout);
    let listed = listing.images.len() + listing.invalid.len();
    if listed > MAX_IMAGES {
        return Err(Error::ScriptListTooLong {
            script: script.to_path_buf(),
            listed,
            limit: MAX_IMAGES,
        });
    }
    if listed == 0 {
        log::warn!(
            "syncer script {} exited successfully but listed no images; nothing to mirror",
            script.display()
        );
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each listed image as (line, reference).
    fn listed(listing: &Listing) -> Vec<(usize, String)> {
        listing
            .images
            .iter()
            .map(|l| (l.line, l.reference.to_string()))
            .collect()
    }

    #[test]
    fn list_skips_blanks_comments_and_duplicates() {
        let out =
            "  alpine:3.19  \n\n# comment\nbusybox\nalpine:3.19\nNot An Image\n\tquay.io/a/b:1\n";
        let listing = parse_list(out);
        let names = listed(&listing);
        assert_eq!(
            names,
            [
                (1, "alpine:3.19".to_string()),
                (4, "busybox".to_string()),
                (7, "quay.io/a/b:1".to_string())
            ]
        );
        assert_eq!(listing.invalid.len(), 1);
        assert_eq!(listing.invalid[0].line, 6);
        assert_eq!(listing.invalid[0].text, "Not An Image");
        assert!(listing.invalid[0].reason.contains("whitespace"));
    }

    #[test]
    fn garbage_lines_are_reported_and_the_good_ones_kept() {
        let long = "y".repeat(1 << 20);
        let out = format!(
            "alpine:3.19\r\n\u{1b}[31mred\u{1b}[0m\nbusy\0box\n\u{fffd}\u{fffd}\n{long}\nquay.io/a/b:1\r\n\r\n# a comment\r\n"
        );
        let listing = parse_list(&out);
        let names = listed(&listing);
        assert_eq!(
            names,
            [
                (1, "alpine:3.19".to_string()),
                (6, "quay.io/a/b:1".to_string())
            ]
        );
        let lines: Vec<usize> = listing.invalid.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert_eq!(listing.invalid[0].text, "\\u{1b}[31mred\\u{1b}[0m");
        assert_eq!(listing.invalid[1].text, "busy\\u{0}box");
        assert!(listing.invalid[2].reason.contains("not UTF-8"));
        let one_mb = &listing.invalid[3];
        assert!(one_mb.text.starts_with("yyyy") && one_mb.text.contains("characters cut"));
        assert!(one_mb.text.len() < 2 * EXCERPT, "{}", one_mb.text.len());
        assert!(one_mb.reason.starts_with("1048576 characters long"));
    }

    #[test]
    fn oversized_listings_are_refused() {
        let sh = |script: &str| {
            run(
                Path::new("/bin/sh"),
                &["-c".into(), script.into()],
                Duration::from_secs(60),
                &Cancel::default(),
                &[],
            )
        };
        let many = sh("seq 1 10001 | sed 's/^/img/'").unwrap_err();
        assert!(matches!(
            many,
            Error::ScriptListTooLong { listed: 10_001, .. }
        ));
        assert!(
            many.to_string()
                .contains("listed 10001 images, more than the 10000")
        );
        assert_eq!(
            sh("seq 1 10000 | sed 's/^/img/'").unwrap().images.len(),
            MAX_IMAGES
        );
        let flood = sh("yes alpine:3.19").unwrap_err();
        assert!(
            flood
                .to_string()
                .contains("wrote more than 16 MiB to standard output"),
            "{flood}"
        );
        let nothing = sh("true").unwrap();
        assert_eq!(nothing, Listing::default());
    }

    #[test]
    fn failing_script_yields_no_list() {
        let err = run(
            Path::new("/bin/sh"),
            &["-c".into(), "echo alpine; echo broken >&2; exit 4".into()],
            Duration::from_secs(10),
            &Cancel::default(),
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exit status 4"), "{text}");
        assert!(text.contains("it said: broken"), "{text}");
    }

    #[test]
    fn scripts_that_cannot_start_say_why() {
        let dir = std::env::temp_dir().join(format!("pb-script-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let crlf = write("crlf.sh", "#!/bin/sh\r\necho alpine\r\n");
        let missing = write("missing.py", "#!/usr/bin/python9 -u\nprint('alpine')\n");
        let env = write(
            "env.sh",
            "#!/usr/bin/env picture-book-no-such-shell\necho alpine\n",
        );
        let plain = write("plain.sh", "echo alpine:3.19\n");
        let good = write("good.sh", "#! /bin/sh -e\necho alpine\n");
        let run_it = |p: &Path| run(p, &[], Duration::from_secs(10), &Cancel::default(), &[]);
        let err = run_it(&crlf).unwrap_err().to_string();
        assert!(err.contains("CRLF line ends"), "{err}");
        assert!(err.contains("'/bin/sh\\r'"), "{err}");
        assert!(err.starts_with(&format!("cannot run syncer script {}: ", crlf.display())));
        let err = run_it(&missing).unwrap_err().to_string();
        assert!(
            err.ends_with("its interpreter /usr/bin/python9 (on its #! line) does not exist"),
            "{err}"
        );
        assert_eq!(
            check_runnable(&missing).unwrap_err(),
            "its interpreter /usr/bin/python9 (on its #! line) does not exist"
        );
        assert!(check_runnable(&env).unwrap_err().contains(
            "picture-book-no-such-shell (run by /usr/bin/env on its #! line) is not on PATH"
        ));
        assert!(check_runnable(&good).is_ok());
        assert!(check_runnable(&plain).is_ok());
        assert_eq!(
            listed(&run_it(&plain).unwrap()),
            [(1, "alpine:3.19".to_string())],
            "a script without #! runs with /bin/sh"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_script_is_told_its_config_and_registry() {
        let listing = run(
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "echo \"$PICTURE_BOOK_REGISTRY/a:$PICTURE_BOOK_CONFIG\"".into(),
            ],
            Duration::from_secs(10),
            &Cancel::default(),
            &[
                (CONFIG_VARIABLE, "1".into()),
                (REGISTRY_VARIABLE, "registry.example".into()),
            ],
        )
        .unwrap();
        assert_eq!(listed(&listing), [(1, "registry.example/a:1".to_string())]);
    }

    #[test]
    fn hanging_script_is_killed() {
        let err = run(
            Path::new("/bin/sh"),
            &["-c".into(), "echo alpine; sleep 300".into()],
            Duration::from_millis(300),
            &Cancel::default(),
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, Error::ScriptTimedOut { .. }), "{err}");
    }
}
