//! The Mailgun webhook behind a Lambda function URL: verify, classify, alert exactly once.
//!
//! Mailgun reads the status: 200 = done; 406 = rejected, never retried; anything else = retried
//! for about 8 hours with the same signature block. So:
//!
//! | request | answer | why |
//! | --- | --- | --- |
//! | a mail lost for good, first delivery | 200 `alerted` | published to the alert topic |
//! | the same delivery again (retry, duplicate) | 200 `duplicate` | alerted already (or ignored) |
//! | any other event (delivered, temporary failure) | 200 `ignored` | nothing to do |
//! | a signature that matches neither the key held nor the key stored now (read again, at most once per 10 s per container) | 406 | |
//! | a signature that does not match, and the key cannot be read again | 503 | a rotated key is read on Mailgun's retry |
//! | missing signature, outside the horizon, token replayed with another event, not a webhook, truncated, over 256 KiB, other content type | 406 | no retry can make it valid |
//! | the ledger or SNS unavailable; the same delivery being handled elsewhere right now | 503 | a retry can succeed |
//! | not a POST | 405 | |
//!
//! Exactly once: the signature's token is claimed in the delivery ledger (a conditional write)
//! before anything is published, marked `sent` after, and released when publishing fails, so
//! Mailgun's retry can succeed. A crash between publishing and marking leaves a pending claim
//! whose lease lapses: the next retry publishes again (a rare duplicate, never a lost alert).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tracing::{info, warn};

use crate::mailgun::{HORIZON, Keyring, Reloaded, SigningKey, Verdict, VerifyError, classify, parse, verify};
use crate::metrics::{Dim, Record};
use crate::ports::{AlertSink, Claim, Delivery, DeliveryLedger, DeliveryState};

/// Built once per container.
pub struct WebhookContext<A, L> {
    pub keys: Keyring,
    pub alerts: A,
    pub ledger: L,
    /// How long a pending claim holds a token: longer than one invocation can run.
    pub lease: Duration,
    /// How long to wait for another invocation that holds the same token before answering 503.
    pub wait_for_other: Duration,
}

impl<A, L> WebhookContext<A, L> {
    pub fn new(key: SigningKey, alerts: A, ledger: L) -> Self {
        Self::with_keys(Keyring::fixed(key), alerts, ledger)
    }

    /// With a key that is read again when a signature does not match it.
    pub fn with_keys(keys: Keyring, alerts: A, ledger: L) -> Self {
        Self {
            keys,
            alerts,
            ledger,
            lease: Duration::from_secs(60),
            wait_for_other: Duration::from_secs(3),
        }
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

/// 406, which Mailgun never retries; `cause` is its metric's (`MailgunRefused`).
fn refuse(cause: &'static str, why: &str) -> Response<Body> {
    counted("refused", Some(("MailgunRefused", cause)));
    reply(StatusCode::NOT_ACCEPTABLE, json!({ "error": why }))
}

/// 503, which Mailgun retries for about 8 hours; `cause` is its metric's (`MailgunUnavailable`).
fn unavailable(cause: &'static str, why: &str) -> Response<Body> {
    counted("unavailable", Some(("MailgunUnavailable", cause)));
    reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": why }))
}

/// 200 with `status`.
fn settled(status: &'static str, mut body: serde_json::Value) -> Response<Body> {
    counted(status, None);
    body["status"] = status.into();
    reply(StatusCode::OK, body)
}

/// A delivery's metrics: its outcome, and for a refusal or an unavailable answer, its cause.
fn counted(outcome: &'static str, cause: Option<(&'static str, &'static str)>) {
    Record::new()
        .dim(Dim::Outcome, outcome)
        .one("MailgunDeliveries")
        .emit();
    if let Some((metric, cause)) = cause {
        Record::new().dim(Dim::Cause, cause).one(metric).emit();
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// The cause of a refused signature, as its metric says it.
fn verify_cause(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::BadSignature => "signature",
        VerifyError::BadTimestamp | VerifyError::TooOld(_) | VerifyError::Future(_) => "timestamp",
    }
}

/// A random id for this invocation's claim.
fn claim_owner() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

pub async fn handle<A: AlertSink, L: DeliveryLedger>(
    ctx: &WebhookContext<A, L>,
    request: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    if request.method() != Method::POST {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "POST a Mailgun webhook"}),
        ));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let webhook = match parse(content_type, request.body().as_ref()) {
        Ok(w) => w,
        Err(e) => {
            warn!(reason = %e, bytes = request.body().len(), "not a Mailgun webhook: 406");
            return Ok(refuse("malformed", &e.to_string()));
        }
    };
    let now = SystemTime::now();
    let signed_at = match verify(&ctx.keys.current(), &webhook.signature, now) {
        Ok(ts) => ts,
        // The key may have been rotated since this container read it: read it again before a
        // 406, which Mailgun never retries.
        Err(VerifyError::BadSignature) => match ctx.keys.reload().await {
            Reloaded::Changed => match verify(&ctx.keys.current(), &webhook.signature, now) {
                Ok(ts) => {
                    info!("signing key changed in Secrets Manager; the new one is in use");
                    ts
                }
                Err(e) => {
                    warn!(reason = %e, "signature refused by the new key too: 406");
                    return Ok(refuse(verify_cause(&e), &format!("signature refused: {e}")));
                }
            },
            // The stored key is the one in use (read now, or within the last seconds).
            Reloaded::Same | Reloaded::TooSoon => {
                warn!("signature refused (the stored key is the one in use): 406");
                return Ok(refuse(
                    "signature",
                    "signature refused: the signature does not match",
                ));
            }
            Reloaded::Failed(e) => {
                warn!(error = %e, "signature does not match and the key cannot be read again: 503");
                return Ok(unavailable(
                    "signing-key",
                    "the signing key cannot be checked right now; retry",
                ));
            }
        },
        Err(e) => {
            warn!(reason = %e, "signature refused: 406");
            return Ok(refuse(verify_cause(&e), &format!("signature refused: {e}")));
        }
    };
    let event_id: String = webhook.event["id"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(64)
        .collect();
    let verdict = classify(&webhook.event);
    let owner = claim_owner();
    let entry = Delivery {
        state: match verdict {
            Verdict::Alert(_) => DeliveryState::Pending,
            Verdict::Ignore(_) => DeliveryState::Ignored,
        },
        digest: webhook.digest(),
        owner: owner.clone(),
        lease_until: unix(now) + ctx.lease.as_secs(),
        // Past the horizon the signature is refused anyway: the record may go.
        expires_at: signed_at + HORIZON.as_secs() + 3600,
    };
    let token = webhook.signature.token.as_str();
    // At most twice: a claim, and once more if the holder released the token while we waited.
    for _ in 0..2 {
        let existing = match ctx.ledger.claim(token, &entry, unix(SystemTime::now())).await {
            Err(e) => {
                warn!(id = %event_id, error = %e, "delivery ledger unavailable: 503, Mailgun retries");
                return Ok(unavailable("ledger", "the delivery ledger is unavailable; retry"));
            }
            Ok(Claim::Claimed) => return Ok(act(ctx, token, &owner, &event_id, verdict).await),
            Ok(Claim::Existing(existing)) => existing,
        };
        if existing.digest != entry.digest {
            warn!(id = %event_id, "token replayed with another event: 406");
            return Ok(refuse(
                "replay",
                "this signature token was already used for another event",
            ));
        }
        match wait_for_other(ctx, token, existing).await {
            Ok(Some(state)) => {
                info!(id = %event_id, was = state.as_str(), "duplicate delivery");
                return Ok(settled("duplicate", json!({})));
            }
            Ok(None) => continue,
            Err(response) => return Ok(response),
        }
    }
    Ok(unavailable(
        "in-flight",
        "the same delivery is being handled elsewhere; retry",
    ))
}

/// Waits while another invocation holds the token. `Some(state)` once it is settled, `None`
/// when it was released (claim again), an answer when waiting is pointless.
async fn wait_for_other<A, L: DeliveryLedger>(
    ctx: &WebhookContext<A, L>,
    token: &str,
    mut seen: Delivery,
) -> Result<Option<DeliveryState>, Response<Body>> {
    let until = tokio::time::Instant::now() + ctx.wait_for_other;
    loop {
        if seen.state != DeliveryState::Pending {
            return Ok(Some(seen.state));
        }
        if tokio::time::Instant::now() >= until {
            return Err(unavailable(
                "in-flight",
                "the same delivery is being handled elsewhere; retry",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = match ctx.ledger.get(token).await {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(None),
            Err(e) => {
                warn!(error = %e, "delivery ledger unavailable while waiting: 503");
                return Err(unavailable("ledger", "the delivery ledger is unavailable; retry"));
            }
        };
    }
}

/// The token is ours: ignore, or publish and settle.
async fn act<A: AlertSink, L: DeliveryLedger>(
    ctx: &WebhookContext<A, L>,
    token: &str,
    owner: &str,
    event_id: &str,
    verdict: Verdict,
) -> Response<Body> {
    let alert = match verdict {
        Verdict::Ignore(what) => {
            info!(event = %what, id = %event_id, "ignored");
            return settled("ignored", json!({"event": what}));
        }
        Verdict::Alert(alert) => alert,
    };
    let message = json!({ "kind": "mailgun-mail-lost", "alert": alert });
    match ctx.alerts.publish(&alert.summary, &message).await {
        Ok(()) => {
            if let Err(e) = ctx.ledger.mark_sent(token, owner).await {
                // The alert is out; only a retry after the lease lapses could repeat it, and
                // Mailgun does not retry a 200.
                warn!(id = %event_id, error = %e, "alerted, but not recorded as sent");
            }
            info!(id = %event_id, reason = %alert.reason, code = ?alert.code, "alerted");
            settled("alerted", json!({}))
        }
        Err(e) => {
            if let Err(release) = ctx.ledger.release(token, owner).await {
                warn!(id = %event_id, error = %release, "could not release the claim; it lapses with its lease");
            }
            warn!(id = %event_id, error = %e, "alert not sent: 503, Mailgun retries");
            unavailable("alert-topic", "the alert could not be sent; retry")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    use super::*;
    use crate::ports::PortError;

    const KEY: &str = "key-unit-test";

    #[derive(Default)]
    struct Sink {
        sent: Mutex<Vec<String>>,
        fail: AtomicUsize,
    }

    impl AlertSink for Sink {
        async fn publish(&self, subject: &str, _: &serde_json::Value) -> Result<(), PortError> {
            if self.fail.load(Ordering::SeqCst) > 0 {
                self.fail.fetch_sub(1, Ordering::SeqCst);
                return Err("SNS is down".into());
            }
            tokio::task::yield_now().await;
            self.sent.lock().unwrap().push(subject.to_owned());
            Ok(())
        }
    }

    /// The ledger's semantics in memory (the DynamoDB adapter is tested against moto).
    #[derive(Default)]
    struct Ledger(Mutex<HashMap<String, Delivery>>);

    impl DeliveryLedger for Ledger {
        async fn claim(&self, token: &str, entry: &Delivery, now: u64) -> Result<Claim, PortError> {
            let mut items = self.0.lock().unwrap();
            match items.get(token) {
                Some(d) if !(d.state == DeliveryState::Pending && d.lease_until < now) => {
                    Ok(Claim::Existing(d.clone()))
                }
                _ => {
                    items.insert(token.into(), entry.clone());
                    Ok(Claim::Claimed)
                }
            }
        }
        async fn get(&self, token: &str) -> Result<Option<Delivery>, PortError> {
            Ok(self.0.lock().unwrap().get(token).cloned())
        }
        async fn mark_sent(&self, token: &str, owner: &str) -> Result<(), PortError> {
            let mut items = self.0.lock().unwrap();
            let d = items.get_mut(token).filter(|d| d.owner == owner).ok_or("lost")?;
            d.state = DeliveryState::Sent;
            Ok(())
        }
        async fn release(&self, token: &str, owner: &str) -> Result<(), PortError> {
            let mut items = self.0.lock().unwrap();
            if items.get(token).is_some_and(|d| d.owner == owner) {
                items.remove(token);
            }
            Ok(())
        }
    }

    fn ctx() -> WebhookContext<Sink, Ledger> {
        WebhookContext::new(SigningKey::new(KEY).unwrap(), Sink::default(), Ledger::default())
    }

    fn body(token: &str, age: Duration, event: serde_json::Value) -> String {
        signed_with(KEY, token, age, event)
    }

    fn signed_with(key: &str, token: &str, age: Duration, event: serde_json::Value) -> String {
        let ts = unix(SystemTime::now() - age).to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(ts.as_bytes());
        mac.update(token.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        json!({"signature": {"timestamp": ts, "token": token, "signature": signature}, "event-data": event})
            .to_string()
    }

    fn lost(id: &str) -> serde_json::Value {
        json!({"event": "failed", "severity": "permanent", "reason": "bounce", "id": id, "recipient": "a@example.com"})
    }

    async fn post(ctx: &WebhookContext<Sink, Ledger>, body: String) -> (u16, String) {
        let request = lambda_http::http::Request::builder()
            .method("POST")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let response = handle(ctx, request).await.unwrap();
        let text = match response.body() {
            Body::Text(t) => t.clone(),
            _ => String::new(),
        };
        (response.status().as_u16(), text)
    }

    #[tokio::test]
    async fn one_alert_per_delivery_however_often_it_arrives() {
        let ctx = ctx();
        let b = body("tok-1", Duration::ZERO, lost("ev1"));
        let answers = futures::future::join_all((0..8).map(|_| post(&ctx, b.clone()))).await;
        assert!(answers.iter().all(|(code, _)| *code == 200), "{answers:?}");
        assert_eq!(ctx.alerts.sent.lock().unwrap().len(), 1);
        assert_eq!(post(&ctx, b).await.0, 200);
        assert_eq!(ctx.alerts.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_publish_is_retried_by_mailgun_and_then_alerts_once() {
        let ctx = ctx();
        ctx.alerts.fail.store(1, Ordering::SeqCst);
        let b = body("tok-2", Duration::from_secs(3 * 3600), lost("ev2"));
        assert_eq!(post(&ctx, b.clone()).await.0, 503);
        assert!(ctx.alerts.sent.lock().unwrap().is_empty());
        assert_eq!(post(&ctx, b.clone()).await.0, 200);
        assert_eq!(post(&ctx, b).await.0, 200);
        assert_eq!(ctx.alerts.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_lapsed_claim_is_taken_over_so_a_crash_loses_nothing() {
        let ctx = ctx();
        let b = body("tok-3", Duration::ZERO, lost("ev3"));
        // An invocation that claimed the token and died before publishing.
        ctx.ledger.0.lock().unwrap().insert(
            "tok-3".into(),
            Delivery {
                state: DeliveryState::Pending,
                digest: parse("application/json", b.as_bytes()).unwrap().digest(),
                owner: "dead".into(),
                lease_until: unix(SystemTime::now()) - 1,
                expires_at: u64::MAX,
            },
        );
        assert_eq!(post(&ctx, b).await, (200, r#"{"status":"alerted"}"#.into()));
    }

    #[tokio::test]
    async fn a_token_replayed_with_another_event_is_refused() {
        let ctx = ctx();
        assert_eq!(
            post(&ctx, body("tok-4", Duration::ZERO, lost("ev4"))).await.0,
            200
        );
        let (code, text) = post(&ctx, body("tok-4", Duration::ZERO, lost("forged"))).await;
        assert_eq!(code, 406, "{text}");
        assert_eq!(ctx.alerts.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn nothing_that_can_never_succeed_is_answered_with_a_retryable_code() {
        let ctx = ctx();
        let stale = body("tok-5", Duration::from_secs(2 * 86_400), lost("ev5"));
        let mut forged: serde_json::Value =
            serde_json::from_str(&body("tok-6", Duration::ZERO, lost("ev6"))).unwrap();
        forged["signature"]["signature"] = "00".repeat(32).into();
        for b in [
            stale,
            forged.to_string(),
            "{\"signature\": {".into(),
            "not json".into(),
        ] {
            assert_eq!(post(&ctx, b).await.0, 406);
        }
        assert!(ctx.alerts.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_rotated_signing_key_loses_no_delivery() {
        let stored = std::sync::Arc::new(Mutex::new(KEY.to_string()));
        let source = stored.clone();
        let keys = Keyring::reloading(SigningKey::new(KEY).unwrap(), move || {
            let key = source.lock().unwrap().clone();
            async move { SigningKey::new(key) }
        })
        .with_interval(Duration::from_millis(200));
        let ctx = WebhookContext::with_keys(keys, Sink::default(), Ledger::default());
        *stored.lock().unwrap() = "key-rotated".into();
        let b = signed_with("key-rotated", "tok-7", Duration::ZERO, lost("ev7"));
        assert_eq!(post(&ctx, b).await.0, 200);
        assert_eq!(ctx.alerts.sent.lock().unwrap().len(), 1);
        // A forged signature is refused, whether the key was read just now or is read again.
        let forged = signed_with("key-forged", "tok-8", Duration::ZERO, lost("ev8"));
        assert_eq!(post(&ctx, forged.clone()).await.0, 406);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(post(&ctx, forged).await.0, 406);
    }
}
