//! The real `tenant-credentials` binary behind cargo-lambda's function-URL emulation, called as
//! a frontend calls it: users signed up and confirmed in moto's Cognito, provisioned by the real
//! `post-confirmation` function with their real `sub`, signed in with InitiateAuth.
//!
//! Needs the local stack (`cargo xtask stack up`). To test a `cargo lambda watch` of your own,
//! set `TGSEARCH_LAMBDA_ENDPOINT` (and `TGSEARCH_LAMBDA_LOG`, its log file) and the
//! `USER_POOL_CLIENT_ID` it was started with.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use testkit::amqp;
use testkit::cognito;
use testkit::frontend::{Answer, Frontend, bearer};
use testkit::stack;
use tgsearch::ports::{CredentialStore, TenantBroker};

/// A pool and an app client of this test's own in moto: its tokens are genuine, just not ours.
const OTHER_POOL: &str = "tgsearch-test-other-pool";
const OTHER_CLIENT: &str = "tgsearch-test-other-client";

fn assert_unauthorized(answer: &Answer, case: &str, secrets: &[&str]) {
    assert_eq!(answer.status, 401, "{case}: {}", answer.text);
    assert_eq!(
        answer.headers["www-authenticate"], r#"Bearer error="invalid_token""#,
        "{case}"
    );
    assert_eq!(answer.json()["error"], "invalid_token", "{case}");
    for secret in secrets {
        assert!(
            !answer.text.contains(secret),
            "{case}: the answer echoes a secret"
        );
    }
}

/// The claims of a token, read without verifying it (to mint variants of a genuine one).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// moto signs every pool's tokens with one RSA key shipped in its package (kid `dummy`); the
/// stack's venv has it. Tokens signed with it are genuine as far as the JWKS can tell.
fn moto_key() -> EncodingKey {
    let python = stack::venv_bin().join("python");
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "from moto.utilities.utils import load_resource\n\
             from joserfc import jwk\n\
             key = jwk.RSAKey.import_key(load_resource('cognitoidp/resources/jwks-private.json'))\n\
             print(key.as_pem(private=True).decode())",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}: run `cargo xtask stack up`", python.display()));
    assert!(
        out.status.success(),
        "cannot read moto's signing key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    EncodingKey::from_rsa_pem(&out.stdout).unwrap()
}

/// An RSA key of this test's own: not the pool's.
fn another_key() -> EncodingKey {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der = pair.as_der().unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der.as_ref())
    );
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(&header, claims, key).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[tokio::test]
async fn a_new_user_polls_until_ready_and_reaches_their_own_vhost() {
    let f = Frontend::new().await;
    let user = f.user("ready").await;
    let tokens = f.sign_in(&user).await;
    assert_eq!(claims_of(&tokens.id)["sub"], user.tenant.as_str());

    // Confirmed, but nothing provisioned yet (the trigger failed, say): 404 and why.
    let none = f.get("/tenant", &[&bearer(&tokens.access)]).await;
    assert_eq!(none.status, 404, "{}", none.text);
    assert_eq!(none.json()["error"], "no_tenant");
    assert!(none.json()["reason"].as_str().unwrap().contains("15 minutes"));

    // Provisioning under way: the secret and the vhost exist, the rest does not yet.
    let app = f.stack.app().await;
    let candidate = tgsearch::credentials::TenantCredentials::new(
        &user.tenant,
        tgsearch::credentials::generate_password(),
        &app.provisioner.amqp_url,
    );
    app.provisioner
        .store
        .create_or_read(&user.tenant, &candidate)
        .await
        .unwrap();
    app.provisioner.broker.ensure_vhost(&user.tenant).await.unwrap();
    let pending = f.get("/tenant", &[&bearer(&tokens.access)]).await;
    assert_eq!(pending.status, 202, "{}", pending.text);
    assert_eq!(pending.json(), json!({"status": "provisioning"}));
    assert_eq!(pending.headers["retry-after"], "2");

    // post-confirmation completes it: the user's own connection, never cached.
    f.provision(&user).await;
    let ready = f.get("/tenant", &[&bearer(&tokens.access)]).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.headers["cache-control"], "no-store");
    let body = ready.json();
    let stored = app
        .provisioner
        .store
        .read(&user.tenant)
        .await
        .unwrap()
        .ours()
        .unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["username"], user.tenant.as_str());
    assert_eq!(body["vhost"], user.tenant.as_str());
    assert_eq!(body["password"], stored.password.expose());
    assert_eq!(body["amqp_uri"], stored.amqp_uri.expose());

    // What the frontend does next: connect with the amqp_uri, to its own vhost only.
    let uri = body["amqp_uri"].as_str().unwrap();
    let message = format!("hello from {}", user.tenant);
    let back = amqp::round_trip(uri, message.as_bytes()).await.unwrap();
    assert_eq!(back, message.as_bytes());
    assert!(amqp::connect_to_vhost(uri, "/").await.is_err());

    // Nothing secret reaches the function's log; the tenant it served does.
    let log = std::fs::read_to_string(stack::lambda_log()).unwrap_or_default();
    assert!(
        log.contains(user.tenant.as_str()),
        "the log at {} should name the tenant served (set {} for your own emulator)",
        stack::lambda_log().display(),
        stack::LAMBDA_LOG_VAR
    );
    for secret in [
        tokens.id.as_str(),
        tokens.access.as_str(),
        stored.password.expose(),
    ] {
        assert!(!log.contains(secret), "a token or password leaked into the log");
    }
    f.remove(&user).await;
}

#[tokio::test]
async fn tokens_that_are_not_this_apps_access_tokens_get_401() {
    let f = Frontend::new().await;
    let user = f.user("tokens").await;
    f.provision(&user).await;
    let tokens = f.sign_in(&user).await;
    // The control: the genuine access token works.
    let ok = f.get("/tenant", &[&bearer(&tokens.access)]).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let password = ok.json()["password"].as_str().unwrap().to_owned();

    // Genuine tokens, just not ours: another pool, another app client of our pool.
    let other_pool = cognito::find_or_create_pool(&f.cognito, OTHER_POOL)
        .await
        .unwrap();
    let other_pool_client = cognito::find_or_create_client(&f.cognito, &other_pool, OTHER_CLIENT)
        .await
        .unwrap();
    let stranger = cognito::sign_up_confirmed(&f.cognito, &other_pool, &other_pool_client, "stranger")
        .await
        .unwrap();
    let from_other_pool = cognito::sign_in(&f.cognito, &other_pool_client, &stranger.username)
        .await
        .unwrap();
    let other_client = cognito::find_or_create_client(&f.cognito, &f.pool, OTHER_CLIENT)
        .await
        .unwrap();
    let from_other_client = cognito::sign_in(&f.cognito, &other_client, &user.username)
        .await
        .unwrap();
    assert_eq!(claims_of(&from_other_client.id)["sub"], user.tenant.as_str());

    // Minted from the genuine token: with moto's own key (valid signature), and with ours.
    let moto = moto_key();
    let genuine = claims_of(&tokens.access);
    let mut expired = genuine.clone();
    expired["iat"] = (now() - 7200).into();
    expired["exp"] = (now() - 3600).into();
    let mut wrong_audience = genuine.clone();
    wrong_audience["client_id"] = "someone-elses-app-client".into();
    let mut wrong_issuer = genuine.clone();
    wrong_issuer["iss"] = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_NotOurPool".into();
    let mut refresh_use = genuine.clone();
    refresh_use["token_use"] = "refresh".into();
    let stranger_key = another_key();
    let parts: Vec<&str> = tokens.access.split('.').collect();
    let mut someone_else = genuine.clone();
    someone_else["sub"] = "00000000-0000-4000-8000-000000000000".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(someone_else.to_string()),
        parts[2]
    );

    // The control for the minted ones: unchanged claims signed with moto's key pass every check
    // of the signature and the claims. Over HTTP Cognito, which never issued that token, refuses
    // it too (GetUser): only tokens Cognito issued and still honours get through.
    let config = tgsearch::config::TenantCredentialsConfig::from(&f.stack.lookup()).unwrap();
    let verifier = tgsearch::cognito_jwt::TokenVerifier::new(
        config.expected(),
        tgsearch::cognito_jwt::HttpJwks::new(tgsearch::app::http_client().unwrap(), config.jwks_url.as_str()),
    );
    let reminted = sign(&moto, "dummy", &genuine);
    assert_eq!(verifier.verify(&reminted).await.unwrap(), user.tenant);

    let cases: Vec<(&str, Vec<String>)> = vec![
        ("no token", vec![]),
        ("empty bearer", vec!["Bearer ".into()]),
        ("not a JWT", vec![bearer("hello")]),
        ("expired", vec![bearer(&sign(&moto, "dummy", &expired))]),
        (
            "signed by another key, the pool's kid",
            vec![bearer(&sign(&stranger_key, "dummy", &genuine))],
        ),
        (
            "signed by another key, its own kid",
            vec![bearer(&sign(&stranger_key, "mine", &genuine))],
        ),
        ("another pool", vec![bearer(&from_other_pool.access)]),
        (
            "another pool's issuer",
            vec![bearer(&sign(&moto, "dummy", &wrong_issuer))],
        ),
        ("another app client", vec![bearer(&from_other_client.access)]),
        (
            "another audience",
            vec![bearer(&sign(&moto, "dummy", &wrong_audience))],
        ),
        ("the ID token", vec![bearer(&tokens.id)]),
        (
            "another token_use",
            vec![bearer(&sign(&moto, "dummy", &refresh_use))],
        ),
        ("payload swapped", vec![bearer(&tampered)]),
        ("re-signed, never issued by Cognito", vec![bearer(&reminted)]),
        ("not Bearer", vec![format!("Basic {}", tokens.access)]),
    ];
    for (case, authorization) in &cases {
        let authorization: Vec<&str> = authorization.iter().map(String::as_str).collect();
        let answer = f.get("/tenant", &authorization).await;
        assert_unauthorized(&answer, case, &[&tokens.access, &password]);
    }

    let log = std::fs::read_to_string(stack::lambda_log()).unwrap_or_default();
    assert!(
        log.contains("token refused"),
        "the log at {} shows no refusal",
        stack::lambda_log().display()
    );
    for (case, authorization) in &cases {
        for value in authorization {
            let token = value.rsplit(' ').next().unwrap();
            assert!(
                token.len() < 16 || !log.contains(token),
                "{case}: the token reached the log"
            );
        }
    }
    assert!(!log.contains(&password), "the password reached the log");
    f.remove(&user).await;
    cognito::delete_user(&f.cognito, &other_pool, &stranger.username)
        .await
        .unwrap();
}

#[tokio::test]
async fn crafted_requests_never_return_another_tenants_credentials() {
    let f = Frontend::new().await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    f.provision(&alice).await;
    f.provision(&bob).await;
    let (a, b) = (f.sign_in(&alice).await, f.sign_in(&bob).await);
    let bobs = f.get("/tenant", &[&bearer(&b.access)]).await;
    assert_eq!(bobs.status, 200, "{}", bobs.text);
    let bobs_password = bobs.json()["password"].as_str().unwrap().to_owned();
    let bob_sub: &str = bob.tenant.as_str();

    // Naming Bob in the query: Alice still gets Alice's.
    for query in [
        format!("/tenant?sub={bob_sub}"),
        format!("/tenant?sub={bob_sub}&username={bob_sub}&vhost={bob_sub}&tenant={bob_sub}"),
        format!("/tenant/?sub={bob_sub}"),
    ] {
        let answer = f.get(&query, &[&bearer(&a.access)]).await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.text);
        assert_eq!(answer.json()["username"], alice.tenant.as_str(), "{query}");
        assert!(
            !answer.text.contains(bob_sub) && !answer.text.contains(&bobs_password),
            "{query}"
        );
    }
    // Naming Bob in the path: no such resource.
    for path in [
        format!("/tenant/{bob_sub}"),
        format!("/{bob_sub}/tenant"),
        format!("/tenants/{bob_sub}"),
    ] {
        let answer = f.get(&path, &[&bearer(&a.access)]).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.text);
        assert!(!answer.text.contains(&bobs_password), "{path}");
    }
    // Two tokens at once. API Gateway and function URLs hand a repeated header to the function
    // joined with commas, and that is refused rather than guessed at.
    let joined = format!("{},{}", bearer(&a.access), bearer(&b.access));
    let answer = f.get("/tenant", &[&joined]).await;
    assert_unauthorized(&answer, "joined", &[&bobs_password, &a.id, &b.id]);
    let joined_spaced = format!("{}, {}", bearer(&a.access), b.access);
    let answer = f.get("/tenant", &[&joined_spaced]).await;
    assert_unauthorized(
        &answer,
        "joined, second without scheme",
        &[&bobs_password, &a.id, &b.id],
    );
    // cargo-lambda's emulator passes only the first of two separate headers: whatever comes
    // back is then the first token's own tenant, never the other one's.
    for (first, second, owner) in [(&a, &b, &alice), (&b, &a, &bob)] {
        let answer = f
            .get("/tenant", &[&bearer(&first.access), &bearer(&second.access)])
            .await;
        if answer.status == 200 {
            assert_eq!(answer.json()["username"], owner.tenant.as_str());
        } else {
            assert_unauthorized(&answer, "two headers", &[&bobs_password]);
        }
    }
    // Other methods do nothing.
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let answer = f.request(method.clone(), "/tenant", &[&bearer(&a.access)]).await;
        assert_eq!(answer.status, 405, "{method}: {}", answer.text);
        assert_eq!(answer.headers["allow"], "GET");
    }
    f.remove(&alice).await;
    f.remove(&bob).await;
}

/// The JWKS adapter against moto's real endpoint, and against endpoints that fail.
#[tokio::test]
async fn the_pools_keys_come_from_moto_and_failures_are_not_rejections() {
    use tgsearch::cognito_jwt::{HttpJwks, JwksError, TokenVerifier, VerifyError};
    use tgsearch::config::TenantCredentialsConfig;

    let f = Frontend::new().await;
    let config = TenantCredentialsConfig::from(&f.stack.lookup()).expect("the stack's settings");
    let http = tgsearch::app::http_client().unwrap();
    let verifier = TokenVerifier::new(
        config.expected(),
        HttpJwks::new(http.clone(), config.jwks_url.as_str()),
    );
    assert_eq!(verifier.prefetch().await.unwrap(), 1, "moto publishes one key");
    let user = f.user("jwks").await;
    let tokens = f.sign_in(&user).await;
    assert_eq!(verifier.verify(&tokens.access).await.unwrap(), user.tenant);

    // Nothing listens there / not a JWKS: the keys are unavailable, which is not a verdict on
    // the token (the function answers 503, not 401).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let not_there = TokenVerifier::new(config.expected(), HttpJwks::new(http.clone(), url));
    let err = not_there.verify(&tokens.access).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::KeysUnavailable(JwksError::Http { .. })),
        "{err}"
    );
    let moto_root = format!("{}/", f.stack.var("AWS_ENDPOINT_URL"));
    let not_jwks = TokenVerifier::new(config.expected(), HttpJwks::new(http, moto_root));
    let err = not_jwks.verify(&tokens.access).await.unwrap_err();
    assert!(matches!(err, VerifyError::KeysUnavailable(_)), "{err}");
    cognito::delete_user(&f.cognito, &f.pool, &user.username)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rotation_refuses_the_old_password_and_hands_out_a_working_new_one() {
    let f = Frontend::new().await;
    let user = f.user("rotate").await;
    let tokens = f.sign_in(&user).await;
    // Not ready yet: nothing to rotate.
    let early = f
        .request(
            reqwest::Method::POST,
            "/tenant/rotate",
            &[&bearer(&tokens.access)],
        )
        .await;
    assert_eq!(early.status, 404, "{}", early.text);
    f.provision(&user).await;
    let before = f.get("/tenant", &[&bearer(&tokens.access)]).await.json();
    let old_uri = before["amqp_uri"].as_str().unwrap().to_owned();
    // An open session with the old password (a leaked one, say).
    let session = amqp::connect(&old_uri).await.unwrap();

    let rotated = f
        .request(
            reqwest::Method::POST,
            "/tenant/rotate",
            &[&bearer(&tokens.access)],
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_eq!(rotated.headers["cache-control"], "no-store");
    let after = rotated.json();
    assert_ne!(after["password"], before["password"]);
    let new_uri = after["amqp_uri"].as_str().unwrap().to_owned();

    // RabbitMQ: the old password is refused, the new one works, the old session is closed.
    assert!(
        amqp::connect(&old_uri).await.is_err(),
        "the old password still logs in"
    );
    amqp::round_trip(&new_uri, b"after rotation").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !session.is_open(),
        "the session opened with the old password is still open"
    );
    // Secrets Manager, GET /tenant and the Kubernetes Secret agree on the new one.
    let app = f.stack.app().await;
    let stored = app
        .provisioner
        .store
        .read(&user.tenant)
        .await
        .unwrap()
        .ours()
        .unwrap();
    assert_eq!(stored.amqp_uri.expose(), new_uri);
    assert_eq!(f.get("/tenant", &[&bearer(&tokens.access)]).await.json(), after);
    let (secret, _, deployment) = app.provisioner.backend.get_all(&user.tenant).await.unwrap();
    assert_eq!(secret.unwrap().data.unwrap()["AMQP_URI"].0, new_uri.as_bytes());
    let annotations = deployment
        .unwrap()
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    let current = app
        .provisioner
        .store
        .versions(&user.tenant)
        .await
        .unwrap()
        .ours()
        .unwrap();
    assert!(current.pending.is_none(), "nothing left pending");
    assert_eq!(
        annotations.get("tgsearch.io/credentials-version"),
        Some(&current.current.version),
        "the backend is restarted onto the new version: {annotations:?}"
    );
    // Repeating it is safe: another new password, still one working tenant.
    let again = f
        .request(
            reqwest::Method::POST,
            "/tenant/rotate",
            &[&bearer(&tokens.access)],
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    amqp::round_trip(again.json()["amqp_uri"].as_str().unwrap(), b"again")
        .await
        .unwrap();
    assert!(
        tgsearch::status::tenant_status(&app.provisioner, &user.tenant)
            .await
            .unwrap()
            .is_complete()
    );
    f.remove(&user).await;
}
