//! Which call events reach the customer, and what each message says (in Korean). Pure:
//! the outbox writer stores what [`compose`] returns.

use domain::{CallEvent, CallRequest, Tel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a message tells the customer; one per event it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotificationKind {
    CallConfirmed,
    CallCancelled,
    CallFailed,
    CallCompleted,
}

/// Template variables that hold a phone number, masked wherever a message is logged.
const TEL_VARIABLES: [&str; 1] = ["driverTel"];

impl NotificationKind {
    pub const ALL: [Self; 4] = [Self::CallConfirmed, Self::CallCancelled, Self::CallFailed, Self::CallCompleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallConfirmed => "CALL_CONFIRMED",
            Self::CallCancelled => "CALL_CANCELLED",
            Self::CallFailed => "CALL_FAILED",
            Self::CallCompleted => "CALL_COMPLETED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The code under which the provider has the message's template registered.
    pub fn template_code(self) -> &'static str {
        match self {
            Self::CallConfirmed => "DC_CALL_CONFIRMED",
            Self::CallCancelled => "DC_CALL_CANCELLED",
            Self::CallFailed => "DC_CALL_FAILED",
            Self::CallCompleted => "DC_CALL_COMPLETED",
        }
    }
}

/// A message ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub kind: NotificationKind,
    pub recipient: Tel,
    pub variables: Map<String, Value>,
    /// The whole message as plain text: the body of an SMS fallback, and what a webhook
    /// receiver can show.
    pub text: String,
}

/// Whether the customer is told of `event`, i.e. whether [`compose`] makes a message of it.
pub(crate) fn tells_the_customer(event: &CallEvent) -> bool {
    match event {
        CallEvent::CallConfirmed { .. }
        | CallEvent::CallCancelled { .. }
        | CallEvent::CallFailed { .. }
        | CallEvent::CallCompleted { .. } => true,
        CallEvent::CallRequested(_) | CallEvent::CallDispatchStarted { .. } => false,
    }
}

/// The message `event` of the call `request` sends its customer; `None` for events the
/// customer is not told of.
pub(crate) fn compose(event: &CallEvent, request: &CallRequest) -> Option<Message> {
    let mut variables = Map::new();
    variables.insert("callId".into(), Value::String(request.call_id.to_string()));
    let (kind, text) = match event {
        CallEvent::CallConfirmed { driver, .. } => {
            let tel = dashed(&driver.tel);
            variables.insert("driverName".into(), Value::String(driver.name.clone()));
            variables.insert("driverTel".into(), Value::String(tel.clone()));
            let text =
                format!("[대리운전] 배정 완료: {} 기사님({tel})이 배정되었습니다. 곧 출발지로 갑니다.", driver.name);
            (NotificationKind::CallConfirmed, text)
        }
        CallEvent::CallCancelled { reason, .. } => {
            let reason = reason.as_deref().map(str::trim).filter(|reason| !reason.is_empty());
            variables.insert("reason".into(), Value::String(reason.unwrap_or("").to_string()));
            let text = match reason {
                Some(reason) => format!("[대리운전] 호출이 취소되었습니다. 사유: {reason}"),
                None => "[대리운전] 호출이 취소되었습니다.".to_string(),
            };
            (NotificationKind::CallCancelled, text)
        }
        // The failure's reason is written for operators, not for the customer.
        CallEvent::CallFailed { .. } => (
            NotificationKind::CallFailed,
            "[대리운전] 죄송합니다. 배정 가능한 기사님을 찾지 못해 호출이 종료되었습니다.".to_string(),
        ),
        CallEvent::CallCompleted { .. } => {
            (NotificationKind::CallCompleted, "[대리운전] 운행이 완료되었습니다. 이용해 주셔서 감사합니다.".to_string())
        }
        CallEvent::CallRequested(_) | CallEvent::CallDispatchStarted { .. } => return None,
    };
    Some(Message { kind, recipient: request.tel.clone(), variables, text })
}

/// `01012345678` as `010-1234-5678`, the way a customer reads a number.
fn dashed(tel: &Tel) -> String {
    let digits = tel.as_str();
    let middle_end = digits.len().saturating_sub(4);
    match (digits.get(..3), digits.get(3..middle_end), digits.get(middle_end..)) {
        (Some(head), Some(middle), Some(tail)) if !middle.is_empty() => format!("{head}-{middle}-{tail}"),
        _ => digits.to_string(),
    }
}

/// `variables` with every phone number masked, for logs.
pub(crate) fn masked_variables(variables: &Map<String, Value>) -> Map<String, Value> {
    variables
        .iter()
        .map(|(name, value)| {
            let value = match value.as_str() {
                Some(tel) if TEL_VARIABLES.contains(&name.as_str()) => {
                    Value::String(Tel::parse(tel).map_or_else(|_| "****".to_string(), |tel| tel.masked()))
                }
                _ => value.clone(),
            };
            (name.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use domain::{AssignedDriver, DriveType, Fare, Location};
    use uuid::Uuid;

    use super::*;

    fn request() -> CallRequest {
        CallRequest {
            call_id: Uuid::now_v7(),
            tel: Tel::parse("010-1234-5678").unwrap(),
            pickup: Location { address: "서울 마포구".into(), lat: 37.5663, lng: 126.9019 },
            destination: None,
            drive_type: DriveType::Auto,
            fare: Fare::new(25_000).unwrap(),
            requested_at: Utc::now(),
        }
    }

    #[test]
    fn a_confirmation_names_the_driver_and_their_number() {
        let driver = AssignedDriver {
            driver_id: Uuid::now_v7(),
            name: "안채우".into(),
            tel: Tel::parse("01033457789").unwrap(),
        };
        let message =
            compose(&CallEvent::CallConfirmed { driver, confirmed_at: Utc::now() }, &request()).expect("a message");
        assert_eq!(message.kind, NotificationKind::CallConfirmed);
        assert_eq!(message.recipient.as_str(), "01012345678");
        assert_eq!(
            message.text,
            "[대리운전] 배정 완료: 안채우 기사님(010-3345-7789)이 배정되었습니다. 곧 출발지로 갑니다."
        );
        assert_eq!(message.variables["driverName"], "안채우");
        assert_eq!(message.variables["driverTel"], "010-3345-7789");
        assert_eq!(masked_variables(&message.variables)["driverTel"], "010****7789");
    }

    #[test]
    fn a_cancellation_gives_its_reason_when_there_is_one() {
        let cancelled = |reason: Option<&str>| CallEvent::CallCancelled {
            reason: reason.map(str::to_string),
            cancelled_at: Utc::now(),
        };
        assert_eq!(
            compose(&cancelled(Some("일정 변경")), &request()).unwrap().text,
            "[대리운전] 호출이 취소되었습니다. 사유: 일정 변경"
        );
        assert_eq!(compose(&cancelled(Some("  ")), &request()).unwrap().text, "[대리운전] 호출이 취소되었습니다.");
    }

    #[test]
    fn requests_and_dispatch_starts_send_nothing() {
        let silent = [CallEvent::CallRequested(request()), CallEvent::CallDispatchStarted { started_at: Utc::now() }];
        for event in silent {
            assert_eq!(compose(&event, &request()), None);
            assert!(!tells_the_customer(&event));
        }
        let cancelled = CallEvent::CallCancelled { reason: None, cancelled_at: Utc::now() };
        assert!(tells_the_customer(&cancelled));
    }

    #[test]
    fn a_failure_does_not_show_the_internal_reason() {
        let failed = CallEvent::CallFailed { reason: "no driver available".into(), failed_at: Utc::now() };
        let message = compose(&failed, &request()).unwrap();
        assert_eq!(message.kind, NotificationKind::CallFailed);
        assert!(!message.text.contains("no driver"), "{}", message.text);
    }

    #[test]
    fn ten_digit_numbers_are_dashed_three_three_four() {
        assert_eq!(dashed(&Tel::parse("0112345678").unwrap()), "011-234-5678");
    }
}
