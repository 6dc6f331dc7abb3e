//! One asks, the others wait for its answer: the first thread to need
//! something (a token for a scope, a host's answer to a confirming `GET`, a
//! blob on its way to the target) leads; any other that needs the same
//! thing meanwhile waits until the leader is done, then looks again at what
//! it left (a cache, a quirk, the run's memory). Where the answer is kept
//! is the caller's business, and what to do when the leader failed too,
//! except in [`InFlight::once`].

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
    /// whoever works on `key`, or else worked out with `work`. When the one
    /// waited for failed, those who waited ask side by side rather than one
    /// after another: a service that hangs costs them two timeouts, not one
    /// each.
    pub fn once<T, E>(
        &self,
        key: &K,
        mut settled: impl FnMut() -> Option<T>,
        work: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(known) = settled() {
            return Ok(known);
        }
        let lead = self.lead(key);
        match settled() {
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
    fn when_the_leader_fails_those_who_waited_ask_side_by_side() {
        let flight = InFlight::default();
        let start = std::sync::Barrier::new(4);
        let (tries, asking, most) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let failed = thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let (start, tries, asking, most) = (&start, &tries, &asking, &most);
                    let flight = &flight;
                    s.spawn(move || {
                        start.wait();
                        if i > 0 {
                            // The first to get there leads; the rest wait.
                            thread::sleep(Duration::from_millis(50));
                        }
                        flight.once(
                            &1,
                            || None::<u32>,
                            || {
                                tries.fetch_add(1, Ordering::SeqCst);
                                let now = asking.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                thread::sleep(Duration::from_millis(300));
                                asking.fetch_sub(1, Ordering::SeqCst);
                                Err::<u32, u32>(0)
                            },
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(Result::is_err)
                .count()
        });
        assert_eq!(failed, 4, "everyone learns of the failure");
        assert_eq!(
            tries.into_inner(),
            4,
            "the leader, then the three who waited"
        );
        assert!(
            most.into_inner() >= 2,
            "those who waited asked one after another"
        );
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
