//! `cargo xtask stack up --cluster`: RabbitMQ as a 3-node cluster of Debian's rabbitmq-server on
//! this machine (own node names, ports and data dirs, one shared Erlang cookie, joined with
//! `rabbitmqctl join_cluster`), behind HAProxy on the stack's usual AMQP and management ports:
//! one TCP connection goes to one node, as a Kubernetes Service spreads a cluster. The layout
//! (names, ports, how to stop and start each node) is recorded for the tests
//! (`testkit::cluster`). Fresh on each start, like the single node.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use testkit::cluster::{self, Cluster, NODES, RABBITMQ_SERVER};
use testkit::stack;

use crate::procs::{self, port_open};

const HAPROXY: &str = "/usr/sbin/haproxy";

fn node_service(i: usize) -> String {
    format!("rabbitmq-node-{i}")
}

/// Whether the recorded cluster runs with this layout: every node and both HAProxy ports answer.
fn running(dir: &Path, wanted: &Cluster) -> bool {
    Cluster::running(dir).is_ok_and(|c| c == *wanted)
        && port_open(wanted.amqp_port)
        && port_open(wanted.management_port)
        && wanted.nodes.iter().all(|n| port_open(n.management_port))
}

/// Starts the cluster unless it runs. Returns `true` when it started fresh (with `guest`, which
/// bootstrap then replaces).
pub(super) fn ensure_cluster(dir: &Path, say: &impl Fn(&str)) -> Result<bool> {
    let wanted = cluster::layout(dir, stack::amqp_port());
    if running(dir, &wanted) {
        return Ok(false);
    }
    if procs::stop(dir, "rabbitmq")? {
        say("stopped the single RabbitMQ node: switching to a cluster");
    }
    stop(dir)?;
    let mut ports = vec![wanted.amqp_port, wanted.management_port];
    for node in &wanted.nodes {
        ports.extend([node.amqp_port, node.management_port, node.dist_port]);
    }
    if let Some(taken) = ports.into_iter().find(|p| port_open(*p)) {
        bail!("port {taken} is taken by another process; stop it and run again");
    }
    super::rabbitmq::ensure_installed(say)?;
    ensure_haproxy(say)?;

    let _ = fs::remove_dir_all(&wanted.home);
    fs::create_dir_all(&wanted.home)?;
    let cookie = wanted.home.join(".erlang.cookie");
    let secret: String = tgsearch::credentials::generate_password()
        .expose()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    fs::write(&cookie, secret.to_uppercase())?;
    fs::set_permissions(&cookie, fs::Permissions::from_mode(0o400))?;
    for node in &wanted.nodes {
        fs::create_dir_all(node.dir.join("mnesia"))?;
        fs::create_dir_all(node.dir.join("log"))?;
        fs::write(node.dir.join("enabled_plugins"), "[rabbitmq_management].\n")?;
        fs::write(
            node.dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{}\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {}\ncluster_partition_handling = pause_minority\n",
                node.amqp_port, node.management_port
            ),
        )?;
    }
    say(&format!(
        "starting a {NODES}-node RabbitMQ cluster ({})",
        wanted
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for (i, node) in wanted.nodes.iter().enumerate() {
        procs::spawn(
            dir,
            &node_service(i + 1),
            Command::new(RABBITMQ_SERVER).envs(&node.env),
        )?;
    }
    for (i, node) in wanted.nodes.iter().enumerate() {
        procs::wait_for(dir, &node_service(i + 1), Duration::from_secs(180), || {
            port_open(node.management_port)
        })?;
    }
    let first = &wanted.nodes[0].name;
    for node in &wanted.nodes[1..] {
        let ctl = |args: &[&str]| {
            let mut invocation = node.stop.clone();
            invocation.args = ["-n", node.name.as_str()]
                .iter()
                .chain(args)
                .map(|s| s.to_string())
                .collect();
            invocation.run()
        };
        ctl(&["stop_app"])?;
        ctl(&["reset"])?;
        ctl(&["join_cluster", first])?;
        ctl(&["start_app"])?;
    }
    for node in &wanted.nodes {
        node.await_startup.run()?;
    }
    check_membership(&wanted)?;
    start_haproxy(dir, &wanted)?;
    wanted.save(dir)?;
    say(&format!(
        "RabbitMQ cluster up behind HAProxy on {} (AMQP) and {} (management)",
        wanted.amqp_port, wanted.management_port
    ));
    Ok(true)
}

/// Every node of the layout runs as a member of one cluster.
fn check_membership(cluster: &Cluster) -> Result<()> {
    let out = cluster
        .ctl(&["cluster_status", "--formatter", "json"])
        .command()
        .output()?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "rabbitmqctl cluster_status: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let running: Vec<&str> = status["running_nodes"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    for node in &cluster.nodes {
        if !running.contains(&node.name.as_str()) {
            bail!("{} did not join the cluster (running: {running:?})", node.name);
        }
    }
    Ok(())
}

fn ensure_haproxy(say: &impl Fn(&str)) -> Result<()> {
    if Path::new(HAPROXY).exists() {
        return Ok(());
    }
    if !procs::is_root() {
        bail!("HAProxy is not installed: run `sudo apt-get install haproxy` and try again");
    }
    say("installing Debian's haproxy (once)");
    procs::run(Command::new("apt-get").args(["update", "-qq"]))?;
    procs::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "haproxy"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
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
    procs::run(Command::new(HAPROXY).arg("-c").arg("-q").arg("-f").arg(&file))
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

/// Stops HAProxy and every node of the recorded cluster (also nodes a test restarted in the
/// background). Returns whether anything was running.
pub(super) fn stop(dir: &Path) -> Result<bool> {
    let mut any = procs::stop(dir, "haproxy")?;
    if let Ok(recorded) = Cluster::running(dir) {
        for node in &recorded.nodes {
            if port_open(node.dist_port) || port_open(node.management_port) {
                // Ends the node's Erlang VM, wherever it was started from.
                let _ = node.stop.run();
                any = true;
            }
        }
        let _ = fs::remove_file(cluster::state_file(dir));
    }
    for i in 1..=usize::from(NODES) {
        any |= procs::stop(dir, &node_service(i))?;
    }
    Ok(any)
}
