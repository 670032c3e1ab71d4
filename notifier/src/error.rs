//! The notifier's one error type: bad settings, unknown or unready rows for operators,
//! failed deliveries, and the store's failures.

use std::time::Duration;

use store::StoreError;
use thiserror::Error;
use uuid::Uuid;

use crate::NotificationState;

#[derive(Debug, Error)]
pub enum NotifierError {
    #[error("invalid notifier configuration: {0}")]
    Config(String),
    #[error("no notification has the id {0}")]
    NotFound(Uuid),
    #[error("notification {id} is {state}, not DEAD")]
    NotDead { id: Uuid, state: NotificationState },
    #[error("stored notification {id} cannot be read: {reason}")]
    CorruptRow { id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the request failed")]
    Transport(#[from] reqwest::Error),
    #[error("answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the provider refused the message: {code} {message}")]
    Provider { code: String, message: String },
}

impl From<sqlx::Error> for NotifierError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(error))
    }
}

impl NotifierError {
    /// A delivery failure that no retry can mend: the receiver refused the request itself
    /// (4xx, except 408 Request Timeout and 429 Too Many Requests, which ask for later).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Status { status, .. } if (400..500).contains(status) && !matches!(status, 408 | 429))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> NotifierError {
        NotifierError::Status { status, body: String::new() }
    }

    #[test]
    fn client_errors_are_permanent_except_timeouts_and_throttling() {
        assert!(status(400).is_permanent());
        assert!(status(404).is_permanent());
        assert!(!status(408).is_permanent());
        assert!(!status(429).is_permanent());
        assert!(!status(500).is_permanent());
        assert!(!status(503).is_permanent());
        assert!(!NotifierError::Timeout(Duration::from_secs(1)).is_permanent());
        assert!(!NotifierError::Provider { code: "-1".into(), message: "busy".into() }.is_permanent());
    }
}
