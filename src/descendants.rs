//! Finding the processes a child left behind, also those that left its
//! process group (`setsid`, a daemon's double fork) and were re-parented
//! away from it: they are known by a mark in their environment, which every
//! descendant inherits unless it clears its environment, or by holding the
//! child's output pipes. Ending them is the spawner's business (`process`);
//! this module only finds them, by reading /proc, and signals them.

use std::fs;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that marks a child and its descendants.
pub const MARK_VARIABLE: &str = "PICTURE_BOOK_RUN";

/// What tells a child's descendants from other processes.
#[derive(Debug, Default)]
pub struct Marks {
    /// `MARK_VARIABLE=value`, as /proc/PID/environ holds it, when the child
    /// was marked.
    environment: Option<String>,
    /// Its output pipes as /proc/PID/fd shows them (`pipe:[INODE]`).
    pipes: Vec<String>,
}

impl Marks {
    /// A value for [`MARK_VARIABLE`] that no other child of any process has.
    pub fn fresh_value() -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Marks of a child whose environment holds [`MARK_VARIABLE`]=`value`.
    pub fn environment(value: &str) -> Marks {
        Marks {
            environment: Some(format!("{MARK_VARIABLE}={value}")),
            pipes: Vec::new(),
        }
    }

    /// Adds the pipe this process reads through `fd` (a child's output).
    pub fn pipe(&mut self, fd: RawFd) {
        if let Ok(link) = fs::read_link(format!("/proc/self/fd/{fd}")) {
            let link = link.to_string_lossy().into_owned();
            if link.starts_with("pipe:") {
                self.pipes.push(link);
            }
        }
    }

    /// True when the environment mark is in `environ` (NUL-separated).
    fn in_environment(&self, environ: &[u8]) -> bool {
        self.environment.as_ref().is_some_and(|mark| {
            environ
                .split(|b| *b == 0)
                .any(|entry| entry == mark.as_bytes())
        })
    }

    /// True when process `pid` holds one of the pipes to write into it (a
    /// process of ours forked but not yet started holds only the ends we
    /// read from, and is not taken for a descendant).
    fn holds_a_pipe(&self, pid: &str) -> bool {
        if self.pipes.is_empty() {
            return false;
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.flatten().any(|fd| {
            let ours = fs::read_link(fd.path())
                .is_ok_and(|link| self.pipes.iter().any(|p| link.as_os_str() == p.as_str()));
            ours && writes(pid, &fd.file_name().to_string_lossy())
        })
    }

    /// The processes other than this one that carry the environment mark or
    /// hold one of the pipes (those of other users only as far as this
    /// user may look at them).
    pub fn find(&self) -> Vec<u32> {
        let me = std::process::id();
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut found: Vec<u32> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let pid = name.parse::<u32>().ok().filter(|p| *p != me)?;
                let marked = fs::read(e.path().join("environ"))
                    .is_ok_and(|environ| self.in_environment(&environ));
                (marked || self.holds_a_pipe(&name)).then_some(pid)
            })
            .collect();
        found.sort_unstable();
        found
    }
}

/// True when descriptor `fd` of process `pid` is open for writing only, as
/// /proc/PID/fdinfo/FD's `flags` (octal) say.
fn writes(pid: &str, fd: &str) -> bool {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|flags| i32::from_str_radix(flags.trim(), 8).ok())
        .is_some_and(|flags| flags & libc::O_ACCMODE == libc::O_WRONLY)
}

/// Sends `signal` to each of `pids`.
pub fn signal_each(pids: &[u32], signal: libc::c_int) {
    for pid in pids {
        if let Ok(pid) = libc::pid_t::try_from(*pid) {
            send(pid, signal);
        }
    }
}

/// kill(2): `signal` to `pid` (a negative one addresses a process group).
#[allow(unsafe_code)]
pub fn send(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and has no memory effects.
    unsafe {
        libc::kill(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::process::{Command, Stdio};

    #[test]
    fn the_mark_is_matched_whole() {
        let marks = Marks::environment("12-3");
        assert!(marks.in_environment(b"A=1\0PICTURE_BOOK_RUN=12-3\0B=2\0"));
        assert!(!marks.in_environment(b"PICTURE_BOOK_RUN=12-34\0"));
        assert!(!marks.in_environment(b"XPICTURE_BOOK_RUN=12-3\0"));
        assert!(!Marks::default().in_environment(b"PICTURE_BOOK_RUN=12-3\0"));
        assert_ne!(Marks::fresh_value(), Marks::fresh_value());
    }

    #[test]
    fn a_process_that_left_its_group_is_found_by_its_mark_and_by_its_pipe() {
        let value = Marks::fresh_value();
        let mut child = Command::new("/bin/sh")
            .args(["-c", "setsid sleep 300 & echo $!"])
            .env(MARK_VARIABLE, &value)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut by_pipe = Marks::default();
        by_pipe.pipe(out.as_raw_fd());
        assert!(!by_pipe.holds_a_pipe("self"), "reading is not holding");
        let mut text = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut text).unwrap();
        child.wait().unwrap();
        let sleeper: u32 = text.trim().parse().unwrap();
        // The sleeper may still be between execs (sh's fork, setsid, sleep),
        // when its environment reads empty: look once it is `sleep`.
        let comm = format!("/proc/{sleeper}/comm");
        let asleep = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep")
        });
        assert!(asleep, "{sleeper} never ran sleep");
        assert_eq!(Marks::environment(&value).find(), [sleeper]);
        assert_eq!(by_pipe.find(), [sleeper]);
        signal_each(&[sleeper], libc::SIGKILL);
        let gone = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            Marks::environment(&value).find().is_empty()
        });
        assert!(gone);
    }
}
