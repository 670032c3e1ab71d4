//! JSON schemas of the domain values the views carry, for the API's OpenAPI document.
//!
//! The domain crate stays free of documentation dependencies, so the schemas of its
//! value types are stated here, beside the views that serialise them; the tests below
//! hold each schema to what the domain type really serialises.

use utoipa::ToSchema;

/// A place: the address as the customer gave it and its coordinates (WGS 84).
#[derive(ToSchema)]
pub struct Location {
    #[schema(example = "서울 마포구 월드컵로")]
    pub address: String,
    #[schema(minimum = -90.0, maximum = 90.0, example = 37.5663)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0, example = 126.9019)]
    pub lng: f64,
}

/// The car's transmission (운전형태): `MANUAL` calls go only to drivers who can drive manual.
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriveType {
    Auto,
    Manual,
}

/// Where a call is: `CANCELLED`, `FAILED` and `COMPLETED` are terminal.
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallStatus {
    Requested,
    Dispatching,
    Confirmed,
    Completed,
    Cancelled,
    Failed,
}

/// Where a driver is: off duty, waiting for a call, or reserved for one.
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverStatus {
    Offline,
    Available,
    Assigned,
}

/// Where a call's dispatch is.
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignmentStatus {
    Requested,
    Confirmed,
    Cancelled,
    Failed,
    Completed,
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::Value;
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    use utoipa::PartialSchema;

    fn schema_json<S: PartialSchema>() -> Value {
        let schema: RefOr<Schema> = S::schema();
        serde_json::to_value(schema).expect("a schema serialises")
    }

    fn wire_names<T: Serialize>(values: &[T]) -> Value {
        serde_json::to_value(values).expect("domain values serialise")
    }

    #[test]
    fn enum_schemas_list_exactly_the_domain_wire_names() {
        use domain::{AssignmentStatus as A, CallStatus as C, DriveType as D, DriverStatus as S};
        let cases = [
            (schema_json::<super::DriveType>(), wire_names(&[D::Auto, D::Manual])),
            (
                schema_json::<super::CallStatus>(),
                wire_names(&[C::Requested, C::Dispatching, C::Confirmed, C::Completed, C::Cancelled, C::Failed]),
            ),
            (schema_json::<super::DriverStatus>(), wire_names(&[S::Offline, S::Available, S::Assigned])),
            (
                schema_json::<super::AssignmentStatus>(),
                wire_names(&[A::Requested, A::Confirmed, A::Cancelled, A::Failed, A::Completed]),
            ),
        ];
        for (schema, names) in cases {
            assert_eq!(schema["enum"], names, "{schema}");
        }
    }

    #[test]
    fn the_location_schema_has_the_fields_a_location_serialises() {
        let location = domain::Location { address: "마포".into(), lat: 37.5663, lng: 126.9019 };
        let serialised = serde_json::to_value(location).expect("a location serialises");
        let mut fields: Vec<&String> = serialised.as_object().expect("an object").keys().collect();
        fields.sort();
        let schema = schema_json::<super::Location>();
        let mut properties: Vec<&String> = schema["properties"].as_object().expect("properties").keys().collect();
        properties.sort();
        assert_eq!(fields, properties);
        assert_eq!(schema["required"], serde_json::json!(["address", "lat", "lng"]));
    }
}
