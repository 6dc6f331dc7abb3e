//! Docker's local images are shared: by every transfer of this process (two
//! registries may mirror the same source at once) and by whoever else uses
//! the docker daemon. A transfer pins the local names it uses, and
//! `deleteLocalImages` removes only names that this process brought into
//! the daemon (absent before its pull or tag) and that no other transfer of
//! this process holds: one registry never deletes an image another is about
//! to tag or push, nor one the operator had before the run.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::Error;
use crate::mutex::lock;

/// A pinned name: how many transfers hold it, and whether this process
/// brought it into the daemon.
struct Entry {
    holders: usize,
    ours: bool,
}

static PINS: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

/// A local image name in use by one transfer, until dropped.
#[derive(Debug)]
pub struct Pin {
    name: String,
}

impl Pin {
    /// Pins `name`, which the transfer is about to pull or tag. `present`
    /// tells whether the daemon has it already; it is asked only when no
    /// other transfer of this process holds the name (which then decided).
    pub fn new(name: &str, present: impl FnOnce(&str) -> bool) -> Pin {
        let pin = Pin {
            name: name.to_string(),
        };
        if let Some(entry) = lock(&PINS).get_mut(name) {
            entry.holders += 1;
            return pin;
        }
        let ours = !present(name);
        lock(&PINS)
            .entry(name.to_string())
            .or_insert(Entry { holders: 0, ours })
            .holders += 1;
        pin
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = lock(&PINS);
        if let Some(entry) = pins.get_mut(&self.name) {
            entry.holders -= 1;
            if entry.holders == 0 {
                pins.remove(&self.name);
            }
        }
    }
}

/// Calls `remove` with the names of `mine` that this process brought in
/// and no other transfer holds (nothing when there are none), while no
/// transfer can take a new pin.
pub fn remove_unshared(
    mine: &[Pin],
    remove: impl FnOnce(&[&str]) -> Result<(), Error>,
) -> Result<(), Error> {
    let pins = lock(&PINS);
    let names: Vec<&str> = mine
        .iter()
        .map(|p| p.name.as_str())
        .filter(|name| pins.get(*name).is_some_and(|e| e.ours && e.holders <= 1))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    remove(&names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(mine: &[Pin]) -> Vec<String> {
        let mut removed = Vec::new();
        remove_unshared(mine, |names| {
            removed = names.iter().map(|n| n.to_string()).collect();
            Ok(())
        })
        .unwrap();
        removed
    }

    #[test]
    fn a_name_another_transfer_holds_is_kept() {
        let absent = |_: &str| false;
        let mine = [
            Pin::new("pb-test/a:1", absent),
            Pin::new("pb-test/mirror/a:1", absent),
        ];
        let other = Pin::new("pb-test/a:1", |_| panic!("the first pin decided"));
        assert_eq!(removed(&mine), ["pb-test/mirror/a:1"]);
        drop(other);
        assert_eq!(removed(&mine), ["pb-test/a:1", "pb-test/mirror/a:1"]);
        drop(mine);
        assert!(!lock(&PINS).contains_key("pb-test/a:1"));
    }

    #[test]
    fn a_name_that_was_there_before_is_kept() {
        let mine = [
            Pin::new("pb-test/b:1", |_| true),
            Pin::new("pb-test/mirror/b:1", |_| false),
        ];
        assert_eq!(removed(&mine), ["pb-test/mirror/b:1"]);
        let later = Pin::new("pb-test/b:1", |_| false);
        assert_eq!(removed(&[later]), Vec::<String>::new(), "still not ours");
    }
}
