//! What the operator sees on stderr while images move: the log, and the
//! progress of each image, either as spinner lines on a terminal, as plain
//! log lines, or as docker's own output prefixed with its image. All of it
//! goes through one console lock, so lines from different images never mix
//! and log lines never tear a spinner. Results (summaries, JSON) go to
//! stdout and are not this module's business.

use chrono::{DateTime, Local, SecondsFormat};
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

use crate::mutex::lock;

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayMode {
    /// One spinner line per image on a terminal; plain log lines otherwise.
    Spinner,
    /// Docker's own progress output, each line prefixed with its image.
    Verbose,
}

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK: Duration = Duration::from_millis(100);

/// How much is logged: `-q` gives Quiet, each `-v` one step more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Warnings and errors only; no progress.
    Quiet,
    /// Progress and what happened.
    Normal,
    /// Also each command run (`-v`).
    Debug,
    /// Everything (`-vv`).
    Trace,
}

/// Sets up the logger: stderr, through the console lock, for this crate only.
/// A daemon's lines carry the time, unless journald (which adds its own)
/// is reading them.
pub fn init_logging(verbosity: Verbosity, daemon: bool) {
    let timestamps = daemon && std::env::var_os("JOURNAL_STREAM").is_none();
    let level = match verbosity {
        Verbosity::Quiet => LevelFilter::Warn,
        Verbosity::Normal => LevelFilter::Info,
        Verbosity::Debug => LevelFilter::Debug,
        Verbosity::Trace => LevelFilter::Trace,
    };
    let mut builder = ConfigBuilder::new();
    if timestamps {
        builder.set_time_format_rfc3339();
        let _ = builder.set_time_offset_to_local();
    }
    let config = builder
        .set_time_level(if timestamps {
            LevelFilter::Error
        } else {
            LevelFilter::Off
        })
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_allow_str("picture_book")
        .build();
    let _ = WriteLogger::init(level, config, LineWriter::default());
}

/// The shared stderr: log lines and finished progress lines are printed
/// above the spinner lines of the images in flight.
struct Console {
    state: Mutex<ConsoleState>,
    tty: bool,
}

#[derive(Default)]
struct ConsoleState {
    /// Images in flight: id, text, since when.
    active: Vec<(usize, String, Instant)>,
    /// How many spinner lines are on screen now.
    drawn: usize,
    ticker: bool,
}

fn console() -> &'static Console {
    static CONSOLE: OnceLock<Console> = OnceLock::new();
    CONSOLE.get_or_init(|| Console {
        state: Mutex::new(ConsoleState::default()),
        tty: io::stderr().is_terminal(),
    })
}

impl Console {
    fn lock(&self) -> MutexGuard<'_, ConsoleState> {
        lock(&self.state)
    }

    /// Prints `text` (whole lines) above the spinner lines.
    fn print(&self, text: &str) {
        let mut state = self.lock();
        let mut err = io::stderr().lock();
        clear(&mut err, &mut state);
        let _ = err.write_all(text.as_bytes());
        draw(&mut err, &mut state);
        let _ = err.flush();
    }
}

fn clear(out: &mut impl Write, state: &mut ConsoleState) {
    if state.drawn > 0 {
        let _ = write!(out, "\x1b[{}F\x1b[J", state.drawn);
        state.drawn = 0;
    }
}

fn draw(out: &mut impl Write, state: &mut ConsoleState) {
    let width = terminal_width().saturating_sub(1).max(20);
    for (_, text, since) in &state.active {
        let frame =
            FRAMES[(since.elapsed().as_millis() / TICK.as_millis()) as usize % FRAMES.len()];
        let line: String = format!("{frame} {text}").chars().take(width).collect();
        let _ = writeln!(out, "{line}");
    }
    state.drawn = state.active.len();
}

/// The terminal's width in columns, or 80 when it cannot be told.
#[allow(unsafe_code)]
fn terminal_width() -> usize {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points at a live, properly aligned local of that type.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        size.ws_col as usize
    } else {
        80
    }
}

/// The logger's writer: collects bytes into lines and prints each whole
/// line through the console.
#[derive(Default)]
struct LineWriter {
    pending: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            let lines: Vec<u8> = self.pending.drain(..=end).collect();
            console().print(&String::from_utf8_lossy(&lines));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What an image is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `docker pull`.
    Pulling,
    /// `docker push`.
    Pushing,
    /// The native engine's copy.
    Copying,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::Pulling => "pulling",
            Step::Pushing => "pushing",
            Step::Copying => "copying",
        }
    }
}

/// How often the bytes of a copy are shown: on the spinner line, and as a
/// log line when there is no spinner.
const BYTES_EVERY: Duration = Duration::from_millis(200);
const BYTES_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// Bytes moved of an image so far, and when they were last shown.
#[derive(Debug)]
struct Bytes {
    done: u64,
    total: u64,
    shown: Option<Instant>,
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One image's place in a run, for progress lines: `registry [n/m] source`.
#[derive(Debug)]
pub struct Item {
    id: usize,
    label: String,
    source: String,
    target: String,
    /// What the line of a finished image says it was (`mirrored`).
    done: &'static str,
    started: Instant,
    bytes: Mutex<Bytes>,
}

impl Item {
    /// Item `n` of `of` of a run for `registry`, mirroring `source` to `target`.
    pub fn new(registry: &str, n: usize, of: usize, source: &str, target: &str) -> Item {
        static IDS: AtomicUsize = AtomicUsize::new(0);
        Item {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            label: format!("{registry} [{n}/{of}]"),
            source: source.to_string(),
            target: target.to_string(),
            done: "mirrored",
            started: Instant::now(),
            bytes: Mutex::new(Bytes {
                done: 0,
                total: 0,
                shown: None,
            }),
        }
    }

    /// With what the line of the finished image says it was (`exported`).
    pub fn done_as(self, done: &'static str) -> Item {
        Item { done, ..self }
    }

    /// `copying SOURCE 12.3 MiB of 40.0 MiB (5.1 MiB/s)`, when it is time to
    /// show it again (every `every`), after adding `n` bytes done of `total`.
    fn bytes_line(&self, n: u64, total: u64, every: Duration) -> Option<String> {
        let mut b = lock(&self.bytes);
        b.done += n;
        b.total = total;
        if b.shown.is_some_and(|t| t.elapsed() < every) {
            return None;
        }
        b.shown = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        Some(format!(
            "{} copying {} {} of {} ({}/s)",
            self.label,
            self.source,
            human_bytes(b.done.min(b.total)),
            human_bytes(b.total),
            human_bytes((b.done as f64 / secs) as u64)
        ))
    }

    /// `registry [n/m] source`, as log lines name the image.
    pub fn name(&self) -> String {
        format!("{} {}", self.label, self.source)
    }
}

/// How progress is shown, chosen once per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Spinner lines on a terminal.
    Spinner,
    /// Log lines.
    Plain,
    /// Log lines plus docker's own output, prefixed with the image.
    Verbose,
    /// Nothing but failures.
    Quiet,
}

impl Progress {
    /// Chooses the display for `mode`: the spinner only on a terminal.
    pub fn new(mode: DisplayMode, verbosity: Verbosity) -> Progress {
        match (mode, verbosity) {
            (_, Verbosity::Quiet) => Progress::Quiet,
            (DisplayMode::Verbose, _) => Progress::Verbose,
            (DisplayMode::Spinner, Verbosity::Normal) if console().tty => Progress::Spinner,
            (DisplayMode::Spinner, _) => Progress::Plain,
        }
    }

    /// The image is now at `step`.
    pub fn step(&self, item: &Item, step: Step) {
        match self {
            Progress::Spinner => {
                let text = format!(
                    "{} {} {}",
                    item.label,
                    step.verb(),
                    match step {
                        Step::Pulling | Step::Copying => &item.source,
                        Step::Pushing => &item.target,
                    }
                );
                let mut state = console().lock();
                match state.active.iter_mut().find(|(id, _, _)| *id == item.id) {
                    Some(entry) => entry.1 = text,
                    None => state.active.push((item.id, text, item.started)),
                }
                redraw(&mut state);
                if !state.ticker {
                    state.ticker = true;
                    thread::spawn(tick);
                }
            }
            Progress::Plain | Progress::Verbose => {
                let name = match step {
                    Step::Pulling | Step::Copying => &item.source,
                    Step::Pushing => &item.target,
                };
                log::info!("{} {} {name}", item.label, step.verb());
            }
            Progress::Quiet => {}
        }
    }

    /// `n` more bytes of the image's `total` are done.
    pub fn advance(&self, item: &Item, n: u64, total: u64) {
        match self {
            Progress::Spinner => {
                if let Some(text) = item.bytes_line(n, total, BYTES_EVERY) {
                    let mut state = console().lock();
                    if let Some(entry) = state.active.iter_mut().find(|(id, _, _)| *id == item.id) {
                        entry.1 = text;
                    }
                }
            }
            Progress::Plain | Progress::Verbose => {
                if let Some(text) = item.bytes_line(n, total, BYTES_LOGGED_EVERY) {
                    if n > 0 {
                        log::info!("{text}");
                    }
                }
            }
            Progress::Quiet => {}
        }
    }

    /// The image's copy starts, of `total` bytes.
    pub fn bytes(&self, item: &Item, done: u64, total: u64) {
        lock(&item.bytes).done = done;
        self.advance(item, 0, total);
    }

    /// A line of docker's output for the image.
    pub fn output(&self, item: &Item, line: &str) {
        if *self == Progress::Verbose && !line.trim().is_empty() {
            console().print(&format!("[{}] {line}\n", item.source));
        }
    }

    /// The image is done: at the target, or failed with `error`.
    pub fn finished(&self, item: &Item, error: Option<&str>) {
        let secs = item.started.elapsed().as_secs_f64();
        match (self, error) {
            (Progress::Spinner, _) => {
                let c = console();
                c.lock().active.retain(|(id, _, _)| *id != item.id);
                let line = match error {
                    None => format!(
                        "✔ {} {} → {} ({secs:.1}s)\n",
                        item.label, item.source, item.target
                    ),
                    Some(e) => format!("✘ {} {}: {e}\n", item.label, item.source),
                };
                c.print(&line);
            }
            (_, None) if *self != Progress::Quiet => {
                log::info!(
                    "{} {} {} → {} ({secs:.1}s)",
                    item.label,
                    item.done,
                    item.source,
                    item.target
                )
            }
            (_, None) => {}
            (_, Some(e)) => log::error!("{} {}: {e}", item.label, item.source),
        }
    }
}

/// Redraws the spinner lines while there are any.
fn tick() {
    let c = console();
    loop {
        thread::sleep(TICK);
        let mut state = c.lock();
        if !state.active.is_empty() || state.drawn > 0 {
            redraw(&mut state);
        }
    }
}

/// Replaces the spinner lines on screen with the current ones.
fn redraw(state: &mut ConsoleState) {
    let mut err = io::stderr().lock();
    clear(&mut err, state);
    draw(&mut err, state);
    let _ = err.flush();
}

/// Formats a time as every report and answer does: RFC 3339, local time,
/// whole seconds.
pub fn rfc3339(t: &DateTime<Local>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redraw_moves_up_over_what_was_drawn() {
        let mut state = ConsoleState {
            active: vec![
                (1, "[1/2] pulling a".into(), Instant::now()),
                (2, "[2/2] pushing b".into(), Instant::now()),
            ],
            ..ConsoleState::default()
        };
        let mut out = Vec::new();
        draw(&mut out, &mut state);
        clear(&mut out, &mut state);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("⠋ [1/2] pulling a\n⠋ [2/2] pushing b\n"),
            "{text:?}"
        );
        assert!(text.ends_with("\x1b[2F\x1b[J"), "{text:?}");
        assert_eq!(state.drawn, 0);
    }

    #[test]
    fn quiet_wins_and_verbose_is_kept() {
        assert_eq!(
            Progress::new(DisplayMode::Verbose, Verbosity::Quiet),
            Progress::Quiet
        );
        assert_eq!(
            Progress::new(DisplayMode::Verbose, Verbosity::Normal),
            Progress::Verbose
        );
        assert_eq!(
            Progress::new(DisplayMode::Spinner, Verbosity::Debug),
            Progress::Plain
        );
    }
}
