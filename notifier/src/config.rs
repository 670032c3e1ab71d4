//! What the notifier is told at start: its channel with credentials, and its timings.

use std::time::Duration;

use crate::NotifierError;

/// Where messages go.
#[derive(Clone, PartialEq, Eq)]
pub enum ChannelConfig {
    /// One JSON line per message in the process log, phone numbers masked.
    Log,
    Webhook(WebhookConfig),
    AlimTalk(AlimTalkConfig),
}

/// POST the message as JSON to `url`, signed with `secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
}

/// The HTTP API that Korean AlimTalk providers share (NHN Cloud's shape).
#[derive(Clone, PartialEq, Eq)]
pub struct AlimTalkConfig {
    /// The provider's API root; messages go to `{base}/alimtalk/v2.3/appkeys/{app_key}/messages`.
    pub base_url: String,
    pub app_key: String,
    pub secret_key: String,
    /// The KakaoTalk channel's sender key.
    pub sender_key: String,
    /// The registered number SMS fallbacks are sent from; no fallback without one.
    pub sms_sender: Option<String>,
}

/// The notifier's settings; secrets never appear in its `Debug` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    pub channel: ChannelConfig,
    /// How long one delivery may take, answer included.
    pub timeout: Duration,
    /// Deliveries tried before a message is dead.
    pub max_attempts: u32,
    /// The first retry's delay; each further one doubles, up to `backoff_max`, plus up
    /// to as much again of jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Consecutive failed deliveries that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker holds every message back before it lets one through.
    pub breaker_cooldown: Duration,
    /// How long an idle deliverer sleeps before it looks for due messages anyway.
    pub poll_interval: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            channel: ChannelConfig::Log,
            timeout: Duration::from_secs(5),
            max_attempts: 8,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl NotifierConfig {
    /// Every rule a setting must meet; the error names the first one broken.
    pub fn validate(&self) -> Result<(), NotifierError> {
        let invalid = |reason: &str| Err(NotifierError::Config(reason.to_string()));
        if self.timeout.is_zero() {
            return invalid("the delivery timeout must be positive");
        }
        if self.max_attempts == 0 {
            return invalid("at least one delivery attempt is needed");
        }
        if self.breaker_threshold == 0 {
            return invalid("the breaker threshold must be at least one failure");
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            return invalid("the backoff needs a positive base no larger than its maximum");
        }
        if self.poll_interval.is_zero() {
            return invalid("the poll interval must be positive");
        }
        match &self.channel {
            ChannelConfig::Log => Ok(()),
            ChannelConfig::Webhook(webhook) => {
                http_url(&webhook.url, "webhook URL")?;
                if webhook.secret.is_empty() {
                    return invalid("the webhook channel needs a signing secret");
                }
                Ok(())
            }
            ChannelConfig::AlimTalk(alimtalk) => {
                http_url(&alimtalk.base_url, "AlimTalk base URL")?;
                for (value, name) in [
                    (&alimtalk.app_key, "app key"),
                    (&alimtalk.secret_key, "secret key"),
                    (&alimtalk.sender_key, "sender key"),
                ] {
                    if value.is_empty() {
                        return Err(NotifierError::Config(format!("the AlimTalk channel needs its {name}")));
                    }
                }
                Ok(())
            }
        }
    }
}

/// An absolute `http` or `https` URL.
pub(crate) fn http_url(raw: &str, what: &str) -> Result<reqwest::Url, NotifierError> {
    let url =
        reqwest::Url::parse(raw).map_err(|error| NotifierError::Config(format!("the {what} `{raw}`: {error}")))?;
    if matches!(url.scheme(), "http" | "https") && url.has_host() {
        Ok(url)
    } else {
        Err(NotifierError::Config(format!("the {what} `{raw}` is not an http(s) URL")))
    }
}

impl ChannelConfig {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Webhook(_) => "webhook",
            Self::AlimTalk(_) => "alimtalk",
        }
    }
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Log => f.write_str("Log"),
            Self::Webhook(webhook) => f.debug_tuple("Webhook").field(webhook).finish(),
            Self::AlimTalk(alimtalk) => f.debug_tuple("AlimTalk").field(alimtalk).finish(),
        }
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig").field("url", &self.url).field("secret", &"…").finish()
    }
}

impl std::fmt::Debug for AlimTalkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlimTalkConfig")
            .field("base_url", &self.base_url)
            .field("app_key", &"…")
            .field("secret_key", &"…")
            .field("sender_key", &"…")
            .field("sms_sender", &self.sms_sender)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alimtalk(app_key: &str) -> NotifierConfig {
        NotifierConfig {
            channel: ChannelConfig::AlimTalk(AlimTalkConfig {
                base_url: "https://alimtalk.example".into(),
                app_key: app_key.into(),
                secret_key: "s3cret".into(),
                sender_key: "sender".into(),
                sms_sender: None,
            }),
            ..NotifierConfig::default()
        }
    }

    #[test]
    fn the_default_log_channel_is_valid() {
        assert!(NotifierConfig::default().validate().is_ok());
    }

    #[test]
    fn a_webhook_needs_an_http_url_and_a_secret() {
        let webhook = |url: &str, secret: &str| NotifierConfig {
            channel: ChannelConfig::Webhook(WebhookConfig { url: url.into(), secret: secret.into() }),
            ..NotifierConfig::default()
        };
        assert!(webhook("https://hooks.example/notify", "key").validate().is_ok());
        assert!(webhook("https://hooks.example/notify", "").validate().is_err());
        assert!(webhook("ftp://hooks.example", "key").validate().is_err());
        assert!(webhook("not a url", "key").validate().is_err());
    }

    #[test]
    fn alimtalk_needs_every_key() {
        assert!(alimtalk("app").validate().is_ok());
        let error = alimtalk("").validate().unwrap_err();
        assert!(error.to_string().contains("app key"), "{error}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let shown = format!("{:?}", alimtalk("app-key-value"));
        assert!(!shown.contains("app-key-value") && !shown.contains("s3cret"), "{shown}");
    }
}
