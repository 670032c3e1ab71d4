//! The Call aggregate: one customer's request for a driver, from request to a terminal
//! state (completed, cancelled or failed). Stream id: the call id.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::values::{DriveType, Fare, Location, Tel};
use crate::{domain_event, event_sourced, Rejection, Timestamp};

/// What the customer asked for; fixed once the call is requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRequest {
    pub call_id: Uuid,
    pub tel: Tel,
    pub pickup: Location,
    pub destination: Option<Location>,
    pub drive_type: DriveType,
    pub fare: Fare,
    pub requested_at: Timestamp,
}

/// The driver a call was confirmed with, as the customer sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedDriver {
    pub driver_id: Uuid,
    pub name: String,
    pub tel: Tel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallStatus {
    #[default]
    Requested,
    Dispatching,
    Confirmed,
    Completed,
    Cancelled,
    Failed,
}

impl CallStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallCommand {
    /// Repeating the identical request is a no-op, so a retried POST is safe.
    Request(CallRequest),
    StartDispatch {
        at: Timestamp,
    },
    Confirm {
        driver: AssignedDriver,
        at: Timestamp,
    },
    Cancel {
        reason: Option<String>,
        at: Timestamp,
    },
    Complete {
        at: Timestamp,
    },
    Fail {
        reason: String,
        at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallEvent {
    CallRequested(CallRequest),
    CallDispatchStarted { started_at: Timestamp },
    CallConfirmed { driver: AssignedDriver, confirmed_at: Timestamp },
    CallCancelled { reason: Option<String>, cancelled_at: Timestamp },
    CallCompleted { completed_at: Timestamp },
    CallFailed { reason: String, failed_at: Timestamp },
}

domain_event!(CallEvent {
    CallRequested,
    CallDispatchStarted,
    CallConfirmed,
    CallCancelled,
    CallCompleted,
    CallFailed,
});

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    #[error("no such call")]
    NotFound,
    #[error("a different call already exists with this id")]
    AlreadyExists,
    #[error("the call is already confirmed with another driver")]
    AlreadyConfirmed,
    #[error("the call is already cancelled")]
    AlreadyCancelled,
    #[error("the call is already completed")]
    AlreadyCompleted,
    #[error("the call has already failed")]
    AlreadyFailed,
    #[error("the call has no confirmed driver yet")]
    NotConfirmed,
}

impl Rejection for CallError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "CALL_NOT_FOUND",
            Self::AlreadyExists => "CALL_ALREADY_EXISTS",
            Self::AlreadyConfirmed => "CALL_ALREADY_CONFIRMED",
            Self::AlreadyCancelled => "CALL_ALREADY_CANCELLED",
            Self::AlreadyCompleted => "CALL_ALREADY_COMPLETED",
            Self::AlreadyFailed => "CALL_ALREADY_FAILED",
            Self::NotConfirmed => "CALL_NOT_CONFIRMED",
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Call {
    request: Option<CallRequest>,
    status: CallStatus,
    driver: Option<AssignedDriver>,
}

impl Call {
    pub fn status(&self) -> CallStatus {
        self.status
    }

    pub fn request(&self) -> Option<&CallRequest> {
        self.request.as_ref()
    }

    pub fn driver(&self) -> Option<&AssignedDriver> {
        self.driver.as_ref()
    }

    /// Terminal calls accept no further change: each says why with its own rejection.
    fn ensure_open(&self) -> Result<(), CallError> {
        match self.status {
            CallStatus::Completed => Err(CallError::AlreadyCompleted),
            CallStatus::Cancelled => Err(CallError::AlreadyCancelled),
            CallStatus::Failed => Err(CallError::AlreadyFailed),
            CallStatus::Requested | CallStatus::Dispatching | CallStatus::Confirmed => Ok(()),
        }
    }

    fn decide(&self, command: CallCommand) -> Result<Option<CallEvent>, CallError> {
        let Some(existing) = &self.request else {
            return match command {
                CallCommand::Request(request) => Ok(Some(CallEvent::CallRequested(request))),
                _ => Err(CallError::NotFound),
            };
        };
        match command {
            CallCommand::Request(request) if request == *existing => Ok(None),
            CallCommand::Request(_) => Err(CallError::AlreadyExists),
            CallCommand::StartDispatch { at } => {
                self.ensure_open()?;
                Ok((self.status == CallStatus::Requested).then_some(CallEvent::CallDispatchStarted { started_at: at }))
            }
            CallCommand::Confirm { driver, at } => {
                self.ensure_open()?;
                match &self.driver {
                    None => Ok(Some(CallEvent::CallConfirmed { driver, confirmed_at: at })),
                    Some(current) if current.driver_id == driver.driver_id => Ok(None),
                    Some(_) => Err(CallError::AlreadyConfirmed),
                }
            }
            CallCommand::Cancel { reason, at } => {
                self.ensure_open()?;
                Ok(Some(CallEvent::CallCancelled { reason, cancelled_at: at }))
            }
            CallCommand::Complete { at } => {
                self.ensure_open()?;
                match self.status {
                    CallStatus::Confirmed => Ok(Some(CallEvent::CallCompleted { completed_at: at })),
                    _ => Err(CallError::NotConfirmed),
                }
            }
            CallCommand::Fail { reason, at } => match self.status {
                CallStatus::Failed => Ok(None),
                CallStatus::Confirmed => Err(CallError::AlreadyConfirmed),
                _ => {
                    self.ensure_open()?;
                    Ok(Some(CallEvent::CallFailed { reason, failed_at: at }))
                }
            },
        }
    }
}

event_sourced!(Call, "call", CallCommand, CallEvent, CallError);

impl Call {
    /// How each event changes the state; every event is a fact, so nothing here fails.
    fn evolve(&mut self, event: CallEvent) {
        match event {
            CallEvent::CallRequested(request) => {
                self.request = Some(request);
                self.status = CallStatus::Requested;
            }
            CallEvent::CallDispatchStarted { .. } => self.status = CallStatus::Dispatching,
            CallEvent::CallConfirmed { driver, .. } => {
                self.driver = Some(driver);
                self.status = CallStatus::Confirmed;
            }
            CallEvent::CallCancelled { .. } => self.status = CallStatus::Cancelled,
            CallEvent::CallCompleted { .. } => self.status = CallStatus::Completed,
            CallEvent::CallFailed { .. } => self.status = CallStatus::Failed,
        }
    }
}
