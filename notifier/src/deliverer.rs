//! The deliverer: takes due PENDING rows from the outbox and sends each through the
//! channel with a timeout; a success marks the row DELIVERED, a failure schedules the
//! next attempt by exponential backoff with jitter, and the last allowed attempt (or a
//! refusal no retry can mend) leaves it DEAD for an operator. Attempts live in the row,
//! so a restart keeps them.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::breaker::{Admission, Breaker};
use crate::channel::{Channel, Outgoing};
use crate::queries::{self, Outcome, Row};
use crate::{NotifierConfig, NotifierError};

/// Rows claimed per step while the breaker is closed.
const BATCH_SIZE: usize = 16;

/// Time beyond the batch's worst case before a claimed row is due again for others.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How many rows a step looked at: sent (whatever the answer) or put back untried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    pub attempted: usize,
    pub released: usize,
}

#[derive(Debug)]
pub struct Deliverer {
    store: store::Store,
    config: NotifierConfig,
    channel: Channel,
    breaker: Breaker,
    backoff: ExponentialBuilder,
    written: Arc<Notify>,
}

impl Deliverer {
    pub(crate) fn new(store: store::Store, config: NotifierConfig, channel: Channel, written: Arc<Notify>) -> Self {
        let breaker = Breaker::new(channel.name(), config.breaker_threshold, config.breaker_cooldown);
        let backoff = ExponentialBuilder::new()
            .with_min_delay(config.backoff_base)
            .with_max_delay(config.backoff_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self { store, config, channel, breaker, backoff, written }
    }

    /// Sends what is due, as far as the breaker allows.
    pub async fn run_once(&mut self) -> Result<Delivered, NotifierError> {
        let limit = match self.breaker.admit(Instant::now()) {
            Admission::Closed => BATCH_SIZE,
            Admission::Probe => 1,
            Admission::Wait(_) => return Ok(Delivered::default()),
        };
        let lease = Uuid::now_v7();
        let lease_for = (self.config.timeout + Duration::from_secs(1)) * limit as u32 + LEASE_MARGIN;
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(lease_for).unwrap_or(chrono::Duration::MAX);
        let rows = queries::claim(&self.store, now, limit, lease, lease_until).await?;
        let mut step = Delivered::default();
        for row in rows {
            if matches!(self.breaker.admit(Instant::now()), Admission::Wait(_)) {
                queries::finish(&self.store, &row.id, lease, Outcome::Released { at: Utc::now() }).await?;
                step.released += 1;
                continue;
            }
            self.deliver(row, lease).await?;
            step.attempted += 1;
        }
        Ok(step)
    }

    async fn deliver(&mut self, row: Row, lease: Uuid) -> Result<(), NotifierError> {
        let channel = self.channel.name();
        let outgoing = Outgoing {
            recipient: row.recipient()?,
            variables: row.variables()?,
            id: row.id.clone(),
            call_id: row.call_id.clone(),
            kind: row.kind.clone(),
            template_code: row.template_code.clone(),
            text: row.text.clone(),
        };
        let attempt = row.attempts.saturating_add(1);
        let span = tracing::info_span!(
            "notification",
            notification_id = %row.id,
            correlation_id = %row.call_id,
            recipient = %outgoing.recipient.masked(),
            channel,
            attempt,
        );
        // Instrumented, not entered: a guard held across an await would leave this span
        // current on whichever task next runs on the thread, after it closed.
        self.attempt(&row, lease, &outgoing, attempt).instrument(span).await
    }

    /// Sends one row and records the outcome: delivered, due again later, or dead.
    async fn attempt(
        &mut self,
        row: &Row,
        lease: Uuid,
        outgoing: &Outgoing,
        attempt: i64,
    ) -> Result<(), NotifierError> {
        let channel = self.channel.name();
        let sent = match tokio::time::timeout(self.config.timeout, self.channel.send(outgoing)).await {
            Ok(sent) => sent,
            Err(_) => Err(NotifierError::Timeout(self.config.timeout)),
        };
        let outcome = match &sent {
            Ok(()) => {
                self.breaker.succeeded();
                metrics::counter!("drivercenter_notifications_delivered_total", "channel" => channel).increment(1);
                tracing::info!("notification delivered");
                Outcome::Delivered { at: Utc::now() }
            }
            Err(error) => {
                metrics::counter!("drivercenter_notifications_failed_total", "channel" => channel).increment(1);
                let permanent = error.is_permanent();
                // A refusal of this one request says nothing about the provider's health.
                if permanent {
                    self.breaker.succeeded();
                } else {
                    self.breaker.failed(Instant::now());
                }
                let error_text = store::error_chain(error);
                if permanent || attempt >= i64::from(self.config.max_attempts) {
                    metrics::counter!("drivercenter_notifications_dead_total", "channel" => channel).increment(1);
                    tracing::error!(error = %error_text, permanent, "notification dead; an operator can retry it");
                    self.finish(&row.id, lease, Outcome::Dead { error: &error_text }).await?;
                    return Ok(());
                }
                let delay = self.delay_after(attempt);
                tracing::warn!(error = %error_text, retry_in = ?delay, "notification not delivered; will retry");
                let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                self.finish(&row.id, lease, Outcome::Retry { at, error: &error_text }).await?;
                return Ok(());
            }
        };
        self.finish(&row.id, lease, outcome).await
    }

    async fn finish(&self, id: &str, lease: Uuid, outcome: Outcome<'_>) -> Result<(), NotifierError> {
        if !queries::finish(&self.store, id, lease, outcome).await? {
            tracing::warn!("the lease ran out before the delivery ended; another deliverer owns the row");
        }
        Ok(())
    }

    /// The wait after failed attempt number `attempt` (1-based).
    fn delay_after(&self, attempt: i64) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(0);
        self.backoff.build().nth(index).unwrap_or(self.config.backoff_max)
    }

    /// Runs until `shutdown` turns true. While idle it sleeps until the next row is due,
    /// the breaker's cooldown ends, the outbox writer rings, or the poll interval passes.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let pause = match self.run_once().await {
                Ok(step) if step.attempted > 0 => continue,
                Ok(_) => self.idle_pause().await,
                Err(error) => {
                    tracing::error!(error = %store::error_chain(&error), "delivery step failed; retrying");
                    self.config.poll_interval
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.written.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn idle_pause(&mut self) -> Duration {
        let poll = self.config.poll_interval;
        if let Admission::Wait(cooldown) = self.breaker.admit(Instant::now()) {
            return cooldown.min(poll);
        }
        match queries::next_due(&self.store).await {
            Ok(Some(due)) => {
                (due - Utc::now()).to_std().unwrap_or(Duration::ZERO).clamp(Duration::from_millis(1), poll)
            }
            Ok(None) => poll,
            Err(error) => {
                tracing::warn!(error = %store::error_chain(&error), "cannot tell when the next notification is due");
                poll
            }
        }
    }
}
