//! The rows of one view that a batch of events changes: loaded in one query, folded in
//! memory, saved in one statement.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use store::{LogPosition, LoggedEvent, StoreError, Tx};
use uuid::Uuid;

use crate::{StreamView, ViewChange};

/// View rows as the database holds them after the last committed batch, or as the
/// current batch leaves them.
#[derive(Debug)]
pub(crate) struct Rows<V> {
    /// `None`: known to have no row.
    known: HashMap<Uuid, Option<V>>,
    /// Whether `known` holds every row of the table, so that an id it lacks has no row
    /// and nothing needs loading: true while a replay rebuilds a table it emptied.
    complete: bool,
}

impl<V: StreamView> Rows<V> {
    /// Knows nothing yet: rows are loaded as batches touch them.
    pub(crate) fn loaded_on_demand() -> Self {
        Self { known: HashMap::new(), complete: false }
    }

    /// The rows of a table that is empty now.
    pub(crate) fn of_empty_table() -> Self {
        Self { known: HashMap::new(), complete: true }
    }

    /// Forgets everything: another writer changed the table behind this one's back.
    pub(crate) fn forget(&mut self) {
        *self = Self::loaded_on_demand();
    }

    /// Applies the view's events of `events` that lie after `after`, inside `tx`, and
    /// saves the rows they changed; returns the changes to announce once `tx` commits.
    /// Events of other aggregates are never decoded.
    pub(crate) async fn apply(
        &mut self,
        tx: &mut Tx,
        events: &[LoggedEvent],
        after: LogPosition,
    ) -> Result<Vec<ViewChange>, StoreError> {
        let mine: Vec<(Uuid, &LoggedEvent)> = events
            .iter()
            .filter(|logged| logged.position > after && logged.aggregate_type == V::AGGREGATE)
            .filter_map(|logged| Some((logged.aggregate_uuid()?, logged)))
            .collect();
        if !self.complete {
            let mut missing: Vec<Uuid> =
                mine.iter().map(|(id, _)| *id).filter(|id| !self.known.contains_key(id)).collect();
            missing.sort_unstable();
            missing.dedup();
            let mut loaded = load::<V>(tx, &missing).await?;
            for id in missing {
                self.known.insert(id, loaded.remove(&id));
            }
        }

        let mut changed = Vec::new();
        let mut seen = HashSet::new();
        for (id, logged) in mine {
            let current = self.known.remove(&id).flatten();
            let next = V::apply(current, &logged.decode()?, logged);
            if next.is_some() && seen.insert(id) {
                changed.push(id);
            }
            self.known.insert(id, next);
        }
        let rows: Vec<(Uuid, &V)> =
            changed.iter().filter_map(|id| Some((*id, self.known.get(id)?.as_ref()?))).collect();
        save(tx, &rows).await?;
        Ok(rows.iter().map(|(id, view)| ViewChange { view: V::NAME, id: *id, version: view.version() }).collect())
    }
}

/// The rows of `ids` that exist, in one query.
async fn load<V: StreamView>(tx: &mut Tx, ids: &[Uuid]) -> Result<HashMap<Uuid, V>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let select = format!("SELECT {key}, doc FROM {table} WHERE {key}", key = V::KEY, table = V::TABLE);
    let rows: Vec<(String, String)> = match tx {
        Tx::Postgres(tx) => sqlx::query_as(&format!("{select} = ANY($1)")).bind(keys).fetch_all(&mut **tx).await?,
        Tx::Sqlite(tx) => {
            sqlx::query_as(&format!("{select} IN (SELECT value FROM json_each($1))"))
                .bind(serde_json::to_string(&keys)?)
                .fetch_all(&mut **tx)
                .await?
        }
    };
    let mut views = HashMap::with_capacity(rows.len());
    for (key, doc) in rows {
        let Ok(id) = Uuid::parse_str(&key) else { continue };
        views.insert(id, serde_json::from_str(&doc)?);
    }
    Ok(views)
}

/// Inserts or replaces `rows`.
async fn save<V: StreamView>(tx: &mut Tx, rows: &[(Uuid, &V)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let columns: Vec<&str> = [V::KEY, "version", "doc"].into_iter().chain(V::INDEX_COLUMNS.iter().copied()).collect();
    let updates: Vec<String> = columns[1..].iter().map(|column| format!("{column} = excluded.{column}")).collect();
    let upsert = |source: String| {
        format!(
            "INSERT INTO {table} ({columns}) {source} ON CONFLICT ({key}) DO UPDATE SET {updates}",
            table = V::TABLE,
            columns = columns.join(", "),
            key = V::KEY,
            updates = updates.join(", "),
        )
    };
    let keys: Vec<String> = rows.iter().map(|(id, _)| id.to_string()).collect();
    let versions: Vec<i64> = rows.iter().map(|(_, view)| view.version()).collect();
    let docs: Vec<String> = rows.iter().map(|(_, view)| serde_json::to_string(view)).collect::<Result<_, _>>()?;
    let indexes: Vec<Vec<String>> = rows.iter().map(|(_, view)| view.index_columns()).collect();
    match tx {
        Tx::Postgres(tx) => {
            // One array per column; the second (version) is the only number.
            let arrays: Vec<String> =
                (1..=columns.len()).map(|n| format!("${n}::{}[]", if n == 2 { "bigint" } else { "text" })).collect();
            let sql = upsert(format!("SELECT * FROM unnest({})", arrays.join(", ")));
            let mut query = sqlx::query(&sql).bind(keys).bind(versions).bind(docs);
            for column in 0..V::INDEX_COLUMNS.len() {
                let values: Vec<String> = indexes.iter().map(|values| values[column].clone()).collect();
                query = query.bind(values);
            }
            query.execute(&mut **tx).await?;
        }
        Tx::Sqlite(tx) => {
            // One JSON array of rows, each an array of the columns' values.
            let fields: Vec<String> = (0..columns.len()).map(|n| format!("value ->> {n}")).collect();
            // `WHERE true` tells SQLite's parser that ON CONFLICT starts the upsert clause.
            let sql = upsert(format!("SELECT {} FROM json_each($1) WHERE true", fields.join(", ")));
            let mut table = Vec::with_capacity(rows.len());
            for (((key, version), doc), index) in keys.into_iter().zip(versions).zip(docs).zip(indexes) {
                let mut row = vec![Value::from(key), Value::from(version), Value::from(doc)];
                row.extend(index.into_iter().map(Value::from));
                table.push(Value::Array(row));
            }
            sqlx::query(&sql).bind(Value::Array(table).to_string()).execute(&mut **tx).await?;
        }
    }
    Ok(())
}
