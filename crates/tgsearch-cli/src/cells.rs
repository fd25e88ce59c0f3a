//! `tgsearch cells ...`: the cell registry (CELLS_TABLE) and the tenant→cell map
//! (TENANT_CELLS_TABLE).

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tgsearch::adapters::cell_registry::DynamoCells;
use tgsearch::adapters::cognito::CognitoDirectory;
use tgsearch::app::AppContext;
use tgsearch::cells::spec::{Fields, check_capacity, field};
use tgsearch::cells::{Assigned, BrokerKind, Cell, CellHealth, CellId, CellRegistry, CellSpec, CellState};
use tgsearch::config::{Env, ReconcileConfig};

#[derive(Subcommand)]
pub enum CellsCommand {
    /// Every cell: state, tenants, capacity, fill and health (its broker asked now).
    List,
    /// Register a cell. Its broker must answer with the admin secret given, unless --no-check.
    Add(Box<AddCell>),
    /// Let the cell take new tenants again.
    Open { cell: String },
    /// Keep the cell's tenants, give it no new ones.
    Drain { cell: String },
    /// Give the cell no new tenants (as drain; for a cell being emptied or retired).
    Close { cell: String },
    /// Set how many tenants the cell may hold (at most 1500 on Amazon MQ).
    SetCapacity { cell: String, capacity: u32 },
    /// Register the deployment's own broker and cluster (RABBITMQ_*, EKS_*, KUBE_NAMESPACE) as a
    /// cell and map every tenant found on them to it: the first step from one broker to cells.
    /// Safe to repeat; tenants mapped already are left where they are.
    Adopt {
        /// The name of the first cell.
        #[arg(long, default_value = "a")]
        cell: String,
        /// Its capacity in tenants.
        #[arg(long, env = "TENANT_CAPACITY", default_value_t = 1000)]
        capacity: u32,
    },
}

#[derive(Args)]
pub struct AddCell {
    /// The cell's name: 1 to 32 of a-z, 0-9 and -.
    cell: String,
    /// `rabbitmq` (the Cluster Operator's, or any) or `amazon-mq`.
    #[arg(long, default_value = "rabbitmq")]
    broker: String,
    /// The broker's management API, e.g. https://b-1234.mq.eu-west-1.amazonaws.com
    #[arg(long)]
    management_url: String,
    /// What tenants' amqp_uri name, e.g. amqps://b-1234.mq.eu-west-1.amazonaws.com:5671
    #[arg(long)]
    amqp_url: String,
    /// Secrets Manager id of the broker's administrator ({"username","password"}).
    #[arg(long)]
    admin_secret_id: String,
    /// The cell's EKS cluster (unset: KUBECONFIG).
    #[arg(long)]
    eks_cluster: Option<String>,
    /// Its endpoint and CA (base64 PEM), both or neither: they spare a DescribeCluster.
    #[arg(long, requires = "eks_ca")]
    eks_endpoint: Option<String>,
    #[arg(long, requires = "eks_endpoint")]
    eks_ca: Option<String>,
    #[arg(long, default_value = tgsearch::config::DEFAULT_KUBE_NAMESPACE)]
    namespace: String,
    /// The backends' storage class in that cluster (unset: its default class).
    #[arg(long)]
    storage_class: Option<String>,
    #[arg(long)]
    capacity: u32,
    /// `open` (default) or `draining` (registered, taking no one yet).
    #[arg(long, default_value = "open")]
    state: String,
    /// Allow plaintext URLs to another machine (a private network).
    #[arg(long)]
    allow_plaintext: bool,
    /// Register without asking the broker first.
    #[arg(long)]
    no_check: bool,
}

fn registry(app: &AppContext) -> Result<&DynamoCells> {
    app.cells
        .registry()
        .context("CELLS_TABLE and TENANT_CELLS_TABLE are not set: this deployment has no cell registry")
}

fn cell_id(raw: &str) -> Result<CellId> {
    CellId::parse(raw).map_err(anyhow::Error::msg)
}

pub async fn run(as_json: bool, command: CellsCommand) -> Result<ExitCode> {
    let app = AppContext::from_env().await?;
    let registry = registry(&app)?;
    match command {
        CellsCommand::List => list(as_json, &app, registry).await,
        CellsCommand::Add(add) => {
            let id = cell_id(&add.cell)?;
            let state = CellState::parse(&add.state).context("--state must be open or draining")?;
            let mut fields: Fields = [
                (field::BROKER, add.broker.as_str()),
                (field::MANAGEMENT_URL, add.management_url.as_str()),
                (field::AMQP_URL, add.amqp_url.as_str()),
                (field::ADMIN_SECRET_ID, add.admin_secret_id.as_str()),
                (field::NAMESPACE, add.namespace.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            for (name, value) in [
                (field::EKS_CLUSTER, &add.eks_cluster),
                (field::EKS_ENDPOINT, &add.eks_endpoint),
                (field::EKS_CA, &add.eks_ca),
                (field::STORAGE_CLASS, &add.storage_class),
            ] {
                if let Some(v) = value {
                    fields.insert(name.to_owned(), v.clone());
                }
            }
            if add.allow_plaintext {
                fields.insert(field::ALLOW_PLAINTEXT.into(), "true".into());
            }
            let spec = CellSpec::from_fields(&id, &fields)?;
            check_capacity(&id, spec.broker, add.capacity)?;
            let item = Cell::new_fields(&id, state, add.capacity, &spec);
            if !add.no_check {
                let probe = Cell::from_fields(id.clone(), &item);
                app.cells.healthy(&probe).await.map_err(|why| {
                    anyhow::anyhow!(
                        "cell `{id}` does not answer ({why}); fix it, or register it anyway with --no-check"
                    )
                })?;
            }
            registry.add(item).await.map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "cell {id} registered ({}, capacity {})",
                state.as_str(),
                add.capacity
            );
            Ok(ExitCode::SUCCESS)
        }
        CellsCommand::Open { cell } => set_state(registry, &cell, CellState::Open).await,
        CellsCommand::Drain { cell } => set_state(registry, &cell, CellState::Draining).await,
        CellsCommand::Close { cell } => set_state(registry, &cell, CellState::Closed).await,
        CellsCommand::SetCapacity { cell, capacity } => {
            let id = cell_id(&cell)?;
            let found = registry
                .cell(&id)
                .await
                .map_err(|e| anyhow::anyhow!(e))?
                .with_context(|| format!("cell `{id}` is not registered"))?;
            let broker = found
                .spec
                .as_ref()
                .map(|s| s.broker)
                .unwrap_or(BrokerKind::Rabbitmq);
            check_capacity(&id, broker, capacity)?;
            registry
                .set_capacity(&id, capacity)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            if found.tenants > capacity {
                println!(
                    "cell {id}: capacity {capacity}, below the {} tenants it holds: it takes no one until it is below",
                    found.tenants
                );
            } else {
                println!("cell {id}: capacity {capacity} ({} tenants)", found.tenants);
            }
            Ok(ExitCode::SUCCESS)
        }
        CellsCommand::Adopt { cell, capacity } => adopt(&app, registry, &cell, capacity).await,
    }
}

async fn set_state(registry: &DynamoCells, cell: &str, state: CellState) -> Result<ExitCode> {
    let id = cell_id(cell)?;
    registry
        .set_state(&id, state)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("cell {id}: {}", state.as_str());
    Ok(ExitCode::SUCCESS)
}

async fn list(as_json: bool, app: &AppContext, registry: &DynamoCells) -> Result<ExitCode> {
    let cells = registry.cells().await.map_err(|e| anyhow::anyhow!(e))?;
    let health = futures::future::join_all(cells.iter().map(|c| app.cells.healthy(c))).await;
    let all_well = health.iter().all(Result::is_ok);
    if as_json {
        let rows: Vec<serde_json::Value> = cells
            .iter()
            .zip(&health)
            .map(|(c, h)| {
                serde_json::json!({
                    "cell": c.id,
                    "state": c.state,
                    "tenants": c.tenants,
                    "capacity": c.capacity,
                    "fill_percent": (c.fill() * 1000.0).round() / 10.0,
                    "healthy": h.is_ok(),
                    "health": h.as_ref().err(),
                    "settings_error": c.spec.as_ref().err().map(|e| e.to_string()),
                    "broker": c.spec.as_ref().ok().map(|s| s.management_url.as_str()),
                    "amqp_url": c.spec.as_ref().ok().map(|s| s.amqp_url.as_str()),
                    "cluster": c.spec.as_ref().ok().map(|s| s.cluster_name()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if cells.is_empty() {
        println!(
            "no cell is registered: every tenant is on the deployment's own broker (`tgsearch cells adopt` registers it)"
        );
    } else {
        println!(
            "{:<12} {:<9} {:>8} {:>9} {:>6}  {:<8} BROKER / CLUSTER",
            "CELL", "STATE", "TENANTS", "CAPACITY", "FILL", "HEALTH"
        );
        for (c, h) in cells.iter().zip(&health) {
            let place = match &c.spec {
                Ok(s) => format!("{} / {}", s.management_url, s.cluster_name()),
                Err(e) => format!("BROKEN SETTINGS: {e}"),
            };
            println!(
                "{:<12} {:<9} {:>8} {:>9} {:>5.1}%  {:<8} {place}",
                c.id.as_str(),
                c.state.as_str(),
                c.tenants,
                c.capacity,
                c.fill() * 100.0,
                if h.is_ok() { "ok" } else { "FAILING" },
            );
            if let Err(why) = h {
                println!("{:<12} └ {why}", "");
            }
        }
    }
    Ok(if all_well {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Registers the deployment's own broker and cluster as `cell` and maps every tenant found on
/// them (or with a tenant secret) that has no cell yet.
async fn adopt(app: &AppContext, registry: &DynamoCells, cell: &str, capacity: u32) -> Result<ExitCode> {
    let id = cell_id(cell)?;
    let config = &app.config;
    let spec = CellSpec {
        allow_plaintext: Env::process().flag_or("RABBITMQ_ALLOW_PLAINTEXT", false)?,
        ..config.as_cell()
    };
    // Registered draining until its tenants are mapped (and counted): no placement meanwhile.
    let new = match registry.cell(&id).await.map_err(|e| anyhow::anyhow!(e))? {
        None => {
            registry
                .add(Cell::new_fields(&id, CellState::Draining, capacity, &spec))
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "cell {id} registered: the deployment's broker {}",
                spec.management_url
            );
            true
        }
        Some(existing) if existing.spec.as_ref().is_ok_and(|s| s.same_place(&spec)) => {
            println!("cell {id} is registered already with these settings");
            false
        }
        Some(_) => bail!(
            "cell `{id}` is registered with other settings than this deployment's broker and cluster; choose another name"
        ),
    };
    let pool = ReconcileConfig::from(&Env::process())?.user_pool_id;
    let directory = CognitoDirectory::new(&app.aws, pool);
    let inventory = tgsearch::reconcile::take_inventory(&app.provisioner, &directory).await?;
    let tenants: BTreeSet<&String> = [
        &inventory.secrets,
        &inventory.vhosts,
        &inventory.rabbit_users,
        &inventory.permissions,
        &inventory.kube_secrets,
        &inventory.volumes,
        &inventory.deployments,
    ]
    .into_iter()
    .flatten()
    .collect();
    let (mut mapped, mut before, mut elsewhere) = (0, 0, Vec::new());
    for sub in tenants {
        let Ok(tenant) = tgsearch::TenantId::parse(sub) else {
            continue;
        };
        match registry
            .assign(&tenant, &id, false)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
        {
            Assigned::Now => mapped += 1,
            Assigned::Already(c) if c == id => before += 1,
            Assigned::Already(c) => elsewhere.push(format!("{sub} ({c})")),
            Assigned::Refused => bail!("cell `{id}` vanished while tenants were mapped to it"),
        }
    }
    if new {
        registry
            .set_state(&id, CellState::Open)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    println!("cell {id}: {mapped} tenants mapped now, {before} mapped before; open");
    if !elsewhere.is_empty() {
        println!(
            "{} tenants with resources here are mapped to other cells (left there, reported by reconcile): {}",
            elsewhere.len(),
            elsewhere.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
