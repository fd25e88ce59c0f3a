//! The handler's routes, answers and refusals, with a token signer and tenants in memory.

use std::collections::HashMap;
use std::sync::Arc;

use lambda_http::http::header::{AUTHORIZATION, HeaderMap};
use lambda_http::http::{HeaderValue, Method};

use super::answers::{unavailable, with_reference};
use super::*;
use crate::cognito_jwt::Rejection;
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
        "../../../../../tests/events/tenant-credentials-http-api.json"
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
        "../../../../../tests/events/tenant-credentials-http-api.json"
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
