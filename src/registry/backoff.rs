//! picture-book's one retry mechanism: the loop that tries something again
//! ([`retry`]), the waits that double up to a cap ([`Backoff`]), and a sleep
//! that ends early when asked to stop ([`sleep`]). Its two users bring only
//! their decisions, as the `again` function of [`retry`]: `run::retry` for a
//! whole step of a move (classifies the error, jitter, `Retry-After`, stops
//! with the run) and `transport` for one small request (429 or 503, as
//! `Retry-After` says or 1, 2, 4 s). It lives in `registry`, the lowest
//! layer that tries again, and knows nothing of errors or registries.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::thread;
use std::time::{Duration, Instant};

/// How often a [`sleep`] looks whether it is asked to stop.
const POLL: Duration = Duration::from_millis(200);

/// Waits that start at `base` and double with each retry, up to `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first): `base`
    /// doubled for each retry before it, at most `cap`.
    pub fn full(self, retry: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.cap)
    }

    /// [`full`](Backoff::full), then a random point in its upper half, so
    /// that many waiting clients do not return at once.
    pub fn jittered(self, retry: u32) -> Duration {
        let half = self.full(retry) / 2;
        let jitter = RandomState::new().build_hasher().finish() % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(jitter)
    }
}

/// Runs `attempt` up to `tries` times and returns its last outcome. After
/// each outcome but the last, `again` is given it and the number of the
/// retry it would make (1 for the first): `None` keeps that outcome (a
/// success, or a failure not worth another try), `Some(wait)` tries again
/// after `wait`. `stop` ends it early, before deciding or while waiting,
/// with the outcome in hand.
pub fn retry<T>(
    tries: u32,
    stop: &dyn Fn() -> bool,
    mut attempt: impl FnMut() -> T,
    mut again: impl FnMut(&T, u32) -> Option<Duration>,
) -> T {
    let mut tried = 1;
    loop {
        let outcome = attempt();
        if tried >= tries || stop() {
            return outcome;
        }
        let Some(wait) = again(&outcome, tried) else {
            return outcome;
        };
        tried += 1;
        if !sleep(wait, stop) {
            return outcome;
        }
    }
}

/// Never asked to stop.
pub fn never() -> bool {
    false
}

/// Sleeps for `wait`, or until `stop` says so; false when stopped.
pub fn sleep(wait: Duration, stop: &dyn Fn() -> bool) -> bool {
    let until = Instant::now() + wait;
    loop {
        if stop() {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn waits_double_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
        };
        let waits: Vec<u64> = (1..=7).map(|r| b.full(r).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.full(u32::MAX), b.cap);
        for _ in 0..50 {
            let j = b.jittered(3);
            assert!((Duration::from_secs(2)..=Duration::from_secs(4)).contains(&j));
        }
    }

    #[test]
    fn retry_stops_at_success_refusal_exhaustion_or_stop() {
        let no_wait = |_: &Result<u32, u32>, _| Some(Duration::ZERO);
        // Succeeds on the third try.
        let n = Cell::new(0);
        let count = || {
            n.set(n.get() + 1);
            if n.get() < 3 {
                Err(n.get())
            } else {
                Ok(n.get())
            }
        };
        let retries = Cell::new(Vec::new());
        let outcome = retry(5, &never, count, |o, r| {
            let mut seen = retries.take();
            seen.push(r);
            retries.set(seen);
            o.is_err().then_some(Duration::ZERO)
        });
        assert_eq!(outcome, Ok(3));
        assert_eq!(retries.take(), [1, 2, 3], "asked after each outcome");
        // Out of tries: the last failure.
        n.set(0);
        let failing = || {
            n.set(n.get() + 1);
            Err::<u32, u32>(n.get())
        };
        assert_eq!(retry(4, &never, failing, no_wait), Err(4));
        // Refused: that outcome at once.
        n.set(0);
        assert_eq!(retry(4, &never, failing, |_, _| None), Err(1));
        // Asked to stop: no second try.
        n.set(0);
        assert_eq!(retry(4, &|| true, failing, no_wait), Err(1));
    }

    #[test]
    fn a_sleep_ends_when_stopped() {
        let start = Instant::now();
        assert!(!sleep(Duration::from_secs(30), &|| true));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(sleep(Duration::from_millis(10), &|| false));
    }
}
