//! Each subscriber's place in the log, kept in the same database as what it writes.

use sqlx::Row;

use crate::{on_tx, Backend, LogPosition, Store, StoreError, Tx};

/// Reads `name`'s checkpoint and locks it until `tx` ends, so that two instances of one
/// subscriber (or a live subscriber and a replay) never apply the same events.
pub async fn lock(tx: &mut Tx, name: &str) -> Result<LogPosition, StoreError> {
    let lock_clause = match tx.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    };
    let select = format!("SELECT commit_position, prepare_position FROM checkpoints WHERE name = $1{lock_clause}");
    // Writing first takes SQLite's write lock at once: a transaction that read first and
    // wrote later could fail to upgrade its lock instead of waiting for it.
    let row = on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO checkpoints (name, commit_position, prepare_position) VALUES ($1, 0, 0) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *conn)
        .await?;
        let row = sqlx::query(&select).bind(name).fetch_one(&mut *conn).await?;
        LogPosition { commit: row.try_get(0)?, prepare: row.try_get(1)? }
    });
    Ok(row)
}

pub async fn save(tx: &mut Tx, name: &str, position: LogPosition) -> Result<(), StoreError> {
    on_tx!(tx, conn => {
        sqlx::query("UPDATE checkpoints SET commit_position = $2, prepare_position = $3 WHERE name = $1")
            .bind(name)
            .bind(position.commit)
            .bind(position.prepare)
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// `name`'s checkpoint without locking it (for lag reports); the start when it has none.
pub async fn read(store: &Store, name: &str) -> Result<LogPosition, StoreError> {
    let row = crate::on_db!(store.db(), pool => {
        sqlx::query("SELECT commit_position, prepare_position FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?
            .map(|row| Ok::<_, sqlx::Error>(LogPosition { commit: row.try_get(0)?, prepare: row.try_get(1)? }))
            .transpose()?
    });
    Ok(row.unwrap_or(LogPosition::START))
}

/// Every subscriber's checkpoint, without locking (for lag reports).
pub async fn read_all(store: &Store) -> Result<Vec<(String, LogPosition)>, StoreError> {
    crate::on_db!(store.db(), pool => {
        sqlx::query("SELECT name, commit_position, prepare_position FROM checkpoints ORDER BY name")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, LogPosition { commit: row.try_get(1)?, prepare: row.try_get(2)? })))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    })
}
