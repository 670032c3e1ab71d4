//! `Idempotency-Key` records: a key is stored with the call id it names *before* the
//! call is requested, so a client retrying after a crash anywhere in between gets the
//! same call, and the identical request on that id is a no-op for the Call aggregate.

use chrono::Duration;
use domain::Timestamp;
use sqlx::Row;
use uuid::Uuid;

use crate::{on_db, Store, StoreError};

/// How long a key names its call; after that it may be used afresh.
pub const KEY_LIFETIME: Duration = Duration::hours(24);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key is now ours, naming the proposed call id.
    New,
    /// The key already names a call, first requested at `created_at`; `same_request`
    /// tells whether the bodies match.
    Existing { call_id: Uuid, same_request: bool, created_at: Timestamp },
}

/// Claims `key` for `call_id` unless it already names a live call.
pub async fn claim(
    store: &Store,
    key: &str,
    request_hash: &str,
    call_id: Uuid,
    now: Timestamp,
) -> Result<Claim, StoreError> {
    let created_at = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let expired_before = (now - KEY_LIFETIME).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let _turn = store.write_turn().await;
    on_db!(store.db(), pool => {
        // An expired key is replaced in the same statement that would insert a new one.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (key, request_hash, call_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET request_hash = $2, call_id = $3, created_at = $4 \
             WHERE idempotency_keys.created_at < $5",
        )
        .bind(key)
        .bind(request_hash)
        .bind(call_id.to_string())
        .bind(&created_at)
        .bind(&expired_before)
        .execute(pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::New);
        }
        let row = sqlx::query("SELECT request_hash, call_id, created_at FROM idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_one(pool)
            .await?;
        let stored_hash: String = row.try_get(0)?;
        let stored_call: String = row.try_get(1)?;
        let stored_at: String = row.try_get(2)?;
        let corrupt = |error: &dyn std::fmt::Display| StoreError::EventStore(format!("idempotency key `{key}`: {error}"));
        let call_id = Uuid::parse_str(&stored_call).map_err(|error| corrupt(&error))?;
        let created_at = Timestamp::from(chrono::DateTime::parse_from_rfc3339(&stored_at).map_err(|error| corrupt(&error))?);
        Ok(Claim::Existing { call_id, same_request: stored_hash == request_hash, created_at })
    })
}
