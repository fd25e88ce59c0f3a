//! In-memory registry and health for unit tests of placement (one lock: each `assign` is
//! atomic, as the DynamoDB transaction is).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{Assigned, Cell, CellHealth, CellId, CellRegistry, CellState};
use crate::ports::PortError;
use crate::tenant::TenantId;

pub struct MemoryRegistry {
    state: Mutex<(Vec<Cell>, HashMap<String, CellId>)>,
}

impl MemoryRegistry {
    pub fn new(cells: Vec<Cell>) -> Self {
        Self {
            state: Mutex::new((cells, HashMap::new())),
        }
    }

    /// Tenants mapped per cell.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let state = self.state.lock().unwrap();
        state.0.iter().map(|c| (c.id.to_string(), c.tenants)).collect()
    }

    pub fn set_state(&self, id: &str, to: CellState) {
        let mut state = self.state.lock().unwrap();
        for cell in state.0.iter_mut().filter(|c| c.id.as_str() == id) {
            cell.state = to;
        }
    }
}

impl CellRegistry for MemoryRegistry {
    async fn cells(&self) -> Result<Vec<Cell>, PortError> {
        // Yield, so that concurrent placements interleave as they would over the network.
        tokio::task::yield_now().await;
        Ok(self.state.lock().unwrap().0.clone())
    }

    async fn home(&self, tenant: &TenantId) -> Result<Option<CellId>, PortError> {
        Ok(self.state.lock().unwrap().1.get(tenant.as_str()).cloned())
    }

    async fn assign(
        &self,
        tenant: &TenantId,
        cell: &CellId,
        within_capacity: bool,
    ) -> Result<Assigned, PortError> {
        tokio::task::yield_now().await;
        let mut state = self.state.lock().unwrap();
        let (cells, map) = &mut *state;
        if let Some(home) = map.get(tenant.as_str()) {
            return Ok(Assigned::Already(home.clone()));
        }
        let Some(target) = cells.iter_mut().find(|c| &c.id == cell) else {
            return Ok(Assigned::Refused);
        };
        if within_capacity && (target.state != CellState::Open || target.tenants >= target.capacity) {
            return Ok(Assigned::Refused);
        }
        target.tenants += 1;
        map.insert(tenant.to_string(), cell.clone());
        Ok(Assigned::Now)
    }

    async fn unassign(&self, tenant: &TenantId, cell: &CellId) -> Result<bool, PortError> {
        let mut state = self.state.lock().unwrap();
        let (cells, map) = &mut *state;
        if map.get(tenant.as_str()) != Some(cell) {
            return Ok(false);
        }
        map.remove(tenant.as_str());
        if let Some(c) = cells.iter_mut().find(|c| &c.id == cell) {
            c.tenants = c.tenants.saturating_sub(1);
        }
        Ok(true)
    }

    async fn assignments(&self) -> Result<Vec<(String, CellId)>, PortError> {
        let state = self.state.lock().unwrap();
        Ok(state.1.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// Every cell healthy but those named.
pub struct StaticHealth(Vec<String>);

impl StaticHealth {
    pub fn all_healthy() -> Self {
        Self(Vec::new())
    }

    pub fn failing(cells: &[&str]) -> Self {
        Self(cells.iter().map(|c| c.to_string()).collect())
    }
}

impl CellHealth for StaticHealth {
    async fn healthy(&self, cell: &Cell) -> Result<(), String> {
        if self.0.iter().any(|c| c == cell.id.as_str()) {
            Err("the broker does not answer".into())
        } else {
            Ok(())
        }
    }
}
