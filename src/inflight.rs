//! One asks, the others wait for its answer: the first thread to need
//! something (a token for a scope, a host's answer to a confirming `GET`, a
//! blob on its way to the target) leads; any other that needs the same
//! thing meanwhile waits until the leader is done, then looks again at what
//! it left (a cache, a quirk, the run's memory). Where the answer is kept,
//! and what to do when the leader failed, is the caller's business.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Condvar, Mutex};

use crate::mutex::{lock, wait};

/// The keys being worked on now.
pub struct InFlight<K> {
    busy: Mutex<HashSet<K>>,
    done: Condvar,
}

impl<K> Default for InFlight<K> {
    fn default() -> Self {
        InFlight {
            busy: Mutex::new(HashSet::new()),
            done: Condvar::new(),
        }
    }
}

/// The lead on one key, given up when dropped.
#[must_use = "the lead ends when it is dropped"]
pub struct Lead<'a, K: Eq + Hash> {
    flight: &'a InFlight<K>,
    key: Option<K>,
}

impl<K: Eq + Hash + Clone> InFlight<K> {
    /// The lead on `key` when nobody works on it; else waits until whoever
    /// does is done and returns None: look again at what they left, and ask
    /// again if it is not there (they failed).
    pub fn lead(&self, key: &K) -> Option<Lead<'_, K>> {
        let mut busy = lock(&self.busy);
        if busy.insert(key.clone()) {
            return Some(Lead {
                flight: self,
                key: Some(key.clone()),
            });
        }
        while busy.contains(key) {
            busy = wait(&self.done, busy);
        }
        None
    }

    /// The lead on `key` unless `settled()`: None once it is, at once or
    /// after waiting for whoever works on `key` (`settled` looked at once
    /// more with the lead, in case the last leader finished just before).
    pub fn lead_unless(&self, key: &K, mut settled: impl FnMut() -> bool) -> Option<Lead<'_, K>> {
        loop {
            if settled() {
                return None;
            }
            if let Some(lead) = self.lead(key) {
                return (!settled()).then_some(lead);
            }
        }
    }

    /// `settled()` once it is Some: found at once, or after waiting for
    /// whoever works on `key`, or else worked out with `work` while leading.
    pub fn once<T, E>(
        &self,
        key: &K,
        mut settled: impl FnMut() -> Option<T>,
        work: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut known = None;
        let lead = self.lead_unless(key, || {
            known = settled();
            known.is_some()
        });
        match known {
            Some(known) => Ok(known),
            None => {
                let _lead = lead;
                work()
            }
        }
    }
}

impl<K: Eq + Hash> Drop for Lead<'_, K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.flight.busy).remove(&key);
            self.flight.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    #[test]
    fn one_works_and_the_others_take_its_answer() {
        let flight = InFlight::default();
        let answer: Mutex<Option<u32>> = Mutex::new(None);
        let worked = AtomicUsize::new(0);
        let got: Vec<u32> = thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        flight
                            .once(
                                &"scope",
                                || *lock(&answer),
                                || {
                                    worked.fetch_add(1, Ordering::SeqCst);
                                    thread::sleep(Duration::from_millis(50));
                                    *lock(&answer) = Some(7);
                                    Ok::<_, ()>(7)
                                },
                            )
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(got, [7; 8]);
        assert_eq!(worked.into_inner(), 1, "asked once");
    }

    #[test]
    fn when_the_leader_fails_the_next_one_asks() {
        let flight = InFlight::default();
        let answer: Mutex<Option<u32>> = Mutex::new(None);
        let tries = AtomicUsize::new(0);
        let results: Vec<Result<u32, u32>> = thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        flight.once(
                            &1,
                            || *lock(&answer),
                            || {
                                thread::sleep(Duration::from_millis(20));
                                if tries.fetch_add(1, Ordering::SeqCst) == 0 {
                                    return Err(0);
                                }
                                *lock(&answer) = Some(9);
                                Ok(9)
                            },
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(tries.into_inner(), 2, "one failure, then one success");
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        assert_eq!(results.iter().filter(|r| **r == Ok(9)).count(), 3);
    }

    #[test]
    fn other_keys_do_not_wait() {
        let flight = InFlight::default();
        let a = flight.lead(&"a").expect("a is free");
        let b = flight.lead(&"b");
        assert!(b.is_some(), "b is not a");
        drop(a);
        assert!(flight.lead(&"a").is_some(), "a is free again");
    }
}
