//! The webhook delivery ledger in DynamoDB: one item per signature token, written with
//! conditional requests so that exactly one invocation holds a token at a time, expiring through
//! the table's TTL attribute `expires_at`.
//!
//! Table: partition key `token` (S); attributes `state` (S), `digest` (S), `owner` (S),
//! `lease_until` (N), `expires_at` (N, the TTL attribute).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::ports::{Claim, Delivery, DeliveryLedger, DeliveryState, PortError};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("DynamoDB {operation} on table `{table}` failed: {message}")]
    Api {
        operation: &'static str,
        table: String,
        message: String,
    },
    #[error("DynamoDB table `{table}` holds a malformed item for a token (attribute `{attribute}`)")]
    Malformed { table: String, attribute: &'static str },
    #[error("the pending claim on a token in `{table}` is no longer this invocation's")]
    LostClaim { table: String },
}

#[derive(Clone, Debug)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoLedger {
    pub fn new(aws: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            table: table.into(),
        }
    }

    fn api<E: std::error::Error + 'static>(&self, operation: &'static str, e: SdkError<E>) -> LedgerError {
        LedgerError::Api {
            operation,
            table: self.table.clone(),
            message: DisplayErrorContext(&e).to_string(),
        }
    }

    fn decode(&self, item: &Item) -> Result<Delivery, LedgerError> {
        let malformed = |attribute| LedgerError::Malformed {
            table: self.table.clone(),
            attribute,
        };
        let s = |name: &'static str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .ok_or_else(|| malformed(name))
        };
        let n = |name: &'static str| -> Result<u64, LedgerError> {
            match item.get(name) {
                None => Ok(0),
                Some(v) => v
                    .as_n()
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| malformed(name)),
            }
        };
        Ok(Delivery {
            state: DeliveryState::parse(&s("state")?).ok_or_else(|| malformed("state"))?,
            digest: s("digest")?,
            owner: item
                .get("owner")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default(),
            lease_until: n("lease_until")?,
            expires_at: n("expires_at")?,
        })
    }

    fn owner_condition(&self) -> &'static str {
        "#state = :pending AND #owner = :owner"
    }
}

fn num(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn string(s: &str) -> AttributeValue {
    AttributeValue::S(s.to_owned())
}

impl DynamoLedger {
    /// One conditional put: `Ok(None)` when the token vanished between the put and the read.
    async fn try_claim(&self, token: &str, entry: &Delivery, now: u64) -> Result<Option<Claim>, PortError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("token", string(token))
            .item("state", string(entry.state.as_str()))
            .item("digest", string(&entry.digest))
            .item("owner", string(&entry.owner))
            .item("lease_until", num(entry.lease_until))
            .item("expires_at", num(entry.expires_at))
            .condition_expression("attribute_not_exists(#token) OR (#state = :pending AND #lease < :now)")
            .expression_attribute_names("#token", "token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":pending", string(DeliveryState::Pending.as_str()))
            .expression_attribute_values(":now", num(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(Some(Claim::Claimed)),
            Err(e) => match e.into_service_error() {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                    failed,
                ) => {
                    let existing = match failed.item() {
                        Some(item) => Some(self.decode(item)?),
                        // Servers that do not return the old item: read it.
                        None => self.get(token).await?,
                    };
                    Ok(existing.map(Claim::Existing))
                }
                other => Err(LedgerError::Api {
                    operation: "PutItem",
                    table: self.table.clone(),
                    message: DisplayErrorContext(&other).to_string(),
                }
                .into()),
            },
        }
    }
}

impl DeliveryLedger for DynamoLedger {
    async fn claim(&self, token: &str, entry: &Delivery, now: u64) -> Result<Claim, PortError> {
        // Released between our put and our read: the token is free again, try once more.
        for _ in 0..3 {
            if let Some(claim) = self.try_claim(token, entry, now).await? {
                return Ok(claim);
            }
        }
        Err(LedgerError::Api {
            operation: "PutItem",
            table: self.table.clone(),
            message: "the token kept changing hands; retry".into(),
        }
        .into())
    }

    async fn get(&self, token: &str) -> Result<Option<Delivery>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("token", string(token))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.api("GetItem", e))?;
        Ok(match out.item() {
            Some(item) => Some(self.decode(item)?),
            None => None,
        })
    }

    async fn mark_sent(&self, token: &str, owner: &str) -> Result<(), PortError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("token", string(token))
            .update_expression("SET #state = :sent REMOVE #lease")
            .condition_expression(self.owner_condition())
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":sent", string(DeliveryState::Sent.as_str()))
            .expression_attribute_values(":pending", string(DeliveryState::Pending.as_str()))
            .expression_attribute_values(":owner", string(owner))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(LedgerError::LostClaim {
                table: self.table.clone(),
            }
            .into()),
            Err(e) => Err(self.api("UpdateItem", e).into()),
        }
    }

    async fn release(&self, token: &str, owner: &str) -> Result<(), PortError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("token", string(token))
            .condition_expression(self.owner_condition())
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":pending", string(DeliveryState::Pending.as_str()))
            .expression_attribute_values(":owner", string(owner))
            .send()
            .await;
        match delete {
            // Somebody else holds it now: nothing of ours to give up.
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(self.api("DeleteItem", e).into()),
        }
    }
}

/// DynamoDB refused a conditional write because its condition did not hold.
pub(crate) fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &SdkError<E, R>,
) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// No answer, a timeout, throttling or a server error: a retry may pass.
pub(crate) fn is_transient<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => matches!(
            s.err().code(),
            Some(
                "ThrottlingException"
                    | "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
            )
        ),
        _ => false,
    }
}
