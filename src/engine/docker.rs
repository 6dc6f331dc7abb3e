//! The docker CLI as the CLI engine's tool (see `cli`), and the only module
//! that runs docker: `pull`, `tag`, `push`, `rmi`, `image inspect` and the
//! daemon check, each through `process` with a time limit. Credentials reach
//! docker as a private `--config` directory, never as arguments. Docker's own
//! error text is kept; a daemon that cannot be reached is told apart from an
//! image that failed, and the pushed digest is read from its output.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use super::cli::Tool;
use super::private::PrivateConfigDir;
use crate::credentials::DockerAuth;
use crate::error::Error;
use crate::platform::Platform;
use crate::process::{self, Cancel, Failure, Finished, Spec};

/// The docker CLI, looked up on `PATH`.
pub const DOCKER: &str = "docker";
/// How long a quick command (tag, rmi, version) may take.
const QUICK_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest docker error text kept in a message.
const MAX_DETAIL: usize = 600;

/// Phrases with which the docker CLI says it cannot reach the daemon.
const UNREACHABLE: &[&str] = &[
    "Cannot connect to the Docker daemon",
    "Is the docker daemon running",
    "error during connect",
    "permission denied while trying to connect to the Docker daemon",
];

/// A handle on the docker CLI. Every command it runs honours its [`Cancel`].
#[derive(Debug, Clone)]
pub struct Docker {
    program: OsString,
    cancel: Arc<Cancel>,
}

impl Docker {
    /// The docker CLI on `PATH`, whose commands stop when `cancel` says so.
    pub fn new(cancel: Arc<Cancel>) -> Docker {
        Docker {
            program: OsString::from(DOCKER),
            cancel,
        }
    }
}

impl Tool for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    /// Checks that the docker CLI exists and reaches a daemon; returns the
    /// daemon's version and platform.
    fn version(&self) -> Result<(String, Platform), Error> {
        let args = [
            "version",
            "--format",
            "{{.Server.Version}} {{.Server.Os}}/{{.Server.Arch}}",
        ];
        let done = self.run(&args, None, QUICK_TIMEOUT, &mut |_| {})?;
        let text = done.stdout.trim();
        let (version, platform) = text.split_once(' ').unwrap_or((text, ""));
        Ok((
            version.to_string(),
            Platform::parse(platform).unwrap_or_else(Platform::host),
        ))
    }

    fn pull(
        &self,
        image: &str,
        auth: Option<&DockerAuth>,
        _insecure: bool,
        timeout: Duration,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), Error> {
        self.run(&["pull", image], auth, timeout, out).map(drop)
    }

    fn tag(&self, source: &str, target: &str) -> Result<(), Error> {
        self.run(&["tag", source, target], None, QUICK_TIMEOUT, &mut |_| {})
            .map(drop)
    }

    fn push(
        &self,
        image: &str,
        auth: Option<&DockerAuth>,
        _insecure: bool,
        timeout: Duration,
        out: &mut dyn FnMut(&str),
    ) -> Result<Option<String>, Error> {
        let done = self.run(&["push", image], auth, timeout, out)?;
        Ok(pushed_digest(&done.stdout))
    }

    fn remove(&self, images: &[&str]) -> Result<(), Error> {
        let mut args = vec!["rmi"];
        args.extend_from_slice(images);
        self.run(&args, None, QUICK_TIMEOUT, &mut |_| {}).map(drop)
    }

    fn has_image(&self, name: &str) -> bool {
        let args = ["image", "inspect", "--format", "{{.Id}}", name];
        self.run(&args, None, QUICK_TIMEOUT, &mut |_| {}).is_ok()
    }
}

impl Docker {
    fn run(
        &self,
        args: &[&str],
        auth: Option<&DockerAuth>,
        timeout: Duration,
        out: &mut dyn FnMut(&str),
    ) -> Result<Finished, Error> {
        let command = format!("docker {}", args.join(" "));
        let private = auth.map(PrivateConfigDir::create).transpose()?;
        #[cfg(debug_assertions)]
        injected_panic(&command);
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(dir) = &private {
            argv.push("--config".into());
            argv.push(dir.path().into());
        }
        argv.extend(args.iter().map(OsString::from));
        let spec = Spec::new(self.program.clone(), argv, timeout);
        log::debug!("running {command}");
        let result = process::run(&spec, &self.cancel, &mut |_, line| out(line));
        drop(private);
        let done = result.map_err(|failure| match failure {
            Failure::NotFound => Error::DockerNotFound {
                program: self.program.to_string_lossy().into_owned(),
            },
            Failure::Spawn(e) => Error::DockerFailed {
                command: command.clone(),
                detail: format!("cannot start docker: {e}"),
            },
            Failure::TimedOut => Error::TransferTimedOut {
                command: command.clone(),
                after: timeout,
                killed: true,
            },
            Failure::Cancelled => Error::Interrupted {
                command: command.clone(),
            },
            Failure::TooMuchOutput(_) => Error::DockerFailed {
                command: command.clone(),
                detail: format!(
                    "it wrote more than {} MiB of output and was stopped",
                    spec.max_output >> 20
                ),
            },
        })?;
        if done.status.success() {
            return Ok(done);
        }
        let detail = error_text(&done);
        if UNREACHABLE.iter().any(|p| detail.contains(p)) {
            Err(Error::DockerUnreachable { detail })
        } else {
            Err(Error::DockerFailed { command, detail })
        }
    }
}

/// Fault injection for the test suite, compiled into debug builds only: a
/// docker command whose text contains what the file `$PICTURE_BOOK_PANIC_FILE`
/// says panics, once its private configuration has been written.
#[cfg(debug_assertions)]
fn injected_panic(command: &str) {
    if let Some(file) = std::env::var_os("PICTURE_BOOK_PANIC_FILE") {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.trim().is_empty() && command.contains(text.trim()) {
            panic!("injected panic in {command}");
        }
    }
}

/// The digest in docker push's last line, `TAG: digest: sha256:... size: N`.
fn pushed_digest(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.split_once(" digest: ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|d| d.starts_with("sha256:"))
        .map(String::from)
}

/// Docker's error text: its non-empty stderr lines, joined, bounded.
fn error_text(done: &Finished) -> String {
    let lines: Vec<&str> = done
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = if lines.is_empty() {
        format!(
            "docker ended with {} and no message",
            done.describe_status()
        )
    } else {
        lines.join("; ")
    };
    if text.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn finished(stderr: &str) -> Finished {
        Finished {
            status: ExitStatus::from_raw(256),
            stdout: String::new(),
            stderr: stderr.to_string(),
        }
    }

    #[test]
    fn error_text_joins_lines_and_bounds_length() {
        assert_eq!(
            error_text(&finished("\nError response from daemon: x\n\n")),
            "Error response from daemon: x"
        );
        assert_eq!(error_text(&finished("a\nb\n")), "a; b");
        assert_eq!(
            error_text(&finished("")),
            "docker ended with exit status 1 and no message"
        );
        assert!(error_text(&finished(&"é".repeat(1000))).ends_with('…'));
    }

    #[test]
    fn missing_docker_is_named() {
        let docker = Docker {
            program: "/nonexistent/docker".into(),
            cancel: Arc::default(),
        };
        let err = docker.version().unwrap_err();
        assert_eq!(
            err.to_string(),
            "command not found: /nonexistent/docker (picture-book needs the docker CLI on PATH)"
        );
    }

    #[test]
    fn the_pushed_digest_is_read_from_the_last_line() {
        let out = "The push refers to repository [127.0.0.1:5056/m/x]\n1.0: digest: sha256:e43b3808fa5df6d67d356477aba4c271cefcc352aaf26852026773e5a6b91846 size: 739\n";
        assert_eq!(
            pushed_digest(out).as_deref(),
            Some("sha256:e43b3808fa5df6d67d356477aba4c271cefcc352aaf26852026773e5a6b91846")
        );
        assert_eq!(pushed_digest("nothing here\n"), None);
    }
}
