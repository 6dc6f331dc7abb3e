//! Who picture-book is at each registry of one run, and how it talks to
//! it: the credentials to pull from a source host and to push to the
//! target, and whether a host is insecure (plain HTTP, certificates not
//! verified). Worked out once per run from the registry's configuration
//! (`pullAuthConfig`, `pushAuthConfig`, `insecure`, `insecureRegistries`)
//! and taken by every engine and check; finding credentials in a
//! DockerConfigJSON or the operator's docker login is `credentials`'.

use crate::config::Registry;
use crate::credentials::{self, Credentials, DockerAuth};
use crate::reference::Reference;
use crate::registry::{Repository, is_loopback};

/// Credentials and insecurity for the hosts of one run.
pub struct Access {
    /// The target registry.
    hostname: String,
    /// Whether the target is insecure (`insecure`).
    target_insecure: bool,
    /// Source hosts that are insecure (`insecureRegistries`), and the
    /// target when it is.
    insecure: Vec<String>,
    /// The configured pull credentials (`pullAuthConfig`), for the CLI
    /// engines' own docker configuration.
    pull_auth: Option<DockerAuth>,
    /// The configured push credentials (`pushAuthConfig`), likewise.
    push_auth: Option<DockerAuth>,
    /// The credentials for the target, resolved once.
    push: Option<Credentials>,
    /// Whether source hosts are contacted at all (not when the images come
    /// from a layout: no helper is asked for a host that is not).
    pulls: bool,
}

impl Access {
    /// The access of a run over `registry`; `pulls` when its images come
    /// from registries.
    pub fn of(registry: &Registry, pulls: bool) -> Access {
        let mut insecure = registry.insecure_registries.clone();
        if registry.insecure {
            insecure.push(registry.hostname.clone());
        }
        Access {
            hostname: registry.hostname.clone(),
            target_insecure: registry.insecure,
            insecure,
            pull_auth: registry.pull_auth.clone(),
            push_auth: registry.push_auth.clone(),
            push: lookup(registry.push_auth.as_ref(), &registry.hostname),
            pulls,
        }
    }

    /// Credentials for the source host `host`: from `pullAuthConfig`, else
    /// the operator's own docker login; none when nothing is pulled.
    pub fn pull(&self, host: &str) -> Option<Credentials> {
        self.pulls
            .then(|| lookup(self.pull_auth.as_ref(), host))
            .flatten()
    }

    /// Credentials for the target.
    pub fn push(&self) -> Option<&Credentials> {
        self.push.as_ref()
    }

    /// The configured pull credentials, for a CLI engine's configuration.
    pub fn pull_auth(&self) -> Option<&DockerAuth> {
        self.pull_auth.as_ref()
    }

    /// The configured push credentials, for a CLI engine's configuration.
    pub fn push_auth(&self) -> Option<&DockerAuth> {
        self.push_auth.as_ref()
    }

    /// Whether the source host `host` is insecure: listed, the target when
    /// it is, or on this machine.
    pub fn insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h.eq_ignore_ascii_case(host)) || is_loopback(host)
    }

    /// Whether the target is insecure: `insecure`, or on this machine.
    pub fn target_insecure(&self) -> bool {
        self.target_insecure || is_loopback(&self.hostname)
    }

    /// The repository of `source` at its registry.
    pub fn source(&self, source: &Reference) -> Repository {
        Repository::of(source, &|h| self.insecure(h))
    }

    /// The repository `name` (`host/path`) at the target.
    pub fn target(&self, name: &str) -> Repository {
        Repository::target(name, self.target_insecure)
    }
}

/// Credentials for `host`: from the configured DockerConfigJSON, else the
/// operator's own docker login.
fn lookup(auth: Option<&DockerAuth>, host: &str) -> Option<Credentials> {
    match auth {
        Some(a) => a.credentials_for(host),
        None => credentials::operator_credentials(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(yaml_extra: &str) -> Registry {
        let yaml = format!(
            "registries:\n  - hostname: reg.example\n    repository: m\n    syncerScript: /bin/sh\n{yaml_extra}"
        );
        let dir = std::env::temp_dir();
        crate::config::parse(&yaml, &dir.join("pb-access.yaml"))
            .unwrap()
            .registries[0]
            .clone()
    }

    #[test]
    fn insecure_hosts_are_the_listed_ones_the_target_when_it_is_and_this_machine() {
        let access = Access::of(&registry("    insecureRegistries: [src.example]\n"), true);
        assert!(access.insecure("SRC.example"));
        assert!(access.insecure("127.0.0.1:5000"));
        assert!(!access.insecure("reg.example"));
        assert!(!access.target_insecure());

        let access = Access::of(&registry("    insecure: true\n"), true);
        assert!(access.insecure("reg.example"));
        assert!(access.target_insecure());
        assert!(access.target("reg.example/m/a").insecure);
    }

    #[test]
    fn nothing_is_looked_up_for_sources_that_are_not_pulled() {
        let access = Access::of(&registry(""), false);
        assert_eq!(access.pull("docker.io"), None);
    }
}
