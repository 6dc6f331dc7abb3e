//! One run per registry at a time, across processes: a run holds an
//! exclusive `flock(2)` on `<stateDir>/<registry>.lock` from before it reads
//! the state file until after it last writes it. The kernel releases the
//! lock when the holder's file is closed or the process dies, so a crash
//! never leaves a stale lock. The holder writes who it is (PID, command,
//! since when) into the file, so that whoever finds the lock taken can say
//! who has it. What to do then (wait, skip, refuse) is the caller's business.
//! The directory's own problems (not a directory, a symlink to nothing, not
//! writable) are told here too, for the lock and the state files beside it.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Local;
use serde::{Deserialize, Serialize};

use crate::display::rfc3339;

/// How often a waiter looks whether the lock came free.
const POLL: Duration = Duration::from_millis(250);
/// How long the lock must stay taken before a waiter is told who holds it:
/// someone only looking (see [`holder`]) holds it for a moment.
const NOTICE_AFTER: Duration = Duration::from_secs(1);
/// The longest command line a holder records.
const MAX_COMMAND: usize = 200;

/// Who holds a registry's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Its process ID.
    pub pid: u32,
    /// Its command line, as `ps` shows it.
    pub command: String,
    /// When it took the lock (RFC 3339).
    pub since: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pid == 0 {
            return write!(f, "another process (it has not said who it is yet)");
        }
        write!(
            f,
            "PID {} ({}), running since {}",
            self.pid, self.command, self.since
        )
    }
}

/// A registry's lock, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum Refused {
    /// Another process holds it.
    Held(Holder),
    /// The lock file cannot be used: the state directory is not one, or
    /// not writable. The text says why, in the operator's terms.
    Unusable(String),
}

/// The lock file of `hostname` in `dir`.
pub fn path(dir: &Path, hostname: &str) -> PathBuf {
    dir.join(format!("{}.lock", file_stem(hostname)))
}

/// Takes `hostname`'s lock in `dir` if it is free.
pub fn try_lock(dir: &Path, hostname: &str) -> Result<RunLock, Refused> {
    let path = path(dir, hostname);
    let mut file = open(dir, &path)?;
    if !flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
        return Err(Refused::Held(read_holder(&mut file)));
    }
    let me = Holder {
        pid: std::process::id(),
        command: own_command(),
        since: rfc3339(&Local::now()),
    };
    let text = serde_json::to_string(&me).unwrap_or_default();
    let written = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(text.as_bytes()));
    if let Err(e) = written {
        return Err(Refused::Unusable(format!(
            "cannot write {}: {e}",
            path.display()
        )));
    }
    Ok(RunLock { _file: file })
}

/// Takes `hostname`'s lock, waiting up to `wait` for its holder to let go.
/// `waiting` is told the holder once, when the lock stays taken for a
/// moment; `stop` ends the wait early (with the holder as the refusal).
pub fn lock(
    dir: &Path,
    hostname: &str,
    wait: Duration,
    waiting: &mut dyn FnMut(&Holder),
    stop: &dyn Fn() -> bool,
) -> Result<RunLock, Refused> {
    let first = Instant::now();
    let until = first.checked_add(wait);
    let mut told = false;
    loop {
        let holder = match try_lock(dir, hostname) {
            Err(Refused::Held(holder)) => holder,
            other => return other,
        };
        let left = until.map_or(POLL, |u| u.saturating_duration_since(Instant::now()));
        if left.is_zero() || stop() {
            return Err(Refused::Held(holder));
        }
        if !told && first.elapsed() >= NOTICE_AFTER {
            waiting(&holder);
            told = true;
        }
        thread::sleep(left.min(POLL));
    }
}

/// Who holds `hostname`'s lock now, if another process does. Looking takes
/// the lock for a moment when it is free, as a shared lock, which only
/// another looker may share.
pub fn holder(dir: &Path, hostname: &str) -> Option<Holder> {
    let mut file = File::open(path(dir, hostname)).ok()?;
    match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
        Ok(true) => None,
        Ok(false) => {
            let holder = read_holder(&mut file);
            (holder.pid != std::process::id()).then_some(holder)
        }
        Err(_) => None,
    }
}

/// Opens (creating) the lock file, with the state directory's problem in
/// plain words when that fails.
fn open(dir: &Path, path: &Path) -> Result<File, Refused> {
    usable_dir(dir).map_err(Refused::Unusable)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Refused::Unusable(format!("cannot open {}: {e}", path.display())))
}

/// Reads the holder a lock file names. A holder that has just taken the
/// lock may not have written itself yet, and one that is only looking never
/// does (the file then names a process that is gone): either is given a
/// moment, then told as unknown.
fn read_holder(file: &mut File) -> Holder {
    for _ in 0..10 {
        let mut text = String::new();
        let read = file.rewind().and_then(|_| file.read_to_string(&mut text));
        let holder = read
            .ok()
            .and_then(|_| serde_json::from_str::<Holder>(&text).ok())
            .filter(|h| Path::new(&format!("/proc/{}", h.pid)).exists());
        if let Some(holder) = holder {
            return holder;
        }
        thread::sleep(Duration::from_millis(20));
    }
    Holder {
        pid: 0,
        command: String::new(),
        since: String::new(),
    }
}

/// `flock(2)` with `operation`; false when it would block.
#[allow(unsafe_code)]
fn flock(file: &File, operation: libc::c_int) -> Result<bool, Refused> {
    loop {
        // SAFETY: flock(2) takes a file descriptor that `file` keeps open
        // for the duration of the call, and plain integer flags.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(Refused::Unusable(format!("cannot lock: {e}"))),
        }
    }
}

/// This process's command line, for others to read: its arguments never
/// hold a secret (picture-book takes none on its command line).
fn own_command() -> String {
    let raw = fs::read("/proc/self/cmdline").unwrap_or_default();
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let mut command = words.join(" ");
    if let Some(first) = words.first() {
        let name = Path::new(first)
            .file_name()
            .map_or_else(|| first.clone(), |n| n.to_string_lossy().into_owned());
        command = command.replacen(first.as_str(), &name, 1);
    }
    crate::error::excerpt(&command, MAX_COMMAND)
}

/// The name a registry's files in the state directory are given (before
/// `.json`, `.lock`): its hostname, with what is not a letter, a digit, a dot
/// or a dash as `_`.
pub fn file_stem(hostname: &str) -> String {
    hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What stands in the way of using `dir` as the state directory, in the
/// operator's terms, without creating anything: not a directory, inside
/// something that is not a directory, a symlink (or inside one) to what does
/// not exist (a disk not mounted yet), or not writable by this user.
pub fn dir_problem(dir: &Path) -> Option<String> {
    let mut at = dir;
    loop {
        if let Some(target) = dangling_link(at) {
            let link = format!(
                "{} is a symlink to {}, which does not exist",
                at.display(),
                target.display()
            );
            return Some(if at == dir {
                link
            } else {
                format!("{} cannot be created: {link}", dir.display())
            });
        }
        match fs::metadata(at) {
            Ok(m) if !m.is_dir() && at == dir => {
                return Some(format!("{} is not a directory", dir.display()));
            }
            Ok(m) if !m.is_dir() => {
                return Some(format!(
                    "{} cannot be created: {} is not a directory",
                    dir.display(),
                    at.display()
                ));
            }
            Ok(_) => {
                return writable(at).err().map(|e| {
                    if at == dir {
                        format!("{} is not writable: {e}", dir.display())
                    } else {
                        format!(
                            "{} cannot be created in {}: {e}",
                            dir.display(),
                            at.display()
                        )
                    }
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                at = match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
            }
            Err(e) => return Some(format!("{} cannot be used: {e}", dir.display())),
        }
    }
}

/// Where `path` points when it is a symlink to nothing.
fn dangling_link(path: &Path) -> Option<PathBuf> {
    let target = fs::read_link(path).ok()?;
    fs::metadata(path)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        .then_some(target)
}

/// Makes sure `dir` exists and can be written, or says why not.
pub fn usable_dir(dir: &Path) -> Result<(), String> {
    if let Some(problem) = dir_problem(dir) {
        return Err(problem);
    }
    fs::create_dir_all(dir).map_err(|e| format!("{} cannot be created: {e}", dir.display()))
}

/// Whether this user may create files in the directory `dir`.
#[allow(unsafe_code)]
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: access(2) reads the NUL-terminated path that `path` owns for
    // the duration of the call and writes no memory.
    let rc = unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pb-runlock-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn one_holder_at_a_time_and_it_says_who_it_is() {
        let d = dir("one");
        let held = try_lock(&d, "127.0.0.1:5000").unwrap();
        assert!(d.join("127.0.0.1_5000.lock").exists());
        match try_lock(&d, "127.0.0.1:5000") {
            Err(Refused::Held(h)) => {
                assert_eq!(h.pid, std::process::id());
                assert!(
                    h.to_string().starts_with(&format!("PID {} (", h.pid)),
                    "{h}"
                );
            }
            other => panic!("expected held, got {other:?}"),
        }
        assert!(
            holder(&d, "127.0.0.1:5000").is_none(),
            "this process is not another"
        );
        assert!(try_lock(&d, "other.example.com").is_ok());
        drop(held);
        assert!(try_lock(&d, "127.0.0.1:5000").is_ok());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_waiter_is_told_once_and_gives_up_at_its_bound() {
        let d = dir("wait");
        let _held = try_lock(&d, "r.example.com").unwrap();
        let mut told = 0;
        let started = Instant::now();
        let result = lock(
            &d,
            "r.example.com",
            Duration::from_millis(1700),
            &mut |_| told += 1,
            &|| false,
        );
        assert!(matches!(result, Err(Refused::Held(_))));
        assert_eq!(told, 1);
        assert!(started.elapsed() >= Duration::from_millis(1700));
        let stopped = Instant::now();
        let result = lock(
            &d,
            "r.example.com",
            Duration::from_secs(60),
            &mut |_| {},
            &|| true,
        );
        assert!(matches!(result, Err(Refused::Held(_))));
        assert!(stopped.elapsed() < Duration::from_secs(1));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_lock_let_go_is_taken_by_the_waiter() {
        let d = dir("handover");
        let held = try_lock(&d, "r.example.com").unwrap();
        let release = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let got = lock(
            &d,
            "r.example.com",
            Duration::from_secs(10),
            &mut |_| {},
            &|| false,
        );
        assert!(got.is_ok());
        release.join().unwrap();
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_state_dir_that_is_a_file_is_named_as_such() {
        let d = dir("file");
        fs::write(&d, "not a directory").unwrap();
        match try_lock(&d, "r.example.com") {
            Err(Refused::Unusable(why)) => {
                assert!(why.contains("is not a directory"), "{why}");
                assert!(why.contains(&d.display().to_string()), "{why}");
            }
            other => panic!("expected unusable, got {other:?}"),
        }
        fs::remove_file(d).unwrap();
    }
}
