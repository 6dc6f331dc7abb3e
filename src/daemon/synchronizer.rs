//! One registry's synchronizer as the daemon shares it between its thread
//! and the API: the registry's settings, its timing (`scheduler`), whether a
//! run is going and how far it is, its counters and last report, behind one
//! mutex with a condition variable that wakes the thread. What to decide is
//! `scheduler`'s business; what the thread does, `worker`'s.

use std::sync::{Condvar, Mutex, MutexGuard};

use chrono::{DateTime, Local};

use crate::config::Registry;
use crate::daemon::scheduler::Timing;
use crate::mutex::lock;
use crate::run::report::{RegistryReport, RunOutcome};

/// One registry's synchronizer.
pub struct Synchronizer {
    pub hostname: String,
    pub created: DateTime<Local>,
    state: Mutex<State>,
    /// Wakes the thread to look at the state again.
    pub wake: Condvar,
}

/// A synchronizer's state, behind its mutex.
pub struct State {
    pub registry: Registry,
    pub timing: Timing,
    /// Removed from the configuration, or shutting down: the thread ends.
    pub retired: bool,
    /// The thread has ended.
    pub exited: bool,
    pub running: Option<Running>,
    pub number_of_syncs: u64,
    /// Runs finished, by outcome (indexed by `RunOutcome as usize`).
    pub outcomes: [u64; RunOutcome::ALL.len()],
    /// Tags pruned by its runs.
    pub pruned: u64,
    /// The run asked for over the API prunes nothing (`prune=false`).
    pub no_prune: bool,
    pub last_run: Option<RegistryReport>,
}

/// A run in progress.
pub struct Running {
    pub started: DateTime<Local>,
    /// The image being moved, and its place in the run.
    pub image: Option<String>,
    pub n: usize,
    pub of: usize,
    /// Bytes sent by the images that have moved so far (native engine).
    pub bytes: u64,
}

impl Synchronizer {
    pub fn new(registry: Registry) -> Synchronizer {
        let now = Local::now();
        let timing = Timing::new(registry.schedule.clone(), now);
        Synchronizer {
            hostname: registry.hostname.clone(),
            created: now,
            state: Mutex::new(State {
                registry,
                timing,
                retired: false,
                exited: false,
                running: None,
                number_of_syncs: 0,
                outcomes: [0; RunOutcome::ALL.len()],
                pruned: 0,
                no_prune: false,
                last_run: None,
            }),
            wake: Condvar::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Changes the state and wakes the thread to look at it.
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let result = f(&mut self.lock());
        self.wake.notify_all();
        result
    }
}
