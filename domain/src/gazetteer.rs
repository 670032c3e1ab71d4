//! The 25 districts (구) of Seoul with the coordinates of their centres, so that a
//! customer can say "마포" instead of giving coordinates.

/// One district: its full name (with `구`) and centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct District {
    pub name: &'static str,
    pub lat: f64,
    pub lng: f64,
}

const fn district(name: &'static str, lat: f64, lng: f64) -> District {
    District { name, lat, lng }
}

/// District offices' positions, which sit near each district's centre.
pub const SEOUL_DISTRICTS: [District; 25] = [
    district("종로구", 37.5730, 126.9794),
    district("중구", 37.5641, 126.9979),
    district("용산구", 37.5326, 126.9905),
    district("성동구", 37.5634, 127.0369),
    district("광진구", 37.5385, 127.0823),
    district("동대문구", 37.5744, 127.0396),
    district("중랑구", 37.6063, 127.0925),
    district("성북구", 37.5894, 127.0167),
    district("강북구", 37.6396, 127.0257),
    district("도봉구", 37.6688, 127.0471),
    district("노원구", 37.6542, 127.0568),
    district("은평구", 37.6027, 126.9291),
    district("서대문구", 37.5791, 126.9368),
    district("마포구", 37.5663, 126.9019),
    district("양천구", 37.5170, 126.8665),
    district("강서구", 37.5509, 126.8495),
    district("구로구", 37.4954, 126.8874),
    district("금천구", 37.4569, 126.8955),
    district("영등포구", 37.5264, 126.8962),
    district("동작구", 37.5124, 126.9393),
    district("관악구", 37.4784, 126.9516),
    district("서초구", 37.4837, 127.0324),
    district("강남구", 37.5172, 127.0473),
    district("송파구", 37.5145, 127.1059),
    district("강동구", 37.5301, 127.1238),
];

/// The district an address names, with or without its `구` suffix; the longest name
/// found wins. 중구 counts only with its suffix: a bare 중 is part of too many words.
pub fn find_district(address: &str) -> Option<&'static District> {
    SEOUL_DISTRICTS
        .iter()
        .flat_map(|district| {
            let short = district.name.strip_suffix('구').filter(|short| short.chars().count() > 1);
            [Some(district.name), short].into_iter().flatten().map(move |name| (name, district))
        })
        .filter(|(name, _)| address.contains(name))
        .max_by_key(|(name, _)| name.chars().count())
        .map(|(_, district)| district)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(address: &str) -> Option<&'static str> {
        find_district(address).map(|district| district.name)
    }

    #[test]
    fn every_district_is_found_by_its_full_name() {
        for district in &SEOUL_DISTRICTS {
            assert_eq!(name_of(&format!("서울 {} 어딘가", district.name)), Some(district.name));
        }
    }

    #[test]
    fn districts_are_found_without_their_suffix() {
        assert_eq!(name_of("마포"), Some("마포구"));
        assert_eq!(name_of("마포아파트"), Some("마포구"));
        assert_eq!(name_of("서대문"), Some("서대문구"));
        assert_eq!(name_of("강남역 2번 출구"), Some("강남구"));
    }

    #[test]
    fn the_longest_name_wins() {
        assert_eq!(name_of("동대문구 앞"), Some("동대문구"));
        assert_eq!(name_of("서대문구"), Some("서대문구"));
    }

    #[test]
    fn jung_gu_needs_its_suffix() {
        assert_eq!(name_of("서울 중구 명동"), Some("중구"));
        assert_eq!(name_of("중앙시장"), None);
        assert_eq!(name_of("중랑"), Some("중랑구"));
    }

    #[test]
    fn places_outside_seoul_are_not_found() {
        assert_eq!(name_of("부산 해운대"), None);
        assert_eq!(name_of(""), None);
    }
}
