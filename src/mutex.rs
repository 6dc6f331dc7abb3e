//! Locking a mutex also after a thread panicked while holding it: every
//! mutex of picture-book guards data that stays consistent between
//! statements, so a panic elsewhere must not take the rest down with it.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also after a thread panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the value out of `m`, also after a thread panicked while holding it.
pub fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(|p| p.into_inner())
}
