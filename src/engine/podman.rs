//! How podman is spoken to, for the CLI engine (see `tool`): daemonless,
//! with its options after the subcommand. Credentials go as the private
//! configuration's `config.json`, which podman reads with `--authfile`
//! (it ignores docker's `--config`); a registry docker would treat as
//! insecure (loopback, `insecure`, `insecureRegistries`) gets
//! `--tls-verify=false`, since podman trusts none by default; a push writes
//! its digest to a file in the private directory. Podman's storage is its
//! own business: its `storage.conf` (or `CONTAINERS_STORAGE_CONF`) says
//! where, rootful or rootless.

use std::ffi::OsString;
use std::path::PathBuf;

use super::config_dir::PrivateConfigDir;
use crate::digest;

/// The name of the digest file in the private directory.
const DIGEST_FILE: &str = "pushed-digest";

/// The arguments of a podman command: the subcommand, its options
/// (`--authfile`, `--tls-verify=false`, `--digestfile`), then the rest.
pub fn argv(
    args: &[&str],
    private: Option<&PrivateConfigDir>,
    insecure: bool,
    digest_file: bool,
) -> Vec<OsString> {
    let Some((sub, rest)) = args.split_first() else {
        return Vec::new();
    };
    let mut argv: Vec<OsString> = vec![(*sub).into()];
    let moves = matches!(*sub, "pull" | "push");
    if let Some(dir) = private.filter(|_| moves) {
        let config = dir.path().join("config.json");
        if config.exists() {
            argv.push("--authfile".into());
            argv.push(config.into());
        }
        if digest_file && *sub == "push" {
            argv.push("--digestfile".into());
            argv.push(digest_path(dir).into());
        }
    }
    if insecure && moves {
        argv.push("--tls-verify=false".into());
    }
    argv.extend(rest.iter().map(OsString::from));
    argv
}

/// Whether `DOCKER_CONFIG` names a directory without a `config.json`:
/// podman then fails every pull and push looking for it, where docker just
/// goes without, so podman is not given it.
pub fn misleading_docker_config() -> bool {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .is_some_and(|d| !std::path::Path::new(&d).join("config.json").exists())
}

fn digest_path(dir: &PrivateConfigDir) -> PathBuf {
    dir.path().join(DIGEST_FILE)
}

/// The digest a push wrote to its digest file, if it wrote one.
pub fn digest_written(dir: &PrivateConfigDir) -> Option<String> {
    let text = std::fs::read_to_string(digest_path(dir)).ok()?;
    Some(text.trim().to_string()).filter(|d| digest::is_sha256(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::DockerAuth;

    fn words(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn options_follow_the_subcommand_and_secrets_stay_in_the_file() {
        let auth = DockerAuth::parse(r#"{"auths":{"r.io":{"auth":"dTpodW50ZXIy"}}}"#).unwrap();
        let dir = PrivateConfigDir::create(Some(&auth)).unwrap();
        let pull = words(&argv(&["pull", "r.io/a:1"], Some(&dir), true, false));
        let authfile = dir.path().join("config.json").display().to_string();
        assert_eq!(
            pull,
            [
                "pull",
                "--authfile",
                &authfile,
                "--tls-verify=false",
                "r.io/a:1"
            ]
        );
        let push = words(&argv(&["push", "r.io/a:1"], Some(&dir), false, true));
        assert_eq!(push[..3], ["push", "--authfile", authfile.as_str()]);
        assert_eq!(push[3], "--digestfile");
        assert_eq!(push[5], "r.io/a:1");
        assert!(
            pull.iter()
                .chain(&push)
                .all(|w| !w.contains("dTpodW50ZXIy"))
        );
        let tag = words(&argv(&["tag", "a", "b"], Some(&dir), true, false));
        assert_eq!(tag, ["tag", "a", "b"]);
        std::fs::write(
            dir.path().join(DIGEST_FILE),
            "sha256:".to_string() + &"0".repeat(64),
        )
        .unwrap();
        assert!(digest_written(&dir).is_some());
    }
}
