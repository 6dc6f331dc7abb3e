//! Pull rate limits as registries announce them on manifest answers
//! (Docker Hub: `ratelimit-limit: 100;w=21600`, `ratelimit-remaining:
//! 76;w=21600`): the client keeps the last announcement per host and
//! account, and before a manifest `GET` (a pull; a `HEAD` costs nothing)
//! waits while what remains is at the floor (`rateLimitMin`) instead of
//! spending into 429s. No header means no limit. The caller waits, so that
//! pause, shutdown and `transferTimeout` end the wait; deciding what to
//! pull is not this file's business.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use ureq::http;

use super::transport::{header, retry_after};
use super::{Client, Repository};
use crate::credentials::Credentials;
use crate::error::{Error, human_duration};
use crate::mutex::lock;

/// The shortest wait: a window so short that one pull ages out at once is
/// still not asked again in a busy loop.
const MIN_WAIT: Duration = Duration::from_secs(1);

/// What a registry last said of its pull limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Pulls allowed per window.
    pub limit: u64,
    /// Pulls left in the window.
    pub remaining: u64,
    /// The window (`w=`); a day when the registry did not say.
    pub window: Duration,
    /// How long it asked to wait (`Retry-After`), if it did.
    pub retry_after: Option<Duration>,
    /// When it said so.
    pub at: Instant,
}

/// A rate limit as reports and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    /// The source registry (`docker.io` for Docker Hub).
    pub source: String,
    /// Pulls allowed per window.
    pub limit: u64,
    /// Pulls left when it last answered.
    pub remaining: u64,
    /// The window, in seconds.
    pub window_seconds: u64,
}

/// What to do before a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Pull.
    Go,
    /// Wait this long, then ask again.
    Wait(Duration),
    /// The wait is over but what remains is not known: ask with a `HEAD`.
    Ask,
}

/// `100;w=21600` (or a bare `100`): the count and the window.
pub fn parse(value: &str) -> Option<(u64, Option<Duration>)> {
    let mut parts = value.split(';');
    let count = parts.next()?.trim().parse().ok()?;
    let window = parts
        .filter_map(|p| p.trim().strip_prefix("w="))
        .find_map(|w| w.trim().parse::<u64>().ok())
        .filter(|w| *w > 0)
        .map(Duration::from_secs);
    Some((count, window))
}

/// The limit an answer announces, if it announces one.
pub fn announced(resp: &http::Response<ureq::Body>) -> Option<RateLimit> {
    let (limit, limit_window) = parse(&header(resp, "ratelimit-limit")?)?;
    let (remaining, window) = parse(&header(resp, "ratelimit-remaining")?)?;
    Some(RateLimit {
        limit,
        remaining,
        window: window
            .or(limit_window)
            .unwrap_or(Duration::from_secs(24 * 3600)),
        retry_after: retry_after(resp),
        at: Instant::now(),
    })
}

/// Whether to pull now with `floor` pulls kept, `elapsed` after the registry
/// said `seen`. Above the floor, or a whole window after it said so, pull.
/// Else wait what it asked (`Retry-After`), or for as many pulls to age out
/// of the window as it takes to rise above the floor, at the pace the
/// limit allows (Docker Hub's 100 per 6 hours: one every 3m36s), at most a
/// window; once that is over, ask again.
pub fn decide(seen: &RateLimit, floor: u64, elapsed: Duration) -> Decision {
    if seen.remaining > floor || elapsed >= seen.window {
        return Decision::Go;
    }
    let wait = seen.retry_after.unwrap_or_else(|| {
        let each = seen.window / u32::try_from(seen.limit.max(1)).unwrap_or(u32::MAX);
        let needed = u32::try_from(floor - seen.remaining + 1).unwrap_or(u32::MAX);
        each.saturating_mul(needed).clamp(MIN_WAIT, seen.window)
    });
    match wait.saturating_sub(elapsed) {
        left if left.is_zero() => Decision::Ask,
        left if left >= Duration::from_secs(60) => {
            Decision::Wait(Duration::from_secs(left.as_secs().div_ceil(60) * 60))
        }
        left => Decision::Wait(left.max(MIN_WAIT)),
    }
}

/// How a host is named to operators: `docker.io` for Docker Hub's API host.
pub fn shown_host(host: &str) -> &str {
    if host == "registry-1.docker.io" {
        "docker.io"
    } else {
        host
    }
}

/// The last announcement per host and account.
#[derive(Default)]
pub struct Known(Mutex<HashMap<String, RateLimit>>);

fn key(host: &str, creds: Option<&Credentials>) -> String {
    match creds {
        Some(c) => format!("{}@{host}", c.user),
        None => host.to_string(),
    }
}

/// How a pull is paced: the floor kept, and how to wait.
pub struct Pace<'a> {
    /// Pulls kept (`rateLimitMin`).
    pub floor: u64,
    /// Waits this long, or less when the run is asked to stop or the
    /// transfer runs out of time; false then (the caller's `retry::sleep`).
    /// None where nothing waits (a dry run): the pull is refused instead.
    pub wait: Option<&'a dyn Fn(Duration) -> bool>,
}

impl Client {
    /// Notes what an answer of `repo`'s registry says of its limit: a
    /// successful answer without the headers says there is none.
    pub(super) fn note_limit(
        &self,
        repo: &Repository,
        creds: Option<&Credentials>,
        resp: &http::Response<ureq::Body>,
    ) {
        let key = key(&repo.host, creds);
        let mut known = lock(&self.limits.0);
        match announced(resp) {
            Some(seen) => {
                known.insert(key, seen);
            }
            None if resp.status().is_success() => {
                known.remove(&key);
            }
            None => {}
        }
    }

    /// What `host` last said of the limit of `creds`' account.
    pub fn rate_limit(&self, host: &str, creds: Option<&Credentials>) -> Option<Shown> {
        lock(&self.limits.0)
            .get(&key(host, creds))
            .map(|seen| Shown {
                source: shown_host(host).to_string(),
                limit: seen.limit,
                remaining: seen.remaining,
                window_seconds: seen.window.as_secs(),
            })
    }

    /// Before a manifest `GET` of `repo:reference`: waits while its
    /// registry's last answer left `pace.floor` pulls or fewer, saying so,
    /// and asks again with a `HEAD` (which Docker Hub does not count) after
    /// each wait. Fails with `Interrupted` when the wait is cut short.
    pub fn before_pull(
        &self,
        repo: &Repository,
        reference: &str,
        creds: Option<&Credentials>,
        pace: &Pace<'_>,
    ) -> Result<(), Error> {
        let key = key(&repo.host, creds);
        loop {
            let Some(seen) = lock(&self.limits.0).get(&key).cloned() else {
                return Ok(());
            };
            match decide(&seen, pace.floor, seen.at.elapsed()) {
                Decision::Go => return Ok(()),
                Decision::Wait(_) if pace.wait.is_none() => {
                    return Err(Error::registry(
                        &repo.host,
                        format!(
                            "{} pulls left of {} per {} (rateLimitMin {}); a dry run does not wait for them",
                            seen.remaining,
                            seen.limit,
                            human_duration(seen.window),
                            pace.floor
                        ),
                    ));
                }
                Decision::Wait(wait) => {
                    log::warn!(
                        "{}: {} pulls left of {} per {}; waiting {} before the next pull (rateLimitMin {})",
                        shown_host(&repo.host),
                        seen.remaining,
                        seen.limit,
                        human_duration(seen.window),
                        human_duration(wait),
                        pace.floor
                    );
                    if !pace.wait.is_some_and(|w| w(wait)) {
                        return Err(Error::Interrupted {
                            command: format!(
                                "the wait for {}'s rate limit",
                                shown_host(&repo.host)
                            ),
                        });
                    }
                }
                Decision::Ask => {}
            }
            if let Err(e) = self.head_digest(repo, reference, creds) {
                log::debug!("asking {} for its rate limit: {e}", repo.host);
            }
            let asked = lock(&self.limits.0).get(&key).map(|s| s.at);
            if asked == Some(seen.at) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(limit: u64, remaining: u64, window: u64) -> RateLimit {
        RateLimit {
            limit,
            remaining,
            window: Duration::from_secs(window),
            retry_after: None,
            at: Instant::now(),
        }
    }

    #[test]
    fn headers_are_parsed_with_their_window() {
        assert_eq!(
            parse("100;w=21600"),
            Some((100, Some(Duration::from_secs(21600))))
        );
        assert_eq!(
            parse(" 76 ; w=3 "),
            Some((76, Some(Duration::from_secs(3))))
        );
        assert_eq!(parse("5"), Some((5, None)));
        assert_eq!(parse("5;w=0"), Some((5, None)));
        assert_eq!(parse("many;w=60"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn above_the_floor_or_a_window_later_a_pull_goes() {
        assert_eq!(
            decide(&seen(100, 6, 21600), 5, Duration::ZERO),
            Decision::Go
        );
        assert_eq!(
            decide(&seen(100, 0, 21600), 5, Duration::from_secs(21600)),
            Decision::Go
        );
        assert_eq!(
            decide(&seen(100, 1, 21600), 0, Duration::ZERO),
            Decision::Go
        );
    }

    #[test]
    fn at_the_floor_the_wait_is_what_ages_out_in_whole_minutes() {
        let hub = seen(100, 3, 21600);
        // 3 pulls must age out to rise above 5: 3 x 216 s, in minutes.
        assert_eq!(
            decide(&hub, 5, Duration::ZERO),
            Decision::Wait(Duration::from_secs(660))
        );
        assert_eq!(
            decide(&hub, 5, Duration::from_secs(600)),
            Decision::Wait(Duration::from_secs(48))
        );
        assert_eq!(decide(&hub, 5, Duration::from_secs(650)), Decision::Ask);
        assert_eq!(
            decide(&seen(100, 0, 21600), 0, Duration::ZERO),
            Decision::Wait(Duration::from_secs(240))
        );
        // Never longer than the window, never shorter than a second.
        assert_eq!(
            decide(&seen(2, 0, 10), 50, Duration::ZERO),
            Decision::Wait(Duration::from_secs(10))
        );
        assert_eq!(
            decide(&seen(100, 0, 3), 0, Duration::ZERO),
            Decision::Wait(MIN_WAIT)
        );
    }

    #[test]
    fn retry_after_wins_over_the_estimate() {
        let told = RateLimit {
            retry_after: Some(Duration::from_secs(42)),
            ..seen(100, 0, 21600)
        };
        assert_eq!(
            decide(&told, 0, Duration::from_secs(2)),
            Decision::Wait(Duration::from_secs(40))
        );
    }

    #[test]
    fn docker_hub_is_named_as_operators_know_it() {
        assert_eq!(shown_host("registry-1.docker.io"), "docker.io");
        assert_eq!(shown_host("quay.io"), "quay.io");
    }
}
