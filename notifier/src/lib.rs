//! Customer notifications: a checkpointed subscriber turns the call events a customer
//! cares about (confirmed, cancelled, failed, completed) into messages, written to the
//! `notifications` outbox in the same transaction as its checkpoint; a deliverer then
//! sends them through one channel (a log line, a signed webhook or a KakaoTalk AlimTalk
//! provider) with a timeout, retries with backoff and jitter, a circuit breaker and a
//! dead-letter state that an operator can list and retry.
//!
//! Depends on the domain and the store; knows nothing of HTTP serving, the views or the
//! saga. Undelivered messages wait in the database, never in memory.

mod breaker;
mod channel;
mod config;
mod deliverer;
mod error;
mod message;
mod outbox;
pub mod queries;

use std::sync::Arc;

use tokio::sync::Notify;

pub use config::{AlimTalkConfig, ChannelConfig, NotifierConfig, WebhookConfig};
pub use deliverer::{Delivered, Deliverer};
pub use error::NotifierError;
pub use message::NotificationKind;
pub use outbox::{OutboxWriter, NOTIFIER_NAME};
pub use queries::{Notification, NotificationState};

use channel::Channel;

/// A validated configuration with its HTTP client built: what the two workers are made
/// from. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    config: NotifierConfig,
    channel: Channel,
    /// Rung by the outbox writer after it commits new rows, so that the deliverer of the
    /// same process sends them at once instead of at its next poll.
    written: Arc<Notify>,
}

impl Default for Notifier {
    /// The `log` channel with the default timings; needs no network.
    fn default() -> Self {
        Self { config: NotifierConfig::default(), channel: Channel::Log, written: Arc::default() }
    }
}

impl Notifier {
    /// Checks `config` and builds its channel; the error names the setting that is wrong.
    pub fn new(config: NotifierConfig) -> Result<Self, NotifierError> {
        config.validate()?;
        let channel = Channel::new(&config.channel)?;
        Ok(Self { config, channel, written: Arc::default() })
    }

    pub fn config(&self) -> &NotifierConfig {
        &self.config
    }

    /// The channel's name, as metrics label it: `log`, `webhook` or `alimtalk`.
    pub fn channel_name(&self) -> &'static str {
        self.channel.name()
    }

    pub fn outbox_writer(&self, store: store::Store) -> OutboxWriter {
        OutboxWriter::new(store, self.written.clone())
    }

    pub fn deliverer(&self, store: store::Store) -> Deliverer {
        Deliverer::new(store, self.config.clone(), self.channel.clone(), self.written.clone())
    }
}
