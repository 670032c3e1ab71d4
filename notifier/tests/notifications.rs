//! The notifier over real databases and a local HTTP receiver that fails, stalls,
//! refuses and recovers on purpose: exactly one outbox row per event, retries with
//! backoff, dead letters and operator retries, the circuit breaker, signed webhooks and
//! the AlimTalk request shape.

#[macro_use]
#[path = "../../store/tests/support/mod.rs"]
mod support;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use chrono::Utc;
use domain::{AssignedDriver, Call, CallCommand, DriveType};
use drivercenter_notifier::{
    queries, AlimTalkConfig, ChannelConfig, Deliverer, Notification, NotificationKind, NotificationState, Notifier,
    NotifierConfig, NotifierError, WebhookConfig, NOTIFIER_NAME,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use store::{checkpoint, LogPosition, Store};
use support::{caught_up, exec, now, request_call, tel};
use tokio::time::Instant;
use uuid::Uuid;

const SECRET: &str = "webhook-test-secret";

/// Longer than [`TIMEOUT`]: a stalled answer comes too late to count.
const STALL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_millis(200);
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const COOLDOWN: Duration = Duration::from_millis(300);

/// How long a test waits for the notifier to reach a state before it fails.
const SETTLE: Duration = Duration::from_secs(10);

// The receiver

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accept,
    /// 500 Internal Server Error.
    Fail,
    /// 400 Bad Request: no retry can mend it.
    Reject,
    /// Waits past the notifier's timeout, then accepts.
    Stall,
    /// 200 whose body says the provider did not take the message (AlimTalk).
    Refuse,
}

/// A request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Debug, Default)]
struct Script {
    /// Answers given in order, one per request; then `otherwise` for every request.
    next: VecDeque<Answer>,
    otherwise: Option<Answer>,
    hits: Vec<Hit>,
}

/// A local HTTP server on 127.0.0.1:0 that answers as scripted and records every request.
#[derive(Debug, Clone)]
struct Receiver {
    url: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    async fn start(next: impl IntoIterator<Item = Answer>, otherwise: Answer) -> Self {
        let script = Arc::new(Mutex::new(Script {
            next: next.into_iter().collect(),
            otherwise: Some(otherwise),
            hits: Vec::new(),
        }));
        let state = script.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let script = state.clone();
            async move { answer(&script, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let url = format!("http://{}", listener.local_addr().expect("the bound address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, script }
    }

    fn hits(&self) -> Vec<Hit> {
        self.script.lock().expect("the script").hits.clone()
    }

    /// From now on, every request gets `answer`.
    fn answer_from_now_on(&self, answer: Answer) {
        let mut script = self.script.lock().expect("the script");
        script.next.clear();
        script.otherwise = Some(answer);
    }
}

async fn answer(script: &Mutex<Script>, uri: Uri, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    let answer = {
        let mut script = script.lock().expect("the script");
        script.hits.push(Hit { path: uri.path().to_string(), headers, body });
        let otherwise = script.otherwise.unwrap_or(Answer::Accept);
        script.next.pop_front().unwrap_or(otherwise)
    };
    let accepted = json!({"header": {"resultCode": 0, "resultMessage": "SUCCESS", "isSuccessful": true}});
    match answer {
        Answer::Accept => axum::Json(accepted).into_response(),
        Answer::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "down for maintenance").into_response(),
        Answer::Reject => (StatusCode::BAD_REQUEST, "unknown template").into_response(),
        Answer::Stall => {
            tokio::time::sleep(STALL).await;
            axum::Json(accepted).into_response()
        }
        Answer::Refuse => axum::Json(json!({
            "header": {"resultCode": -9999, "resultMessage": "temporary failure", "isSuccessful": false}
        }))
        .into_response(),
    }
}

// Fixtures

fn config(channel: ChannelConfig, max_attempts: u32, breaker_threshold: u32) -> NotifierConfig {
    NotifierConfig {
        channel,
        timeout: TIMEOUT,
        max_attempts,
        backoff_base: BACKOFF_BASE,
        backoff_max: Duration::from_millis(40),
        breaker_threshold,
        breaker_cooldown: COOLDOWN,
        poll_interval: Duration::from_millis(20),
    }
}

fn webhook(receiver: &Receiver, max_attempts: u32, breaker_threshold: u32) -> Notifier {
    let channel =
        ChannelConfig::Webhook(WebhookConfig { url: format!("{}/hooks/notify", receiver.url), secret: SECRET.into() });
    Notifier::new(config(channel, max_attempts, breaker_threshold)).expect("a valid webhook configuration")
}

fn alimtalk(receiver: &Receiver) -> Notifier {
    let channel = ChannelConfig::AlimTalk(AlimTalkConfig {
        base_url: receiver.url.clone(),
        app_key: "test-app".into(),
        secret_key: "test-secret-key".into(),
        sender_key: "test-sender-key".into(),
        sms_sender: Some("0212345678".into()),
    });
    Notifier::new(config(channel, 8, 100)).expect("a valid AlimTalk configuration")
}

fn driver(name: &str) -> AssignedDriver {
    AssignedDriver { driver_id: Uuid::now_v7(), name: name.to_string(), tel: tel(99_000_001) }
}

/// A call of customer `customer`, confirmed with 안채우.
async fn confirmed_call(store: &Store, customer: u32) -> Uuid {
    let call_id = request_call(store, customer, DriveType::Auto).await;
    exec::<Call>(store, call_id, CallCommand::Confirm { driver: driver("안채우"), at: now() }).await;
    call_id
}

/// Runs the outbox writer until it has read the whole log.
async fn write_outbox(store: &Store, notifier: &Notifier) {
    let writer = notifier.outbox_writer(store.clone());
    let deadline = Instant::now() + SETTLE;
    while writer.run_once().await.expect("an outbox step") > 0 || !caught_up(store, NOTIFIER_NAME).await {
        assert!(Instant::now() < deadline, "the outbox writer did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn notifications(store: &Store, call_id: Uuid) -> Vec<Notification> {
    queries::for_call(store, call_id).await.expect("read a call's notifications")
}

async fn only_notification(store: &Store, call_id: Uuid) -> Notification {
    let mut found = notifications(store, call_id).await;
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// Steps `deliverer` until every message of `calls` is in `state`.
async fn deliver_until(deliverer: &mut Deliverer, store: &Store, calls: &[Uuid], state: NotificationState) {
    let deadline = Instant::now() + SETTLE;
    loop {
        deliverer.run_once().await.expect("a delivery step");
        let mut all = Vec::new();
        for call_id in calls {
            all.extend(notifications(store, *call_id).await);
        }
        if !all.is_empty() && all.iter().all(|notification| notification.state == state) {
            return;
        }
        assert!(Instant::now() < deadline, "not every notification became {state}: {all:#?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn assert_signed(hit: &Hit) {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("an HMAC key");
    mac.update(&hit.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(hit.header("x-drivercenter-signature"), Some(format!("sha256={expected}").as_str()));
}

// The outbox

on_both_stores! {
    /// Confirmed, cancelled, failed and completed calls each get their message, and a
    /// repeated step (the checkpoint set back, as after a crash) adds none.
    async fn every_customer_facing_event_gets_exactly_one_message(store: Store) {
        let notifier = Notifier::default();
        let completed = confirmed_call(&store, 1).await;
        // The request is read in an earlier batch than the events that follow it.
        write_outbox(&store, &notifier).await;
        exec::<Call>(&store, completed, CallCommand::Complete { at: now() }).await;
        let cancelled = request_call(&store, 2, DriveType::Auto).await;
        let reason = Some("일정 변경".to_string());
        exec::<Call>(&store, cancelled, CallCommand::Cancel { reason, at: now() }).await;
        let failed = request_call(&store, 3, DriveType::Manual).await;
        exec::<Call>(&store, failed, CallCommand::Fail { reason: "no driver".into(), at: now() }).await;
        let untouched = request_call(&store, 4, DriveType::Auto).await;
        write_outbox(&store, &notifier).await;

        let kinds = |found: &[Notification]| found.iter().map(|notification| notification.kind).collect::<Vec<_>>();
        let first = notifications(&store, completed).await;
        assert_eq!(kinds(&first), [NotificationKind::CallConfirmed, NotificationKind::CallCompleted]);
        let confirmation = &first[0];
        assert_eq!(confirmation.recipient, tel(1), "the customer is told, not the driver");
        assert_eq!(confirmation.template_code, "DC_CALL_CONFIRMED");
        assert_eq!(confirmation.template_variables["driverName"], "안채우");
        assert!(confirmation.text.starts_with("[대리운전] 배정 완료: 안채우 기사님(010-9900-0001)"), "{}", confirmation.text);
        assert_eq!(confirmation.state, NotificationState::Pending);
        assert_eq!(confirmation.attempts, 0);
        assert_eq!(confirmation.notification_id, store::event_id("call", &completed.to_string(), 2));
        assert_eq!(kinds(&notifications(&store, cancelled).await), [NotificationKind::CallCancelled]);
        assert_eq!(only_notification(&store, cancelled).await.text, "[대리운전] 호출이 취소되었습니다. 사유: 일정 변경");
        assert_eq!(kinds(&notifications(&store, failed).await), [NotificationKind::CallFailed]);
        assert!(notifications(&store, untouched).await.is_empty(), "a waiting call sends nothing");

        let mut tx = store.begin().await.expect("begin");
        checkpoint::lock(&mut tx, NOTIFIER_NAME).await.expect("lock the checkpoint");
        checkpoint::save(&mut tx, NOTIFIER_NAME, LogPosition::START).await.expect("rewind the checkpoint");
        tx.commit().await.expect("commit");
        write_outbox(&store, &notifier).await;
        let pending = queries::by_state(&store, NotificationState::Pending, 100).await.expect("list pending");
        assert_eq!(pending.len(), 4, "{pending:#?}");
    }

    /// One batch with the events of many calls, whose requests an earlier batch read,
    /// tells each customer of their own call and nobody else's.
    async fn a_batch_of_many_calls_tells_each_customer_of_their_own(store: Store) {
        let notifier = Notifier::default();
        let mut calls = Vec::new();
        for customer in 1_000..1_150 {
            calls.push((customer, request_call(&store, customer, DriveType::Auto).await));
        }
        write_outbox(&store, &notifier).await;
        for (_, call_id) in &calls {
            exec::<Call>(&store, *call_id, CallCommand::Confirm { driver: driver("안채우"), at: now() }).await;
            exec::<Call>(&store, *call_id, CallCommand::Cancel { reason: None, at: now() }).await;
        }
        write_outbox(&store, &notifier).await;

        for (customer, call_id) in &calls {
            let found = notifications(&store, *call_id).await;
            let kinds: Vec<NotificationKind> = found.iter().map(|notification| notification.kind).collect();
            assert_eq!(kinds, [NotificationKind::CallConfirmed, NotificationKind::CallCancelled], "{call_id}");
            assert!(found.iter().all(|notification| notification.recipient == tel(*customer)), "{found:#?}");
        }
        let pending = queries::by_state(&store, NotificationState::Pending, 1_000).await.expect("list pending");
        assert_eq!(pending.len(), 2 * calls.len());
    }

    /// The log channel needs no network: it delivers at the first attempt.
    async fn the_log_channel_delivers_at_once(store: Store) {
        let notifier = Notifier::default();
        let call_id = confirmed_call(&store, 5).await;
        write_outbox(&store, &notifier).await;
        deliver_until(&mut notifier.deliverer(store.clone()), &store, &[call_id], NotificationState::Delivered).await;
        let delivered = only_notification(&store, call_id).await;
        assert_eq!(delivered.attempts, 1);
        assert!(delivered.delivered_at.is_some() && delivered.next_attempt_at.is_none(), "{delivered:?}");
    }
}

// Delivery

on_both_stores! {
    /// Two 500s and a stall past the timeout, across a restart of the deliverer: the
    /// fourth attempt delivers, each one signed and keyed by the notification id.
    async fn a_webhook_that_fails_and_stalls_gets_the_message_when_it_recovers(store: Store) {
        let receiver = Receiver::start([Answer::Fail, Answer::Fail, Answer::Stall], Answer::Accept).await;
        let notifier = webhook(&receiver, 8, 100);
        let call_id = confirmed_call(&store, 10).await;
        write_outbox(&store, &notifier).await;

        let mut deliverer = notifier.deliverer(store.clone());
        let before = Utc::now();
        assert_eq!(deliverer.run_once().await.expect("a delivery step").attempted, 1);
        let retrying = only_notification(&store, call_id).await;
        assert_eq!((retrying.state, retrying.attempts), (NotificationState::Pending, 1));
        assert!(retrying.last_error.as_deref().is_some_and(|error| error.contains("500")), "{retrying:?}");
        let next = retrying.next_attempt_at.expect("a next attempt");
        assert!(next >= before + BACKOFF_BASE, "the retry waits at least the base delay: {next} vs {before}");

        // A restart: the attempts are in the row, not in the deliverer.
        drop(deliverer);
        let mut deliverer = notifier.deliverer(store.clone());
        deliver_until(&mut deliverer, &store, &[call_id], NotificationState::Delivered).await;
        let delivered = only_notification(&store, call_id).await;
        assert_eq!(delivered.attempts, 4, "500, 500, stall, then 200");
        assert_eq!(delivered.last_error, None);
        let hits = receiver.hits();
        assert_eq!(hits.len(), 4);
        for hit in &hits {
            assert_eq!(hit.path, "/hooks/notify");
            assert_signed(hit);
            assert_eq!(hit.header("idempotency-key"), Some(delivered.notification_id.to_string().as_str()));
        }
        let body = hits[3].json();
        assert_eq!(body["kind"], "CALL_CONFIRMED");
        assert_eq!(body["recipient"], tel(10).as_str());
        assert_eq!(body["template_variables"]["driverName"], "안채우");
    }

    /// An AlimTalk provider that answers 200 with `isSuccessful: false`, then 500, then
    /// accepts: three attempts, in the providers' request shape with an SMS fallback.
    async fn alimtalk_counts_a_200_with_a_failure_flag_as_a_failure(store: Store) {
        let receiver = Receiver::start([Answer::Refuse, Answer::Fail], Answer::Accept).await;
        let notifier = alimtalk(&receiver);
        let call_id = confirmed_call(&store, 11).await;
        write_outbox(&store, &notifier).await;
        let mut deliverer = notifier.deliverer(store.clone());

        deliverer.run_once().await.expect("a delivery step");
        let refused = only_notification(&store, call_id).await;
        assert_eq!((refused.state, refused.attempts), (NotificationState::Pending, 1));
        assert!(refused.last_error.as_deref().is_some_and(|error| error.contains("temporary failure")), "{refused:?}");

        deliver_until(&mut deliverer, &store, &[call_id], NotificationState::Delivered).await;
        let delivered = only_notification(&store, call_id).await;
        assert_eq!(delivered.attempts, 3);
        let hits = receiver.hits();
        assert_eq!(hits.len(), 3);
        let hit = &hits[2];
        assert_eq!(hit.path, "/alimtalk/v2.3/appkeys/test-app/messages");
        assert_eq!(hit.header("x-secret-key"), Some("test-secret-key"));
        let body = hit.json();
        assert_eq!(body["senderKey"], "test-sender-key");
        assert_eq!(body["templateCode"], "DC_CALL_CONFIRMED");
        let recipient = &body["recipientList"][0];
        assert_eq!(recipient["recipientNo"], tel(11).as_str());
        assert_eq!(recipient["templateParameter"]["driverName"], "안채우");
        assert_eq!(recipient["templateParameter"]["driverTel"], "010-9900-0001");
        assert_eq!(recipient["resendParameter"]["isResend"], true);
        assert_eq!(recipient["resendParameter"]["resendType"], "SMS");
        assert_eq!(recipient["resendParameter"]["resendContent"], delivered.text.as_str());
        assert_eq!(recipient["resendParameter"]["resendSendNo"], "0212345678");
    }

    /// A provider down for good: the message is dead after the last allowed attempt, an
    /// operator lists it and retries it, and once the provider is back it is delivered.
    async fn a_dead_message_is_listed_and_an_operator_retry_delivers_it(store: Store) {
        let receiver = Receiver::start([], Answer::Fail).await;
        let notifier = webhook(&receiver, 3, 100);
        let call_id = confirmed_call(&store, 12).await;
        write_outbox(&store, &notifier).await;
        let mut deliverer = notifier.deliverer(store.clone());
        deliver_until(&mut deliverer, &store, &[call_id], NotificationState::Dead).await;

        let dead = only_notification(&store, call_id).await;
        assert_eq!(dead.attempts, 3);
        assert!(dead.last_error.as_deref().is_some_and(|error| error.contains("500")), "{dead:?}");
        assert_eq!(receiver.hits().len(), 3, "no attempt after the last one");
        let listed = queries::by_state(&store, NotificationState::Dead, 10).await.expect("list the dead");
        assert_eq!(listed, std::slice::from_ref(&dead));
        assert!(matches!(
            queries::retry(&store, Uuid::now_v7()).await,
            Err(NotifierError::NotFound(_))
        ));

        receiver.answer_from_now_on(Answer::Accept);
        let retried = queries::retry(&store, dead.notification_id).await.expect("retry the dead message");
        assert_eq!((retried.state, retried.attempts), (NotificationState::Pending, 0));
        deliver_until(&mut deliverer, &store, &[call_id], NotificationState::Delivered).await;
        assert_eq!(only_notification(&store, call_id).await.attempts, 1);
        assert_eq!(receiver.hits().len(), 4);
        assert!(matches!(
            queries::retry(&store, dead.notification_id).await,
            Err(NotifierError::NotDead { state: NotificationState::Delivered, .. })
        ));
    }

    /// A 400 says the request itself is wrong: dead at once, no retries spent on it.
    async fn a_client_error_is_dead_at_the_first_attempt(store: Store) {
        let receiver = Receiver::start([Answer::Reject], Answer::Accept).await;
        let notifier = webhook(&receiver, 8, 100);
        let call_id = confirmed_call(&store, 13).await;
        write_outbox(&store, &notifier).await;
        deliver_until(&mut notifier.deliverer(store.clone()), &store, &[call_id], NotificationState::Dead).await;
        let dead = only_notification(&store, call_id).await;
        assert_eq!(dead.attempts, 1);
        assert!(dead.last_error.as_deref().is_some_and(|error| error.contains("400")), "{dead:?}");
        assert_eq!(receiver.hits().len(), 1);
    }

    /// Three failures open the breaker: the receiver hears nothing while it is open and
    /// the messages wait without spending attempts; after the cooldown a single probe
    /// goes out, and once one gets through, all are delivered.
    async fn the_breaker_stops_hammering_a_failing_provider(store: Store) {
        let receiver = Receiver::start([], Answer::Fail).await;
        let notifier = webhook(&receiver, 100, 3);
        let mut calls = Vec::new();
        for customer in 20..25 {
            calls.push(confirmed_call(&store, customer).await);
        }
        write_outbox(&store, &notifier).await;
        let mut deliverer = notifier.deliverer(store.clone());

        let step = deliverer.run_once().await.expect("a delivery step");
        assert_eq!((step.attempted, step.released), (3, 2), "the breaker opened after three failures");
        // No later than this, so its cooldown is over by `opened + COOLDOWN`.
        let opened = Instant::now();
        while opened.elapsed() < COOLDOWN / 2 {
            assert_eq!(deliverer.run_once().await.expect("a delivery step").attempted, 0);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(receiver.hits().len(), 3, "nothing is sent while the breaker is open");
        let mut attempts = Vec::new();
        for call_id in &calls {
            let waiting = only_notification(&store, *call_id).await;
            assert_eq!(waiting.state, NotificationState::Pending);
            attempts.push(waiting.attempts);
        }
        attempts.sort_unstable();
        assert_eq!(attempts, [0, 0, 1, 1, 1], "held-back messages keep their attempts");

        tokio::time::sleep(COOLDOWN.saturating_sub(opened.elapsed())).await;
        assert_eq!(deliverer.run_once().await.expect("a probe").attempted, 1, "half-open lets one through");
        assert_eq!(deliverer.run_once().await.expect("a delivery step").attempted, 0, "the failed probe reopened it");
        assert_eq!(receiver.hits().len(), 4);

        receiver.answer_from_now_on(Answer::Accept);
        deliver_until(&mut deliverer, &store, &calls, NotificationState::Delivered).await;
        assert_eq!(receiver.hits().len(), 4 + 5, "each message delivered once after the recovery");
    }

    /// Two deliverers side by side never send the same row.
    async fn two_deliverers_never_send_one_message_twice(store: Store) {
        let receiver = Receiver::start([], Answer::Accept).await;
        let notifier = webhook(&receiver, 8, 100);
        let mut calls = Vec::new();
        for customer in 30..50 {
            calls.push(confirmed_call(&store, customer).await);
        }
        write_outbox(&store, &notifier).await;
        let drive = |mut deliverer: Deliverer| async move {
            let deadline = Instant::now() + SETTLE;
            while Instant::now() < deadline {
                if deliverer.run_once().await.expect("a delivery step").attempted == 0 {
                    return;
                }
            }
        };
        let first = tokio::spawn(drive(notifier.deliverer(store.clone())));
        let second = tokio::spawn(drive(notifier.deliverer(store.clone())));
        first.await.expect("the first deliverer");
        second.await.expect("the second deliverer");

        let delivered = queries::by_state(&store, NotificationState::Delivered, 100).await.expect("list delivered");
        assert_eq!(delivered.len(), 20);
        let hits = receiver.hits();
        let keys: HashSet<&str> = hits.iter().filter_map(|hit| hit.header("idempotency-key")).collect();
        assert_eq!((hits.len(), keys.len()), (20, 20), "every message sent exactly once");
    }
}
