//! Docker's local images are shared by every transfer of this process: two
//! registries of the daemon may mirror the same source at the same time. A
//! transfer pins the local names it uses, and `deleteLocalImages` removes
//! only names that no other transfer holds, so one registry never deletes
//! an image another is about to tag or push.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::error::Error;

/// How many transfers hold each local image name.
static PINS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn pins() -> MutexGuard<'static, BTreeMap<String, usize>> {
    PINS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A local image name in use by one transfer, until dropped.
#[derive(Debug)]
pub struct Pin {
    name: String,
}

impl Pin {
    /// Pins `name`.
    pub fn new(name: &str) -> Pin {
        *pins().entry(name.to_string()).or_default() += 1;
        Pin {
            name: name.to_string(),
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut counts = pins();
        if let Some(n) = counts.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.name);
            }
        }
    }
}

/// Calls `remove` with the names of `mine` that no other transfer holds
/// (nothing when there are none), while no transfer can take a new pin.
pub fn remove_unshared(
    mine: &[Pin],
    remove: impl FnOnce(&[&str]) -> Result<(), Error>,
) -> Result<(), Error> {
    let counts = pins();
    let names: Vec<&str> = mine
        .iter()
        .map(|p| p.name.as_str())
        .filter(|name| counts.get(*name).copied().unwrap_or(0) <= 1)
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    remove(&names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_another_transfer_holds_is_kept() {
        let mine = [Pin::new("pb-test/a:1"), Pin::new("pb-test/mirror/a:1")];
        let other = Pin::new("pb-test/a:1");
        let mut removed = Vec::new();
        remove_unshared(&mine, |names| {
            removed = names.iter().map(|n| n.to_string()).collect();
            Ok(())
        })
        .unwrap();
        assert_eq!(removed, ["pb-test/mirror/a:1"]);
        drop(other);
        remove_unshared(&mine, |names| {
            removed = names.iter().map(|n| n.to_string()).collect();
            Ok(())
        })
        .unwrap();
        assert_eq!(removed, ["pb-test/a:1", "pb-test/mirror/a:1"]);
        drop(mine);
        assert!(!pins().contains_key("pb-test/a:1"));
    }
}
