//! The cells as the functions and the CLI reach them: the registry in DynamoDB, each cell's
//! clients built the first time one of its tenants needs them and kept for the container's
//! life, each cell's health probed at most every few seconds. Without a registry, or with an
//! empty one, everything goes to the deployment's own broker and cluster, as before cells.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use tokio::sync::OnceCell;

use super::placement::{self, Placed, PlacementError};
use super::{Cell, CellError, CellHealth, CellId, CellRegistry, CellSpec, InCell, Shared, TenantCells};
use crate::adapters::cell_registry::DynamoCells;
use crate::adapters::kubernetes::KubeBackend;
use crate::adapters::rabbitmq::{AdminCredentials, ManagementClient};
use crate::adapters::secrets_manager::SecretsManager;
use crate::adapters::tenant_guard::TenantGuard;
use crate::app::{ADMIN_SECRET_SHAPE, LiveProvisioner};
use crate::backend::BackendSettings;
use crate::provision::Provisioner;
use crate::tenant::TenantId;

/// The most building a cell's clients may take (its admin secret and its cluster, at once):
/// within a signup's budget, with time left for the signup itself.
pub const CELL_CONNECT_LIMIT: Duration = Duration::from_millis(2000);
/// The most a health probe may take (the broker's `/api/whoami`).
pub const HEALTH_PROBE_LIMIT: Duration = Duration::from_millis(800);
/// How long a probe's answer is believed: healthy, and not.
pub const HEALTHY_FOR: Duration = Duration::from_secs(10);
pub const UNHEALTHY_FOR: Duration = Duration::from_secs(15);

type Slot = Arc<OnceCell<Arc<LiveProvisioner>>>;
/// How long a container trusts its listing of the cells for placement: the capacity is enforced
/// by each placement's own condition, so a listing a moment old only orders the candidates (a
/// cell found full drops the listing at once).
pub const CELLS_LISTING_FOR: Duration = Duration::from_secs(2);

/// A health verdict and until when it is believed.
type Verdict = (Instant, Result<(), String>);

/// Every cell, reached through the registry.
pub struct LiveCells {
    registry: Option<DynamoCells>,
    /// The deployment's own broker and cluster (its environment): tenants from before cells.
    default: Arc<LiveProvisioner>,
    aws: SdkConfig,
    http: reqwest::Client,
    /// The backends' image and size (the deployment's); namespace and class come per cell.
    backend: BackendSettings,
    template: k8s_openapi::api::apps::v1::Deployment,
    /// The deployment's own broker and cluster as a cell would name them: a cell with these
    /// settings (the one `tgsearch cells adopt` registers) shares the clients built at cold start.
    deployment: Option<CellSpec>,
    clients: Mutex<HashMap<CellId, Slot>>,
    health: Mutex<HashMap<CellId, Verdict>>,
    listing: Mutex<Option<(Instant, Vec<Cell>)>>,
}

/// The registry as placement sees it from this container: the listing of cells kept for
/// [`CELLS_LISTING_FOR`], dropped when a cell refuses a tenant.
struct Listing<'a> {
    registry: &'a DynamoCells,
    cache: &'a Mutex<Option<(Instant, Vec<Cell>)>>,
}

impl CellRegistry for Listing<'_> {
    async fn cells(&self) -> Result<Vec<Cell>, crate::ports::PortError> {
        if let Some((at, cells)) = &*self.cache.lock().expect("the listing is never poisoned")
            && at.elapsed() < CELLS_LISTING_FOR
        {
            return Ok(cells.clone());
        }
        let cells = self.registry.cells().await?;
        *self.cache.lock().expect("the listing is never poisoned") = Some((Instant::now(), cells.clone()));
        Ok(cells)
    }

    async fn home(&self, tenant: &TenantId) -> Result<Option<CellId>, crate::ports::PortError> {
        self.registry.home(tenant).await
    }

    async fn assign(
        &self,
        tenant: &TenantId,
        cell: &CellId,
        within_capacity: bool,
    ) -> Result<super::Assigned, crate::ports::PortError> {
        let assigned = self.registry.assign(tenant, cell, within_capacity).await?;
        if assigned == super::Assigned::Refused {
            *self.cache.lock().expect("the listing is never poisoned") = None;
        }
        Ok(assigned)
    }

    async fn unassign(&self, tenant: &TenantId, cell: &CellId) -> Result<bool, crate::ports::PortError> {
        self.registry.unassign(tenant, cell).await
    }

    async fn assignments(&self) -> Result<Vec<(String, CellId)>, crate::ports::PortError> {
        self.registry.assignments().await
    }
}

impl LiveCells {
    pub fn new(
        registry: Option<DynamoCells>,
        default: Arc<LiveProvisioner>,
        deployment: Option<CellSpec>,
        aws: &SdkConfig,
        http: reqwest::Client,
        backend: BackendSettings,
        template: k8s_openapi::api::apps::v1::Deployment,
    ) -> Self {
        Self {
            registry,
            default,
            deployment,
            aws: aws.clone(),
            http,
            backend,
            template,
            clients: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            listing: Mutex::new(None),
        }
    }

    pub fn registry(&self) -> Option<&DynamoCells> {
        self.registry.as_ref()
    }

    /// The registered cell that is the deployment's own broker and cluster (the one
    /// `tgsearch cells adopt` registers), if any.
    pub fn deployment_cell<'c>(&self, cells: &'c [Cell]) -> Option<&'c Cell> {
        let deployment = self.deployment.as_ref()?;
        cells
            .iter()
            .find(|c| c.spec.as_ref().is_ok_and(|s| s.same_place(deployment)))
    }

    /// The deployment's own provisioner (tenants the map does not name).
    pub fn default_provisioner(&self) -> &Arc<LiveProvisioner> {
        &self.default
    }

    /// The provisioner of a cell whose item is at hand, built on first use.
    pub async fn provisioner_of(&self, cell: &Cell) -> Result<Arc<LiveProvisioner>, CellError> {
        let spec = cell.spec.as_ref().map_err(|e| CellError::Unavailable {
            cell: cell.id.clone(),
            reason: e.to_string(),
        })?;
        self.build(&cell.id, spec).await
    }

    /// The provisioner of a cell known by name (its item read only when not built yet).
    pub async fn provisioner_named(&self, id: &CellId) -> Result<Arc<LiveProvisioner>, CellError> {
        if let Some(built) = self.slot(id).get() {
            return Ok(built.clone());
        }
        let registry = self
            .registry
            .as_ref()
            .ok_or_else(|| CellError::Unknown(id.clone()))?;
        let cell = registry
            .cell(id)
            .await
            .map_err(CellError::Registry)?
            .ok_or_else(|| CellError::Unknown(id.clone()))?;
        self.provisioner_of(&cell).await
    }

    fn slot(&self, id: &CellId) -> Slot {
        self.clients
            .lock()
            .expect("the cell cache is never poisoned")
            .entry(id.clone())
            .or_default()
            .clone()
    }

    async fn build(&self, id: &CellId, spec: &CellSpec) -> Result<Arc<LiveProvisioner>, CellError> {
        let slot = self.slot(id);
        let unavailable = |reason: String| CellError::Unavailable {
            cell: id.clone(),
            reason,
        };
        slot.get_or_try_init(|| async {
            if self.deployment.as_ref().is_some_and(|d| d.same_place(spec)) {
                return Ok(self.default.clone());
            }
            let connect = async {
                let store = &self.default.store;
                let (admin, kube) = tokio::join!(
                    store.read_json::<AdminCredentials>(&spec.admin_secret_id, ADMIN_SECRET_SHAPE),
                    crate::cluster::connect(&spec.kube, &self.aws),
                );
                let admin = admin
                    .map_err(|e| unavailable(format!("its admin secret cannot be read: {e}")))?
                    .ok_or_else(|| unavailable(format!("its admin secret `{}` does not exist", spec.admin_secret_id)))?;
                let kube = kube.map_err(|e| unavailable(format!("its cluster cannot be reached: {e}")))?;
                Ok::<_, CellError>((admin, kube))
            };
            let (admin, kube) = tokio::time::timeout(CELL_CONNECT_LIMIT, connect)
                .await
                .map_err(|_| {
                    unavailable(format!(
                        "its admin secret and cluster did not answer within {} ms",
                        CELL_CONNECT_LIMIT.as_millis()
                    ))
                })??;
            let backend = BackendSettings {
                namespace: spec.kube.namespace.clone(),
                storage_class: spec.storage_class.clone(),
                ..self.backend.clone()
            };
            tracing::info!(cell = %id, broker = %spec.management_url, cluster = spec.cluster_name(), "cell clients built");
            Ok(Arc::new(Provisioner {
                store: self.default.store.clone(),
                broker: ManagementClient::new(self.http.clone(), spec.management_url.clone(), admin),
                backend: KubeBackend::new(kube, backend, self.template.clone()),
                locks: self.default.locks.clone(),
                amqp_url: spec.amqp_url.clone(),
                limits: self.default.limits,
            }))
        })
        .await
        .cloned()
    }

    fn in_cell(&self, cell: CellId, provisioner: Arc<LiveProvisioner>) -> InCell<'_, LiveProvisioner> {
        InCell {
            cell: Some(cell),
            provisioner: Shared::Owned(provisioner),
        }
    }

    fn deployment(&self) -> InCell<'_, LiveProvisioner> {
        InCell {
            cell: None,
            provisioner: Shared::Borrowed(&self.default),
        }
    }
}

impl CellHealth for LiveCells {
    async fn healthy(&self, cell: &Cell) -> Result<(), String> {
        let cached = self
            .health
            .lock()
            .expect("the health cache is never poisoned")
            .get(&cell.id)
            .cloned();
        if let Some((until, verdict)) = cached
            && Instant::now() < until
        {
            return verdict;
        }
        let verdict = match self.provisioner_of(cell).await {
            Err(e) => Err(e.to_string()),
            Ok(p) => match tokio::time::timeout(HEALTH_PROBE_LIMIT, p.broker.whoami()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("its broker answered: {e}")),
                Err(_) => Err(format!(
                    "its broker did not answer within {} ms",
                    HEALTH_PROBE_LIMIT.as_millis()
                )),
            },
        };
        let keep = if verdict.is_ok() {
            HEALTHY_FOR
        } else {
            UNHEALTHY_FOR
        };
        if let Err(why) = &verdict {
            tracing::warn!(cell = %cell.id, reason = %why, "cell failed its health check");
        }
        self.health
            .lock()
            .expect("the health cache is never poisoned")
            .insert(cell.id.clone(), (Instant::now() + keep, verdict.clone()));
        verdict
    }
}

impl TenantCells for LiveCells {
    type S = SecretsManager;
    type B = ManagementClient;
    type K = KubeBackend;
    type L = TenantGuard;

    async fn place<'a>(&'a self, tenant: &'a TenantId) -> Result<InCell<'a, LiveProvisioner>, CellError> {
        let Some(registry) = &self.registry else {
            return Ok(self.deployment());
        };
        let listing = Listing {
            registry,
            cache: &self.listing,
        };
        let placed = placement::place(&listing, self, tenant).await;
        let outcome = match &placed {
            Ok(Placed::New(_)) => "placed",
            Ok(Placed::Existing(_)) => "existing",
            Err(PlacementError::NoCapacity(_)) => "no_capacity",
            Err(PlacementError::NoCellRegistered) => "existing",
            Err(PlacementError::Registry(_)) => "failed",
        };
        crate::metrics::Record::new()
            .dim(crate::metrics::Dim::Outcome, outcome)
            .one("Placements")
            .emit();
        match placed {
            Ok(Placed::New(cell)) => {
                tracing::info!(tenant = %tenant, cell = %cell, "tenant placed");
                let p = self.provisioner_named(&cell).await?;
                Ok(self.in_cell(cell, p))
            }
            Ok(Placed::Existing(cell)) => {
                let p = self.provisioner_named(&cell).await?;
                Ok(self.in_cell(cell, p))
            }
            // Before the first cell is registered the deployment's own broker takes signups.
            Err(PlacementError::NoCellRegistered) => Ok(self.deployment()),
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "tenant not placed");
                Err(e.into())
            }
        }
    }

    async fn forget(&self, tenant: &TenantId, cell: &CellId) -> Result<(), CellError> {
        if let Some(registry) = &self.registry {
            registry
                .unassign(tenant, cell)
                .await
                .map_err(CellError::Registry)?;
        }
        Ok(())
    }

    async fn locate<'a>(&'a self, tenant: &'a TenantId) -> Result<InCell<'a, LiveProvisioner>, CellError> {
        let Some(registry) = &self.registry else {
            return Ok(self.deployment());
        };
        match registry.home(tenant).await.map_err(CellError::Registry)? {
            None => Ok(self.deployment()),
            Some(cell) => {
                let p = self.provisioner_named(&cell).await?;
                Ok(self.in_cell(cell, p))
            }
        }
    }
}

impl LiveCells {
    /// [`TenantCells::locate`] within a readiness or rotation deadline.
    async fn locate_within<'a>(
        &'a self,
        tenant: &'a TenantId,
        within: Duration,
    ) -> Result<InCell<'a, LiveProvisioner>, crate::readiness::ReadinessError> {
        tokio::time::timeout(within, self.locate(tenant))
            .await
            .map_err(|_| crate::readiness::ReadinessError::TimedOut {
                ms: within.as_millis() as u64,
            })?
            .map_err(Into::into)
    }
}

impl crate::readiness::TenantReadiness for LiveCells {
    async fn readiness(
        &self,
        tenant: &TenantId,
        within: Duration,
    ) -> Result<crate::readiness::Readiness, crate::readiness::ReadinessError> {
        let started = Instant::now();
        let at = self.locate_within(tenant, within).await?;
        at.provisioner
            .readiness(tenant, within.saturating_sub(started.elapsed()))
            .await
    }

    async fn rotate(
        &self,
        tenant: &TenantId,
        within: Duration,
    ) -> Result<crate::readiness::Readiness, crate::readiness::ReadinessError> {
        let started = Instant::now();
        let at = self.locate_within(tenant, within).await?;
        crate::readiness::TenantReadiness::rotate(
            &*at.provisioner,
            tenant,
            within.saturating_sub(started.elapsed()),
        )
        .await
    }
}
