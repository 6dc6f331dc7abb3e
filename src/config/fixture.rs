//! For the configuration's unit tests: a directory holding an executable
//! `sync.sh`, in which configuration text is parsed as if read from a file
//! there, and the seed's example configuration.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::config::{Config, parse};
use crate::error::Error;

/// The seed project's example configuration.
pub(super) const SEED: &str = r#"
registries:
  - hostname: 'my-registry.com'
    repository: 'test-images'
    pullAuthConfig: ''
    pushAuthConfig: ''
    syncPeriod: '*/1 * * * *'
    syncerScript: 'sync.sh'
    syncerScriptArgs: ''
display: "spinner"
api:
  enabled: true
  port: 8001
  enableAuth: true
  authToken: this-is-a-token-lol
"#;

/// A directory holding an executable `sync.sh` and a config file.
pub(super) struct Dir(pub(super) PathBuf);

impl Dir {
    pub(super) fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("pb-config-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("sync.sh");
        fs::write(&script, "#!/bin/sh\necho alpine\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        Dir(dir)
    }

    /// Writes a file with `mode`.
    pub(super) fn file(&self, name: &str, text: &str, mode: u32) {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub(super) fn parse(&self, yaml: &str) -> Result<Config, Error> {
        parse(yaml, &self.0.join("config.yaml"))
    }

    pub(super) fn problems(&self, yaml: &str) -> Vec<String> {
        match self.parse(yaml) {
            Err(Error::ConfigInvalid { problems, .. }) => problems,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
