//! What the adapters rely on, re-verified on the broker the deployment runs: its version against
//! the manifest's pin, the metadata store, the password hash, the listing and reads without
//! statistics, a vhost's default queue type, starting a vhost on a node, the bootstrap user,
//! and the deprecated features a node logs (at start, and when a client uses one). Against the stack's real cluster, with a plain
//! HTTP client and an AMQP client of its own besides the adapter.

use std::time::Duration;

use serde_json::Value;
use testkit::broker::DeployedBroker;
use testkit::cluster::Cluster;
use testkit::stack::{self, Stack};
use testkit::{amqp, fresh_tenant};
use tgsearch::adapters::rabbitmq::{AdminCredentials, ManagementClient};
use tgsearch::credentials::{Password, generate_password};
use tgsearch::ports::TenantBroker;

fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn admin(stack: &Stack) -> AdminCredentials {
    stack::rabbitmq_admin(&stack.app().await).await
}

/// `GET <management>/api/<path>` as `who`, the JSON and the status.
async fn get(stack: &Stack, who: &AdminCredentials, path: &str) -> (u16, Value) {
    let url = format!("{}/api/{path}", stack.var("RABBITMQ_MANAGEMENT_URL"));
    let answer = reqwest::Client::new()
        .get(url)
        .basic_auth(&who.username, Some(who.password.expose()))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("the management API answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// A fresh tenant's vhost and user, created through the adapter.
async fn tenant_user(broker: &ManagementClient) -> (tgsearch::TenantId, Password) {
    let tenant = fresh_tenant();
    let password = generate_password();
    broker.ensure_vhost(&tenant).await.unwrap();
    broker.ensure_user(&tenant, &password).await.unwrap();
    (tenant, password)
}

#[tokio::test]
async fn the_broker_runs_the_pinned_release_with_its_metadata_in_khepri() {
    let stack = Stack::require();
    let admin = admin(&stack).await;
    let deployed = DeployedBroker::read(&workspace()).unwrap();
    let (_, overview) = get(&stack, &admin, "overview").await;
    let version = overview["rabbitmq_version"].as_str().expect("rabbitmq_version");
    let major_minor = version.rsplit_once('.').map_or(version, |(mm, _)| mm);
    assert_eq!(
        major_minor,
        deployed.major_minor(),
        "the stack runs RabbitMQ {version}, the deployment pins {} ({}): build the broker image from a Debian suite that ships {}.x (TGSEARCH_BROKER_SUITE) or change the pin",
        deployed.image,
        testkit::broker::MANIFEST,
        deployed.major_minor()
    );
    let (_, flags) = get(&stack, &admin, "feature-flags").await;
    let khepri = flags
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "khepri_db"))
        .expect("RabbitMQ 4 knows the khepri_db feature flag");
    assert_eq!(khepri["state"], "enabled", "metadata must be in Khepri: {khepri}");
    // Every node runs the same release.
    let cluster = Cluster::running(&stack::dir()).unwrap();
    let status: Value =
        serde_json::from_str(&cluster.ctl(&["cluster_status", "--formatter", "json"]).unwrap()).unwrap();
    let versions = status["versions"].as_object().expect("versions per node");
    assert_eq!(versions.len(), cluster.nodes.len());
    for (node, v) in versions {
        assert_eq!(v["rabbitmq_version"], version, "{node} runs another release: {v}");
    }
}

#[tokio::test]
async fn the_password_hash_is_the_one_the_adapter_checks() {
    let stack = Stack::require();
    let app = stack.app().await;
    let broker = &app.provisioner.broker;
    let (tenant, password) = tenant_user(broker).await;
    let (_, user) = get(&stack, &admin(&stack).await, &format!("users/{tenant}")).await;
    assert_eq!(
        user["hashing_algorithm"], "rabbit_password_hashing_sha256",
        "{user}"
    );
    let read = broker.get_user(tenant.rabbitmq_user()).await.unwrap().unwrap();
    assert!(read.has_password(&password));
    assert!(!read.has_password(&Password::new("not it")));
    broker.remove_user(&tenant, Some(&password)).await.unwrap();
    broker.remove_vhost(&tenant).await.unwrap();
}

#[tokio::test]
async fn reads_without_statistics_still_report_what_the_adapter_needs() {
    let stack = Stack::require();
    let app = stack.app().await;
    let broker = &app.provisioner.broker;
    let tenant = fresh_tenant();
    broker.ensure_vhost(&tenant).await.unwrap();
    // One vhost read without statistics: its tags and where it runs, node by node.
    let vhost = broker.get_vhost(tenant.vhost()).await.unwrap().unwrap();
    let cluster = Cluster::running(&stack::dir()).unwrap();
    assert_eq!(vhost.tags, ["tgsearch"]);
    assert_eq!(
        vhost.cluster_state.len(),
        cluster.nodes.len(),
        "{:?}",
        vhost.cluster_state
    );
    assert!(
        vhost.cluster_state.values().all(|s| s == "running"),
        "{:?}",
        vhost.cluster_state
    );
    // The listing reconcile uses (the definitions: `/api/vhosts` ignores `columns` on 4.3 and
    // asks every node for every vhost's state) finds it with its description and tags.
    let listed = broker.list_vhosts().await.unwrap();
    let mine = listed.iter().find(|v| v.name == tenant.vhost()).expect("listed");
    assert_eq!(
        (mine.description.as_str(), mine.tags.clone()),
        ("tgsearch", vec!["tgsearch".to_owned()])
    );
    // `columns` is honoured where the adapter asks for one column.
    let (_, nodes) = get(&stack, &admin(&stack).await, "nodes?columns=name,running").await;
    for node in nodes.as_array().unwrap() {
        let keys: Vec<&String> = node.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| ["name", "running", "partitions"].contains(&k.as_str())),
            "{keys:?}"
        );
    }
    assert_eq!(
        broker.cluster_view().await.unwrap().nodes.len(),
        cluster.nodes.len()
    );
    broker.remove_vhost(&tenant).await.unwrap();
}

#[tokio::test]
async fn a_tenants_durable_queue_is_a_quorum_queue_and_a_vhost_starts_on_every_node() {
    let stack = Stack::require();
    let app = stack.app().await;
    let broker = &app.provisioner.broker;
    let (tenant, password) = tenant_user(broker).await;
    broker.ensure_permission(&tenant).await.unwrap();
    let admin = admin(&stack).await;
    let (_, vhost) = get(&stack, &admin, &format!("vhosts/{tenant}?disable_stats=true")).await;
    assert_eq!(vhost["default_queue_type"], "quorum", "{vhost}");
    assert_eq!(vhost["metadata"]["default_queue_type"], "quorum", "{vhost}");

    // What the tenant's backend declares (a durable queue, no type) is replicated.
    let uri = format!(
        "amqp://{}:{}@127.0.0.1:{}/{}",
        tenant,
        password.expose(),
        stack::amqp_port(),
        tenant
    );
    let connection = amqp::connect(&uri).await.unwrap();
    let channel = connection.open_channel(None).await.unwrap();
    channel
        .queue_declare(amqprs::channel::QueueDeclareArguments::durable_client_named(
            "patterns",
        ))
        .await
        .unwrap();
    let _ = connection.close().await;
    let (_, queue) = get(
        &stack,
        &admin,
        &format!("queues/{tenant}/patterns?disable_stats=true"),
    )
    .await;
    assert_eq!(queue["type"], "quorum", "{queue}");
    // And an exclusive one (as the tests' round trip) is a classic queue, and works.
    amqp::round_trip(&uri, b"classic").await.unwrap();

    // Starting a vhost on a node where it runs is a no-op that answers success.
    let cluster = Cluster::running(&stack::dir()).unwrap();
    for node in &cluster.nodes {
        broker.start_vhost(tenant.vhost(), &node.name).await.unwrap();
    }
    broker.remove_user(&tenant, Some(&password)).await.unwrap();
    broker.remove_vhost(&tenant).await.unwrap();
}

#[tokio::test]
async fn only_the_generated_administrator_gets_in() {
    let stack = Stack::require();
    let admin = admin(&stack).await;
    let base = reqwest::Url::parse(stack.var("RABBITMQ_MANAGEMENT_URL")).unwrap();
    let client = |user: &str, password: &str| {
        ManagementClient::new(
            reqwest::Client::new(),
            base.clone(),
            AdminCredentials {
                username: user.into(),
                password: Password::new(password),
            },
        )
    };
    let me = client(&admin.username, admin.password.expose())
        .whoami()
        .await
        .unwrap();
    assert_eq!(me.tags, ["administrator"]);
    // RabbitMQ's guest does not exist (a default user was configured), and the bootstrap user
    // that bootstrap-rabbitmq replaced is gone.
    let (status, users) = get(&stack, &admin, "users?columns=name,tags").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert!(!names.contains(&"guest"), "{names:?}");
    assert!(!names.contains(&"tgsearch-bootstrap"), "{names:?}");
    let err = client("guest", "guest").whoami().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401), "{err}");
}

/// At start (the deployed settings) and since (what the product and the tests' clients did):
/// a deprecated feature is a removal announced.
#[tokio::test]
async fn no_node_logs_a_deprecated_feature() {
    let cluster = Cluster::running(&stack::dir()).unwrap_or_else(|e| panic!("{e:#}"));
    for node in &cluster.nodes {
        let out = std::process::Command::new("docker")
            .args(["logs", &node.container])
            .output()
            .expect("docker runs");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            log.contains("Server startup complete"),
            "{} has not started: {log}",
            node.name
        );
        let deprecated: Vec<&str> = log
            .lines()
            .filter(|l| l.to_lowercase().contains("deprecated"))
            .collect();
        assert!(
            deprecated.is_empty(),
            "{} logged the use of deprecated features:\n{}",
            node.name,
            deprecated.join("\n")
        );
    }
}
