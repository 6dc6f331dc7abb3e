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
    pruned(&mut out, rows);
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

/// Tags pruned since the daemon started.
fn pruned(out: &mut String, rows: &[Row]) {
    family(
        out,
        "pruned_total",
        "counter",
        "Tags removed at the target because the listing no longer names them.",
        rows.iter().map(|(s, _)| (reg(s), s.pruned as f64)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::views::LastRun;
    use crate::engine::Stats;

    fn status(hostname: &str) -> Status {
        Status {
            hostname: hostname.into(),
            repository: "mirror".into(),
            engine: "native",
            sync_period: Some("@daily".into()),
            schedule_overridden: false,
            paused: false,
            running: false,
            current_image: None,
            progress: None,
            bytes_sent: None,
            run_started: None,
            next_run: None,
            number_of_syncs: 0,
            skipped_runs: 0,
            locked_by: None,
            last_skipped: None,
            created: "2026-01-05T10:00:00+00:00".into(),
            last_run: None,
            pruned: 0,
        }
    }

    fn ran(hostname: &str) -> Status {
        Status {
            paused: true,
            skipped_runs: 3,
            next_run: Some("2026-01-05T11:00:00+00:00".into()),
            last_run: Some(LastRun {
                started: "2026-01-05T10:00:00+00:00".into(),
                finished: "2026-01-05T10:00:30+00:00".into(),
                seconds: 30.5,
                outcome: RunOutcome::Failed,
                mirrored: 4,
                up_to_date: 3,
                failed: 2,
                not_attempted: 1,
                error: None,
                warnings: Vec::new(),
                moved: Some(Stats {
                    bytes: 1024,
                    ..Stats::default()
                }),
                failed_images: Vec::new(),
                rate_limits: vec![Shown {
                    source: "docker.io".into(),
                    limit: 100,
                    remaining: 42,
                    window_seconds: 21600,
                }],
                selections: Vec::new(),
                pruned: Vec::new(),
                prune_skipped: Vec::new(),
            }),
            pruned: 7,
            ..status(hostname)
        }
    }

    fn lines(text: &str, family: &str) -> Vec<String> {
        let prefix = format!("picture_book_{family}{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_family_has_help_type_and_a_line_per_registry() {
        let text = text(&[
            (status("a.example.com"), [0; 4]),
            (ran("b:5000"), [5, 1, 0, 0]),
        ]);
        assert_eq!(
            lines(&text, "runs_total"),
            [
                "picture_book_runs_total{registry=\"a.example.com\",outcome=\"success\"} 0",
                "picture_book_runs_total{registry=\"a.example.com\",outcome=\"failed\"} 0",
                "picture_book_runs_total{registry=\"a.example.com\",outcome=\"stopped\"} 0",
                "picture_book_runs_total{registry=\"a.example.com\",outcome=\"crashed\"} 0",
                "picture_book_runs_total{registry=\"b:5000\",outcome=\"success\"} 5",
                "picture_book_runs_total{registry=\"b:5000\",outcome=\"failed\"} 1",
                "picture_book_runs_total{registry=\"b:5000\",outcome=\"stopped\"} 0",
                "picture_book_runs_total{registry=\"b:5000\",outcome=\"crashed\"} 0",
            ]
        );
        assert_eq!(
            lines(&text, "pruned_total"),
            [
                "picture_book_pruned_total{registry=\"a.example.com\"} 0",
                "picture_book_pruned_total{registry=\"b:5000\"} 7",
            ]
        );
        assert_eq!(
            lines(&text, "last_run_images"),
            [
                "picture_book_last_run_images{registry=\"a.example.com\",result=\"mirrored\"} 0",
                "picture_book_last_run_images{registry=\"a.example.com\",result=\"up_to_date\"} 0",
                "picture_book_last_run_images{registry=\"a.example.com\",result=\"failed\"} 0",
                "picture_book_last_run_images{registry=\"a.example.com\",result=\"not_attempted\"} 0",
                "picture_book_last_run_images{registry=\"b:5000\",result=\"mirrored\"} 4",
                "picture_book_last_run_images{registry=\"b:5000\",result=\"up_to_date\"} 3",
                "picture_book_last_run_images{registry=\"b:5000\",result=\"failed\"} 2",
                "picture_book_last_run_images{registry=\"b:5000\",result=\"not_attempted\"} 1",
            ]
        );
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE picture_book_"))
            .collect();
        assert_eq!(
            families,
            [
                "runs_total counter",
                "runs_skipped_total counter",
                "pruned_total counter",
                "last_run_images gauge",
                "last_run_start_timestamp_seconds gauge",
                "last_run_bytes gauge",
                "last_run_duration_seconds gauge",
                "next_run_timestamp_seconds gauge",
                "rate_limit_remaining gauge",
                "rate_limit_limit gauge",
                "paused gauge",
                "running gauge",
            ]
        );
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(helps, families.len());
    }

    #[test]
    fn a_registry_without_a_last_run_has_no_line_for_it() {
        let text = text(&[(status("a.example.com"), [0; 4]), (ran("b:5000"), [0; 4])]);
        for (family, line) in [
            (
                "last_run_start_timestamp_seconds",
                "{registry=\"b:5000\"} 1767607200",
            ),
            ("last_run_bytes", "{registry=\"b:5000\"} 1024"),
            ("last_run_duration_seconds", "{registry=\"b:5000\"} 30.5"),
            (
                "next_run_timestamp_seconds",
                "{registry=\"b:5000\"} 1767610800",
            ),
            (
                "rate_limit_remaining",
                "{registry=\"b:5000\",source=\"docker.io\"} 42",
            ),
            (
                "rate_limit_limit",
                "{registry=\"b:5000\",source=\"docker.io\"} 100",
            ),
        ] {
            assert_eq!(
                lines(&text, family),
                [format!("picture_book_{family}{line}")],
                "{family}"
            );
        }
        assert_eq!(
            lines(&text, "paused"),
            [
                "picture_book_paused{registry=\"a.example.com\"} 0",
                "picture_book_paused{registry=\"b:5000\"} 1",
            ]
        );
        assert_eq!(
            lines(&text, "runs_skipped_total"),
            [
                "picture_book_runs_skipped_total{registry=\"a.example.com\"} 0",
                "picture_book_runs_skipped_total{registry=\"b:5000\"} 3",
            ]
        );
        assert_eq!(lines(&text, "running").len(), 2);
    }

    #[test]
    fn no_synchronizer_leaves_the_families_empty() {
        let text = text(&[]);
        assert_eq!(text.lines().count(), 24, "{text}");
        assert!(text.lines().all(|l| l.starts_with('#')));
    }
}
