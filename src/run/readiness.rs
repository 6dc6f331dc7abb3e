//! Whether a run's engine is ready, and how it decides freshness: asked at
//! every run (the daemon) or once per engine and process (`load`). What an
//! engine can do is its `Capabilities`; running the images is `mirror`'s.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::Registry;
use crate::engine::{Engine, Freshness};
use crate::mutex::lock;
use crate::platform::Platform;

/// Whether the engines are ready: asked at every run (the daemon, whose
/// docker may come and go), or once per engine and process (`load`, which
/// says a missing docker once, not once per registry).
pub struct Readiness {
    once: Option<Mutex<HashMap<&'static str, Result<Freshness, String>>>>,
}

impl Readiness {
    /// Asked at every run.
    pub fn every_run() -> Readiness {
        Readiness { once: None }
    }

    /// Asked once per engine.
    pub fn once() -> Readiness {
        Readiness {
            once: Some(Mutex::new(HashMap::new())),
        }
    }

    /// Whether `engine` can work for `registry`, and how it decides
    /// freshness. A dry run without docker compares images for this host's
    /// platform.
    pub fn of(
        &self,
        engine: &dyn Engine,
        registry: &Registry,
        dry_run: bool,
    ) -> Result<Freshness, String> {
        let Some(cache) = &self.once else {
            return ready(engine, registry, dry_run);
        };
        let name = engine.capabilities().name;
        if let Some(known) = lock(cache).get(name) {
            return known.clone();
        }
        let known = ready(engine, registry, dry_run);
        lock(cache).insert(name, known.clone());
        known
    }
}

/// Whether `engine` can work now, and how it decides freshness.
fn ready(engine: &dyn Engine, registry: &Registry, dry_run: bool) -> Result<Freshness, String> {
    match engine.ready() {
        Ok(ready) => {
            log::debug!("{}: engine {}", registry.hostname, ready.version);
            Ok(ready.freshness)
        }
        Err(e) if dry_run => {
            log::debug!("{e}; comparing images for this host's platform");
            Ok(Freshness::SameConfig(Platform::host()))
        }
        Err(e) => {
            log::error!("{}: not run: {e}", registry.hostname);
            Err(e.to_string())
        }
    }
}
