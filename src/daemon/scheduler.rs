//! The scheduling decisions of one synchronizer, as a small state machine
//! over time: when the next run is due, whether to run, sleep or stop now,
//! pause and resume, a schedule changed, a run asked for now (refused while
//! one is going, while paused, or while another process holds the lock),
//! and the due times counted as skipped. Every decision takes the clock
//! reading as an argument, so it is tested without threads or sleeping;
//! the thread that acts on them is `worker`'s, the shared status `synchronizer`'s.

use std::time::Duration;

use chrono::{DateTime, Local};
use serde::Serialize;

use crate::config::schedule::Schedule;
use crate::display::rfc3339;
use crate::flock::Holder;

/// The longest a synchronizer sleeps before it looks at the clock again, so
/// that a wall-clock step (NTP, suspend) delays a run by at most this much.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A due run skipped because another process held the registry's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastSkip {
    /// When.
    pub at: String,
    /// Who held the lock.
    pub held_by: Holder,
}

/// One synchronizer's timing: its schedule and what was asked of it.
#[derive(Clone)]
pub struct Timing {
    /// The schedule in force: the configuration's, or one set over the API.
    pub schedule: Option<Schedule>,
    /// Whether the schedule was set over the API.
    pub from_api: bool,
    pub paused: bool,
    /// A run was asked for over the API and has not started yet.
    pub run_now: bool,
    pub next_run: Option<DateTime<Local>>,
    /// Due times skipped: passed during a run, or kept from starting by
    /// another process's run.
    pub skipped: u64,
    /// The last due run that another process's run kept from starting.
    pub last_skip: Option<LastSkip>,
}

/// What the synchronizer's thread does now.
pub enum Step {
    /// The synchronizer retires: the thread ends.
    Stop,
    /// A run starts.
    Run(Due),
    /// Nothing is due yet: sleep this long (or until woken) and look again.
    Sleep(Duration),
    /// Nothing is scheduled (or paused): sleep until woken.
    Wait,
}

/// A run that starts: the instant from which due times passed during it
/// count as skipped, and the schedule they are counted on.
#[derive(Clone)]
pub struct Due {
    pub from: DateTime<Local>,
    pub schedule: Option<Schedule>,
}

/// Why a run cannot be started now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotNow {
    /// A run is going or has been asked for.
    Running,
    Paused,
    /// Another process runs the registry, holding its lock.
    HeldElsewhere(Holder),
}

impl Timing {
    /// Follows `schedule`, not paused, from `now`.
    pub fn new(schedule: Option<Schedule>, now: DateTime<Local>) -> Timing {
        let next_run = schedule.as_ref().and_then(|s| s.next_after(&now));
        Timing {
            schedule,
            from_api: false,
            paused: false,
            run_now: false,
            next_run,
            skipped: 0,
            last_skip: None,
        }
    }

    /// Recomputes the next due time from `now`: none while paused.
    pub fn reschedule(&mut self, now: DateTime<Local>) {
        self.next_run = match (&self.schedule, self.paused) {
            (Some(s), false) => s.next_after(&now),
            _ => None,
        };
    }

    /// Pauses; true when it already was.
    pub fn pause(&mut self, now: DateTime<Local>) -> bool {
        let was = std::mem::replace(&mut self.paused, true);
        self.reschedule(now);
        was
    }

    /// Resumes from the next due time after `now`; true when it was paused.
    pub fn resume(&mut self, now: DateTime<Local>) -> bool {
        let was = std::mem::replace(&mut self.paused, false);
        self.reschedule(now);
        was
    }

    /// Follows `schedule` from `now` on (`from_api`: set over the API).
    pub fn set_schedule(
        &mut self,
        schedule: Option<Schedule>,
        from_api: bool,
        now: DateTime<Local>,
    ) {
        self.schedule = schedule;
        self.from_api = from_api;
        self.reschedule(now);
    }

    /// Asks for a run now, unless one is `running` or asked for, the
    /// synchronizer is paused, or another process `held` the lock.
    pub fn request_run(&mut self, running: bool, held: Option<Holder>) -> Result<(), NotNow> {
        if running || self.run_now {
            Err(NotNow::Running)
        } else if self.paused {
            Err(NotNow::Paused)
        } else if let Some(holder) = held {
            Err(NotNow::HeldElsewhere(holder))
        } else {
            self.run_now = true;
            Ok(())
        }
    }

    /// What to do at `now`: stop when `retired`, else run when asked to or
    /// due, else sleep until due (at most [`MAX_SLEEP`]) or until woken.
    pub fn step(&mut self, retired: bool, now: DateTime<Local>) -> Step {
        if retired {
            return Step::Stop;
        }
        if std::mem::take(&mut self.run_now) {
            return self.start(now);
        }
        match (self.paused, self.next_run) {
            (false, Some(due)) if now >= due => self.start(due),
            (false, Some(due)) => {
                Step::Sleep((due - now).to_std().unwrap_or_default().min(MAX_SLEEP))
            }
            _ => Step::Wait,
        }
    }

    /// A run that starts, due at `from`, on the schedule in force.
    fn start(&self, from: DateTime<Local>) -> Step {
        let schedule = self.schedule.clone();
        Step::Run(Due { from, schedule })
    }

    /// A run that started at `due` ended at `now`: counts the due times that
    /// passed during it as skipped, returns how many, and reschedules.
    pub fn ended(&mut self, due: &Due, now: DateTime<Local>) -> u64 {
        let missed = due
            .schedule
            .as_ref()
            .map_or(0, |s| count_missed(s, due.from, now));
        self.skipped += missed;
        self.reschedule(now);
        missed
    }

    /// A due run that another process's run of the registry kept from
    /// starting at `now`: skipped, with who held the lock.
    pub fn held_elsewhere(&mut self, holder: Holder, now: DateTime<Local>) {
        self.skipped += 1;
        self.last_skip = Some(LastSkip {
            at: rfc3339(&now),
            held_by: holder,
        });
        self.reschedule(now);
    }
}

/// How many fire times of `schedule` after `due` passed by `now`.
fn count_missed(schedule: &Schedule, due: DateTime<Local>, now: DateTime<Local>) -> u64 {
    let mut missed = 0;
    let mut t = due;
    while let Some(next) = schedule.next_after(&t) {
        if next > now || missed >= 100_000 {
            break;
        }
        missed += 1;
        t = next;
    }
    missed
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// 5 January 2026 at `h:m:s`, local time (no daylight-saving change near).
    fn at(h: u32, m: u32, s: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 1, 5, h, m, s).unwrap()
    }

    fn every_5_minutes() -> Option<Schedule> {
        Some(Schedule::parse("*/5 * * * *").unwrap())
    }

    fn holder() -> Holder {
        Holder {
            pid: 4242,
            command: "picture-book load".into(),
            since: "2026-01-05T10:00:00+00:00".into(),
        }
    }

    #[test]
    fn the_next_run_is_the_first_due_time_after_now() {
        let t = Timing::new(every_5_minutes(), at(10, 2, 30));
        assert_eq!(t.next_run, Some(at(10, 5, 0)));
        let on_the_dot = Timing::new(every_5_minutes(), at(10, 5, 0));
        assert_eq!(on_the_dot.next_run, Some(at(10, 10, 0)), "strictly after");
        assert_eq!(Timing::new(None, at(10, 0, 0)).next_run, None);
    }

    /// The instant a run starts from, or what was decided instead.
    fn run_from(step: Step) -> Result<DateTime<Local>, &'static str> {
        match step {
            Step::Run(due) => Ok(due.from),
            Step::Stop => Err("stop"),
            Step::Sleep(_) => Err("sleep"),
            Step::Wait => Err("wait"),
        }
    }

    fn sleeps(step: Step) -> Option<Duration> {
        match step {
            Step::Sleep(d) => Some(d),
            _ => None,
        }
    }

    #[test]
    fn sleeps_until_due_then_runs_from_the_due_time() {
        let mut t = Timing::new(every_5_minutes(), at(10, 4, 30));
        assert_eq!(
            sleeps(t.step(false, at(10, 4, 30))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            sleeps(t.step(false, at(10, 0, 1))),
            Some(MAX_SLEEP),
            "at most a minute"
        );
        assert_eq!(run_from(t.step(false, at(10, 5, 0))), Ok(at(10, 5, 0)));
        assert_eq!(
            run_from(t.step(false, at(10, 5, 7))),
            Ok(at(10, 5, 0)),
            "late wake-up"
        );
    }

    #[test]
    fn nothing_scheduled_waits_to_be_woken() {
        let mut t = Timing::new(None, at(10, 0, 0));
        assert_eq!(run_from(t.step(false, at(11, 0, 0))), Err("wait"));
    }

    #[test]
    fn a_retired_synchronizer_stops_even_when_a_run_was_asked_for() {
        let mut t = Timing::new(every_5_minutes(), at(10, 0, 0));
        t.request_run(false, None).unwrap();
        assert_eq!(run_from(t.step(true, at(10, 5, 0))), Err("stop"));
    }

    /// The run `t` starts at `now`.
    fn due(t: &mut Timing, now: DateTime<Local>) -> Due {
        match t.step(false, now) {
            Step::Run(due) => due,
            _ => panic!("no run at {now}"),
        }
    }

    #[test]
    fn due_times_passed_during_a_run_are_skipped() {
        let mut t = Timing::new(every_5_minutes(), at(10, 4, 0));
        let run = due(&mut t, at(10, 5, 0));
        assert_eq!(t.ended(&run, at(10, 17, 0)), 2, "10:10 and 10:15");
        assert_eq!((t.skipped, t.next_run), (2, Some(at(10, 20, 0))));
        let run = due(&mut t, at(10, 20, 0));
        assert_eq!(t.ended(&run, at(10, 21, 0)), 0, "a short run skips none");
        assert_eq!(t.skipped, 2);
    }

    #[test]
    fn skipped_due_times_count_on_the_schedule_the_run_started_with() {
        let mut t = Timing::new(every_5_minutes(), at(10, 4, 0));
        let run = due(&mut t, at(10, 5, 0));
        let hourly = Schedule::parse("0 * * * *").unwrap();
        t.set_schedule(Some(hourly), true, at(10, 6, 0));
        assert_eq!(t.ended(&run, at(10, 17, 0)), 2);
        assert_eq!(t.next_run, Some(at(11, 0, 0)), "the new schedule's");
    }

    #[test]
    fn pause_stops_the_schedule_and_resume_restarts_it_from_now() {
        let mut t = Timing::new(every_5_minutes(), at(10, 0, 0));
        assert!(!t.pause(at(10, 1, 0)), "was not paused");
        assert_eq!(t.next_run, None);
        assert!(t.pause(at(10, 2, 0)), "already paused");
        assert_eq!(
            run_from(t.step(false, at(10, 30, 0))),
            Err("wait"),
            "nothing runs"
        );
        assert!(t.resume(at(10, 31, 0)), "was paused");
        assert_eq!(t.next_run, Some(at(10, 35, 0)), "no catching up");
        assert!(!t.resume(at(10, 32, 0)), "was not paused");
        assert_eq!(t.next_run, Some(at(10, 35, 0)));
    }

    #[test]
    fn a_run_asked_for_starts_at_once_and_once() {
        let mut t = Timing::new(every_5_minutes(), at(10, 0, 0));
        assert_eq!(t.request_run(false, None), Ok(()));
        let now = at(10, 1, 12);
        assert_eq!(run_from(t.step(false, now)), Ok(now));
        assert_eq!(run_from(t.step(false, now)), Err("sleep"), "once");
    }

    #[test]
    fn a_run_is_not_asked_for_while_running_paused_or_held_elsewhere() {
        let mut t = Timing::new(every_5_minutes(), at(10, 0, 0));
        assert_eq!(t.request_run(true, None), Err(NotNow::Running));
        assert_eq!(t.request_run(false, None), Ok(()));
        assert_eq!(
            t.request_run(false, None),
            Err(NotNow::Running),
            "asked for and not started yet"
        );
        let mut t = Timing::new(every_5_minutes(), at(10, 0, 0));
        t.pause(at(10, 0, 0));
        assert_eq!(t.request_run(false, Some(holder())), Err(NotNow::Paused));
        t.resume(at(10, 0, 0));
        assert_eq!(
            t.request_run(false, Some(holder())),
            Err(NotNow::HeldElsewhere(holder()))
        );
        assert_eq!(t.request_run(true, Some(holder())), Err(NotNow::Running));
        assert!(!t.run_now);
    }

    #[test]
    fn a_due_run_held_elsewhere_is_skipped_and_says_by_whom() {
        let mut t = Timing::new(every_5_minutes(), at(10, 4, 0));
        due(&mut t, at(10, 5, 0));
        t.held_elsewhere(holder(), at(10, 5, 2));
        assert_eq!(t.skipped, 1);
        assert_eq!(
            t.last_skip,
            Some(LastSkip {
                at: rfc3339(&at(10, 5, 2)),
                held_by: holder()
            })
        );
        assert_eq!(t.next_run, Some(at(10, 10, 0)));
    }

    #[test]
    fn a_new_schedule_takes_effect_from_now() {
        let mut t = Timing::new(every_5_minutes(), at(10, 0, 0));
        t.set_schedule(
            Some(Schedule::parse("30 * * * *").unwrap()),
            true,
            at(10, 1, 0),
        );
        assert_eq!((t.from_api, t.next_run), (true, Some(at(10, 30, 0))));
        t.set_schedule(None, false, at(10, 2, 0));
        assert_eq!((t.from_api, t.next_run), (false, None));
        assert_eq!(run_from(t.step(false, at(10, 30, 0))), Err("wait"));
        t.pause(at(10, 3, 0));
        t.set_schedule(every_5_minutes(), false, at(10, 4, 0));
        assert_eq!(t.next_run, None, "still paused");
    }

    #[test]
    fn missed_due_times_are_counted_after_the_due_time() {
        let s = every_5_minutes().unwrap();
        assert_eq!(count_missed(&s, at(10, 5, 0), at(10, 9, 59)), 0);
        assert_eq!(count_missed(&s, at(10, 5, 0), at(10, 10, 0)), 1);
        assert_eq!(count_missed(&s, at(10, 5, 0), at(11, 5, 0)), 12);
    }
}
