//! What the saga remembers between events, and how it is saved with its checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use domain::{DriveType, DriverEvent, Location, Tel, Timestamp};
use serde::{Deserialize, Serialize};
use store::{on_db, on_tx, Store, StoreError, Tx};
use uuid::Uuid;

/// A driver as far as dispatch is concerned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverSlot {
    pub driver_id: Uuid,
    pub name: String,
    pub tel: Tel,
    pub can_drive_manual: bool,
    pub online: bool,
    pub location: Option<Location>,
    pub reserved_for: Option<Uuid>,
}

impl DriverSlot {
    pub fn is_free(&self) -> bool {
        self.online && self.reserved_for.is_none()
    }
}

/// A call the saga is finding a driver for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    pub call_id: Uuid,
    pub drive_type: DriveType,
    pub pickup: Location,
    pub requested_at: Timestamp,
    pub deadline: Timestamp,
    /// The driver reserved for the call, once a reservation succeeded.
    pub reserved_driver: Option<Uuid>,
}

/// The saga's memory, with track of what changed since it was last saved.
#[derive(Debug, Default)]
pub struct SagaState {
    pub drivers: BTreeMap<Uuid, DriverSlot>,
    pub dispatches: BTreeMap<Uuid, Dispatch>,
    changed_drivers: BTreeSet<Uuid>,
    changed_dispatches: BTreeSet<Uuid>,
}

impl SagaState {
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let (drivers, dispatches): (Vec<String>, Vec<String>) = on_db!(store.db(), pool => {
            let drivers = sqlx::query_scalar("SELECT doc FROM saga_drivers").fetch_all(pool).await?;
            let dispatches = sqlx::query_scalar("SELECT doc FROM saga_dispatches").fetch_all(pool).await?;
            (drivers, dispatches)
        });
        let mut state = Self::default();
        for doc in drivers {
            let driver: DriverSlot = serde_json::from_str(&doc)?;
            state.drivers.insert(driver.driver_id, driver);
        }
        for doc in dispatches {
            let dispatch: Dispatch = serde_json::from_str(&doc)?;
            state.dispatches.insert(dispatch.call_id, dispatch);
        }
        Ok(state)
    }

    pub fn driver_mut(&mut self, driver_id: Uuid) -> Option<&mut DriverSlot> {
        self.changed_drivers.insert(driver_id);
        self.drivers.get_mut(&driver_id)
    }

    pub fn dispatch_mut(&mut self, call_id: Uuid) -> Option<&mut Dispatch> {
        self.changed_dispatches.insert(call_id);
        self.dispatches.get_mut(&call_id)
    }

    pub fn start_dispatch(&mut self, dispatch: Dispatch) {
        self.changed_dispatches.insert(dispatch.call_id);
        self.dispatches.insert(dispatch.call_id, dispatch);
    }

    pub fn finish_dispatch(&mut self, call_id: Uuid) {
        self.changed_dispatches.insert(call_id);
        self.dispatches.remove(&call_id);
    }

    /// Follows a driver's own events.
    pub fn apply_driver_event(&mut self, driver_id: Uuid, event: &DriverEvent) {
        if let DriverEvent::DriverRegistered { name, tel, can_drive_manual, .. } = event {
            self.changed_drivers.insert(driver_id);
            self.drivers.insert(
                driver_id,
                DriverSlot {
                    driver_id,
                    name: name.clone(),
                    tel: tel.clone(),
                    can_drive_manual: *can_drive_manual,
                    online: false,
                    location: None,
                    reserved_for: None,
                },
            );
            return;
        }
        let Some(driver) = self.driver_mut(driver_id) else {
            return;
        };
        match event {
            DriverEvent::DriverRegistered { .. } => {}
            DriverEvent::DriverWentOnline { location, .. } => {
                driver.online = true;
                driver.location = Some(location.clone());
            }
            DriverEvent::DriverLocationUpdated { location, .. } => driver.location = Some(location.clone()),
            DriverEvent::DriverWentOffline { .. } => driver.online = false,
            DriverEvent::DriverReserved { call_id, .. } => driver.reserved_for = Some(*call_id),
            DriverEvent::DriverReleased { .. } => driver.reserved_for = None,
        }
    }

    /// Whether anything changed since the last save.
    pub fn has_changes(&self) -> bool {
        !(self.changed_drivers.is_empty() && self.changed_dispatches.is_empty())
    }

    /// Writes what changed since the last save into `tx`.
    pub async fn save(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        for driver_id in std::mem::take(&mut self.changed_drivers) {
            let Some(driver) = self.drivers.get(&driver_id) else {
                continue;
            };
            upsert(tx, "saga_drivers", "driver_id", driver_id, serde_json::to_string(driver)?).await?;
        }
        for call_id in std::mem::take(&mut self.changed_dispatches) {
            match self.dispatches.get(&call_id) {
                Some(dispatch) => {
                    upsert(tx, "saga_dispatches", "call_id", call_id, serde_json::to_string(dispatch)?).await?
                }
                None => on_tx!(&mut *tx, conn => {
                    sqlx::query("DELETE FROM saga_dispatches WHERE call_id = $1")
                        .bind(call_id.to_string())
                        .execute(conn)
                        .await?;
                }),
            }
        }
        Ok(())
    }
}

async fn upsert(tx: &mut Tx, table: &str, key: &str, id: Uuid, doc: String) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO {table} ({key}, doc) VALUES ($1, $2) ON CONFLICT ({key}) DO UPDATE SET doc = excluded.doc"
    );
    on_tx!(tx, conn => {
        sqlx::query(&sql).bind(id.to_string()).bind(doc).execute(conn).await?;
    });
    Ok(())
}
