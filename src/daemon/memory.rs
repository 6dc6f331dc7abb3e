//! How the daemon keeps its idle memory small. With glibc's allocator: at
//! most two arenas, set before its first thread starts (glibc otherwise
//! gives each busy thread an arena of its own, up to eight per core, and
//! keeps what each freed). And when its last run in progress ends: the
//! registry client's idle connections closed (each holds buffers of
//! 256 KiB) and the memory freed given back to the system (glibc only; with
//! musl that part does nothing).
//!
//! What this cannot reach: glibc's per-thread cache (tcache) keeps up to 7
//! freed blocks of each small size for every long-lived thread, and
//! `malloc_trim` cannot return a page that holds one. Over the first hour
//! those scattered blocks make the heap's pages resident one by one (about
//! 1 MiB for `bench/soak.sh`'s workload, bounded by the heap's size). The
//! cache is only set at process start, from `GLIBC_TUNABLES`, so the
//! packaged systemd unit and container image run the daemon with
//! `glibc.malloc.tcache_count=0`, and `bench/soak.sh` runs it as they do.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::registry::Client;

/// The daemon's runs in progress.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// A run in progress; the last one to end leaves the daemon lean.
pub struct Busy<'a> {
    client: &'a Client,
}

impl Busy<'_> {
    /// Marks a run as started.
    pub fn start(client: &Client) -> Busy<'_> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Busy { client }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if RUNS.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.client.forget_idle();
            give_back();
        }
    }
}

/// The most malloc arenas the daemon's threads share.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Limits glibc's arenas; call before the daemon starts its first thread.
#[allow(unsafe_code)]
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes
    // any positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Gives the memory freed so far, in every arena, back to the system.
#[allow(unsafe_code)]
fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}
