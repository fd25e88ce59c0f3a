//! The stack's RabbitMQ cluster (`cargo xtask stack up --cluster`): three nodes of Debian's
//! rabbitmq-server behind HAProxy on the stack's usual AMQP and management ports. `stack up`
//! writes the layout to `<stack dir>/rabbitmq-cluster.json`; tests read it to reach each node on
//! its own ports and to stop and start one.
//!
//! Every port derives from the stack's RabbitMQ base port ([`crate::stack::amqp_port`]): node
//! `i` (1..=3) listens for AMQP on `base + i`, for the management API on `base + 10000 + i`, for
//! Erlang distribution on `base + 20000 + i`; `rabbitmqctl` uses `base + 30001..=base + 30010`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Nodes in the stack's cluster.
pub const NODES: u16 = 3;
/// Debian's RabbitMQ scripts, run directly (the `/usr/sbin` wrappers switch to the `rabbitmq`
/// user and its HOME, whose Erlang cookie is not ours).
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
pub const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// A command line with its environment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

impl Invocation {
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).envs(&self.env);
        command
    }

    /// Runs it to completion, failing with its output.
    pub fn run(&self) -> Result<()> {
        let out = self
            .command()
            .output()
            .with_context(|| format!("cannot run {} {:?}", self.program, self.args))?;
        if !out.status.success() {
            bail!(
                "{} {:?} failed ({}): {}{}",
                self.program,
                self.args,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// One node of the cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Node {
    /// Erlang node name, e.g. `tgsearch-5673@localhost`.
    pub name: String,
    pub amqp_port: u16,
    pub management_port: u16,
    pub dist_port: u16,
    /// Data, logs and configuration of this node.
    pub dir: PathBuf,
    /// The environment `rabbitmq-server` runs with for this node.
    pub env: BTreeMap<String, String>,
    /// Stops the node (the whole Erlang VM): the node is lost to the cluster.
    pub stop: Invocation,
    /// Starts the stopped node again, in the background; it rejoins the cluster.
    pub start: Invocation,
    /// Returns once the node runs RabbitMQ (`rabbitmqctl await_startup`).
    pub await_startup: Invocation,
}

impl Node {
    /// Stops the node and waits until it is gone.
    pub fn stop(&self) -> Result<()> {
        self.stop.run()
    }

    /// Starts the node in the background and waits (up to two minutes) until RabbitMQ runs on
    /// it again, as a member of the cluster.
    pub fn start(&self) -> Result<()> {
        self.start.run()?;
        // `-detached` returns before the node registers with epmd; until then
        // `await_startup` fails at once.
        let started = std::time::Instant::now();
        loop {
            match self.await_startup.run() {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() > std::time::Duration::from_secs(120) => return Err(e),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(500)),
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

/// The cluster as `stack up --cluster` laid it out.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// HAProxy's AMQP and management ports (the stack's usual ones).
    pub amqp_port: u16,
    pub management_port: u16,
    /// HOME of every node and of `rabbitmqctl`: holds the shared Erlang cookie.
    pub home: PathBuf,
}

/// Where the layout is recorded.
pub fn state_file(stack_dir: &Path) -> PathBuf {
    stack_dir.join("rabbitmq-cluster.json")
}

/// The cluster's layout for RabbitMQ base port `base`, with its files under `stack_dir`.
pub fn layout(stack_dir: &Path, base: u16) -> Cluster {
    let root = stack_dir.join("rabbitmq-cluster");
    let home = root.clone();
    let ctl_env = |home: &Path| {
        BTreeMap::from([
            ("HOME".to_owned(), home.display().to_string()),
            (
                "RABBITMQ_CTL_DIST_PORT_MIN".to_owned(),
                (base + 30001).to_string(),
            ),
            (
                "RABBITMQ_CTL_DIST_PORT_MAX".to_owned(),
                (base + 30010).to_string(),
            ),
        ])
    };
    let nodes = (1..=NODES)
        .map(|i| {
            let amqp_port = base + i;
            let name = format!("tgsearch-{amqp_port}@localhost");
            let dir = root.join(format!("node-{i}"));
            let mut env = ctl_env(&home);
            for (k, v) in [
                ("RABBITMQ_NODENAME", name.clone()),
                ("RABBITMQ_NODE_PORT", amqp_port.to_string()),
                ("RABBITMQ_DIST_PORT", (base + 20000 + i).to_string()),
                ("RABBITMQ_MNESIA_BASE", dir.join("mnesia").display().to_string()),
                ("RABBITMQ_LOG_BASE", dir.join("log").display().to_string()),
                (
                    "RABBITMQ_ENABLED_PLUGINS_FILE",
                    dir.join("enabled_plugins").display().to_string(),
                ),
                (
                    "RABBITMQ_CONFIG_FILE",
                    dir.join("rabbitmq.conf").display().to_string(),
                ),
            ] {
                env.insert(k.to_owned(), v);
            }
            let ctl = |args: &[&str]| Invocation {
                program: RABBITMQCTL.into(),
                args: ["-n", name.as_str()]
                    .iter()
                    .chain(args)
                    .map(|s| s.to_string())
                    .collect(),
                env: ctl_env(&home),
            };
            Node {
                stop: ctl(&["stop"]),
                await_startup: ctl(&["await_startup", "--timeout", "120"]),
                start: Invocation {
                    program: RABBITMQ_SERVER.into(),
                    args: vec!["-detached".into()],
                    env: env.clone(),
                },
                name,
                amqp_port,
                management_port: base + 10000 + i,
                dist_port: base + 20000 + i,
                dir,
                env,
            }
        })
        .collect();
    Cluster {
        nodes,
        amqp_port: base,
        management_port: base + 10000,
        home,
    }
}

impl Cluster {
    /// The cluster the running stack recorded, or why there is none (with what to run).
    pub fn running(stack_dir: &Path) -> Result<Self> {
        let file = state_file(stack_dir);
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "the stack's RabbitMQ is not a cluster ({} is missing): start it with `cargo xtask stack up --cluster`",
                file.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a cluster layout", file.display()))
    }

    pub fn save(&self, stack_dir: &Path) -> Result<()> {
        std::fs::write(state_file(stack_dir), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// `rabbitmqctl -n <first node> <args>` with the cluster's cookie.
    pub fn ctl(&self, args: &[&str]) -> Invocation {
        let mut invocation = self.nodes[0].stop.clone();
        invocation.args = ["-n", self.nodes[0].name.as_str()]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect();
        invocation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_derives_from_the_base() {
        let c = layout(Path::new("/tmp/s"), 5680);
        assert_eq!((c.amqp_port, c.management_port), (5680, 15680));
        let ports: Vec<_> = c
            .nodes
            .iter()
            .map(|n| (n.amqp_port, n.management_port, n.dist_port))
            .collect();
        assert_eq!(
            ports,
            [(5681, 15681, 25681), (5682, 15682, 25682), (5683, 15683, 25683)]
        );
        assert_eq!(c.nodes[1].name, "tgsearch-5682@localhost");
        assert_eq!(c.nodes[2].env["RABBITMQ_DIST_PORT"], "25683");
        assert_eq!(c.nodes[0].stop.args, ["-n", "tgsearch-5681@localhost", "stop"]);
    }
}
