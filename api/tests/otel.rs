//! Span export of the real binary built with the `otel` feature: a local OTLP/HTTP receiver
//! takes the exports of one dispatched call, and the spans sent when SIGTERM stops the
//! process carry the request id and the call's correlation id.
#![cfg(feature = "otel")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};

const PROTOBUF: &str = "application/x-protobuf";

/// Every export body the receiver took, with its content type.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

async fn take_export(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1]) {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    received.lock().expect("receiver lock").push((content_type.to_string(), body));
    // An empty body is an empty ExportTraceServiceResponse: everything was accepted.
    (StatusCode::OK, [(header::CONTENT_TYPE, PROTOBUF)])
}

/// An OTLP/HTTP trace receiver on a loopback port: its base URL and what it took.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let base = format!("http://{}", listener.local_addr().expect("receiver address"));
    let router = Router::new().route("/v1/traces", post(take_export)).with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve the receiver") });
    (base, received)
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|attribute| attribute.key == key).and_then(|attribute| {
        match attribute.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(text) => Some(text.clone()),
            _ => None,
        }
    })
}

async fn post_json(client: &reqwest::Client, url: String, headers: &[(&str, &str)], body: Value) -> reqwest::Response {
    let mut request = client.post(url).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_a_dispatched_call_reach_the_collector_at_shutdown() {
    let (collector, received) = receiver().await;
    let dir = support::scratch_dir("otel");
    let database_url = format!("sqlite://{}", dir.join("x.db").display());
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        // Empty is unset: the exporter appends /v1/traces, the service keeps its default name.
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ("OTEL_SERVICE_NAME", ""),
    ];
    let mut server = support::start(&database_url, support::free_port(), dir.join("serve.log"), &[], &env).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("http client");

    let driver: Value = post_json(
        &client,
        format!("{}/drivers", server.base),
        &[],
        json!({"name": "안채우", "tel": "010-3345-7789", "can_drive_manual": true}),
    )
    .await
    .json()
    .await
    .expect("driver");
    let driver_id = driver["driver_id"].as_str().expect("driver_id");
    post_json(
        &client,
        format!("{}/drivers/{driver_id}/online", server.base),
        &[],
        json!({"location": {"address": "서울 마포구 월드컵로"}}),
    )
    .await;
    // Waiting for the driver means the saga has handled the call before the shutdown.
    let response = post_json(
        &client,
        format!("{}/calls", server.base),
        &[("prefer", "wait=10")],
        json!({"tel": "010-1234-5678", "pickup": {"address": "마포아파트"}, "drive_type": "AUTO", "fare": 25000}),
    )
    .await;
    let request_id = response.headers()["x-request-id"].to_str().expect("request id").to_string();
    let call: Value = response.json().await.expect("call");
    assert_eq!(call["status"], "CONFIRMED", "{call}");
    let call_id = call["call_id"].as_str().expect("call_id").to_string();

    server.terminate();
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "drivercenter exited with {status}; see {}", server.log.display());

    let exports = received.lock().expect("receiver lock").clone();
    assert!(!exports.is_empty(), "no export reached the collector; see {}", server.log.display());
    let mut spans: Vec<Span> = Vec::new();
    for (content_type, body) in &exports {
        assert_eq!(content_type, PROTOBUF);
        let export = ExportTraceServiceRequest::decode(body.as_ref()).expect("a protobuf trace export");
        for resource_spans in export.resource_spans {
            let resource = resource_spans.resource.expect("resource");
            assert_eq!(attribute(&resource.attributes, "service.name").as_deref(), Some("drivercenter"));
            spans.extend(resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans));
        }
    }

    let call_request = spans
        .iter()
        .find(|span| {
            span.name == "request" && attribute(&span.attributes, "request_id").as_deref() == Some(&request_id)
        })
        .unwrap_or_else(|| panic!("no request span with request_id {request_id} among {} spans", spans.len()));
    assert_eq!(attribute(&call_request.attributes, "method").as_deref(), Some("POST"));
    assert_eq!(attribute(&call_request.attributes, "path").as_deref(), Some("/calls"));
    assert_eq!(attribute(&call_request.attributes, "correlation_id").as_deref(), Some(call_id.as_str()));
    assert!(
        spans
            .iter()
            .any(|span| span.name == "saga"
                && attribute(&span.attributes, "correlation_id").as_deref() == Some(&call_id)),
        "no saga span of call {call_id}"
    );

    // The JSON log line of the request carries both ids too.
    let log = std::fs::read_to_string(&server.log).expect("read the log");
    let requested: Value = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "call requested")
        .expect("a `call requested` log line");
    assert_eq!(requested["span"]["request_id"], request_id.as_str());
    assert_eq!(requested["span"]["correlation_id"], call_id.as_str());
}
