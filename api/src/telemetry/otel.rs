//! OpenTelemetry trace export, built with the `otel` feature: when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector,
//! every span that passes the log filter goes there, its fields as attributes, in batches
//! over OTLP/HTTP with protobuf bodies. Without either variable nothing is started.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{ExporterBuildError, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Either names the collector; the exporter itself reads them, with their standard meaning.
const ENDPOINT_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"];

const DEFAULT_SERVICE_NAME: &str = "drivercenter";

/// The span pipeline: a batch processor on its own thread, feeding the OTLP exporter.
#[derive(Debug)]
pub(super) struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The pipeline the environment asks for, or none when no collector is named.
    fn from_env() -> Result<Option<Self>, ExporterBuildError> {
        if !ENDPOINT_VARIABLES.iter().any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty())) {
            return Ok(None);
        }
        let exporter = SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build()?;
        let service_name = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service_name).build())
            .with_batch_exporter(exporter)
            .build();
        Ok(Some(Self { provider }))
    }

    fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer(env!("CARGO_PKG_NAME")))
    }

    /// Exports the spans still queued, then stops the pipeline.
    pub(super) fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "the last spans may not have been exported");
        }
    }
}

/// Installs `subscriber`, with the span export layer when the environment names a collector.
/// An exporter that cannot be built is logged and left out: tracing never stops the service.
pub(super) fn install<S>(subscriber: S) -> Option<Traces>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync + 'static,
{
    let traces = Traces::from_env();
    let layer = traces.as_ref().ok().and_then(Option::as_ref).map(Traces::layer);
    if subscriber.with(layer).try_init().is_err() {
        // Another subscriber came first (tests start many servers in one process).
        return None;
    }
    match traces {
        Ok(traces) => traces,
        Err(error) => {
            tracing::warn!(%error, "cannot export spans to the OTLP endpoint; logging only");
            None
        }
    }
}
