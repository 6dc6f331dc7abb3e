//! How the docker CLI is spoken to, for the CLI engine (see `tool`): its
//! global `--config` directory for credentials, its version answer (which
//! also tells a `docker` that is podman, as podman-docker installs it), the
//! phrases with which it says it cannot reach its daemon, and the digest its
//! push prints. Running it is `tool`'s business.

use std::ffi::OsString;

use serde_json::Value;

use super::config_dir::PrivateConfigDir;
use super::tool::Flavor;
use crate::platform::Platform;

/// Phrases with which the docker CLI says it cannot reach the daemon.
pub const UNREACHABLE: &[&str] = &[
    "Cannot connect to the Docker daemon",
    "Is the docker daemon running",
    "error during connect",
    "permission denied while trying to connect to the Docker daemon",
];

/// The arguments of a docker command: `--config DIR` first, when there are
/// credentials, then `args`.
pub fn argv(args: &[&str], private: Option<&PrivateConfigDir>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some(dir) = private {
        argv.push("--config".into());
        argv.push(dir.path().into());
    }
    argv.extend(args.iter().map(OsString::from));
    argv
}

/// What `version --format '{{json .}}'` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The daemon's version (docker) or the CLI's (podman).
    pub version: String,
    /// The platform it pulls.
    pub platform: Platform,
    /// Whether it is docker or podman.
    pub flavor: Flavor,
}

/// Reads the JSON version answer of docker (`Server.Version`, `Server.Os`,
/// `Server.Arch`) or of podman (`Client.Version`, `Client.OsArch`).
pub fn parse_version(stdout: &str) -> Option<Version> {
    let v: Value = serde_json::from_str(stdout.trim()).ok()?;
    if let Some(server) = v.get("Server").filter(|s| s.is_object()) {
        let platform = format!(
            "{}/{}",
            server["Os"].as_str().unwrap_or_default(),
            server["Arch"].as_str().unwrap_or_default()
        );
        return Some(Version {
            version: server["Version"].as_str()?.to_string(),
            platform: Platform::parse(&platform).unwrap_or_else(Platform::host),
            flavor: Flavor::Docker,
        });
    }
    let client = v.get("Client")?;
    let os_arch = client.get("OsArch")?.as_str()?;
    Some(Version {
        version: client["Version"].as_str()?.to_string(),
        platform: Platform::parse(os_arch).unwrap_or_else(Platform::host),
        flavor: Flavor::Podman,
    })
}

/// The digest in docker push's last line, `TAG: digest: sha256:... size: N`.
pub fn pushed_digest(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.split_once(" digest: ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|d| d.starts_with("sha256:"))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pushed_digest_is_read_from_the_last_line() {
        let out = "The push refers to repository [127.0.0.1:5056/m/x]\n1.0: digest: sha256:e43b3808fa5df6d67d356477aba4c271cefcc352aaf26852026773e5a6b91846 size: 739\n";
        assert_eq!(
            pushed_digest(out).as_deref(),
            Some("sha256:e43b3808fa5df6d67d356477aba4c271cefcc352aaf26852026773e5a6b91846")
        );
        assert_eq!(pushed_digest("nothing here\n"), None);
    }

    #[test]
    fn docker_and_podman_are_told_apart_by_their_version() {
        let docker = r#"{"Client":{"Version":"20.10.24","Os":"linux","Arch":"amd64"},"Server":{"Version":"20.10.24","Os":"linux","Arch":"arm64"}}"#;
        let v = parse_version(docker).unwrap();
        assert_eq!(
            (v.version.as_str(), v.platform.to_string(), v.flavor),
            ("20.10.24", "linux/arm64".to_string(), Flavor::Docker)
        );
        let podman = r#"{"Client":{"APIVersion":"4.3.1","Version":"4.3.1","OsArch":"linux/amd64","Os":"linux"}}"#;
        let v = parse_version(podman).unwrap();
        assert_eq!((v.version.as_str(), v.flavor), ("4.3.1", Flavor::Podman));
        assert_eq!(
            parse_version(r#"{"Client":{"Version":"28"},"Server":null}"#),
            None
        );
        assert_eq!(parse_version("garbage"), None);
    }
}
