//! A synchronizer's thread: sleep until the scheduler says a run is due or
//! asked for, run it (shielded from panics), record how it ended, repeat
//! until retired. The decisions are `scheduler`'s; this file acts on them
//! with the real clock, the condition variable and `run::mirror`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Local;

use crate::config::Registry;
use crate::daemon::scheduler::{Due, Step};
use crate::daemon::synchronizer::{Running, Synchronizer};
use crate::display::{Progress, rfc3339};
use crate::engine::Engines;
use crate::flock::Holder;
use crate::mutex::{wait, wait_timeout};
use crate::process::Cancel;
use crate::registry::Client;
use crate::run::mirror;
use crate::run::report::{RegistryReport, RunOutcome};

/// How long a due run waits for another process's run of its registry to
/// end before it is skipped: long enough to outlast someone looking at the
/// lock (`details`, `run`), which takes it for a moment.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// What every run uses, shared by the synchronizers.
pub struct Tools {
    /// The engines.
    pub engines: Engines,
    /// The registry API client (and its token cache).
    pub client: Client,
    /// Where state files live.
    pub state_dir: PathBuf,
    /// The shutdown's cancellation of children.
    pub cancel: Arc<Cancel>,
    /// How progress is shown.
    pub progress: Progress,
}

/// The synchronizer thread: sleep until due or woken, run, repeat.
pub fn serve(sync: &Synchronizer, tools: &Tools) {
    let first = sync.lock().timing.next_run;
    log::info!(
        "{}: synchronizer started; next run {}",
        sync.hostname,
        first.as_ref().map_or("not scheduled".into(), rfc3339)
    );
    loop {
        let Some((registry, due)) = wait_until_due(sync) else {
            log::info!("{}: synchronizer stopped", sync.hostname);
            return;
        };
        match run_once(sync, &registry, tools) {
            Ok(report) => ended(sync, &due, report),
            Err(holder) => skip_held(sync, holder),
        }
    }
}

/// Sleeps until a run is due or requested, marks it running, and returns
/// the registry to run and the run's due time; None when the synchronizer
/// retires.
fn wait_until_due(sync: &Synchronizer) -> Option<(Registry, Due)> {
    let mut st = sync.lock();
    let due = loop {
        let retired = st.retired;
        match st.timing.step(retired, Local::now()) {
            Step::Stop => {
                st.exited = true;
                return None;
            }
            Step::Run(due) => break due,
            Step::Sleep(wait) => {
                st = wait_timeout(&sync.wake, st, wait);
            }
            Step::Wait => st = wait(&sync.wake, st),
        }
    };
    st.running = Some(Running {
        started: Local::now(),
        image: None,
        n: 0,
        of: 0,
        bytes: 0,
    });
    let mut registry = st.registry.clone();
    registry.prune &= !std::mem::take(&mut st.no_prune);
    Some((registry, due))
}

/// Gives the memory a run freed back to the system: glibc keeps what its
/// threads freed in its arenas, which a daemon idling between runs would
/// hold for nothing (about a third of a 50-registry daemon's resident
/// memory after a round of runs; see `bench/idle.sh`).
#[allow(unsafe_code)]
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) only returns free memory of the allocator's
    // own to the system; it takes a plain integer and touches no memory of
    // ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Records a run that ended, with the due times that passed during it.
fn ended(sync: &Synchronizer, due: &Due, report: RegistryReport) {
    release_freed_memory();
    let summary = format!(
        "{}: run ended: {}, {} mirrored, {} up to date, {} failed ({:.1}s)",
        sync.hostname,
        report.outcome.name(),
        report.mirrored,
        report.up_to_date,
        report.failed,
        report.seconds
    );
    let finished = Local::now();
    let skipped = sync.update(|st| {
        st.running = None;
        st.number_of_syncs += 1;
        st.outcomes[report.outcome as usize] += 1;
        st.pruned += report.pruned.len() as u64;
        st.last_run = Some(report);
        st.timing.ended(due, finished)
    });
    log::info!("{summary}");
    if skipped > 0 {
        log::warn!(
            "{}: skipped: previous run still in progress ({skipped} due {} passed during it)",
            sync.hostname,
            if skipped == 1 { "time" } else { "times" }
        );
    }
}

/// A due run that another process's run of the registry kept from
/// starting: counted as skipped, with who held it.
fn skip_held(sync: &Synchronizer, holder: Holder) {
    log::warn!(
        "{}: skipped: another picture-book is running this registry: {holder}",
        sync.hostname
    );
    sync.update(|st| {
        st.running = None;
        st.timing.held_elsewhere(holder, Local::now());
    });
}

/// One run, shielded from panics so that one registry's bug cannot stop
/// its synchronizer or the daemon.
fn run_once(
    sync: &Synchronizer,
    registry: &Registry,
    tools: &Tools,
) -> Result<RegistryReport, Holder> {
    let stop = || {
        let st = sync.lock();
        if tools.cancel.is_cancelled() {
            Some("shutting down".to_string())
        } else if st.retired {
            Some("removed from the configuration".to_string())
        } else if st.timing.paused {
            Some("paused".to_string())
        } else {
            None
        }
    };
    let on_image = |n: usize, of: usize, source: &str| {
        if let Some(r) = sync.lock().running.as_mut() {
            r.n = n;
            r.of = of;
            r.image = Some(source.to_string());
        }
    };
    let on_moved = |bytes: u64| {
        if let Some(r) = sync.lock().running.as_mut() {
            r.bytes += bytes;
        }
    };
    let started = Local::now();
    let ctx = mirror::Context {
        engines: &tools.engines,
        client: &tools.client,
        cancel: &tools.cancel,
        state_dir: &tools.state_dir,
        progress: &tools.progress,
        dry_run: false,
        force: false,
        stop: &stop,
        on_image: &on_image,
        on_moved: &on_moved,
        lock_wait: Some(LOCK_WAIT),
        readiness: &mirror::Readiness::every_run(),
        mode: mirror::Mode::Mirror,
    };
    catch_unwind(AssertUnwindSafe(|| mirror::run(registry, &ctx))).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log::error!(
            "{}: internal error during the run: {what}",
            registry.hostname
        );
        Ok(RegistryReport::ended_early(
            &registry.hostname,
            started,
            format!("internal error: {what}"),
            RunOutcome::Crashed,
        ))
    })
}
