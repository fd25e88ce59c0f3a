//! The tenant guard table in DynamoDB: per-tenant locks and per-key request counters, shared by
//! every container of every function. Written only with conditional requests; items expire
//! through the table's TTL attribute `expires_at`.
//!
//! Table: partition key `pk` (S).
//! - `lock#<sub>`: `owner` (S), `lease_until` (N, Unix milliseconds), `expires_at` (N).
//! - `rate#<key>#<window>`: `hits` (N), `expires_at` (N); `<window>` is the window's index
//!   since the Unix epoch.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use super::dynamodb::{is_condition_failure, is_transient};
use crate::ports::{Admission, PortError, Rate, RateLimiter, TenantLocks, Transient};
use crate::tenant::TenantId;

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {operation} on table `{table}` failed: {message}")]
pub struct GuardError {
    operation: &'static str,
    table: String,
    message: String,
}

/// How long an expired lock or counter stays before TTL may remove it (TTL is lazy anyway).
const KEEP: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
pub struct TenantGuard {
    client: Client,
    table: String,
}

fn string(s: &str) -> AttributeValue {
    AttributeValue::S(s.to_owned())
}

fn num(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl TenantGuard {
    pub fn new(aws: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            table: table.into(),
        }
    }

    fn fail<E, R>(&self, operation: &'static str, e: SdkError<E, R>) -> PortError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let transient = is_transient(&e);
        let error = GuardError {
            operation,
            table: self.table.clone(),
            message: DisplayErrorContext(&e).to_string(),
        };
        if transient {
            Transient::wrap(error, None)
        } else {
            error.into()
        }
    }
}

fn lock_key(tenant: &TenantId) -> String {
    format!("lock#{tenant}")
}

impl TenantGuard {
    async fn put_lock(&self, tenant: &TenantId, owner: &str, lease: Duration) -> Result<bool, PortError> {
        let now = now_ms();
        let until = now + lease.as_millis() as u64;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", string(&lock_key(tenant)))
            .item("owner", string(owner))
            .item("lease_until", num(until))
            .item("expires_at", num(until / 1000 + KEEP.as_secs()))
            .condition_expression("attribute_not_exists(pk) OR lease_until < :now OR #owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", num(now))
            .expression_attribute_values(":owner", string(owner))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(self.fail("PutItem", e)),
        }
    }
}

impl TenantLocks for TenantGuard {
    /// Cancel-safe: the conditional put runs in a task of its own, and when the caller is gone
    /// by the time it succeeds (its deadline dropped it), the task gives the lock up again, so no
    /// lock is left held by nobody until its lease lapses.
    async fn acquire(&self, tenant: &TenantId, owner: &str, lease: Duration) -> Result<bool, PortError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (guard, tenant, owner) = (self.clone(), tenant.clone(), owner.to_owned());
        tokio::spawn(async move {
            let taken = guard.put_lock(&tenant, &owner, lease).await;
            if let Err(Ok(true)) = sender.send(taken) {
                let _ = guard.release(&tenant, &owner).await;
            }
        });
        receiver
            .await
            .map_err(|_| PortError::from("the tenant lock request stopped"))?
    }

    async fn release(&self, tenant: &TenantId, owner: &str) -> Result<(), PortError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", string(&lock_key(tenant)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", string(owner))
            .send()
            .await;
        match delete {
            Ok(_) => Ok(()),
            // Lapsed and taken over, or gone: nothing of ours to give up.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(self.fail("DeleteItem", e)),
        }
    }

    fn release_detached(&self, tenant: &TenantId, owner: &str) {
        let (guard, tenant, owner) = (self.clone(), tenant.clone(), owner.to_owned());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = guard.release(&tenant, &owner).await {
                    tracing::warn!(tenant = %tenant, error = %e, "tenant lock not released; it lapses with its lease");
                }
            });
        }
    }
}

/// The fixed window `now` falls in, and how long until it ends.
pub fn window(rate: Rate, now: u64) -> (u64, Duration) {
    let width = rate.window.as_secs().max(1);
    let index = now / width;
    (index, Duration::from_secs((index + 1) * width - now))
}

impl RateLimiter for TenantGuard {
    async fn admit(&self, key: &str, rate: Rate, now: u64) -> Result<Admission, PortError> {
        let (index, left) = window(rate, now);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", string(&format!("rate#{key}#{index}")))
            .update_expression("SET hits = if_not_exists(hits, :zero) + :one, expires_at = :expires")
            .condition_expression("attribute_not_exists(hits) OR hits < :max")
            .expression_attribute_values(":zero", num(0))
            .expression_attribute_values(":one", num(1))
            .expression_attribute_values(":max", num(rate.max as u64))
            .expression_attribute_values(":expires", num(now + left.as_secs() + KEEP.as_secs()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(Admission::Admitted),
            Err(e) if is_condition_failure(&e) => Ok(Admission::Limited { retry_after: left }),
            Err(e) => Err(self.fail("UpdateItem", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fixed_and_say_when_they_end() {
        let rate = Rate {
            max: 3,
            window: Duration::from_secs(60),
        };
        assert_eq!(window(rate, 120), (2, Duration::from_secs(60)));
        assert_eq!(window(rate, 179), (2, Duration::from_secs(1)));
        assert_eq!(window(rate, 180), (3, Duration::from_secs(60)));
    }
}
