//! Watches the server once a second while the load runs: the subscribers' lag and the
//! dispatch backlog from its `/metrics`, and its memory from `/proc/PID/status`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::Api;
use crate::stats::{Recorder, Sample};

/// How often the server is looked at.
pub const INTERVAL: Duration = Duration::from_secs(1);

const LAG_METRIC: &str = "drivercenter_subscriber_lag_events";
const BACKLOG_METRIC: &str = "drivercenter_dispatch_backlog_events";

/// Samples the server every [`INTERVAL`] until `stop` turns true.
pub async fn run(api: Api, server_pid: Option<u32>, recorder: Arc<Recorder>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(INTERVAL);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => continue,
        }
        let at = Instant::now();
        // A scrape that fails (the server is saturated) leaves the lag unknown for that second.
        let mut sample = match tokio::time::timeout(INTERVAL, api.metrics()).await {
            Ok(Ok(text)) => parse_metrics(&text),
            _ => Sample::default(),
        };
        if let Some(pid) = server_pid {
            if let Ok(status) = tokio::fs::read_to_string(format!("/proc/{pid}/status")).await {
                sample.rss_kb = status_kb(&status, "VmRSS");
                sample.peak_rss_kb = status_kb(&status, "VmHWM");
            }
        }
        recorder.sample_at(at, &sample);
    }
}

/// The lag gauges in a Prometheus text exposition.
pub fn parse_metrics(text: &str) -> Sample {
    let mut sample = Sample::default();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Some(value) = value.parse::<f64>().ok().filter(|value| value.is_finite() && *value >= 0.0) else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let value = value.round() as u64;
        match name {
            BACKLOG_METRIC => sample.dispatch_backlog = Some(value),
            LAG_METRIC => {
                let subscriber = label(labels, "subscriber").unwrap_or_default();
                sample.lag_by_subscriber.push((subscriber.to_string(), value));
            }
            _ => {}
        }
    }
    sample
}

/// The value of label `name` in `a="x",b="y"}`.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.trim_end_matches('}').split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// A `Key:   1234 kB` line of `/proc/PID/status`, in KiB.
pub fn status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP drivercenter_subscriber_lag_events lag
# TYPE drivercenter_subscriber_lag_events gauge
drivercenter_subscriber_lag_events{subscriber=\"calls\"} 12
drivercenter_subscriber_lag_events{subscriber=\"dispatch\"} 340
drivercenter_dispatch_backlog_events 340
drivercenter_http_requests_total{method=\"POST\"} 99999
";

    #[test]
    fn lag_gauges_are_read_per_subscriber() {
        let sample = parse_metrics(METRICS);
        assert_eq!(sample.lag_by_subscriber, vec![("calls".to_string(), 12), ("dispatch".to_string(), 340)]);
        assert_eq!(sample.dispatch_backlog, Some(340));
        assert_eq!(sample.max_lag(), Some(340));
    }

    #[test]
    fn a_server_without_the_gauges_has_no_lag() {
        let sample = parse_metrics("other_metric 3\nnot a metric line\n");
        assert_eq!(sample.max_lag(), None);
    }

    #[test]
    fn memory_lines_of_proc_status_are_read_in_kib() {
        let status = "Name:\tdrivercenter\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(status_kb(status, "VmHWM"), Some(51_200));
        assert_eq!(status_kb(status, "VmRSS"), Some(40_960));
        assert_eq!(status_kb(status, "VmSwap"), None);
    }
}
