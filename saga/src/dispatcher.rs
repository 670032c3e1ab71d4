//! The saga's step function and its loop.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use cqrs_es::Aggregate;
use domain::{
    AssignedDriver, Assignment, AssignmentCommand, AssignmentError, Call, CallCommand, CallError, CallEvent, Driver,
    DriverCommand, DriverError, DriverEvent, ReleaseReason, Timestamp,
};
use store::{
    checkpoint, event_id, AnyEvent, CommandError, CommandMeta, Committed, LogPosition, LoggedEvent, Store, StoreError,
    Worker,
};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::candidates::rank_candidates;
use crate::state::{Dispatch, SagaState};

/// The saga's checkpoint name.
pub const SAGA_NAME: &str = "dispatch-saga";

/// Events read per step.
const BATCH_SIZE: usize = 500;

/// How many candidates an assignment request lists.
const CANDIDATES_LISTED: usize = 10;

/// How long the saga sleeps without a wake-up: also how late a deadline may be noticed.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

const ACTOR: &str = "dispatch-saga";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SagaConfig {
    /// How long a call may wait for a driver before it fails.
    pub dispatch_timeout: Duration,
    /// How far from the pickup a driver may be.
    pub radius_km: f64,
}

/// The dispatch process manager. Run one per database: it assumes no other instance
/// issues commands from the same checkpoint at the same time.
#[derive(Debug)]
pub struct DispatchSaga {
    store: Store,
    config: SagaConfig,
    /// The state and the checkpoint it is consistent with; loaded on first use.
    loaded: Option<(SagaState, LogPosition)>,
}

/// A domain rejection is an answer; only infrastructure failures stop a step.
fn settled<E: std::error::Error>(
    result: Result<Committed, CommandError<E>>,
) -> Result<Result<Committed, E>, StoreError> {
    match result {
        Ok(committed) => Ok(Ok(committed)),
        Err(CommandError::Rejected(rejection)) => Ok(Err(rejection)),
        Err(CommandError::Conflict) => Err(StoreError::EventStore("command kept conflicting".into())),
        Err(CommandError::Store(error)) => Err(error),
    }
}

impl DispatchSaga {
    pub fn new(store: Store, config: SagaConfig) -> Self {
        Self { store, config, loaded: None }
    }

    /// Handles the next batch of events, then (when caught up with the log) matches
    /// waiting calls with free drivers and fails calls whose deadline passed. Returns how
    /// many events it read. On an error nothing is saved, so the step is repeated.
    pub async fn run_once(&mut self) -> Result<usize, StoreError> {
        let (mut state, from) = match self.loaded.take() {
            Some(loaded) => loaded,
            None => (SagaState::load(&self.store).await?, checkpoint::read(&self.store, SAGA_NAME).await?),
        };
        let events = self.store.read_after(from, BATCH_SIZE).await?;
        let to = events.last().map_or(from, |event| event.position);
        for logged in &events {
            let span = tracing::info_span!(
                "saga",
                correlation_id = %logged.metadata.correlation_id,
                event_type = %logged.event_type,
            );
            self.handle(&mut state, logged).instrument(span).await?;
        }
        if events.len() < BATCH_SIZE {
            self.match_waiting_calls(&mut state).await?;
            self.fail_overdue_calls(&mut state, Utc::now()).await?;
        }

        if events.is_empty() && !state.has_changes() {
            // Idle: nothing to save, so no write transaction every poll.
            self.loaded = Some((state, from));
            return Ok(0);
        }
        let mut tx = self.store.begin().await?;
        let saved = checkpoint::lock(&mut tx, SAGA_NAME).await?;
        if saved != from {
            // Another instance moved the checkpoint: our state is stale, so start over.
            tracing::warn!(?saved, ?from, "saga checkpoint moved by another instance; reloading");
            return Ok(0);
        }
        state.save(&mut tx).await?;
        checkpoint::save(&mut tx, SAGA_NAME, to).await?;
        tx.commit().await?;
        self.loaded = Some((state, to));
        Ok(events.len())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let store = self.store.clone();
        store::run_worker(self, store, POLL_INTERVAL, shutdown).await;
    }

    async fn handle(&self, state: &mut SagaState, logged: &LoggedEvent) -> Result<(), StoreError> {
        let Some(id) = logged.aggregate_uuid() else {
            return Ok(());
        };
        let cause = logged.event_id();
        match logged.decode()? {
            AnyEvent::Call(CallEvent::CallRequested(request)) => {
                let deadline = request.requested_at
                    + chrono::Duration::from_std(self.config.dispatch_timeout).unwrap_or(chrono::Duration::MAX);
                let dispatch = Dispatch {
                    call_id: id,
                    drive_type: request.drive_type,
                    pickup: request.pickup.clone(),
                    requested_at: request.requested_at,
                    deadline,
                    reserved_driver: None,
                };
                let candidates = rank_candidates(
                    state.drivers.values(),
                    &dispatch.pickup,
                    dispatch.drive_type,
                    self.config.radius_km * 1000.0,
                )
                .into_iter()
                .take(CANDIDATES_LISTED)
                .map(|(driver_id, _)| driver_id)
                .collect();
                let now = Utc::now();
                let request_assignment = AssignmentCommand::Request {
                    call_id: id,
                    drive_type: dispatch.drive_type,
                    pickup: dispatch.pickup.clone(),
                    candidates,
                    at: now,
                };
                settled(
                    self.store
                        .execute::<Assignment>(id, request_assignment, &meta(id, cause, "RequestAssignment", id, now))
                        .await,
                )?
                .ok();
                let started = self
                    .store
                    .execute::<Call>(
                        id,
                        CallCommand::StartDispatch { at: now },
                        &meta(id, cause, "StartDispatch", id, now),
                    )
                    .await;
                // A call cancelled before dispatch began needs no driver.
                if settled(started)?.is_ok() {
                    state.start_dispatch(dispatch);
                }
            }
            AnyEvent::Call(CallEvent::CallConfirmed { .. } | CallEvent::CallFailed { .. }) => state.finish_dispatch(id),
            AnyEvent::Call(CallEvent::CallCancelled { .. }) => {
                state.finish_dispatch(id);
                self.close_assignment(state, id, cause, Closing::Cancel).await?;
            }
            AnyEvent::Call(CallEvent::CallCompleted { .. }) => {
                self.close_assignment(state, id, cause, Closing::Complete).await?;
            }
            AnyEvent::Call(CallEvent::CallDispatchStarted { .. }) => {}
            AnyEvent::Driver(event) => {
                state.apply_driver_event(id, &event);
                match event {
                    DriverEvent::DriverReserved { call_id, .. } => {
                        if let Some(dispatch) = state.dispatch_mut(call_id) {
                            dispatch.reserved_driver = Some(id);
                        }
                        self.confirm(state, call_id, id, cause).await?;
                    }
                    DriverEvent::DriverReleased { call_id, .. } => {
                        // A call still being dispatched lost its driver: it waits again.
                        if let Some(dispatch) = state.dispatch_mut(call_id).filter(|d| d.reserved_driver == Some(id)) {
                            dispatch.reserved_driver = None;
                        }
                    }
                    _ => {}
                }
            }
            AnyEvent::Assignment(_) | AnyEvent::Unknown => {}
        }
        Ok(())
    }

    /// Confirms a reservation on the assignment and then the call; releases the driver
    /// when the call can no longer use them.
    async fn confirm(
        &self,
        state: &mut SagaState,
        call_id: Uuid,
        driver_id: Uuid,
        cause: Uuid,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let confirm = AssignmentCommand::Confirm { driver_id, at: now };
        let confirmed = settled(
            self.store
                .execute::<Assignment>(call_id, confirm, &meta(call_id, cause, "ConfirmAssignment", call_id, now))
                .await,
        )?;
        let committed = match confirmed {
            Ok(committed) => committed,
            Err(AssignmentError::NotFound) => return Ok(()),
            Err(rejection) => {
                tracing::info!(%call_id, %driver_id, reason = %rejection, "reservation not needed; releasing");
                return self.release(call_id, driver_id, ReleaseReason::NotNeeded, cause).await;
            }
        };
        let Some(driver) = state.drivers.get(&driver_id) else {
            return Ok(());
        };
        let assigned = AssignedDriver { driver_id, name: driver.name.clone(), tel: driver.tel.clone() };
        let cause = event_id(Assignment::TYPE, &call_id.to_string(), committed.version);
        let confirm_call = CallCommand::Confirm { driver: assigned, at: now };
        match settled(
            self.store.execute::<Call>(call_id, confirm_call, &meta(call_id, cause, "ConfirmCall", call_id, now)).await,
        )? {
            Ok(committed) => {
                if let (true, Some(dispatch)) = (committed.appended > 0, state.dispatches.get(&call_id)) {
                    let waited = (now - dispatch.requested_at).to_std().unwrap_or_default();
                    metrics::histogram!("drivercenter_dispatch_latency_seconds").record(waited.as_secs_f64());
                }
                state.finish_dispatch(call_id);
            }
            // The cancel that beat us will cancel the assignment and release the driver;
            // a completed call was confirmed before (this is a redelivered reservation).
            Err(CallError::AlreadyCancelled | CallError::AlreadyCompleted) => {}
            Err(rejection) => tracing::warn!(%call_id, %driver_id, reason = %rejection, "call refused its driver"),
        }
        Ok(())
    }

    async fn release(
        &self,
        call_id: Uuid,
        driver_id: Uuid,
        reason: ReleaseReason,
        cause: Uuid,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let release = DriverCommand::Release { call_id, reason, at: now };
        match settled(
            self.store
                .execute::<Driver>(driver_id, release, &meta(call_id, cause, "ReleaseDriver", driver_id, now))
                .await,
        )? {
            Ok(_) | Err(DriverError::NotReservedForCall | DriverError::NotFound) => Ok(()),
            Err(rejection) => {
                tracing::warn!(%call_id, %driver_id, reason = %rejection, "driver could not be released");
                Ok(())
            }
        }
    }

    /// Ends the call's assignment and frees whoever was reserved for it.
    async fn close_assignment(
        &self,
        state: &SagaState,
        call_id: Uuid,
        cause: Uuid,
        closing: Closing,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let (command, name, reason) = match closing {
            Closing::Cancel => (
                AssignmentCommand::Cancel { reason: Some("call cancelled".into()), at: now },
                "CancelAssignment",
                ReleaseReason::CallCancelled,
            ),
            Closing::Complete => {
                (AssignmentCommand::Complete { at: now }, "CompleteAssignment", ReleaseReason::CallCompleted)
            }
        };
        let closed = settled(
            self.store.execute::<Assignment>(call_id, command, &meta(call_id, cause, name, call_id, now)).await,
        )?;
        let (assignment, version) = self.store.load::<Assignment>(call_id).await?;
        let release_cause = match closed {
            Ok(_) => event_id(Assignment::TYPE, &call_id.to_string(), version),
            Err(_) => cause,
        };
        // The assignment names its confirmed driver; a reservation that never reached it
        // is known from the driver's own events.
        let mut holders: Vec<Uuid> = assignment.driver_id().into_iter().collect();
        holders.extend(
            state.drivers.values().filter(|driver| driver.reserved_for == Some(call_id)).map(|driver| driver.driver_id),
        );
        holders.sort();
        holders.dedup();
        for driver_id in holders {
            self.release(call_id, driver_id, reason, release_cause).await?;
        }
        Ok(())
    }

    /// Offers each waiting call, oldest first, the nearest free driver who fits.
    async fn match_waiting_calls(&self, state: &mut SagaState) -> Result<(), StoreError> {
        let mut waiting: Vec<Dispatch> =
            state.dispatches.values().filter(|dispatch| dispatch.reserved_driver.is_none()).cloned().collect();
        waiting.sort_by_key(|dispatch| (dispatch.requested_at, dispatch.call_id));
        // Drivers who refused a reservation this round: our picture of them was stale,
        // and their own events, on their way, will correct it.
        let mut refused = HashSet::new();
        for dispatch in waiting {
            let call_id = dispatch.call_id;
            let cause = event_id(Assignment::TYPE, &call_id.to_string(), 1);
            let candidates = rank_candidates(
                state.drivers.values(),
                &dispatch.pickup,
                dispatch.drive_type,
                self.config.radius_km * 1000.0,
            );
            for (driver_id, _) in candidates {
                if refused.contains(&driver_id) {
                    continue;
                }
                let now = Utc::now();
                let reserve = DriverCommand::Reserve { call_id, drive_type: dispatch.drive_type, at: now };
                match settled(
                    self.store
                        .execute::<Driver>(driver_id, reserve, &meta(call_id, cause, "ReserveDriver", driver_id, now))
                        .await,
                )? {
                    Ok(committed) => {
                        if let Some(driver) = state.driver_mut(driver_id) {
                            driver.reserved_for = Some(call_id);
                        }
                        if let Some(dispatch) = state.dispatch_mut(call_id) {
                            dispatch.reserved_driver = Some(driver_id);
                        }
                        let reserved = event_id(Driver::TYPE, &driver_id.to_string(), committed.version);
                        self.confirm(state, call_id, driver_id, reserved).await?;
                        break;
                    }
                    Err(rejection) => {
                        metrics::counter!("drivercenter_saga_retries_total", "reason" => "reservation_refused")
                            .increment(1);
                        refused.insert(driver_id);
                        let refusal =
                            AssignmentCommand::RecordRefusal { driver_id, reason: rejection.to_string(), at: now };
                        settled(
                            self.store
                                .execute::<Assignment>(
                                    call_id,
                                    refusal,
                                    &meta(call_id, cause, "RecordRefusal", driver_id, now),
                                )
                                .await,
                        )?
                        .ok();
                    }
                }
            }
        }
        Ok(())
    }

    /// Fails every waiting call whose deadline has passed.
    async fn fail_overdue_calls(&self, state: &mut SagaState, now: Timestamp) -> Result<(), StoreError> {
        let overdue: Vec<Uuid> = state
            .dispatches
            .values()
            .filter(|dispatch| dispatch.reserved_driver.is_none() && dispatch.deadline <= now)
            .map(|dispatch| dispatch.call_id)
            .collect();
        for call_id in overdue {
            let reason = "no driver available before the dispatch deadline".to_string();
            let cause = event_id(Call::TYPE, &call_id.to_string(), 1);
            let fail = AssignmentCommand::Fail { reason: reason.clone(), at: now };
            let failed = settled(
                self.store
                    .execute::<Assignment>(call_id, fail, &meta(call_id, cause, "FailAssignment", call_id, now))
                    .await,
            )?;
            let cause = match failed {
                Ok(committed) => event_id(Assignment::TYPE, &call_id.to_string(), committed.version),
                // Confirmed or cancelled meanwhile: the events on their way settle the call.
                Err(_) => continue,
            };
            let fail_call = CallCommand::Fail { reason, at: now };
            settled(
                self.store.execute::<Call>(call_id, fail_call, &meta(call_id, cause, "FailCall", call_id, now)).await,
            )?
            .ok();
            state.finish_dispatch(call_id);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Closing {
    Cancel,
    Complete,
}

/// Metadata for a command the saga issues because of event `cause`, about `subject` (the
/// aggregate it targets, or the driver a refusal names). The command id is derived from
/// all three, so a redelivered event issues the identical command.
fn meta(correlation_id: Uuid, cause: Uuid, command: &str, subject: Uuid, now: Timestamp) -> CommandMeta {
    CommandMeta {
        correlation_id,
        causation_id: cause,
        command_id: Uuid::new_v5(&cause, format!("{command}/{subject}").as_bytes()),
        actor: ACTOR.to_string(),
        recorded_at: now,
    }
}

impl Worker for DispatchSaga {
    fn name(&self) -> &'static str {
        SAGA_NAME
    }

    async fn run_once(&mut self) -> Result<usize, StoreError> {
        DispatchSaga::run_once(self).await
    }
}
