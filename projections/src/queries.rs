//! Reads of the views, as the API serves them.

use sqlx::Row;
use store::{on_db, Store, StoreError};
use uuid::Uuid;

use crate::views::driver_status_name;
use crate::{CallView, DriverView, StreamView};
use domain::DriverStatus;

/// The most rows a listing returns.
pub const MAX_LIST: i64 = 1000;

fn parse_docs<V: StreamView>(docs: Vec<String>) -> Result<Vec<V>, StoreError> {
    docs.iter().map(|doc| serde_json::from_str(doc).map_err(StoreError::from)).collect()
}

/// The view row with this id.
pub async fn get<V: StreamView>(store: &Store, id: Uuid) -> Result<Option<V>, StoreError> {
    let sql = format!("SELECT doc FROM {} WHERE {} = $1", V::TABLE, V::KEY);
    let doc: Option<String> = on_db!(store.db(), pool => {
        sqlx::query(&sql).bind(id.to_string()).fetch_optional(pool).await?.map(|row| row.try_get(0)).transpose()?
    });
    Ok(doc.map(|doc| serde_json::from_str(&doc)).transpose()?)
}

/// Up to `limit` rows of a view, newest first.
pub async fn list<V: StreamView>(store: &Store, limit: i64) -> Result<Vec<V>, StoreError> {
    let order = V::INDEX_COLUMNS.last().copied().unwrap_or(V::KEY);
    let sql = format!("SELECT doc FROM {} ORDER BY {order} DESC, {} DESC LIMIT $1", V::TABLE, V::KEY);
    let docs: Vec<String> = on_db!(store.db(), pool => {
        sqlx::query_scalar(&sql).bind(limit.min(MAX_LIST)).fetch_all(pool).await?
    });
    parse_docs(docs)
}

/// One page of a customer's calls, newest first, and the cursor of the next page.
/// The cursor is the id of the last call returned.
pub async fn call_history(
    store: &Store,
    tel: &str,
    limit: i64,
    after: Option<Uuid>,
) -> Result<(Vec<CallView>, Option<Uuid>), StoreError> {
    // One row more than asked tells whether another page follows.
    let fetch = limit + 1;
    let docs: Vec<String> = on_db!(store.db(), pool => match after {
        None => {
            sqlx::query_scalar(
                "SELECT doc FROM call_views WHERE tel = $1 ORDER BY requested_at DESC, call_id DESC LIMIT $2",
            )
            .bind(tel)
            .bind(fetch)
            .fetch_all(pool)
            .await?
        }
        Some(after) => {
            sqlx::query_scalar(
                "SELECT doc FROM call_views WHERE tel = $1 \
                 AND (requested_at, call_id) < (SELECT requested_at, call_id FROM call_views WHERE call_id = $2) \
                 ORDER BY requested_at DESC, call_id DESC LIMIT $3",
            )
            .bind(tel)
            .bind(after.to_string())
            .bind(fetch)
            .fetch_all(pool)
            .await?
        }
    });
    let mut calls: Vec<CallView> = parse_docs(docs)?;
    let next = if calls.len() as i64 > limit {
        calls.truncate(limit as usize);
        calls.last().map(|call| call.call_id)
    } else {
        None
    };
    Ok((calls, next))
}

/// Drivers, optionally only those with `status`, in order of registration.
pub async fn drivers(store: &Store, status: Option<DriverStatus>) -> Result<Vec<DriverView>, StoreError> {
    let docs: Vec<String> = on_db!(store.db(), pool => match status {
        None => {
            sqlx::query_scalar("SELECT doc FROM driver_views ORDER BY registered_at, driver_id LIMIT $1")
                .bind(MAX_LIST)
                .fetch_all(pool)
                .await?
        }
        Some(status) => {
            sqlx::query_scalar(
                "SELECT doc FROM driver_views WHERE status = $1 ORDER BY registered_at, driver_id LIMIT $2",
            )
            .bind(driver_status_name(status))
            .bind(MAX_LIST)
            .fetch_all(pool)
            .await?
        }
    });
    parse_docs(docs)
}

/// Every row of every view, as `(view, id, doc)` in a fixed order: what a replay must
/// leave byte for byte as it found it.
pub async fn dump(store: &Store) -> Result<Vec<(String, String, String)>, StoreError> {
    let mut rows = Vec::new();
    for (table, key) in [
        (CallView::TABLE, CallView::KEY),
        (DriverView::TABLE, DriverView::KEY),
        (crate::AssignmentView::TABLE, crate::AssignmentView::KEY),
    ] {
        let sql = format!("SELECT {key}, version, doc FROM {table} ORDER BY {key}");
        let table_rows: Vec<(String, String, String)> = on_db!(store.db(), pool => {
            sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| Ok::<_, sqlx::Error>((table.to_string(), row.try_get::<String, _>(0)?, format!("{}|{}", row.try_get::<i64, _>(1)?, row.try_get::<String, _>(2)?))))
                .collect::<Result<Vec<_>, _>>()?
        });
        rows.extend(table_rows);
    }
    Ok(rows)
}
