//! The result of a run: per registry, each listed image with its source,
//! target, outcome and error. It is what `--json` prints, what the human
//! summary is made from, and what decides the exit status.

use std::fmt::Write as _;

use chrono::{DateTime, Local};
use serde::Serialize;

use crate::display::{human_bytes, rfc3339};
use crate::engine::{Plan, Stats};
use crate::exit::ExitCode;
use crate::listing::entries::{Selection, entry_key};
use crate::listing::script::entry_name;

/// What became of one listed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Pulled, tagged and pushed: it is at the target.
    Mirrored,
    /// It is not at the target; `error` says why.
    Failed,
    /// Not tried, because the run stopped first (`error` of the registry says why).
    NotAttempted,
    /// `--dry-run`: it would be mirrored.
    Planned,
    /// The target already holds the source's image; nothing was moved.
    UpToDate,
}

/// How a registry's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RunOutcome {
    /// Every listed image is at the target.
    Success,
    /// Something failed: an image, the syncer script, docker.
    Failed,
    /// Stopped early on request (pause, shutdown, interrupt).
    Stopped,
    /// Ended by an internal error (a panic), caught so that only this run
    /// is lost.
    Crashed,
}

impl RunOutcome {
    /// Every outcome, in the order of their numbers.
    pub const ALL: [RunOutcome; 4] = [
        RunOutcome::Success,
        RunOutcome::Failed,
        RunOutcome::Stopped,
        RunOutcome::Crashed,
    ];

    /// The name the reports use.
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Failed => "failed",
            RunOutcome::Stopped => "stopped",
            RunOutcome::Crashed => "crashed",
        }
    }
}

/// One listed image.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReport {
    /// Its line in the syncer script's output; for an image an `images`
    /// entry chose, the entry's line in the configuration file.
    pub line: usize,
    /// The `images` entry that chose it (`images[i]`); none for a line of
    /// the syncer script.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "some_entry")]
    pub entry: Option<usize>,
    /// The source as listed.
    pub source: String,
    /// Where it goes; absent for a line that is not an image reference.
    pub target: Option<String>,
    /// What became of it.
    pub outcome: Outcome,
    /// Why it was (or would be) mirrored, or why it is up to date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many times docker was set to move it (1 when the first attempt
    /// did); absent when it was not moved.
    #[serde(skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// What the native engine moved: bytes, and blobs copied, mounted and
    /// already present; the platforms copied.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub moved: Option<Stats>,
    /// What a dry run of the native engine would move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanReport>,
}

/// What a dry run of the native engine tells of an image to mirror.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    /// The platforms that would be copied.
    pub platforms: Vec<String>,
    /// Whether a `platforms` filter makes a new index, with a digest of its
    /// own.
    pub new_index: bool,
    /// Blobs missing at the target.
    pub missing_blobs: usize,
    /// Their bytes.
    pub missing_bytes: u64,
    /// With `referrers`: what refers to the image and would travel with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<String>,
}

/// An entry index as its key, `images[i]`.
fn some_entry<S: serde::Serializer>(entry: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
    match entry {
        Some(i) => entry_key(i, s),
        None => s.serialize_none(),
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ImageReport {
    /// The image on `line`, listed as `source`, going to `target`.
    pub fn new(
        line: usize,
        source: String,
        target: Option<String>,
        outcome: Outcome,
    ) -> ImageReport {
        ImageReport {
            line,
            entry: None,
            source,
            target,
            outcome,
            reason: None,
            error: None,
            attempts: 0,
            moved: None,
            plan: None,
        }
    }

    /// With what the engine counted while moving it, when it `counts`.
    pub fn moved(mut self, counts: bool, stats: Stats) -> ImageReport {
        if counts {
            self.moved = Some(stats);
        }
        self
    }

    /// With what a dry run would move.
    pub fn plan(mut self, plan: Plan) -> ImageReport {
        self.plan = Some(PlanReport {
            platforms: plan.platforms,
            new_index: plan.filtered,
            missing_blobs: plan.missing_blobs,
            missing_bytes: plan.missing_bytes,
            referrers: plan.referrers,
        });
        self
    }

    /// With the number of attempts it took.
    pub fn attempts(mut self, attempts: u32) -> ImageReport {
        self.attempts = attempts;
        self
    }

    /// With the reason for the outcome.
    pub fn reason(mut self, reason: impl Into<String>) -> ImageReport {
        self.reason = Some(reason.into());
        self
    }

    /// As chosen by the `images` entry `entry` (none: a script line).
    pub fn entry(mut self, entry: Option<usize>) -> ImageReport {
        self.entry = entry;
        self
    }

    /// Where it was listed: `line 3`, `entry 3` (of a layout), or
    /// `images[1] (line 12 of the configuration)`.
    fn origin(&self, line_word: &str) -> String {
        match self.entry {
            Some(i) => entry_name(i, self.line),
            None => format!("{line_word} {}", self.line),
        }
    }

    /// The order reports are told in: the script's lines, then each
    /// entry's images.
    pub fn order(&self) -> (usize, usize) {
        (self.entry.map_or(0, |i| i + 1), self.line)
    }

    /// With the error that made it fail.
    pub fn error(mut self, error: impl Into<String>) -> ImageReport {
        self.error = Some(error.into());
        self
    }
}

/// One registry's run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryReport {
    /// The target registry.
    pub hostname: String,
    /// The engine that moved its images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<&'static str>,
    /// When the run started (RFC 3339, local time).
    pub started: String,
    /// When it ended.
    pub finished: String,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// How it ended.
    pub outcome: RunOutcome,
    /// What stopped the run as a whole (syncer script, docker daemon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What went wrong without failing an image, each said once (a state
    /// file that cannot be written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Images now at the target.
    pub mirrored: usize,
    /// Images that were up to date already.
    pub up_to_date: usize,
    /// Images that failed.
    pub failed: usize,
    /// Images not tried because the run stopped first.
    pub not_attempted: usize,
    /// What the native engine moved, over all images.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub moved: Option<Stats>,
    /// What rate-limited sources said of their pull limits at the end of
    /// the run (see `registry::limits`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<crate::registry::limits::Shown>,
    /// What each `images` entry with rules chose, or why it could not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selections: Vec<Selection>,
    /// Every listed line, in order.
    pub images: Vec<ImageReport>,
}

impl RegistryReport {
    /// A report for a run of `hostname` that starts now.
    pub fn start(hostname: &str, started: DateTime<Local>) -> RegistryReport {
        RegistryReport {
            hostname: hostname.to_string(),
            engine: None,
            started: rfc3339(&started),
            finished: String::new(),
            seconds: 0.0,
            outcome: RunOutcome::Success,
            error: None,
            warnings: Vec::new(),
            mirrored: 0,
            up_to_date: 0,
            failed: 0,
            not_attempted: 0,
            moved: None,
            rate_limits: Vec::new(),
            selections: Vec::new(),
            images: Vec::new(),
        }
    }

    /// The report of a run of `hostname` started at `started` that ended
    /// before any image, with `error` and as `outcome` (`Failed` or `Crashed`).
    pub fn ended_early(
        hostname: &str,
        started: DateTime<Local>,
        error: String,
        outcome: RunOutcome,
    ) -> RegistryReport {
        let mut report = RegistryReport::start(hostname, started);
        report.error = Some(error);
        report.outcome = outcome;
        report.finish(started)
    }

    /// Closes the report: counts the outcomes and records the duration.
    pub fn finish(mut self, started: DateTime<Local>) -> RegistryReport {
        let count = |o: Outcome| self.images.iter().filter(|i| i.outcome == o).count();
        self.mirrored = count(Outcome::Mirrored);
        self.up_to_date = count(Outcome::UpToDate);
        self.failed = count(Outcome::Failed);
        self.not_attempted = count(Outcome::NotAttempted);
        let mut moved: Option<Stats> = None;
        for stats in self.images.iter().filter_map(|i| i.moved.as_ref()) {
            moved.get_or_insert_with(Stats::default).add(stats);
        }
        self.moved = moved.or(self.moved.take());
        let now = Local::now();
        self.finished = rfc3339(&now);
        let elapsed = (now - started).num_milliseconds().max(0) as f64 / 1000.0;
        self.seconds = (elapsed * 10.0).round() / 10.0;
        if !matches!(self.outcome, RunOutcome::Stopped | RunOutcome::Crashed)
            && (self.error.is_some() || self.failed + self.not_attempted > 0)
        {
            self.outcome = RunOutcome::Failed;
        }
        self
    }

    /// True when every listed image is at the target (or, in a dry run,
    /// would be tried) and nothing stopped the run.
    pub fn is_complete(&self) -> bool {
        self.error.is_none() && self.failed == 0 && self.not_attempted == 0
    }
}

/// The whole `load`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// True for `--dry-run`: nothing was pulled or pushed.
    pub dry_run: bool,
    /// One entry per registry, in the order run.
    pub registries: Vec<RegistryReport>,
    /// For `export`: the layout written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportReport>,
    /// For `load --from`: the layout read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The layout an `export` wrote.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    /// The directory or archive.
    pub path: String,
    /// Whether it is a tar archive.
    pub archive: bool,
    /// Bytes of blobs and manifests written (what was there already is
    /// not counted).
    pub bytes_written: u64,
    /// Why the layout could not be finished (its `index.json` written, the
    /// archive renamed into place); nothing of this export is then in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// The exit status this report calls for.
    pub fn exit_code(&self) -> ExitCode {
        let finished = self.export.as_ref().is_none_or(|e| e.error.is_none());
        if finished && self.registries.iter().all(RegistryReport::is_complete) {
            ExitCode::Success
        } else {
            ExitCode::Incomplete
        }
    }

    /// The human summary: a line per registry, then each failure with its
    /// reason (and, for a dry run, each planned image).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for r in &self.registries {
            let _ = write!(out, "{}: ", r.hostname);
            if r.error.is_some() && r.images.is_empty() {
                let _ = write!(out, "failed");
            } else if self.dry_run {
                self.planned_counts(r, &mut out);
            } else {
                self.moved_counts(r, &mut out);
            }
            let _ = writeln!(out, " ({:.1}s)", r.seconds);
            if let Some(e) = &r.error {
                let _ = writeln!(out, "  error: {e}");
            }
            for w in &r.warnings {
                let _ = writeln!(out, "  warning: {w}");
            }
            self.selections_summary(r, &mut out);
            for i in &r.images {
                self.image_summary(i, &mut out);
            }
        }
        self.layout_summary(&mut out);
        out
    }

    /// What the summary says the images were moved into, and where they
    /// are then.
    fn verb(&self) -> (&'static str, &'static str) {
        if self.export.is_some() {
            ("export", "in the layout")
        } else {
            ("mirror", "at the target")
        }
    }

    /// A dry run's counts for registry `r`.
    fn planned_counts(&self, r: &RegistryReport, out: &mut String) {
        let planned = r
            .images
            .iter()
            .filter(|i| i.outcome == Outcome::Planned)
            .count();
        let _ = write!(
            out,
            "{planned} to {}, {} up to date",
            self.verb().0,
            r.up_to_date
        );
        if r.failed > 0 {
            let _ = write!(out, ", {} failed", r.failed);
        }
        let _ = write!(out, " (dry run)");
    }

    /// A run's counts for registry `r`, with what the native engine moved.
    fn moved_counts(&self, r: &RegistryReport, out: &mut String) {
        let _ = write!(
            out,
            "{} {}ed, {} up to date, {} failed",
            r.mirrored,
            self.verb().0,
            r.up_to_date,
            r.failed
        );
        if r.not_attempted > 0 {
            let _ = write!(out, ", {} not attempted", r.not_attempted);
        }
        if let Some(m) = &r.moved {
            let _ = write!(
                out,
                "; {} moved ({} blobs copied, {} mounted, {} already there)",
                human_bytes(m.bytes),
                m.blobs_copied,
                m.blobs_mounted,
                m.blobs_present
            );
            if m.referrers > 0 {
                let _ = write!(out, "; {} referrers copied", m.referrers);
            }
        }
    }

    /// The lines of image `i`: each planned one (and in a dry run each up
    /// to date one) with its target, each failed one with its error.
    fn image_summary(&self, i: &ImageReport, out: &mut String) {
        let why = i
            .reason
            .as_deref()
            .map_or(String::new(), |r| format!(" ({r})"));
        match (i.outcome, &i.target, &i.error) {
            (Outcome::Planned, Some(t), error) => {
                let _ = writeln!(out, "  {} -> {t}{why}", i.source);
                if let Some(p) = &i.plan {
                    let _ = writeln!(out, "    {}", p.describe(self.verb().1));
                }
                if let Some(e) = error {
                    let _ = writeln!(out, "    {e}");
                }
            }
            (Outcome::UpToDate, Some(t), _) if self.dry_run => {
                let _ = writeln!(out, "  up to date: {} -> {t}{why}", i.source);
            }
            (Outcome::Failed, _, Some(e)) => {
                let tries = if i.attempts > 1 {
                    format!(" (after {} attempts)", i.attempts)
                } else {
                    String::new()
                };
                // A layout's images are numbered by their entry in its index.json.
                let line = if self.from.is_some() { "entry" } else { "line" };
                let origin = i.origin(line);
                let _ = writeln!(out, "  failed: {origin}: {}: {e}{tries}", i.source);
            }
            (Outcome::NotAttempted, _, _) => {
                let _ = writeln!(out, "  not attempted: {}", i.source);
            }
            _ => {}
        }
    }

    /// What each `images` entry chose of how many tags; in a dry run,
    /// every tag with the rule that dropped it, or `chosen`.
    fn selections_summary(&self, r: &RegistryReport, out: &mut String) {
        for s in r.selections.iter().filter(|s| s.error.is_none()) {
            let _ = writeln!(
                out,
                "  {}: {}: chose {} of {} tags",
                s.name(),
                s.source,
                s.chosen,
                s.listed
            );
            for d in &s.tags {
                let _ = match d.rule {
                    None => writeln!(out, "    {}: chosen", d.tag),
                    Some(rule) => writeln!(out, "    {}: dropped by {rule}: {}", d.tag, d.reason),
                };
            }
        }
    }

    /// The summary's last line, for `export` and `load --from`.
    fn layout_summary(&self, out: &mut String) {
        if let Some(from) = &self.from {
            let _ = writeln!(out, "loaded from {from}");
        }
        let Some(export) = &self.export else {
            return;
        };
        let _ = match (&export.error, self.dry_run) {
            (Some(e), _) => writeln!(out, "export failed: {e}"),
            (None, true) => writeln!(out, "{}: nothing written (dry run)", export.path),
            (None, false) => writeln!(
                out,
                "{}: {} written",
                export.path,
                human_bytes(export.bytes_written)
            ),
        };
    }
}

impl PlanReport {
    /// `platforms linux/amd64, linux/arm64; 3 blobs (12.1 MiB) missing at
    /// the target` (`at`: where they are missing).
    pub fn describe(&self, at: &str) -> String {
        let mut text = String::new();
        if !self.platforms.is_empty() {
            let _ = write!(text, "platforms {}; ", self.platforms.join(", "));
        }
        let _ = write!(
            text,
            "{} blobs ({}) missing {at}",
            self.missing_blobs,
            human_bytes(self.missing_bytes)
        );
        if self.new_index {
            text.push_str(
                "; the platforms filter writes a new index, whose digest differs from the source's",
            );
        }
        for referrer in &self.referrers {
            let _ = write!(text, "\n    with referrer {referrer}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(outcome: Outcome, error: Option<&str>) -> ImageReport {
        let i = ImageReport::new(
            3,
            "alpine:3".into(),
            Some("r.io/m/alpine:3".into()),
            outcome,
        );
        match error {
            Some(e) => i.error(e),
            None => i,
        }
    }

    fn report(images: Vec<ImageReport>, error: Option<&str>) -> Report {
        let now = Local::now();
        let mut r = RegistryReport::start("r.io", now);
        r.images = images;
        r.error = error.map(String::from);
        Report {
            dry_run: false,
            registries: vec![r.finish(now)],
            export: None,
            from: None,
        }
    }

    #[test]
    fn all_mirrored_is_success() {
        let r = report(vec![image(Outcome::Mirrored, None)], None);
        assert_eq!(r.exit_code(), ExitCode::Success);
        assert!(
            r.summary()
                .starts_with("r.io: 1 mirrored, 0 up to date, 0 failed")
        );
    }

    #[test]
    fn any_failure_or_run_error_is_incomplete() {
        let failed = report(
            vec![
                image(Outcome::Mirrored, None),
                image(Outcome::Failed, Some("denied")),
                image(Outcome::Failed, Some("503 Service Unavailable")).attempts(4),
            ],
            None,
        );
        assert_eq!(failed.exit_code(), ExitCode::Incomplete);
        assert!(
            failed
                .summary()
                .contains("  failed: line 3: alpine:3: denied\n")
        );
        assert!(
            failed.summary().contains(
                "  failed: line 3: alpine:3: 503 Service Unavailable (after 4 attempts)\n"
            )
        );
        let stopped = report(vec![], Some("syncer script failed"));
        assert!(stopped.summary().starts_with("r.io: failed ("));
        assert_eq!(stopped.exit_code(), ExitCode::Incomplete);
        assert!(
            stopped
                .summary()
                .contains("  error: syncer script failed\n")
        );
        let skipped = report(vec![image(Outcome::NotAttempted, None)], None);
        assert_eq!(skipped.exit_code(), ExitCode::Incomplete);
    }

    #[test]
    fn a_dry_run_summary_shows_each_plan() {
        let mut r = report(
            vec![
                image(Outcome::Planned, Some("cannot tell")).reason("new"),
                image(Outcome::UpToDate, None).reason("same digest"),
            ],
            None,
        );
        r.dry_run = true;
        r.registries[0].images[0].plan = Some(PlanReport {
            platforms: vec!["linux/amd64".into()],
            new_index: false,
            missing_blobs: 2,
            missing_bytes: 2048,
            referrers: Vec::new(),
        });
        r.export = Some(ExportReport {
            path: "/media/site".into(),
            archive: false,
            bytes_written: 0,
            error: None,
        });
        r.registries[0].seconds = 1.25;
        r.registries[0].warnings.push("state not saved".into());
        assert_eq!(
            r.summary(),
            "r.io: 1 to export, 1 up to date (dry run) (1.2s)\n  \
             warning: state not saved\n  \
             alpine:3 -> r.io/m/alpine:3 (new)\n    \
             platforms linux/amd64; 2 blobs (2.0 KiB) missing in the layout\n    \
             cannot tell\n  \
             up to date: alpine:3 -> r.io/m/alpine:3 (same digest)\n\
             /media/site: nothing written (dry run)\n"
        );
    }

    #[test]
    fn a_summary_counts_what_was_moved() {
        let moved = Stats {
            bytes: 1024,
            blobs_copied: 1,
            blobs_mounted: 2,
            blobs_present: 3,
            referrers: 1,
            ..Stats::default()
        };
        let mut mirrored = image(Outcome::Mirrored, None);
        mirrored.moved = Some(moved);
        let mut r = report(
            vec![
                mirrored,
                image(Outcome::Failed, Some("denied")),
                image(Outcome::NotAttempted, None),
            ],
            None,
        );
        r.from = Some("s.tar".into());
        r.registries[0].seconds = 0.0;
        assert_eq!(
            r.summary(),
            "r.io: 1 mirrored, 0 up to date, 1 failed, 1 not attempted; 1.0 KiB moved \
             (1 blobs copied, 2 mounted, 3 already there); 1 referrers copied (0.0s)\n  \
             failed: entry 3: alpine:3: denied\n  \
             not attempted: alpine:3\n\
             loaded from s.tar\n"
        );
    }

    #[test]
    fn json_uses_camel_case() {
        let r = report(vec![image(Outcome::NotAttempted, None)], None);
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["dryRun"], false);
        assert_eq!(v["registries"][0]["images"][0]["outcome"], "notAttempted");
        assert!(v["registries"][0]["images"][0].get("error").is_none());
    }
}
