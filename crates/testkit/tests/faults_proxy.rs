//! The fault proxy itself (`testkit::faults`), in front of the stack's real servers: it passes
//! what it should, and each fault is what a client really sees (a hang, a reset, a refused
//! connection, a Kubernetes `Status`, AWS throttling the SDK recognises).

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::retry::RetryConfig;
use testkit::faults::{Canned, Proxy, Rule, TestCa};
use testkit::stack::{self, Stack};
use tgsearch::adapters::rabbitmq::AdminCredentials;

async fn admin(stack: &Stack) -> AdminCredentials {
    stack::rabbitmq_admin(&stack.app().await).await
}

async fn whoami(http: &reqwest::Client, proxy: &Proxy, admin: &AdminCredentials) -> reqwest::Result<u16> {
    http.get(format!("{}/api/whoami", proxy.url()))
        .basic_auth(&admin.username, Some(admin.password.expose()))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn an_http_proxy_passes_through_answers_by_rule_and_records_every_request() {
    let stack = Stack::require();
    let admin = admin(&stack).await;
    let proxy = Proxy::http(stack.var("RABBITMQ_MANAGEMENT_URL"), None)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    assert_eq!(whoami(&http, &proxy, &admin).await.unwrap(), 200);
    proxy.answer(
        Rule::on("GET", "/api/whoa*")
            .times(2)
            .respond(Canned::status(503).header("retry-after", "2")),
    );
    assert_eq!(whoami(&http, &proxy, &admin).await.unwrap(), 503);
    assert_eq!(whoami(&http, &proxy, &admin).await.unwrap(), 503);
    assert_eq!(whoami(&http, &proxy, &admin).await.unwrap(), 200);
    let seen: Vec<Option<u16>> = proxy.requests().iter().map(|r| r.injected).collect();
    assert_eq!(seen, [None, Some(503), Some(503), None]);
    assert!(proxy.requests().iter().all(|r| r.path == "/api/whoami"));
}

#[tokio::test]
async fn connection_faults_are_what_a_client_sees() {
    let stack = Stack::require();
    let admin = admin(&stack).await;
    let proxy = Proxy::http(stack.var("RABBITMQ_MANAGEMENT_URL"), None)
        .await
        .unwrap();

    // Black hole: accepted, never answered.
    proxy.black_hole();
    let err = whoami(&reqwest::Client::new(), &proxy, &admin).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        proxy.connections() >= 1,
        "the black hole must accept the connection"
    );

    // A one-off reset: the next request dies, the one after passes.
    proxy.heal().await.unwrap();
    proxy.reset_next(1);
    let err = whoami(&reqwest::Client::new(), &proxy, &admin).await.unwrap_err();
    assert!(!err.is_timeout(), "a reset is not a hang: {err:?}");
    assert_eq!(
        whoami(&reqwest::Client::new(), &proxy, &admin).await.unwrap(),
        200
    );

    // Stopped: refused, on the same port, until started again.
    proxy.stop().await;
    let refused = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    proxy.start().await.unwrap();
    assert_eq!(
        whoami(&reqwest::Client::new(), &proxy, &admin).await.unwrap(),
        200
    );

    // Latency on every chunk: a round trip takes at least a request and a response delay.
    proxy.latency(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(
        whoami(&reqwest::Client::new(), &proxy, &admin).await.unwrap(),
        200
    );
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_rule_can_stop_the_server_mid_request() {
    let stack = Stack::require();
    let admin = admin(&stack).await;
    let proxy = Proxy::http(stack.var("RABBITMQ_MANAGEMENT_URL"), None)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    proxy.answer(Rule::on("GET", "/api/whoami").times(1).stop_server());
    let err = whoami(&http, &proxy, &admin).await.unwrap_err();
    assert!(
        !err.is_timeout(),
        "the request must be cut, not left hanging: {err:?}"
    );
    assert!(tokio::net::TcpStream::connect(proxy.addr()).await.is_err());
    proxy.start().await.unwrap();
    assert_eq!(whoami(&http, &proxy, &admin).await.unwrap(), 200);
}

#[tokio::test]
async fn a_tcp_proxy_carries_amqp_and_cuts_it() {
    let stack = Stack::require();
    let admin = admin(&stack).await;
    let broker = reqwest::Url::parse(stack.var("RABBITMQ_AMQP_URL")).unwrap();
    let upstream = format!("{}:{}", broker.host_str().unwrap(), broker.port().unwrap_or(5672));
    let proxy = Proxy::tcp(&upstream).await.unwrap();
    let uri = format!(
        "amqp://{}:{}@{}",
        admin.username,
        admin.password.expose(),
        proxy.addr()
    );
    let echoed = testkit::amqp::round_trip(&uri, b"through the proxy")
        .await
        .unwrap();
    assert_eq!(echoed, b"through the proxy");
    proxy.stop().await;
    assert!(testkit::amqp::connect(&uri).await.is_err());
}

#[tokio::test]
async fn an_https_proxy_serves_the_test_ca_and_answers_kubernetes_status_objects() {
    let stack = Stack::require();
    let standin_ca = std::fs::read_to_string(stack::kube_ca_file())
        .expect("the stand-in's CA: run `cargo xtask stack up`");
    let ca = TestCa::new().unwrap();
    let proxy = Proxy::https(stack.var("EKS_CLUSTER_ENDPOINT"), Some(&standin_ca), &ca)
        .await
        .unwrap();
    assert!(proxy.url().starts_with("https://"));
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    // Forwarded over TLS to the stand-in, which refuses a request without a token.
    let answer = trusting
        .get(format!("{}/api/v1/namespaces", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);

    proxy.answer(Rule::on("GET", "/api/v1/namespaces").respond(Canned::kube(429)));
    let answer = trusting
        .get(format!("{}/api/v1/namespaces", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 429);
    assert_eq!(answer.headers()["retry-after"], "1");
    let status: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status = answer.json().await.unwrap();
    assert_eq!(status.reason.as_deref(), Some("TooManyRequests"));
    assert_eq!(status.code, Some(429));
    assert_eq!(status.details.and_then(|d| d.retry_after_seconds), Some(1));

    // TLS is real: a client that does not trust the test CA refuses the proxy.
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{}/version", proxy.url()))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn aws_throttling_is_what_the_sdk_knows_as_throttling() {
    let stack = Stack::require();
    let proxy = Proxy::http(stack.var("AWS_ENDPOINT_URL"), None).await.unwrap();
    let config = aws_sdk_secretsmanager::config::Builder::from(&stack.aws().await)
        .endpoint_url(proxy.url())
        .retry_config(RetryConfig::disabled())
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    proxy.answer(
        Rule::on("POST", "/")
            .header("x-amz-target", "secretsmanager.*")
            .times(1)
            .respond(Canned::aws_throttling()),
    );
    let err = client
        .get_secret_value()
        .secret_id(stack::ADMIN_SECRET_ID)
        .send()
        .await
        .unwrap_err();
    use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
    assert_eq!(err.code(), Some("ThrottlingException"), "{err:?}");
    // The next call passes through to moto.
    client
        .get_secret_value()
        .secret_id(stack::ADMIN_SECRET_ID)
        .send()
        .await
        .unwrap();
    assert_eq!(
        proxy.requests()[0].target.as_deref(),
        Some("secretsmanager.GetSecretValue")
    );
}
