//! Broker node loss and partition on the stack's 3-node RabbitMQ cluster (containers, HAProxy in
//! front, `cargo xtask stack up`), during bursts of signups through the real `post-confirmation`
//! binary:
//! - each node in turn is stopped (its container), and started again after the burst;
//! - one node is cut off from its peers (taken off the cluster network, still reachable by
//!   clients) for longer than the cluster takes to notice, then put back.
//!
//! Every signup is answered before Cognito's deadline: done, handed to the provisioning worker,
//! or a clear error naming the step. While cut off, `tgsearch status` asked through the cut-off
//! node names what a minority refuses. Once the node is back, the real `provision-worker`
//! finishes the hand-offs (from a queue of the test's own), failed signups converge when
//! retried, and every tenant is complete and logs in over AMQP on every node's own port with
//! its stored credentials.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::cognito::pool_tenant;

use testkit::cluster::{Cluster, Node};
use testkit::faults::{HandOffQueue, POST_CONFIRMATION_TIMEOUT, check_clear_error};
use testkit::runtime::{Answer, COGNITO_LIMIT, Function, stack_env};
use testkit::stack::{self, Stack};
use testkit::{amqp, events, fresh_tenant};
use tgsearch::TenantId;
use tgsearch::adapters::rabbitmq::AdminCredentials;
use tgsearch::ports::CredentialStore;
use tgsearch::status::tenant_status;

/// Function instances signing up at once (each is one Lambda sandbox: one event at a time).
const INSTANCES: usize = 4;
/// Signups each instance makes once the node is gone.
const AFTER_LOSS: usize = 3;
/// At most this many signups per instance and round.
const MAX_EACH: usize = 60;
/// Signups done before the node is stopped.
const STOP_AFTER: usize = 5;
const RETRIES: usize = 3;

/// How long a node stays cut off: past the cluster's notice (Erlang's net tick, 15 s in the
/// stack), so the majority goes on without it and the node knows it is in a minority.
const PARTITION_HOLD: Duration = Duration::from_secs(30);

/// One fault at a time: the tests of this file share the stack's one cluster.
static ONE_FAULT_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What happens to a node during a burst.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Its container stops, and starts again after the burst.
    Loss,
    /// It leaves the cluster network (clients still reach it) for [`PARTITION_HOLD`].
    Partition,
}

/// The running cluster; fails saying how to start one when the stack runs a single node.
fn cluster(stack: &Stack) -> Cluster {
    let cluster = Cluster::running(&stack::dir()).unwrap_or_else(|e| panic!("{e:#}"));
    cluster.require_nodes(3).unwrap_or_else(|e| panic!("{e:#}"));
    let behind_haproxy = format!(":{}", cluster.management_port);
    assert!(
        stack.var("RABBITMQ_MANAGEMENT_URL").ends_with(&behind_haproxy),
        "the stack's RABBITMQ_MANAGEMENT_URL ({}) is not the cluster's HAProxy (port {}): run `cargo xtask stack up --cluster`",
        stack.var("RABBITMQ_MANAGEMENT_URL"),
        cluster.management_port
    );
    cluster
}

/// Applies (`on: true`) or ends `fault` on `node`, failing the test when it cannot.
async fn set(node: &Node, fault: Fault, on: bool) {
    let node = node.clone();
    tokio::task::spawn_blocking(move || match (fault, on) {
        (Fault::Loss, true) => node.stop(),
        (Fault::Loss, false) => node.start(),
        (Fault::Partition, true) => node.partition(),
        (Fault::Partition, false) => node.heal(),
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// `tgsearch status --sub <tenant>` asked through `node` alone (its own management port).
async fn status_through(stack: &Stack, node: &Node, tenant: &TenantId) -> String {
    let mut cli = tokio::process::Command::new(testkit::runtime::binary("tgsearch"));
    cli.args(["status", "--sub", &tenant.to_string()])
        .envs(stack_env(stack))
        .env("RABBITMQ_MANAGEMENT_URL", node.management_url())
        .env("RUST_LOG", "warn");
    let out = tokio::time::timeout(Duration::from_secs(60), cli.output())
        .await
        .expect("tgsearch status answers within a minute")
        .expect("tgsearch runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until every node runs as a member of one cluster again (after a heal or a restart).
async fn await_whole(cluster: &Cluster) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            let running = cluster
                .ctl(&["cluster_status", "--formatter", "json"])
                .ok()
                .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok())
                .and_then(|s| s["running_nodes"].as_array().map(|a| a.len()))
                .unwrap_or(0);
            if running == cluster.nodes.len() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the cluster did not become whole within two minutes of the fault's end ({running} nodes running)"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .unwrap();
}

/// `uri` with its port replaced by `node`'s own AMQP port.
fn on_node(uri: &str, node: &Node) -> String {
    let mut url = reqwest::Url::parse(uri).expect("amqp_uri is a URL");
    url.set_port(Some(node.amqp_port)).expect("amqp_uri has a host");
    url.to_string()
}

/// The vhost's `cluster_state` (which nodes run it), as the management API reports it.
async fn vhost_state(stack: &Stack, admin: &AdminCredentials, tenant: &TenantId) -> String {
    let url = format!("{}/api/vhosts/{}", stack.var("RABBITMQ_MANAGEMENT_URL"), tenant);
    let answer = reqwest::Client::new()
        .get(url)
        .basic_auth(&admin.username, Some(admin.password.expose()))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match answer {
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .map(|v| v["cluster_state"].to_string())
            .unwrap_or_default(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// A burst's signups with their verdicts, and what `tgsearch status` said through the faulty
/// node while the fault held (partitions only).
struct Round {
    results: Vec<(TenantId, Result<bool, String>)>,
    status_during: Option<String>,
}

/// Signups from every instance at once; `fault` hits `node` after [`STOP_AFTER`] of them, and
/// each instance goes on until it has made [`AFTER_LOSS`] more once the fault holds (and, for a
/// partition, until [`PARTITION_HOLD`] is over; at most [`MAX_EACH`]); the fault ends once they
/// are all answered. Each signup's verdict: `Ok(true)` done in time, `Ok(false)` a clear error in
/// time, `Err` neither.
async fn burst_during(stack: &Stack, functions: &[Arc<Function>], node: &Node, fault: Fault) -> Round {
    let done = Arc::new(AtomicUsize::new(0));
    let gone = Arc::new(AtomicBool::new(false));
    let held = Arc::new(AtomicBool::new(false));
    let burst = functions.iter().map(|function| {
        let function = function.clone();
        let done = done.clone();
        let gone = gone.clone();
        let held = held.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            let mut after_loss = 0;
            while (after_loss < AFTER_LOSS || !held.load(Ordering::SeqCst)) && results.len() < MAX_EACH {
                if gone.load(Ordering::SeqCst) {
                    after_loss += 1;
                }
                let tenant = pool_tenant().await;
                let outcome = function
                    .invoke(&events::signup_for(&tenant), POST_CONFIRMATION_TIMEOUT)
                    .await;
                let verdict = match &outcome.answer {
                    Answer::Ok(_) if outcome.answered_within(COGNITO_LIMIT) => Ok(true),
                    Answer::Ok(_) => Err(format!("{tenant}: answered after {:?}", outcome.elapsed)),
                    _ => check_clear_error(&outcome, COGNITO_LIMIT, &["step `"], &function)
                        .map(|_| false)
                        .map_err(|why| format!("{tenant}: {why}")),
                };
                done.fetch_add(1, Ordering::SeqCst);
                results.push((tenant, verdict));
            }
            results
        })
    });
    let burst = futures::future::join_all(burst);
    let fault_task = async {
        while done.load(Ordering::SeqCst) < STOP_AFTER {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        set(node, fault, true).await;
        gone.store(true, Ordering::SeqCst);
        let mut status_during = None;
        if let Fault::Partition = fault {
            tokio::time::sleep(PARTITION_HOLD).await;
            // Any tenant will do: the broker's part of the answer is what is checked.
            status_during = Some(status_through(stack, node, &fresh_tenant()).await);
        }
        held.store(true, Ordering::SeqCst);
        status_during
    };
    let (results, status_during) = tokio::join!(burst, fault_task);
    set(node, fault, false).await;
    Round {
        results: results.into_iter().flat_map(|r| r.unwrap()).collect(),
        status_during,
    }
}

#[tokio::test]
async fn a_node_lost_during_a_burst_of_signups_leaves_every_tenant_working_on_every_node() {
    let _alone = ONE_FAULT_AT_A_TIME.lock().await;
    let stack = Stack::require();
    let cluster = cluster(&stack);
    let queue = HandOffQueue::create(&stack).await;
    let functions = instances(&stack, &queue);

    // Each node in turn is lost during a burst of its own, and returns after it.
    let mut results: Vec<(TenantId, Result<bool, String>)> = Vec::new();
    for lost in &cluster.nodes {
        let handed_before = queue.all().await.len();
        let round = burst_during(&stack, &functions, lost, Fault::Loss).await;
        report(&round, queue.all().await.len() - handed_before, lost, "was lost");
        results.extend(round.results);
    }
    await_whole(&cluster).await;
    settle_and_check(&stack, &cluster, queue, &functions, results).await;
}

#[tokio::test]
async fn a_node_cut_off_during_a_burst_of_signups_is_named_by_status_and_every_tenant_works_after_healing() {
    let _alone = ONE_FAULT_AT_A_TIME.lock().await;
    let stack = Stack::require();
    let cluster = cluster(&stack);
    let queue = HandOffQueue::create(&stack).await;
    let functions = instances(&stack, &queue);

    let cut_off = cluster.nodes.last().unwrap();
    let round = burst_during(&stack, &functions, cut_off, Fault::Partition).await;
    report(&round, queue.all().await.len(), cut_off, "was cut off");
    let said = round.status_during.clone().unwrap_or_default();
    await_whole(&cluster).await;
    let results = round.results;
    settle_and_check(&stack, &cluster, queue, &functions, results).await;
    assert!(
        said.contains("cut off in a minority")
            && said.contains("refuses to create, change or delete vhosts, users and permissions"),
        "`tgsearch status` through the cut-off node {} did not name what a minority refuses:\n{said}",
        cut_off.name
    );
}

/// Function instances of post-confirmation whose hand-offs go to `queue` (the test's own).
fn instances(stack: &Stack, queue: &HandOffQueue) -> Vec<Arc<Function>> {
    let mut env = stack_env(stack);
    env.insert("PROVISION_QUEUE_URL".into(), queue.url.clone());
    (0..INSTANCES)
        .map(|_| Arc::new(Function::new("post-confirmation", env.clone())))
        .collect()
}

fn report(round: &Round, handed: usize, node: &Node, what: &str) {
    let failed = round
        .results
        .iter()
        .filter(|(_, v)| !matches!(v, Ok(true)))
        .count();
    eprintln!(
        "{} signups, {failed} failed and {handed} were handed off while node {} {what}",
        round.results.len(),
        node.name
    );
}

/// After the fault: the worker finishes the hand-offs, failed signups are retried, reconcile's
/// convergence runs, and every tenant must be complete and usable through every node.
async fn settle_and_check(
    stack: &Stack,
    cluster: &Cluster,
    queue: HandOffQueue,
    functions: &[Arc<Function>],
    results: Vec<(TenantId, Result<bool, String>)>,
) {
    let app = stack.app().await;
    let mut env = stack_env(stack);
    env.insert("PROVISION_QUEUE_URL".into(), queue.url.clone());
    let unclear: Vec<&String> = results.iter().filter_map(|(_, v)| v.as_ref().err()).collect();
    let failed: Vec<&TenantId> = results
        .iter()
        .filter(|(_, v)| matches!(v, Ok(false)))
        .map(|(t, _)| t)
        .collect();

    // The worker finishes what was handed off, as the queue's event source would deliver it.
    let worker = Function::new("provision-worker", env);
    let mut not_converged = Vec::new();
    let handed = queue.all().await;
    for chunk in handed.chunks(10) {
        if let Err(why) = queue.deliver(&worker, chunk).await {
            not_converged.push(format!(
                "the worker did not finish {} hand-offs: {why}",
                chunk.len()
            ));
        }
    }
    queue.delete().await;

    // Failed signups converge when retried (Cognito retries; so would the user).
    let retrier = &functions[0];
    for tenant in &failed {
        let event = events::signup_for(tenant);
        let mut last = None;
        for _ in 0..RETRIES {
            let outcome = retrier.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
            if matches!(outcome.answer, Answer::Ok(_)) {
                last = None;
                break;
            }
            last = outcome.error();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        not_converged.extend(last.map(|e| format!("{tenant}: {e}")));
    }

    // What the scheduled reconcile does for every confirmed user, run at once rather than within
    // 15 minutes: converge. It restarts a vhost the node loss left stopped on a node (a vhost
    // created while that node was leaving the cluster); it changes nothing else.
    let converge = tgsearch::deadline::Deadline::new(Duration::from_secs(30), None);
    for (tenant, _) in &results {
        if let Err(e) = app
            .provisioner
            .converge(tenant, &converge, tgsearch::provision::SecretFirst::Read)
            .await
        {
            not_converged.push(format!("{tenant}: reconcile's convergence failed: {e}"));
        }
    }

    // Every tenant is complete and works on every node with its stored credentials.
    let admin = stack::rabbitmq_admin(&app).await;
    let mut broken = Vec::new();
    for (tenant, _) in &results {
        let status = tenant_status(&app.provisioner, tenant).await.unwrap();
        if !status.is_complete() {
            broken.push(format!("{tenant}: incomplete: {status}"));
            continue;
        }
        let creds = app.provisioner.store.read(tenant).await.unwrap().ours().unwrap();
        for node in &cluster.nodes {
            let uri = on_node(creds.amqp_uri.expose(), node);
            if let Err(e) = amqp::round_trip(&uri, b"after-the-fault").await {
                let state = vhost_state(stack, &admin, tenant).await;
                broken.push(format!(
                    "{tenant}: cannot use its vhost on {} (vhost cluster_state {state}): {e:#}",
                    node.name
                ));
            }
        }
    }

    let deadline = tgsearch::deadline::Deadline::new(Duration::from_secs(60), None);
    for (tenant, _) in &results {
        testkit::cognito::delete_pool_user(tenant).await;
        let _ = app.provisioner.teardown(tenant, &deadline).await;
    }
    assert!(
        unclear.is_empty(),
        "signups neither completed in time nor failed with a clear error:\n{}",
        unclear.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
    assert!(
        not_converged.is_empty(),
        "signups that failed during the fault did not converge on retry:\n{}",
        not_converged.join("\n")
    );
    assert!(
        broken.is_empty(),
        "tenants left inconsistent after the node returned:\n{}",
        broken.join("\n")
    );
}
