//! The dispatch domain: the Call, DriverManage and Assignment aggregates with their
//! commands, events and errors, and the value types they are built from.
//!
//! Pure by design: no IO, no clock, no random ids. Time, ids and looked-up facts
//! (candidate drivers, a driver's name) arrive inside commands, so every `handle` is
//! deterministic and every rule can be tested with given/when/then alone. Depends on
//! nothing but serde, uuid, chrono (as a data type) and the cqrs-es traits.

pub mod assignment;
pub mod call;
pub mod driver;
pub mod gazetteer;
pub mod values;

pub use assignment::{Assignment, AssignmentCommand, AssignmentError, AssignmentEvent, AssignmentStatus};
pub use call::{AssignedDriver, Call, CallCommand, CallError, CallEvent, CallRequest, CallStatus};
pub use driver::{Driver, DriverCommand, DriverError, DriverEvent, DriverStatus, ReleaseReason};
pub use values::{DriveType, Fare, Location, LocationError, Tel, ValueError};

/// Instants in events and commands; always UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Every event type is written with this schema version; a change to an event's shape
/// gets a new version and an upcaster, never an edit of what was shipped.
pub const EVENT_VERSION: &str = "1";

/// A rejection of a command by an aggregate: a value the caller can act on.
pub trait Rejection: std::error::Error {
    /// Stable UPPER_SNAKE identifier, used as the `code` of problem responses.
    fn code(&self) -> &'static str;
    /// Whether the rejection means the aggregate does not exist (HTTP 404, not 409).
    fn is_not_found(&self) -> bool {
        false
    }
    /// Whether the command itself carried a bad value (HTTP 422), rather than being
    /// forbidden by the aggregate's current state (409).
    fn is_invalid_input(&self) -> bool {
        false
    }
}

/// Implements [`cqrs_es::DomainEvent`] with the variant name as the wire name.
macro_rules! domain_event {
    ($event:ty { $($variant:ident),+ $(,)? }) => {
        impl cqrs_es::DomainEvent for $event {
            fn event_type(&self) -> String {
                match self {
                    $(Self::$variant { .. } => stringify!($variant).to_string(),)+
                }
            }

            fn event_version(&self) -> String {
                crate::EVENT_VERSION.to_string()
            }
        }
    };
}
pub(crate) use domain_event;

/// Implements [`cqrs_es::Aggregate`] for an aggregate with no services whose inherent
/// `decide` returns the event a command causes (`None`: nothing to change) and whose
/// `evolve` applies an event.
macro_rules! event_sourced {
    ($aggregate:ty, $type:literal, $command:ty, $event:ty, $error:ty) => {
        impl cqrs_es::Aggregate for $aggregate {
            const TYPE: &'static str = $type;
            type Command = $command;
            type Event = $event;
            type Error = $error;
            type Services = ();

            async fn handle(
                &mut self,
                command: Self::Command,
                _: &(),
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                if let Some(event) = self.decide(command)? {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                self.evolve(event)
            }
        }
    };
}
pub(crate) use event_sourced;
