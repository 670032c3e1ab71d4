//! The Korean status labels of the HTTP contract.

use domain::{AssignmentStatus, CallStatus, DriverStatus};

pub fn call(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Requested => "호출",
        CallStatus::Dispatching => "호출중",
        CallStatus::Confirmed => "호출확정",
        CallStatus::Completed => "운행완료",
        CallStatus::Cancelled => "호출취소",
        CallStatus::Failed => "배정실패",
    }
}

pub fn assignment(status: AssignmentStatus) -> &'static str {
    match status {
        AssignmentStatus::Requested => "할당요청",
        AssignmentStatus::Confirmed => "할당확정",
        AssignmentStatus::Cancelled => "할당취소",
        AssignmentStatus::Failed => "할당실패",
        AssignmentStatus::Completed => "운행완료",
    }
}

pub fn driver(status: DriverStatus) -> &'static str {
    match status {
        DriverStatus::Offline => "퇴근",
        DriverStatus::Available => "대기",
        DriverStatus::Assigned => "배정됨",
    }
}
