//! The Mailgun webhook behind a Lambda function URL: verify, classify, alert.
//!
//! Status codes tell Mailgun what to do: 2xx means done (also for events we ignore), 401 a
//! signature we refuse, 400 a body that is not a webhook, 5xx a failure worth retrying (the
//! alert could not be sent).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tracing::{info, warn};

use crate::mailgun::{SeenTokens, SigningKey, Verdict, Webhook, classify, verify};
use crate::ports::AlertSink;

/// Built once per container.
pub struct WebhookContext<A> {
    pub key: SigningKey,
    pub alerts: A,
    pub seen: SeenTokens,
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

pub async fn handle<A: AlertSink>(
    ctx: &WebhookContext<A>,
    request: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    if request.method() != Method::POST {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "POST a Mailgun webhook"}),
        ));
    }
    let body: &[u8] = request.body().as_ref();
    let webhook: Webhook = match serde_json::from_slice(body) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "not a Mailgun webhook");
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("the body is not a Mailgun webhook (JSON with `signature` and `event-data`): {e}")}),
            ));
        }
    };
    if let Err(e) = verify(&ctx.key, &webhook.signature, std::time::SystemTime::now()) {
        warn!(reason = %e, "webhook refused");
        return Ok(reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": format!("signature: {e}")}),
        ));
    }
    let event_id = webhook.event_data["id"].as_str().unwrap_or_default().to_owned();
    let alert = match classify(&webhook.event_data) {
        Verdict::Ignore(what) => {
            info!(event = %what, id = %event_id, "ignored");
            return Ok(reply(StatusCode::OK, json!({"status": "ignored", "event": what})));
        }
        Verdict::Alert(alert) => alert,
    };
    let token = &webhook.signature.token;
    if !ctx.seen.first_time(token) {
        info!(id = %event_id, "duplicate delivery, already alerted");
        return Ok(reply(StatusCode::OK, json!({"status": "duplicate"})));
    }
    let subject = format!("TGSearch: permanent delivery failure to {}", alert.recipient);
    match ctx
        .alerts
        .publish(
            &subject,
            &json!({ "kind": "mailgun-permanent-failure", "alert": alert }),
        )
        .await
    {
        Ok(()) => {
            info!(id = %event_id, reason = %alert.reason, "alerted");
            Ok(reply(StatusCode::OK, json!({"status": "alerted"})))
        }
        Err(e) => {
            ctx.seen.forget(token);
            warn!(id = %event_id, error = %e, "alert not sent; Mailgun will retry");
            Ok(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the alert could not be sent; retry"}),
            ))
        }
    }
}
