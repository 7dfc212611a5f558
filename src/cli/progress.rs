//! Progress of long work on standard error, for a person at a terminal or a log file.
//!
//! On a terminal: an `indicatif` bar with a rate rounded for people (`97 pairs/s`) and an ETA.
//! Otherwise (CI logs, `2> build.log`, a service manager), `indicatif` draws nothing, so a
//! plain line without colour codes is printed every [`interval`] seconds and at the end:
//! `encoding: 12,288/148,198 pairs (8%), 97 pairs/s, ETA 23m 20s`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// Seconds between plain progress lines: `$RELBERT_PROGRESS_SECS` (0: a line at every
/// update), else 10. Read once per process, so a bad value is warned about once, not by each
/// display. `relbert train` times its plain step lines by it too.
pub(crate) fn interval() -> Duration {
    static EVERY: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *EVERY.get_or_init(|| {
        let default = Duration::from_secs(DEFAULT_SECS);
        let Some(value) = std::env::var_os("RELBERT_PROGRESS_SECS") else {
            return default;
        };
        let value = value.to_string_lossy();
        parse_interval(&value).unwrap_or_else(|| {
            // A typo was ignored without a word, leaving the user waiting for lines at an
            // interval they never got.
            tracing::warn!(
                "RELBERT_PROGRESS_SECS={value:?} is not a number of seconds (0 or more); \
                 progress lines come every {DEFAULT_SECS} s"
            );
            default
        })
    })
}

/// Seconds between plain progress lines when `RELBERT_PROGRESS_SECS` is unset or invalid.
const DEFAULT_SECS: u64 = 10;

/// A `RELBERT_PROGRESS_SECS` value: seconds, 0 or more, finite (and small enough for a
/// [`Duration`]); `None` for anything else.
fn parse_interval(s: &str) -> Option<Duration> {
    Duration::try_from_secs_f64(s.trim().parse().ok()?).ok()
}

/// A count with thousands separators: `148,198`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate rounded for people: whole units from 10 up, one decimal below, two below 1.
pub fn rate(per_sec: f64, unit: &str) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return format!("0 {unit}/s");
    }
    if per_sec >= 9.95 {
        format!("{} {unit}/s", group(per_sec.round() as u64))
    } else if per_sec >= 0.995 {
        format!("{per_sec:.1} {unit}/s")
    } else {
        format!("{per_sec:.2} {unit}/s")
    }
}

/// A duration as `1h 02m`, `23m 20s` or `7s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A progress display counting `unit`s of `what`. Shared by reference (`&self`): callbacks
/// from parallel work may report through it.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    unit: &'static str,
    total: u64,
    bytes: bool,
    every: Duration,
    state: std::sync::Mutex<State>,
}

struct State {
    pos: u64,
    started: Instant,
    base: u64,
    last_line: Instant,
    /// The count the last plain line showed: [`Progress::finish`] does not repeat it.
    shown: Option<u64>,
    finished: bool,
}

impl Progress {
    /// Starts counting `total` units.
    pub fn new(total: u64, what: &str, unit: &'static str) -> Progress {
        Progress::with_mode(total, what, unit, false)
    }

    /// Counting bytes of input (`total` 0 when unknown, as for standard input): shown as MB
    /// and MB/s.
    pub fn bytes(total: u64, what: &str) -> Progress {
        Progress::with_mode(total, what, "MB", true)
    }

    fn with_mode(total: u64, what: &str, unit: &'static str, bytes: bool) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let pb = ProgressBar::new(total);
            let template = if bytes {
                "{msg} [{bar:30}] {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}".to_string()
            } else {
                format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{rate}}  ETA {{eta}}")
            };
            let style = ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&rate(s.per_sec(), unit));
                    },
                )
                .progress_chars("=> ");
            pb.set_style(style);
            pb.set_message(what.to_string());
            pb
        });
        Progress::with_bar(bar, total, what, unit, bytes, interval())
    }

    /// A display drawing `bar`, or plain lines at most every `every` without one.
    fn with_bar(
        bar: Option<ProgressBar>,
        total: u64,
        what: &str,
        unit: &'static str,
        bytes: bool,
        every: Duration,
    ) -> Progress {
        let now = Instant::now();
        Progress {
            bar,
            what: what.to_string(),
            unit,
            total,
            bytes,
            every,
            state: std::sync::Mutex::new(State {
                pos: 0,
                started: now,
                base: 0,
                last_line: now,
                shown: None,
                finished: false,
            }),
        }
    }

    /// Counting pairs.
    pub fn pairs(total: u64, what: &str) -> Progress {
        Progress::new(total, what, "pairs")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Units already done before this run (a resumed build or export): they do not count in
    /// the rate, which counts from here (the time before, spent opening and checking what
    /// the run resumes, did not do the units after them either).
    pub fn resume_from(&self, done: u64) {
        {
            let mut st = self.state();
            st.base = done;
            st.pos = done;
            st.started = Instant::now();
        }
        if let Some(b) = &self.bar {
            b.set_position(done);
            b.reset_eta();
        }
    }

    /// Sets the count done.
    pub fn set_position(&self, pos: u64) {
        match &self.bar {
            Some(b) => b.set_position(pos),
            None => {
                let mut st = self.state();
                st.pos = pos;
                // A line repeating the last one's count says nothing new.
                if st.shown != Some(pos) && st.last_line.elapsed() >= self.every {
                    self.line(&mut st, None);
                }
            }
        }
    }

    /// Prints a plain line of the count so far; `early` (why the work stopped before its
    /// total) makes it a last line without the total, the share or an ETA.
    fn line(&self, st: &mut State, early: Option<&str>) {
        st.last_line = Instant::now();
        st.shown = Some(st.pos);
        let text = self.text(st, early, st.started.elapsed().as_secs_f64());
        relbert::say!("{text}");
    }

    /// The plain line of `st`'s count, `secs` seconds after the run started counting (see
    /// [`Self::line`]): the rate and the ETA count only the units done in this run, after
    /// those it resumed from ([`Self::resume_from`]).
    fn text(&self, st: &State, early: Option<&str>, secs: f64) -> String {
        let per_sec = st.pos.saturating_sub(st.base) as f64 / secs.max(1e-9);
        if let Some(why) = early {
            return format!(
                "{}: {} {} ({why}), {}",
                self.what,
                group(st.pos),
                self.unit,
                rate(per_sec, self.unit)
            );
        }
        let pct = (st.pos.min(self.total) * 100)
            .checked_div(self.total)
            .map(|p| format!(" ({p}%)"))
            .unwrap_or_default();
        let eta = if per_sec > 0.0 && st.pos < self.total {
            format!(
                ", ETA {}",
                // A tiny rate over a huge total passes what a Duration holds, which
                // `from_secs_f64` panics on (`relbert train`'s ETA did, audit s21).
                duration(
                    Duration::try_from_secs_f64((self.total - st.pos) as f64 / per_sec)
                        .unwrap_or(Duration::MAX)
                )
            )
        } else {
            String::new()
        };
        if self.bytes {
            let mb = |b: u64| format!("{:.1}", b as f64 / 1e6);
            let of = if self.total > 0 {
                format!("/{}", mb(self.total))
            } else {
                String::new()
            };
            return format!(
                "{}: {}{of} MB{pct}, {}{eta}",
                self.what,
                mb(st.pos),
                rate(per_sec / 1e6, "MB")
            );
        }
        format!(
            "{}: {}/{} {}{pct}, {}{eta}",
            self.what,
            group(st.pos),
            group(self.total),
            self.unit,
            rate(per_sec, self.unit)
        )
    }

    /// Ends the display: the bar disappears; in plain mode a last line is printed, unless
    /// the last line printed already showed the final count.
    pub fn finish(&self) {
        let mut st = self.state();
        if st.finished {
            return;
        }
        st.finished = true;
        match &self.bar {
            Some(b) => b.finish_and_clear(),
            None if st.shown == Some(st.pos) => {}
            None => self.line(&mut st, None),
        }
    }

    /// Ends the display of work that stopped before its total, `why` saying what stopped it
    /// (training that stopped early): the bar disappears; in plain mode a last line gives the
    /// count done and why, without the total, a share or an ETA, always (a line with the
    /// same count showed an ETA). It showed `12/200 epochs (6%), 19 epochs/s, ETA 10s` for a
    /// finished run.
    pub fn finish_early(&self, why: &str) {
        let mut st = self.state();
        if st.finished {
            return;
        }
        st.finished = true;
        match &self.bar {
            Some(b) => b.finish_and_clear(),
            None => self.line(&mut st, Some(why)),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_counts_are_rounded_for_people() {
        assert_eq!(rate(96.6038, "pairs"), "97 pairs/s");
        assert_eq!(rate(12_345.6, "pairs"), "12,346 pairs/s");
        assert_eq!(rate(3.04, "steps"), "3.0 steps/s");
        assert_eq!(rate(0.256, "steps"), "0.26 steps/s");
        assert_eq!(rate(f64::NAN, "pairs"), "0 pairs/s");
        assert_eq!(group(148_198), "148,198");
        assert_eq!(group(999), "999");
        assert_eq!(duration(Duration::from_secs(1400)), "23m 20s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h 02m");
    }

    /// A display without a bar, as on a log file (`Progress::new` draws one on a terminal),
    /// printing a line at no update (the test reads the lines' text itself).
    fn plain(total: u64) -> Progress {
        Progress::with_bar(None, total, "exporting", "pairs", false, Duration::MAX)
    }

    /// Found by a review: a resumed export counted the rows an earlier run had written as
    /// done in its first moment, so its plain line gave a rate far above the real one and an
    /// ETA far too short. Rows resumed from are shown in the count, not in the rate.
    #[test]
    fn rows_resumed_from_count_in_the_position_and_not_in_the_rate() {
        let p = plain(2_000);
        p.resume_from(900);
        p.set_position(1_000);
        assert_eq!(
            p.text(&p.state(), None, 10.0),
            "exporting: 1,000/2,000 pairs (50%), 10 pairs/s, ETA 1m 40s"
        );
        // Without it, every row is this run's.
        let fresh = plain(2_000);
        fresh.set_position(1_000);
        assert_eq!(
            fresh.text(&fresh.state(), None, 10.0),
            "exporting: 1,000/2,000 pairs (50%), 100 pairs/s, ETA 10s"
        );
        assert_eq!(
            p.text(&p.state(), Some("stopped"), 10.0),
            "exporting: 1,000 pairs (stopped), 10 pairs/s"
        );
    }

    #[test]
    fn progress_intervals_are_seconds_zero_or_more() {
        assert_eq!(parse_interval("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_interval(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_interval("0"), Some(Duration::ZERO));
        for bad in ["abc", "-1", "", "inf", "NaN", "1e300", "10s"] {
            assert_eq!(parse_interval(bad), None, "{bad:?}");
        }
    }
}
