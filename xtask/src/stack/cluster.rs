//! The stack's RabbitMQ: a cluster of containers of the broker image (`broker_image`), each node
//! with its own address on a Docker network, formed by RabbitMQ's classic peer discovery, behind
//! HAProxy on the stack's usual AMQP and management ports: one TCP connection goes to one node,
//! as a Kubernetes Service or a load balancer spreads a cluster. Three nodes by default, one
//! with `--single-node`. The layout (names, ports, networks) is recorded for the tests
//! (`testkit::cluster`). Fresh on each start: tenants of earlier runs are gone, and `guest` is
//! back for bootstrap.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use testkit::broker::DeployedBroker;
use testkit::cluster::{self, CLUSTER_NAME, Cluster};
use testkit::stack;
use tgsearch::adapters::rabbitmq::AdminCredentials;

use crate::procs::{self, port_open};

const HAPROXY: &str = "/usr/sbin/haproxy";
/// Open files per node: each vhost holds about three, so the default soft limit of 1024 stops
/// vhost creation at ~330 vhosts (`emfile`). 20,000 is this machine's hard limit per process.
const NOFILE: u32 = 20_000;
/// Erlang's net tick: a peer that stops answering is declared down after 0.75 to 1.25 of it.
/// 15 s here (RabbitMQ's default is 60 s) so a partition shows within a test's patience; the
/// deployment keeps the default (see the README).
const NET_TICKTIME: u32 = 15;

/// Whether the recorded cluster runs with this layout: every container runs on the cluster
/// network and every port answers.
fn running(dir: &Path, wanted: &Cluster) -> bool {
    Cluster::running(dir).is_ok_and(|c| c == *wanted)
        && port_open(wanted.amqp_port)
        && port_open(wanted.management_port)
        && wanted
            .nodes
            .iter()
            .all(|n| n.running() && n.connected().unwrap_or(false) && port_open(n.management_port))
}

/// The bootstrap user's credentials: RabbitMQ creates it on first start, as the Cluster
/// Operator's generated default user (`guest` may only log in over loopback, and no client comes
/// from a container's loopback). `tgsearch bootstrap-rabbitmq` replaces it.
fn default_user_file(cluster: &Cluster) -> std::path::PathBuf {
    cluster.home.join("default-user.json")
}

/// The bootstrap user of the running cluster.
pub(super) fn default_user(dir: &Path) -> Result<AdminCredentials> {
    let cluster = Cluster::running(dir)?;
    let file = default_user_file(&cluster);
    let text = fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

/// The configuration every node shares (`/etc/rabbitmq/rabbitmq.conf`).
fn rabbitmq_conf(cluster: &Cluster, default_user: &AdminCredentials) -> String {
    let mut conf = format!(
        "# Written by `cargo xtask stack up`.\n\
         cluster_name = {CLUSTER_NAME}\n\
         cluster_formation.peer_discovery_backend = classic_config\n\
         default_user = {}\n\
         default_pass = {}\n",
        default_user.username,
        default_user.password.expose()
    );
    for (i, node) in cluster.nodes.iter().enumerate() {
        conf.push_str(&format!(
            "cluster_formation.classic_config.nodes.{} = {}\n",
            i + 1,
            node.name
        ));
    }
    conf.push_str("# The deployed broker's behaviour (manifests/broker/rabbitmq.yaml).\n");
    for setting in &cluster.settings {
        conf.push_str(setting);
        conf.push('\n');
    }
    conf.push_str(&format!(
        "listeners.tcp.default = 5672\n\
         management.tcp.port = 15672\n\
         net_ticktime = {NET_TICKTIME}\n\
         log.console = true\n\
         log.console.level = info\n\
         log.file = false\n"
    ));
    conf
}

/// Starts the cluster unless it runs. Returns `true` when it started fresh (with `guest`, which
/// bootstrap then replaces).
pub(super) fn ensure_cluster(dir: &Path, nodes: u16, say: &impl Fn(&str)) -> Result<bool> {
    ensure_cluster_at(dir, stack::amqp_port(), nodes, say)
}

/// [`ensure_cluster`] with its state in `dir` and its ports from `base` (a second cell's broker).
pub(super) fn ensure_cluster_at(dir: &Path, base: u16, nodes: u16, say: &impl Fn(&str)) -> Result<bool> {
    let image = super::broker_image::ensure(dir, say)?;
    let deployed = DeployedBroker::read(&super::workspace_root())?;
    let settings = deployed
        .stack_settings()
        .into_iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    let wanted = cluster::layout(dir, base, nodes, &image, settings);
    if running(dir, &wanted) {
        return Ok(false);
    }
    stop(dir)?;
    remove_containers(&wanted)?;
    let mut ports = vec![wanted.amqp_port, wanted.management_port];
    for node in &wanted.nodes {
        ports.extend([node.amqp_port, node.management_port]);
    }
    if let Some(taken) = ports.into_iter().find(|p| port_open(*p)) {
        bail!("port {taken} is taken by another process (a RabbitMQ of your own?); stop it and run again");
    }
    ensure_haproxy(dir, say)?;

    let _ = fs::remove_dir_all(&wanted.home);
    fs::create_dir_all(&wanted.home)?;
    let cookie = wanted.home.join("erlang.cookie");
    let secret: String = tgsearch::credentials::generate_password()
        .expose()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    fs::write(&cookie, secret.to_uppercase())?;
    fs::set_permissions(&cookie, fs::Permissions::from_mode(0o400))?;
    let bootstrap = AdminCredentials {
        username: "tgsearch-bootstrap".into(),
        password: tgsearch::credentials::generate_password(),
    };
    let conf = wanted.home.join("rabbitmq.conf");
    fs::write(&conf, rabbitmq_conf(&wanted, &bootstrap))?;
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644))?;
    let saved = default_user_file(&wanted);
    fs::write(&saved, serde_json::to_vec(&bootstrap)?)?;
    fs::set_permissions(&saved, fs::Permissions::from_mode(0o600))?;
    let plugins = wanted.home.join("enabled_plugins");
    fs::write(&plugins, "[rabbitmq_management].\n")?;

    for network in [&wanted.cluster_network, &wanted.edge_network] {
        docker(&["network", "create", "--label", "tgsearch.stack=rabbitmq", network])?;
    }
    let mount = |host: &Path, inside: &str| format!("{}:{inside}:ro", host.display());
    for node in &wanted.nodes {
        // On the edge network first: the published ports live there, so a node taken off the
        // cluster network still answers its clients.
        docker(&[
            "create",
            "--name",
            &node.container,
            "--label",
            "tgsearch.stack=rabbitmq",
            "--network",
            &wanted.edge_network,
            // rabbitmqctl inside the container reaches its own node even when partitioned.
            "--add-host",
            &format!("{}:127.0.0.1", node.alias),
            "--env",
            &format!("RABBITMQ_NODENAME={}", node.name),
            "--ulimit",
            &format!("nofile={NOFILE}:{NOFILE}"),
            "--volume",
            &mount(&cookie, "/run/tgsearch/erlang.cookie"),
            "--volume",
            &mount(&conf, "/etc/rabbitmq/rabbitmq.conf"),
            "--volume",
            &mount(&plugins, "/etc/rabbitmq/enabled_plugins"),
            "--publish",
            &format!("127.0.0.1:{}:5672", node.amqp_port),
            "--publish",
            &format!("127.0.0.1:{}:15672", node.management_port),
            &wanted.image,
        ])?;
        node.heal()?;
    }
    say(&format!(
        "starting a {}-node RabbitMQ cluster in containers ({})",
        wanted.nodes.len(),
        wanted
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for node in &wanted.nodes {
        docker(&["start", &node.container])?;
    }
    for node in &wanted.nodes {
        node.await_startup().with_context(|| {
            format!(
                "{} did not start; see `docker logs {}`",
                node.name, node.container
            )
        })?;
    }
    await_membership(&wanted)?;
    // Metadata in Khepri: required from 4.3 on (this answers at once), opt-in on 4.0 to 4.2.
    cluster_ctl_khepri(&wanted)?;
    start_haproxy(dir, &wanted)?;
    wanted.save(dir)?;
    say(&format!(
        "RabbitMQ cluster up behind HAProxy on {} (AMQP) and {} (management)",
        wanted.amqp_port, wanted.management_port
    ));
    Ok(true)
}

fn docker(args: &[&str]) -> Result<()> {
    procs::run_quiet(Command::new("docker").args(args))
}

/// Every node of the layout runs as a member of one cluster (classic peer discovery joins them
/// as they start; this waits for it).
fn await_membership(cluster: &Cluster) -> Result<()> {
    let mut running: Vec<String> = Vec::new();
    for _ in 0..120 {
        let out = cluster.ctl(&["cluster_status", "--formatter", "json"])?;
        let status: serde_json::Value =
            serde_json::from_str(&out).context("rabbitmqctl cluster_status printed no JSON")?;
        running = status["running_nodes"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if cluster.nodes.iter().all(|n| running.contains(&n.name)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!(
        "the nodes did not form one cluster within a minute (running: {running:?}); see `docker logs {}`",
        cluster.nodes[0].container
    )
}

fn cluster_ctl_khepri(cluster: &Cluster) -> Result<()> {
    cluster
        .ctl(&["enable_feature_flag", "--opt-in", "khepri_db"])
        .context("turning on the khepri_db feature flag (metadata in Khepri)")
        .map(drop)
}

fn ensure_haproxy(dir: &Path, say: &impl Fn(&str)) -> Result<()> {
    if Path::new(HAPROXY).exists() {
        return Ok(());
    }
    procs::apt_install(dir, &["haproxy"], say)
}

/// HAProxy in TCP mode: each client connection to a healthy node, round robin; a node that
/// stops answering is taken out within two seconds, and a connection refused by a node that
/// just went down is redispatched to another.
fn start_haproxy(dir: &Path, cluster: &Cluster) -> Result<()> {
    let servers = |port: fn(&testkit::cluster::Node) -> u16| {
        cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "    server node{} 127.0.0.1:{} check inter 1s fall 2 rise 2\n",
                    i + 1,
                    port(n)
                )
            })
            .collect::<String>()
    };
    let config = format!(
        "global
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 3h
    timeout server 3h
    retries 2
    option redispatch
frontend amqp
    bind 127.0.0.1:{amqp}
    default_backend amqp_nodes
backend amqp_nodes
    balance roundrobin
{amqp_servers}frontend management
    bind 127.0.0.1:{management}
    default_backend management_nodes
backend management_nodes
    balance roundrobin
{management_servers}",
        amqp = cluster.amqp_port,
        management = cluster.management_port,
        amqp_servers = servers(|n| n.amqp_port),
        management_servers = servers(|n| n.management_port),
    );
    let file = cluster.home.join("haproxy.cfg");
    fs::write(&file, config)?;
    procs::run_quiet(Command::new(HAPROXY).arg("-c").arg("-q").arg("-f").arg(&file))
        .context("HAProxy refused the generated configuration")?;
    procs::spawn(
        dir,
        "haproxy",
        Command::new(HAPROXY).arg("-db").arg("-f").arg(&file),
    )?;
    procs::wait_for(dir, "haproxy", Duration::from_secs(30), || {
        port_open(cluster.amqp_port) && port_open(cluster.management_port)
    })
}

/// Removes the layout's containers and networks, whatever state they are in.
fn remove_containers(cluster: &Cluster) -> Result<()> {
    for node in &cluster.nodes {
        let _ = procs::run_quiet(Command::new("docker").args(["rm", "--force", &node.container]));
    }
    for network in [&cluster.cluster_network, &cluster.edge_network] {
        let _ = procs::run_quiet(Command::new("docker").args(["network", "rm", network]));
    }
    Ok(())
}

/// Stops HAProxy and removes every node of the recorded cluster. Returns whether anything was
/// running.
pub(super) fn stop(dir: &Path) -> Result<bool> {
    let mut any = procs::stop(dir, "haproxy")?;
    if let Ok(recorded) = Cluster::running(dir) {
        any |= recorded.nodes.iter().any(|n| n.running());
        remove_containers(&recorded)?;
        let _ = fs::remove_file(cluster::state_file(dir));
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_is_named_in_the_shared_configuration() {
        let c = cluster::layout(
            Path::new("/tmp/s"),
            5672,
            3,
            "i",
            vec!["default_queue_type = quorum".into()],
        );
        let user = AdminCredentials {
            username: "b".into(),
            password: tgsearch::credentials::Password::new("p"),
        };
        let conf = rabbitmq_conf(&c, &user);
        assert!(conf.contains("default_queue_type = quorum\n"), "{conf}");
        for (i, n) in ["rabbit@rmq1", "rabbit@rmq2", "rabbit@rmq3"].iter().enumerate() {
            assert!(conf.contains(&format!("classic_config.nodes.{} = {n}\n", i + 1)));
        }
        assert!(conf.contains("cluster_name = tgsearch-local\n"));
    }
}
