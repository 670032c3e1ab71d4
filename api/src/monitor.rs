//! Measures, at a fixed interval, how far each subscriber lags behind the head of the
//! log: the dispatch backlog feeds the overload guard, every lag feeds `/metrics`.
//! Measured in the background so that no request pays for it.

use std::sync::atomic::Ordering;

use store::checkpoint;
use tokio::sync::watch;

use crate::AppState;

/// The saga's lag, in events: what the dispatch backlog is made of.
const DISPATCH: &str = saga::SAGA_NAME;

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(state.config.limits.monitor_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*shutdown.borrow() {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => continue,
        }
        if let Err(error) = measure(&state).await {
            tracing::debug!(error = %store::error_chain(&error), "cannot measure the subscribers' lag");
        }
        crate::telemetry::metrics().run_upkeep();
    }
}

async fn measure(state: &AppState) -> Result<(), store::StoreError> {
    let head = state.store.head().await?.unwrap_or_default();
    let checkpoints = checkpoint::read_all(&state.store).await?;
    let lag_of = |name: &str| {
        let at = checkpoints.iter().find(|(subscriber, _)| subscriber == name).map(|(_, at)| *at).unwrap_or_default();
        u64::try_from(head.prepare - at.prepare).unwrap_or(0)
    };
    let backlog = lag_of(DISPATCH);
    state.load.dispatch_backlog.store(backlog, Ordering::Relaxed);
    metrics::gauge!("drivercenter_dispatch_backlog_events").set(backlog as f64);
    for (name, _) in &checkpoints {
        metrics::gauge!("drivercenter_subscriber_lag_events", "subscriber" => name.clone()).set(lag_of(name) as f64);
    }
    Ok(())
}
