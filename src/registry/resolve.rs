//! Name resolution for the registry client's agents, without an OS thread
//! per request. ureq looks a host up before each request, pooled connection
//! or not, and under a time limit does so on a thread of its own. Here an
//! IP address is taken as it is, and a name is looked up once per
//! `FRESH_FOR` and kept (a lookup still on a thread of its own when it must
//! end in time, as ureq's does). Connecting and TLS are ureq's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

use crate::mutex::lock;

/// How long a name's addresses are used before it is looked up again.
const FRESH_FOR: Duration = Duration::from_secs(30);

/// The registry client's resolver: IP addresses as they are, names looked
/// up once per `FRESH_FOR`.
#[derive(Debug, Default)]
pub struct Cached {
    names: Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>,
}

impl Resolver for Cached {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (host, port) = host_and_port(uri)?;
        let found = match literal(&host, port) {
            Some(addr) => vec![addr],
            None => self.name(&host, port, timeout)?,
        };
        let mut result = self.empty();
        for addr in config.ip_family().keep_wanted(found.into_iter()).take(16) {
            result.push(addr);
        }
        if result.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(result)
    }
}

impl Cached {
    /// The addresses of `host`, from the cache while fresh.
    fn name(
        &self,
        host: &str,
        port: u16,
        timeout: NextTimeout,
    ) -> Result<Vec<SocketAddr>, ureq::Error> {
        let key = format!("{host}:{port}");
        if let Some((at, addrs)) = lock(&self.names).get(&key)
            && at.elapsed() < FRESH_FOR
        {
            return Ok(addrs.clone());
        }
        let addrs = look_up(key.clone(), timeout)?;
        lock(&self.names).insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// The host (without brackets) and port `uri` names, the port by its
/// scheme when it has none.
fn host_and_port(uri: &Uri) -> Result<(String, u16), ureq::Error> {
    let bad = || ureq::Error::BadUri(uri.to_string());
    let authority = uri.authority().ok_or_else(bad)?;
    let port = match (authority.port_u16(), uri.scheme_str()) {
        (Some(p), _) => p,
        (None, Some("https")) => 443,
        (None, Some("http")) => 80,
        _ => return Err(bad()),
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok((host.to_string(), port))
}

/// `host` as an address, when it is an IP address.
fn literal(host: &str, port: u16) -> Option<SocketAddr> {
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

/// Looks `key` (`host:port`) up: here, or on a thread of its own when the
/// lookup must end in time.
fn look_up(key: String, timeout: NextTimeout) -> Result<Vec<SocketAddr>, ureq::Error> {
    if timeout.after.is_not_happening() {
        return Ok(key.to_socket_addrs()?.collect());
    }
    let (tx, rx) = mpsc::sync_channel(1);
    thread::spawn(move || {
        let found = key.to_socket_addrs().map(Iterator::collect::<Vec<_>>);
        let _ = tx.send(found);
    });
    match rx.recv_timeout(*timeout.after) {
        Ok(found) => Ok(found?),
        Err(_) => Err(ureq::Error::Timeout(timeout.reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(resolver: &Cached, url: &str) -> Vec<SocketAddr> {
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::Exact(Duration::from_secs(5)),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let uri: Uri = url.parse().unwrap();
        let found = resolver.resolve(&uri, &Config::default(), timeout).unwrap();
        found.iter().copied().collect()
    }

    #[test]
    fn addresses_are_taken_as_they_are_and_names_looked_up_once() {
        let resolver = Cached::default();
        assert_eq!(
            resolve(&resolver, "http://127.0.0.1:5000/v2/"),
            vec!["127.0.0.1:5000".parse().unwrap()]
        );
        assert_eq!(
            resolve(&resolver, "https://[::1]/v2/"),
            vec!["[::1]:443".parse().unwrap()]
        );
        assert!(lock(&resolver.names).is_empty(), "no lookup of an address");
        let first = resolve(&resolver, "http://localhost:5000/v2/");
        assert!(
            first
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 5000)
        );
        assert_eq!(lock(&resolver.names).len(), 1);
        assert_eq!(resolve(&resolver, "http://localhost:5000/v2/x"), first);
    }
}
