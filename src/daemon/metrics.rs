//! The Prometheus text exposition of `/metrics`: one family after another,
//! each with its `# HELP` and `# TYPE` lines and a line per registry (and
//! per outcome, result or rate-limited source). It reads the synchronizers'
//! statuses (`views`); gathering them is `Daemon`'s business.

use std::fmt::Write as _;

use chrono::DateTime;

use crate::daemon::views::Status;
use crate::registry::limits::Shown;
use crate::run::report::RunOutcome;

/// A synchronizer's status and its finished runs by outcome.
pub type Row = (Status, [u64; RunOutcome::ALL.len()]);

/// The exposition of `rows`, in the order of the rows.
pub fn text(rows: &[Row]) -> String {
    let mut out = String::new();
    runs(&mut out, rows);
    last_run(&mut out, rows);
    next_run(&mut out, rows);
    rate_limits(&mut out, rows);
    flags(&mut out, rows);
    out
}

/// Writes one metric family: its help, its type and a line per row.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    rows: impl Iterator<Item = (String, f64)>,
) {
    let _ = writeln!(out, "# HELP picture_book_{name} {help}");
    let _ = writeln!(out, "# TYPE picture_book_{name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "picture_book_{name}{{{labels}}} {value}");
    }
}

/// The `registry` label of `s`.
fn reg(s: &Status) -> String {
    format!("registry=\"{}\"", s.hostname)
}

/// A time in RFC 3339 as Unix time; 0 when it does not parse.
fn timestamp(t: &str) -> f64 {
    DateTime::parse_from_rfc3339(t).map_or(0.0, |t| t.timestamp() as f64)
}

/// Runs finished, by outcome, and due times skipped.
fn runs(out: &mut String, rows: &[Row]) {
    family(
        out,
        "runs_total",
        "counter",
        "Runs finished, by outcome.",
        rows.iter().flat_map(|(s, o)| {
            RunOutcome::ALL
                .iter()
                .zip(o.iter())
                .map(move |(outcome, n)| {
                    let name = outcome.name();
                    (format!("{},outcome=\"{name}\"", reg(s)), *n as f64)
                })
        }),
    );
    family(
        out,
        "runs_skipped_total",
        "counter",
        "Due times skipped because the previous run was still in progress.",
        rows.iter().map(|(s, _)| (reg(s), s.skipped_runs as f64)),
    );
}

/// The last run's images by result, start, bytes moved and duration.
fn last_run(out: &mut String, rows: &[Row]) {
    family(
        out,
        "last_run_images",
        "gauge",
        "Images of the last run, by result.",
        rows.iter().flat_map(|(s, _)| {
            let counts = s.last_run.as_ref().map_or([0; 4], |l| {
                [l.mirrored, l.up_to_date, l.failed, l.not_attempted]
            });
            ["mirrored", "up_to_date", "failed", "not_attempted"]
                .into_iter()
                .zip(counts)
                .map(move |(name, n)| (format!("{},result=\"{name}\"", reg(s)), n as f64))
        }),
    );
    family(
        out,
        "last_run_start_timestamp_seconds",
        "gauge",
        "When the last run started (Unix time).",
        rows.iter()
            .filter_map(|(s, _)| s.last_run.as_ref().map(|l| (reg(s), timestamp(&l.started)))),
    );
    family(
        out,
        "last_run_bytes",
        "gauge",
        "Bytes the native engine moved in the last run.",
        rows.iter().filter_map(|(s, _)| {
            let moved = s.last_run.as_ref()?.moved.as_ref()?;
            Some((reg(s), moved.bytes as f64))
        }),
    );
    family(
        out,
        "last_run_duration_seconds",
        "gauge",
        "How long the last run took.",
        rows.iter()
            .filter_map(|(s, _)| s.last_run.as_ref().map(|l| (reg(s), l.seconds))),
    );
}

fn next_run(out: &mut String, rows: &[Row]) {
    family(
        out,
        "next_run_timestamp_seconds",
        "gauge",
        "When the next run is due (Unix time).",
        rows.iter()
            .filter_map(|(s, _)| s.next_run.as_deref().map(|t| (reg(s), timestamp(t)))),
    );
}

/// What rate-limited sources said in the last runs.
fn rate_limits(out: &mut String, rows: &[Row]) {
    let limits = labelled_limits(rows);
    family(
        out,
        "rate_limit_remaining",
        "gauge",
        "Pulls a rate-limited source had left at the end of the last run.",
        limits
            .iter()
            .map(|(labels, l)| (labels.clone(), l.remaining as f64)),
    );
    family(
        out,
        "rate_limit_limit",
        "gauge",
        "Pulls a rate-limited source allows per window.",
        limits
            .iter()
            .map(|(labels, l)| (labels.clone(), l.limit as f64)),
    );
}

/// The pull limits the last runs saw, with their metric labels
/// (`registry="...",source="..."`).
fn labelled_limits(rows: &[Row]) -> Vec<(String, &Shown)> {
    rows.iter()
        .flat_map(|(s, _)| {
            let shown = s.last_run.as_ref().map(|l| l.rate_limits.as_slice());
            shown.unwrap_or_default().iter().map(move |l| {
                let labels = format!("registry=\"{}\",source=\"{}\"", s.hostname, l.source);
                (labels, l)
            })
        })
        .collect()
}

/// Paused and running, as 1 or 0.
fn flags(out: &mut String, rows: &[Row]) {
    let one = |b: bool| if b { 1.0 } else { 0.0 };
    family(
        out,
        "paused",
        "gauge",
        "1 when the synchronizer is paused.",
        rows.iter().map(|(s, _)| (reg(s), one(s.paused))),
    );
    family(
        out,
        "running",
        "gauge",
        "1 while a run is in progress.",
        rows.iter().map(|(s, _)| (reg(s), one(s.running))),
    );
}
