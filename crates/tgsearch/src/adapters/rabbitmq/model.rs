//! What the management API reports: vhosts, users (with the salted hash that proves a password
//! without revealing it), permissions.

use serde::{Deserialize, Serialize};

use crate::credentials::Password;

/// A virtual host as the API reports it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Vhost {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Per node: `running`, `stopped` (its supervisor failed there, e.g. created while the node
    /// was leaving the cluster: clients routed to that node get "vhost is down") or `nodedown`.
    #[serde(default)]
    pub cluster_state: std::collections::BTreeMap<String, String>,
}

impl Vhost {
    /// Nodes that are up but do not run the vhost.
    pub fn stopped_on(&self) -> Vec<&str> {
        self.cluster_state
            .iter()
            .filter(|(_, state)| state.as_str() == "stopped")
            .map(|(node, _)| node.as_str())
            .collect()
    }
}

/// The part of `GET /api/definitions` the listing reads (users with their hashes, queues and
/// the rest are skipped by the parser, never kept).
#[derive(Debug, Deserialize)]
pub(crate) struct Definitions {
    #[serde(default)]
    pub vhosts: Vec<DefinedVhost>,
}

/// A vhost as the definitions carry it: description and tags in `metadata`.
#[derive(Debug, Deserialize)]
pub(crate) struct DefinedVhost {
    name: String,
    #[serde(default)]
    metadata: DefinedMetadata,
}

#[derive(Debug, Default, Deserialize)]
struct DefinedMetadata {
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
}

impl From<DefinedVhost> for Vhost {
    fn from(v: DefinedVhost) -> Self {
        Vhost {
            name: v.name,
            description: v.metadata.description,
            tags: v.metadata.tags,
            cluster_state: Default::default(),
        }
    }
}

/// A cluster node as `GET /api/nodes?columns=name,running` reports it: seen from the node that
/// answered.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    #[serde(default)]
    pub running: bool,
}

/// What `/api/overview` says of the broker itself.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Overview {
    #[serde(default)]
    pub rabbitmq_version: String,
    #[serde(default)]
    pub erlang_version: String,
    #[serde(default)]
    pub cluster_name: String,
}

/// A node's memory in use, bytes (absent while the node is down).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct NodeMemory {
    pub name: String,
    #[serde(default)]
    pub mem_used: Option<u64>,
}

/// The cluster as one node sees it. A node cut off from its peers sees only itself running,
/// which is how a minority tells itself (and `tgsearch status`) apart from the majority.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ClusterView {
    pub nodes: Vec<NodeView>,
}

impl ClusterView {
    fn running(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.running)
            .map(|n| n.name.as_str())
            .collect()
    }

    fn unreachable(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| !n.running)
            .map(|n| n.name.as_str())
            .collect()
    }

    /// The node that answered sees no majority: it is cut off with a minority of the cluster.
    pub fn is_minority(&self) -> bool {
        !self.nodes.is_empty() && self.running().len() * 2 <= self.nodes.len()
    }

    /// What an operator must know, or `None` when every node runs.
    pub fn problem(&self) -> Option<String> {
        let (running, unreachable) = (self.running(), self.unreachable());
        if unreachable.is_empty() {
            return None;
        }
        Some(if self.is_minority() {
            format!(
                "the node that answered ({}) sees {} of {} nodes running ({} unreachable): it is cut off in a minority, \
                 and refuses to create, change or delete vhosts, users and permissions (they time out: RabbitMQ's \
                 metadata store needs a majority) until the partition heals; signups routed to it are handed off",
                running.join(", "),
                running.len(),
                self.nodes.len(),
                unreachable.join(", ")
            )
        } else {
            format!(
                "{} down or cut off ({} of {} nodes running): the majority goes on; a vhost created meanwhile \
                 is stopped there until the node returns and reconcile starts it",
                unreachable.join(", "),
                running.len(),
                self.nodes.len()
            )
        })
    }
}

/// The exchanges RabbitMQ declares in every vhost it creates: the default exchange (`""`) and the
/// `amq.*` ones. No client can delete them, so a vhost without one of them is a vhost whose
/// creation was cut short (the client that sent `PUT /api/vhosts/<name>` went away while the
/// broker was declaring them): every publish to a queue by name fails there with
/// `NOT_FOUND - no exchange ''`.
pub const BUILT_IN_EXCHANGES: [&str; 6] = [
    "",
    "amq.direct",
    "amq.fanout",
    "amq.headers",
    "amq.match",
    "amq.topic",
];

/// An exchange as `GET /api/exchanges/<vhost>?columns=name` reports it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Exchange {
    pub name: String,
}

/// Which of [`BUILT_IN_EXCHANGES`] `exchanges` lacks (`""` shown as `(default)`).
pub fn missing_built_in_exchanges(exchanges: &[Exchange]) -> Vec<&'static str> {
    BUILT_IN_EXCHANGES
        .iter()
        .filter(|b| !exchanges.iter().any(|e| e.name == **b))
        .map(|b| if b.is_empty() { "(default)" } else { b })
        .collect()
}

/// A user as the API reports it. The password hash is salted (RabbitMQ's
/// `rabbit_password_hashing_*`): it proves a password without revealing it, and is never shown.
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    #[serde(default, deserialize_with = "tags_from_list_or_string")]
    pub tags: Vec<String>,
    #[serde(default)]
    password_hash: String,
    #[serde(default)]
    hashing_algorithm: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Whether `password` is this user's: RabbitMQ stores base64(salt ++ H(salt ++ password))
    /// with a 4-byte salt and H from `hashing_algorithm` (SHA-256 by default, SHA-512 where
    /// configured). Compared in constant time. `false` for users without a password and for the
    /// legacy MD5 scheme (RabbitMQ before 3.6).
    pub fn has_password(&self, password: &Password) -> bool {
        use base64::Engine;
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let Ok(stored) = base64::engine::general_purpose::STANDARD.decode(self.password_hash.trim()) else {
            return false;
        };
        if stored.len() <= 4 {
            return false;
        }
        let (salt, hash) = stored.split_at(4);
        let computed: Vec<u8> = match self.hashing_algorithm.as_str() {
            "rabbit_password_hashing_sha256" | "" => sha2::Sha256::new()
                .chain_update(salt)
                .chain_update(password.expose())
                .finalize()
                .to_vec(),
            "rabbit_password_hashing_sha512" => sha2::Sha512::new()
                .chain_update(salt)
                .chain_update(password.expose())
                .finalize()
                .to_vec(),
            _ => return false,
        };
        computed.len() == hash.len() && bool::from(computed.ct_eq(hash))
    }
}

/// A user's permission on one vhost.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Permission {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

// RabbitMQ 3.x reports tags as a comma-separated string, 3.9+ as a list: accept both.
fn tags_from_list_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Tags::deserialize(d)? {
        Tags::List(list) => list,
        Tags::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn user(hash: &str, algorithm: &str) -> User {
        User {
            name: "u".into(),
            tags: vec![],
            password_hash: hash.into(),
            hashing_algorithm: algorithm.into(),
        }
    }

    #[test]
    fn a_vhost_cut_short_lacks_built_in_exchanges() {
        let named = |names: &[&str]| -> Vec<Exchange> {
            names.iter().map(|n| Exchange { name: (*n).into() }).collect()
        };
        let complete = named(&[
            "",
            "amq.direct",
            "amq.fanout",
            "amq.headers",
            "amq.match",
            "amq.rabbitmq.trace",
            "amq.topic",
            "tenant.own",
        ]);
        assert!(missing_built_in_exchanges(&complete).is_empty());
        assert_eq!(
            missing_built_in_exchanges(&named(&["amq.direct", "amq.fanout", "amq.headers"])),
            ["(default)", "amq.match", "amq.topic"]
        );
    }

    #[test]
    fn a_password_is_checked_against_rabbitmqs_salted_hash() {
        // Made by RabbitMQ 3.10 for password `s3cret`.
        let u = user(
            "u4ztcx2N6czrDkKFH0fMqJnGWuxFBW7SpHbbs4jHbIl414OC",
            "rabbit_password_hashing_sha256",
        );
        assert!(u.has_password(&Password::new("s3cret")));
        assert!(!u.has_password(&Password::new("s3cret ")));
        assert!(!user("", "rabbit_password_hashing_sha256").has_password(&Password::new("")));
        assert!(!user("bm90IGJhc2U2NA", "rabbit_password_hashing_md5").has_password(&Password::new("x")));
        assert!(!format!("{u:?}").contains("u4zt"), "the hash is never shown");
    }
}
