//! The local stack's fixed layout: ports, names, the state directory, and the environment that
//! points the Lambdas, the CLI, `aws` and `kubectl` at it.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use tgsearch::app::{AppContext, http_client};
use tgsearch::config::{Env, ProvisionerConfig};

pub const HOST: &str = "127.0.0.1";
/// RabbitMQ's default base port (AMQP); see [`amqp_port`].
pub const AMQP_PORT: u16 = 5672;
pub const MANAGEMENT_PORT: u16 = AMQP_PORT + 10000;
/// Moves every RabbitMQ port of the stack (a second stack beside the shared one).
pub const RABBITMQ_PORT_VAR: &str = "TGSEARCH_STACK_RABBITMQ_PORT";
pub const MOTO_PORT: u16 = 5000;
/// Where `cargo lambda watch` serves the Lambda invoke API (cargo-lambda's default port).
pub const LAMBDA_PORT: u16 = 9000;
/// The Kubernetes API stand-in (HTTPS).
pub const KUBE_PORT: u16 = 6443;
/// The cluster name EKS tokens are signed for.
pub const CLUSTER_NAME: &str = "tgsearch-local";
/// kubectl's identity on the stand-in: a credential pair of its own (local and fixed, like the
/// stack's `testing` pair), mapped to a `system:masters` user. The Lambdas and the CLI sign
/// with the stack's AWS credentials, mapped to [`KUBE_PROVISIONER_USER`] in the group
/// `tgsearch-provisioner`, which `manifests/cluster/provisioner-rbac.yaml` binds.
pub const KUBE_ADMIN_ACCESS_KEY_ID: &str = "tgsearch-local-admin";
pub const KUBE_ADMIN_SECRET_ACCESS_KEY: &str = "tgsearch-local-admin-secret";
pub const KUBE_ADMIN_USER: &str = "kubernetes-admin";
/// The stand-in's user for the stack's credentials, shaped like an EKS access entry's.
pub const KUBE_PROVISIONER_USER: &str =
    "arn:aws:sts::123456789012:assumed-role/tgsearch-provisioner/tgsearch-provisioner";
pub const NAMESPACE: &str = "tgsearch";
/// The backend image written into Deployments (nothing pulls it locally).
pub const BACKEND_IMAGE: &str = "ghcr.io/tgsearch/core:latest";
pub const REGION: &str = "us-east-1";
pub const ADMIN_SECRET_ID: &str = "tgsearch/rabbitmq-admin";
pub const ADMIN_USER: &str = "tgsearch-admin";
/// Mailgun's webhook signing key, generated for the stack.
pub const MAILGUN_KEY_SECRET_ID: &str = "tgsearch/mailgun-signing-key";
/// The alert topic (tests subscribe queues of their own to read what was alerted).
pub const ALERT_TOPIC: &str = "tgsearch-alerts";
/// The provisioning hand-off queue and its dead-letter queue (SQS).
pub const PROVISION_QUEUE: &str = "tgsearch-provision";
pub const PROVISION_DLQ: &str = "tgsearch-provision-dlq";
/// The mailgun-webhook's delivery ledger (DynamoDB).
pub const DEDUP_TABLE: &str = "tgsearch-mailgun-deliveries";
/// The tenant guard table: per-tenant locks and rate counters.
pub const TENANT_GUARD_TABLE: &str = "tgsearch-tenant-guard";
/// The cell registry and the tenant→cell map (DynamoDB).
pub const CELLS_TABLE: &str = "tgsearch-cells";
pub const TENANT_CELLS_TABLE: &str = "tgsearch-tenant-cells";
/// Cell `b` of `stack up --cells 2`: a one-node RabbitMQ cluster of its own (behind its own
/// HAProxy) on this AMQP base port (management 10000 above), and a Kubernetes API stand-in of
/// its own (its own port and CA) for an EKS cluster of this name.
pub const CELL_B_AMQP_PORT: u16 = 5772;
pub const CELL_B_KUBE_PORT: u16 = 6444;
pub const CELL_B_CLUSTER_NAME: &str = "tgsearch-local-b";
pub const CELL_B_ADMIN_SECRET_ID: &str = "tgsearch/cells/b/rabbitmq-admin";

/// One cell of the local stack: where its broker and its cluster are.
#[derive(Clone, Debug)]
pub struct LocalCell {
    pub name: &'static str,
    /// Its state directory (cell `a` is the stack's own).
    pub dir: PathBuf,
    pub amqp_port: u16,
    pub kube_port: u16,
    pub cluster_name: &'static str,
    pub admin_secret_id: &'static str,
}

impl LocalCell {
    pub fn management_url(&self) -> String {
        format!("http://{HOST}:{}", self.amqp_port + 10000)
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://{HOST}:{}", self.amqp_port)
    }

    pub fn kube_endpoint(&self) -> String {
        format!("https://{HOST}:{}", self.kube_port)
    }

    pub fn kube_ca_file(&self) -> PathBuf {
        self.dir.join("kube/ca.pem")
    }

    /// Its registry item's settings (the stand-in's CA as DescribeCluster gives it).
    pub fn fields(&self, capacity: u32) -> BTreeMap<String, String> {
        use base64::Engine;
        let ca = std::fs::read(self.kube_ca_file())
            .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem))
            .unwrap_or_default();
        [
            ("cell", self.name.to_owned()),
            ("state", "open".to_owned()),
            ("capacity", capacity.to_string()),
            ("broker", "rabbitmq".to_owned()),
            ("management_url", self.management_url()),
            ("amqp_url", self.amqp_url()),
            ("admin_secret_id", self.admin_secret_id.to_owned()),
            ("eks_cluster", self.cluster_name.to_owned()),
            ("eks_endpoint", self.kube_endpoint()),
            ("eks_ca", ca),
            ("namespace", NAMESPACE.to_owned()),
            ("storage_class", "gp3".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The local stack's cells: `a` is the stack's own broker and stand-in, `b` the second pair
/// `stack up --cells 2` runs.
pub fn local_cells() -> [LocalCell; 2] {
    [
        LocalCell {
            name: "a",
            dir: dir(),
            amqp_port: amqp_port(),
            kube_port: KUBE_PORT,
            cluster_name: CLUSTER_NAME,
            admin_secret_id: ADMIN_SECRET_ID,
        },
        LocalCell {
            name: "b",
            dir: dir().join("cell-b"),
            amqp_port: CELL_B_AMQP_PORT,
            kube_port: CELL_B_KUBE_PORT,
            cluster_name: CELL_B_CLUSTER_NAME,
            admin_secret_id: CELL_B_ADMIN_SECRET_ID,
        },
    ]
}

/// moto's default account.
pub const ACCOUNT: &str = "123456789012";
/// Variable naming the emulator's invoke endpoint, for tests and the demo.
pub const LAMBDA_ENDPOINT_VAR: &str = "TGSEARCH_LAMBDA_ENDPOINT";

/// The stack's AMQP port, the base every RabbitMQ port derives from: the management API is
/// 10000 above it, a cluster's nodes are the ports just above both (see [`crate::cluster`]).
/// `TGSEARCH_STACK_RABBITMQ_PORT` moves it (default 5672).
pub fn amqp_port() -> u16 {
    std::env::var(RABBITMQ_PORT_VAR)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(AMQP_PORT)
}

/// The stack's management API port: [`amqp_port`] + 10000.
pub fn management_port() -> u16 {
    amqp_port() + 10000
}

/// The stack's state directory: logs, pid files, RabbitMQ data, the Python venv.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TGSEARCH_STACK_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".local/state/tgsearch-stack")
}

/// The venv that holds the stack's Python tools (moto, cargo-lambda, cfn-lint), never the
/// system Python.
pub fn venv_bin() -> PathBuf {
    dir().join("venv/bin")
}

/// The venv with kubernetes-validate and checkov.
pub fn k8s_lint_bin() -> PathBuf {
    dir().join("venv-k8s-lint/bin")
}

/// The venv with the AWS CLI, the reference implementation of `aws eks get-token`.
pub fn awscli_bin() -> PathBuf {
    dir().join("venv-awscli/bin")
}

/// The id of the stack's Cognito user pool in moto (written by `stack up`).
pub fn user_pool_file() -> PathBuf {
    dir().join("user-pool-id")
}

/// The URL of the provisioning queue in moto (written by `stack up`).
pub fn provision_queue_file() -> PathBuf {
    dir().join("provision-queue-url")
}

/// The id of the frontend's app client in that pool (written by `stack up`).
pub fn user_pool_client_file() -> PathBuf {
    dir().join("user-pool-client-id")
}

/// The name of the frontend's app client `stack up` creates in the stack's pool.
pub const FRONTEND_CLIENT_NAME: &str = "tgsearch-frontend";

/// Variable naming the log file of the Lambda emulator the tests talk to (default: the stack's).
pub const LAMBDA_LOG_VAR: &str = "TGSEARCH_LAMBDA_LOG";

/// The log of the Lambda emulator the tests talk to: the stack's `lambda.log`, or
/// `$TGSEARCH_LAMBDA_LOG` for a developer's own `cargo lambda watch`.
pub fn lambda_log() -> PathBuf {
    std::env::var_os(LAMBDA_LOG_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| dir().join("lambda.log"))
}

/// The stand-in's CA (written when it starts) and the kubeconfig `stack up` writes.
pub fn kube_ca_file() -> PathBuf {
    dir().join("kube/ca.pem")
}
pub fn kubeconfig_file() -> PathBuf {
    dir().join("kubeconfig")
}

/// The environment of the local stack, as `cargo xtask stack env` prints it.
pub fn exports() -> BTreeMap<&'static str, String> {
    use base64::Engine;
    let aws = format!("http://{HOST}:{MOTO_PORT}");
    // As DescribeCluster returns it: base64 of the PEM. Empty until the stand-in has started.
    let ca = std::fs::read(kube_ca_file())
        .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem))
        .unwrap_or_default();
    let pool = std::fs::read_to_string(user_pool_file())
        .unwrap_or_default()
        .trim()
        .to_owned();
    BTreeMap::from([
        ("EKS_CLUSTER_NAME", CLUSTER_NAME.into()),
        ("EKS_CLUSTER_ENDPOINT", format!("https://{HOST}:{KUBE_PORT}")),
        ("EKS_CLUSTER_CA", ca),
        ("KUBECONFIG", kubeconfig_file().display().to_string()),
        ("KUBE_NAMESPACE", NAMESPACE.into()),
        ("BACKEND_IMAGE", BACKEND_IMAGE.into()),
        // As manifests/cluster/storage-class.yaml on EKS: a class that allows expansion.
        ("BACKEND_STORAGE_CLASS", "gp3".into()),
        ("MAILGUN_SIGNING_KEY_SECRET_ID", MAILGUN_KEY_SECRET_ID.into()),
        ("MAILGUN_DEDUP_TABLE", DEDUP_TABLE.into()),
        ("TENANT_GUARD_TABLE", TENANT_GUARD_TABLE.into()),
        ("CELLS_TABLE", CELLS_TABLE.into()),
        ("TENANT_CELLS_TABLE", TENANT_CELLS_TABLE.into()),
        // tenant-credentials holds no provisioner rights: it asks the provisioning worker, here
        // through the emulator's Invoke API (the SDK's endpoint for Lambda alone).
        ("TENANT_ACCESS_FUNCTION", "provision-worker".into()),
        ("AWS_ENDPOINT_URL_LAMBDA", format!("http://{HOST}:{LAMBDA_PORT}")),
        (
            "PROVISION_QUEUE_URL",
            std::fs::read_to_string(provision_queue_file())
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
        (
            "ALERT_TOPIC_ARN",
            format!("arn:aws:sns:{REGION}:{ACCOUNT}:{ALERT_TOPIC}"),
        ),
        ("USER_POOL_ID", pool.clone()),
        (
            "USER_POOL_CLIENT_ID",
            std::fs::read_to_string(user_pool_client_file())
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
        // moto serves every pool's keys at its own address; the issuer in its tokens is AWS's.
        (
            "USER_POOL_JWKS_URL",
            format!("http://{HOST}:{MOTO_PORT}/{pool}/.well-known/jwks.json"),
        ),
        ("AWS_ENDPOINT_URL", aws),
        ("AWS_REGION", REGION.into()),
        ("AWS_DEFAULT_REGION", REGION.into()),
        // moto accepts any credentials; fixed ones keep real ones out of local runs.
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        (
            "RABBITMQ_MANAGEMENT_URL",
            format!("http://{HOST}:{}", management_port()),
        ),
        ("RABBITMQ_AMQP_URL", format!("amqp://{HOST}:{}", amqp_port())),
        ("RABBITMQ_ADMIN_SECRET_ID", ADMIN_SECRET_ID.into()),
        (
            "USER_SECRET_PREFIX",
            tgsearch::config::DEFAULT_USER_SECRET_PREFIX.into(),
        ),
        (LAMBDA_ENDPOINT_VAR, format!("http://{HOST}:{LAMBDA_PORT}")),
    ])
}

/// The RabbitMQ administrator the stack bootstrapped, read from its Secrets Manager secret as the
/// functions read it.
pub async fn rabbitmq_admin(app: &AppContext) -> tgsearch::adapters::rabbitmq::AdminCredentials {
    app.provisioner
        .store
        .read_json(ADMIN_SECRET_ID, tgsearch::app::ADMIN_SECRET_SHAPE)
        .await
        .expect("the stack's admin secret can be read")
        .expect("the stack's admin secret: run `cargo xtask stack up`")
}

/// A handle on the running stack. Values come from the process environment where set (as
/// `cargo xtask test` sets them), else from the stack's fixed defaults.
#[derive(Debug, Clone)]
pub struct Stack {
    vars: BTreeMap<String, String>,
}

const NOT_RUNNING: &str = "the local stack is not running: start it with `cargo xtask stack up` (or run everything with `cargo xtask test`)";

fn listening(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(addr) = url.socket_addrs(|| None).ok().and_then(|a| a.into_iter().next()) else {
        return false;
    };
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

impl Stack {
    /// The running stack; panics with how to start it when RabbitMQ or moto does not answer.
    pub fn require() -> Self {
        let vars = exports()
            .into_iter()
            .map(|(k, v)| (k.to_string(), std::env::var(k).unwrap_or(v)))
            .collect();
        let stack = Self { vars };
        for (what, var) in [
            ("RabbitMQ", "RABBITMQ_MANAGEMENT_URL"),
            ("moto", "AWS_ENDPOINT_URL"),
        ] {
            assert!(
                listening(stack.var(var)),
                "{what} does not answer at {}: {NOT_RUNNING}",
                stack.var(var)
            );
        }
        stack
    }

    /// The Lambda emulator's base URL; panics with how to start it when it does not answer.
    pub fn lambda_endpoint(&self) -> &str {
        let url = self.var(LAMBDA_ENDPOINT_VAR);
        assert!(
            listening(url),
            "the Lambda emulator does not answer at {url}: {NOT_RUNNING}"
        );
        url
    }

    /// The frontend's app client in the stack's user pool; panics with how to create it.
    pub fn frontend_client_id(&self) -> &str {
        let id = self.var("USER_POOL_CLIENT_ID");
        assert!(
            !id.is_empty(),
            "the stack has no frontend app client (USER_POOL_CLIENT_ID): run `cargo xtask stack up`"
        );
        id
    }

    pub fn var(&self, name: &str) -> &str {
        self.vars.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn lookup(&self) -> Env<impl Fn(&str) -> Option<String> + '_> {
        Env::from_lookup(move |name| self.vars.get(name).cloned())
    }

    pub fn config(&self) -> ProvisionerConfig {
        ProvisionerConfig::from(&self.lookup()).expect("the stack's environment is a valid configuration")
    }

    /// An AWS configuration aimed at moto, independent of the process environment.
    pub async fn aws(&self) -> aws_config::SdkConfig {
        use aws_sdk_secretsmanager::config::{Credentials, Region};
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .region(Region::new(self.var("AWS_REGION").to_owned()))
            .credentials_provider(Credentials::new(
                self.var("AWS_ACCESS_KEY_ID"),
                self.var("AWS_SECRET_ACCESS_KEY"),
                None,
                None,
                "tgsearch-stack",
            ))
            .load()
            .await
    }

    /// The same context the Lambdas build at cold start, aimed at this stack.
    pub async fn app(&self) -> AppContext {
        AppContext::new(self.config(), &self.aws().await, http_client().unwrap())
            .await
            .unwrap_or_else(|e| panic!("cannot build the app context against the stack ({e}): {NOT_RUNNING}"))
    }
}
