//! The stack's RabbitMQ cluster (`cargo xtask stack up`): three nodes, each a container of the
//! broker image built from Debian's archive (`tgsearch/rabbitmq`), behind HAProxy on the
//! stack's usual AMQP and management ports. `stack up` writes the layout to
//! `<stack dir>/rabbitmq-cluster.json`; tests read it to reach each node on its own ports, and
//! to lose a node (stop its container) or cut it off (take it off the cluster network).
//!
//! Two Docker networks: the *cluster* network carries Erlang distribution between the nodes
//! (each node is known there by its alias `rmqN`, and nowhere else), the *edge* network carries
//! the clients' ports, published on 127.0.0.1. Taking a node off the cluster network is a real
//! partition: it still answers clients on its own ports, but cannot reach its peers.
//!
//! Every host port derives from the stack's RabbitMQ base port ([`crate::stack::amqp_port`]):
//! node `i` (1..=3) publishes AMQP on `base + i` and the management API on `base + 10000 + i`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Nodes in the stack's cluster (`stack up --single-node` runs one).
pub const NODES: u16 = 3;
/// The broker image's repository (tags name the Debian suite and the recipe's hash).
pub const IMAGE_REPOSITORY: &str = "tgsearch/rabbitmq";
/// The name every node's cluster reports (`cluster_name`).
pub const CLUSTER_NAME: &str = "tgsearch-local";

/// One node of the cluster: a container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Node {
    /// Erlang node name, e.g. `rabbit@rmq1`.
    pub name: String,
    /// The node's host name on the cluster network (`rmq1`).
    pub alias: String,
    /// Docker container name.
    pub container: String,
    /// Ports published on 127.0.0.1.
    pub amqp_port: u16,
    pub management_port: u16,
    /// The network Erlang distribution runs on (see the module's docs).
    pub cluster_network: String,
}

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("cannot run docker {args:?}: is Docker installed?"))?;
    if !out.status.success() {
        bail!(
            "docker {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Node {
    /// Stops the node's container (RabbitMQ shuts down as on a lost pod): the node is lost to
    /// the cluster.
    pub fn stop(&self) -> Result<()> {
        docker(&["stop", "--time", "30", &self.container]).map(drop)
    }

    /// Starts the stopped node and waits (up to two minutes) until RabbitMQ runs on it again,
    /// as a member of the cluster.
    pub fn start(&self) -> Result<()> {
        docker(&["start", &self.container])?;
        self.await_startup()
    }

    /// Cuts the node off from its peers (off the cluster network); clients still reach it.
    pub fn partition(&self) -> Result<()> {
        docker(&["network", "disconnect", &self.cluster_network, &self.container]).map(drop)
    }

    /// Puts the node back on the cluster network, under its alias.
    pub fn heal(&self) -> Result<()> {
        docker(&[
            "network",
            "connect",
            "--alias",
            &self.alias,
            &self.cluster_network,
            &self.container,
        ])
        .map(drop)
    }

    /// Whether the node is on the cluster network now.
    pub fn connected(&self) -> Result<bool> {
        let networks = docker(&[
            "inspect",
            "--format",
            "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
            &self.container,
        ])?;
        Ok(networks.split_whitespace().any(|n| n == self.cluster_network))
    }

    /// Whether the container runs.
    pub fn running(&self) -> bool {
        docker(&["inspect", "--format", "{{.State.Running}}", &self.container])
            .is_ok_and(|s| s.trim() == "true")
    }

    /// `rabbitmqctl <args>` on this node, inside its container.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["exec", self.container.as_str(), "rabbitmqctl"];
        all.extend(args);
        docker(&all)
    }

    /// Returns once RabbitMQ runs on the node (`rabbitmqctl await_startup`), or fails after
    /// two minutes.
    pub fn await_startup(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            match self.ctl(&["await_startup", "--timeout", "120"]) {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() > Duration::from_secs(120) => return Err(e),
                // Until the Erlang VM registers, rabbitmqctl fails at once.
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// `amqp://127.0.0.1:<this node's port>`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://127.0.0.1:{}", self.amqp_port)
    }

    pub fn management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.management_port)
    }
}

/// The cluster as `stack up` laid it out.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// HAProxy's AMQP and management ports (the stack's usual ones).
    pub amqp_port: u16,
    pub management_port: u16,
    /// The broker image the nodes run.
    pub image: String,
    /// The deployed broker's settings the nodes run with (`key = value`): a change restarts
    /// the cluster.
    pub settings: Vec<String>,
    pub cluster_network: String,
    pub edge_network: String,
    /// Holds the shared Erlang cookie, the nodes' configuration and HAProxy's.
    pub home: PathBuf,
}

/// Where the layout is recorded.
pub fn state_file(stack_dir: &Path) -> PathBuf {
    stack_dir.join("rabbitmq-cluster.json")
}

/// The layout of a cluster of `nodes` nodes of `image` for RabbitMQ base port `base`, with its
/// files under `stack_dir`. Names carry the base port, so a second stack does not collide.
pub fn layout(stack_dir: &Path, base: u16, nodes: u16, image: &str, settings: Vec<String>) -> Cluster {
    let cluster_network = format!("tgsearch-rmq-{base}");
    let nodes = (1..=nodes)
        .map(|i| Node {
            name: format!("rabbit@rmq{i}"),
            alias: format!("rmq{i}"),
            container: format!("tgsearch-rmq-{base}-{i}"),
            amqp_port: base + i,
            management_port: base + 10000 + i,
            cluster_network: cluster_network.clone(),
        })
        .collect();
    Cluster {
        nodes,
        amqp_port: base,
        management_port: base + 10000,
        image: image.into(),
        settings,
        edge_network: format!("{cluster_network}-edge"),
        cluster_network,
        home: stack_dir.join("rabbitmq-cluster"),
    }
}

impl Cluster {
    /// The cluster the running stack recorded, or why there is none (with what to run).
    pub fn running(stack_dir: &Path) -> Result<Self> {
        let file = state_file(stack_dir);
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "the stack's RabbitMQ cluster is not running ({} is missing): start it with `cargo xtask stack up`",
                file.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a cluster layout", file.display()))
    }

    pub fn save(&self, stack_dir: &Path) -> Result<()> {
        std::fs::write(state_file(stack_dir), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// `rabbitmqctl <args>` on the first node that runs.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.running())
            .context("no node of the cluster runs")?;
        node.ctl(args)
    }

    /// Whether it is a cluster a node can be lost from (three nodes or more).
    pub fn require_nodes(&self, wanted: usize) -> Result<()> {
        if self.nodes.len() < wanted {
            bail!(
                "the stack's RabbitMQ has {} node(s), this needs {wanted}: run `cargo xtask stack up` (without --single-node)",
                self.nodes.len()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_and_name_derives_from_the_base() {
        let c = layout(Path::new("/tmp/s"), 5680, 3, "tgsearch/rabbitmq:x", vec![]);
        assert_eq!((c.amqp_port, c.management_port), (5680, 15680));
        let ports: Vec<_> = c.nodes.iter().map(|n| (n.amqp_port, n.management_port)).collect();
        assert_eq!(ports, [(5681, 15681), (5682, 15682), (5683, 15683)]);
        assert_eq!(c.nodes[1].name, "rabbit@rmq2");
        assert_eq!(c.nodes[2].container, "tgsearch-rmq-5680-3");
        assert_eq!(c.cluster_network, "tgsearch-rmq-5680");
        assert_eq!(c.edge_network, "tgsearch-rmq-5680-edge");
        assert_eq!(layout(Path::new("/tmp/s"), 5672, 1, "i", vec![]).nodes.len(), 1);
    }
}
