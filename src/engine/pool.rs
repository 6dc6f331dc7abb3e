//! The blob copiers of one run: threads that the run's images hand their
//! blobs to, started as the first blobs need them (never more than the
//! pool's size) and ended with the run, so that the threads a run starts do
//! not grow with its images or their blobs. Whoever hands in a batch (one
//! image's blobs) waits for it; the batch's first failure keeps its tasks
//! that have not started from starting. How many transfers are in flight
//! is the run's `Slots`' business, and what a stop request or
//! `transferTimeout` does to a task is the task's.

use std::any::Any;
use std::collections::VecDeque;
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;

use crate::mutex::{lock, wait};

/// Work handed to the copiers, borrowing what lives as long as `'p`.
type Task<'p> = Box<dyn FnOnce() + Send + 'p>;

/// The copiers of one run.
pub struct Pool<'p> {
    /// The most copiers started.
    size: usize,
    /// Starts a thread in the run's scope.
    spawn: Box<dyn Fn(Task<'p>) + Send + Sync + 'p>,
    state: Mutex<State<'p>>,
    /// Wakes the copiers: a task is queued, or the pool is closed.
    queued: Condvar,
}

struct State<'p> {
    queue: VecDeque<Task<'p>>,
    /// Copiers started.
    started: usize,
    /// Copiers without a task.
    idle: usize,
    /// Whether the run is over: the copiers end once the queue is empty.
    closed: bool,
}

/// A pool open for the run, closed (its copiers told to end) when dropped.
pub struct Open<'p>(Arc<Pool<'p>>);

impl<'p> Pool<'p> {
    /// A pool of at most `size` copiers, started in `scope` as tasks come:
    /// its threads end with the scope, once the pool is closed.
    pub fn open<'e>(scope: &'p Scope<'p, 'e>, size: usize) -> Open<'p> {
        Open(Arc::new(Pool {
            size: size.max(1),
            spawn: Box::new(move |task| {
                scope.spawn(task);
            }),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                started: 0,
                idle: 0,
                closed: false,
            }),
            queued: Condvar::new(),
        }))
    }

    /// Runs `tasks` on the copiers and waits for them to end. The first to
    /// fail keeps those that have not started from starting, and its error
    /// is returned. A task that panics panics the caller (the copier lives
    /// on).
    pub fn all<E, T>(self: &Arc<Self>, tasks: impl IntoIterator<Item = T>) -> Result<(), E>
    where
        E: Send + 'p,
        T: FnOnce() -> Result<(), E> + Send + 'p,
    {
        let batch = Arc::new(Batch {
            state: Mutex::new(Outcome {
                left: 0,
                failed: None,
                panicked: None,
            }),
            ended: Condvar::new(),
        });
        let wrapped: Vec<Task<'p>> = tasks
            .into_iter()
            .map(|task| {
                let batch = Arc::clone(&batch);
                Box::new(move || batch.run(task)) as Task<'p>
            })
            .collect();
        lock(&batch.state).left = wrapped.len();
        self.queue(wrapped);
        batch.wait()
    }

    /// Queues `tasks`, and starts the copiers they need.
    fn queue(self: &Arc<Self>, tasks: Vec<Task<'p>>) {
        let mut state = lock(&self.state);
        state.queue.extend(tasks);
        let wanted = state.queue.len().saturating_sub(state.idle);
        let start = wanted.min(self.size - state.started);
        state.started += start;
        state.idle += start;
        drop(state);
        self.queued.notify_all();
        for _ in 0..start {
            let pool = Arc::clone(self);
            (self.spawn)(Box::new(move || pool.serve()));
        }
    }

    /// A copier: runs queued tasks until the pool is closed.
    fn serve(&self) {
        let mut state = lock(&self.state);
        loop {
            if let Some(task) = state.queue.pop_front() {
                state.idle -= 1;
                drop(state);
                task();
                state = lock(&self.state);
                state.idle += 1;
            } else if state.closed {
                return;
            } else {
                state = wait(&self.queued, state);
            }
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.queued.notify_all();
    }
}

impl<'p> Open<'p> {
    /// The pool, for one of the run's threads.
    pub fn share(&self) -> Arc<Pool<'p>> {
        Arc::clone(&self.0)
    }
}

impl<'p> Deref for Open<'p> {
    type Target = Arc<Pool<'p>>;

    fn deref(&self) -> &Arc<Pool<'p>> {
        &self.0
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The tasks of one call of [`Pool::all`].
struct Batch<E> {
    state: Mutex<Outcome<E>>,
    /// Wakes the caller when the last task ends.
    ended: Condvar,
}

struct Outcome<E> {
    /// Tasks not ended yet.
    left: usize,
    /// The first failure.
    failed: Option<E>,
    /// The first panic.
    panicked: Option<Box<dyn Any + Send>>,
}

impl<E> Batch<E> {
    /// Runs `task` unless another of the batch failed, and notes how it
    /// ended.
    fn run(&self, task: impl FnOnce() -> Result<(), E>) {
        let stopped = {
            let state = lock(&self.state);
            state.failed.is_some() || state.panicked.is_some()
        };
        let ended = if stopped {
            Ok(Ok(()))
        } else {
            panic::catch_unwind(AssertUnwindSafe(task))
        };
        let mut state = lock(&self.state);
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                state.failed.get_or_insert(e);
            }
            Err(p) => {
                state.panicked.get_or_insert(p);
            }
        }
        state.left -= 1;
        if state.left == 0 {
            self.ended.notify_all();
        }
    }

    /// Waits for every task to end; a panic of one is passed on.
    fn wait(&self) -> Result<(), E> {
        let mut state = lock(&self.state);
        while state.left > 0 {
            state = wait(&self.ended, state);
        }
        if let Some(p) = state.panicked.take() {
            drop(state);
            panic::resume_unwind(p);
        }
        match state.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    #[test]
    fn every_task_runs_on_at_most_size_copiers_started_as_tasks_come() {
        let ran = AtomicUsize::new(0);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let threads = Mutex::new(HashSet::new());
        let before = thread::scope(|s| {
            let pool = Pool::open(s, 3);
            let before = lock(&pool.state).started;
            for _ in 0..4 {
                let tasks = (0..10).map(|_| {
                    || {
                        lock(&threads).insert(thread::current().id());
                        most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(5));
                        now.fetch_sub(1, Ordering::SeqCst);
                        ran.fetch_add(1, Ordering::SeqCst);
                        Ok::<(), ()>(())
                    }
                });
                assert_eq!(pool.all(tasks), Ok(()));
            }
            before
        });
        assert_eq!(before, 0, "no copier before the first task");
        assert_eq!(ran.into_inner(), 40);
        assert_eq!(most.into_inner(), 3, "at most 3 at once, and 3 then");
        let threads = threads.into_inner().unwrap();
        assert_eq!(threads.len(), 3, "the same 3 copiers for every batch");
        assert!(!threads.contains(&thread::current().id()));
    }

    #[test]
    fn the_first_failure_keeps_the_rest_of_its_batch_from_starting() {
        let ran = AtomicUsize::new(0);
        let other = AtomicUsize::new(0);
        thread::scope(|s| {
            let pool = Pool::open(s, 1);
            let tasks = (0..10).map(|i| {
                let ran = &ran;
                move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    if i >= 2 {
                        Err(format!("task {i}"))
                    } else {
                        Ok(())
                    }
                }
            });
            assert_eq!(pool.all(tasks), Err("task 2".to_string()));
            let next = (0..3).map(|_| {
                || {
                    other.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            });
            assert_eq!(pool.all(next), Ok(()), "a failure stops its own batch only");
        });
        assert_eq!(ran.into_inner(), 3);
        assert_eq!(other.into_inner(), 3);
    }

    #[test]
    fn a_stop_request_seen_by_the_running_tasks_ends_the_batch_and_closing_ends_the_copiers() {
        let stop = AtomicBool::new(false);
        let started = AtomicUsize::new(0);
        thread::scope(|s| {
            let pool = Pool::open(s, 2);
            let tasks = (0..20).map(|_| {
                || {
                    if started.fetch_add(1, Ordering::SeqCst) == 3 {
                        stop.store(true, Ordering::SeqCst);
                    }
                    thread::sleep(Duration::from_millis(5));
                    if stop.load(Ordering::SeqCst) {
                        Err("stopped")
                    } else {
                        Ok(())
                    }
                }
            });
            assert_eq!(pool.all(tasks), Err("stopped"));
        });
        let started = started.into_inner();
        assert!((4..=6).contains(&started), "{started} of 20 started");
    }

    #[test]
    fn a_panic_in_a_task_reaches_the_caller_and_the_copier_lives_on() {
        thread::scope(|s| {
            let pool = Pool::open(s, 1);
            let panicked = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.all([|| -> Result<(), ()> { panic!("in a task") }])
            }));
            assert!(panicked.is_err());
            assert_eq!(pool.all([|| Ok::<(), ()>(())]), Ok(()));
            assert_eq!(lock(&pool.state).started, 1);
        });
    }
}
