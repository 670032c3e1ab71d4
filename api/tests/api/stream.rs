//! `GET /calls/{id}/stream`: server-sent events until the call ends.

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{call_at, scenario, uuid_of, TestApp, MAPO};

/// One server-sent event: its name and its data lines joined.
#[derive(Debug)]
struct Frame {
    event: Option<String>,
    data: String,
}

/// Splits complete frames (ended by a blank line) off the front of `buffer`; comments
/// (keep-alives) are skipped.
fn take_frames(buffer: &mut String) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let raw: String = buffer.drain(..end + 2).collect();
        let mut frame = Frame { event: None, data: String::new() };
        let mut fields = 0;
        for line in raw.lines() {
            if let Some(name) = line.strip_prefix("event:") {
                frame.event = Some(name.trim().to_string());
                fields += 1;
            } else if let Some(data) = line.strip_prefix("data:") {
                if !frame.data.is_empty() {
                    frame.data.push('\n');
                }
                frame.data.push_str(data.strip_prefix(' ').unwrap_or(data));
                fields += 1;
            }
        }
        if fields > 0 {
            frames.push(frame);
        }
    }
    frames
}

scenario!(
    the_call_stream_sends_status_events_in_version_order_and_ends_after_a_terminal_status,
    dispatch_timeout = Duration::from_secs(20)
);
async fn the_call_stream_sends_status_events_in_version_order_and_ends_after_a_terminal_status(app: TestApp) {
    let (lat, lng) = MAPO;
    // Nobody online: the call waits, dispatching, until it is cancelled.
    let call_id = app.request_call(&call_at("010-1234-5678", lat, lng)).await;

    let response = app.client.get(app.url(&format!("/calls/{call_id}/stream"))).send().await.expect("the stream opens");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");

    let mut bytes = response.bytes_stream();
    let mut buffer = String::new();
    let mut views: Vec<Value> = Vec::new();
    let mut cancelled = false;
    let read = async {
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.expect("read the stream");
            buffer.push_str(std::str::from_utf8(&chunk).expect("the stream is UTF-8"));
            for frame in take_frames(&mut buffer) {
                assert_eq!(frame.event.as_deref(), Some("status"), "{frame:?}");
                let view: Value = serde_json::from_str(&frame.data).expect("the data is the call view");
                assert_eq!(view["call_id"], call_id.to_string());
                views.push(view);
            }
            // Once the call has shown itself waiting, the customer gives up.
            if !cancelled && views.last().is_some_and(|v| v["status"] == "DISPATCHING") {
                cancelled = true;
                app.cancel(call_id).await.assert_status(StatusCode::ACCEPTED);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read).await.expect("the stream ended after the call was cancelled");

    assert!(cancelled, "the stream showed the call dispatching: {views:#?}");
    let versions: Vec<i64> = views.iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "versions increase: {versions:?}");
    let last = views.last().expect("at least one event");
    assert_eq!(last["status"], "CANCELLED");
    assert_eq!(last["status_label"], "호출취소");
    assert_eq!(last["version"], 3);
    assert!(views[..views.len() - 1].iter().all(|v| v["status"] != "CANCELLED"), "only the last event is terminal");
    assert!(buffer.trim().is_empty(), "nothing after the last frame: {buffer:?}");

    // The stream of a call that already ended sends its one last state and ends.
    let response = app.client.get(app.url(&format!("/calls/{call_id}/stream"))).send().await.unwrap();
    let text = tokio::time::timeout(Duration::from_secs(5), response.text())
        .await
        .expect("the stream of an ended call ends at once")
        .unwrap();
    let mut text = text;
    let frames = take_frames(&mut text);
    assert_eq!(frames.len(), 1, "{frames:?}");
    let view: Value = serde_json::from_str(&frames[0].data).unwrap();
    assert_eq!(view["status"], "CANCELLED");
    assert_eq!(uuid_of(&view["call_id"]), call_id);
}

scenario!(the_call_stream_follows_a_call_to_its_confirmation_and_completion);
async fn the_call_stream_follows_a_call_to_its_confirmation_and_completion(app: TestApp) {
    let (lat, lng) = MAPO;
    app.driver_online_at("안채우", "010-3345-7789", false, lat, lng).await;
    let view = app.confirmed_call(&call_at("010-1234-5678", lat, lng)).await;
    let call_id = uuid_of(&view["call_id"]);

    let response = app.client.get(app.url(&format!("/calls/{call_id}/stream"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut bytes = response.bytes_stream();
    let mut buffer = String::new();
    let mut views: Vec<Value> = Vec::new();
    let mut completed = false;
    let read = async {
        while let Some(chunk) = bytes.next().await {
            buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
            for frame in take_frames(&mut buffer) {
                views.push(serde_json::from_str(&frame.data).unwrap());
            }
            if !completed && !views.is_empty() {
                completed = true;
                app.complete(call_id).await.assert_status(StatusCode::ACCEPTED);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read).await.expect("the stream ended");
    let statuses: Vec<&str> = views.iter().map(|v| v["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["CONFIRMED", "COMPLETED"], "{views:#?}");
    assert!(views[1]["completed_at"].is_string());
    assert!(views[0]["version"].as_i64() < views[1]["version"].as_i64());
}
