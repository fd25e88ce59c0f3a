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
//! | 401 `WWW-Authenticate: Bearer error="invalid_token"` | no token, or not a valid one of this pool and app client |
//! | 503, `Retry-After` | a dependency is down or slower than [`READINESS_DEADLINE`] |
//! | 500 | the stored credentials are not the tenant's (never handed out) |
//! | 404 / 405 | another path / another method |
//!
//! `POST /tenant/rotate` answers 200 with the new credentials (the old password is refused from
//! then on, its open connections are closed, the backend restarts with the new one), 409 with
//! `Retry-After` while the tenant is incomplete, 404 without a tenant, 503 when a step did not
//! complete (repeating it is safe).
//!
//! Every answer carries `Cache-Control: no-store`. Logs name the tenant and the outcome, never a
//! token or a password.

use std::time::Duration;

use lambda_http::http::header::{AUTHORIZATION, HeaderMap};
use lambda_http::http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use tracing::{error, info, warn};

use crate::cognito_jwt::{
    CachedSessions, JwksFetch, Rejection, Session, SessionCheck, TokenVerifier, VerifyError,
};
use crate::ports::{Admission, Rate, RateLimiter};
use crate::readiness::{Readiness, ReadinessError, TenantReadiness};
use crate::tenant::TenantId;

pub use crate::readiness::READINESS_DEADLINE;

/// Seconds a frontend should wait before asking again while the tenant is provisioned.
pub const RETRY_PROVISIONING_SECS: u64 = 2;
/// Seconds to wait after a dependency failed.
pub const RETRY_UNAVAILABLE_SECS: u64 = 5;

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

/// The routes this function serves. A new route (`POST /tenant/rotate`) is one variant here, one
/// line in [`route`], and one arm in [`handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    GetTenant,
    Rotate,
}

/// Why a request has no route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRoute {
    NotFound,
    MethodNotAllowed { allow: &'static str },
}

/// The route of `method` on `path` (a path without stage and without query).
pub fn route(method: &Method, path: &str) -> Result<Route, NoRoute> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    match (path, method) {
        ("/tenant", &Method::GET) => Ok(Route::GetTenant),
        ("/tenant", _) => Err(NoRoute::MethodNotAllowed { allow: "GET" }),
        ("/tenant/rotate", &Method::POST) => Ok(Route::Rotate),
        ("/tenant/rotate", _) => Err(NoRoute::MethodNotAllowed { allow: "POST" }),
        _ => Err(NoRoute::NotFound),
    }
}

/// The request's path as the client wrote it after the API's base: API Gateway's named stages
/// (`/prod/tenant`) are stripped; `$default` stages and function URLs have none.
pub fn request_path(raw_path: &str, stage: Option<&str>) -> String {
    let path = match stage {
        Some(stage) if stage != "$default" => {
            let prefix = format!("/{stage}");
            match raw_path.strip_prefix(&prefix) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                _ => raw_path,
            }
        }
        _ => raw_path,
    };
    if path.is_empty() { "/".into() } else { path.into() }
}

fn path_of(request: &Request) -> String {
    let raw = match request.raw_http_path() {
        "" => request.uri().path(),
        raw => raw,
    };
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.as_deref(),
        _ => None,
    };
    request_path(raw, stage)
}

/// The one bearer token of the request. Two Authorization headers, or values API Gateway joined
/// with a comma, are refused rather than guessed at.
pub fn bearer(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(Rejection::Missing)?;
    if values.next().is_some() {
        return Err(Rejection::NotBearer);
    }
    let value = value.to_str().map_err(|_| Rejection::NotBearer)?;
    let (scheme, token) = value.trim_start().split_once(' ').ok_or(Rejection::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection::Missing);
    }
    // A JWT is three base64url parts: anything else (a comma, a space, a second token) is not one.
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Rejection::NotBearer);
    }
    Ok(token)
}

/// Every answer: JSON, never cached (it may hold a password, or say who is signed in).
fn base(status: StatusCode) -> lambda_http::http::response::Builder {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    base(status)
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

fn with_retry(status: StatusCode, seconds: u64, body: serde_json::Value) -> Response<Body> {
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

fn no_route(why: NoRoute) -> Response<Body> {
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

fn unavailable(message: &str) -> Response<Body> {
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

/// Authenticates the caller: their tenant, or the answer that refuses them. A valid token whose
/// user Cognito no longer knows as active (disabled, deleted, signed out) is refused like any
/// other.
async fn caller<F: JwksFetch, S: SessionCheck>(
    verifier: &TokenVerifier<F>,
    sessions: &CachedSessions<S>,
    request: &Request,
) -> Result<TenantId, Response<Body>> {
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
    match sessions.check(tenant.as_str(), token).await {
        Ok(Session::Active) => Ok(tenant),
        Ok(Session::Revoked(why)) => {
            info!(tenant = %tenant, reason = %why, "token of a user no longer active refused");
            Err(unauthorized())
        }
        Err(e) => {
            error!(tenant = %tenant, error = %e, "cannot ask Cognito whether the user is still active");
            Err(unavailable(
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

/// 429 with `Retry-After`: this tenant asked too often.
fn rate_limited(retry_after: Duration) -> Response<Body> {
    let seconds = retry_after.as_secs().max(1);
    with_retry(
        StatusCode::TOO_MANY_REQUESTS,
        seconds,
        json!({"error": "rate_limited", "message": format!("too many requests for this tenant; ask again in {seconds} s")}),
    )
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
        let tenant = match caller(&ctx.verifier, &ctx.sessions, &request).await {
            Ok(tenant) => tenant,
            Err(refused) => return refused,
        };
        if let Some(refused) = limit(&ctx.rates, route, &tenant, (ctx.get_rate, ctx.rotate_rate)).await {
            return refused;
        }
        match route {
            Route::GetTenant => get_tenant(&ctx.tenants, &tenant, ctx.deadline).await,
            Route::Rotate => rotate(&ctx.tenants, &tenant).await,
        }
    }
    .await;
    Ok(match reference {
        Some(reference) => with_reference(answer, &reference),
        None => answer,
    })
}

/// A server-side failure's answer carries the invocation's request id as `reference`: the log
/// lines of that invocation carry it too, so support finds the detail the answer leaves out.
fn with_reference(answer: Response<Body>, reference: &str) -> Response<Body> {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use lambda_http::http::HeaderValue;

    use super::*;
    use crate::cognito_jwt::TokenUse;
    use crate::cognito_jwt::jwks::tests::MemoryJwks;
    use crate::cognito_jwt::sessions::tests::MemorySessions;
    use crate::cognito_jwt::verifier::tests::{SUB, TestKey, id_claims, verifier};
    use crate::credentials::{Password, TenantCredentials};
    use crate::memory::MemoryRates;

    const OTHER: &str = "00000000-0000-4000-8000-000000000000";

    /// Tenants in memory: each sub's readiness.
    type Outcome = Result<Readiness, fn() -> ReadinessError>;
    struct Tenants(HashMap<String, Outcome>);

    impl TenantReadiness for Tenants {
        async fn readiness(&self, tenant: &TenantId, _within: Duration) -> Result<Readiness, ReadinessError> {
            match self.0.get(tenant.as_str()) {
                None => Ok(Readiness::Absent),
                Some(Ok(r)) => Ok(r.clone()),
                Some(Err(make)) => Err(make()),
            }
        }

        async fn rotate(&self, tenant: &TenantId, within: Duration) -> Result<Readiness, ReadinessError> {
            match self.readiness(tenant, within).await? {
                Readiness::Ready(_) => Ok(Readiness::Ready(creds(tenant.as_str(), "rotated"))),
                other => Ok(other),
            }
        }
    }

    fn creds(of: &str, password: &str) -> TenantCredentials {
        let broker = reqwest::Url::parse("amqp://mq:5672").unwrap();
        TenantCredentials::new(&TenantId::parse(of).unwrap(), Password::new(password), &broker)
    }

    fn both_ready() -> Tenants {
        Tenants(HashMap::from([
            (SUB.to_string(), Ok(Readiness::Ready(creds(SUB, "mine")))),
            (OTHER.to_string(), Ok(Readiness::Ready(creds(OTHER, "theirs")))),
        ]))
    }

    const GET_RATE: Rate = Rate {
        max: 120,
        window: Duration::from_secs(60),
    };
    const ROTATE_RATE: Rate = Rate {
        max: 3,
        window: Duration::from_secs(600),
    };

    type Ctx = CredentialsContext<Arc<MemoryJwks>, Tenants, MemoryRates, MemorySessions>;

    fn ctx(key: &TestKey, tenants: Tenants) -> Ctx {
        CredentialsContext {
            verifier: verifier(key, TokenUse::Id),
            sessions: CachedSessions::new(MemorySessions::default()),
            tenants,
            deadline: READINESS_DEADLINE,
            rates: MemoryRates::default(),
            get_rate: GET_RATE,
            rotate_rate: ROTATE_RATE,
        }
    }

    #[tokio::test]
    async fn each_tenant_has_its_own_rate_and_gets_429_with_retry_after() {
        let key = TestKey::generate("k1");
        let ctx = ctx(&key, both_ready());
        let mine = format!("Bearer {}", key.sign(&id_claims()));
        let theirs = format!(
            "Bearer {}",
            key.sign(&{
                let mut c = id_claims();
                c["sub"] = OTHER.into();
                c
            })
        );
        let rotate = |auth: &str| {
            lambda_http::http::Request::builder()
                .method("POST")
                .uri("/tenant/rotate")
                .header(AUTHORIZATION, auth)
                .body(Body::Empty)
                .unwrap()
                .with_raw_http_path("/tenant/rotate")
        };
        for _ in 0..ROTATE_RATE.max {
            assert_eq!(handle(&ctx, rotate(&mine)).await.unwrap().status(), 200);
        }
        let refused = handle(&ctx, rotate(&mine)).await.unwrap();
        assert_eq!(refused.status(), 429);
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=600).contains(&wait), "{wait}");
        assert_eq!(body(&refused)["error"], "rate_limited");
        // Another tenant, and this tenant's reads, are not held back by it.
        assert_eq!(handle(&ctx, rotate(&theirs)).await.unwrap().status(), 200);
        assert_eq!(
            handle(&ctx, get("/tenant", &[&mine])).await.unwrap().status(),
            200
        );
    }

    fn get(path_and_query: &str, auth: &[&str]) -> Request {
        let mut builder = lambda_http::http::Request::builder()
            .method("GET")
            .uri(format!("https://api.example.com{path_and_query}"));
        for a in auth {
            builder = builder.header(AUTHORIZATION, *a);
        }
        let path = path_and_query.split('?').next().unwrap().to_owned();
        builder.body(Body::Empty).unwrap().with_raw_http_path(path)
    }

    fn body(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/tenant"), Ok(Route::GetTenant));
        assert_eq!(route(&Method::GET, "/tenant/"), Ok(Route::GetTenant));
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
            assert_eq!(
                route(&method, "/tenant"),
                Err(NoRoute::MethodNotAllowed { allow: "GET" })
            );
        }
        for path in [
            "/",
            "",
            "/tenants",
            "/tenant/x",
            &format!("/tenant/{OTHER}"),
            "/Tenant",
            "//tenant",
        ] {
            assert_eq!(route(&Method::GET, path), Err(NoRoute::NotFound), "{path:?}");
        }
    }

    #[test]
    fn named_stages_are_stripped_and_nothing_else() {
        assert_eq!(request_path("/tenant", None), "/tenant");
        assert_eq!(request_path("/tenant", Some("$default")), "/tenant");
        assert_eq!(request_path("/prod/tenant", Some("prod")), "/tenant");
        assert_eq!(
            request_path("/production/tenant", Some("prod")),
            "/production/tenant"
        );
        assert_eq!(request_path("/tenant", Some("prod")), "/tenant");
        assert_eq!(request_path("", None), "/");
    }

    #[test]
    fn exactly_one_bearer_token_is_accepted() {
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        assert_eq!(bearer(&headers(&["Bearer a.b.c"])), Ok("a.b.c"));
        assert_eq!(bearer(&headers(&["bearer a-_.b.c"])), Ok("a-_.b.c"));
        assert_eq!(bearer(&headers(&[])), Err(Rejection::Missing));
        assert_eq!(bearer(&headers(&["Bearer "])), Err(Rejection::Missing));
        for bad in [
            &["Basic dXNlcjpwYXNz"][..],
            &["a.b.c"],
            &["Bearer a.b.c,Bearer d.e.f"],
            &["Bearer a.b.c, d.e.f"],
            &["Bearer a.b.c d.e.f"],
            &["Bearer a.b.c", "Bearer d.e.f"],
        ] {
            assert_eq!(bearer(&headers(bad)), Err(Rejection::NotBearer), "{bad:?}");
        }
    }

    #[test]
    fn answers_map_to_codes_and_headers() {
        let ready = respond(&Ok(Readiness::Ready(creds(SUB, "pw"))));
        assert_eq!(ready.status(), 200);
        assert_eq!(ready.headers()["cache-control"], "no-store");
        let b = body(&ready);
        assert_eq!(b["status"], "ready");
        assert_eq!(b["username"], SUB);
        assert_eq!(b["vhost"], SUB);
        assert_eq!(b["password"], "pw");
        assert_eq!(b["amqp_uri"], format!("amqp://{SUB}:pw@mq:5672/{SUB}"));

        let provisioning = respond(&Ok(Readiness::Provisioning));
        assert_eq!(provisioning.status(), 202);
        assert_eq!(provisioning.headers()["retry-after"], "2");
        assert_eq!(body(&provisioning), json!({"status": "provisioning"}));

        let absent = respond(&Ok(Readiness::Absent));
        assert_eq!(absent.status(), 404);
        assert_eq!(body(&absent)["error"], "no_tenant");
        assert!(body(&absent)["reason"].as_str().unwrap().contains("15 minutes"));

        for transient in [
            ReadinessError::TimedOut { ms: 1000 },
            ReadinessError::Changed,
            ReadinessError::Secret("moto is down".into()),
        ] {
            let r = respond(&Err(transient));
            assert_eq!(r.status(), 503);
            assert_eq!(r.headers()["retry-after"], "5");
            assert!(body(&r).get("password").is_none());
        }
        let foreign = respond(&Err(ReadinessError::Foreign("username is `x`".into())));
        assert_eq!(foreign.status(), 500);
        assert!(!String::from_utf8_lossy(foreign.body().as_ref()).contains("username is"));
    }

    #[tokio::test]
    async fn a_user_gets_their_own_credentials_and_only_theirs() {
        let key = TestKey::generate("k1");
        let ctx = ctx(&key, both_ready());
        let token = format!("Bearer {}", key.sign(&id_claims()));
        for path in [
            "/tenant".to_string(),
            format!("/tenant?sub={OTHER}"),
            format!("/tenant?sub={OTHER}&username={OTHER}&vhost={OTHER}"),
        ] {
            let r = handle(&ctx, get(&path, &[&token])).await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let b = body(&r);
            assert_eq!(
                (b["username"].as_str(), b["password"].as_str()),
                (Some(SUB), Some("mine")),
                "{path}"
            );
        }
        let r = handle(&ctx, get(&format!("/tenant/{OTHER}"), &[&token]))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert!(body(&r).get("password").is_none());
    }

    #[tokio::test]
    async fn crafted_authorization_headers_are_refused() {
        let key = TestKey::generate("k1");
        let ctx = ctx(&key, both_ready());
        let mine = key.sign(&id_claims());
        let theirs = key.sign(&{
            let mut c = id_claims();
            c["sub"] = OTHER.into();
            c
        });
        let forged_by_another_key = TestKey::generate("k1").sign(&id_claims());
        let cases: Vec<Vec<String>> = vec![
            vec![],
            vec![format!("Bearer {mine}"), format!("Bearer {theirs}")],
            vec![format!("Bearer {mine},Bearer {theirs}")],
            vec![format!("Basic {mine}")],
            vec![mine.clone()],
            vec![format!("Bearer {forged_by_another_key}")],
        ];
        for auth in cases {
            let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
            let r = handle(&ctx, get("/tenant", &auth)).await.unwrap();
            assert_eq!(r.status(), 401, "{auth:?}");
            assert_eq!(r.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
            let text = String::from_utf8_lossy(r.body().as_ref()).to_string();
            assert!(
                !text.contains(&mine) && !text.contains("mine") && !text.contains("theirs"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_answered_before_authentication() {
        let key = TestKey::generate("k1");
        let ctx = ctx(&key, both_ready());
        let r = handle(&ctx, get("/admin", &[])).await.unwrap();
        assert_eq!(r.status(), 404);
        let post = lambda_http::http::Request::builder()
            .method("POST")
            .uri("/tenant")
            .body(Body::Empty)
            .unwrap()
            .with_raw_http_path("/tenant");
        let r = handle(&ctx, post).await.unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET");
    }

    #[tokio::test]
    async fn unavailable_keys_or_tenant_state_give_503_never_a_credential() {
        let key = TestKey::generate("k1");
        let token = format!("Bearer {}", key.sign(&id_claims()));
        let down = Tenants(HashMap::from([(
            SUB.to_string(),
            Err((|| ReadinessError::TimedOut { ms: 1000 }) as fn() -> ReadinessError),
        )]));
        let r = handle(&ctx(&key, down), get("/tenant", &[&token])).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "5");

        let jwks = Arc::new(MemoryJwks::new(json!({ "keys": [key.jwk] })));
        jwks.set(Err(502));
        let ctx = CredentialsContext {
            verifier: TokenVerifier::new(crate::cognito_jwt::verifier::tests::expected(TokenUse::Id), jwks),
            sessions: CachedSessions::new(MemorySessions::default()),
            tenants: both_ready(),
            deadline: READINESS_DEADLINE,
            rates: MemoryRates::default(),
            get_rate: GET_RATE,
            rotate_rate: ROTATE_RATE,
        };
        let r = handle(&ctx, get("/tenant", &[&token])).await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(body(&r).get("password").is_none());
    }

    /// The fixture shared with `cargo lambda invoke` and SAM: an HTTP API (payload v2) event.
    fn http_api_event(token: &str, stage: &str, raw_path: &str) -> Request {
        let mut event: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../tests/events/tenant-credentials-http-api.json"
        ))
        .unwrap();
        event["headers"]["authorization"] = token.into();
        event["requestContext"]["stage"] = stage.into();
        event["rawPath"] = raw_path.into();
        // The authorizer's claims name another user: the function must not believe them.
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = OTHER.into();
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    #[tokio::test]
    async fn behind_the_http_api_the_verified_token_decides_not_the_authorizer_claims() {
        let key = TestKey::generate("k1");
        let ctx = ctx(&key, both_ready());
        let token = format!("Bearer {}", key.sign(&id_claims()));
        for (stage, raw_path) in [("$default", "/tenant"), ("prod", "/prod/tenant")] {
            let r = handle(&ctx, http_api_event(&token, stage, raw_path))
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{stage} {raw_path}");
            assert_eq!(body(&r)["username"], SUB);
        }
        let r = handle(
            &ctx,
            http_api_event(&token, "prod", &format!("/prod/tenant/{OTHER}")),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 404);
        // API Gateway joins a repeated header with commas.
        let other = key.sign(&{
            let mut c = id_claims();
            c["sub"] = OTHER.into();
            c
        });
        let joined = format!("{token},Bearer {other}");
        let r = handle(&ctx, http_api_event(&joined, "$default", "/tenant"))
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // The fixture's own token is unsigned: refused, as `cargo lambda invoke` shows.
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../tests/events/tenant-credentials-http-api.json"
        ))
        .unwrap();
        let unsigned = fixture["headers"]["authorization"].as_str().unwrap();
        let r = handle(&ctx, http_api_event(unsigned, "$default", "/tenant"))
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    #[test]
    fn server_errors_carry_a_reference_and_nothing_else_changes() {
        let failed = with_reference(unavailable("ask again shortly"), "req-1");
        assert_eq!(failed.status(), 503);
        assert_eq!(body(&failed)["reference"], "req-1");
        assert_eq!(failed.headers()["retry-after"], "5");
        let fine = with_reference(respond(&Ok(Readiness::Provisioning)), "req-2");
        assert!(body(&fine).get("reference").is_none());
    }

    #[tokio::test]
    async fn a_valid_token_of_a_revoked_user_gets_401() {
        let key = TestKey::generate("k1");
        let mut ctx = ctx(&key, both_ready());
        ctx.sessions = CachedSessions::with_ttl(MemorySessions::default(), Duration::ZERO);
        let token = format!("Bearer {}", key.sign(&id_claims()));
        assert_eq!(
            handle(&ctx, get("/tenant", &[&token])).await.unwrap().status(),
            200
        );
        ctx.sessions = CachedSessions::with_ttl(
            MemorySessions {
                revoked: std::sync::Mutex::new([SUB.to_string()].into()),
                ..Default::default()
            },
            Duration::ZERO,
        );
        let refused = handle(&ctx, get("/tenant", &[&token])).await.unwrap();
        assert_eq!(refused.status(), 401);
        assert!(body(&refused).get("password").is_none());
    }
}
