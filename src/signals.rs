//! Signals, turned into what they mean for picture-book: SIGTERM and SIGINT
//! ask it to stop (after the images in progress; a second one stops children
//! at once), SIGHUP asks the daemon to re-read its configuration. What
//! stopping or reloading involves is the caller's business.
//!
//! Delivery is a self-pipe of our own: each signal's handler sets its flag,
//! then writes a byte to a socket that [`Signals::wait`] sleeps on. Any
//! error of that read is survived. Under a debugger (gdb calling a function
//! in the process) a blocked read can end with the kernel's internal
//! ERESTARTSYS (512), and signal-hook's iterator panics on it, which in the
//! daemon's main thread stopped the daemon.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::{flag, low_level::pipe};

use crate::error::Error;
use crate::process::Cancel;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The signals picture-book listens to. Signals of one kind that arrive
/// before they are waited for count once; a stop is answered before a
/// reload.
pub struct Signals {
    /// Woken (one byte each) by every signal, after its flag is set.
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    /// Starts listening to SIGTERM, SIGINT and SIGHUP.
    pub fn new() -> Result<Signals, Error> {
        let (wake, writer) = UnixStream::pair().map_err(Error::Signals)?;
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        for (signal, raised) in [(SIGTERM, &stop), (SIGINT, &stop), (SIGHUP, &reload)] {
            // The flag first: a handler runs its actions in this order.
            flag::register(signal, Arc::clone(raised)).map_err(Error::Signals)?;
            let writer = writer.try_clone().map_err(Error::Signals)?;
            pipe::register(signal, writer).map_err(Error::Signals)?;
        }
        Ok(Signals { wake, stop, reload })
    }

    /// Waits for the next signal.
    pub fn wait(&mut self) -> Request {
        loop {
            if self.stop.swap(false, Ordering::SeqCst) {
                return Request::Stop;
            }
            if self.reload.swap(false, Ordering::SeqCst) {
                return Request::Reload;
            }
            self.sleep_until_woken();
        }
    }

    /// Blocks until a handler writes. A failed read is tried again, without
    /// sleeping (std's sleep panics when a debugger leaves its system call
    /// with ERESTART_RESTARTBLOCK); only a socket that fails every time is
    /// a bug worth stopping for.
    fn sleep_until_woken(&mut self) {
        for _ in 0..READ_ATTEMPTS {
            match self.wake.read(&mut [0; 16]) {
                Ok(0) => {}
                Ok(_) => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => return,
                Err(e) => log::debug!("waiting for signals: {e}; trying again"),
            }
        }
        panic!("the signal socket failed {READ_ATTEMPTS} reads in a row");
    }
}

/// Reads of the signal socket that may fail in a row before it counts as
/// broken.
const READ_ATTEMPTS: usize = 100;

/// For one-shot commands: on SIGTERM or SIGINT, request `cancel` (children
/// get their grace; a second signal stops them at once). SIGHUP is ignored.
pub fn cancel_on_stop(cancel: Arc<Cancel>) -> Result<(), Error> {
    let mut signals = Signals::new()?;
    thread::spawn(move || {
        loop {
            if signals.wait() == Request::Stop {
                if cancel.is_cancelled() {
                    log::warn!("stopping now");
                } else {
                    log::warn!(
                        "interrupted: finishing the images in progress (at most {}s; interrupt again to stop now)",
                        crate::process::SHUTDOWN_GRACE.as_secs()
                    );
                }
                cancel.cancel();
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // SIGHUP only: a handler for SIGTERM or SIGINT would stay installed in
    // the test binary. The e2e tests send the daemon all three.
    #[test]
    fn a_hangup_asks_for_a_reload_each_time_it_arrives() {
        let mut signals = Signals::new().unwrap();
        for _ in 0..3 {
            signal_hook::low_level::raise(SIGHUP).unwrap();
            assert_eq!(signals.wait(), Request::Reload);
        }
        assert!(!signals.reload.load(Ordering::SeqCst));
    }
}
