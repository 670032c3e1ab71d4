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
pub(crate) fn rank_candidates<'a>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Tel;

    const PICKUP: Location = Location { address: String::new(), lat: 37.5663, lng: 126.9019 };

    fn driver(n: u128, north_km: f64, manual: bool) -> DriverSlot {
        DriverSlot {
            driver_id: Uuid::from_u128(n),
            name: format!("기사{n}"),
            tel: Tel::parse("01012345678").expect("a valid number"),
            can_drive_manual: manual,
            online: true,
            // One degree of latitude is about 111 km.
            location: Some(Location { address: String::new(), lat: PICKUP.lat + north_km / 111.0, lng: PICKUP.lng }),
            reserved_for: None,
        }
    }

    fn ranked(drivers: &[DriverSlot], drive_type: DriveType) -> Vec<Uuid> {
        rank_candidates(drivers, &PICKUP, drive_type, 5_000.0).into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn nearest_driver_comes_first() {
        let drivers = [driver(1, 3.0, false), driver(2, 1.0, false), driver(3, 2.0, false)];
        assert_eq!(ranked(&drivers, DriveType::Auto), [2, 3, 1].map(Uuid::from_u128));
    }

    #[test]
    fn drivers_beyond_the_radius_are_not_candidates() {
        let drivers = [driver(1, 4.9, false), driver(2, 5.2, false)];
        assert_eq!(ranked(&drivers, DriveType::Auto), [Uuid::from_u128(1)]);
    }

    #[test]
    fn manual_cars_go_only_to_manual_drivers() {
        let drivers = [driver(1, 1.0, false), driver(2, 2.0, true)];
        assert_eq!(ranked(&drivers, DriveType::Manual), [Uuid::from_u128(2)]);
        assert_eq!(ranked(&drivers, DriveType::Auto), [1, 2].map(Uuid::from_u128));
    }

    #[test]
    fn offline_reserved_and_unplaced_drivers_are_not_candidates() {
        let mut offline = driver(1, 1.0, false);
        offline.online = false;
        let mut reserved = driver(2, 1.0, false);
        reserved.reserved_for = Some(Uuid::from_u128(99));
        let mut unplaced = driver(3, 1.0, false);
        unplaced.location = None;
        assert!(ranked(&[offline, reserved, unplaced], DriveType::Auto).is_empty());
    }

    #[test]
    fn equally_near_drivers_are_ranked_by_id() {
        let drivers = [driver(7, 1.0, false), driver(3, 1.0, false)];
        assert_eq!(ranked(&drivers, DriveType::Auto), [3, 7].map(Uuid::from_u128));
    }
}
