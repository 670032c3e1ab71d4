//! The `notifications` table: what operators and the API read, and the statements the
//! two workers write with. Instants are stored as RFC 3339 text in one fixed UTC format,
//! so that text order is time order on both backends.

use chrono::{DateTime, SecondsFormat, Utc};
use domain::{Tel, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value};
use store::{on_db, Backend, Store, Tx};
use uuid::Uuid;

use crate::message::Message;
use crate::{NotificationKind, NotifierError};

/// Where a message stands: waiting to be (re)sent, sent, or given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotificationState {
    Pending,
    Delivered,
    Dead,
}

impl NotificationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Dead => "DEAD",
        }
    }

    /// `PENDING`, `DELIVERED` or `DEAD`, in any case.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead].into_iter().find(|state| state.as_str().eq_ignore_ascii_case(text))
    }
}

impl std::fmt::Display for NotificationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message to a customer and its delivery so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    /// The id of the event that caused the message.
    pub notification_id: Uuid,
    pub call_id: Uuid,
    pub kind: NotificationKind,
    /// The customer's number, as digits.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "01012345678"))]
    pub recipient: Tel,
    pub template_code: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub template_variables: Map<String, Value>,
    pub text: String,
    pub state: NotificationState,
    /// Deliveries tried so far.
    pub attempts: i64,
    /// When the next delivery is due; only while PENDING.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub delivered_at: Option<Timestamp>,
}

/// A row as stored; [`Notification`] is its checked form.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Row {
    pub id: String,
    pub call_id: String,
    pub kind: String,
    pub recipient: String,
    pub template_code: String,
    pub template_variables: String,
    pub text: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

const COLUMNS: &str = "id, call_id, kind, recipient, template_code, template_variables, text, state, attempts, \
                       next_attempt_at, last_error, created_at, delivered_at";

pub(crate) fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Row {
    /// Stored numbers passed `Tel::parse` when they were written; reading one back does
    /// not re-check today's rules, so an old row still reads.
    pub(crate) fn recipient(&self) -> Result<Tel, NotifierError> {
        serde_json::from_value(Value::String(self.recipient.clone())).map_err(|error| self.corrupt(error))
    }

    pub(crate) fn variables(&self) -> Result<Map<String, Value>, NotifierError> {
        serde_json::from_str(&self.template_variables).map_err(|error| self.corrupt(error))
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> NotifierError {
        NotifierError::CorruptRow { id: self.id.clone(), reason: reason.to_string() }
    }

    fn uuid(&self, text: &str) -> Result<Uuid, NotifierError> {
        Uuid::parse_str(text).map_err(|error| self.corrupt(error))
    }

    fn instant(&self, text: &str) -> Result<Timestamp, NotifierError> {
        DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc)).map_err(|error| self.corrupt(error))
    }

    fn checked(self) -> Result<Notification, NotifierError> {
        let kind = NotificationKind::parse(&self.kind).ok_or_else(|| self.corrupt(format!("kind `{}`", self.kind)))?;
        let state =
            NotificationState::parse(&self.state).ok_or_else(|| self.corrupt(format!("state `{}`", self.state)))?;
        let next_attempt_at = match state {
            NotificationState::Pending => Some(self.instant(&self.next_attempt_at)?),
            NotificationState::Delivered | NotificationState::Dead => None,
        };
        Ok(Notification {
            notification_id: self.uuid(&self.id)?,
            call_id: self.uuid(&self.call_id)?,
            kind,
            recipient: self.recipient()?,
            template_variables: self.variables()?,
            state,
            attempts: self.attempts,
            next_attempt_at,
            created_at: self.instant(&self.created_at)?,
            delivered_at: self.delivered_at.as_deref().map(|at| self.instant(at)).transpose()?,
            template_code: self.template_code,
            text: self.text,
            last_error: self.last_error,
        })
    }
}

fn checked(rows: Vec<Row>) -> Result<Vec<Notification>, NotifierError> {
    rows.into_iter().map(Row::checked).collect()
}

/// The messages of one call, oldest first.
pub async fn for_call(store: &Store, call_id: Uuid) -> Result<Vec<Notification>, NotifierError> {
    let sql = format!("SELECT {COLUMNS} FROM notifications WHERE call_id = $1 ORDER BY call_sequence");
    let rows: Vec<Row> = on_db!(store.db(), pool => {
        sqlx::query_as(&sql).bind(call_id.to_string()).fetch_all(pool).await?
    });
    checked(rows)
}

/// Up to `limit` messages in `state`, oldest first.
pub async fn by_state(store: &Store, state: NotificationState, limit: u32) -> Result<Vec<Notification>, NotifierError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE state = $1 ORDER BY created_at, call_id, call_sequence LIMIT $2"
    );
    let rows: Vec<Row> = on_db!(store.db(), pool => {
        sqlx::query_as(&sql).bind(state.as_str()).bind(i64::from(limit)).fetch_all(pool).await?
    });
    checked(rows)
}

pub async fn get(store: &Store, id: Uuid) -> Result<Option<Notification>, NotifierError> {
    let sql = format!("SELECT {COLUMNS} FROM notifications WHERE id = $1");
    let row: Option<Row> = on_db!(store.db(), pool => {
        sqlx::query_as(&sql).bind(id.to_string()).fetch_optional(pool).await?
    });
    row.map(Row::checked).transpose()
}

/// Puts a dead message back in line, due now with its attempts reset. Its last error
/// stays visible until the next attempt.
pub async fn retry(store: &Store, id: Uuid) -> Result<Notification, NotifierError> {
    let sql = format!(
        "UPDATE notifications SET state = 'PENDING', attempts = 0, next_attempt_at = $2, lease_token = NULL \
         WHERE id = $1 AND state = 'DEAD' RETURNING {COLUMNS}"
    );
    let turn = store.write_turn().await;
    let row: Option<Row> = on_db!(store.db(), pool => {
        sqlx::query_as(&sql).bind(id.to_string()).bind(stamp(Utc::now())).fetch_optional(pool).await?
    });
    drop(turn);
    match row {
        Some(row) => row.checked(),
        None => match get(store, id).await? {
            Some(found) => Err(NotifierError::NotDead { id, state: found.state }),
            None => Err(NotifierError::NotFound(id)),
        },
    }
}

/// A message for the outbox and the event it comes from.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// The causing event's id.
    pub id: Uuid,
    pub call_id: Uuid,
    pub call_sequence: i64,
    pub message: Message,
}

/// Adds each message as a PENDING row due now, unless a row with its id exists already
/// (the event was read before); returns how many it added, in one statement.
pub(crate) async fn insert_all(tx: &mut Tx, outgoing: &[Outgoing], now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    if outgoing.is_empty() {
        return Ok(0);
    }
    let now = stamp(now);
    let variables = |message: &Message| Value::Object(message.variables.clone()).to_string();
    let inserted = match tx {
        Tx::Postgres(tx) => sqlx::query(
            "INSERT INTO notifications (id, call_id, call_sequence, kind, recipient, template_code, \
                 template_variables, text, state, attempts, next_attempt_at, created_at) \
                 SELECT id, call_id, call_sequence, kind, recipient, template_code, template_variables, text, \
                 'PENDING', 0, $9, $9 \
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::text[]) \
                 AS outgoing (id, call_id, call_sequence, kind, recipient, template_code, template_variables, text) \
                 ON CONFLICT (id) DO NOTHING",
        )
        .bind(outgoing.iter().map(|row| row.id.to_string()).collect::<Vec<_>>())
        .bind(outgoing.iter().map(|row| row.call_id.to_string()).collect::<Vec<_>>())
        .bind(outgoing.iter().map(|row| row.call_sequence).collect::<Vec<_>>())
        .bind(outgoing.iter().map(|row| row.message.kind.as_str()).collect::<Vec<_>>())
        .bind(outgoing.iter().map(|row| row.message.recipient.as_str()).collect::<Vec<_>>())
        .bind(outgoing.iter().map(|row| row.message.kind.template_code()).collect::<Vec<_>>())
        .bind(outgoing.iter().map(|row| variables(&row.message)).collect::<Vec<_>>())
        .bind(outgoing.iter().map(|row| row.message.text.as_str()).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected(),
        Tx::Sqlite(tx) => {
            let rows: Vec<Value> = outgoing
                .iter()
                .map(|row| {
                    serde_json::json!([
                        row.id.to_string(),
                        row.call_id.to_string(),
                        row.call_sequence,
                        row.message.kind.as_str(),
                        row.message.recipient.as_str(),
                        row.message.kind.template_code(),
                        variables(&row.message),
                        row.message.text,
                    ])
                })
                .collect();
            // `WHERE true` tells SQLite's parser that ON CONFLICT starts the upsert clause.
            sqlx::query(
                "INSERT INTO notifications (id, call_id, call_sequence, kind, recipient, template_code, \
                 template_variables, text, state, attempts, next_attempt_at, created_at) \
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                 value ->> 7, 'PENDING', 0, $2, $2 FROM json_each($1) WHERE true ON CONFLICT (id) DO NOTHING",
            )
            .bind(Value::Array(rows).to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected()
        }
    };
    Ok(inserted)
}

/// Takes up to `limit` due PENDING rows for the deliverer holding `lease`: they are
/// pushed to `lease_until`, so no other deliverer takes them meanwhile, and come back
/// due by themselves if this one never finishes.
pub(crate) async fn claim(
    store: &Store,
    now: DateTime<Utc>,
    limit: usize,
    lease: Uuid,
    lease_until: DateTime<Utc>,
) -> Result<Vec<Row>, sqlx::Error> {
    // PostgreSQL deliverers run side by side: rows another one is claiming are skipped,
    // not waited for. SQLite has a single writer, so its statement is atomic as it is.
    let lock = match store.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let sql = format!(
        "UPDATE notifications SET lease_token = $1, next_attempt_at = $2 WHERE id IN \
         (SELECT id FROM notifications WHERE state = 'PENDING' AND next_attempt_at <= $3 \
          ORDER BY next_attempt_at, id LIMIT $4{lock}) \
         RETURNING {COLUMNS}"
    );
    let turn = store.write_turn().await;
    let mut rows: Vec<Row> = on_db!(store.db(), pool => {
        sqlx::query_as(&sql)
            .bind(lease.to_string())
            .bind(stamp(lease_until))
            .bind(stamp(now))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?
    });
    drop(turn);
    rows.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    Ok(rows)
}

/// How a claimed delivery ended.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    Delivered {
        at: DateTime<Utc>,
    },
    Retry {
        at: DateTime<Utc>,
        error: &'a str,
    },
    Dead {
        error: &'a str,
    },
    /// Not tried (the breaker opened): due again at `at`, attempts unchanged.
    Released {
        at: DateTime<Utc>,
    },
}

/// Records `outcome` for row `id`, if `lease` still holds it; a deliverer whose lease ran
/// out changes nothing.
pub(crate) async fn finish(store: &Store, id: &str, lease: Uuid, outcome: Outcome<'_>) -> Result<bool, sqlx::Error> {
    let (sql, stamp_value, error) = match outcome {
        Outcome::Delivered { at } => (
            "UPDATE notifications SET state = 'DELIVERED', attempts = attempts + 1, delivered_at = $3, \
             last_error = NULL, lease_token = NULL WHERE id = $1 AND lease_token = $2",
            Some(stamp(at)),
            None,
        ),
        Outcome::Retry { at, error } => (
            "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4, \
             lease_token = NULL WHERE id = $1 AND lease_token = $2",
            Some(stamp(at)),
            Some(error),
        ),
        Outcome::Dead { error } => (
            "UPDATE notifications SET state = 'DEAD', attempts = attempts + 1, last_error = $3, \
             lease_token = NULL WHERE id = $1 AND lease_token = $2",
            None,
            Some(error),
        ),
        Outcome::Released { at } => (
            "UPDATE notifications SET next_attempt_at = $3, lease_token = NULL WHERE id = $1 AND lease_token = $2",
            Some(stamp(at)),
            None,
        ),
    };
    let turn = store.write_turn().await;
    let updated = on_db!(store.db(), pool => {
        let mut query = sqlx::query(sql).bind(id).bind(lease.to_string());
        if let Some(value) = &stamp_value {
            query = query.bind(value);
        }
        if let Some(error) = error {
            query = query.bind(error);
        }
        query.execute(pool).await?.rows_affected()
    });
    drop(turn);
    Ok(updated > 0)
}

/// When the earliest PENDING row is due, if any.
pub(crate) async fn next_due(store: &Store) -> Result<Option<DateTime<Utc>>, NotifierError> {
    let next: Option<String> = on_db!(store.db(), pool => {
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM notifications WHERE state = 'PENDING'")
            .fetch_one(pool)
            .await?
    });
    Ok(next.and_then(|at| DateTime::parse_from_rfc3339(&at).ok()).map(|at| at.with_timezone(&Utc)))
}
