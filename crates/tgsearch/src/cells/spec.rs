//! What a cell is: a broker, a Kubernetes cluster and namespace, the backends' storage class, a
//! capacity in tenants and a state. Cells live in the registry (DynamoDB), one item each; this
//! module reads and writes an item's fields as plain strings and validates them, so that a cell
//! whose settings are broken is reported by name and field and never stops the others.

use std::collections::BTreeMap;

use crate::cluster::{ClusterTarget, DEFAULT_KUBE_NAMESPACE, KubeConfig};
use crate::env::{Url, parse_url, require_tls};

/// Amazon MQ for RabbitMQ allows at most this many vhosts per broker (one per tenant).
pub const AMAZON_MQ_VHOST_LIMIT: u32 = 1_500;
/// The most tenants any cell may be given (a self-run broker's practical ceiling).
pub const MAX_CAPACITY: u32 = 100_000;

/// A cell's name: 1 to 32 of `a-z`, `0-9` and `-`, starting with a letter or digit (it appears
/// in metric dimensions, stack names and log lines).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct CellId(String);

impl CellId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = (1..=32).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !raw.starts_with('-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            let shown: String = raw.chars().take(40).collect();
            Err(format!(
                "`{shown}` is not a cell name (1 to 32 of a-z, 0-9 and -, not starting with -)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CellId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a cell takes new tenants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    /// Takes new tenants while below its capacity.
    Open,
    /// Keeps and serves its tenants, takes no new ones.
    Draining,
    /// Takes no new tenants; what it still holds is served until moved or removed.
    Closed,
}

impl CellState {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "open" => Some(Self::Open),
            "draining" => Some(Self::Draining),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Draining => "draining",
            Self::Closed => "closed",
        }
    }
}

/// Which management API the cell's broker is: both speak RabbitMQ's HTTP API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerKind {
    /// A RabbitMQ cluster of the Cluster Operator (or any self-run RabbitMQ).
    Rabbitmq,
    /// Amazon MQ for RabbitMQ: at most [`AMAZON_MQ_VHOST_LIMIT`] tenants.
    AmazonMq,
}

impl BrokerKind {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "rabbitmq" => Some(Self::Rabbitmq),
            "amazon-mq" => Some(Self::AmazonMq),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rabbitmq => "rabbitmq",
            Self::AmazonMq => "amazon-mq",
        }
    }

    /// The most tenants a broker of this kind holds.
    pub fn max_capacity(self) -> u32 {
        match self {
            Self::Rabbitmq => MAX_CAPACITY,
            Self::AmazonMq => AMAZON_MQ_VHOST_LIMIT,
        }
    }
}

/// How to reach a cell's broker and cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellSpec {
    pub broker: BrokerKind,
    /// The broker's management API (`https://...:15671`, or `http` on this machine).
    pub management_url: Url,
    /// What tenants' `amqp_uri` name (`amqps://...:5671`).
    pub amqp_url: Url,
    /// Secrets Manager id of this broker's administrator (`{"username","password"}`).
    pub admin_secret_id: String,
    /// The cell's EKS cluster (or kubeconfig) and the tenants' namespace.
    pub kube: KubeConfig,
    /// The backends' storage class in this cluster (unset: the cluster's default class).
    pub storage_class: Option<String>,
    /// Plaintext URLs to another machine allowed (the network is private).
    pub allow_plaintext: bool,
}

/// A cell as the registry holds it. `spec` is an error when its settings are broken: such a
/// cell gets no tenants and its own tenants' requests fail, naming it; the others go on.
#[derive(Clone, Debug)]
pub struct Cell {
    pub id: CellId,
    pub state: CellState,
    pub capacity: u32,
    /// Tenants mapped to it (the registry's counter, kept with each placement; 0 when the
    /// counter is missing or below zero).
    pub tenants: u32,
    /// The counter as stored (`None`: missing), for its repair.
    pub counter: Option<i64>,
    pub spec: Result<CellSpec, SpecError>,
}

impl Cell {
    /// Tenants against capacity, 0.0 to 1.0 (and above, should a capacity be lowered).
    pub fn fill(&self) -> f64 {
        if self.capacity == 0 {
            return 1.0;
        }
        f64::from(self.tenants) / f64::from(self.capacity)
    }

    /// Open, healthy settings, room left.
    pub fn takes_tenants(&self) -> bool {
        self.state == CellState::Open && self.spec.is_ok() && self.tenants < self.capacity
    }
}

/// A field of a cell's item that is missing or malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cell `{cell}`: field `{field}` {reason}")]
pub struct SpecError {
    pub cell: String,
    pub field: &'static str,
    pub reason: String,
}

/// The item's field names.
pub mod field {
    pub const CELL: &str = "cell";
    pub const STATE: &str = "state";
    pub const CAPACITY: &str = "capacity";
    pub const TENANTS: &str = "tenants";
    pub const BROKER: &str = "broker";
    pub const MANAGEMENT_URL: &str = "management_url";
    pub const AMQP_URL: &str = "amqp_url";
    pub const ADMIN_SECRET_ID: &str = "admin_secret_id";
    pub const EKS_CLUSTER: &str = "eks_cluster";
    pub const EKS_ENDPOINT: &str = "eks_endpoint";
    pub const EKS_CA: &str = "eks_ca";
    pub const NAMESPACE: &str = "namespace";
    pub const STORAGE_CLASS: &str = "storage_class";
    /// `true`: plaintext URLs to another machine are allowed (a private network).
    pub const ALLOW_PLAINTEXT: &str = "allow_plaintext";
}

/// The registry item's fields as strings (numbers in decimal).
pub type Fields = BTreeMap<String, String>;

impl Cell {
    /// Reads an item. Only the id must be sound; every other fault lands in `spec`.
    pub fn from_fields(id: CellId, fields: &Fields) -> Self {
        let get = |name: &str| fields.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let counter: Option<i64> = get(field::TENANTS).and_then(|n| n.parse().ok());
        let tenants = counter.map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
        let fail = |field: &'static str, reason: String| SpecError {
            cell: id.to_string(),
            field,
            reason,
        };
        let state = get(field::STATE).and_then(CellState::parse);
        let capacity = get(field::CAPACITY).and_then(|n| n.parse::<u32>().ok());
        let spec = match (state, capacity) {
            (None, _) => Err(fail(field::STATE, "is not open, draining or closed".into())),
            (_, None) => Err(fail(field::CAPACITY, "is not a whole number of tenants".into())),
            (Some(_), Some(capacity)) => CellSpec::from_fields(&id, fields)
                .and_then(|spec| check_capacity(&id, spec.broker, capacity).map(|()| spec)),
        };
        Self {
            state: state.unwrap_or(CellState::Closed),
            capacity: capacity.unwrap_or(0),
            tenants,
            counter,
            spec,
            id,
        }
    }

    /// The item for a new cell (its counter at zero).
    pub fn new_fields(id: &CellId, state: CellState, capacity: u32, spec: &CellSpec) -> Fields {
        let mut fields = spec.to_fields();
        fields.insert(field::CELL.into(), id.to_string());
        fields.insert(field::STATE.into(), state.as_str().into());
        fields.insert(field::CAPACITY.into(), capacity.to_string());
        fields.insert(field::TENANTS.into(), "0".into());
        fields
    }
}

/// A capacity the broker can hold.
pub fn check_capacity(id: &CellId, broker: BrokerKind, capacity: u32) -> Result<(), SpecError> {
    if capacity > broker.max_capacity() {
        return Err(SpecError {
            cell: id.to_string(),
            field: field::CAPACITY,
            reason: format!(
                "is {capacity}, above what a {} broker holds ({} vhosts)",
                broker.as_str(),
                broker.max_capacity()
            ),
        });
    }
    Ok(())
}

impl CellSpec {
    pub fn from_fields(id: &CellId, fields: &Fields) -> Result<Self, SpecError> {
        let fail = |field: &'static str, reason: String| SpecError {
            cell: id.to_string(),
            field,
            reason,
        };
        let get = |name: &str| {
            fields
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.trim().is_empty())
        };
        let need = |name: &'static str| get(name).ok_or_else(|| fail(name, "is missing".into()));
        let allow_plaintext = get(field::ALLOW_PLAINTEXT) == Some("true");
        let url = |name: &'static str, schemes: &[&str], secure: &str| -> Result<Url, SpecError> {
            let url = parse_url(name, need(name)?, schemes).map_err(|e| fail(name, reason_of(e)))?;
            // Clear text only to this machine, or inside a network the operator says is private.
            require_tls(
                name,
                &url,
                secure,
                "passwords",
                (allow_plaintext, "the cell's allow_plaintext"),
            )
            .map_err(|e| fail(name, reason_of(e)))?;
            Ok(url)
        };
        let broker = match get(field::BROKER) {
            None => BrokerKind::Rabbitmq,
            Some(raw) => BrokerKind::parse(raw)
                .ok_or_else(|| fail(field::BROKER, "is not rabbitmq or amazon-mq".into()))?,
        };
        let management_url = url(field::MANAGEMENT_URL, &["http", "https"], "https")?;
        let amqp_url = url(field::AMQP_URL, &["amqp", "amqps"], "amqps")?;
        let admin_secret_id = need(field::ADMIN_SECRET_ID)?.to_owned();
        let namespace = get(field::NAMESPACE).unwrap_or(DEFAULT_KUBE_NAMESPACE).to_owned();
        let target = match get(field::EKS_CLUSTER) {
            None => ClusterTarget::Kubeconfig,
            Some(name) => {
                let endpoint_and_ca = match (get(field::EKS_ENDPOINT), get(field::EKS_CA)) {
                    (Some(e), Some(c)) => {
                        parse_url(field::EKS_ENDPOINT, e, &["https"])
                            .map_err(|err| fail(field::EKS_ENDPOINT, reason_of(err)))?;
                        Some((e.to_owned(), c.to_owned()))
                    }
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(fail(field::EKS_CA, "must be set with eks_endpoint".into()));
                    }
                    (None, Some(_)) => {
                        return Err(fail(field::EKS_ENDPOINT, "must be set with eks_ca".into()));
                    }
                };
                ClusterTarget::Eks {
                    name: name.to_owned(),
                    endpoint_and_ca,
                }
            }
        };
        Ok(Self {
            broker,
            management_url,
            amqp_url,
            admin_secret_id,
            kube: KubeConfig { target, namespace },
            storage_class: get(field::STORAGE_CLASS).map(str::to_owned),
            allow_plaintext,
        })
    }

    pub fn to_fields(&self) -> Fields {
        let mut fields = Fields::new();
        let mut put = |k: &str, v: &str| {
            fields.insert(k.to_owned(), v.to_owned());
        };
        put(field::BROKER, self.broker.as_str());
        put(field::MANAGEMENT_URL, self.management_url.as_str());
        put(field::AMQP_URL, self.amqp_url.as_str());
        put(field::ADMIN_SECRET_ID, &self.admin_secret_id);
        put(field::NAMESPACE, &self.kube.namespace);
        if let ClusterTarget::Eks {
            name,
            endpoint_and_ca,
        } = &self.kube.target
        {
            put(field::EKS_CLUSTER, name);
            if let Some((endpoint, ca)) = endpoint_and_ca {
                put(field::EKS_ENDPOINT, endpoint);
                put(field::EKS_CA, ca);
            }
        }
        if let Some(class) = &self.storage_class {
            put(field::STORAGE_CLASS, class);
        }
        if self.allow_plaintext {
            put(field::ALLOW_PLAINTEXT, "true");
        }
        fields
    }

    /// Whether both name the same broker, administrator, cluster, namespace and storage class.
    pub fn same_place(&self, other: &CellSpec) -> bool {
        self.management_url == other.management_url
            && self.amqp_url == other.amqp_url
            && self.admin_secret_id == other.admin_secret_id
            && self.kube == other.kube
            && self.storage_class == other.storage_class
    }

    /// The cluster's name for people: the EKS cluster, or `kubeconfig`.
    pub fn cluster_name(&self) -> &str {
        match &self.kube.target {
            ClusterTarget::Eks { name, .. } => name,
            ClusterTarget::Kubeconfig => "kubeconfig",
        }
    }
}

fn reason_of(e: crate::env::ConfigError) -> String {
    match e {
        crate::env::ConfigError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const GOOD: &[(&str, &str)] = &[
        ("state", "open"),
        ("capacity", "30"),
        ("tenants", "7"),
        ("management_url", "https://mq-b.internal:15671"),
        ("amqp_url", "amqps://mq-b.internal:5671"),
        ("admin_secret_id", "tgsearch/cells/b/rabbitmq-admin"),
        ("eks_cluster", "tgsearch-b"),
        ("namespace", "tgsearch"),
    ];

    fn id(s: &str) -> CellId {
        CellId::parse(s).unwrap()
    }

    #[test]
    fn a_sound_item_reads_and_writes_back_the_same() {
        let cell = Cell::from_fields(id("b"), &fields(GOOD));
        let spec = cell.spec.clone().unwrap();
        assert_eq!(
            (cell.state, cell.capacity, cell.tenants),
            (CellState::Open, 30, 7)
        );
        assert!(cell.takes_tenants());
        assert_eq!(spec.cluster_name(), "tgsearch-b");
        let again = Cell::from_fields(id("b"), &Cell::new_fields(&id("b"), CellState::Open, 30, &spec));
        assert_eq!(again.spec.unwrap(), spec);
        assert_eq!(again.tenants, 0);
    }

    #[test]
    fn a_broken_item_names_the_cell_and_the_field_and_takes_no_tenants() {
        for (name, value, reason) in [
            ("management_url", "http://mq-b.internal:15672", "clear text"),
            ("amqp_url", "https://mq-b.internal", "scheme"),
            ("state", "full", "open, draining or closed"),
            ("capacity", "lots", "whole number"),
            ("eks_endpoint", "https://x.eks.amazonaws.com", "eks_ca"),
            ("broker", "kafka", "rabbitmq or amazon-mq"),
        ] {
            let mut item = fields(GOOD);
            item.insert(name.into(), value.into());
            let cell = Cell::from_fields(id("b"), &item);
            let err = cell.spec.as_ref().unwrap_err().to_string();
            assert!(err.contains("cell `b`") && err.contains(reason), "{name}: {err}");
            assert!(!cell.takes_tenants());
        }
        let mut item = fields(GOOD);
        item.remove("admin_secret_id");
        let err = Cell::from_fields(id("b"), &item).spec.unwrap_err();
        assert_eq!(err.field, "admin_secret_id");
    }

    #[test]
    fn an_amazon_mq_cell_holds_at_most_its_vhost_limit() {
        let mut item = fields(GOOD);
        item.insert("broker".into(), "amazon-mq".into());
        item.insert("capacity".into(), "1500".into());
        assert!(Cell::from_fields(id("b"), &item).spec.is_ok());
        item.insert("capacity".into(), "1501".into());
        let err = Cell::from_fields(id("b"), &item).spec.unwrap_err().to_string();
        assert!(err.contains("1500 vhosts"), "{err}");
    }

    #[test]
    fn the_same_place_is_the_same_broker_admin_cluster_namespace_and_class() {
        let spec = Cell::from_fields(id("b"), &fields(GOOD)).spec.unwrap();
        let mut other = spec.clone();
        other.broker = BrokerKind::AmazonMq;
        other.allow_plaintext = true;
        assert!(spec.same_place(&other));
        other.kube.namespace = "elsewhere".into();
        assert!(!spec.same_place(&other));
        let mut other = spec.clone();
        other.admin_secret_id = "another".into();
        assert!(!spec.same_place(&other));
    }

    #[test]
    fn cell_names_are_short_and_plain() {
        for good in ["a", "eu-west-1-b", "cell-07"] {
            CellId::parse(good).unwrap();
        }
        for bad in ["", "-a", "A", "a_b", "a b", &"x".repeat(33)] {
            assert!(CellId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_or_closed_cell_takes_no_one_and_fill_is_tenants_over_capacity() {
        let mut cell = Cell::from_fields(id("b"), &fields(GOOD));
        assert!((cell.fill() - 7.0 / 30.0).abs() < 1e-9);
        cell.tenants = 30;
        assert!(!cell.takes_tenants());
        cell.tenants = 1;
        cell.state = CellState::Draining;
        assert!(!cell.takes_tenants());
    }
}
