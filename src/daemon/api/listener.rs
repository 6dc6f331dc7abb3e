//! The API's listening socket and the connections on it, kept healthy around
//! tiny_http's own accepting thread: socket options the connections inherit,
//! a watchdog that starts a fresh acceptor when tiny_http's has died (it ends
//! at the first failed `accept`, or panics when it runs out of file
//! descriptors), and a reaper that closes connections idle for
//! [`IDLE_LIMIT`] (tiny_http would keep them, and a thread each, forever).
//! What is answered is `api`'s business.

use std::fs;
use std::mem::ManuallyDrop;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::Request;

use crate::mutex::lock;

/// How long a client connection may send nothing before it is closed.
pub const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// How long writing an answer may wait for a client that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the acceptor is asked whether it still accepts.
const PROBE_EVERY: Duration = Duration::from_secs(10);
/// How long the acceptor has to pass on a request the API sent itself.
const PROBE_LIMIT: Duration = Duration::from_secs(5);
/// How long waiting for a request lasts before looking at the rest.
const POLL: Duration = Duration::from_millis(250);
/// Replaced acceptors kept for the requests their connections still bring.
const KEPT: usize = 8;
/// The path of the watchdog's own requests.
const PROBE_PATH: &str = "/healthz?acceptor-probe=";

/// What the serving thread and the stopping one share.
struct Shared {
    /// The tiny_http servers on the socket, the current one last.
    servers: Mutex<Vec<Arc<tiny_http::Server>>>,
    stopping: AtomicBool,
}

/// Stops [`Acceptors::next_request`] from another thread.
#[derive(Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    /// Makes `next_request` return `None` within a quarter of a second.
    pub fn stop(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
    }
}

/// The API's socket and the tiny_http servers accepting on it.
pub struct Acceptors {
    listener: TcpListener,
    /// Where the API can reach itself.
    own: SocketAddr,
    shared: Arc<Shared>,
    /// The watchdog's request in flight: its number and when it was sent.
    probe: Option<(u64, Instant)>,
    probes: u64,
    last_probe: Instant,
}

impl Acceptors {
    /// Binds `address`, starts accepting and reaping idle connections.
    pub fn bind(address: SocketAddr) -> std::io::Result<(Acceptors, Stopper)> {
        let listener = TcpListener::bind(address)?;
        set_socket_options(&listener);
        raise_open_files_limit();
        let first = accept_on(&listener)?;
        let port = listener.local_addr()?.port();
        let own_ip = match address.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let shared = Arc::new(Shared {
            servers: Mutex::new(vec![Arc::new(first)]),
            stopping: AtomicBool::new(false),
        });
        let reaping = Arc::clone(&shared);
        thread::Builder::new()
            .name("api reaper".into())
            .spawn(move || {
                while !reaping.stopping.load(Ordering::SeqCst) {
                    thread::sleep(POLL * 4);
                    close_idle(port);
                }
            })?;
        let acceptors = Acceptors {
            listener,
            own: SocketAddr::new(own_ip, port),
            shared: Arc::clone(&shared),
            probe: None,
            probes: 0,
            last_probe: Instant::now(),
        };
        Ok((acceptors, Stopper(shared)))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.own.port()
    }

    /// The next request, or `None` once stopped.
    pub fn next_request(&mut self) -> Option<Request> {
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let servers = lock(&self.shared.servers).clone();
            let (current, replaced) = servers.split_last()?;
            if let Some(request) = replaced.iter().find_map(|s| s.try_recv().ok().flatten()) {
                return Some(request);
            }
            match current.recv_timeout(POLL) {
                Ok(Some(request)) if self.is_probe(&request) => {
                    self.probe = None;
                    drop(request.into_writer());
                }
                Ok(Some(request)) => return Some(request),
                Ok(None) => self.watch(),
                Err(e) => {
                    thread::sleep(Duration::from_secs(1));
                    self.replace(&format!("accepting connections failed ({e})"));
                }
            }
        }
        None
    }

    fn is_probe(&self, request: &Request) -> bool {
        self.probe
            .is_some_and(|(n, _)| request.url() == format!("{PROBE_PATH}{n}"))
    }

    /// Sends the acceptor a request now and then, and replaces it when the
    /// request does not come through.
    fn watch(&mut self) {
        match self.probe {
            Some((_, sent)) if sent.elapsed() > PROBE_LIMIT => self.replace(&format!(
                "a request to itself did not come through within {}s",
                PROBE_LIMIT.as_secs()
            )),
            None if self.last_probe.elapsed() > PROBE_EVERY => {
                self.last_probe = Instant::now();
                self.probes += 1;
                let request = format!(
                    "GET {PROBE_PATH}{} HTTP/1.1\r\nConnection: close\r\n\r\n",
                    self.probes
                );
                let sent = TcpStream::connect_timeout(&self.own, PROBE_LIMIT).and_then(|mut s| {
                    use std::io::Write;
                    s.write_all(request.as_bytes())
                });
                match sent {
                    Ok(()) => self.probe = Some((self.probes, Instant::now())),
                    Err(e) => log::debug!("API: cannot reach itself on {}: {e}", self.own),
                }
            }
            _ => {}
        }
    }

    /// Starts a fresh acceptor on the same socket (clients wait in its
    /// backlog meanwhile); the replaced one's connections are still heard.
    fn replace(&mut self, why: &str) {
        self.probe = None;
        self.last_probe = Instant::now();
        match accept_on(&self.listener) {
            Ok(fresh) => {
                log::error!("API: {why}; accepting anew");
                let mut servers = lock(&self.shared.servers);
                servers.push(Arc::new(fresh));
                if servers.len() > KEPT + 1 {
                    servers.remove(0);
                }
            }
            Err(e) => log::error!("API: {why}; cannot accept anew yet: {e}"),
        }
    }
}

/// A tiny_http server accepting on (a duplicate of) `listener`.
fn accept_on(listener: &TcpListener) -> std::io::Result<tiny_http::Server> {
    let duplicate = listener.try_clone()?;
    tiny_http::Server::from_listener(duplicate, None).map_err(std::io::Error::other)
}

/// Socket options every accepted connection inherits on Linux: a send
/// timeout, so that writing to a client that does not read gives up, and TCP
/// keepalive, so that a vanished client's connection is closed. (A receive
/// timeout would make tiny_http's `accept` itself time out; the reaper
/// closes idle connections instead.)
fn set_socket_options(listener: &TcpListener) {
    let timeout = libc::timeval {
        tv_sec: SEND_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    let fd = listener.as_raw_fd();
    let results = [
        set_option(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &timeout),
        set_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, &1),
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &60),
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, &10),
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, &3),
    ];
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        log::warn!(
            "API: cannot set socket options ({e}); a client that does not read can delay its answers"
        );
    }
}

#[allow(unsafe_code)]
fn set_option<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    let size = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: setsockopt(2) reads `size` bytes from the pointer, which points
    // at a live `T` of exactly that size.
    let result = unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), size) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Raises the soft limit on open files to the hard one (at most 65536): each
/// API connection takes two descriptors, and a service's usual soft limit of
/// 1024 would run out with a few hundred idle clients.
#[allow(unsafe_code)]
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit` through the pointer, which
    // points at a live local of that type; setrlimit(2) reads one.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = limit.rlim_max.min(65536);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                log::debug!(
                    "cannot raise the open files limit: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// Shuts down every connection to local `port` that has received nothing
/// for [`IDLE_LIMIT`]; tiny_http then sees it end and lets it go.
fn close_idle(port: u16) {
    for (stream, idle) in connections(port) {
        if idle > IDLE_LIMIT {
            if let Ok(peer) = stream.peer_addr() {
                log::debug!(
                    "API: closing the connection of {peer}, idle for {}s",
                    idle.as_secs()
                );
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Shuts down the connection of `peer` to local `port` once its answer is
/// written: for an HTTP/1.0 client that asked to keep the connection, which
/// tiny_http keeps without saying so in the answer (it cannot say so), so
/// that the client would wait for the end of an answer that never comes.
pub fn close_after_answer(port: u16, peer: SocketAddr) {
    if let Some((stream, _)) =
        connections(port).find(|(s, _)| s.peer_addr().is_ok_and(|p| p == peer))
    {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// The established TCP connections to local `port` in this process, each
/// with how long it has received nothing.
fn connections(port: u16) -> impl Iterator<Item = (ManuallyDrop<TcpStream>, Duration)> {
    let fds: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.into_iter().filter_map(move |fd| {
        let idle = idle_for(fd)?;
        let stream = borrow_stream(fd);
        stream
            .local_addr()
            .is_ok_and(|a| a.port() == port)
            .then_some((stream, idle))
    })
}

/// How long the established TCP connection `fd` has received no data;
/// `None` when `fd` is not one.
#[allow(unsafe_code)]
fn idle_for(fd: RawFd) -> Option<Duration> {
    // SAFETY: tcp_info is plain integers, for which all zeroes is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut size = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `size` bytes through the pointer,
    // which points at a live `tcp_info` of that size, and stores the length
    // it wrote in `size`; on a descriptor that is not a TCP socket it fails.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut size,
        )
    };
    // 1 is TCP_ESTABLISHED in the kernel's tcp_states.h.
    (result == 0 && info.tcpi_state == 1)
        .then(|| Duration::from_millis(info.tcpi_last_data_recv.into()))
}

/// The socket `fd` as a stream that does not close it when dropped.
#[allow(unsafe_code)]
fn borrow_stream(fd: RawFd) -> ManuallyDrop<TcpStream> {
    // SAFETY: `fd` is an open TCP socket (`idle_for` checked it), and the
    // stream is never dropped, so it never closes a descriptor it does not own.
    ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) })
}
