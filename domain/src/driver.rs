//! The DriverManage aggregate: one driver's roster entry. Its invariant is what keeps two
//! calls from getting the same driver: a driver holds at most one reservation, and only
//! an online, unreserved driver can be reserved. Stream id: the driver id.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::values::{DriveType, Location, Tel};
use crate::{domain_event, event_sourced, Rejection, Timestamp};

/// Why a reservation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReleaseReason {
    CallCancelled,
    CallCompleted,
    /// The reservation landed after its call could no longer use it (compensation).
    NotNeeded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverStatus {
    #[default]
    Offline,
    Available,
    Assigned,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DriverCommand {
    Register {
        driver_id: Uuid,
        name: String,
        tel: Tel,
        can_drive_manual: bool,
        at: Timestamp,
    },
    /// Going online again while online only moves the driver, so a reconnecting app is safe.
    GoOnline {
        location: Location,
        at: Timestamp,
    },
    UpdateLocation {
        location: Location,
        at: Timestamp,
    },
    GoOffline {
        at: Timestamp,
    },
    Reserve {
        call_id: Uuid,
        drive_type: DriveType,
        at: Timestamp,
    },
    Release {
        call_id: Uuid,
        reason: ReleaseReason,
        at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DriverEvent {
    DriverRegistered { driver_id: Uuid, name: String, tel: Tel, can_drive_manual: bool, registered_at: Timestamp },
    DriverWentOnline { location: Location, online_at: Timestamp },
    DriverLocationUpdated { location: Location, updated_at: Timestamp },
    DriverWentOffline { offline_at: Timestamp },
    DriverReserved { call_id: Uuid, reserved_at: Timestamp },
    DriverReleased { call_id: Uuid, reason: ReleaseReason, released_at: Timestamp },
}

domain_event!(DriverEvent {
    DriverRegistered,
    DriverWentOnline,
    DriverLocationUpdated,
    DriverWentOffline,
    DriverReserved,
    DriverReleased,
});

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DriverError {
    #[error("no such driver")]
    NotFound,
    #[error("the driver is already registered")]
    AlreadyRegistered,
    #[error("driver name must be 1 to 50 characters")]
    InvalidName,
    #[error("the driver is offline")]
    Offline,
    #[error("the driver is already reserved for another call")]
    AlreadyReserved,
    #[error("the driver is assigned to a call and cannot go offline")]
    Assigned,
    #[error("the driver cannot drive a manual transmission")]
    CannotDriveManual,
    #[error("the driver is not reserved for this call")]
    NotReservedForCall,
}

impl Rejection for DriverError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "DRIVER_NOT_FOUND",
            Self::AlreadyRegistered => "DRIVER_ALREADY_REGISTERED",
            Self::InvalidName => "INVALID_NAME",
            Self::Offline => "DRIVER_OFFLINE",
            Self::AlreadyReserved => "DRIVER_ALREADY_RESERVED",
            Self::Assigned => "DRIVER_ASSIGNED",
            Self::CannotDriveManual => "DRIVER_CANNOT_DRIVE_MANUAL",
            Self::NotReservedForCall => "DRIVER_NOT_RESERVED_FOR_CALL",
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound)
    }

    fn is_invalid_input(&self) -> bool {
        matches!(self, Self::InvalidName)
    }
}

/// A registered driver's standing facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverProfile {
    pub name: String,
    pub tel: Tel,
    pub can_drive_manual: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Driver {
    profile: Option<DriverProfile>,
    location: Option<Location>,
    online: bool,
    reserved_for: Option<Uuid>,
}

impl Driver {
    pub const MAX_NAME_CHARS: usize = 50;

    pub fn profile(&self) -> Option<&DriverProfile> {
        self.profile.as_ref()
    }

    pub fn status(&self) -> DriverStatus {
        match (self.online, self.reserved_for) {
            (_, Some(_)) => DriverStatus::Assigned,
            (true, None) => DriverStatus::Available,
            (false, None) => DriverStatus::Offline,
        }
    }

    pub fn reserved_for(&self) -> Option<Uuid> {
        self.reserved_for
    }

    fn decide(&self, command: DriverCommand) -> Result<Option<DriverEvent>, DriverError> {
        let Some(profile) = &self.profile else {
            return match command {
                DriverCommand::Register { driver_id, name, tel, can_drive_manual, at } => {
                    let name = name.trim().to_string();
                    if name.is_empty() || name.chars().count() > Self::MAX_NAME_CHARS {
                        return Err(DriverError::InvalidName);
                    }
                    Ok(Some(DriverEvent::DriverRegistered {
                        driver_id,
                        name,
                        tel,
                        can_drive_manual,
                        registered_at: at,
                    }))
                }
                _ => Err(DriverError::NotFound),
            };
        };
        match command {
            DriverCommand::Register { .. } => Err(DriverError::AlreadyRegistered),
            DriverCommand::GoOnline { location, at } if !self.online => {
                Ok(Some(DriverEvent::DriverWentOnline { location, online_at: at }))
            }
            DriverCommand::GoOnline { location, at } | DriverCommand::UpdateLocation { location, at } => {
                if !self.online {
                    return Err(DriverError::Offline);
                }
                Ok((self.location.as_ref() != Some(&location))
                    .then_some(DriverEvent::DriverLocationUpdated { location, updated_at: at }))
            }
            DriverCommand::GoOffline { at } => match (self.online, self.reserved_for) {
                (_, Some(_)) => Err(DriverError::Assigned),
                (true, None) => Ok(Some(DriverEvent::DriverWentOffline { offline_at: at })),
                (false, None) => Ok(None),
            },
            DriverCommand::Reserve { call_id, drive_type, at } => match self.reserved_for {
                Some(current) if current == call_id => Ok(None),
                Some(_) => Err(DriverError::AlreadyReserved),
                None if !self.online => Err(DriverError::Offline),
                None if !drive_type.drivable_by(profile.can_drive_manual) => Err(DriverError::CannotDriveManual),
                None => Ok(Some(DriverEvent::DriverReserved { call_id, reserved_at: at })),
            },
            DriverCommand::Release { call_id, reason, at } => match self.reserved_for {
                Some(current) if current == call_id => {
                    Ok(Some(DriverEvent::DriverReleased { call_id, reason, released_at: at }))
                }
                _ => Err(DriverError::NotReservedForCall),
            },
        }
    }
}

event_sourced!(Driver, "driver", DriverCommand, DriverEvent, DriverError);

impl Driver {
    /// How each event changes the state; every event is a fact, so nothing here fails.
    fn evolve(&mut self, event: DriverEvent) {
        match event {
            DriverEvent::DriverRegistered { name, tel, can_drive_manual, .. } => {
                self.profile = Some(DriverProfile { name, tel, can_drive_manual });
            }
            DriverEvent::DriverWentOnline { location, .. } => {
                self.online = true;
                self.location = Some(location);
            }
            DriverEvent::DriverLocationUpdated { location, .. } => self.location = Some(location),
            DriverEvent::DriverWentOffline { .. } => self.online = false,
            DriverEvent::DriverReserved { call_id, .. } => self.reserved_for = Some(call_id),
            DriverEvent::DriverReleased { .. } => self.reserved_for = None,
        }
    }
}
