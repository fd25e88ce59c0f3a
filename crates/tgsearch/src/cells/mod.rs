//! Cells: the deployment grows by adding cells, each a broker and a Kubernetes cluster of bounded
//! size (AWS Well-Architected REL10-BP03). A thin router holds only the map of tenants to cells
//! (DynamoDB); every path asks it for a tenant's cell before it touches anything.
//!
//! - [`spec`]: what a cell is, read from and written to its registry item;
//! - [`placement`]: the choice of a new tenant's cell, atomic against capacity;
//! - the ports below: the registry and a cell's health;
//! - [`TenantCells`]: how a handler gets the provisioner of a tenant's cell (one cell without a
//!   registry, or [`live::LiveCells`]).

pub mod live;
pub mod placement;
pub mod reconcile;
pub mod spec;

#[cfg(test)]
pub(crate) mod memory;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

pub use placement::{Placed, PlacementError};
pub use spec::{BrokerKind, Cell, CellId, CellSpec, CellState, SpecError};

use crate::ports::{CredentialStore, PortError, TenantBackend, TenantBroker, TenantLocks};
use crate::provision::Provisioner;
use crate::tenant::TenantId;

/// What writing a tenant's map entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assigned {
    /// Written now, the cell's counter raised with it.
    Now,
    /// The tenant had a cell already: this one.
    Already(CellId),
    /// The cell is full, not open or gone (nothing written).
    Refused,
}

/// The registry of cells and the tenant→cell map.
pub trait CellRegistry: Send + Sync {
    /// Every registered cell, broken ones included (their `spec` says why).
    fn cells(&self) -> impl Future<Output = Result<Vec<Cell>, PortError>> + Send;

    /// The tenant's cell, read strongly consistent.
    fn home(&self, tenant: &TenantId) -> impl Future<Output = Result<Option<CellId>, PortError>> + Send;

    /// Maps the tenant to `cell` unless it has a cell, raising the cell's counter in the same
    /// transaction; `within_capacity`: only while the cell is open and below its capacity.
    fn assign(
        &self,
        tenant: &TenantId,
        cell: &CellId,
        within_capacity: bool,
    ) -> impl Future<Output = Result<Assigned, PortError>> + Send;

    /// Removes the tenant's entry if it names `cell`, lowering the counter with it. `false`:
    /// there was no such entry.
    fn unassign(
        &self,
        tenant: &TenantId,
        cell: &CellId,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Every map entry: `(sub, cell)`.
    fn assignments(&self) -> impl Future<Output = Result<Vec<(String, CellId)>, PortError>> + Send;
}

/// Whether a cell answers now (`Err`: why not, in a few words).
pub trait CellHealth: Send + Sync {
    fn healthy(&self, cell: &Cell) -> impl Future<Output = Result<(), String>> + Send;
}

/// A provisioner borrowed (one cell) or shared from a cache (a cell's clients).
pub enum Shared<'a, P> {
    Borrowed(&'a P),
    Owned(Arc<P>),
}

impl<P> Deref for Shared<'_, P> {
    type Target = P;
    fn deref(&self) -> &P {
        match self {
            Shared::Borrowed(p) => p,
            Shared::Owned(p) => p,
        }
    }
}

/// A tenant's cell and the provisioner that acts in it.
pub struct InCell<'a, P> {
    /// `None`: the deployment's own broker and cluster (no registry, or a tenant from before
    /// cells that `tgsearch cells adopt` has not mapped yet).
    pub cell: Option<CellId>,
    pub provisioner: Shared<'a, P>,
}

impl<P> InCell<'_, P> {
    /// The cell's name for logs and answers.
    pub fn cell_name(&self) -> &str {
        self.cell.as_ref().map(CellId::as_str).unwrap_or(UNMAPPED)
    }
}

/// How a tenant outside the map's cells is shown.
pub const UNMAPPED: &str = "(deployment)";

/// Why a tenant's cell could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error("the cell registry failed: {0}")]
    Registry(#[source] PortError),
    /// The map names a cell the registry does not hold.
    #[error("the tenant's cell `{0}` is not registered")]
    Unknown(CellId),
    /// The cell's settings are broken or its clients could not be built.
    #[error("cell `{cell}` is unavailable: {reason}")]
    Unavailable { cell: CellId, reason: String },
    #[error("choosing the tenant's cell did not finish within {ms} ms")]
    TimedOut { ms: u64 },
}

impl CellError {
    /// Whether a later attempt may succeed (everything but a malformed or unknown cell may).
    pub fn is_transient(&self) -> bool {
        !matches!(self, CellError::Unknown(_))
    }
}

/// The provisioner of a tenant's cell: placement for a new tenant, the map for an existing one.
pub trait TenantCells: Send + Sync {
    type S: CredentialStore;
    type B: TenantBroker;
    type K: TenantBackend;
    type L: TenantLocks;

    /// A new tenant's cell: the one the map names, or one chosen now.
    #[allow(clippy::type_complexity)]
    fn place<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> impl Future<Output = Result<InCell<'a, Provisioner<Self::S, Self::B, Self::K, Self::L>>, CellError>> + Send;

    /// An existing tenant's cell (the deployment's own broker when the map has no entry).
    #[allow(clippy::type_complexity)]
    fn locate<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> impl Future<Output = Result<InCell<'a, Provisioner<Self::S, Self::B, Self::K, Self::L>>, CellError>> + Send;

    /// Removes a torn-down tenant's map entry (and its place in the cell's count).
    fn forget(&self, tenant: &TenantId, cell: &CellId) -> impl Future<Output = Result<(), CellError>> + Send;
}

/// One broker and one cluster, no registry: every tenant is here.
impl<S, B, K, L> TenantCells for Provisioner<S, B, K, L>
where
    S: CredentialStore,
    B: TenantBroker,
    K: TenantBackend,
    L: TenantLocks,
{
    type S = S;
    type B = B;
    type K = K;
    type L = L;

    async fn place<'a>(&'a self, _: &'a TenantId) -> Result<InCell<'a, Self>, CellError> {
        Ok(InCell {
            cell: None,
            provisioner: Shared::Borrowed(self),
        })
    }

    async fn locate<'a>(&'a self, _: &'a TenantId) -> Result<InCell<'a, Self>, CellError> {
        Ok(InCell {
            cell: None,
            provisioner: Shared::Borrowed(self),
        })
    }

    async fn forget(&self, _: &TenantId, _: &CellId) -> Result<(), CellError> {
        Ok(())
    }
}
