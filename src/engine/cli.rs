//! The engines that move images with a container CLI (`docker`, `podman`):
//! pull the source, tag it with the target's name, push that, and with
//! `deleteLocalImages` remove what the pull and tag brought into the local
//! store (see `local`). The pull and the push are each tried again under
//! `mirror`'s retry policy; what differs between the CLIs is behind
//! [`Tool`].

use std::time::Duration;

use super::{Engine, Failed, Freshness, Job, Moved, Ready, Step, Steps, attempt, local};
use crate::credentials::DockerAuth;
use crate::error::Error;
use crate::platform::Platform;

/// What a container CLI offers the engine.
pub trait Tool: Sync {
    /// `docker`, `podman`.
    fn name(&self) -> &'static str;

    /// The version of the CLI (and daemon) and the platform it pulls.
    fn version(&self) -> Result<(String, Platform), Error>;

    /// Pulls `image`, killed after `timeout`; `out` sees each output line.
    fn pull(
        &self,
        image: &str,
        auth: Option<&DockerAuth>,
        insecure: bool,
        timeout: Duration,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), Error>;

    /// Gives the local image `source` the name `target`.
    fn tag(&self, source: &str, target: &str) -> Result<(), Error>;

    /// Pushes `image`; returns the manifest digest the push reported.
    fn push(
        &self,
        image: &str,
        auth: Option<&DockerAuth>,
        insecure: bool,
        timeout: Duration,
        out: &mut dyn FnMut(&str),
    ) -> Result<Option<String>, Error>;

    /// Removes the local images `names`.
    fn remove(&self, names: &[&str]) -> Result<(), Error>;

    /// Whether the local store has an image called `name`.
    fn has_image(&self, name: &str) -> bool;
}

/// An engine that drives `T`.
pub struct CliEngine<T> {
    tool: T,
}

impl<T: Tool> CliEngine<T> {
    /// The engine of `tool`.
    pub fn new(tool: T) -> CliEngine<T> {
        CliEngine { tool }
    }

    /// Pulls the source and tags it as the target, and pulls again when
    /// another process on the same store removed the image in between (its
    /// own `deleteLocalImages`).
    fn pull_and_tag(&self, job: &Job<'_>, steps: &dyn Steps, source: &str) -> Result<(), Failed> {
        let registry = job.registry;
        let host = source_host(job);
        let insecure = registry.is_insecure(host) || crate::registry::is_loopback(host);
        let mut out = |line: &str| job.progress.output(job.item, line);
        let pull = Step { what: "pull", host };
        let mut once = || {
            attempt(steps, &pull, || {
                let auth = registry.pull_auth.as_ref();
                self.tool
                    .pull(source, auth, insecure, registry.transfer_timeout, &mut out)
            })?;
            self.tool
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

impl<T: Tool> Engine for CliEngine<T> {
    fn ready(&self) -> Result<Ready, Error> {
        let (version, platform) = self.tool.version()?;
        Ok(Ready {
            version: format!("{} {version} ({platform})", self.tool.name()),
            freshness: Freshness::SameConfig(platform),
        })
    }

    fn transfer(&self, job: &Job<'_>, steps: &dyn Steps) -> Result<Moved, Failed> {
        let registry = job.registry;
        let source = job.source.pull_name();
        let present = |name: &str| self.tool.has_image(name);
        let pins = [
            local::Pin::new(&source, present),
            local::Pin::new(job.target, present),
        ];
        job.progress.step(job.item, crate::display::Step::Pulling);
        self.pull_and_tag(job, steps, &source)?;
        job.progress.step(job.item, crate::display::Step::Pushing);
        let host = &registry.hostname;
        let insecure = registry.insecure || crate::registry::is_loopback(host);
        let mut out = |line: &str| job.progress.output(job.item, line);
        let push = Step { what: "push", host };
        let digest = attempt(steps, &push, || {
            let auth = registry.push_auth.as_ref();
            self.tool.push(
                job.target,
                auth,
                insecure,
                registry.transfer_timeout,
                &mut out,
            )
        })?;
        if registry.delete_local_images {
            if let Err(e) = local::remove_unshared(&pins, |names| self.tool.remove(names)) {
                log::warn!("{host}: could not remove local images: {e}");
            }
        }
        Ok(Moved {
            digest,
            ..Moved::default()
        })
    }
}

/// The registry the CLI pulls the source from.
fn source_host<'a>(job: &Job<'a>) -> &'a str {
    job.source.domain().unwrap_or("docker.io")
}
