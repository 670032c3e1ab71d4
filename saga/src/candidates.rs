//! Who can take a call: available drivers who can drive the car, within the radius,
//! nearest first.

use domain::{DriveType, Location};
use geo::{Distance, Haversine, Point};
use uuid::Uuid;

use crate::state::DriverSlot;

fn point(location: &Location) -> Point<f64> {
    Point::new(location.lng, location.lat)
}

/// Drivers free to take a `drive_type` call at `pickup`, nearest first, with their
/// distance in metres; ties go to the lower id so that the order is deterministic.
pub fn rank_candidates<'a>(
    drivers: impl IntoIterator<Item = &'a DriverSlot>,
    pickup: &Location,
    drive_type: DriveType,
    radius_m: f64,
) -> Vec<(Uuid, f64)> {
    let origin = point(pickup);
    let mut ranked: Vec<(Uuid, f64)> = drivers
        .into_iter()
        .filter(|driver| driver.is_free() && drive_type.drivable_by(driver.can_drive_manual))
        .filter_map(|driver| {
            let distance = Haversine.distance(origin, point(driver.location.as_ref()?));
            (distance <= radius_m).then_some((driver.driver_id, distance))
        })
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    ranked
}
