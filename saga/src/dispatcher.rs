//! The saga's step function and its loop.
//!
//! A step folds its batch of events into the state in log order and turns each event
//! into a reaction for one call, decided from the state as of that event. Each call's
//! reactions then run in order, different calls' concurrently: their commands touch the
//! call's own aggregates, and drivers only through commands the driver's aggregate
//! judges on its current state.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use cqrs_es::Aggregate;
use domain::{
    AssignedDriver, Assignment, AssignmentCommand, AssignmentError, Call, CallCommand, CallError, CallEvent, Driver,
    DriverCommand, DriverError, DriverEvent, ReleaseReason, Timestamp,
};
use futures::stream::{self, StreamExt};
use store::{
    checkpoint, event_id, AnyEvent, CommandError, CommandMeta, Committed, LogPosition, LoggedEvent, Store, StoreError,
    Worker,
};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::candidates::rank_candidates;
use crate::state::{Dispatch, DriverSlot, SagaState};

/// The saga's checkpoint name.
pub const SAGA_NAME: &str = "dispatch-saga";

/// Events read per step.
const BATCH_SIZE: usize = 500;

/// Most calls whose commands are in flight at once; one call's commands run in order.
const IN_FLIGHT: usize = 256;

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

impl DispatchSaga {
    pub fn new(store: Store, config: SagaConfig) -> Self {
        Self { store, config, loaded: None }
    }

    /// Runs `command` on aggregate `id`. A domain rejection is an answer; only
    /// infrastructure failures stop a step.
    async fn issue<A>(
        &self,
        id: Uuid,
        command: A::Command,
        meta: CommandMeta,
    ) -> Result<Result<Committed, A::Error>, StoreError>
    where
        A: store::Stored,
        A::Command: Clone + Send + Sync,
    {
        answer(self.store.execute::<A>(id, command, &meta).await)
    }

    /// Like [`DispatchSaga::issue`], deciding first on `state` at `version`, the aggregate
    /// as the saga read it from the log, rather than reading its stream.
    async fn issue_from<A>(
        &self,
        id: Uuid,
        (state, version): (A, i64),
        command: A::Command,
        meta: CommandMeta,
    ) -> Result<Result<Committed, A::Error>, StoreError>
    where
        A: store::Stored,
        A::Command: Clone + Send + Sync,
    {
        answer(self.store.execute_from::<A>(id, state, version, command, &meta).await)
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
        self.handle(&mut state, &events).await?;
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

    /// Reacts to a batch: the state follows the events in log order, then each call's
    /// reactions run as one chain, the chains of different calls concurrently.
    async fn handle(&self, state: &mut SagaState, events: &[LoggedEvent]) -> Result<(), StoreError> {
        let mut chains: BTreeMap<Uuid, Vec<Step>> = BTreeMap::new();
        for logged in events {
            let span = tracing::info_span!(
                "saga",
                correlation_id = %logged.metadata.correlation_id,
                event_type = %logged.event_type,
            );
            if let Some((call_id, reaction)) = span.in_scope(|| self.react(state, logged))? {
                chains.entry(call_id).or_default().push(Step { cause: logged.event_id(), span, reaction });
            }
        }
        let chains: Vec<_> =
            chains.into_iter().map(|(call_id, steps)| (call_id, state.dispatch(call_id).cloned(), steps)).collect();
        let ran =
            all_settled(chains.into_iter().map(|(call_id, dispatch, steps)| self.run_chain(call_id, dispatch, steps)));
        for (call_id, dispatch) in ran.await? {
            state.set_dispatch(call_id, dispatch);
        }
        Ok(())
    }

    /// Folds the event into the state's drivers and says what it asks of which call,
    /// decided from the state as of that event.
    fn react(&self, state: &mut SagaState, logged: &LoggedEvent) -> Result<Option<(Uuid, Reaction)>, StoreError> {
        let Some(id) = logged.aggregate_uuid() else {
            return Ok(None);
        };
        let reaction = match logged.decode()? {
            AnyEvent::Call(CallEvent::CallRequested(request)) => {
                let deadline = request.requested_at
                    + chrono::Duration::from_std(self.config.dispatch_timeout).unwrap_or(chrono::Duration::MAX);
                let candidates = rank_candidates(
                    state.drivers.values(),
                    &request.pickup,
                    request.drive_type,
                    self.config.radius_km * 1000.0,
                )
                .into_iter()
                .take(CANDIDATES_LISTED)
                .map(|(driver_id, _)| driver_id)
                .collect();
                let dispatch = Dispatch {
                    call_id: id,
                    drive_type: request.drive_type,
                    pickup: request.pickup.clone(),
                    requested_at: request.requested_at,
                    deadline,
                    reserved_driver: None,
                };
                // The call as its first event left it, so that starting its dispatch
                // needs no read of a stream that another process wrote.
                let mut call = Call::default();
                call.apply(CallEvent::CallRequested(request));
                (id, Reaction::Request { dispatch, candidates, call: Box::new((call, logged.sequence)) })
            }
            AnyEvent::Call(CallEvent::CallConfirmed { .. } | CallEvent::CallFailed { .. }) => (id, Reaction::Finish),
            AnyEvent::Call(CallEvent::CallCancelled { .. }) => {
                (id, Reaction::Close { closing: Closing::Cancel, holders: state.holders(id) })
            }
            AnyEvent::Call(CallEvent::CallCompleted { .. }) => {
                (id, Reaction::Close { closing: Closing::Complete, holders: state.holders(id) })
            }
            AnyEvent::Driver(event) => {
                // The saga records its own reservations ahead of their events, having
                // confirmed them in the same step: such an event needs nothing more. Any
                // other (made elsewhere, or by a step that crashed) is confirmed or
                // released now.
                let known = match &event {
                    DriverEvent::DriverReserved { call_id, .. } => {
                        state.drivers.get(&id).is_some_and(|driver| driver.reserved_for == Some(*call_id))
                    }
                    _ => false,
                };
                state.apply_driver_event(id, &event);
                match event {
                    DriverEvent::DriverReserved { .. } if known => return Ok(None),
                    DriverEvent::DriverReserved { call_id, .. } => {
                        (call_id, Reaction::Reserved { driver_id: id, assigned: state.assigned(id) })
                    }
                    DriverEvent::DriverReleased { call_id, .. } => (call_id, Reaction::Released { driver_id: id }),
                    _ => return Ok(None),
                }
            }
            AnyEvent::Call(CallEvent::CallDispatchStarted { .. }) | AnyEvent::Assignment(_) | AnyEvent::Unknown => {
                return Ok(None)
            }
        };
        Ok(Some(reaction))
    }

    /// Runs one call's reactions in log order, starting from what the saga knew of its
    /// dispatch; returns what it knows after them.
    async fn run_chain(
        &self,
        call_id: Uuid,
        mut dispatch: Option<Dispatch>,
        steps: Vec<Step>,
    ) -> Result<(Uuid, Option<Dispatch>), StoreError> {
        for Step { cause, span, reaction } in steps {
            self.run_reaction(call_id, &mut dispatch, cause, reaction).instrument(span).await?;
        }
        Ok((call_id, dispatch))
    }

    async fn run_reaction(
        &self,
        call_id: Uuid,
        dispatch: &mut Option<Dispatch>,
        cause: Uuid,
        reaction: Reaction,
    ) -> Result<(), StoreError> {
        match reaction {
            Reaction::Request { dispatch: requested, candidates, call } => {
                if self.request(&requested, candidates, *call, cause).await? {
                    *dispatch = Some(requested);
                }
            }
            Reaction::Finish => *dispatch = None,
            Reaction::Close { closing, holders } => {
                *dispatch = None;
                self.close_assignment(call_id, holders, cause, closing).await?;
            }
            Reaction::Reserved { driver_id, assigned } => {
                if let Some(dispatch) = dispatch.as_mut() {
                    dispatch.reserved_driver = Some(driver_id);
                }
                self.confirm(call_id, driver_id, assigned, cause, dispatch).await?;
            }
            Reaction::Released { driver_id } => {
                // A call still being dispatched lost its driver: it waits again.
                if let Some(dispatch) = dispatch.as_mut().filter(|dispatch| dispatch.reserved_driver == Some(driver_id))
                {
                    dispatch.reserved_driver = None;
                }
            }
        }
        Ok(())
    }

    /// Opens the call's assignment and starts its dispatch from `call`, the call as the
    /// saga read it; false when the call was cancelled before dispatch began, so it needs
    /// no driver.
    async fn request(
        &self,
        dispatch: &Dispatch,
        candidates: Vec<Uuid>,
        call: (Call, i64),
        cause: Uuid,
    ) -> Result<bool, StoreError> {
        let call_id = dispatch.call_id;
        let now = Utc::now();
        let request_assignment = AssignmentCommand::Request {
            call_id,
            drive_type: dispatch.drive_type,
            pickup: dispatch.pickup.clone(),
            candidates,
            at: now,
        };
        // The assignment's stream starts here; after a crash it may exist already, and
        // the append that finds it runs the command again on what it holds.
        let meta_of = |name| meta(call_id, cause, name, call_id, now);
        let empty = (Assignment::default(), 0);
        self.issue_from::<Assignment>(call_id, empty, request_assignment, meta_of("RequestAssignment")).await?.ok();
        let start = CallCommand::StartDispatch { at: now };
        let started = self.issue_from::<Call>(call_id, call, start, meta_of("StartDispatch")).await?;
        Ok(started.is_ok())
    }

    /// Confirms a reservation on the assignment and then, when the driver is known, the
    /// call (which ends its dispatch); releases the driver when the call can no longer
    /// use them.
    async fn confirm(
        &self,
        call_id: Uuid,
        driver_id: Uuid,
        assigned: Option<AssignedDriver>,
        cause: Uuid,
        dispatch: &mut Option<Dispatch>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let confirm = AssignmentCommand::Confirm { driver_id, at: now };
        let confirmed =
            self.issue::<Assignment>(call_id, confirm, meta(call_id, cause, "ConfirmAssignment", call_id, now)).await?;
        let committed = match confirmed {
            Ok(committed) => committed,
            Err(AssignmentError::NotFound) => return Ok(()),
            Err(rejection) => {
                tracing::info!(%call_id, %driver_id, reason = %rejection, "reservation not needed; releasing");
                return self.release(call_id, driver_id, ReleaseReason::NotNeeded, cause).await;
            }
        };
        let Some(assigned) = assigned else {
            return Ok(());
        };
        let cause = event_id(Assignment::TYPE, &call_id.to_string(), committed.version);
        let confirm_call = CallCommand::Confirm { driver: assigned, at: now };
        match self.issue::<Call>(call_id, confirm_call, meta(call_id, cause, "ConfirmCall", call_id, now)).await? {
            Ok(committed) => {
                if let (true, Some(dispatch)) = (committed.appended > 0, dispatch.as_ref()) {
                    let waited = (now - dispatch.requested_at).to_std().unwrap_or_default();
                    metrics::histogram!("drivercenter_dispatch_latency_seconds").record(waited.as_secs_f64());
                }
                *dispatch = None;
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
        match self.issue::<Driver>(driver_id, release, meta(call_id, cause, "ReleaseDriver", driver_id, now)).await? {
            Ok(_) | Err(DriverError::NotReservedForCall | DriverError::NotFound) => Ok(()),
            Err(rejection) => {
                tracing::warn!(%call_id, %driver_id, reason = %rejection, "driver could not be released");
                Ok(())
            }
        }
    }

    /// Ends the call's assignment and frees whoever was reserved for it: the drivers the
    /// state saw reserved for the call or, when it saw none, the assignment's own.
    async fn close_assignment(
        &self,
        call_id: Uuid,
        mut holders: Vec<Uuid>,
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
        let closed = self.issue::<Assignment>(call_id, command, meta(call_id, cause, name, call_id, now)).await?;
        let release_cause = match closed {
            Ok(committed) => event_id(Assignment::TYPE, &call_id.to_string(), committed.version),
            Err(_) => cause,
        };
        if holders.is_empty() {
            holders.extend(self.store.load::<Assignment>(call_id).await?.0.driver_id());
        }
        for driver_id in holders {
            self.release(call_id, driver_id, reason, release_cause).await?;
        }
        Ok(())
    }

    /// Offers each waiting call, oldest first, the nearest free driver who fits, no
    /// driver to two calls; the offers run together. A call whose driver refused is
    /// offered the next one, until it is served or no candidate is left. The work is
    /// bounded by the free drivers, however many calls wait.
    async fn match_waiting_calls(&self, state: &mut SagaState) -> Result<(), StoreError> {
        // Drivers who refused a reservation in this step: our picture of them was stale,
        // and their own events, on their way, will correct it.
        let mut refused = HashSet::new();
        loop {
            let free: Vec<&DriverSlot> =
                state.free_drivers().filter(|driver| !refused.contains(&driver.driver_id)).collect();
            let mut offered = HashSet::new();
            let mut offers = Vec::new();
            for dispatch in state.waiting() {
                if offered.len() == free.len() {
                    break;
                }
                let candidates = rank_candidates(
                    free.iter().copied().filter(|driver| !offered.contains(&driver.driver_id)),
                    &dispatch.pickup,
                    dispatch.drive_type,
                    self.config.radius_km * 1000.0,
                );
                if let Some(&(driver_id, _)) = candidates.first() {
                    offered.insert(driver_id);
                    offers.push((dispatch.clone(), driver_id, state.assigned(driver_id)));
                }
            }
            if offers.is_empty() {
                return Ok(());
            }
            let answers = all_settled(offers.into_iter().map(|(dispatch, driver_id, assigned)| {
                let span = tracing::info_span!("saga", correlation_id = %dispatch.call_id);
                self.offer(dispatch, driver_id, assigned).instrument(span)
            }));
            for answer in answers.await? {
                match answer {
                    Offer::Taken { call_id, driver_id, dispatch } => {
                        state.reserve(driver_id, call_id);
                        state.set_dispatch(call_id, dispatch);
                    }
                    Offer::Refused { driver_id } => {
                        refused.insert(driver_id);
                    }
                }
            }
        }
    }

    /// Reserves `driver_id` for the waiting call and confirms them, or records the refusal.
    async fn offer(
        &self,
        mut dispatch: Dispatch,
        driver_id: Uuid,
        assigned: Option<AssignedDriver>,
    ) -> Result<Offer, StoreError> {
        let call_id = dispatch.call_id;
        let cause = event_id(Assignment::TYPE, &call_id.to_string(), 1);
        let now = Utc::now();
        let reserve = DriverCommand::Reserve { call_id, drive_type: dispatch.drive_type, at: now };
        let reserved =
            self.issue::<Driver>(driver_id, reserve, meta(call_id, cause, "ReserveDriver", driver_id, now)).await?;
        match reserved {
            Ok(committed) => {
                dispatch.reserved_driver = Some(driver_id);
                let mut dispatch = Some(dispatch);
                let reserved = event_id(Driver::TYPE, &driver_id.to_string(), committed.version);
                self.confirm(call_id, driver_id, assigned, reserved, &mut dispatch).await?;
                Ok(Offer::Taken { call_id, driver_id, dispatch })
            }
            Err(rejection) => {
                metrics::counter!("drivercenter_saga_retries_total", "reason" => "reservation_refused").increment(1);
                let refusal = AssignmentCommand::RecordRefusal { driver_id, reason: rejection.to_string(), at: now };
                self.issue::<Assignment>(call_id, refusal, meta(call_id, cause, "RecordRefusal", driver_id, now))
                    .await?
                    .ok();
                Ok(Offer::Refused { driver_id })
            }
        }
    }

    /// Fails every waiting call whose deadline has passed.
    async fn fail_overdue_calls(&self, state: &mut SagaState, now: Timestamp) -> Result<(), StoreError> {
        let overdue: Vec<Uuid> =
            state.waiting().filter(|dispatch| dispatch.deadline <= now).map(|dispatch| dispatch.call_id).collect();
        let failed = all_settled(overdue.into_iter().map(|call_id| {
            let span = tracing::info_span!("saga", correlation_id = %call_id);
            self.fail(call_id, now).instrument(span)
        }));
        for call_id in failed.await?.into_iter().flatten() {
            state.set_dispatch(call_id, None);
        }
        Ok(())
    }

    /// Fails the assignment and then the call; the call id when the dispatch is over.
    async fn fail(&self, call_id: Uuid, now: Timestamp) -> Result<Option<Uuid>, StoreError> {
        let reason = "no driver available before the dispatch deadline".to_string();
        let cause = event_id(Call::TYPE, &call_id.to_string(), 1);
        let fail = AssignmentCommand::Fail { reason: reason.clone(), at: now };
        let failed =
            self.issue::<Assignment>(call_id, fail, meta(call_id, cause, "FailAssignment", call_id, now)).await?;
        let cause = match failed {
            Ok(committed) => event_id(Assignment::TYPE, &call_id.to_string(), committed.version),
            // Confirmed or cancelled meanwhile: the events on their way settle the call.
            Err(_) => return Ok(None),
        };
        let fail_call = CallCommand::Fail { reason, at: now };
        self.issue::<Call>(call_id, fail_call, meta(call_id, cause, "FailCall", call_id, now)).await?.ok();
        Ok(Some(call_id))
    }
}

/// What one event asks the saga to do about one call.
#[derive(Debug)]
enum Reaction {
    /// A new call: open its assignment with these candidates and start its dispatch.
    Request { dispatch: Dispatch, candidates: Vec<Uuid>, call: Box<(Call, i64)> },
    /// Confirmed or failed: the dispatch is over.
    Finish,
    /// Cancelled or completed: end the dispatch and the assignment, release the holders.
    Close { closing: Closing, holders: Vec<Uuid> },
    /// A driver, named to the customer as `assigned` (`None`: unknown to the saga), was
    /// reserved for the call without the saga confirming it yet.
    Reserved { driver_id: Uuid, assigned: Option<AssignedDriver> },
    /// A driver's reservation for the call ended.
    Released { driver_id: Uuid },
}

/// A reaction, the event that caused it, and that event's span.
#[derive(Debug)]
struct Step {
    cause: Uuid,
    span: tracing::Span,
    reaction: Reaction,
}

/// How an offer of a driver to a waiting call ended.
#[derive(Debug)]
enum Offer {
    /// Reserved (and, unless the call could no longer use them, confirmed); `dispatch` is
    /// what remains of the call's dispatch.
    Taken { call_id: Uuid, driver_id: Uuid, dispatch: Option<Dispatch> },
    /// The driver refused; the call still waits.
    Refused { driver_id: Uuid },
}

/// Runs `jobs`, at most [`IN_FLIGHT`] at a time. Every job runs to its end before the
/// first failure is reported, so that none is cut off between two commands.
async fn all_settled<T>(
    jobs: impl IntoIterator<Item = impl Future<Output = Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    let results: Vec<Result<T, StoreError>> = stream::iter(jobs).buffer_unordered(IN_FLIGHT).collect().await;
    results.into_iter().collect()
}

#[derive(Debug, Clone, Copy)]
enum Closing {
    Cancel,
    Complete,
}

/// A command's outcome as the saga takes it: a rejection is an answer, the rest an error.
fn answer<E>(outcome: Result<Committed, CommandError<E>>) -> Result<Result<Committed, E>, StoreError>
where
    E: std::error::Error,
{
    match outcome {
        Ok(committed) => Ok(Ok(committed)),
        Err(CommandError::Rejected(rejection)) => Ok(Err(rejection)),
        Err(CommandError::Conflict) => Err(StoreError::EventStore("command kept conflicting".into())),
        Err(CommandError::Store(error)) => Err(error),
    }
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

    fn caught_up(&self, read: usize) -> bool {
        read < BATCH_SIZE
    }
}
