//! The Assignment aggregate: one dispatch attempt for one call, from the candidates
//! offered to the driver confirmed (or the failure). Stream id: the call id.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::values::{DriveType, Location};
use crate::{domain_event, event_sourced, Rejection, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignmentStatus {
    #[default]
    Requested,
    Confirmed,
    Cancelled,
    Failed,
    Completed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssignmentCommand {
    /// Requesting again is a no-op: the first request's candidates stand.
    Request {
        call_id: Uuid,
        drive_type: DriveType,
        pickup: Location,
        candidates: Vec<Uuid>,
        at: Timestamp,
    },
    /// A candidate could not be reserved (taken meanwhile, went offline).
    RecordRefusal {
        driver_id: Uuid,
        reason: String,
        at: Timestamp,
    },
    Confirm {
        driver_id: Uuid,
        at: Timestamp,
    },
    Cancel {
        reason: Option<String>,
        at: Timestamp,
    },
    Fail {
        reason: String,
        at: Timestamp,
    },
    Complete {
        at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AssignmentEvent {
    AssignmentRequested {
        call_id: Uuid,
        drive_type: DriveType,
        pickup: Location,
        candidates: Vec<Uuid>,
        requested_at: Timestamp,
    },
    AssignmentCandidateRefused {
        driver_id: Uuid,
        reason: String,
        refused_at: Timestamp,
    },
    AssignmentConfirmed {
        driver_id: Uuid,
        confirmed_at: Timestamp,
    },
    /// Names the driver who held the assignment, if any, so that it can be released.
    AssignmentCancelled {
        driver_id: Option<Uuid>,
        reason: Option<String>,
        cancelled_at: Timestamp,
    },
    AssignmentFailed {
        reason: String,
        failed_at: Timestamp,
    },
    AssignmentCompleted {
        driver_id: Uuid,
        completed_at: Timestamp,
    },
}

domain_event!(AssignmentEvent {
    AssignmentRequested,
    AssignmentCandidateRefused,
    AssignmentConfirmed,
    AssignmentCancelled,
    AssignmentFailed,
    AssignmentCompleted,
});

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AssignmentError {
    #[error("no such assignment")]
    NotFound,
    #[error("the assignment is already confirmed with another driver")]
    AlreadyConfirmed,
    #[error("the assignment is cancelled")]
    Cancelled,
    #[error("the assignment has failed")]
    Failed,
    #[error("the assignment is completed")]
    Completed,
    #[error("the assignment has no confirmed driver")]
    NotConfirmed,
}

impl Rejection for AssignmentError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "ASSIGNMENT_NOT_FOUND",
            Self::AlreadyConfirmed => "ASSIGNMENT_ALREADY_CONFIRMED",
            Self::Cancelled => "ASSIGNMENT_CANCELLED",
            Self::Failed => "ASSIGNMENT_FAILED",
            Self::Completed => "ASSIGNMENT_COMPLETED",
            Self::NotConfirmed => "ASSIGNMENT_NOT_CONFIRMED",
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Assignment {
    requested: bool,
    status: AssignmentStatus,
    driver_id: Option<Uuid>,
}

impl Assignment {
    pub fn status(&self) -> AssignmentStatus {
        self.status
    }

    pub fn driver_id(&self) -> Option<Uuid> {
        self.driver_id
    }

    fn decide(&self, command: AssignmentCommand) -> Result<Option<AssignmentEvent>, AssignmentError> {
        if !self.requested {
            return match command {
                AssignmentCommand::Request { call_id, drive_type, pickup, candidates, at } => {
                    Ok(Some(AssignmentEvent::AssignmentRequested {
                        call_id,
                        drive_type,
                        pickup,
                        candidates,
                        requested_at: at,
                    }))
                }
                _ => Err(AssignmentError::NotFound),
            };
        }
        use AssignmentStatus as S;
        match (command, self.status) {
            (AssignmentCommand::Request { .. }, _) => Ok(None),
            (AssignmentCommand::RecordRefusal { driver_id, reason, at }, S::Requested) => {
                Ok(Some(AssignmentEvent::AssignmentCandidateRefused { driver_id, reason, refused_at: at }))
            }
            (AssignmentCommand::RecordRefusal { .. }, _) => Ok(None),
            (AssignmentCommand::Confirm { driver_id, at }, S::Requested) => {
                Ok(Some(AssignmentEvent::AssignmentConfirmed { driver_id, confirmed_at: at }))
            }
            (AssignmentCommand::Confirm { driver_id, .. }, S::Confirmed | S::Completed)
                if self.driver_id == Some(driver_id) =>
            {
                Ok(None)
            }
            (AssignmentCommand::Confirm { .. }, S::Confirmed) => Err(AssignmentError::AlreadyConfirmed),
            (AssignmentCommand::Cancel { reason, at }, S::Requested | S::Confirmed) => {
                Ok(Some(AssignmentEvent::AssignmentCancelled { driver_id: self.driver_id, reason, cancelled_at: at }))
            }
            (AssignmentCommand::Cancel { .. }, S::Cancelled | S::Failed) => Ok(None),
            (AssignmentCommand::Fail { reason, at }, S::Requested) => {
                Ok(Some(AssignmentEvent::AssignmentFailed { reason, failed_at: at }))
            }
            (AssignmentCommand::Fail { .. }, S::Failed) => Ok(None),
            (AssignmentCommand::Fail { .. }, S::Confirmed) => Err(AssignmentError::AlreadyConfirmed),
            (AssignmentCommand::Complete { at }, S::Confirmed) => Ok(Some(AssignmentEvent::AssignmentCompleted {
                driver_id: self.driver_id.ok_or(AssignmentError::NotConfirmed)?,
                completed_at: at,
            })),
            (AssignmentCommand::Complete { .. }, S::Completed) => Ok(None),
            (AssignmentCommand::Complete { .. }, S::Requested) => Err(AssignmentError::NotConfirmed),
            (_, S::Cancelled) => Err(AssignmentError::Cancelled),
            (_, S::Failed) => Err(AssignmentError::Failed),
            (_, S::Completed) => Err(AssignmentError::Completed),
        }
    }
}

event_sourced!(Assignment, "assignment", AssignmentCommand, AssignmentEvent, AssignmentError);

impl Assignment {
    /// How each event changes the state; every event is a fact, so nothing here fails.
    fn evolve(&mut self, event: AssignmentEvent) {
        match event {
            AssignmentEvent::AssignmentRequested { .. } => {
                self.requested = true;
                self.status = AssignmentStatus::Requested;
            }
            AssignmentEvent::AssignmentCandidateRefused { .. } => {}
            AssignmentEvent::AssignmentConfirmed { driver_id, .. } => {
                self.driver_id = Some(driver_id);
                self.status = AssignmentStatus::Confirmed;
            }
            AssignmentEvent::AssignmentCancelled { .. } => self.status = AssignmentStatus::Cancelled,
            AssignmentEvent::AssignmentFailed { .. } => self.status = AssignmentStatus::Failed,
            AssignmentEvent::AssignmentCompleted { .. } => self.status = AssignmentStatus::Completed,
        }
    }
}
