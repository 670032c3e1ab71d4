//! What the saga remembers between events, and how it is saved with its checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use domain::{AssignedDriver, DriveType, DriverEvent, Location, Tel, Timestamp};
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;
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
    dispatches: BTreeMap<Uuid, Dispatch>,
    /// The dispatches still without a driver, oldest request first.
    waiting: BTreeSet<(Timestamp, Uuid)>,
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
            index(&mut state.waiting, &dispatch);
            state.dispatches.insert(dispatch.call_id, dispatch);
        }
        Ok(state)
    }

    /// The drivers the saga knows to be reserved for the call.
    pub fn holders(&self, call_id: Uuid) -> Vec<Uuid> {
        self.drivers
            .values()
            .filter(|driver| driver.reserved_for == Some(call_id))
            .map(|driver| driver.driver_id)
            .collect()
    }

    /// The driver as a call names them to its customer.
    pub fn assigned(&self, driver_id: Uuid) -> Option<AssignedDriver> {
        self.drivers.get(&driver_id).map(|driver| AssignedDriver {
            driver_id,
            name: driver.name.clone(),
            tel: driver.tel.clone(),
        })
    }

    /// Replaces what the saga knows of a call's dispatch (`None`: it is over), marking
    /// the row for the next save only when it changed.
    pub fn set_dispatch(&mut self, call_id: Uuid, dispatch: Option<Dispatch>) {
        if self.dispatches.get(&call_id) == dispatch.as_ref() {
            return;
        }
        self.changed_dispatches.insert(call_id);
        let replaced = match dispatch {
            Some(dispatch) => self.dispatches.insert(call_id, dispatch),
            None => self.dispatches.remove(&call_id),
        };
        if let Some(replaced) = replaced {
            self.waiting.remove(&(replaced.requested_at, call_id));
        }
        if let Some(dispatch) = self.dispatches.get(&call_id) {
            index(&mut self.waiting, dispatch);
        }
    }

    pub fn dispatch(&self, call_id: Uuid) -> Option<&Dispatch> {
        self.dispatches.get(&call_id)
    }

    /// The calls waiting for a driver, oldest request first.
    pub fn waiting(&self) -> impl Iterator<Item = &Dispatch> {
        self.waiting.iter().filter_map(|(_, call_id)| self.dispatches.get(call_id))
    }

    /// The drivers free to take a call.
    pub fn free_drivers(&self) -> impl Iterator<Item = &DriverSlot> {
        self.drivers.values().filter(|driver| driver.is_free())
    }

    /// Records a reservation the saga made itself, ahead of its event.
    pub fn reserve(&mut self, driver_id: Uuid, call_id: Uuid) {
        if let Some(driver) = self.drivers.get_mut(&driver_id).filter(|driver| driver.reserved_for != Some(call_id)) {
            driver.reserved_for = Some(call_id);
            self.changed_drivers.insert(driver_id);
        }
    }

    /// Follows a driver's own events.
    pub fn apply_driver_event(&mut self, driver_id: Uuid, event: &DriverEvent) {
        let updated = match (event, self.drivers.get(&driver_id)) {
            (DriverEvent::DriverRegistered { name, tel, can_drive_manual, .. }, _) => DriverSlot {
                driver_id,
                name: name.clone(),
                tel: tel.clone(),
                can_drive_manual: *can_drive_manual,
                online: false,
                location: None,
                reserved_for: None,
            },
            (_, None) => return,
            (_, Some(known)) => {
                let mut driver = known.clone();
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
                driver
            }
        };
        // A reservation the saga made itself arrives as an event it already knows of:
        // the row need not be written again.
        if self.drivers.get(&driver_id) != Some(&updated) {
            self.changed_drivers.insert(driver_id);
            self.drivers.insert(driver_id, updated);
        }
    }

    /// Whether anything changed since the last save.
    pub fn has_changes(&self) -> bool {
        !(self.changed_drivers.is_empty() && self.changed_dispatches.is_empty())
    }

    /// Writes what changed since the last save into `tx`, a few statements for the lot.
    pub async fn save(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let mut drivers = Vec::new();
        for driver_id in std::mem::take(&mut self.changed_drivers) {
            if let Some(driver) = self.drivers.get(&driver_id) {
                drivers.push((driver_id, serde_json::to_string(driver)?));
            }
        }
        let (mut dispatches, mut finished) = (Vec::new(), Vec::new());
        for call_id in std::mem::take(&mut self.changed_dispatches) {
            match self.dispatches.get(&call_id) {
                Some(dispatch) => dispatches.push((call_id, serde_json::to_string(dispatch)?)),
                None => finished.push(call_id),
            }
        }
        upsert(tx, "saga_drivers", "driver_id", &drivers).await?;
        upsert(tx, "saga_dispatches", "call_id", &dispatches).await?;
        delete(tx, "saga_dispatches", "call_id", &finished).await
    }
}

fn index(waiting: &mut BTreeSet<(Timestamp, Uuid)>, dispatch: &Dispatch) {
    if dispatch.reserved_driver.is_none() {
        waiting.insert((dispatch.requested_at, dispatch.call_id));
    }
}

/// Rows per statement: two parameters each, within the 999 that any SQLite build binds.
const ROWS_PER_STATEMENT: usize = 400;

async fn upsert(tx: &mut Tx, table: &str, key: &str, rows: &[(Uuid, String)]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        on_tx!(&mut *tx, conn => {
            let mut insert = QueryBuilder::new(format!("INSERT INTO {table} ({key}, doc) "));
            insert.push_values(chunk, |mut row, (id, doc)| {
                row.push_bind(id.to_string()).push_bind(doc.as_str());
            });
            insert.push(format!(" ON CONFLICT ({key}) DO UPDATE SET doc = excluded.doc"));
            insert.build().execute(conn).await?;
        });
    }
    Ok(())
}

async fn delete(tx: &mut Tx, table: &str, key: &str, ids: &[Uuid]) -> Result<(), StoreError> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        on_tx!(&mut *tx, conn => {
            let mut delete = QueryBuilder::new(format!("DELETE FROM {table} WHERE {key} IN ("));
            let mut listed = delete.separated(", ");
            for id in chunk {
                listed.push_bind(id.to_string());
            }
            delete.push(")");
            delete.build().execute(conn).await?;
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn registered(state: &mut SagaState) -> Uuid {
        let driver_id = Uuid::now_v7();
        let tel = Tel::parse("01012345678").expect("a valid number");
        let registered = DriverEvent::DriverRegistered {
            driver_id,
            name: "기사".into(),
            tel,
            can_drive_manual: false,
            registered_at: Utc::now(),
        };
        state.apply_driver_event(driver_id, &registered);
        driver_id
    }

    /// A state with one registered driver, everything saved.
    fn saved_state() -> (SagaState, Uuid) {
        let mut state = SagaState::default();
        let driver_id = registered(&mut state);
        state.changed_drivers.clear();
        (state, driver_id)
    }

    fn mapo() -> Location {
        Location { address: "마포구".into(), lat: 37.5663, lng: 126.9019 }
    }

    fn dispatch(call_id: Uuid) -> Dispatch {
        Dispatch {
            call_id,
            drive_type: DriveType::Auto,
            pickup: mapo(),
            requested_at: Utc::now(),
            deadline: Utc::now(),
            reserved_driver: None,
        }
    }

    #[test]
    fn a_reservation_the_saga_recorded_itself_is_not_written_again_when_its_event_arrives() {
        let (mut state, driver_id) = saved_state();
        let call_id = Uuid::now_v7();
        state.reserve(driver_id, call_id);
        assert!(state.has_changes());
        state.changed_drivers.clear();

        state.apply_driver_event(driver_id, &DriverEvent::DriverReserved { call_id, reserved_at: Utc::now() });
        assert!(!state.has_changes());
        assert_eq!(state.holders(call_id), [driver_id]);
    }

    #[test]
    fn only_the_driver_an_event_changes_is_marked_for_saving() {
        let (mut state, driver_id) = saved_state();
        let other = registered(&mut state);
        state.changed_drivers.clear();

        state.apply_driver_event(driver_id, &DriverEvent::DriverWentOffline { offline_at: Utc::now() });
        assert!(!state.has_changes(), "an offline driver going offline changes nothing");
        state.apply_driver_event(other, &DriverEvent::DriverWentOnline { location: mapo(), online_at: Utc::now() });
        assert_eq!(state.changed_drivers, BTreeSet::from([other]));
    }

    #[test]
    fn a_dispatch_set_to_what_it_was_is_not_marked_for_saving() {
        let (mut state, _) = saved_state();
        let call_id = Uuid::now_v7();
        state.set_dispatch(call_id, None);
        assert!(!state.has_changes(), "a call never dispatched, finished");

        state.set_dispatch(call_id, Some(dispatch(call_id)));
        state.changed_dispatches.clear();
        state.set_dispatch(call_id, state.dispatches.get(&call_id).cloned());
        assert!(!state.has_changes());
        state.set_dispatch(call_id, None);
        assert_eq!(state.changed_dispatches, BTreeSet::from([call_id]));
        assert!(state.dispatches.is_empty());
    }

    #[test]
    fn the_waiting_calls_are_those_without_a_driver_oldest_first() {
        let (mut state, driver_id) = saved_state();
        let (older, newer, served) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let at = |seconds| Utc::now() - chrono::Duration::seconds(seconds);
        for (call_id, requested_at) in [(newer, at(1)), (older, at(3)), (served, at(2))] {
            state.set_dispatch(call_id, Some(Dispatch { requested_at, ..dispatch(call_id) }));
        }
        let reserved = Dispatch { reserved_driver: Some(driver_id), ..state.dispatch(served).cloned().expect("known") };
        state.set_dispatch(served, Some(reserved));
        let waiting = |state: &SagaState| state.waiting().map(|dispatch| dispatch.call_id).collect::<Vec<_>>();
        assert_eq!(waiting(&state), [older, newer]);

        state.set_dispatch(older, None);
        assert_eq!(waiting(&state), [newer]);
    }
}
