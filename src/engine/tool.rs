//! The engines that move images with a container CLI, `docker` or
//! `podman`: pull the source, tag it with the target's name, push that, and
//! with `deleteLocalImages` remove what the pull and tag brought into the
//! local store (see `local`). The pull and the push are each tried again
//! under `mirror`'s retry policy. This is the only module that runs those
//! CLIs: through `process`, with a time limit, credentials in a private
//! configuration (see `config_dir`), never in arguments. How each CLI spells
//! things is in `docker` and `podman`; a `docker` that turns out to be
//! podman (podman-docker's `/usr/bin/docker`) is driven as podman.

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::config_dir::PrivateConfigDir;
use super::{
    Capabilities, Engine, Failed, Freshness, Job, Moved, Naming, Ready, Step, Steps, attempt,
    docker, local, podman,
};
use crate::credentials::DockerAuth;
use crate::error::Error;
use crate::mutex::lock;
use crate::platform::Platform;
use crate::process::{self, Cancel, Failure, Finished, Spec};

/// How long a quick command (tag, rmi, version) may take.
const QUICK_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest error text of a CLI kept in a message.
const MAX_DETAIL: usize = 600;

/// Which CLI's ways a command follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The docker CLI, talking to a docker daemon.
    Docker,
    /// Podman, daemonless (also behind the name `docker`).
    Podman,
}

/// One command for a CLI: its subcommand and arguments, and what it needs.
struct Command<'a> {
    args: Vec<&'a str>,
    auth: Option<&'a DockerAuth>,
    /// Plain HTTP or unverified TLS to the registry (podman must be told).
    insecure: bool,
    /// Where podman writes the digest it pushed.
    digest_file: bool,
    timeout: Duration,
}

impl<'a> Command<'a> {
    fn quick(args: Vec<&'a str>) -> Command<'a> {
        Command {
            args,
            auth: None,
            insecure: false,
            digest_file: false,
            timeout: QUICK_TIMEOUT,
        }
    }
}

/// A container CLI on `PATH`. Every command it runs honours its [`Cancel`].
#[derive(Debug)]
pub struct Tool {
    program: OsString,
    flavor: Mutex<Flavor>,
    cancel: Arc<Cancel>,
}

impl Tool {
    /// `program` (looked up on `PATH`), spoken to as `flavor` until its
    /// version check says otherwise.
    pub fn new(program: &str, flavor: Flavor, cancel: Arc<Cancel>) -> Tool {
        Tool {
            program: OsString::from(program),
            flavor: Mutex::new(flavor),
            cancel,
        }
    }

    fn name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    fn flavor(&self) -> Flavor {
        *lock(&self.flavor)
    }

    /// The version of the CLI (and of docker's daemon) and the platform it
    /// pulls; learns whether a `docker` is podman.
    fn version(&self) -> Result<(String, Platform), Error> {
        let done = self.run(Command::quick(vec!["version", "--format", "{{json .}}"]))?;
        let found = docker::parse_version(&done.stdout).ok_or_else(|| Error::CommandFailed {
            command: format!("{} version", self.name()),
            detail: format!(
                "its answer is not what docker or podman say: {}",
                crate::error::excerpt(done.stdout.trim(), 200)
            ),
        })?;
        let mut flavor = lock(&self.flavor);
        if found.flavor != *flavor {
            log::info!(
                "{} is podman ({}): driving it as podman (--authfile, --tls-verify)",
                self.name(),
                found.version
            );
            *flavor = found.flavor;
        }
        Ok((found.version, found.platform))
    }

    fn pull(
        &self,
        image: &str,
        auth: Option<&DockerAuth>,
        insecure: bool,
        timeout: Duration,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), Error> {
        let command = Command {
            auth,
            insecure,
            timeout,
            ..Command::quick(vec!["pull", image])
        };
        self.run_with(command, out).map(drop)
    }

    fn tag(&self, source: &str, target: &str) -> Result<(), Error> {
        self.run(Command::quick(vec!["tag", source, target]))
            .map(drop)
    }

    /// Pushes `image`; returns the manifest digest the push reported.
    fn push(
        &self,
        image: &str,
        auth: Option<&DockerAuth>,
        insecure: bool,
        timeout: Duration,
        out: &mut dyn FnMut(&str),
    ) -> Result<Option<String>, Error> {
        let command = Command {
            auth,
            insecure,
            timeout,
            digest_file: true,
            ..Command::quick(vec!["push", image])
        };
        let (done, pushed) = self.run_pushing(command, out)?;
        Ok(pushed.or_else(|| docker::pushed_digest(&done.stdout)))
    }

    fn remove(&self, images: &[&str]) -> Result<(), Error> {
        let mut args = vec!["rmi"];
        args.extend_from_slice(images);
        self.run(Command::quick(args)).map(drop)
    }

    /// Whether the local store has an image called `name`.
    fn has_image(&self, name: &str) -> bool {
        let args = match self.flavor() {
            Flavor::Docker => vec!["image", "inspect", "--format", "{{.Id}}", name],
            Flavor::Podman => vec!["image", "exists", name],
        };
        self.run(Command::quick(args)).is_ok()
    }

    fn run(&self, command: Command<'_>) -> Result<Finished, Error> {
        self.run_with(command, &mut |_| {})
    }

    fn run_with(&self, command: Command<'_>, out: &mut dyn FnMut(&str)) -> Result<Finished, Error> {
        self.run_pushing(command, out).map(|(done, _)| done)
    }

    /// Runs `command`, and returns with what it did the digest it wrote to
    /// its digest file, if it had one.
    fn run_pushing(
        &self,
        command: Command<'_>,
        out: &mut dyn FnMut(&str),
    ) -> Result<(Finished, Option<String>), Error> {
        let shown = format!("{} {}", self.name(), command.args.join(" "));
        let flavor = self.flavor();
        let needs_dir = command.auth.is_some() || (command.digest_file && flavor == Flavor::Podman);
        let private = if needs_dir {
            Some(PrivateConfigDir::create(command.auth)?)
        } else {
            None
        };
        #[cfg(debug_assertions)]
        injected_panic(&shown);
        let argv = match flavor {
            Flavor::Docker => docker::argv(&command.args, private.as_ref()),
            Flavor::Podman => podman::argv(
                &command.args,
                private.as_ref(),
                command.insecure,
                command.digest_file,
            ),
        };
        let mut spec = Spec::new(self.program.clone(), argv, command.timeout);
        if flavor == Flavor::Podman && podman::misleading_docker_config() {
            spec = spec.without_env("DOCKER_CONFIG");
        }
        log::debug!("running {shown}");
        let result = process::run(&spec, &self.cancel, &mut |_, line| out(line));
        let pushed = private.as_ref().and_then(podman::digest_written);
        drop(private);
        let done = result.map_err(|failure| self.failure(failure, &shown, &spec))?;
        if done.status.success() {
            return Ok((done, pushed));
        }
        let detail = error_text(&done, &self.name());
        if docker::UNREACHABLE.iter().any(|p| detail.contains(p)) {
            Err(Error::EngineUnreachable { detail })
        } else {
            Err(Error::CommandFailed {
                command: shown,
                detail,
            })
        }
    }

    fn failure(&self, failure: Failure, shown: &str, spec: &Spec) -> Error {
        match failure {
            Failure::NotFound => Error::ToolNotFound {
                program: self.name(),
            },
            Failure::Spawn(e) => Error::CommandFailed {
                command: shown.to_string(),
                detail: format!("cannot start {}: {e}", self.name()),
            },
            Failure::TimedOut => Error::TransferTimedOut {
                command: shown.to_string(),
                after: spec.timeout,
                killed: true,
            },
            Failure::Cancelled => Error::Interrupted {
                command: shown.to_string(),
            },
            Failure::TooMuchOutput(_) => Error::CommandFailed {
                command: shown.to_string(),
                detail: format!(
                    "it wrote more than {} MiB of output and was stopped",
                    spec.max_output >> 20
                ),
            },
        }
    }
}

/// Fault injection for the test suite, compiled into debug builds only: a
/// command whose text contains what the file `$PICTURE_BOOK_PANIC_FILE`
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

/// A CLI's error text: its non-empty stderr lines, joined, bounded.
fn error_text(done: &Finished, program: &str) -> String {
    let lines: Vec<&str> = done
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = if lines.is_empty() {
        format!(
            "{program} ended with {} and no message",
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

/// An engine that drives a CLI.
pub struct ToolEngine {
    cli: Tool,
}

impl ToolEngine {
    /// The engine of `tool`.
    pub fn new(cli: Tool) -> ToolEngine {
        ToolEngine { cli }
    }

    /// Pulls the source and tags it as the target, and pulls again when
    /// another process on the same store removed the image in between (its
    /// own `deleteLocalImages`).
    fn pull_and_tag(&self, job: &Job<'_>, steps: &dyn Steps, source: &str) -> Result<(), Failed> {
        let registry = job.registry;
        let host = job.source.domain().unwrap_or("docker.io");
        let insecure = job.access.insecure(host);
        let mut out = |line: &str| job.progress.output(&job.item, line);
        let pull = Step { what: "pull", host };
        let mut once = || {
            attempt(steps, &pull, || {
                let auth = job.access.pull_auth();
                self.cli
                    .pull(source, auth, insecure, registry.transfer_timeout, &mut out)
            })?;
            self.cli
                .tag(source, job.target)
                .map_err(|e| Failed::new(e, &registry.hostname))
        };
        match once() {
            Err(f) if f.error.to_string().contains("No such image") => {
                log::warn!("{}: {}; pulling it again", job.item.name(), f.error);
                once()
            }
            other => other,
        }
    }
}

/// Waits before the pull while the source's pull limit, as the checks last
/// saw it, is at the registry's `rateLimitMin` (see `registry::limits`):
/// docker's and podman's own pulls cannot be paced from inside. The wait
/// ends with the run, or with `transferTimeout`.
fn paced(job: &Job<'_>, steps: &dyn Steps) -> Result<(), Failed> {
    let registry = job.registry;
    let repo = job.access.source(job.source);
    let creds = job.access.pull(&repo.host);
    let reference = job
        .source
        .digest()
        .map_or_else(|| job.source.target_tag(), String::from);
    let started = std::time::Instant::now();
    let late = || started.elapsed() >= registry.transfer_timeout;
    let pace = crate::registry::limits::Pace {
        floor: registry.rate_limit_min,
        wait: Some(&|d| {
            let left = registry.transfer_timeout.saturating_sub(started.elapsed());
            steps.wait(d.min(left)) && !late()
        }),
    };
    job.client
        .before_pull(&repo, &reference, creds.as_ref(), &pace)
        .map_err(|e| {
            let e = if late() {
                Error::TransferTimedOut {
                    command: format!("the wait to pull {}", job.source),
                    after: registry.transfer_timeout,
                    killed: false,
                }
            } else {
                e
            };
            Failed::new(e, &repo.host)
        })
}

impl Engine for ToolEngine {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            name: match self.cli.flavor() {
                Flavor::Docker => "docker",
                Flavor::Podman => "podman",
            },
            naming: Naming::DigestTag,
            counts: false,
            layouts: false,
            uploads: false,
        }
    }

    fn ready(&self) -> Result<Ready, Error> {
        let (version, platform) = self.cli.version()?;
        let kind = self.capabilities().name;
        Ok(Ready {
            version: format!("{} ({kind} {version}, {platform})", self.cli.name()),
            freshness: Freshness::SameConfig(platform),
        })
    }

    fn transfer<'a>(&self, job: &Job<'a>, steps: Arc<dyn Steps + 'a>) -> Result<Moved, Failed> {
        let steps = &*steps;
        let registry = job.registry;
        let source = job.source.pull_name();
        let present = |name: &str| self.cli.has_image(name);
        let pins = [
            local::Pin::new(&source, present),
            local::Pin::new(job.target, present),
        ];
        job.progress.step(&job.item, crate::display::Step::Pulling);
        paced(job, steps)?;
        self.pull_and_tag(job, steps, &source)?;
        job.progress.step(&job.item, crate::display::Step::Pushing);
        let host = &registry.hostname;
        let insecure = job.access.target_insecure();
        let mut out = |line: &str| job.progress.output(&job.item, line);
        let push = Step { what: "push", host };
        let digest = attempt(steps, &push, || {
            let auth = job.access.push_auth();
            self.cli.push(
                job.target,
                auth,
                insecure,
                registry.transfer_timeout,
                &mut out,
            )
        })?;
        if registry.delete_local_images {
            if let Err(e) = local::remove_unshared(&pins, |names| self.cli.remove(names)) {
                log::warn!("{host}: could not remove local images: {e}");
            }
        }
        Ok(Moved {
            digest,
            ..Moved::default()
        })
    }
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
            error_text(&finished("\nError response from daemon: x\n\n"), "docker"),
            "Error response from daemon: x"
        );
        assert_eq!(error_text(&finished("a\nb\n"), "docker"), "a; b");
        assert_eq!(
            error_text(&finished(""), "podman"),
            "podman ended with exit status 1 and no message"
        );
        assert!(error_text(&finished(&"é".repeat(1000)), "docker").ends_with('…'));
    }

    #[test]
    fn a_missing_cli_is_named() {
        let cli = Tool::new("/nonexistent/docker", Flavor::Docker, Arc::default());
        let err = cli.version().unwrap_err();
        assert_eq!(
            err.to_string(),
            "command not found: /nonexistent/docker (engine: docker needs it on PATH; engine: native needs no CLI)"
        );
    }
}
