//! Whether a failed step of a move (a docker pull or push, a request of the
//! native engine) is worth trying again, how long to wait first, and the
//! policy that does so for the engines ([`Policy`], their `Steps`). The
//! native engine's errors carry the HTTP status; docker only passes on the
//! registry's error text, so its failures are classified from that:
//! connections refused, reset or timed out, HTTP 5xx and 429 (Docker Hub's
//! `toomanyrequests`) pass; authentication, missing images and malformed
//! references do not. Waits grow exponentially with jitter, up to a cap,
//! honour `Retry-After`, and end early when the run is asked to stop. The
//! loop, the doubling and the sleep are `registry::backoff`'s, shared with
//! the transport's retries of small requests; this file holds only the
//! decisions.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{Failed, Step, Steps};
use crate::error::Error;
use crate::registry::backoff::{self, Backoff};

pub use crate::registry::backoff::sleep;

/// The first wait after a passing failure.
const BASE: Duration = Duration::from_secs(1);
/// The first wait after the registry said "too many requests".
const BASE_THROTTLED: Duration = Duration::from_secs(5);
/// The longest wait.
const CAP: Duration = Duration::from_secs(60);

/// What a failure says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Trying again gives the same answer: bad credentials, no such image,
    /// a malformed reference, a docker daemon that is gone.
    Permanent,
    /// The registry is busy or failing for now (HTTP 5xx).
    Passing,
    /// The registry asked to slow down (HTTP 429).
    Throttled,
    /// The registry could not be reached, or did not answer in time.
    Unreachable,
}

impl Kind {
    /// Whether another attempt may succeed.
    pub fn is_retryable(self) -> bool {
        self != Kind::Permanent
    }
}

/// Phrases of failures that another attempt will not fix; they win over the
/// passing ones (`unauthorized` in a 503's body is still unauthorized).
const PERMANENT: &[&str] = &[
    "unauthorized",
    "authentication required",
    "denied",
    "forbidden",
    "not found",
    "manifest unknown",
    "name unknown",
    "invalid reference format",
    "repository name must",
    "401 unauthorized",
    "403 forbidden",
    "404 not found",
];

/// Phrases of a registry that cannot be reached (or went away mid-transfer).
const UNREACHABLE: &[&str] = &[
    "connection refused",
    "connection reset",
    "no route to host",
    "network is unreachable",
    "no such host",
    "i/o timeout",
    "tls handshake timeout",
    "timeout exceeded while awaiting headers",
    "broken pipe",
    "unexpected eof",
    ": eof",
];

/// Phrases of a registry that asked to slow down.
const THROTTLED: &[&str] = &[
    "toomanyrequests",
    "429 too many requests",
    "too many requests",
];

/// Phrases of a registry that failed for now.
const PASSING: &[&str] = &[
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "received unexpected http status: 5",
    "status code 5",
    "server error",
];

/// Classifies a failed step.
pub fn kind(error: &Error) -> Kind {
    match error {
        Error::TransferTimedOut { killed: true, .. } | Error::Network { .. } => Kind::Unreachable,
        Error::CommandFailed { detail, .. } => kind_of_text(detail),
        Error::Registry {
            status: Some(429), ..
        } => Kind::Throttled,
        Error::Registry {
            status: Some(500..=599),
            ..
        } => Kind::Passing,
        _ => Kind::Permanent,
    }
}

fn kind_of_text(detail: &str) -> Kind {
    let text = detail.to_ascii_lowercase();
    let has = |phrases: &[&str]| phrases.iter().any(|p| text.contains(p));
    if has(PERMANENT) {
        Kind::Permanent
    } else if has(THROTTLED) {
        Kind::Throttled
    } else if has(UNREACHABLE) {
        Kind::Unreachable
    } else if has(PASSING) {
        Kind::Passing
    } else {
        Kind::Permanent
    }
}

/// How long to wait before retry number `retry` (1 for the first) of a
/// failure of `kind`: the base doubled each time, capped, and then a random
/// point in its upper half, so that many waiting clients do not return at
/// once.
pub fn delay(kind: Kind, retry: u32) -> Duration {
    let base = if kind == Kind::Throttled {
        BASE_THROTTLED
    } else {
        BASE
    };
    Backoff { base, cap: CAP }.jittered(retry)
}

/// The retry policy of one image's move: each step is tried up to
/// `retries` more times after a passing failure.
pub struct Policy<'a> {
    /// How log lines name the image.
    pub label: String,
    /// How often a step is tried again.
    pub retries: u32,
    /// Whether the run is asked to stop.
    pub stop: Box<dyn Fn() -> bool + Send + Sync + 'a>,
    /// After a 429 that did not say how long to wait: asks the registry
    /// (`host`) again with a `HEAD`, which waits as its `Retry-After` says.
    pub served: Box<dyn Fn(&str) + Send + Sync + 'a>,
    /// Tries again made, over all steps.
    pub again: AtomicU32,
}

impl Policy<'_> {
    /// How many times the image was set to move: 1, plus each try again.
    pub fn attempts(&self) -> u32 {
        1 + self.again.load(Ordering::Relaxed)
    }

    /// After `attempt` of `tries` failed with `error`: how long to wait
    /// before the next, or `None` when another try will not help. Says so
    /// in the log, counts the try, and when the registry throttled without
    /// saying for how long, asks it (the time that takes is waited already).
    fn next_wait(
        &self,
        step: &Step<'_>,
        error: &Error,
        attempt: u32,
        tries: u32,
    ) -> Option<Duration> {
        let kind = kind(error);
        if !kind.is_retryable() {
            return None;
        }
        let told = error.retry_after().map(|d| d.min(CAP));
        let wait = delay(kind, attempt).max(told.unwrap_or_default());
        let ask = kind == Kind::Throttled && told.is_none();
        log::warn!(
            "{}: {} failed (attempt {attempt} of {tries}): {error}; trying again in {:.1}s{}",
            self.label,
            step.what,
            wait.as_secs_f64(),
            if ask {
                " or when the registry says"
            } else {
                ""
            }
        );
        self.again.fetch_add(1, Ordering::Relaxed);
        let asked = Instant::now();
        if ask {
            (self.served)(error.host().unwrap_or(step.host));
        }
        Some(wait.saturating_sub(asked.elapsed()))
    }
}

impl Steps for Policy<'_> {
    fn run(
        &self,
        step: &Step<'_>,
        work: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Failed> {
        let tries = self.retries + 1;
        backoff::retry(tries, &*self.stop, work, |outcome, attempt| {
            self.next_wait(step, outcome.as_ref().err()?, attempt, tries)
        })
        .map_err(|error| Failed {
            host: error.host().unwrap_or(step.host).to_string(),
            error,
        })
    }

    fn stopping(&self) -> bool {
        (self.stop)()
    }

    fn wait(&self, wait: Duration) -> bool {
        sleep(wait, &*self.stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_errors_are_classified() {
        let cases = [
            (
                "Error response from daemon: Get \"http://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused",
                Kind::Unreachable,
            ),
            (
                "Error response from daemon: received unexpected HTTP status: 500 Internal Server Error",
                Kind::Passing,
            ),
            (
                "Error response from daemon: received unexpected HTTP status: 503 Service Unavailable",
                Kind::Passing,
            ),
            (
                "Error response from daemon: toomanyrequests: You have reached your pull rate limit.",
                Kind::Throttled,
            ),
            (
                "Error response from daemon: manifest for 127.0.0.1:5000/a:1 not found: manifest unknown: manifest unknown",
                Kind::Permanent,
            ),
            (
                "Error response from daemon: pull access denied for x, repository does not exist or may require 'docker login'",
                Kind::Permanent,
            ),
            ("unauthorized: authentication required", Kind::Permanent),
            (
                "invalid reference format: repository name must be lowercase",
                Kind::Permanent,
            ),
            (
                "Error response from daemon: Get \"https://r.io/v2/\": net/http: TLS handshake timeout",
                Kind::Unreachable,
            ),
            ("something nobody has seen", Kind::Permanent),
        ];
        for (text, want) in cases {
            let e = Error::CommandFailed {
                command: "docker pull x".into(),
                detail: text.into(),
            };
            assert_eq!(kind(&e), want, "{text}");
        }
        let timed_out = Error::TransferTimedOut {
            command: "docker pull x".into(),
            after: Duration::from_secs(5),
            killed: true,
        };
        assert_eq!(kind(&timed_out), Kind::Unreachable);
        let daemon_gone = Error::EngineUnreachable {
            detail: "Cannot connect to the Docker daemon".into(),
        };
        assert!(!kind(&daemon_gone).is_retryable());
    }

    fn status(status: u16) -> Error {
        Error::Registry {
            host: "r.io".into(),
            status: Some(status),
            code: None,
            detail: format!("HTTP {status}"),
            retry_after: None,
        }
    }

    #[test]
    fn a_policy_tries_passing_failures_again_and_no_others() {
        let policy = |retries, stopping: bool| Policy {
            label: "a".into(),
            retries,
            stop: Box::new(move || stopping),
            served: Box::new(|_| {}),
            again: AtomicU32::new(0),
        };
        let step = Step {
            what: "pull",
            host: "src.io",
        };
        let tries = |p: &Policy<'_>, fail: &dyn Fn(u32) -> Result<(), Error>| {
            let mut n = 0;
            let result = p.run(&step, &mut || {
                n += 1;
                fail(n)
            });
            (result.map_err(|f| f.host), n, p.attempts())
        };
        let down = policy(1, false);
        let (result, n, attempts) = tries(&down, &|_| Err(status(503)));
        assert_eq!((result, n, attempts), (Err("r.io".into()), 2, 2));
        let back = policy(2, false);
        let (result, n, _) = tries(&back, &|n| if n < 2 { Err(status(500)) } else { Ok(()) });
        assert_eq!((result, n), (Ok(()), 2));
        let denied = policy(3, false);
        assert_eq!(tries(&denied, &|_| Err(status(403))).1, 1);
        let stopping = policy(3, true);
        assert_eq!(tries(&stopping, &|_| Err(status(503))).1, 1);
        let gone = policy(3, false);
        let no_host = |_| Err(Error::EngineUnreachable { detail: "x".into() });
        assert_eq!(tries(&gone, &no_host).0, Err("src.io".into()));
    }

    #[test]
    fn delays_grow_with_jitter_up_to_the_cap() {
        for _ in 0..50 {
            let first = delay(Kind::Passing, 1);
            assert!(
                (Duration::from_millis(500)..=BASE).contains(&first),
                "{first:?}"
            );
            let third = delay(Kind::Passing, 3);
            assert!((Duration::from_secs(2)..=Duration::from_secs(4)).contains(&third));
            let late = delay(Kind::Unreachable, 40);
            assert!((CAP / 2..=CAP).contains(&late), "{late:?}");
            let throttled = delay(Kind::Throttled, 1);
            assert!(throttled >= Duration::from_millis(2500), "{throttled:?}");
        }
        let spread: std::collections::HashSet<Duration> =
            (0..20).map(|_| delay(Kind::Passing, 4)).collect();
        assert!(spread.len() > 1, "no jitter: {spread:?}");
    }
}
