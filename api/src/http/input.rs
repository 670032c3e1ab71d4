//! Request bodies as clients send them, and their parsing into domain values: every
//! rule is checked here, once, before anything is stored.

use chrono::Utc;
use domain::{DriveType, Fare, Location, LocationError, Tel, ValueError};
use serde::Deserialize;
use store::CommandMeta;
use uuid::Uuid;

use super::extract::RequestContext;
use super::ApiError;

/// A location as sent: coordinates may be left out when the address names a Seoul
/// district (e.g. `마포`, `서대문구`), whose centre is then used.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    /// At most 200 characters.
    #[schema(example = "서울 마포구 월드컵로")]
    pub address: Option<String>,
    /// Give both `lat` and `lng`, or neither.
    #[schema(minimum = -90.0, maximum = 90.0, example = 37.5663)]
    pub lat: Option<f64>,
    #[schema(minimum = -180.0, maximum = 180.0, example = 126.9019)]
    pub lng: Option<f64>,
}

impl LocationInput {
    pub fn parse(&self) -> Result<Location, ApiError> {
        Location::resolve(self.address.as_deref(), self.lat, self.lng).map_err(location_problem)
    }
}

pub fn location_problem(error: LocationError) -> ApiError {
    let code = match error {
        LocationError::Unknown(_) => "UNKNOWN_LOCATION",
        LocationError::OutOfRange | LocationError::HalfCoordinates | LocationError::AddressTooLong => {
            "INVALID_LOCATION"
        }
    };
    ApiError::invalid(code, error.to_string())
}

/// A listing's `?limit=`: 1 to 100, 20 when absent.
pub fn parse_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(20),
        Some(raw) => raw
            .parse()
            .ok()
            .filter(|limit| (1..=100).contains(limit))
            .ok_or_else(|| ApiError::invalid("INVALID_LIMIT", "limit must be a whole number from 1 to 100")),
    }
}

pub fn parse_tel(tel: &str) -> Result<Tel, ApiError> {
    Tel::parse(tel).map_err(value_problem)
}

pub fn parse_fare(krw: i64) -> Result<Fare, ApiError> {
    Fare::new(krw).map_err(value_problem)
}

fn value_problem(error: ValueError) -> ApiError {
    let code = match error {
        ValueError::InvalidTel(_) => "INVALID_TEL",
        ValueError::InvalidFare(_) => "INVALID_FARE",
    };
    ApiError::invalid(code, error.to_string())
}

pub fn parse_drive_type(drive_type: Option<&str>) -> Result<DriveType, ApiError> {
    match drive_type {
        None | Some("AUTO") => Ok(DriveType::Auto),
        Some("MANUAL") => Ok(DriveType::Manual),
        Some(other) => {
            Err(ApiError::invalid("INVALID_DRIVE_TYPE", format!("drive_type must be AUTO or MANUAL, not `{other}`")))
        }
    }
}

/// A free-text reason, trimmed; empty means none.
pub fn parse_reason(reason: Option<String>) -> Result<Option<String>, ApiError> {
    const MAX_CHARS: usize = 200;
    let reason = reason.map(|reason| reason.trim().to_string()).filter(|reason| !reason.is_empty());
    match reason {
        Some(reason) if reason.chars().count() > MAX_CHARS => {
            Err(ApiError::invalid("INVALID_REASON", format!("reason is longer than {MAX_CHARS} characters")))
        }
        reason => Ok(reason),
    }
}

/// Metadata for a command a client asked for through request `context`; the request's
/// span carries the correlation id from here on.
pub fn command_meta(context: RequestContext, correlation_id: Uuid, actor: &str) -> CommandMeta {
    tracing::Span::current().record("correlation_id", tracing::field::display(correlation_id));
    CommandMeta {
        correlation_id,
        causation_id: context.request_id,
        command_id: Uuid::now_v7(),
        actor: actor.to_string(),
        recorded_at: Utc::now(),
    }
}
