//! Every answer the function gives, as HTTP: JSON, never cached, with `Retry-After` where asking
//! again can help and a `reference` on server-side failures.

use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::json;

use super::request::NoRoute;
use crate::readiness::{Readiness, ReadinessError};

/// Seconds a frontend should wait before asking again while the tenant is provisioned.
pub const RETRY_PROVISIONING_SECS: u64 = 2;
/// Seconds to wait after a dependency failed.
pub const RETRY_UNAVAILABLE_SECS: u64 = 5;

/// Every answer: JSON, never cached (it may hold a password, or say who is signed in).
pub(super) fn base(status: StatusCode) -> lambda_http::http::response::Builder {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
}

pub(super) fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    base(status)
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

pub(super) fn with_retry(status: StatusCode, seconds: u64, body: serde_json::Value) -> Response<Body> {
    base(status)
        .header("retry-after", seconds.to_string())
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

/// 401, the same for every reason: the reason goes to the log, not to the caller.
pub fn unauthorized() -> Response<Body> {
    base(StatusCode::UNAUTHORIZED)
        .header("www-authenticate", r#"Bearer error="invalid_token""#)
        .body(Body::from(
            json!({
                "error": "invalid_token",
                "message": "sign in again: send this application's Cognito token as `Authorization: Bearer <token>`"
            })
            .to_string(),
        ))
        .expect("a valid response")
}

pub(super) fn no_route(why: NoRoute) -> Response<Body> {
    match why {
        NoRoute::NotFound => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "message": "no such resource: `GET /tenant` answers your own tenant"}),
        ),
        NoRoute::MethodNotAllowed { allow } => base(StatusCode::METHOD_NOT_ALLOWED)
            .header("allow", allow)
            .body(Body::from(
                json!({"error": "method_not_allowed", "message": format!("use {allow}")}).to_string(),
            ))
            .expect("a valid response"),
    }
}

pub(super) fn unavailable(message: &str) -> Response<Body> {
    with_retry(
        StatusCode::SERVICE_UNAVAILABLE,
        RETRY_UNAVAILABLE_SECS,
        json!({"error": "unavailable", "message": message}),
    )
}

/// What the tenant's state means to its user, as an HTTP answer.
pub fn respond(outcome: &Result<Readiness, ReadinessError>) -> Response<Body> {
    match outcome {
        Ok(Readiness::Ready(c)) => json_response(
            StatusCode::OK,
            json!({
                "status": "ready",
                "username": c.username,
                "password": c.password.expose(),
                "vhost": c.vhost,
                "amqp_uri": c.amqp_uri.expose(),
            }),
        ),
        Ok(Readiness::Provisioning) => with_retry(
            StatusCode::ACCEPTED,
            RETRY_PROVISIONING_SECS,
            json!({"status": "provisioning"}),
        ),
        Ok(Readiness::Absent) => json_response(
            StatusCode::NOT_FOUND,
            json!({
                "error": "no_tenant",
                "message": "this account has no TGSearch tenant",
                "reason": "a tenant is created when a sign-up is confirmed, and none exists for this account: \
                           its creation failed, or it was removed. The drift repair creates the tenant of every \
                           confirmed account within 15 minutes; if this persists, contact support."
            }),
        ),
        Err(e) if e.is_transient() => {
            unavailable("your tenant's state cannot be read right now; ask again shortly")
        }
        Err(_) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "internal", "message": "your tenant's stored credentials are inconsistent and were not handed out; the log tells an operator why"}),
        ),
    }
}

/// 429 with `Retry-After`: this tenant asked too often.
pub(super) fn rate_limited(retry_after: Duration) -> Response<Body> {
    let seconds = retry_after.as_secs().max(1);
    with_retry(
        StatusCode::TOO_MANY_REQUESTS,
        seconds,
        json!({"error": "rate_limited", "message": format!("too many requests for this tenant; ask again in {seconds} s")}),
    )
}

/// A server-side failure's answer carries the invocation's request id as `reference`: the log
/// lines of that invocation carry it too, so support finds the detail the answer leaves out.
pub(super) fn with_reference(answer: Response<Body>, reference: &str) -> Response<Body> {
    if !answer.status().is_server_error() {
        return answer;
    }
    let (parts, body) = answer.into_parts();
    let mut value: serde_json::Value = serde_json::from_slice(body.as_ref()).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("reference".into(), reference.into());
    }
    Response::from_parts(parts, Body::from(value.to_string()))
}
