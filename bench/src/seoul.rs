//! Places in Seoul: drivers waiting near district centres, pickups within a few
//! kilometres of one. Built on the server's own gazetteer, so both agree on the map.

use domain::gazetteer::{District, SEOUL_DISTRICTS};
use rand::Rng;

/// How far from a district centre a pickup may be.
pub const PICKUP_RADIUS_KM: f64 = 3.0;

/// How far from its district centre a driver waits.
pub const DRIVER_JITTER_KM: f64 = 0.5;

const KM_PER_DEGREE_LAT: f64 = 111.32;

/// A point and the district it was drawn around.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub district: &'static District,
    pub lat: f64,
    pub lng: f64,
}

impl Place {
    /// The address sent with the coordinates: the district's name, as a customer would say.
    pub fn address(&self) -> String {
        format!("서울 {}", self.district.name)
    }
}

/// A point uniform over the disc of `radius_km` around `district`'s centre: the radius
/// goes as the square root of a uniform draw, so the density is even over the area.
pub fn around(rng: &mut impl Rng, district: &'static District, radius_km: f64) -> Place {
    let distance = radius_km * rng.random::<f64>().sqrt();
    let bearing = rng.random::<f64>() * std::f64::consts::TAU;
    let km_per_degree_lng = KM_PER_DEGREE_LAT * district.lat.to_radians().cos();
    Place {
        district,
        lat: district.lat + distance * bearing.cos() / KM_PER_DEGREE_LAT,
        lng: district.lng + distance * bearing.sin() / km_per_degree_lng,
    }
}

/// A pickup near a district chosen at random.
pub fn pickup(rng: &mut impl Rng) -> Place {
    let district = &SEOUL_DISTRICTS[rng.random_range(0..SEOUL_DISTRICTS.len())];
    around(rng, district, PICKUP_RADIUS_KM)
}

/// Where the `index`th driver waits: the districts in turn, so that drivers spread evenly.
pub fn driver_place(rng: &mut impl Rng, index: usize) -> Place {
    around(rng, &SEOUL_DISTRICTS[index % SEOUL_DISTRICTS.len()], DRIVER_JITTER_KM)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    /// Great-circle distance, to check the generator against an independent formula.
    fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
        let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
        let dlat = lat2 - lat1;
        let dlng = (b.1 - a.1).to_radians();
        let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
        2.0 * 6371.0 * h.sqrt().asin()
    }

    fn in_seoul(place: &Place) -> bool {
        (37.41..=37.72).contains(&place.lat) && (126.76..=127.19).contains(&place.lng)
    }

    #[test]
    fn pickups_stay_within_the_radius_of_their_district_and_in_seoul() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut farthest: f64 = 0.0;
        for _ in 0..20_000 {
            let place = pickup(&mut rng);
            let distance = haversine_km((place.lat, place.lng), (place.district.lat, place.district.lng));
            assert!(distance <= PICKUP_RADIUS_KM * 1.01, "{place:?} is {distance} km out");
            assert!(in_seoul(&place), "{place:?} is outside Seoul");
            farthest = farthest.max(distance);
        }
        assert!(farthest > PICKUP_RADIUS_KM * 0.95, "the disc is not filled: {farthest} km");
    }

    #[test]
    fn pickups_fill_the_disc_evenly() {
        let mut rng = StdRng::seed_from_u64(5);
        let district = &SEOUL_DISTRICTS[0];
        let inner = (0..20_000)
            .map(|_| around(&mut rng, district, PICKUP_RADIUS_KM))
            .filter(|place| haversine_km((place.lat, place.lng), (district.lat, district.lng)) < PICKUP_RADIUS_KM / 2.0)
            .count();
        // The inner half of the radius is a quarter of the area.
        assert!((inner as f64 / 20_000.0 - 0.25).abs() < 0.02, "{inner} of 20000 in the inner half");
    }

    #[test]
    fn drivers_cover_every_district_close_to_its_centre() {
        let mut rng = StdRng::seed_from_u64(1);
        for index in 0..SEOUL_DISTRICTS.len() * 4 {
            let place = driver_place(&mut rng, index);
            assert_eq!(place.district.name, SEOUL_DISTRICTS[index % SEOUL_DISTRICTS.len()].name);
            let distance = haversine_km((place.lat, place.lng), (place.district.lat, place.district.lng));
            assert!(distance <= DRIVER_JITTER_KM * 1.01 && in_seoul(&place));
        }
    }

    #[test]
    fn the_address_names_the_district() {
        let place = around(&mut StdRng::seed_from_u64(2), &SEOUL_DISTRICTS[13], 1.0);
        assert_eq!(place.address(), "서울 마포구");
    }
}
