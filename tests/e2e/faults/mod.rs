//! The fault suite: real faults injected into the real test environment
//! (registries stopped, restarted and put behind failing proxies, a peer
//! that never answers, docker daemons stopped before and during runs,
//! picture-book itself killed with SIGKILL or made to panic, its API abused
//! over raw TCP). Each test says
//! what must hold: which images are at the target, the exit code or the
//! status, the time bound, and that no process or private directory is
//! left behind.

mod api;
mod daemon;
mod docker;
mod native;
mod net;
mod registry;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::harness::Registry;

/// The records of a state file: target -> target digest; none when there
/// is no file. Panics unless the file is whole, valid JSON.
pub fn recorded(state_dir: &Path, registry: &Registry) -> BTreeMap<String, String> {
    let file = state_dir.join(format!("{}.json", registry.host.replace(':', "_")));
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => panic!("{}: {e}", file.display()),
    };
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON ({e}): {text}", file.display()));
    doc["images"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(target, r)| {
            (
                target.clone(),
                r["targetDigest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Asserts that every image the state file records as mirrored is at the
/// target with the recorded digest; returns how many there are.
pub fn records_hold(state_dir: &Path, registry: &Registry) -> usize {
    let records = recorded(state_dir, registry);
    for (target, digest) in &records {
        let path = target.strip_prefix(&format!("{}/", registry.host)).unwrap();
        let (repo, tag) = path.rsplit_once(':').unwrap();
        assert_eq!(
            registry.manifest_digest(repo, tag).as_ref(),
            Some(digest),
            "the state file records {target} as mirrored, but the target does not hold it"
        );
    }
    records.len()
}

/// The images of the one registry of a `load --json` report.
pub fn images(report: &Value) -> Vec<Value> {
    report["registries"][0]["images"]
        .as_array()
        .unwrap()
        .clone()
}
