//! A circuit breaker per channel, in memory: after enough consecutive failures it holds
//! every message back for a cooldown (they wait in the outbox, attempts untouched), then
//! lets one through; that one's fate closes or reopens it.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

/// What the breaker allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Deliver as many as there are.
    Closed,
    /// Deliver a single message as a probe.
    Probe,
    /// Deliver nothing for this long.
    Wait(Duration),
}

#[derive(Debug)]
pub(crate) struct Breaker {
    channel: &'static str,
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    state: State,
}

impl Breaker {
    pub(crate) fn new(channel: &'static str, threshold: u32, cooldown: Duration) -> Self {
        metrics::gauge!("drivercenter_notifier_breaker_open", "channel" => channel).set(0.0);
        Self { channel, threshold, cooldown, failures: 0, state: State::Closed }
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed => Admission::Closed,
            State::HalfOpen => Admission::Probe,
            State::Open { until } if now >= until => {
                tracing::info!(channel = self.channel, "circuit breaker half-open; sending one message");
                self.state = State::HalfOpen;
                Admission::Probe
            }
            State::Open { until } => Admission::Wait(until - now),
        }
    }

    pub(crate) fn succeeded(&mut self) {
        if self.state != State::Closed {
            tracing::info!(channel = self.channel, "circuit breaker closed");
            metrics::gauge!("drivercenter_notifier_breaker_open", "channel" => self.channel).set(0.0);
        }
        self.failures = 0;
        self.state = State::Closed;
    }

    pub(crate) fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let trips = match self.state {
            State::HalfOpen => true,
            State::Closed => self.failures >= self.threshold,
            State::Open { .. } => false,
        };
        if trips {
            tracing::warn!(
                channel = self.channel,
                failures = self.failures,
                cooldown = ?self.cooldown,
                "circuit breaker open; messages wait in the outbox"
            );
            metrics::gauge!("drivercenter_notifier_breaker_open", "channel" => self.channel).set(1.0);
            self.state = State::Open { until: now + self.cooldown };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_failures() {
        let now = Instant::now();
        let mut breaker = Breaker::new("test", 3, COOLDOWN);
        breaker.failed(now);
        breaker.failed(now);
        assert_eq!(breaker.admit(now), Admission::Closed);
        breaker.failed(now);
        assert_eq!(breaker.admit(now), Admission::Wait(COOLDOWN));
    }

    #[test]
    fn a_success_resets_the_count() {
        let now = Instant::now();
        let mut breaker = Breaker::new("test", 2, COOLDOWN);
        breaker.failed(now);
        breaker.succeeded();
        breaker.failed(now);
        assert_eq!(breaker.admit(now), Admission::Closed);
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let now = Instant::now();
        let mut breaker = Breaker::new("test", 1, COOLDOWN);
        breaker.failed(now);
        let later = now + COOLDOWN;
        assert_eq!(breaker.admit(later), Admission::Probe);
        breaker.failed(later);
        assert_eq!(breaker.admit(later), Admission::Wait(COOLDOWN), "a failed probe reopens it");
        let much_later = later + COOLDOWN;
        assert_eq!(breaker.admit(much_later), Admission::Probe);
        breaker.succeeded();
        assert_eq!(breaker.admit(much_later), Admission::Closed);
    }
}
