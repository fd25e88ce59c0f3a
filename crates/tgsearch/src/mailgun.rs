//! Mailgun webhooks: verifying their signature and deciding what deserves an alert.
//!
//! Mailgun signs each webhook with HMAC-SHA256 over `timestamp + token` with the account's
//! webhook signing key. The signature is compared in constant time; timestamps more than five
//! minutes away are refused (a replayed request), and a token a container has seen before is not
//! alerted twice (Mailgun retries deliveries with the same signature). That de-duplication is per
//! container: a retry that lands on another warm container alerts again, which errs on the side
//! of telling a person twice rather than never.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// How far a webhook's timestamp may be from now.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// The webhook signing key (Mailgun: Sending → Webhooks → HTTP webhook signing key). Never shown.
#[derive(Clone)]
pub struct SigningKey(String);

impl SigningKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Reads the signing key: the secret is the key itself, or JSON `{"signing_key": "..."}`.
pub async fn load_signing_key(
    secrets: &crate::adapters::secrets_manager::SecretsManager,
    secret_id: &str,
) -> Result<SigningKey, crate::adapters::secrets_manager::SecretsError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Json { signing_key: String },
        Plain(String),
    }
    match secrets.read_string(secret_id).await? {
        Some(raw) => {
            let stored = serde_json::from_str::<Stored>(&raw).unwrap_or(Stored::Plain(raw.trim().to_owned()));
            Ok(SigningKey::new(match stored {
                Stored::Json { signing_key } => signing_key,
                Stored::Plain(key) => key,
            }))
        }
        None => Err(crate::adapters::secrets_manager::SecretsError::NotFound {
            secret: secret_id.into(),
        }),
    }
}

/// The body Mailgun POSTs.
#[derive(Debug, Deserialize)]
pub struct Webhook {
    pub signature: Signature,
    #[serde(rename = "event-data")]
    pub event_data: Value,
}

#[derive(Debug, Deserialize)]
pub struct Signature {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the signature does not match")]
    BadSignature,
    #[error("the timestamp `{0}` is not a Unix time")]
    BadTimestamp(String),
    #[error("the timestamp is {0} s away from now (more than 300 s): a replay or a wrong clock")]
    Stale(u64),
}

/// Checks `signature` against `key` at time `now`.
pub fn verify(key: &SigningKey, signature: &Signature, now: SystemTime) -> Result<(), VerifyError> {
    let ts: u64 = signature
        .timestamp
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(signature.timestamp.chars().take(20).collect()))?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let skew = now.abs_diff(ts);
    if skew > MAX_SKEW.as_secs() {
        return Err(VerifyError::Stale(skew));
    }
    let expected = hex::decode(signature.signature.trim()).map_err(|_| VerifyError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.0.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(signature.timestamp.as_bytes());
    mac.update(signature.token.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).map_err(|_| VerifyError::BadSignature)
}

/// A delivery that will never succeed: someone must look at it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Alert {
    pub event_id: String,
    pub recipient: String,
    pub reason: String,
    pub code: Option<i64>,
    pub description: String,
    pub message_id: String,
}

/// What to do with a verified event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Alert(Alert),
    /// Not a permanent failure (delivered, opened, temporary failure...): nothing to do.
    Ignore(String),
}

/// Permanent delivery failures (`event: failed`, `severity: permanent`) alert; all else is ignored.
pub fn classify(event: &Value) -> Verdict {
    let kind = event["event"].as_str().unwrap_or("<none>");
    let severity = event["severity"].as_str().unwrap_or("");
    if kind != "failed" || severity != "permanent" {
        return Verdict::Ignore(format!("{kind} {severity}").trim().to_owned());
    }
    let status = &event["delivery-status"];
    Verdict::Alert(Alert {
        event_id: event["id"].as_str().unwrap_or_default().to_owned(),
        recipient: event["recipient"].as_str().unwrap_or_default().to_owned(),
        reason: event["reason"].as_str().unwrap_or_default().to_owned(),
        code: status["code"].as_i64(),
        description: status["description"]
            .as_str()
            .filter(|d| !d.is_empty())
            .or(status["message"].as_str())
            .unwrap_or_default()
            .to_owned(),
        message_id: event["message"]["headers"]["message-id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Tokens seen recently, so a retried webhook does not alert twice.
#[derive(Default)]
pub struct SeenTokens(Mutex<VecDeque<String>>);

impl SeenTokens {
    const CAPACITY: usize = 4096;

    /// Records `token`; `false` when it was seen before.
    pub fn first_time(&self, token: &str) -> bool {
        let mut seen = self.0.lock().unwrap();
        if seen.iter().any(|t| t == token) {
            return false;
        }
        if seen.len() == Self::CAPACITY {
            seen.pop_front();
        }
        seen.push_back(token.to_owned());
        true
    }

    /// Forgets `token`, so a retry of a webhook whose alert could not be sent is handled again.
    pub fn forget(&self, token: &str) {
        self.0.lock().unwrap().retain(|t| t != token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    // Computed independently: python3 -c 'import hmac,hashlib;
    //   print(hmac.new(b"key-3ax6xnjp29jd6fds4gc373sgvjxteol0", b"1795000000" b"a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
    //   hashlib.sha256).hexdigest())'
    const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    const TOKEN: &str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
    const SIG: &str = "034f46322c250979720c16a4aaebc2af78da2935afecf858ebf3e04cd5a9c31f";

    fn signature(ts: &str, sig: &str) -> Signature {
        Signature {
            timestamp: ts.into(),
            token: TOKEN.into(),
            signature: sig.trim().into(),
        }
    }

    #[test]
    fn a_genuine_signature_verifies() {
        verify(
            &SigningKey::new(KEY),
            &signature("1795000000", SIG),
            at(1_795_000_010),
        )
        .unwrap();
    }

    #[test]
    fn forged_stale_or_malformed_signatures_are_refused() {
        let key = SigningKey::new(KEY);
        let mut flipped = SIG.trim().to_owned();
        flipped.replace_range(0..1, if flipped.starts_with('0') { "1" } else { "0" });
        assert_eq!(
            verify(&key, &signature("1795000000", &flipped), at(1_795_000_000)),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&key, &signature("1795000001", SIG), at(1_795_000_000)),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(
                &SigningKey::new("other"),
                &signature("1795000000", SIG),
                at(1_795_000_000)
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&key, &signature("1795000000", "zz"), at(1_795_000_000)),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&key, &signature("1795000000", SIG), at(1_795_000_400)),
            Err(VerifyError::Stale(400))
        );
        assert!(matches!(
            verify(&key, &signature("yesterday", SIG), at(0)),
            Err(VerifyError::BadTimestamp(_))
        ));
    }

    #[test]
    fn only_permanent_failures_alert() {
        let failed = serde_json::json!({
            "event": "failed", "severity": "permanent", "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "recipient": "alice@example.com", "reason": "bounce",
            "delivery-status": {"code": 550, "description": "", "message": "5.1.1 The email account does not exist"},
            "message": {"headers": {"message-id": "20261126.1@tgsearch.io"}}
        });
        match classify(&failed) {
            Verdict::Alert(a) => {
                assert_eq!(a.recipient, "alice@example.com");
                assert_eq!(a.code, Some(550));
                assert_eq!(a.description, "5.1.1 The email account does not exist");
                assert_eq!(a.message_id, "20261126.1@tgsearch.io");
            }
            other => panic!("{other:?}"),
        }
        let temporary = serde_json::json!({"event": "failed", "severity": "temporary"});
        assert_eq!(classify(&temporary), Verdict::Ignore("failed temporary".into()));
        assert_eq!(
            classify(&serde_json::json!({"event": "delivered"})),
            Verdict::Ignore("delivered".into())
        );
    }

    #[test]
    fn a_token_alerts_once() {
        let seen = SeenTokens::default();
        assert!(seen.first_time("t1"));
        assert!(!seen.first_time("t1"));
        assert!(seen.first_time("t2"));
    }
}
