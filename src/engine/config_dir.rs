//! The private, short-lived configuration a CLI engine is handed
//! credentials in: a 0700 directory with an unpredictable name under
//! `$XDG_RUNTIME_DIR` whose 0600 `config.json` holds the operator's own
//! docker settings with the configured credentials in place of theirs
//! (docker reads it as `--config DIR`, podman as `--authfile FILE`). It is
//! removed after each command, on panics and on SIGTERM; what dead
//! processes left is removed at the next start.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::credentials::{DockerAuth, operator_config_dir};
use crate::error::Error;

/// Prefix of the private directories, followed by the owning process id.
const DIR_PREFIX: &str = "picture-book-";

/// A private docker configuration directory (mode 0700) whose `config.json`
/// (mode 0600) holds the operator's own docker settings (proxies, current
/// context) with the given credentials in place of theirs. It is removed
/// when dropped, also when the docker command that used it failed.
#[derive(Debug)]
pub struct PrivateConfigDir {
    dir: PathBuf,
}

impl PrivateConfigDir {
    /// Creates a fresh directory with an unpredictable name under
    /// `$XDG_RUNTIME_DIR` (else the system's temporary directory) and writes
    /// `auth`, when given, into it with the operator's settings.
    pub fn create(auth: Option<&DockerAuth>) -> Result<PrivateConfigDir, Error> {
        let dir = PrivateConfigDir::empty()?;
        if let Some(auth) = auth {
            dir.write_config(auth, operator_config_dir())?;
        }
        Ok(dir)
    }

    /// A fresh, empty private directory.
    fn empty() -> Result<PrivateConfigDir, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut random = RandomState::new().build_hasher();
        random.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let dir = private_base().join(format!(
            "{DIR_PREFIX}{}-{:016x}",
            std::process::id(),
            random.finish()
        ));
        let fail = |source| Error::Credentials {
            path: dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(fail)?;
        Ok(PrivateConfigDir { dir })
    }

    /// Writes `config.json`: the settings of `operator` with `auth`'s
    /// credentials in place of theirs.
    fn write_config(&self, auth: &DockerAuth, operator: Option<PathBuf>) -> Result<(), Error> {
        let dir = &self.dir;
        let fail = |source| Error::Credentials {
            path: dir.clone(),
            source,
        };
        let mut config = operator
            .as_ref()
            .and_then(|d| fs::read_to_string(d.join("config.json")).ok())
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        for key in ["auths", "credsStore", "credHelpers"] {
            config.remove(key);
        }
        let document: Value =
            serde_json::from_str(auth.document().expose()).map_err(|e| fail(e.into()))?;
        for key in ["auths", "credHelpers", "credsStore"] {
            if let Some(v) = document.get(key) {
                config.insert(key.into(), v.clone());
            }
        }
        if let Some(contexts) = operator.map(|d| d.join("contexts")).filter(|c| c.is_dir()) {
            std::os::unix::fs::symlink(contexts, dir.join("contexts")).map_err(fail)?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("config.json"))
            .map_err(fail)?;
        file.write_all(Value::Object(config).to_string().as_bytes())
            .map_err(fail)
    }

    /// The directory to pass as `docker --config`.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivateConfigDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            log::warn!(
                "could not remove private docker configuration {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// Where private configuration directories go: `$XDG_RUNTIME_DIR` (a
/// tmpfs only this user may enter) when set, else the temporary directory.
fn private_base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// Removes private configuration directories left behind by picture-book
/// processes that no longer exist (killed with SIGKILL, or a power cut).
pub fn remove_stale_dirs() {
    let mut bases = vec![private_base(), std::env::temp_dir()];
    bases.dedup();
    let entries = bases
        .iter()
        .filter_map(|b| fs::read_dir(b).ok())
        .flat_map(|d| d.flatten());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if fs::remove_dir_all(entry.path()).is_ok() {
            log::info!(
                "removed {} left behind by an earlier run",
                entry.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn auth() -> DockerAuth {
        DockerAuth::parse(r#"{"auths":{"r.io":{"auth":"dTpw"}}}"#).unwrap()
    }

    #[test]
    fn stale_dirs_of_dead_processes_are_removed() {
        let dead = std::env::temp_dir().join(format!("{DIR_PREFIX}3999999999-0-0"));
        let mine = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-999-0", std::process::id()));
        for d in [&dead, &mine] {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("config.json"), "{}").unwrap();
        }
        remove_stale_dirs();
        assert!(!dead.exists());
        assert!(mine.exists(), "a live process's directory is kept");
        fs::remove_dir_all(mine).unwrap();
    }

    #[test]
    fn private_dir_is_private_and_removed() {
        let auth = auth();
        let dir = PrivateConfigDir::create(Some(&auth)).unwrap();
        let path = dir.path().to_path_buf();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join("config.json")), 0o600);
        let written = fs::read_to_string(path.join("config.json")).unwrap();
        assert!(written.contains("r.io"));
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn operator_settings_are_kept_and_their_credentials_replaced() {
        let operator = std::env::temp_dir().join(format!("pb-operator-{}", std::process::id()));
        fs::create_dir_all(operator.join("contexts/meta")).unwrap();
        fs::write(
            operator.join("config.json"),
            r#"{"auths":{"old.io":{"auth":"b2xkOm9sZA=="}},"credsStore":"pass","credHelpers":{"r.io":"ecr-login"},"proxies":{"default":{"httpProxy":"http://proxy:3128"}},"currentContext":"remote"}"#,
        )
        .unwrap();
        let auth = auth();
        let dir = PrivateConfigDir::empty().unwrap();
        dir.write_config(&auth, Some(operator.clone())).unwrap();
        let written: Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(
            written["proxies"]["default"]["httpProxy"],
            "http://proxy:3128"
        );
        assert_eq!(written["currentContext"], "remote");
        assert!(written.get("credsStore").is_none() && written.get("credHelpers").is_none());
        assert!(written["auths"]["r.io"].is_object());
        assert!(written["auths"].get("old.io").is_none());
        assert!(
            dir.path().join("contexts/meta").is_dir(),
            "contexts are shared"
        );
        drop(dir);
        assert!(
            operator.join("contexts/meta").is_dir(),
            "removing the private dir keeps the operator's contexts"
        );
        fs::remove_dir_all(operator).unwrap();
    }
}
