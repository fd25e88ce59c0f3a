//! Mailgun's webhook signature: HMAC-SHA256 of `timestamp + token` with the account's webhook
//! signing key, hex-encoded.
//!
//! The HMAC is checked first, in constant time; only a genuine signature has its timestamp
//! looked at. Mailgun retries a delivery for about 8 hours (5 min, 10 min, 15 min, 1 h, 2 h,
//! 4 h) with the ORIGINAL signature block, so a signature is accepted up to [`HORIZON`] after
//! its timestamp, and refused when it is older or dated in the future beyond a small clock skew.
//! A replay inside the horizon is caught by the delivery ledger, keyed by the token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::adapters::secrets_manager::{SecretsError, SecretsManager};

/// How long after its timestamp a signature is accepted: Mailgun's ~8 hours of retries, with
/// four hours of margin for its queues and our clock.
pub const HORIZON: Duration = Duration::from_secs(12 * 3600);
/// How far in the future a timestamp may be (clock skew between Mailgun and AWS).
pub const FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);

/// The webhook signing key (Mailgun: Sending → Webhooks → HTTP webhook signing key). Never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(String);

impl SigningKey {
    /// A key from its text; empty or whitespace-only keys are refused.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into().trim().to_owned();
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(key))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Why the stored signing key cannot be used. The secret's content is never quoted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is empty")]
    Empty,
    #[error("the secret is JSON but has no non-empty string `signing_key`")]
    NoSigningKey,
    #[error("the secret starts like JSON but is not valid JSON")]
    NotJson,
    #[error("the secret does not exist")]
    Missing,
    #[error(transparent)]
    Secret(#[from] SecretsError),
}

/// The key from the secret's text: the key itself, or JSON `{"signing_key": "..."}`.
pub fn parse_signing_key(raw: &str) -> Result<SigningKey, KeyError> {
    let trimmed = raw.trim();
    if !trimmed.starts_with('{') {
        return SigningKey::new(trimmed);
    }
    let value: serde_json::Value = serde_json::from_str(trimmed).map_err(|_| KeyError::NotJson)?;
    match value.get("signing_key").and_then(|k| k.as_str()) {
        Some(key) if !key.trim().is_empty() => SigningKey::new(key),
        _ => Err(KeyError::NoSigningKey),
    }
}

/// Reads and checks the signing key, once per container.
pub async fn load_signing_key(secrets: &SecretsManager, secret_id: &str) -> Result<SigningKey, KeyError> {
    match secrets.read_string(secret_id).await? {
        Some(raw) => parse_signing_key(&raw),
        None => Err(KeyError::Missing),
    }
}

/// The `signature` block of a webhook.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Signature {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

/// Why a signature is refused. Mailgun must not retry any of these.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the signature does not match")]
    BadSignature,
    #[error("the timestamp is not a Unix time")]
    BadTimestamp,
    #[error("the signature is {0} s old, beyond the {h} s acceptance horizon", h = HORIZON.as_secs())]
    TooOld(u64),
    #[error("the timestamp is {0} s in the future")]
    Future(u64),
}

/// Checks `signature` against `key` at time `now`; returns the signature's Unix time.
pub fn verify(key: &SigningKey, signature: &Signature, now: SystemTime) -> Result<u64, VerifyError> {
    let expected = hex::decode(signature.signature.trim()).map_err(|_| VerifyError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.0.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(signature.timestamp.as_bytes());
    mac.update(signature.token.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| VerifyError::BadSignature)?;
    let ts: u64 = signature
        .timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if ts > now + FUTURE_SKEW.as_secs() {
        return Err(VerifyError::Future(ts - now));
    }
    let age = now.saturating_sub(ts);
    if age > HORIZON.as_secs() {
        return Err(VerifyError::TooOld(age));
    }
    Ok(ts)
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
    const TS: u64 = 1_795_000_000;

    fn key() -> SigningKey {
        SigningKey::new(KEY).unwrap()
    }

    fn signature(ts: &str, sig: &str) -> Signature {
        Signature {
            timestamp: ts.into(),
            token: TOKEN.into(),
            signature: sig.into(),
        }
    }

    #[test]
    fn a_genuine_signature_verifies_for_the_whole_retry_schedule() {
        let sig = signature("1795000000", SIG);
        assert_eq!(verify(&key(), &sig, at(TS + 10)), Ok(TS));
        // Mailgun's last retry comes about 8 hours after the first attempt.
        assert_eq!(verify(&key(), &sig, at(TS + 8 * 3600 + 600)), Ok(TS));
        assert_eq!(verify(&key(), &sig, at(TS + HORIZON.as_secs())), Ok(TS));
    }

    #[test]
    fn old_and_future_signatures_are_refused() {
        let sig = signature("1795000000", SIG);
        assert_eq!(
            verify(&key(), &sig, at(TS + 2 * 86_400)),
            Err(VerifyError::TooOld(2 * 86_400))
        );
        assert_eq!(
            verify(&key(), &sig, at(TS - 3600)),
            Err(VerifyError::Future(3600))
        );
        assert_eq!(
            verify(&key(), &sig, at(TS - 60)),
            Ok(TS),
            "small clock skew is fine"
        );
    }

    #[test]
    fn forged_or_malformed_signatures_are_refused_before_the_time_is_read() {
        let mut flipped = SIG.to_owned();
        flipped.replace_range(0..1, "1");
        for (ts, sig) in [
            ("1795000000", flipped.as_str()),
            ("1795000001", SIG),
            ("1795000000", "zz"),
            ("1795000000", ""),
            // An old forged signature is a forgery first: its age is not revealed.
            ("1000", SIG),
        ] {
            assert_eq!(
                verify(&key(), &signature(ts, sig), at(TS)),
                Err(VerifyError::BadSignature),
                "{ts} {sig}"
            );
        }
        let other = SigningKey::new("other").unwrap();
        assert_eq!(
            verify(&other, &signature("1795000000", SIG), at(TS)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn the_key_is_the_secret_or_its_signing_key_field() {
        assert!(parse_signing_key(KEY).is_ok());
        assert!(parse_signing_key(&format!("  {KEY}\n")).is_ok());
        assert!(parse_signing_key(&format!(r#"{{"signing_key": "{KEY}"}}"#)).is_ok());
        for (raw, why) in [
            ("", "empty"),
            ("  \n\t", "empty"),
            (r#"{"signing_key": "  "}"#, "signing_key"),
            (r#"{"key": "abc"}"#, "signing_key"),
            (r#"{"signing_key": 42}"#, "signing_key"),
            (r#"{"signing_key": "#, "not valid JSON"),
        ] {
            let err = parse_signing_key(raw).unwrap_err().to_string();
            assert!(err.contains(why), "{raw:?}: {err}");
        }
    }

    #[test]
    fn the_key_is_never_shown() {
        let shown = format!("{:?}", key());
        assert!(!shown.contains(KEY), "{shown}");
    }
}
