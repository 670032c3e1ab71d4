//! The view documents and how each event changes them. Pure: the projector does the IO.

use cqrs_es::Aggregate;
use domain::{
    Assignment, AssignmentEvent, AssignmentStatus, Call, CallEvent, CallRequest, CallStatus, DriveType, Driver,
    DriverEvent, DriverStatus, Location, Timestamp,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use store::{AnyEvent, LoggedEvent};
use uuid::Uuid;

use crate::labels;

/// A view that folds the events of one aggregate's stream into one row keyed by the
/// aggregate id.
pub trait StreamView: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The subscriber's name: its checkpoint row and the name `replay` takes.
    const NAME: &'static str;
    /// The aggregate type whose streams the view folds.
    const AGGREGATE: &'static str;
    const TABLE: &'static str;
    const KEY: &'static str;
    /// Extra columns that queries filter or sort on, filled by [`Self::index_columns`].
    const INDEX_COLUMNS: &'static [&'static str];

    /// The next state of the view; `None` for an event that precedes the view's creation.
    fn apply(view: Option<Self>, event: &AnyEvent, logged: &LoggedEvent) -> Option<Self>;
    fn index_columns(&self) -> Vec<String>;
    fn version(&self) -> i64;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DriverSummary {
    pub driver_id: Uuid,
    pub name: String,
    pub tel: String,
}

/// What a customer sees of a call (API.md, "GET /calls/{call_id}").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallView {
    pub call_id: Uuid,
    pub tel: String,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Location))]
    pub pickup: Location,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Location>))]
    pub destination: Option<Location>,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::DriveType))]
    pub drive_type: DriveType,
    pub fare: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::CallStatus))]
    pub status: CallStatus,
    pub status_label: String,
    pub driver: Option<DriverSummary>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub requested_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub confirmed_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub cancelled_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub completed_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub failed_at: Option<Timestamp>,
    pub failure_reason: Option<String>,
    pub cancel_reason: Option<String>,
    pub version: i64,
}

impl CallView {
    /// The view of a call that was just requested.
    pub fn requested(request: &CallRequest) -> Self {
        CallView {
            call_id: request.call_id,
            tel: request.tel.to_string(),
            pickup: request.pickup.clone(),
            destination: request.destination.clone(),
            drive_type: request.drive_type,
            fare: request.fare.krw(),
            status: CallStatus::Requested,
            status_label: labels::call(CallStatus::Requested).to_string(),
            driver: None,
            requested_at: request.requested_at,
            confirmed_at: None,
            cancelled_at: None,
            completed_at: None,
            failed_at: None,
            failure_reason: None,
            cancel_reason: None,
            version: 1,
        }
    }

    fn set_status(&mut self, status: CallStatus) {
        self.status = status;
        self.status_label = labels::call(status).to_string();
    }
}

impl StreamView for CallView {
    const NAME: &'static str = "calls";
    const AGGREGATE: &'static str = <Call as Aggregate>::TYPE;
    const TABLE: &'static str = "call_views";
    const KEY: &'static str = "call_id";
    const INDEX_COLUMNS: &'static [&'static str] = &["tel", "requested_at"];

    fn apply(view: Option<Self>, event: &AnyEvent, logged: &LoggedEvent) -> Option<Self> {
        let AnyEvent::Call(event) = event else { return None };
        let mut view = match (view, event) {
            (None, CallEvent::CallRequested(request)) => CallView::requested(request),
            (Some(view), _) => view,
            (None, _) => return None,
        };
        match event {
            CallEvent::CallRequested(_) => {}
            CallEvent::CallDispatchStarted { .. } => view.set_status(CallStatus::Dispatching),
            CallEvent::CallConfirmed { driver, confirmed_at } => {
                view.driver = Some(DriverSummary {
                    driver_id: driver.driver_id,
                    name: driver.name.clone(),
                    tel: driver.tel.to_string(),
                });
                view.confirmed_at = Some(*confirmed_at);
                view.set_status(CallStatus::Confirmed);
            }
            CallEvent::CallCancelled { reason, cancelled_at } => {
                view.cancelled_at = Some(*cancelled_at);
                view.cancel_reason = reason.clone();
                view.set_status(CallStatus::Cancelled);
            }
            CallEvent::CallCompleted { completed_at } => {
                view.completed_at = Some(*completed_at);
                view.set_status(CallStatus::Completed);
            }
            CallEvent::CallFailed { reason, failed_at } => {
                view.failed_at = Some(*failed_at);
                view.failure_reason = Some(reason.clone());
                view.set_status(CallStatus::Failed);
            }
        }
        view.version = logged.sequence;
        Some(view)
    }

    fn index_columns(&self) -> Vec<String> {
        vec![self.tel.clone(), history_key(self.requested_at)]
    }

    fn version(&self) -> i64 {
        self.version
    }
}

/// Sortable text for a time: fixed width, so that text order is time order.
pub(crate) fn history_key(at: Timestamp) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The wire name of a driver status, as stored in the `status` column.
pub fn driver_status_name(status: DriverStatus) -> &'static str {
    match status {
        DriverStatus::Offline => "OFFLINE",
        DriverStatus::Available => "AVAILABLE",
        DriverStatus::Assigned => "ASSIGNED",
    }
}

/// A driver as operators see them (API.md, "Drivers").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DriverView {
    pub driver_id: Uuid,
    pub name: String,
    pub tel: String,
    pub can_drive_manual: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::DriverStatus))]
    pub status: DriverStatus,
    pub status_label: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Location>))]
    pub location: Option<Location>,
    pub current_call_id: Option<Uuid>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub registered_at: Timestamp,
    pub version: i64,
}

impl DriverView {
    fn set_status(&mut self, status: DriverStatus) {
        self.status = status;
        self.status_label = labels::driver(status).to_string();
    }
}

impl StreamView for DriverView {
    const NAME: &'static str = "drivers";
    const AGGREGATE: &'static str = <Driver as Aggregate>::TYPE;
    const TABLE: &'static str = "driver_views";
    const KEY: &'static str = "driver_id";
    const INDEX_COLUMNS: &'static [&'static str] = &["status", "registered_at"];

    fn apply(view: Option<Self>, event: &AnyEvent, logged: &LoggedEvent) -> Option<Self> {
        let AnyEvent::Driver(event) = event else { return None };
        let mut view = match (view, event) {
            (None, DriverEvent::DriverRegistered { driver_id, name, tel, can_drive_manual, registered_at }) => {
                DriverView {
                    driver_id: *driver_id,
                    name: name.clone(),
                    tel: tel.to_string(),
                    can_drive_manual: *can_drive_manual,
                    status: DriverStatus::Offline,
                    status_label: labels::driver(DriverStatus::Offline).to_string(),
                    location: None,
                    current_call_id: None,
                    registered_at: *registered_at,
                    version: 0,
                }
            }
            (Some(view), _) => view,
            (None, _) => return None,
        };
        match event {
            DriverEvent::DriverRegistered { .. } => {}
            DriverEvent::DriverWentOnline { location, .. } => {
                view.location = Some(location.clone());
                view.set_status(DriverStatus::Available);
            }
            DriverEvent::DriverLocationUpdated { location, .. } => view.location = Some(location.clone()),
            DriverEvent::DriverWentOffline { .. } => view.set_status(DriverStatus::Offline),
            DriverEvent::DriverReserved { call_id, .. } => {
                view.current_call_id = Some(*call_id);
                view.set_status(DriverStatus::Assigned);
            }
            // A driver cannot go offline while reserved, so a released driver is online.
            DriverEvent::DriverReleased { .. } => {
                view.current_call_id = None;
                view.set_status(DriverStatus::Available);
            }
        }
        view.version = logged.sequence;
        Some(view)
    }

    fn index_columns(&self) -> Vec<String> {
        vec![driver_status_name(self.status).to_string(), history_key(self.registered_at)]
    }

    fn version(&self) -> i64 {
        self.version
    }
}

/// One call's dispatch (API.md, "Assignments").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssignmentView {
    pub call_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AssignmentStatus))]
    pub status: AssignmentStatus,
    pub status_label: String,
    pub driver_id: Option<Uuid>,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::DriveType))]
    pub drive_type: DriveType,
    /// The drivers offered when dispatch began, nearest first.
    pub candidates: Vec<Uuid>,
    /// The drivers a reservation was attempted for, in order.
    pub candidates_tried: Vec<Uuid>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub requested_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub confirmed_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub cancelled_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub completed_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub failed_at: Option<Timestamp>,
    pub failure_reason: Option<String>,
    pub version: i64,
}

impl AssignmentView {
    fn set_status(&mut self, status: AssignmentStatus) {
        self.status = status;
        self.status_label = labels::assignment(status).to_string();
    }
}

impl StreamView for AssignmentView {
    const NAME: &'static str = "assignments";
    const AGGREGATE: &'static str = <Assignment as Aggregate>::TYPE;
    const TABLE: &'static str = "assignment_views";
    const KEY: &'static str = "call_id";
    const INDEX_COLUMNS: &'static [&'static str] = &["requested_at"];

    fn apply(view: Option<Self>, event: &AnyEvent, logged: &LoggedEvent) -> Option<Self> {
        let AnyEvent::Assignment(event) = event else {
            return None;
        };
        let mut view = match (view, event) {
            (None, AssignmentEvent::AssignmentRequested { call_id, drive_type, candidates, requested_at, .. }) => {
                AssignmentView {
                    call_id: *call_id,
                    status: AssignmentStatus::Requested,
                    status_label: labels::assignment(AssignmentStatus::Requested).to_string(),
                    driver_id: None,
                    drive_type: *drive_type,
                    candidates: candidates.clone(),
                    candidates_tried: Vec::new(),
                    requested_at: *requested_at,
                    confirmed_at: None,
                    cancelled_at: None,
                    completed_at: None,
                    failed_at: None,
                    failure_reason: None,
                    version: 0,
                }
            }
            (Some(view), _) => view,
            (None, _) => return None,
        };
        match event {
            AssignmentEvent::AssignmentRequested { .. } => {}
            AssignmentEvent::AssignmentCandidateRefused { driver_id, .. } => view.candidates_tried.push(*driver_id),
            AssignmentEvent::AssignmentConfirmed { driver_id, confirmed_at } => {
                view.candidates_tried.push(*driver_id);
                view.driver_id = Some(*driver_id);
                view.confirmed_at = Some(*confirmed_at);
                view.set_status(AssignmentStatus::Confirmed);
            }
            AssignmentEvent::AssignmentCancelled { cancelled_at, .. } => {
                view.cancelled_at = Some(*cancelled_at);
                view.set_status(AssignmentStatus::Cancelled);
            }
            AssignmentEvent::AssignmentFailed { reason, failed_at } => {
                view.failed_at = Some(*failed_at);
                view.failure_reason = Some(reason.clone());
                view.set_status(AssignmentStatus::Failed);
            }
            AssignmentEvent::AssignmentCompleted { completed_at, .. } => {
                view.completed_at = Some(*completed_at);
                view.set_status(AssignmentStatus::Completed);
            }
        }
        view.version = logged.sequence;
        Some(view)
    }

    fn index_columns(&self) -> Vec<String> {
        vec![history_key(self.requested_at)]
    }

    fn version(&self) -> i64 {
        self.version
    }
}
