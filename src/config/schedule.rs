//! `syncPeriod`: cron schedules as crontab(5) reads them. Five-field
//! expressions (minute hour day-of-month month day-of-week) are parsed here
//! with Vixie cron's rules and translated into explicit lists for the `cron`
//! crate, which computes the fire times; six- and seven-field expressions
//! (seconds first, optional year) go to the `cron` crate as they are.
//! Scheduling threads are not this module's business.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone};

/// A parsed schedule.
#[derive(Clone)]
pub struct Schedule {
    /// The expression as written.
    source: String,
    /// The schedules whose earliest fire time is the next run. Two when both
    /// day fields are restricted (a day matches when either does), else one.
    any_of: Vec<cron::Schedule>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.source)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.source == other.source
    }
}

/// One crontab field: its name, bounds, and the names it accepts.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Day names as the `cron` crate reads them, indexed by crontab number (0 = Sunday).
const CRON_DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Parses a `syncPeriod`. The error says which field is wrong and why.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let source = expr.trim().to_string();
        let expanded = match source.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            "@reboot" => {
                return Err(
                    "@reboot is not a schedule; run 'picture-book load' at boot instead".into(),
                );
            }
            s if s.starts_with('@') => {
                return Err(format!(
                    "unknown shorthand '{source}'; use @hourly, @daily, @weekly, @monthly or @yearly"
                ));
            }
            _ => source.clone(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let any_of = match fields.len() {
            5 => translate(&fields)?,
            6 | 7 => {
                vec![cron::Schedule::from_str(&expanded).map_err(|e| cron_error(&source, &e))?]
            }
            0 => return Err("empty schedule".into()),
            n => {
                return Err(format!(
                    "'{source}' has {n} fields; expected 5 (minute hour day-of-month month day-of-week), or 6 with seconds first"
                ));
            }
        };
        let schedule = Schedule { source, any_of };
        if schedule.next_after(&chrono::Utc::now()).is_none() {
            return Err(format!("'{}' never fires", schedule.source));
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first fire time strictly after `after`, in `after`'s time zone.
    /// A local time that occurs twice yields its earlier instant; one that
    /// is already past is skipped.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.any_of
            .iter()
            .filter_map(|s| s.after(after).find(|t| t > after))
            .min()
    }

    /// The next `n` fire times after `after`.
    pub fn upcoming<Tz: TimeZone>(&self, after: &DateTime<Tz>, n: usize) -> Vec<DateTime<Tz>> {
        let mut out: Vec<DateTime<Tz>> = Vec::with_capacity(n);
        let mut from = after.clone();
        while out.len() < n {
            match self.next_after(&from) {
                Some(t) => {
                    from = t.clone();
                    out.push(t);
                }
                None => break,
            }
        }
        out
    }
}

/// Translates a five-field crontab expression into `cron` crate schedules.
fn translate(fields: &[&str]) -> Result<Vec<cron::Schedule>, String> {
    let minutes = parse_field(fields[0], &MINUTE)?;
    let hours = parse_field(fields[1], &HOUR)?;
    let doms = parse_field(fields[2], &DAY_OF_MONTH)?;
    let months = parse_field(fields[3], &MONTH)?;
    let mut dows = parse_field(fields[4], &DAY_OF_WEEK)?;
    if dows.contains(&7) {
        dows.retain(|&d| d != 7);
        if !dows.contains(&0) {
            dows.insert(0, 0);
        }
    }
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let days = dows
        .iter()
        .map(|&d| CRON_DAYS[d as usize])
        .collect::<Vec<_>>()
        .join(",");
    let build = |dom: &str, dow: &str| {
        let expr = format!(
            "0 {} {} {dom} {} {dow}",
            list(&minutes),
            list(&hours),
            list(&months)
        );
        cron::Schedule::from_str(&expr).map_err(|e| cron_error(&fields.join(" "), &e))
    };
    // Vixie cron: a day field that starts with '*' is "unrestricted"; when
    // neither is, a day matches if either field matches.
    if fields[2].starts_with('*') || fields[4].starts_with('*') {
        Ok(vec![build(&list(&doms), &days)?])
    } else {
        Ok(vec![build(&list(&doms), "*")?, build("*", &days)?])
    }
}

/// Expands one crontab field into the sorted values it matches.
/// The cron crate's error for `expr` as one line: it shows the expression
/// with a caret under the problem on lines of their own, which a message
/// (and a log line) cannot hold; the last line says what is wrong.
fn cron_error(expr: &str, e: &cron::error::Error) -> String {
    let text = e.to_string();
    let why = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.chars().all(|c| c == '^') && *l != expr.trim())
        .unwrap_or("not a valid schedule");
    let hint = if expr.contains(['L', 'W', '#']) {
        " (L, W and # are not supported)"
    } else {
        ""
    };
    format!("'{expr}': {why}{hint}")
}

fn parse_field(text: &str, field: &Field) -> Result<Vec<u32>, String> {
    let mut values = Vec::new();
    for item in text.split(',') {
        let bad = |why: &str| format!("{} field '{text}': {why}", field.name);
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| bad(&format!("step '{s}' is not a number")))?;
                if step == 0 {
                    return Err(bad("step must not be 0"));
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (field.min, if field.max == 7 { 6 } else { field.max })
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, field).map_err(|e| bad(&e))?,
                value(b, field).map_err(|e| bad(&e))?,
            )
        } else {
            let v = value(range, field).map_err(|e| bad(&e))?;
            (v, if item.contains('/') { field.max } else { v })
        };
        if lo > hi {
            return Err(bad(&format!("range {lo}-{hi} runs backwards")));
        }
        values.extend((lo..=hi).step_by(step as usize));
    }
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + if field.min == 1 { 1 } else { 0 });
    }
    let v: u32 = text.parse().map_err(|_| {
        if text.is_empty() {
            "empty value".to_string()
        } else {
            format!(
                "'{text}' is not a number{}",
                if field.names.is_empty() {
                    ""
                } else {
                    " or a name"
                }
            )
        }
    })?;
    if v < field.min || v > field.max {
        return Err(format!("{v} is out of range {}-{}", field.min, field.max));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next3(expr: &str, after: &str) -> Vec<String> {
        Schedule::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .upcoming(&at(after), 3)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    /// Expressions and their next fire times after Wednesday 2025-01-01 12:00 UTC.
    #[test]
    fn fire_times_table() {
        let after = "2025-01-01T12:00:00+00:00";
        let table: &[(&str, [&str; 3])] = &[
            (
                "*/1 * * * *",
                [
                    "2025-01-01T12:01:00+00:00",
                    "2025-01-01T12:02:00+00:00",
                    "2025-01-01T12:03:00+00:00",
                ],
            ),
            (
                "*/15 * * * *",
                [
                    "2025-01-01T12:15:00+00:00",
                    "2025-01-01T12:30:00+00:00",
                    "2025-01-01T12:45:00+00:00",
                ],
            ),
            (
                "10-30/10 9 * * *",
                [
                    "2025-01-02T09:10:00+00:00",
                    "2025-01-02T09:20:00+00:00",
                    "2025-01-02T09:30:00+00:00",
                ],
            ),
            (
                "5,35 */6 * * *",
                [
                    "2025-01-01T12:05:00+00:00",
                    "2025-01-01T12:35:00+00:00",
                    "2025-01-01T18:05:00+00:00",
                ],
            ),
            (
                "0 3 * * *",
                [
                    "2025-01-02T03:00:00+00:00",
                    "2025-01-03T03:00:00+00:00",
                    "2025-01-04T03:00:00+00:00",
                ],
            ),
            // Day of week: 0 and 7 are Sunday, 1 is Monday.
            (
                "0 0 * * 0",
                [
                    "2025-01-05T00:00:00+00:00",
                    "2025-01-12T00:00:00+00:00",
                    "2025-01-19T00:00:00+00:00",
                ],
            ),
            (
                "0 0 * * 7",
                [
                    "2025-01-05T00:00:00+00:00",
                    "2025-01-12T00:00:00+00:00",
                    "2025-01-19T00:00:00+00:00",
                ],
            ),
            (
                "0 0 * * 1",
                [
                    "2025-01-06T00:00:00+00:00",
                    "2025-01-13T00:00:00+00:00",
                    "2025-01-20T00:00:00+00:00",
                ],
            ),
            (
                "0 0 * * 5-7",
                [
                    "2025-01-03T00:00:00+00:00",
                    "2025-01-04T00:00:00+00:00",
                    "2025-01-05T00:00:00+00:00",
                ],
            ),
            (
                "0 0 * * sat,SUN",
                [
                    "2025-01-04T00:00:00+00:00",
                    "2025-01-05T00:00:00+00:00",
                    "2025-01-11T00:00:00+00:00",
                ],
            ),
            (
                "0 0 * * Mon-Fri",
                [
                    "2025-01-02T00:00:00+00:00",
                    "2025-01-03T00:00:00+00:00",
                    "2025-01-06T00:00:00+00:00",
                ],
            ),
            (
                "0 0 * * */2",
                [
                    "2025-01-02T00:00:00+00:00",
                    "2025-01-04T00:00:00+00:00",
                    "2025-01-05T00:00:00+00:00",
                ],
            ),
            // Both day fields restricted: either one matches (13th, or any Friday).
            (
                "0 0 13 * 5",
                [
                    "2025-01-03T00:00:00+00:00",
                    "2025-01-10T00:00:00+00:00",
                    "2025-01-13T00:00:00+00:00",
                ],
            ),
            // A day field starting with '*' is unrestricted: both must match.
            (
                "0 0 */2 * 5",
                [
                    "2025-01-03T00:00:00+00:00",
                    "2025-01-17T00:00:00+00:00",
                    "2025-01-31T00:00:00+00:00",
                ],
            ),
            (
                "0 0 1 jan,Jul *",
                [
                    "2025-07-01T00:00:00+00:00",
                    "2026-01-01T00:00:00+00:00",
                    "2026-07-01T00:00:00+00:00",
                ],
            ),
            (
                "0 0 29 2 *",
                [
                    "2028-02-29T00:00:00+00:00",
                    "2032-02-29T00:00:00+00:00",
                    "2036-02-29T00:00:00+00:00",
                ],
            ),
            (
                "30 12 * * *",
                [
                    "2025-01-01T12:30:00+00:00",
                    "2025-01-02T12:30:00+00:00",
                    "2025-01-03T12:30:00+00:00",
                ],
            ),
            (
                "@hourly",
                [
                    "2025-01-01T13:00:00+00:00",
                    "2025-01-01T14:00:00+00:00",
                    "2025-01-01T15:00:00+00:00",
                ],
            ),
            (
                "@daily",
                [
                    "2025-01-02T00:00:00+00:00",
                    "2025-01-03T00:00:00+00:00",
                    "2025-01-04T00:00:00+00:00",
                ],
            ),
            (
                "@weekly",
                [
                    "2025-01-05T00:00:00+00:00",
                    "2025-01-12T00:00:00+00:00",
                    "2025-01-19T00:00:00+00:00",
                ],
            ),
            (
                "@monthly",
                [
                    "2025-02-01T00:00:00+00:00",
                    "2025-03-01T00:00:00+00:00",
                    "2025-04-01T00:00:00+00:00",
                ],
            ),
            (
                "@yearly",
                [
                    "2026-01-01T00:00:00+00:00",
                    "2027-01-01T00:00:00+00:00",
                    "2028-01-01T00:00:00+00:00",
                ],
            ),
            // Six fields: seconds first, read by the cron crate (1 = Sunday there).
            (
                "*/5 * * * * *",
                [
                    "2025-01-01T12:00:05+00:00",
                    "2025-01-01T12:00:10+00:00",
                    "2025-01-01T12:00:15+00:00",
                ],
            ),
            (
                "0 0 0 * * 1",
                [
                    "2025-01-05T00:00:00+00:00",
                    "2025-01-12T00:00:00+00:00",
                    "2025-01-19T00:00:00+00:00",
                ],
            ),
        ];
        for (expr, want) in table {
            assert_eq!(next3(expr, after), *want, "{expr}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("* * * *", "has 4 fields"),
            ("", "empty schedule"),
            ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
            ("* 24 * * *", "hour field '24'"),
            ("* * 0 * *", "day of month field '0'"),
            ("* * * 13 *", "month field '13'"),
            ("* * * * 8", "day of week field '8'"),
            ("*/0 * * * *", "step must not be 0"),
            ("5-1 * * * *", "runs backwards"),
            ("* * * foo *", "'foo' is not a number or a name"),
            ("a * * * *", "'a' is not a number"),
            ("0 0 30 2 *", "never fires"),
            ("@reboot", "@reboot is not a schedule"),
            ("@often", "unknown shorthand"),
            ("x * * * * *", "'x * * * * *'"),
        ];
        for (expr, want) in cases {
            let err = Schedule::parse(expr).unwrap_err();
            assert!(err.contains(want), "{expr:?}: {err}");
        }
        for expr in ["0 0 0 L * *", "0 0 0 * * 5L", "0 0 0 * * 5#2", "0 0 L * *"] {
            let err = Schedule::parse(expr).unwrap_err();
            assert!(!err.contains(['\n', '^']), "one line: {err:?}");
        }
        assert_eq!(
            Schedule::parse("0 0 0 L * *").unwrap_err(),
            "'0 0 0 L * *': The 'Days of Month' field does not support using names. 'L' specified. (L, W and # are not supported)"
        );
    }

    #[test]
    fn next_is_strictly_after() {
        let s = Schedule::parse("0 12 * * *").unwrap();
        let t = at("2025-01-01T12:00:00+00:00");
        assert_eq!(
            s.next_after(&t).unwrap().to_rfc3339(),
            "2025-01-02T12:00:00+00:00"
        );
    }
}
