//! Locking a mutex (and waiting on a condition variable with it) also after
//! a thread panicked while holding it: every mutex of picture-book guards
//! data that stays consistent between statements, so a panic elsewhere must
//! not take the rest down with it. Call these rather than writing
//! `unwrap_or_else(|p| p.into_inner())` inline.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Locks `m`, also after a thread panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the value out of `m`, also after a thread panicked while holding it.
pub fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` with `guard`, also after a thread panicked while holding
/// its mutex.
pub fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` with `guard` for at most `timeout`, also after a thread
/// panicked while holding its mutex.
pub fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    cv.wait_timeout(guard, timeout)
        .unwrap_or_else(|p| p.into_inner())
        .0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn a_poisoned_mutex_still_locks_and_waits() {
        let m = Arc::new(Mutex::new(1));
        let held = Arc::clone(&m);
        let _ = thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("poisons the mutex");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        let cv = Condvar::new();
        let guard = wait_timeout(&cv, lock(&m), Duration::from_millis(1));
        assert_eq!(*guard, 2);
        drop(guard);
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let other = Arc::clone(&pair);
        thread::spawn(move || {
            *lock(&other.0) = true;
            other.1.notify_all();
        });
        let mut done = lock(&pair.0);
        while !*done {
            done = wait(&pair.1, done);
        }
        drop(done);
        let m = Arc::into_inner(m).unwrap();
        assert_eq!(into_inner(m), 2);
    }
}
