//! Value types that cannot hold bad values: input is parsed into them once, at the edge.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::gazetteer;

/// Input that no value type accepts; each variant names the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error("`{0}` is not a Korean mobile number (010-1234-5678 or 01012345678)")]
    InvalidTel(String),
    #[error("fare must be a whole number of KRW between 0 and {max}, got {0}", max = Fare::MAX)]
    InvalidFare(i64),
}

/// A Korean mobile number, normalised to its digits (`01012345678`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tel(String);

impl Tel {
    /// Accepts digits with optional dashes or spaces: `010-1234-5678`, `011 234 5678`.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let invalid = || ValueError::InvalidTel(input.to_string());
        if !input.chars().all(|c| c.is_ascii_digit() || c == '-' || c == ' ') {
            return Err(invalid());
        }
        let digits: String = input.chars().filter(char::is_ascii_digit).collect();
        let valid_prefix = ["010", "011", "016", "017", "018", "019"].iter().any(|prefix| digits.starts_with(prefix));
        let valid_length = match &digits[..digits.len().min(3)] {
            "010" => digits.len() == 11,
            _ => digits.len() == 10 || digits.len() == 11,
        };
        if valid_prefix && valid_length {
            Ok(Self(digits))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with its middle digits hidden, for logs: `010****5678`. Never panics,
    /// even for a value read from storage that no longer passes today's rules.
    pub fn masked(&self) -> String {
        let digits = &self.0;
        let head = digits.get(..3);
        let tail = digits.len().checked_sub(4).and_then(|start| digits.get(start..));
        match (head, tail) {
            (Some(head), Some(tail)) if digits.len() >= 7 => format!("{head}****{tail}"),
            _ => "****".to_string(),
        }
    }
}

impl std::fmt::Display for Tel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An expected fare in whole KRW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fare(i64);

impl Fare {
    /// Far above any real fare; stops typos and overflow from reaching the log.
    pub const MAX: i64 = 10_000_000;

    pub fn new(krw: i64) -> Result<Self, ValueError> {
        if (0..=Self::MAX).contains(&krw) {
            Ok(Self(krw))
        } else {
            Err(ValueError::InvalidFare(krw))
        }
    }

    pub fn krw(self) -> i64 {
        self.0
    }
}

/// The car's transmission (운전형태): who may drive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriveType {
    #[default]
    Auto,
    Manual,
}

impl DriveType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "AUTO",
            Self::Manual => "MANUAL",
        }
    }

    /// Whether a driver with this skill may take a car of this transmission.
    pub fn drivable_by(self, can_drive_manual: bool) -> bool {
        self == Self::Auto || can_drive_manual
    }
}

/// A place in the world with the address the customer gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub address: String,
    pub lat: f64,
    pub lng: f64,
}

/// Why a location could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LocationError {
    #[error("cannot place `{0}`: name a Seoul district (e.g. 마포구) or give lat and lng")]
    Unknown(String),
    #[error("lat must be within -90..=90 and lng within -180..=180")]
    OutOfRange,
    #[error("give both lat and lng, or neither")]
    HalfCoordinates,
    #[error("address is longer than {max} characters", max = Location::MAX_ADDRESS_CHARS)]
    AddressTooLong,
}

impl Location {
    pub const MAX_ADDRESS_CHARS: usize = 200;

    /// Builds a location from what a client sent: explicit coordinates win; without them
    /// the address must name a Seoul district, whose centre is used.
    pub fn resolve(address: Option<&str>, lat: Option<f64>, lng: Option<f64>) -> Result<Self, LocationError> {
        let address = address.unwrap_or("").trim();
        if address.chars().count() > Self::MAX_ADDRESS_CHARS {
            return Err(LocationError::AddressTooLong);
        }
        let (lat, lng) = match (lat, lng) {
            (Some(lat), Some(lng)) => (lat, lng),
            (None, None) => {
                let district =
                    gazetteer::find_district(address).ok_or_else(|| LocationError::Unknown(address.to_string()))?;
                (district.lat, district.lng)
            }
            _ => return Err(LocationError::HalfCoordinates),
        };
        if !(lat.is_finite() && lng.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng)) {
            return Err(LocationError::OutOfRange);
        }
        Ok(Self { address: address.to_string(), lat, lng })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tel_accepts_dashed_and_plain_mobile_numbers() {
        assert_eq!(Tel::parse("010-1234-5678").unwrap().as_str(), "01012345678");
        assert_eq!(Tel::parse("01012345678").unwrap().as_str(), "01012345678");
        assert_eq!(Tel::parse("011 234 5678").unwrap().as_str(), "0112345678");
    }

    #[test]
    fn tel_rejects_landlines_letters_and_wrong_lengths() {
        for bad in ["02-123-4567", "0101234567", "010123456789", "010-abcd-5678", "", "+821012345678"] {
            assert_eq!(Tel::parse(bad), Err(ValueError::InvalidTel(bad.to_string())), "{bad}");
        }
    }

    #[test]
    fn tel_masks_the_middle_digits() {
        assert_eq!(Tel::parse("010-3345-7789").unwrap().masked(), "010****7789");
    }

    #[test]
    fn tel_read_from_storage_masks_without_panicking() {
        for stored in ["", "01", "010123", "가나다라마바사아"] {
            let tel: Tel = serde_json::from_value(serde_json::json!(stored)).unwrap();
            assert_eq!(tel.masked(), "****", "{stored}");
        }
    }

    #[test]
    fn fare_must_be_non_negative_and_bounded() {
        assert_eq!(Fare::new(0).unwrap().krw(), 0);
        assert_eq!(Fare::new(-1), Err(ValueError::InvalidFare(-1)));
        assert_eq!(Fare::new(Fare::MAX + 1), Err(ValueError::InvalidFare(Fare::MAX + 1)));
    }

    #[test]
    fn manual_cars_need_manual_drivers() {
        assert!(DriveType::Auto.drivable_by(false));
        assert!(DriveType::Manual.drivable_by(true));
        assert!(!DriveType::Manual.drivable_by(false));
    }

    #[test]
    fn location_uses_district_centre_when_coordinates_are_missing() {
        let location = Location::resolve(Some("마포아파트"), None, None).unwrap();
        assert_eq!(location.address, "마포아파트");
        assert!((location.lat - 37.5663).abs() < 0.01);
    }

    #[test]
    fn location_prefers_given_coordinates() {
        let location = Location::resolve(Some("어딘가"), Some(37.5), Some(127.0)).unwrap();
        assert_eq!((location.lat, location.lng), (37.5, 127.0));
    }

    #[test]
    fn location_rejects_unknown_places_half_and_out_of_range_coordinates() {
        assert_eq!(
            Location::resolve(Some("부산 해운대"), None, None),
            Err(LocationError::Unknown("부산 해운대".into()))
        );
        assert_eq!(Location::resolve(Some("마포"), Some(37.5), None), Err(LocationError::HalfCoordinates));
        assert_eq!(Location::resolve(None, Some(91.0), Some(0.0)), Err(LocationError::OutOfRange));
        assert_eq!(Location::resolve(None, Some(f64::NAN), Some(0.0)), Err(LocationError::OutOfRange));
        assert_eq!(Location::resolve(Some(&"마".repeat(201)), None, None), Err(LocationError::AddressTooLong));
    }
}
