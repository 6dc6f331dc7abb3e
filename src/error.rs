//! The one error type of picture-book. Every variant carries the context an
//! operator needs to act (file, key, image, command, the child's own words),
//! and its `Display` is a single line. Secrets never reach these messages:
//! callers pass only names, paths and the output of child processes, which
//! never see a secret in their arguments.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can stop a command or an image.
#[derive(Debug)]
pub enum Error {
    /// The command line is wrong: unknown flag, stray argument, missing value.
    Usage(String),
    /// No configuration file exists at any of the places looked at.
    ConfigNotFound {
        /// Every place looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// The configuration file exists but could not be read.
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: io::Error,
    },
    /// The configuration was read but is not valid; every problem is listed.
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// One line per problem, each starting with the key's path.
        problems: Vec<String>,
    },
    /// `--registry` names a hostname that the configuration does not have.
    UnknownRegistry {
        /// The hostname asked for.
        host: String,
        /// The hostnames the configuration has.
        known: Vec<String>,
    },
    /// The engine's CLI (docker, podman) is not installed (not on `PATH`).
    ToolNotFound {
        /// The program looked for.
        program: String,
    },
    /// The engine's CLI runs but cannot reach its daemon or storage.
    EngineUnreachable {
        /// What the CLI said.
        detail: String,
    },
    /// An engine's command for one image failed.
    CommandFailed {
        /// The command, e.g. `docker pull alpine:3.19`.
        command: String,
        /// The CLI's own error text.
        detail: String,
    },
    /// A transfer ran past `transferTimeout`: a docker command, which was
    /// killed, or a native copy, which was stopped.
    TransferTimedOut {
        /// The command, or `the copy of SOURCE`.
        command: String,
        /// The limit.
        after: Duration,
        /// Whether a child process was killed (rather than a copy stopped).
        killed: bool,
    },
    /// The syncer script could not be started.
    ScriptSpawn {
        /// The script.
        script: PathBuf,
        /// Why it could not start.
        source: io::Error,
    },
    /// The syncer script cannot be started: its interpreter is missing, say.
    ScriptUnusable {
        /// The script.
        script: PathBuf,
        /// Why, in the operator's terms.
        problem: String,
    },
    /// The syncer script exited with a failure status; its list is not used.
    ScriptFailed {
        /// The script.
        script: PathBuf,
        /// How it ended (`exit status: 3`, `signal: 9`).
        status: String,
        /// The last line it wrote to stderr, if any.
        last_stderr: Option<String>,
    },
    /// The syncer script ran past `syncerScriptTimeout` and was killed with its children.
    ScriptTimedOut {
        /// The script.
        script: PathBuf,
        /// The limit.
        after: Duration,
    },
    /// The syncer script wrote more than picture-book reads; it was killed
    /// and its list is not used.
    ScriptOutputTooLarge {
        /// The script.
        script: PathBuf,
        /// `standard output` or `standard error`.
        stream: &'static str,
        /// How many bytes of it were read.
        limit: usize,
    },
    /// The syncer script listed more images than one run takes; none is used.
    ScriptListTooLong {
        /// The script.
        script: PathBuf,
        /// How many images (and lines that are not images) it listed.
        listed: usize,
        /// The most a run takes.
        limit: usize,
    },
    /// The syncer script and the `images` entries together list more than
    /// a run takes.
    ListTooLong {
        /// How many images (and lines that are not images) they listed.
        listed: usize,
        /// The most a run takes.
        limit: usize,
    },
    /// A child process was stopped because picture-book is shutting down.
    Interrupted {
        /// The command, e.g. `docker pull alpine:3.19` or the script's path.
        command: String,
    },
    /// A private docker configuration for credentials could not be written.
    Credentials {
        /// What could not be written.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing the result to standard output failed.
    Output(io::Error),
    /// The signal handlers could not be installed.
    Signals(io::Error),
    /// The state file could not be written.
    State {
        /// The file.
        path: PathBuf,
        /// Why, in the operator's terms (`... is not a directory`).
        problem: String,
    },
    /// The state directory cannot be used, so a run could not take its
    /// lock (see `runlock`) and does not run.
    StateDirUnusable {
        /// Why, in the operator's terms (`... is a symlink to ..., which
        /// does not exist`).
        problem: String,
    },
    /// A registry's HTTP API refused, or answered what cannot be used.
    Registry {
        /// The registry host.
        host: String,
        /// The HTTP status it answered with, when it answered.
        status: Option<u16>,
        /// The OCI error code of its answer (`DENIED`, `BLOB_UNKNOWN`), if any.
        code: Option<String>,
        /// What happened.
        detail: String,
        /// How long it asked to be left alone (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// An OCI image layout (a directory or a tar archive) cannot be read
    /// or written.
    Layout {
        /// The directory or archive.
        path: PathBuf,
        /// What is wrong, in the operator's terms.
        detail: String,
    },
    /// Content (a blob, a manifest) does not match its digest.
    Corrupt {
        /// What, from where, and how it differs.
        detail: String,
    },
    /// A registry could not be reached, or the connection broke or stalled.
    Network {
        /// The registry host.
        host: String,
        /// What happened.
        detail: String,
    },
    /// A target repository that the registry does not create on push and
    /// that was not created (no `createRepositoryScript`, or it failed).
    RepositoryMissing {
        /// The target registry host.
        host: String,
        /// What happened and what to do, naming the repository.
        message: String,
    },
    /// The HTTP API could not listen on its address.
    ApiBind {
        /// `address:port`.
        address: String,
        /// Why.
        detail: String,
    },
}

impl Error {
    /// True for errors that happen before anything is attempted: usage,
    /// configuration, a layout that cannot be opened or made. These exit
    /// with status 2.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Usage(_)
                | Error::ConfigNotFound { .. }
                | Error::ConfigRead { .. }
                | Error::ConfigInvalid { .. }
                | Error::UnknownRegistry { .. }
                | Error::Layout { .. }
                | Error::StateDirUnusable { .. }
        )
    }

    /// The HTTP status a registry answered with, for a registry error.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Registry { status, .. } => *status,
            _ => None,
        }
    }

    /// An error of `host`'s registry API that is not an HTTP answer: a
    /// manifest that cannot be used, a registry that stored something else.
    pub fn registry(host: &str, detail: impl Into<String>) -> Error {
        Error::Registry {
            host: host.to_string(),
            status: None,
            code: None,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The registry host an error of the registry API concerns.
    pub fn host(&self) -> Option<&str> {
        match self {
            Error::Registry { host, .. }
            | Error::Network { host, .. }
            | Error::RepositoryMissing { host, .. } => Some(host),
            _ => None,
        }
    }

    /// How long the registry asked to be left alone, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Registry { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True when the docker daemon as a whole is unusable, so that further
    /// images cannot succeed either and the run should stop.
    pub fn is_docker_down(&self) -> bool {
        matches!(
            self,
            Error::ToolNotFound { .. } | Error::EngineUnreachable { .. }
        )
    }
}

/// `text` made safe for one line of a message or a log: control characters
/// (ANSI escapes, NUL, line breaks), invisible direction marks and the
/// replacement character that stands for bytes that were not UTF-8 are
/// written as escapes (`\u{1b}`), and a text longer than `max` characters
/// keeps its start and its end around a note of how much was cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let count = text.chars().count();
    let escape = |s: &mut String, c: char| {
        let unsafe_to_print = c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{fffd}');
        if unsafe_to_print {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    };
    let mut out = String::new();
    if count <= max {
        text.chars().for_each(|c| escape(&mut out, c));
        return out;
    }
    let tail = max / 3;
    let head = max - tail;
    text.chars().take(head).for_each(|c| escape(&mut out, c));
    out.push_str(&format!("…[{} characters cut]…", count - head - tail));
    text.chars()
        .skip(count - tail)
        .for_each(|c| escape(&mut out, c));
    out
}

/// Formats a duration the way the configuration accepts it (`90s`, `10m`, `1h`).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else if secs > 0 || d.is_zero() {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg} (see 'picture-book --help')"),
            Error::ConfigNotFound { searched } => {
                let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "no configuration file found; looked at: {}; pass --config FILE or set PICTURE_BOOK_CONFIG",
                    list.join(", ")
                )
            }
            Error::ConfigRead { path, source } => {
                write!(f, "cannot read configuration {}: {source}", path.display())
            }
            Error::ConfigInvalid { path, problems } => {
                write!(f, "invalid configuration {}: ", path.display())?;
                if let [one] = problems.as_slice() {
                    write!(f, "{one}")
                } else {
                    write!(f, "{} problems:", problems.len())?;
                    for p in problems {
                        write!(f, "\n  {p}")?;
                    }
                    Ok(())
                }
            }
            Error::UnknownRegistry { host, known } => write!(
                f,
                "no registry '{host}' in the configuration; configured: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            Error::ToolNotFound { program } => {
                let engine = std::path::Path::new(program)
                    .file_name()
                    .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned());
                write!(
                    f,
                    "command not found: {program} (engine: {engine} needs it on PATH; engine: native needs no CLI)"
                )
            }
            Error::EngineUnreachable { detail } => {
                write!(f, "cannot reach the docker daemon: {detail}")
            }
            Error::CommandFailed { command, detail } => write!(f, "{command} failed: {detail}"),
            Error::TransferTimedOut {
                command,
                after,
                killed,
            } => write!(
                f,
                "{command} did not finish within {} and was {}",
                human_duration(*after),
                if *killed {
                    "killed"
                } else {
                    "stopped (transferTimeout)"
                }
            ),
            Error::ScriptSpawn { script, source } => {
                write!(f, "cannot run syncer script {}: {source}", script.display())
            }
            Error::ScriptUnusable { script, problem } => {
                write!(
                    f,
                    "cannot run syncer script {}: {problem}",
                    script.display()
                )
            }
            Error::ScriptFailed {
                script,
                status,
                last_stderr,
            } => {
                write!(
                    f,
                    "syncer script {} failed ({status}); nothing was mirrored",
                    script.display()
                )?;
                if let Some(line) = last_stderr {
                    write!(f, "; it said: {line}")?;
                }
                Ok(())
            }
            Error::ScriptTimedOut { script, after } => write!(
                f,
                "syncer script {} did not finish within {} (syncerScriptTimeout) and was killed with its children; nothing was mirrored",
                script.display(),
                human_duration(*after)
            ),
            Error::ScriptOutputTooLarge {
                script,
                stream,
                limit,
            } => write!(
                f,
                "syncer script {} wrote more than {} MiB to {stream} and was killed; nothing was mirrored",
                script.display(),
                limit >> 20
            ),
            Error::ListTooLong { listed, limit } => write!(
                f,
                "the syncer script and images list {listed} images together, more than the {limit} one run takes; nothing was mirrored (choose fewer tags, or split them over several registries)"
            ),
            Error::ScriptListTooLong {
                script,
                listed,
                limit,
            } => write!(
                f,
                "syncer script {} listed {listed} images, more than the {limit} one run takes; nothing was mirrored (list fewer, or split them over several registries)",
                script.display()
            ),
            Error::Interrupted { command } => {
                write!(f, "{command} was stopped: picture-book is shutting down")
            }
            Error::Credentials { path, source } => write!(
                f,
                "cannot write a private docker configuration in {}: {source}",
                path.display()
            ),
            Error::Output(source) => write!(f, "cannot write to standard output: {source}"),
            Error::Signals(source) => write!(f, "cannot install signal handlers: {source}"),
            Error::Corrupt { detail } => f.write_str(detail),
            Error::Layout { path, detail } => write!(f, "{}: {detail}", path.display()),
            Error::Registry { host, detail, .. } | Error::Network { host, detail } => {
                write!(f, "registry {host}: {detail}")
            }
            Error::State { path, problem } => write!(
                f,
                "cannot write the state file {}: {problem} (set stateDir or --state-dir to a writable directory)",
                path.display()
            ),
            Error::StateDirUnusable { problem } => write!(
                f,
                "the state directory {problem}: nothing runs without the lock kept there (fix it, or set stateDir or --state-dir to a usable directory)"
            ),
            Error::RepositoryMissing { message, .. } => f.write_str(message),
            Error::ApiBind { address, detail } => write!(
                f,
                "the API cannot listen on {address}: {detail} (check api.address and api.port)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ConfigRead { source, .. }
            | Error::ScriptSpawn { source, .. }
            | Error::Credentials { source, .. }
            | Error::Output(source)
            | Error::Signals(source) => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_config() {
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(human_duration(Duration::from_secs(90)), "90s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn excerpts_are_printable_and_bounded() {
        assert_eq!(excerpt("alpine:3", 10), "alpine:3");
        assert_eq!(excerpt("a\u{1b}[31mb\0c\r", 40), "a\\u{1b}[31mb\\u{0}c\\r");
        assert_eq!(excerpt("\u{fffd}\u{202e}", 10), "\\u{fffd}\\u{202e}");
        let long = format!("{}{}", "a".repeat(1 << 20), "z".repeat(10));
        let short = excerpt(&long, 60);
        assert!(short.starts_with(&"a".repeat(40)), "{short}");
        assert!(short.ends_with(&"z".repeat(10)), "{short}");
        assert!(short.contains(&format!("…[{} characters cut]…", (1 << 20) + 10 - 60)));
        assert!(short.chars().count() < 100, "{short}");
    }

    #[test]
    fn config_errors_list_every_problem() {
        let e = Error::ConfigInvalid {
            path: PathBuf::from("/etc/picture-book/config.yaml"),
            problems: vec![
                "registries[0].hostname: must not be empty".into(),
                "registries[1].syncPeriod: bad".into(),
            ],
        };
        let text = e.to_string();
        assert!(text.contains("2 problems"), "{text}");
        assert!(text.contains("\n  registries[0].hostname: must not be empty"));
        assert!(text.contains("\n  registries[1].syncPeriod: bad"));
    }

    #[test]
    fn not_found_lists_places() {
        let e = Error::ConfigNotFound {
            searched: vec![PathBuf::from("./config.yaml"), PathBuf::from("/etc/x.yaml")],
        };
        assert_eq!(
            e.to_string(),
            "no configuration file found; looked at: ./config.yaml, /etc/x.yaml; pass --config FILE or set PICTURE_BOOK_CONFIG"
        );
    }
}
