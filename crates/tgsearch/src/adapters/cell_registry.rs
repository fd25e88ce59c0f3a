//! The cell registry and the tenant→cell map in DynamoDB.
//!
//! - `CELLS_TABLE`, partition key `cell` (S): one item per cell, its settings as strings (see
//!   [`crate::cells::spec::field`]), `capacity` and `tenants` (N).
//! - `TENANT_CELLS_TABLE`, partition key `sub` (S): `cell` (S), `placed_at` (N, Unix ms).
//!
//! A placement is one transaction: the map entry put only if absent, the cell's counter raised
//! only while the cell is open and below its capacity. Either both happen or neither, so a burst
//! cannot overfill a cell, and a retried signup finds its entry.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use super::dynamodb::is_transient;
use crate::cells::spec::{Fields, field};
use crate::cells::{Assigned, Cell, CellId, CellRegistry, CellState};
use crate::ports::{PortError, Transient};
use crate::tenant::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("DynamoDB {operation} on table `{table}` failed: {message}")]
    Api {
        operation: &'static str,
        table: String,
        message: String,
    },
    #[error("table `{table}` holds an item without a sound `{key}` ({reason})")]
    Malformed {
        table: String,
        key: &'static str,
        reason: String,
    },
    #[error("cell `{0}` is not registered")]
    NoSuchCell(CellId),
    #[error("cell `{0}` is registered already")]
    Exists(CellId),
    #[error("a change of cell `{0}`'s tenants kept conflicting with others; try again")]
    Contended(CellId),
}

/// The two tables.
#[derive(Clone, Debug)]
pub struct DynamoCells {
    client: Client,
    cells_table: String,
    map_table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Attempts of one placement when concurrent transactions on the same cell conflict
/// (`TransactionConflict`): each waits a little longer, jittered.
const CONFLICT_ATTEMPTS: u32 = 8;

impl DynamoCells {
    pub fn new(
        aws: &aws_config::SdkConfig,
        cells_table: impl Into<String>,
        map_table: impl Into<String>,
    ) -> Self {
        Self {
            client: Client::new(aws),
            cells_table: cells_table.into(),
            map_table: map_table.into(),
        }
    }

    pub fn cells_table(&self) -> &str {
        &self.cells_table
    }

    fn fail<E, R>(&self, operation: &'static str, table: &str, e: SdkError<E, R>) -> PortError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let transient = is_transient(&e);
        let error = RegistryError::Api {
            operation,
            table: table.to_owned(),
            message: DisplayErrorContext(&e).to_string(),
        };
        if transient {
            Transient::wrap(error, None)
        } else {
            error.into()
        }
    }

    fn fields(item: &Item) -> Fields {
        item.iter()
            .filter_map(|(k, v)| {
                let value = match v {
                    AttributeValue::S(s) => s.clone(),
                    AttributeValue::N(n) => n.clone(),
                    AttributeValue::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((k.clone(), value))
            })
            .collect()
    }

    fn cell_of(&self, item: &Item) -> Result<Cell, RegistryError> {
        let fields = Self::fields(item);
        let raw = fields.get(field::CELL).cloned().unwrap_or_default();
        let id = CellId::parse(&raw).map_err(|reason| RegistryError::Malformed {
            table: self.cells_table.clone(),
            key: field::CELL,
            reason,
        })?;
        Ok(Cell::from_fields(id, &fields))
    }

    /// One cell, read strongly consistent.
    pub async fn cell(&self, id: &CellId) -> Result<Option<Cell>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.cells_table)
            .key(field::CELL, s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", &self.cells_table, e))?;
        out.item()
            .map(|i| self.cell_of(i))
            .transpose()
            .map_err(Into::into)
    }

    /// Registers a cell (its counter at zero); refused when the name is taken.
    pub async fn add(&self, fields: Fields) -> Result<(), PortError> {
        let id = CellId::parse(fields.get(field::CELL).map(String::as_str).unwrap_or(""))?;
        let mut item: Item = fields
            .into_iter()
            .map(|(k, v)| {
                let value = if k == field::CAPACITY || k == field::TENANTS {
                    AttributeValue::N(v)
                } else {
                    AttributeValue::S(v)
                };
                (k, value)
            })
            .collect();
        item.insert(field::TENANTS.into(), n(0));
        let put = self
            .client
            .put_item()
            .table_name(&self.cells_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#cell)")
            .expression_attribute_names("#cell", field::CELL)
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(RegistryError::Exists(id).into()),
            Err(e) => Err(self.fail("PutItem", &self.cells_table, e)),
        }
    }

    /// Sets one attribute of a registered cell.
    async fn set(&self, id: &CellId, name: &str, value: AttributeValue) -> Result<(), PortError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.cells_table)
            .key(field::CELL, s(id.as_str()))
            .update_expression("SET #a = :v")
            .condition_expression("attribute_exists(#cell)")
            .expression_attribute_names("#a", name)
            .expression_attribute_names("#cell", field::CELL)
            .expression_attribute_values(":v", value)
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(RegistryError::NoSuchCell(id.clone()).into()),
            Err(e) => Err(self.fail("UpdateItem", &self.cells_table, e)),
        }
    }

    pub async fn set_state(&self, id: &CellId, state: CellState) -> Result<(), PortError> {
        self.set(id, field::STATE, s(state.as_str())).await
    }

    pub async fn set_capacity(&self, id: &CellId, capacity: u32) -> Result<(), PortError> {
        self.set(id, field::CAPACITY, n(capacity.into())).await
    }

    /// Sets the cell's counter to `actual` if it still reads `seen` (`None`: missing); a
    /// placement in between changes it, and the repair waits for the next run. `false`: it had
    /// changed.
    pub async fn repair_count(&self, id: &CellId, seen: Option<i64>, actual: u32) -> Result<bool, PortError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.cells_table)
            .key(field::CELL, s(id.as_str()))
            .update_expression("SET #t = :actual")
            .expression_attribute_names("#t", field::TENANTS)
            .expression_attribute_names("#cell", field::CELL)
            .expression_attribute_values(":actual", n(actual.into()));
        update = match seen {
            Some(seen) => update
                .condition_expression("attribute_exists(#cell) AND #t = :seen")
                .expression_attribute_values(":seen", AttributeValue::N(seen.to_string())),
            None => update.condition_expression("attribute_exists(#cell) AND attribute_not_exists(#t)"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.fail("UpdateItem", &self.cells_table, e)),
        }
    }

    /// Deletes the tenant's entry if it names `cell`, without touching a counter (when the
    /// counter cannot be lowered: reconcile repairs it from the map).
    async fn delete_entry(&self, tenant: &TenantId, cell: &CellId) -> Result<bool, PortError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.map_table)
            .key("sub", s(tenant.as_str()))
            .condition_expression("#cell = :cell")
            .expression_attribute_names("#cell", field::CELL)
            .expression_attribute_values(":cell", s(cell.as_str()))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.fail("DeleteItem", &self.map_table, e)),
        }
    }

    /// One attempt of [`CellRegistry::unassign`]: `Ok(None)` when transactions conflicted.
    async fn try_unassign(&self, tenant: &TenantId, cell: &CellId) -> Result<Option<bool>, PortError> {
        let entry = Delete::builder()
            .table_name(&self.map_table)
            .key("sub", s(tenant.as_str()))
            .condition_expression("#cell = :cell")
            .expression_attribute_names("#cell", field::CELL)
            .expression_attribute_values(":cell", s(cell.as_str()))
            .build()?;
        let count = Update::builder()
            .table_name(&self.cells_table)
            .key(field::CELL, s(cell.as_str()))
            .update_expression("SET #t = #t - :one")
            .condition_expression("#t > :zero")
            .expression_attribute_names("#t", field::TENANTS)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .build()?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(entry).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        let e = match sent {
            Ok(_) => return Ok(Some(true)),
            Err(e) => e,
        };
        let reasons = cancellation_reasons(&e);
        let code = |i: usize| reasons.get(i).cloned().flatten();
        if code(0).as_deref() == Some("ConditionalCheckFailed") {
            return Ok(Some(false));
        }
        if code(1).as_deref() == Some("ConditionalCheckFailed") {
            // The counter is at zero, missing or the cell item gone: the entry goes alone.
            return self.delete_entry(tenant, cell).await.map(Some);
        }
        if conflicted(&reasons) {
            return Ok(None);
        }
        Err(self.fail("TransactWriteItems", &self.map_table, e))
    }

    async fn scan(&self, table: &str) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.fail("Scan", table, e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// One placement attempt: `Ok(None)` when concurrent transactions conflicted.
    async fn try_assign(
        &self,
        tenant: &TenantId,
        cell: &CellId,
        within_capacity: bool,
    ) -> Result<Option<Assigned>, PortError> {
        let entry = Put::builder()
            .table_name(&self.map_table)
            .item("sub", s(tenant.as_str()))
            .item(field::CELL, s(cell.as_str()))
            .item("placed_at", n(crate::metrics::epoch_millis()))
            .condition_expression("attribute_not_exists(#sub)")
            .expression_attribute_names("#sub", "sub")
            .build()?;
        let mut count = Update::builder()
            .table_name(&self.cells_table)
            .key(field::CELL, s(cell.as_str()))
            .update_expression("SET #t = if_not_exists(#t, :zero) + :one")
            .expression_attribute_names("#t", field::TENANTS)
            .expression_attribute_names("#cell", field::CELL)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1));
        count = if within_capacity {
            count
                .condition_expression("attribute_exists(#cell) AND #state = :open AND #t < #cap")
                .expression_attribute_names("#state", field::STATE)
                .expression_attribute_names("#cap", field::CAPACITY)
                .expression_attribute_values(":open", s(CellState::Open.as_str()))
        } else {
            count.condition_expression("attribute_exists(#cell)")
        };
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(entry).build())
            .transact_items(TransactWriteItem::builder().update(count.build()?).build())
            .send()
            .await;
        let e = match sent {
            Ok(_) => return Ok(Some(Assigned::Now)),
            Err(e) => e,
        };
        let reasons = cancellation_reasons(&e);
        if reasons.is_empty() {
            return Err(self.fail("TransactWriteItems", &self.map_table, e));
        }
        let code = |i: usize| reasons.get(i).cloned().flatten();
        if code(0).as_deref() == Some("ConditionalCheckFailed") {
            return Ok(Some(match self.home(tenant).await? {
                Some(home) => Assigned::Already(home),
                // Removed again in between: try once more.
                None => return Ok(None),
            }));
        }
        if code(1).as_deref() == Some("ConditionalCheckFailed") {
            return Ok(Some(Assigned::Refused));
        }
        if conflicted(&reasons) {
            return Ok(None);
        }
        Err(self.fail("TransactWriteItems", &self.map_table, e))
    }

    /// Waits before another attempt after a conflict: longer each time, jittered.
    async fn back_off(attempt: u32) {
        let wait = 10u64 << attempt.min(5);
        let jitter = rand::random::<u64>() % wait.max(1);
        tokio::time::sleep(Duration::from_millis(wait / 2 + jitter)).await;
    }
}

/// The codes of a cancelled transaction's items, in order (`None`: that item was fine).
fn cancellation_reasons<R>(e: &SdkError<TransactWriteItemsError, R>) -> Vec<Option<String>> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Cancelled because another request was at the same item, or throttled: a retry may pass.
fn conflicted(reasons: &[Option<String>]) -> bool {
    reasons.iter().flatten().any(|c| {
        matches!(
            c.as_str(),
            "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
        )
    })
}

fn condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

impl CellRegistry for DynamoCells {
    async fn cells(&self) -> Result<Vec<Cell>, PortError> {
        let items = self.scan(&self.cells_table).await?;
        let mut cells = Vec::with_capacity(items.len());
        for item in &items {
            match self.cell_of(item) {
                Ok(cell) => cells.push(cell),
                // An item without a sound name cannot be reported by name: it is logged and
                // skipped, never stopping the others.
                Err(e) => tracing::error!(error = %e, "cell registry item skipped"),
            }
        }
        cells.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(cells)
    }

    async fn home(&self, tenant: &TenantId) -> Result<Option<CellId>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.map_table)
            .key("sub", s(tenant.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", &self.map_table, e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let raw = item
            .get(field::CELL)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        CellId::parse(&raw).map(Some).map_err(|reason| {
            RegistryError::Malformed {
                table: self.map_table.clone(),
                key: field::CELL,
                reason,
            }
            .into()
        })
    }

    async fn assign(
        &self,
        tenant: &TenantId,
        cell: &CellId,
        within_capacity: bool,
    ) -> Result<Assigned, PortError> {
        for attempt in 0..CONFLICT_ATTEMPTS {
            if let Some(done) = self.try_assign(tenant, cell, within_capacity).await? {
                return Ok(done);
            }
            Self::back_off(attempt).await;
        }
        Err(Transient::wrap(RegistryError::Contended(cell.clone()), None))
    }

    async fn unassign(&self, tenant: &TenantId, cell: &CellId) -> Result<bool, PortError> {
        for attempt in 0..CONFLICT_ATTEMPTS {
            if let Some(done) = self.try_unassign(tenant, cell).await? {
                return Ok(done);
            }
            Self::back_off(attempt).await;
        }
        Err(Transient::wrap(RegistryError::Contended(cell.clone()), None))
    }

    async fn assignments(&self) -> Result<Vec<(String, CellId)>, PortError> {
        let items = self.scan(&self.map_table).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let sub = item
                .get("sub")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            let cell = item
                .get(field::CELL)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            match CellId::parse(&cell) {
                Ok(cell) => out.push((sub, cell)),
                Err(reason) => {
                    tracing::error!(tenant = %sub, %reason, "map entry with a malformed cell skipped")
                }
            }
        }
        Ok(out)
    }
}
