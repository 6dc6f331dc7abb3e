//! Signals, turned into what they mean for picture-book: SIGTERM and SIGINT
//! ask it to stop (after the images in progress; a second one stops children
//! at once), SIGHUP asks the daemon to re-read its configuration. What
//! stopping or reloading involves is the caller's business.

use std::sync::Arc;
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

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

/// The signals picture-book listens to, delivered in order.
pub struct Signals(signal_hook::iterator::Signals);

impl Signals {
    /// Starts listening to SIGTERM, SIGINT and SIGHUP.
    pub fn new() -> Result<Signals, Error> {
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
            .map(Signals)
            .map_err(Error::Signals)
    }

    /// Waits for the next signal.
    pub fn wait(&mut self) -> Request {
        loop {
            if let Some(signal) = self.0.forever().next() {
                return if signal == SIGHUP {
                    Request::Reload
                } else {
                    Request::Stop
                };
            }
        }
    }
}

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
