//! What a run measured: counts and latency histograms, for the whole run and for each
//! second of it. One recorder is shared by every task; each record holds its lock for a
//! few counter updates only.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// The longest latency kept apart from the others; longer ones count as this.
const MAX_LATENCY_MICROS: u64 = 120_000_000;

/// Latencies in microseconds in an HDR histogram: a fixed relative error at every scale.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Latencies {
    /// Three significant digits, for the run's figures.
    pub fn precise() -> Self {
        Self::with_digits(3)
    }

    /// Two significant digits: enough for a plot, and a fraction of the memory, as
    /// there is one per second of the run.
    pub fn coarse() -> Self {
        Self::with_digits(2)
    }

    fn with_digits(digits: u8) -> Self {
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, digits).expect("the bounds are valid");
        Self { histogram }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(micros);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at quantile `q` (0..=1) in milliseconds; `None` when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (!self.histogram.is_empty()).then(|| self.histogram.value_at_quantile(q) as f64 / 1000.0)
    }

    pub fn max_ms(&self) -> Option<f64> {
        (!self.histogram.is_empty()).then(|| self.histogram.max() as f64 / 1000.0)
    }
}

/// What happened to one call, or to one of its requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The POST was sent.
    Sent,
    /// The POST was answered 2xx after this long.
    Accepted(Duration),
    /// The POST was answered 503: the server shed it.
    Overloaded,
    /// A driver was assigned this long after the POST was sent.
    Confirmed(Duration),
    /// The call failed: no driver could be assigned.
    DispatchFailed,
    /// Neither confirmed nor failed within the confirmation timeout.
    Unconfirmed,
    /// An open-loop arrival found every slot taken and was not sent.
    Shed,
    /// A confirmed call was completed after its hold.
    Completed,
    /// A confirmed call was cancelled after its hold.
    Cancelled,
    /// A request failed or got an answer the contract does not give.
    Error,
}

/// Counters of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub sent: u64,
    pub accepted: u64,
    pub overloaded: u64,
    pub confirmed: u64,
    pub dispatch_failed: u64,
    pub unconfirmed: u64,
    pub shed: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub errors: u64,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Sent => &mut self.sent,
            Outcome::Accepted(_) => &mut self.accepted,
            Outcome::Overloaded => &mut self.overloaded,
            Outcome::Confirmed(_) => &mut self.confirmed,
            Outcome::DispatchFailed => &mut self.dispatch_failed,
            Outcome::Unconfirmed => &mut self.unconfirmed,
            Outcome::Shed => &mut self.shed,
            Outcome::Completed => &mut self.completed,
            Outcome::Cancelled => &mut self.cancelled,
            Outcome::Error => &mut self.errors,
        };
        *counter += 1;
    }
}

/// The server as seen by the monitor at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Each subscriber's lag behind the head of the log, in events.
    pub lag_by_subscriber: Vec<(String, u64)>,
    /// The dispatcher's backlog, in events.
    pub dispatch_backlog: Option<u64>,
    /// The server's resident set now, in KiB.
    pub rss_kb: Option<u64>,
    /// The server's peak resident set so far, in KiB.
    pub peak_rss_kb: Option<u64>,
}

impl Sample {
    /// The largest lag of any subscriber or of the dispatcher.
    pub fn max_lag(&self) -> Option<u64> {
        self.lag_by_subscriber.iter().map(|(_, lag)| *lag).chain(self.dispatch_backlog).max()
    }
}

/// One second of the run.
#[derive(Debug, Clone)]
pub struct Second {
    pub counts: Counts,
    pub post: Latencies,
    pub confirm: Latencies,
    pub max_lag: Option<u64>,
    pub rss_kb: Option<u64>,
}

impl Second {
    fn new() -> Self {
        Self {
            counts: Counts::default(),
            post: Latencies::coarse(),
            confirm: Latencies::coarse(),
            max_lag: None,
            rss_kb: None,
        }
    }
}

/// Everything recorded so far.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Every outcome, also those after the load stopped (in-flight calls finishing).
    pub total: Counts,
    /// Outcomes while the load ran, which the rates are computed from.
    pub window: Counts,
    /// How long the load ran, once it has stopped.
    pub window_length: Option<Duration>,
    pub post: Latencies,
    pub confirm: Latencies,
    pub seconds: Vec<Second>,
    pub max_lag_by_subscriber: BTreeMap<String, u64>,
    pub max_dispatch_backlog: Option<u64>,
    pub peak_rss_kb: Option<u64>,
}

/// The shared recorder of a run, whose clock starts with the load.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    tally: Mutex<Tally>,
}

impl Recorder {
    pub fn new(start: Instant) -> Self {
        let tally = Tally {
            total: Counts::default(),
            window: Counts::default(),
            window_length: None,
            post: Latencies::precise(),
            confirm: Latencies::precise(),
            seconds: Vec::new(),
            max_lag_by_subscriber: BTreeMap::new(),
            max_dispatch_backlog: None,
            peak_rss_kb: None,
        };
        Self { start, tally: Mutex::new(tally) }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records `outcome` as of now.
    pub fn record(&self, outcome: Outcome) {
        self.record_at(Instant::now(), outcome);
    }

    pub fn record_at(&self, at: Instant, outcome: Outcome) {
        let offset = at.saturating_duration_since(self.start);
        let mut tally = self.lock();
        tally.total.add(outcome);
        if tally.window_length.is_none_or(|length| offset <= length) {
            tally.window.add(outcome);
        }
        match outcome {
            Outcome::Accepted(latency) => tally.post.record(latency),
            Outcome::Confirmed(latency) => tally.confirm.record(latency),
            _ => {}
        }
        let second = second_of(&mut tally.seconds, offset);
        second.counts.add(outcome);
        match outcome {
            Outcome::Accepted(latency) => second.post.record(latency),
            Outcome::Confirmed(latency) => second.confirm.record(latency),
            _ => {}
        }
    }

    /// Records what the monitor saw at `at`.
    pub fn sample_at(&self, at: Instant, sample: &Sample) {
        let offset = at.saturating_duration_since(self.start);
        let mut tally = self.lock();
        for (subscriber, lag) in &sample.lag_by_subscriber {
            let max = tally.max_lag_by_subscriber.entry(subscriber.clone()).or_default();
            *max = (*max).max(*lag);
        }
        tally.max_dispatch_backlog = tally.max_dispatch_backlog.max(sample.dispatch_backlog);
        let peak = sample.peak_rss_kb.max(sample.rss_kb);
        tally.peak_rss_kb = tally.peak_rss_kb.max(peak);
        let second = second_of(&mut tally.seconds, offset);
        second.max_lag = second.max_lag.max(sample.max_lag());
        second.rss_kb = second.rss_kb.max(sample.rss_kb);
    }

    /// Marks the end of the load: outcomes after `at` count in the totals only.
    pub fn stop_window_at(&self, at: Instant) {
        self.lock().window_length = Some(at.saturating_duration_since(self.start));
    }

    pub fn snapshot(&self) -> Tally {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A panic while the lock was held leaves only counters behind: still worth reading.
        self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn second_of(seconds: &mut Vec<Second>, offset: Duration) -> &mut Second {
    let index = usize::try_from(offset.as_secs()).unwrap_or(usize::MAX);
    if seconds.len() <= index {
        seconds.resize_with(index + 1, Second::new);
    }
    &mut seconds[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_spread_fall_where_expected() {
        let mut latencies = Latencies::precise();
        for ms in 1..=1000 {
            latencies.record(Duration::from_millis(ms));
        }
        let close = |q: f64, expected: f64| {
            let got = latencies.quantile_ms(q).unwrap();
            assert!((got - expected).abs() <= expected * 0.002, "q{q}: {got} ms, not {expected}");
        };
        close(0.5, 500.0);
        close(0.9, 900.0);
        close(0.99, 990.0);
        close(1.0, 1000.0);
        assert_eq!(latencies.count(), 1000);
    }

    #[test]
    fn a_few_slow_calls_show_in_the_tail_only() {
        let mut latencies = Latencies::precise();
        (0..990).for_each(|_| latencies.record(Duration::from_millis(10)));
        (0..10).for_each(|_| latencies.record(Duration::from_secs(2)));
        assert!((latencies.quantile_ms(0.5).unwrap() - 10.0).abs() < 0.05);
        assert!((latencies.quantile_ms(0.99).unwrap() - 10.0).abs() < 0.05);
        assert!((latencies.quantile_ms(0.999).unwrap() - 2000.0).abs() < 2.0);
        assert!((latencies.max_ms().unwrap() - 2000.0).abs() < 2.0);
    }

    #[test]
    fn empty_histograms_have_no_percentiles() {
        assert_eq!(Latencies::coarse().quantile_ms(0.5), None);
        assert_eq!(Latencies::precise().max_ms(), None);
    }

    #[test]
    fn latencies_beyond_the_range_are_kept_as_the_longest() {
        let mut latencies = Latencies::coarse();
        latencies.record(Duration::from_secs(3600));
        latencies.record(Duration::ZERO);
        assert_eq!(latencies.count(), 2);
        assert!(latencies.max_ms().unwrap() >= 119_000.0);
    }

    #[test]
    fn outcomes_after_the_window_count_in_the_totals_only() {
        let start = Instant::now();
        let recorder = Recorder::new(start);
        recorder.record_at(start + Duration::from_millis(200), Outcome::Accepted(Duration::from_millis(3)));
        recorder.record_at(start + Duration::from_millis(1500), Outcome::Confirmed(Duration::from_millis(40)));
        recorder.stop_window_at(start + Duration::from_secs(2));
        recorder.record_at(start + Duration::from_millis(2500), Outcome::Confirmed(Duration::from_millis(50)));
        let tally = recorder.snapshot();
        assert_eq!((tally.window.accepted, tally.window.confirmed, tally.total.confirmed), (1, 1, 2));
        assert_eq!(tally.seconds.len(), 3);
        assert_eq!(tally.seconds[0].counts.accepted, 1);
        assert_eq!(tally.seconds[1].counts.confirmed, 1);
        assert_eq!(tally.confirm.count(), 2);
    }

    #[test]
    fn samples_keep_the_maxima() {
        let start = Instant::now();
        let recorder = Recorder::new(start);
        let sample = |calls, saga, rss| Sample {
            lag_by_subscriber: vec![("calls".into(), calls), ("dispatch".into(), saga)],
            dispatch_backlog: Some(saga),
            rss_kb: Some(rss),
            peak_rss_kb: Some(rss + 100),
        };
        recorder.sample_at(start, &sample(5, 40, 1000));
        recorder.sample_at(start + Duration::from_secs(1), &sample(9, 2, 3000));
        let tally = recorder.snapshot();
        assert_eq!(tally.max_lag_by_subscriber["calls"], 9);
        assert_eq!(tally.max_lag_by_subscriber["dispatch"], 40);
        assert_eq!(tally.max_dispatch_backlog, Some(40));
        assert_eq!(tally.peak_rss_kb, Some(3100));
        assert_eq!((tally.seconds[0].max_lag, tally.seconds[1].max_lag), (Some(40), Some(9)));
    }
}
