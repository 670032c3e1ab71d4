//! Logging and metrics: pretty log lines for people, JSON lines for log collectors
//! (`RUST_LOG` filters); Prometheus metrics recorded through the `metrics` facade, so any
//! crate can count without knowing the exporter. A build with the `otel` feature can also
//! export spans to an OpenTelemetry collector.

#[cfg(feature = "otel")]
mod otel;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// What `init` started that must be stopped at exit: the span exporter, in a build and an
/// environment that have one.
#[derive(Debug)]
#[must_use = "call `shutdown` at exit, so that the last spans are exported"]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    traces: Option<otel::Traces>,
}

impl Telemetry {
    /// Exports what is still queued and stops; call it once the command has returned.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(traces) = self.traces {
            traces.shutdown();
        }
    }
}

pub fn init(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Pretty => lines.compact().boxed(),
        // Each line carries its innermost span: a request's request and correlation ids, or the
        // saga's or the notifier's correlation id. The outer spans would only repeat them.
        LogFormat::Json => lines.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(lines);
    #[cfg(feature = "otel")]
    let traces = otel::install(subscriber);
    // A second init (tests start many servers in one process) keeps the first.
    #[cfg(not(feature = "otel"))]
    let _ = tracing_subscriber::util::SubscriberInitExt::try_init(subscriber);
    Telemetry {
        #[cfg(feature = "otel")]
        traces,
    }
}

/// Latency buckets, in seconds: from a fast read to a customer giving up on a call.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process's metrics recorder, installed on first use; one per process, since the
/// `metrics` facade has one global recorder.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot install the metrics recorder; /metrics shows nothing");
                PrometheusBuilder::new().build_recorder().handle()
            })
    })
}
