//! `GET /tenant`: a signed-in user's own tenant connection; `POST /tenant/rotate`: a new
//! password for it. Behind API Gateway's HTTP API (payload v2) or a Lambda function URL alike.
//!
//! The tenant is always the `sub` of the verified bearer token; nothing in the path, the query
//! or the body can name another. The function verifies the token itself (see
//! [`crate::cognito_jwt`]), so it is safe without an authorizer in front.
//!
//! | answer | when |
//! | --- | --- |
//! | 200 `{"status":"ready","username","password","vhost","amqp_uri"}` | the tenant is complete in every system |
//! | 202 `{"status":"provisioning"}`, `Retry-After` | it is incomplete (just signed up, or being repaired) |
//! | 404 `{"error":"no_tenant",...}` | nothing of it exists |
//! | 401 `WWW-Authenticate: Bearer error="invalid_token"` | no token, not a valid one of this pool and app client, or one whose user Cognito no longer honours (disabled, deleted, signed out) |
//! | 429, `Retry-After` | this tenant asked more often than its rate allows |
//! | 503, `Retry-After`, `reference` | a dependency is down or slower than [`READINESS_DEADLINE`] |
//! | 500, `reference` | the stored credentials are not the tenant's (never handed out) |
//! | 404 / 405 | another path / another method |
//!
//! `POST /tenant/rotate` answers 200 with the new credentials (the old password is refused from
//! then on, its open connections are closed, the backend restarts with the new one; see
//! [`crate::rotation`]), 409 with `Retry-After` while the tenant is incomplete or another
//! rotation outlasts the wait, 404 without a tenant, 429 past the rotation rate, 503 when a step
//! did not complete (repeating it finishes it).
//!
//! Modules: [`request`] (route, path, bearer token), [`answers`] (every HTTP answer).
//!
//! Every answer carries `Cache-Control: no-store`. Logs name the tenant and the outcome, never a
//! token or a password.

use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use tracing::{error, info, warn};

use crate::cognito_jwt::{CachedSessions, JwksFetch, Session, SessionCheck, TokenVerifier, VerifyError};
use crate::ports::{Admission, Rate, RateLimiter};
use crate::readiness::{Readiness, ReadinessError, TenantReadiness};
use crate::tenant::TenantId;

pub use crate::readiness::READINESS_DEADLINE;

mod answers;
mod request;
#[cfg(test)]
mod tests;

pub use answers::{RETRY_PROVISIONING_SECS, RETRY_UNAVAILABLE_SECS, respond, unauthorized};
use answers::{no_route, rate_limited, unavailable, with_reference, with_retry};
use request::path_of;
pub use request::{NoRoute, Route, bearer, request_path, route};

/// Built once per container.
pub struct CredentialsContext<F, T, R, S> {
    pub verifier: TokenVerifier<F>,
    /// Cognito's word that the token's user is still active (cached per token for 30 s).
    pub sessions: CachedSessions<S>,
    pub tenants: T,
    /// How long the readiness check may take ([`READINESS_DEADLINE`]).
    pub deadline: Duration,
    /// Requests per tenant, counted where every container sees them.
    pub rates: R,
    pub get_rate: Rate,
    pub rotate_rate: Rate,
}

/// Authenticates the caller: their tenant and token, or the answer that refuses them.
async fn caller<'r, F: JwksFetch>(
    verifier: &TokenVerifier<F>,
    request: &'r Request,
) -> Result<(TenantId, &'r str), Response<Body>> {
    let token = bearer(request.headers()).map_err(|reason| {
        info!(%reason, "request refused");
        unauthorized()
    })?;
    let tenant = verifier.verify(token).await.map_err(|e| match e {
        VerifyError::Rejected(reason) => {
            info!(%reason, "token refused");
            unauthorized()
        }
        VerifyError::KeysUnavailable(e) => {
            error!(error = %e, "cannot verify tokens: the user pool's keys are unavailable");
            unavailable("sign-in cannot be checked right now; ask again shortly")
        }
    })?;
    Ok((tenant, token))
}

/// A valid token whose user Cognito no longer knows as active (disabled, deleted, signed out)
/// is refused like any other: `Some(answer)` refuses it.
async fn revoked<S: SessionCheck>(
    sessions: &CachedSessions<S>,
    tenant: &TenantId,
    token: &str,
) -> Option<Response<Body>> {
    match sessions.check(tenant.as_str(), token).await {
        Ok(Session::Active) => None,
        Ok(Session::Revoked(why)) => {
            info!(tenant = %tenant, reason = %why, "token of a user no longer active refused");
            Some(unauthorized())
        }
        Err(e) => {
            error!(tenant = %tenant, error = %e, "cannot ask Cognito whether the user is still active");
            Some(unavailable(
                "sign-in cannot be checked right now; ask again shortly",
            ))
        }
    }
}

async fn get_tenant<T: TenantReadiness>(
    tenants: &T,
    tenant: &TenantId,
    deadline: Duration,
) -> Response<Body> {
    let outcome = tenants.readiness(tenant, deadline).await;
    match &outcome {
        Ok(Readiness::Ready(_)) => info!(tenant = %tenant, "credentials handed out"),
        Ok(Readiness::Provisioning) => info!(tenant = %tenant, "tenant incomplete: provisioning"),
        Ok(Readiness::Absent) => warn!(tenant = %tenant, "no tenant for a signed-in user"),
        Err(e) if e.is_transient() => warn!(tenant = %tenant, error = %e, "tenant state unavailable"),
        Err(e) => error!(tenant = %tenant, error = %e, "tenant credentials inconsistent"),
    }
    respond(&outcome)
}

async fn rotate<T: TenantReadiness>(tenants: &T, tenant: &TenantId) -> Response<Body> {
    let outcome = tenants.rotate(tenant, crate::readiness::ROTATION_DEADLINE).await;
    match &outcome {
        Ok(Readiness::Ready(_)) => {
            info!(tenant = %tenant, "password rotated; new credentials handed out");
            respond(&outcome)
        }
        Ok(Readiness::Provisioning) => with_retry(
            StatusCode::CONFLICT,
            RETRY_PROVISIONING_SECS,
            json!({"error": "not_ready", "message": "your tenant is still being provisioned: rotate once `GET /tenant` answers ready"}),
        ),
        Ok(Readiness::Absent) => respond(&outcome),
        Err(ReadinessError::RotationBusy) => with_retry(
            StatusCode::CONFLICT,
            RETRY_PROVISIONING_SECS,
            json!({"error": "rotation_in_progress", "message": "another rotation of your password is under way: ask `GET /tenant` for its result"}),
        ),
        Err(e) => {
            warn!(tenant = %tenant, error = %e, "rotation incomplete");
            unavailable("the rotation did not complete; repeat it (it is safe to repeat)")
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counts the request against the tenant's rate for `route`: `Some(answer)` refuses it. When the
/// counters cannot be reached, reads go through (the tenant's own state is behind them) and
/// rotations, which write, are refused with 503.
async fn limit<R: RateLimiter>(
    rates: &R,
    route: Route,
    tenant: &TenantId,
    (get_rate, rotate_rate): (Rate, Rate),
) -> Option<Response<Body>> {
    let (key, rate) = match route {
        Route::GetTenant => (format!("get#{tenant}"), get_rate),
        Route::Rotate => (format!("rotate#{tenant}"), rotate_rate),
    };
    match rates.admit(&key, rate, unix_now()).await {
        Ok(Admission::Admitted) => None,
        Ok(Admission::Limited { retry_after }) => {
            warn!(tenant = %tenant, route = ?route, "rate limited");
            Some(rate_limited(retry_after))
        }
        Err(e) if route == Route::GetTenant => {
            warn!(tenant = %tenant, error = %e, "rate counters unavailable; request let through");
            None
        }
        Err(e) => {
            error!(tenant = %tenant, error = %e, "rate counters unavailable; rotation refused");
            Some(unavailable(
                "the rotation cannot be started right now; ask again shortly",
            ))
        }
    }
}

pub async fn handle<F: JwksFetch, T: TenantReadiness, R: RateLimiter, S: SessionCheck>(
    ctx: &CredentialsContext<F, T, R, S>,
    request: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let reference = request.lambda_context_ref().map(|c| c.request_id.clone());
    let answer = async {
        let route = match route(request.method(), &path_of(&request)) {
            Ok(route) => route,
            Err(why) => return no_route(why),
        };
        let (tenant, token) = match caller(&ctx.verifier, &request).await {
            Ok(caller) => caller,
            Err(refused) => return refused,
        };
        // Cognito's word and the request count at once; a revoked user's refusal comes first.
        let (revoked, limited) = tokio::join!(
            revoked(&ctx.sessions, &tenant, token),
            limit(&ctx.rates, route, &tenant, (ctx.get_rate, ctx.rotate_rate)),
        );
        if let Some(refused) = revoked.or(limited) {
            return refused;
        }
        match route {
            Route::GetTenant => get_tenant(&ctx.tenants, &tenant, ctx.deadline).await,
            Route::Rotate => rotate(&ctx.tenants, &tenant).await,
        }
    }
    .await;
    count(answer.status());
    Ok(match reference {
        Some(reference) => with_reference(answer, &reference),
        None => answer,
    })
}

/// The answer's status code, as the metric `TenantApiAnswers` counts it.
fn count(status: StatusCode) {
    use crate::metrics::{Dim, dim_value};
    let Some(code) = dim_value("TenantApiAnswers", Dim::Status, status.as_str()) else {
        return;
    };
    crate::metrics::Record::new()
        .dim(crate::metrics::Dim::Status, code)
        .one("TenantApiAnswers")
        .emit();
}
