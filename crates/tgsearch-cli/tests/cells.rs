//! Cells on real servers: the stack's two brokers and two Kubernetes API stand-ins
//! (`cargo xtask stack up --cells 2`), a registry and a map of each test's own in moto's
//! DynamoDB, the real post-confirmation binary, and the `tgsearch` CLI.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{json, pool, text, tgsearch_with, user};
use futures::StreamExt;
use testkit::fresh_tenant;
use testkit::runtime::{Answer, Function, stack_env};
use testkit::stack::{LocalCell, Stack, local_cells};
use tgsearch::TenantId;
use tgsearch::adapters::cognito::CognitoDirectory;
use tgsearch::app::{AppContext, http_client};
use tgsearch::cells::reconcile::reconcile_cells;
use tgsearch::cells::{CellId, CellRegistry, CellState, TenantCells};
use tgsearch::config::CellTables;
use tgsearch::deadline::Deadline;
use tgsearch::ports::CredentialStore;
use tgsearch::readiness::{Readiness, TenantReadiness};
use tgsearch::reconcile::Options;
use tgsearch::status::tenant_status;

/// The cell tests share cell `b`'s broker (one stops it): one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A registry and a map of the test's own, over the stack's two cells.
struct Rig {
    stack: Stack,
    aws: aws_config::SdkConfig,
    tables: CellTables,
    app: AppContext,
    cells: [LocalCell; 2],
}

fn answers(url: &str) -> bool {
    let url = reqwest::Url::parse(url).unwrap();
    let addr = url.socket_addrs(|| None).unwrap()[0];
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

impl Rig {
    /// Cells `a` and `b` with these capacities and states.
    async fn new(a: (u32, &str), b: (u32, &str)) -> Self {
        let stack = Stack::require();
        let cells = local_cells();
        for cell in &cells {
            assert!(
                answers(&cell.management_url()) && answers(&cell.kube_endpoint()),
                "cell {}'s broker ({}) or cluster ({}) does not answer: start both cells with `cargo xtask stack up --cells 2` (`cargo xtask test` does)",
                cell.name,
                cell.management_url(),
                cell.kube_endpoint()
            );
        }
        let aws = stack.aws().await;
        let id = fresh_tenant();
        let suffix = &id.as_str()[..8];
        let tables = CellTables {
            cells: format!("tgsearch-test-cells-{suffix}"),
            map: format!("tgsearch-test-tenant-cells-{suffix}"),
        };
        testkit::cells::create_tables(&aws, &tables.cells, &tables.map)
            .await
            .unwrap();
        for (cell, (capacity, state)) in cells.iter().zip([a, b]) {
            let mut fields = cell.fields(capacity);
            fields.insert("state".into(), state.into());
            testkit::cells::register(&aws, &tables.cells, &fields)
                .await
                .unwrap();
        }
        let mut config = stack.config();
        config.cell_tables = Some(tables.clone());
        let app = AppContext::new(config, &aws, http_client().unwrap())
            .await
            .unwrap();
        Self {
            stack,
            aws,
            tables,
            app,
            cells,
        }
    }

    fn registry(&self) -> &tgsearch::adapters::cell_registry::DynamoCells {
        self.app.cells.registry().unwrap()
    }

    /// Tenants per cell, as the registry counts them.
    async fn counts(&self) -> BTreeMap<String, u32> {
        let cells = self.registry().cells().await.unwrap();
        cells.iter().map(|c| (c.id.to_string(), c.tenants)).collect()
    }

    /// The map's entries per cell.
    async fn mapped(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut by_cell: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (sub, cell) in self.registry().assignments().await.unwrap() {
            by_cell.entry(cell.to_string()).or_default().insert(sub);
        }
        by_cell
    }

    async fn set_state(&self, cell: &str, state: CellState) {
        let id = CellId::parse(cell).unwrap();
        self.registry().set_state(&id, state).await.unwrap();
    }

    /// Places and provisions, as post-confirmation does; returns the cell.
    async fn sign_up(&self, tenant: &TenantId) -> String {
        let at = self.app.cells.place(tenant).await.unwrap();
        let deadline = Deadline::new(Duration::from_secs(60), None);
        at.provisioner.provision(tenant, &deadline).await.unwrap();
        at.cell.unwrap().to_string()
    }

    /// The tgsearch CLI with this rig's tables.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        tgsearch_with(
            &[
                ("CELLS_TABLE", &self.tables.cells),
                ("TENANT_CELLS_TABLE", &self.tables.map),
            ],
            args,
        )
    }

    /// The environment of a function that uses this rig's tables.
    fn function_env(&self) -> BTreeMap<String, String> {
        let mut env = stack_env(&self.stack);
        env.insert("CELLS_TABLE".into(), self.tables.cells.clone());
        env.insert("TENANT_CELLS_TABLE".into(), self.tables.map.clone());
        env
    }

    /// Whether the broker of `cell` holds the tenant's vhost, and its cluster the Deployment.
    async fn holds(&self, cell: &LocalCell, tenant: &TenantId) -> (bool, bool) {
        let id = CellId::parse(cell.name).unwrap();
        let p = self.app.cells.provisioner_named(&id).await.unwrap();
        let status = tenant_status(&p, tenant).await.unwrap();
        let state = |name: &str| {
            status
                .resources
                .iter()
                .find(|r| r.resource.as_str() == name)
                .map(|r| r.state == tgsearch::status::State::Ok)
                .unwrap()
        };
        (state("vhost"), state("deployment"))
    }

    /// Removes a tenant from its cell and the map.
    async fn tear_down(&self, tenant: &TenantId) {
        let at = self.app.cells.locate(tenant).await.unwrap();
        let deadline = Deadline::new(Duration::from_secs(60), None);
        at.provisioner.teardown(tenant, &deadline).await.unwrap();
        if let Some(cell) = &at.cell {
            self.app.cells.forget(tenant, cell).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_100_never_overfills_a_cell_and_every_tenant_works_in_its_own_cell_only() {
    let _one = SERIAL.lock().await;
    let rig = Arc::new(Rig::new((30, "open"), (1000, "open")).await);
    let tenants: Vec<TenantId> = (0..100).map(|_| fresh_tenant()).collect();
    // All 100 placed at once (each one conditional transaction), then provisioned.
    let placed: Vec<String> = futures::future::join_all(tenants.iter().map(|t| {
        let rig = rig.clone();
        async move { rig.app.cells.place(t).await.unwrap().cell.unwrap().to_string() }
    }))
    .await;
    let counts = rig.counts().await;
    assert!(counts["a"] <= 30, "cell a over its capacity of 30: {counts:?}");
    assert_eq!(counts["a"] + counts["b"], 100, "{counts:?}");
    let mapped = rig.mapped().await;
    assert_eq!(mapped.get("a").map_or(0, BTreeSet::len) as u32, counts["a"]);
    assert_eq!(mapped.get("b").map_or(0, BTreeSet::len) as u32, counts["b"]);
    // A repeated placement (a retried signup) finds the same cell and counts nothing twice.
    let again = rig.app.cells.place(&tenants[0]).await.unwrap();
    assert_eq!(again.cell.unwrap().as_str(), placed[0]);
    assert_eq!(rig.counts().await, counts);

    let done: Vec<()> = futures::stream::iter(tenants.iter())
        .map(|t| {
            let rig = rig.clone();
            async move {
                rig.sign_up(t).await;
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(done.len(), 100);
    // Each tenant: usable over AMQP at the broker its amqp_uri names, and present only in its
    // own cell's broker and cluster.
    let checks: Vec<()> = futures::stream::iter(tenants.iter().zip(&placed))
        .map(|(t, cell)| {
            let rig = rig.clone();
            async move {
                let own = rig.cells.iter().find(|c| c.name == cell).unwrap();
                let other = rig.cells.iter().find(|c| c.name != cell).unwrap();
                let creds = rig.app.provisioner.store.read(t).await.unwrap().ours().unwrap();
                assert!(
                    creds.amqp_uri.expose().contains(&format!(":{}/", own.amqp_port)),
                    "{t} in cell {cell}: amqp_uri names another broker"
                );
                testkit::amqp::round_trip(creds.amqp_uri.expose(), t.as_str().as_bytes())
                    .await
                    .unwrap();
                assert_eq!(
                    rig.holds(own, t).await,
                    (true, true),
                    "{t} incomplete in its cell {cell}"
                );
                assert_eq!(
                    rig.holds(other, t).await,
                    (false, false),
                    "{t} found in cell {}",
                    other.name
                );
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(checks.len(), 100);
    // `cells list`, as an operator reads it.
    let list = json(&rig.cli(&["--json", "cells", "list"]));
    let a = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cell"] == "a")
        .unwrap();
    assert_eq!(a["tenants"], counts["a"]);
    assert_eq!(a["capacity"], 30);
    assert_eq!(a["healthy"], true);
    for t in &tenants {
        rig.tear_down(t).await;
    }
    assert_eq!(rig.counts().await.values().sum::<u32>(), 0);
}

#[tokio::test]
async fn a_draining_cell_receives_no_one_and_an_opened_one_does_again() {
    let _one = SERIAL.lock().await;
    let rig = Rig::new((1000, "open"), (1000, "open")).await;
    let drained = rig.cli(&["cells", "drain", "a"]);
    assert!(drained.status.success(), "{}", text(&drained));
    for _ in 0..10 {
        let t = fresh_tenant();
        let at = rig.app.cells.place(&t).await.unwrap();
        assert_eq!(at.cell.unwrap().as_str(), "b");
    }
    assert_eq!(rig.counts().await["a"], 0);
    let opened = rig.cli(&["cells", "open", "a"]);
    assert!(opened.status.success(), "{}", text(&opened));
    let capped = rig.cli(&["cells", "set-capacity", "b", "10"]);
    assert!(capped.status.success(), "{}", text(&capped));
    // b is full now: the next ones go to a.
    for _ in 0..3 {
        let t = fresh_tenant();
        let at = rig.app.cells.place(&t).await.unwrap();
        assert_eq!(at.cell.unwrap().as_str(), "a");
    }
    rig.set_state("a", CellState::Closed).await;
    let t = fresh_tenant();
    let err = rig
        .app
        .cells
        .place(&t)
        .await
        .err()
        .expect("no cell can take a tenant");
    let text = err.to_string();
    assert!(
        text.contains("a: closed") && text.contains("b: full (10/10)"),
        "{text}"
    );
    // A bad capacity is refused, naming what is wrong.
    let amazon = rig.cli(&["cells", "set-capacity", "nope!", "10"]);
    assert!(!amazon.status.success() && common::text(&amazon).contains("not a cell name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cells_broker_stopped_signups_go_to_the_other_in_time_and_its_tenants_are_reported_not_removed()
 {
    let _one = SERIAL.lock().await;
    let rig = Rig::new((10, "draining"), (1000, "open")).await;
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&rig.aws);
    let pool = pool(&cognito).await;
    // Two tenants in b (a is draining), then a opens: a (0/10) is preferred, then b (2/1000).
    let in_b = [
        user(&cognito, &pool, true).await,
        user(&cognito, &pool, true).await,
    ];
    for t in &in_b {
        assert_eq!(rig.sign_up(t).await, "b");
    }
    rig.set_state("a", CellState::Open).await;

    let broker_b = Stopped::node(testkit::cluster::Cluster::running(&rig.cells[1].dir).unwrap());
    let result = async {
        // Signups through the real post-confirmation binary: answered, each tenant in a. (It
        // provisions synchronously for up to 4 s here: a hand-off would go to the stack's own
        // worker, which knows nothing of this test's registry.)
        let mut env = rig.function_env();
        env.insert("PROVISION_SYNC_MS".into(), "4000".into());
        let trigger = Function::new("post-confirmation", env);
        let mut new = Vec::new();
        for _ in 0..3 {
            let t = user(&cognito, &pool, true).await;
            let outcome = trigger
                .invoke(&testkit::events::signup_for(&t), testkit::runtime::COGNITO_LIMIT)
                .await;
            assert!(
                outcome.answered_before_deadline() && matches!(outcome.answer, Answer::Ok(_)),
                "signup with cell b's broker stopped: {outcome:?}\n{}",
                trigger.log_tail(30)
            );
            new.push(t);
        }
        let mapped = rig.mapped().await;
        for t in &new {
            assert!(mapped["a"].contains(t.as_str()), "{t} not in cell a: {mapped:?}");
            assert_eq!(rig.holds(&rig.cells[0], t).await, (true, true));
        }
        // Reconcile: b reported, nothing of it removed; a reconciled.
        let directory = CognitoDirectory::new(&rig.aws, pool.clone());
        // This test's users only: cell a's broker holds other tests' tenants, which this
        // pool does not know.
        let ours: BTreeSet<String> = in_b.iter().chain(&new).map(|t| t.to_string()).collect();
        let options = Options {
            only: Some(ours),
            ..Options::default()
        };
        let report = reconcile_cells(&rig.app.cells, &directory, &options)
            .await
            .unwrap();
        let b = report.cells.iter().find(|c| c.cell == "b").unwrap();
        assert!(b.error.is_some(), "{report:?}");
        assert!(
            report
                .cells
                .iter()
                .find(|c| c.cell == "a")
                .unwrap()
                .error
                .is_none()
        );
        assert!(!report.is_clean());
        assert!(report.total.removed.is_empty(), "{:?}", report.total.removed);
        trigger.stop().await;
        new
    }
    .await;
    drop(broker_b);
    // b's tenants are intact, and usable again.
    for t in &in_b {
        assert_eq!(rig.holds(&rig.cells[1], t).await, (true, true), "{t}");
        let creds = rig.app.provisioner.store.read(t).await.unwrap().ours().unwrap();
        testkit::amqp::round_trip(creds.amqp_uri.expose(), b"back")
            .await
            .unwrap();
    }
    for t in in_b.iter().chain(&result) {
        rig.tear_down(t).await;
    }
}

#[tokio::test]
async fn teardown_and_rotation_act_in_the_tenants_cell_only() {
    let _one = SERIAL.lock().await;
    let rig = Rig::new((1000, "open"), (1000, "draining")).await;
    let in_a = fresh_tenant();
    assert_eq!(rig.sign_up(&in_a).await, "a");
    rig.set_state("a", CellState::Draining).await;
    rig.set_state("b", CellState::Open).await;
    let in_b = fresh_tenant();
    assert_eq!(rig.sign_up(&in_b).await, "b");
    let before_a = rig
        .app
        .provisioner
        .store
        .read(&in_a)
        .await
        .unwrap()
        .ours()
        .unwrap();

    // Rotation through the cells, as the worker answers POST /tenant/rotate.
    let Readiness::Ready(rotated) = rig
        .app
        .cells
        .rotate(&in_b, Duration::from_secs(20))
        .await
        .unwrap()
    else {
        panic!("the tenant in b is not ready");
    };
    assert!(
        rotated
            .amqp_uri
            .expose()
            .contains(&format!(":{}/", rig.cells[1].amqp_port))
    );
    testkit::amqp::round_trip(rotated.amqp_uri.expose(), b"rotated")
        .await
        .unwrap();
    // The tenant in a kept its password, and still logs in.
    let after_a = rig
        .app
        .provisioner
        .store
        .read(&in_a)
        .await
        .unwrap()
        .ours()
        .unwrap();
    assert_eq!(after_a.password.expose(), before_a.password.expose());
    testkit::amqp::round_trip(after_a.amqp_uri.expose(), b"untouched")
        .await
        .unwrap();

    // Teardown through the real binary: only b's broker and cluster lose the tenant.
    let teardown = Function::new("teardown", rig.function_env());
    let outcome = teardown
        .invoke(
            &serde_json::json!({"sub": in_b.as_str(), "force": true}),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        matches!(outcome.answer, Answer::Ok(_)),
        "{outcome:?}\n{}",
        teardown.log_tail(30)
    );
    teardown.stop().await;
    assert_eq!(rig.holds(&rig.cells[1], &in_b).await, (false, false));
    assert_eq!(rig.holds(&rig.cells[0], &in_a).await, (true, true));
    let mapped = rig.mapped().await;
    assert!(
        !mapped.get("b").is_some_and(|s| s.contains(in_b.as_str())),
        "{mapped:?}"
    );
    assert_eq!(rig.counts().await["b"], 0);
    rig.tear_down(&in_a).await;
}

#[tokio::test]
async fn reconcile_works_per_cell_and_repairs_a_hand_edited_counter_from_the_map() {
    let _one = SERIAL.lock().await;
    let rig = Rig::new((1000, "open"), (1000, "open")).await;
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&rig.aws);
    let pool = pool(&cognito).await;
    let users: Vec<TenantId> = futures::future::join_all((0..4).map(|_| user(&cognito, &pool, true))).await;
    // Two provisioned by signup; two never placed (as if their signups found no room).
    for t in &users[..2] {
        rig.sign_up(t).await;
    }
    // One from before cells: on the deployment's own broker (cell a's), with no map entry.
    let old = user(&cognito, &pool, true).await;
    rig.app
        .provisioner
        .provision(&old, &Deadline::new(Duration::from_secs(60), None))
        .await
        .unwrap();
    // A hand edit: cell a claims 17 tenants.
    aws_sdk_dynamodb::Client::new(&rig.aws)
        .update_item()
        .table_name(&rig.tables.cells)
        .key("cell", aws_sdk_dynamodb::types::AttributeValue::S("a".into()))
        .update_expression("SET tenants = :n")
        .expression_attribute_values(":n", aws_sdk_dynamodb::types::AttributeValue::N("17".into()))
        .send()
        .await
        .unwrap();
    // The operator's reconcile, with the rig's tables and the test's pool, acting on this test's
    // users only (the cells' brokers hold other tests' tenants).
    let mut args = vec!["--json", "reconcile", "--sub", old.as_str()];
    for t in &users {
        args.extend(["--sub", t.as_str()]);
    }
    let out = rig.cli_with_pool(&pool, &args);
    let report = json(&out);
    // The two without a cell placed and provisioned; the one from before cells mapped where it
    // is (the deployment's broker is cell a), not moved.
    assert_eq!(report["placed"].as_array().unwrap().len(), 3, "{}", text(&out));
    assert!(
        report["placed"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!([old.as_str(), "a"])),
        "{}",
        text(&out)
    );
    assert_eq!(
        report["provisioned"].as_array().unwrap().len(),
        2,
        "{}",
        text(&out)
    );
    let cells = report["cells"].as_array().unwrap();
    let a = cells.iter().find(|c| c["cell"] == "a").unwrap();
    assert_eq!(a["counter_repaired"][0], 18, "{a}"); // 17, and the adopted one
    let mapped = rig.mapped().await;
    let counts = rig.counts().await;
    for (cell, n) in &counts {
        assert_eq!(
            *n as usize,
            mapped.get(cell).map_or(0, BTreeSet::len),
            "cell {cell}: {counts:?} {mapped:?}"
        );
    }
    assert_eq!(counts.values().sum::<u32>(), 5);
    for t in &users {
        let cell = mapped
            .iter()
            .find(|(_, subs)| subs.contains(t.as_str()))
            .unwrap()
            .0;
        let own = rig.cells.iter().find(|c| c.name == cell).unwrap();
        assert_eq!(rig.holds(own, t).await, (true, true), "{t} in {cell}");
    }
    // `status --all` over both cells: each of these tenants ready in its own cell, none seen as
    // missing something because another cell lacks it.
    let out = rig.cli_with_pool(&pool, &["--json", "status", "--all"]);
    let fleet = json(&out);
    let ready = fleet["tenants"]["ready"].as_array().cloned().unwrap_or_default();
    for t in users.iter().chain([&old]) {
        assert!(
            ready.contains(&serde_json::json!(t.as_str())),
            "{t} not ready: {}",
            text(&out)
        );
    }
    for state in ["provisioning", "missing", "drift"] {
        let listed = fleet["tenants"][state].as_array().cloned().unwrap_or_default();
        assert!(
            users
                .iter()
                .all(|t| !listed.contains(&serde_json::json!(t.as_str()))),
            "{state}: {}",
            text(&out)
        );
    }
    assert!(
        fleet["cells"]["a"]["ready"].as_u64().unwrap() >= 1
            && fleet["cells"]["b"]["ready"].as_u64().unwrap() >= 1
    );
    // A user who is gone: torn down in its cell, its entry released, the count lowered.
    let gone = &users[0];
    let username = common::username_of(&cognito, &pool, gone).await;
    testkit::cognito::delete_user(&cognito, &pool, &username)
        .await
        .unwrap();
    let out = rig.cli_with_pool(&pool, &args);
    let report = json(&out);
    assert!(
        report["released"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == gone.as_str()),
        "{}",
        text(&out)
    );
    assert_eq!(rig.counts().await.values().sum::<u32>(), 4);
    for c in &rig.cells {
        assert_eq!(rig.holds(c, gone).await, (false, false));
    }
    for t in users[1..].iter().chain([&old]) {
        rig.tear_down(t).await;
    }
}

/// A stopped broker node, started again when dropped (also when the test fails).
struct Stopped(testkit::cluster::Node);

impl Stopped {
    fn node(cluster: testkit::cluster::Cluster) -> Self {
        let node = cluster.nodes[0].clone();
        node.stop().unwrap();
        Self(node)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.start().expect("the stopped broker node starts again");
    }
}

impl Rig {
    fn cli_with_pool(&self, pool: &str, args: &[&str]) -> std::process::Output {
        tgsearch_with(
            &[
                ("CELLS_TABLE", &self.tables.cells),
                ("TENANT_CELLS_TABLE", &self.tables.map),
                ("USER_POOL_ID", pool),
            ],
            args,
        )
    }
}
