//! What every stored event carries besides its payload.

use std::collections::HashMap;

use domain::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Derives event ids from their place in their stream, so an id never needs storing
/// and a redelivered event keeps its id.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_8a53_2f0e_4c7b_9a44_3b1d_5e2f_7c01);

/// The id of the event at `sequence` in the stream `aggregate_type/aggregate_id`.
pub fn event_id(aggregate_type: &str, aggregate_id: &str, sequence: i64) -> Uuid {
    Uuid::new_v5(&EVENT_ID_NAMESPACE, format!("{aggregate_type}/{aggregate_id}/{sequence}").as_bytes())
}

/// Who asked for a command, and why: stored with each event it produces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMeta {
    /// The call id for everything a call causes.
    pub correlation_id: Uuid,
    /// The id of the event or HTTP request that caused the command.
    pub causation_id: Uuid,
    /// Deterministic for commands the saga issues, so a redelivered event issues the same one.
    pub command_id: Uuid,
    pub actor: String,
    pub recorded_at: Timestamp,
}

impl CommandMeta {
    pub(crate) fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("correlation_id".to_string(), self.correlation_id.to_string()),
            ("causation_id".to_string(), self.causation_id.to_string()),
            ("command_id".to_string(), self.command_id.to_string()),
            ("actor".to_string(), self.actor.clone()),
            ("recorded_at".to_string(), self.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        ])
    }
}
