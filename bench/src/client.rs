//! The server's HTTP API as the load generator uses it: a thin typed layer over one
//! pooled `reqwest` client, and a reader of the call's server-sent events.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::BenchError;
use crate::seoul::Place;

/// The longest any single request may take: above the server's own 40 s request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);

/// A call's status as the server names it.
pub const CONFIRMED: &str = "CONFIRMED";

/// A driver to register.
#[derive(Debug, Clone)]
pub struct DriverSpec {
    pub name: String,
    pub tel: String,
    pub can_drive_manual: bool,
    pub place: Place,
}

/// A call to send.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub tel: String,
    pub pickup: Place,
    pub manual: bool,
    pub fare: u32,
}

/// The answer to `POST /calls`.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub status: StatusCode,
    pub call_id: Option<Uuid>,
    /// The call's status in the body (`status` of the call view), when it has one.
    pub call_status: Option<String>,
    /// The problem code, for an error answer.
    pub code: Option<String>,
}

/// The drivercenter API at one base URL.
#[derive(Debug, Clone)]
pub struct Api {
    http: Client,
    base: String,
}

impl Api {
    pub fn new(base: &str) -> Result<Self, BenchError> {
        let http = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(usize::MAX)
            .tcp_nodelay(true)
            .build()
            .map_err(|source| BenchError::Http { what: "building the HTTP client".into(), source })?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, what: &str, request: RequestBuilder) -> Result<Response, BenchError> {
        request.send().await.map_err(|source| BenchError::Http { what: what.to_string(), source })
    }

    /// Sends `request` and returns its JSON body, or fails unless the status is `expected`.
    async fn expect(&self, what: &str, request: RequestBuilder, expected: StatusCode) -> Result<Value, BenchError> {
        let response = self.send(what, request).await?;
        let status = response.status();
        let body = response.text().await.map_err(|source| BenchError::Http { what: what.to_string(), source })?;
        if status != expected {
            return Err(BenchError::Unexpected { what: what.to_string(), status: status.as_u16(), body });
        }
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// `POST /drivers`: the new driver's id.
    pub async fn register_driver(&self, driver: &DriverSpec) -> Result<Uuid, BenchError> {
        let body = json!({"name": driver.name, "tel": driver.tel, "can_drive_manual": driver.can_drive_manual});
        let request = self.http.post(self.url("/drivers")).json(&body);
        let view = self.expect("POST /drivers", request, StatusCode::CREATED).await?;
        uuid_in(&view["driver_id"]).ok_or_else(|| BenchError::Unexpected {
            what: "POST /drivers".into(),
            status: StatusCode::CREATED.as_u16(),
            body: view.to_string(),
        })
    }

    /// `POST /drivers/{id}/online` at `place`.
    pub async fn go_online(&self, driver_id: Uuid, place: &Place) -> Result<(), BenchError> {
        let request = self
            .http
            .post(self.url(&format!("/drivers/{driver_id}/online")))
            .json(&json!({"location": location(place)}));
        self.expect("POST /drivers/{id}/online", request, StatusCode::ACCEPTED).await.map(drop)
    }

    /// How many drivers the drivers view shows as available.
    pub async fn available_drivers(&self) -> Result<usize, BenchError> {
        let request = self.http.get(self.url("/drivers?status=AVAILABLE"));
        let list = self.expect("GET /drivers?status=AVAILABLE", request, StatusCode::OK).await?;
        Ok(list["items"].as_array().map_or(0, Vec::len))
    }

    /// `POST /calls`, with `Prefer: wait=N` when `wait` is given.
    pub async fn post_call(&self, call: &CallSpec, wait: Option<Duration>) -> Result<Posted, BenchError> {
        let body = json!({
            "tel": call.tel,
            "pickup": location(&call.pickup),
            "drive_type": if call.manual { "MANUAL" } else { "AUTO" },
            "fare": call.fare,
        });
        let mut request = self.http.post(self.url("/calls")).json(&body);
        if let Some(wait) = wait {
            request = request.header("Prefer", format!("wait={}", wait.as_secs()));
        }
        let response = self.send("POST /calls", request).await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Ok(Posted {
            status,
            call_id: uuid_in(&body["call_id"]),
            call_status: body["status"].as_str().map(str::to_string),
            code: body["code"].as_str().map(str::to_string),
        })
    }

    /// Follows `GET /calls/{id}/stream` until the call is confirmed or terminal, and
    /// returns that status; `None` when the stream ends without one.
    pub async fn await_decision(&self, call_id: Uuid) -> Result<Option<String>, BenchError> {
        let what = "GET /calls/{id}/stream";
        let request = self.http.get(self.url(&format!("/calls/{call_id}/stream"))).timeout(Duration::from_secs(3600));
        let response = self.send(what, request).await?;
        if response.status() != StatusCode::OK {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            return Err(BenchError::Unexpected { what: what.into(), status, body });
        }
        let mut parser = SseParser::default();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| BenchError::Http { what: what.into(), source })?;
            for event in parser.push(&chunk) {
                let status = (event.event == "status")
                    .then(|| serde_json::from_str::<Value>(&event.data).ok())
                    .flatten()
                    .and_then(|view| view["status"].as_str().map(str::to_string));
                if let Some(status) = status.filter(|status| is_decided(status)) {
                    return Ok(Some(status));
                }
            }
        }
        Ok(None)
    }

    /// `POST /calls/{id}/complete`.
    pub async fn complete(&self, call_id: Uuid) -> Result<(), BenchError> {
        let request = self.http.post(self.url(&format!("/calls/{call_id}/complete")));
        self.expect("POST /calls/{id}/complete", request, StatusCode::ACCEPTED).await.map(drop)
    }

    /// `POST /calls/{id}/cancel`.
    pub async fn cancel(&self, call_id: Uuid) -> Result<(), BenchError> {
        let request = self.http.post(self.url(&format!("/calls/{call_id}/cancel"))).json(&json!({"reason": "bench"}));
        self.expect("POST /calls/{id}/cancel", request, StatusCode::ACCEPTED).await.map(drop)
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> Result<String, BenchError> {
        let what = "GET /metrics";
        let response = self.send(what, self.http.get(self.url("/metrics"))).await?;
        response.text().await.map_err(|source| BenchError::Http { what: what.into(), source })
    }
}

/// Whether a call's wait is over: a driver is assigned, or the call can no longer get one.
fn is_decided(status: &str) -> bool {
    matches!(status, CONFIRMED | "FAILED" | "CANCELLED" | "COMPLETED")
}

fn location(place: &Place) -> Value {
    json!({"address": place.address(), "lat": place.lat, "lng": place.lng})
}

fn uuid_in(value: &Value) -> Option<Uuid> {
    value.as_str().and_then(|text| Uuid::parse_str(text).ok())
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Splits a byte stream into server-sent events, whatever the chunking.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    /// Takes the next chunk and returns the events it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            if let Some(event) = parse_block(&String::from_utf8_lossy(&block)) {
                events.push(event);
            }
        }
        events
    }
}

/// An event block: `event:` names it (default `message`), `data:` lines join with
/// newlines; a block of comments only (keep-alives) is no event.
fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = None;
    let mut data: Option<String> = None;
    for line in block.lines().map(|line| line.trim_end_matches('\r')) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    data.map(|data| SseEvent { event: event.unwrap_or_else(|| "message".into()), data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_joined() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"event: status\ndata: {\"status\":").is_empty());
        let events = parser.push(b"\"CONFIRMED\"}\n\n:keep-alive\n\nevent: status\ndata: {}\n\n");
        assert_eq!(
            events,
            vec![
                SseEvent { event: "status".into(), data: "{\"status\":\"CONFIRMED\"}".into() },
                SseEvent { event: "status".into(), data: "{}".into() },
            ]
        );
    }

    #[test]
    fn multi_line_data_and_default_names() {
        let mut parser = SseParser::default();
        let events = parser.push(b"data: a\ndata: b\n\n");
        assert_eq!(events, vec![SseEvent { event: "message".into(), data: "a\nb".into() }]);
    }

    #[test]
    fn only_assignment_and_terminal_statuses_end_the_wait() {
        assert!(["CONFIRMED", "FAILED", "CANCELLED", "COMPLETED"].into_iter().all(is_decided));
        assert!(!["REQUESTED", "DISPATCHING"].into_iter().any(is_decided));
    }
}
