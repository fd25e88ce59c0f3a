//! Placement at signup, before anything is created: the tenant's cell is the one the map already
//! names, or the least-filled open cell that answers its health check, written into the map
//! once, conditionally (the condition is what finds an existing entry), together with the cell's
//! counter (one DynamoDB transaction whose
//! condition is the capacity), so that a retried or duplicated event finds the cell chosen and a
//! burst never puts a cell over its capacity.

use super::{Assigned, Cell, CellHealth, CellId, CellRegistry};
use crate::ports::PortError;
use crate::tenant::TenantId;

/// Where a tenant was placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    /// The map named its cell already (a retry, a duplicate, or an adopted tenant).
    Existing(CellId),
    /// Chosen now.
    New(CellId),
}

impl Placed {
    pub fn cell(&self) -> &CellId {
        match self {
            Placed::Existing(c) | Placed::New(c) => c,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    /// No open cell with room answered: the signup is handed off, the alarm says capacity ran
    /// out.
    #[error("no cell can take a tenant: {0}")]
    NoCapacity(String),
    #[error("the cell registry failed: {0}")]
    Registry(#[source] PortError),
    /// The registry holds no cell: the deployment's own broker takes the tenant.
    #[error("no cell is registered")]
    NoCellRegistered,
}

/// The cells a new tenant may go to, best first: open, sound, with room; least filled, then
/// fewest tenants, and equals in random order (so that the placements of a burst, which all see
/// the same listing, spread over equally filled cells instead of queueing on one).
pub fn candidates(cells: &[Cell]) -> Vec<&Cell> {
    let mut open: Vec<(u64, &Cell)> = cells
        .iter()
        .filter(|c| c.takes_tenants())
        .map(|c| (rand::random::<u64>(), c))
        .collect();
    open.sort_by(|(ra, a), (rb, b)| {
        a.fill()
            .total_cmp(&b.fill())
            .then(a.tenants.cmp(&b.tenants))
            .then(ra.cmp(rb))
    });
    open.into_iter().map(|(_, c)| c).collect()
}

/// Why no cell was found, for the log and the hand-off's reason.
fn no_capacity(cells: &[Cell], skipped: &[(CellId, String)]) -> String {
    let mut parts: Vec<String> = cells
        .iter()
        .filter(|c| !c.takes_tenants())
        .map(|c| match &c.spec {
            Err(e) => format!("{}: broken settings ({})", c.id, e.field),
            Ok(_) if c.state != super::CellState::Open => format!("{}: {}", c.id, c.state.as_str()),
            Ok(_) => format!("{}: full ({}/{})", c.id, c.tenants, c.capacity),
        })
        .collect();
    parts.extend(skipped.iter().map(|(id, why)| format!("{id}: {why}")));
    parts.join("; ")
}

/// Places `tenant`: its existing cell, or the best candidate that is healthy and still has room
/// when the transaction runs. Unhealthy candidates are skipped (their tenants are not touched).
pub async fn place<R: CellRegistry, H: CellHealth>(
    registry: &R,
    health: &H,
    tenant: &TenantId,
) -> Result<Placed, PlacementError> {
    // No read of the map first: the transaction's condition finds an existing entry (a retried
    // signup), so a new tenant's placement is one write.
    let mut skipped = Vec::new();
    let mut cells = Vec::new();
    // A second round only when a cell refused: the listing was older than the cell's state (the
    // registry's listing is cached per container), and is read again.
    for _round in 0..2 {
        cells = registry.cells().await.map_err(PlacementError::Registry)?;
        skipped.clear();
        let mut refused = false;
        let candidates = candidates(&cells);
        // All probed at once: a cell that does not answer costs its probe's limit once, not
        // once per cell behind it.
        let verdicts = futures::future::join_all(candidates.iter().map(|c| health.healthy(c))).await;
        for (cell, verdict) in candidates.into_iter().zip(verdicts) {
            if let Err(why) = verdict {
                skipped.push((cell.id.clone(), format!("unhealthy ({why})")));
                continue;
            }
            match registry
                .assign(tenant, &cell.id, true)
                .await
                .map_err(PlacementError::Registry)?
            {
                Assigned::Now => return Ok(Placed::New(cell.id.clone())),
                Assigned::Already(other) => return Ok(Placed::Existing(other)),
                Assigned::Refused => {
                    refused = true;
                    skipped.push((cell.id.clone(), "filled up or closed meanwhile".into()));
                }
            }
        }
        if !refused {
            break;
        }
    }
    // No cell took it: a tenant placed before keeps its cell whatever the cells' state now.
    if let Some(cell) = registry.home(tenant).await.map_err(PlacementError::Registry)? {
        return Ok(Placed::Existing(cell));
    }
    if cells.is_empty() {
        return Err(PlacementError::NoCellRegistered);
    }
    Err(PlacementError::NoCapacity(no_capacity(&cells, &skipped)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::memory::{MemoryRegistry, StaticHealth};
    use crate::cells::{CellState, spec::Fields};

    fn cell(id: &str, state: &str, tenants: u32, capacity: u32) -> Cell {
        let fields: Fields = [
            ("state", state),
            ("capacity", &capacity.to_string()),
            ("tenants", &tenants.to_string()),
            ("management_url", "http://127.0.0.1:15672"),
            ("amqp_url", "amqp://127.0.0.1:5672"),
            ("admin_secret_id", "admin"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Cell::from_fields(CellId::parse(id).unwrap(), &fields)
    }

    fn tenant() -> TenantId {
        TenantId::parse(&crate::credentials::random_uuid()).unwrap()
    }

    #[test]
    fn the_least_filled_open_cell_with_room_comes_first() {
        let cells = vec![
            cell("a", "open", 20, 30),
            cell("b", "open", 100, 1000),
            cell("c", "draining", 0, 1000),
            cell("d", "open", 30, 30),
            cell("e", "open", 100, 1000),
        ];
        let order: Vec<&str> = candidates(&cells).iter().map(|c| c.id.as_str()).collect();
        // b and e are equally filled: either first, in random order.
        assert!(order == ["b", "e", "a"] || order == ["e", "b", "a"], "{order:?}");
    }

    #[tokio::test]
    async fn a_burst_never_overfills_and_a_repeat_finds_the_cell_chosen() {
        let registry = MemoryRegistry::new(vec![cell("a", "open", 0, 30), cell("b", "open", 0, 1000)]);
        let tenants: Vec<TenantId> = (0..100).map(|_| tenant()).collect();
        let health = StaticHealth::all_healthy();
        let placed = futures::future::join_all(tenants.iter().map(|t| place(&registry, &health, t))).await;
        assert!(placed.iter().all(|p| matches!(p, Ok(Placed::New(_)))));
        let counts = registry.counts();
        assert!(counts["a"] <= 30, "{counts:?}");
        assert_eq!(counts["a"] + counts["b"], 100);
        let again = place(&registry, &StaticHealth::all_healthy(), &tenants[0])
            .await
            .unwrap();
        assert_eq!(
            again,
            Placed::Existing(placed[0].as_ref().unwrap().cell().clone())
        );
        assert_eq!(registry.counts()["a"] + registry.counts()["b"], 100);
    }

    #[tokio::test]
    async fn unhealthy_draining_and_full_cells_are_passed_over_and_none_left_says_why() {
        let registry = MemoryRegistry::new(vec![
            cell("a", "open", 0, 30),
            cell("b", "draining", 0, 30),
            cell("c", "open", 5, 5),
        ]);
        let health = StaticHealth::failing(&["a"]);
        let err = place(&registry, &health, &tenant())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("a: unhealthy"), "{err}");
        assert!(
            err.contains("b: draining") && err.contains("c: full (5/5)"),
            "{err}"
        );
        registry.set_state("b", CellState::Open);
        assert_eq!(
            place(&registry, &health, &tenant())
                .await
                .unwrap()
                .cell()
                .as_str(),
            "b"
        );
    }
}
