//! The three ways a message leaves: a log line, a signed webhook, an AlimTalk provider.
//! A channel makes one attempt; timeouts, retries and the breaker are the deliverer's.

use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Url};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::config::{http_url, ChannelConfig};
use crate::message::masked_variables;
use crate::NotifierError;

/// The header that carries the webhook body's HMAC-SHA256, as `sha256=<hex>`.
pub(crate) const SIGNATURE_HEADER: &str = "X-Drivercenter-Signature";

/// How much of a refusing answer's body is kept in the row's last error.
const ERROR_BODY_LIMIT: usize = 300;

/// What a channel needs of a claimed row.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub id: String,
    pub call_id: String,
    pub kind: String,
    pub recipient: domain::Tel,
    pub template_code: String,
    pub variables: Map<String, Value>,
    pub text: String,
}

#[derive(Clone)]
pub(crate) enum Channel {
    Log,
    Webhook { client: Client, url: Url, secret: Arc<str> },
    AlimTalk { client: Client, endpoint: Url, secret_key: Arc<str>, sender_key: Arc<str>, sms_sender: Option<Arc<str>> },
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Log => f.write_str("Log"),
            Self::Webhook { url, .. } => f.debug_struct("Webhook").field("url", &url.as_str()).finish_non_exhaustive(),
            Self::AlimTalk { endpoint, .. } => {
                // The endpoint's path holds the app key.
                let host = endpoint.host_str().unwrap_or("");
                f.debug_struct("AlimTalk").field("host", &host).finish_non_exhaustive()
            }
        }
    }
}

impl Channel {
    pub(crate) fn new(config: &ChannelConfig) -> Result<Self, NotifierError> {
        Ok(match config {
            ChannelConfig::Log => Self::Log,
            ChannelConfig::Webhook(webhook) => Self::Webhook {
                client: client()?,
                url: http_url(&webhook.url, "webhook URL")?,
                secret: webhook.secret.as_str().into(),
            },
            ChannelConfig::AlimTalk(alimtalk) => {
                let mut endpoint = http_url(&alimtalk.base_url, "AlimTalk base URL")?;
                endpoint
                    .path_segments_mut()
                    .map_err(|()| NotifierError::Config("the AlimTalk base URL cannot take a path".into()))?
                    .pop_if_empty()
                    .extend(["alimtalk", "v2.3", "appkeys", alimtalk.app_key.as_str(), "messages"]);
                Self::AlimTalk {
                    client: client()?,
                    endpoint,
                    secret_key: alimtalk.secret_key.as_str().into(),
                    sender_key: alimtalk.sender_key.as_str().into(),
                    sms_sender: alimtalk.sms_sender.as_deref().filter(|number| !number.is_empty()).map(Arc::from),
                }
            }
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Webhook { .. } => "webhook",
            Self::AlimTalk { .. } => "alimtalk",
        }
    }

    /// One delivery attempt. The caller bounds it in time.
    pub(crate) async fn send(&self, message: &Outgoing) -> Result<(), NotifierError> {
        match self {
            Self::Log => {
                let line = json!({
                    "notification_id": message.id,
                    "call_id": message.call_id,
                    "kind": message.kind,
                    "recipient": message.recipient.masked(),
                    "template_code": message.template_code,
                    "template_variables": masked_variables(&message.variables),
                });
                tracing::info!(target: "drivercenter::notifications", "{line}");
                Ok(())
            }
            Self::Webhook { client, url, secret } => {
                let body = json!({
                    "notification_id": message.id,
                    "call_id": message.call_id,
                    "kind": message.kind,
                    "recipient": message.recipient.as_str(),
                    "template_code": message.template_code,
                    "template_variables": message.variables,
                    "text": message.text,
                })
                .to_string();
                let response = client
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .header(SIGNATURE_HEADER, signature(secret, body.as_bytes()))
                    .header("Idempotency-Key", &message.id)
                    .body(body)
                    .send()
                    .await?;
                success(response).await.map(drop)
            }
            Self::AlimTalk { client, endpoint, secret_key, sender_key, sms_sender } => {
                let mut recipient = json!({
                    "recipientNo": message.recipient.as_str(),
                    "templateParameter": message.variables,
                });
                if let Some(sender) = sms_sender {
                    recipient["resendParameter"] = json!({
                        "isResend": true,
                        "resendType": "SMS",
                        "resendContent": message.text,
                        "resendSendNo": sender.as_ref(),
                    });
                }
                let body = json!({
                    "senderKey": sender_key.as_ref(),
                    "templateCode": message.template_code,
                    "recipientList": [recipient],
                });
                let response = client
                    .post(endpoint.clone())
                    .header("X-Secret-Key", secret_key.as_ref())
                    .header(CONTENT_TYPE, "application/json;charset=UTF-8")
                    .body(body.to_string())
                    .send()
                    .await?;
                provider_verdict(&success(response).await?)
            }
        }
    }
}

/// Redirects are not followed: a provider that moved is a configuration to fix, and a
/// redirected POST could reach a host nobody configured.
fn client() -> Result<Client, NotifierError> {
    Ok(Client::builder().redirect(reqwest::redirect::Policy::none()).build()?)
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(7 + digest.len() * 2);
    text.push_str("sha256=");
    for byte in digest {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The body of a 2xx answer; any other status is an error carrying the start of its body.
async fn success(response: reqwest::Response) -> Result<String, NotifierError> {
    let status = response.status();
    let body = response.text().await?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(NotifierError::Status { status: status.as_u16(), body: truncated(body) })
    }
}

/// AlimTalk providers answer 200 even when they refuse: only `header.isSuccessful: true`
/// means the message was accepted.
fn provider_verdict(body: &str) -> Result<(), NotifierError> {
    let answer: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let header = &answer["header"];
    if header["isSuccessful"] == Value::Bool(true) {
        return Ok(());
    }
    let code = match &header["resultCode"] {
        Value::Null => "NO_RESULT".to_string(),
        Value::String(code) => code.clone(),
        other => other.to_string(),
    };
    let message = header["resultMessage"].as_str().map_or_else(|| truncated(body.to_string()), str::to_string);
    Err(NotifierError::Provider { code, message })
}

fn truncated(mut text: String) -> String {
    if text.len() > ERROR_BODY_LIMIT {
        let mut end = ERROR_BODY_LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn an_answer_without_the_success_flag_is_a_refusal() {
        assert!(provider_verdict(r#"{"header":{"resultCode":0,"isSuccessful":true}}"#).is_ok());
        let refused = provider_verdict(
            r#"{"header":{"resultCode":-1006,"resultMessage":"Invalid sender key","isSuccessful":false}}"#,
        );
        assert!(
            matches!(&refused, Err(NotifierError::Provider { code, message }) if code == "-1006" && message == "Invalid sender key"),
            "{refused:?}"
        );
        assert!(matches!(provider_verdict("<html>busy</html>"), Err(NotifierError::Provider { .. })));
    }

    #[test]
    fn the_alimtalk_endpoint_carries_the_app_key_in_its_path() {
        let config = crate::AlimTalkConfig {
            base_url: "http://127.0.0.1:9/root/".into(),
            app_key: "app key".into(),
            secret_key: "secret".into(),
            sender_key: "sender".into(),
            sms_sender: Some(String::new()),
        };
        let Channel::AlimTalk { endpoint, sms_sender, .. } = Channel::new(&ChannelConfig::AlimTalk(config)).unwrap()
        else {
            panic!("an AlimTalk channel");
        };
        assert_eq!(endpoint.as_str(), "http://127.0.0.1:9/root/alimtalk/v2.3/appkeys/app%20key/messages");
        assert!(sms_sender.is_none(), "an empty sender means no SMS fallback");
    }

    #[test]
    fn long_error_bodies_are_cut_on_a_character_boundary() {
        let cut = truncated("가".repeat(200));
        assert!(cut.len() <= ERROR_BODY_LIMIT + '…'.len_utf8() && cut.ends_with('…'), "{cut}");
    }
}
