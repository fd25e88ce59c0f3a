//! The RabbitMQ management HTTP API (`/api/...`): the client ([`ManagementClient`]), what it
//! reads ([`Vhost`], [`User`], [`Permission`]), and the tenant's share of the broker as the
//! provisioner's [`TenantBroker`](crate::ports::TenantBroker) port (`broker`).
//!
//! Names are percent-encoded into the path (the default vhost `/` becomes `%2F`); errors keep
//! the HTTP status and RabbitMQ's own `reason`; deletes treat 404 as "already gone", which is
//! what makes teardown idempotent.

mod broker;
mod client;
mod model;

use reqwest::{Method, StatusCode};

use crate::ports::PortError;

pub use self::broker::{TENANT_VHOST_TAG, user_not_ours};
pub use self::client::{AdminCredentials, ManagementClient};
pub use self::model::{
    BUILT_IN_EXCHANGES, ClusterView, Exchange, NodeMemory, NodeView, Overview, Permission, User, Vhost,
    missing_built_in_exchanges,
};

#[derive(Debug, thiserror::Error)]
pub enum RabbitMqError {
    #[error("RabbitMQ management API: {method} {path} answered {status}: {reason}")]
    Api {
        method: Method,
        path: String,
        status: StatusCode,
        /// RabbitMQ's `reason` field, or the body when it is not RabbitMQ's JSON.
        reason: String,
        /// The `Retry-After` the server sent, if any.
        retry_after: Option<std::time::Duration>,
    },
    #[error("RabbitMQ management API: {method} {path} failed: {source}")]
    Transport {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("RabbitMQ management API: {method} {path} answered with an unexpected body: {source}")]
    Decode {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
}

impl RabbitMqError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            RabbitMqError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A failure a retry may fix: no answer (refused, reset, timed out), a 5xx, 429 or 408,
    /// and RabbitMQ 4's `400 {"error":"bad_request","reason":"timeout"}`: what a node cut off in
    /// a minority answers a user or permission write after 30 s, since the metadata store
    /// (Khepri, a Raft log) cannot commit without a majority.
    pub fn is_transient(&self) -> bool {
        match self {
            RabbitMqError::Transport { .. } => true,
            RabbitMqError::Api { status, reason, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || (*status == StatusCode::BAD_REQUEST && reason.trim() == "timeout")
            }
            RabbitMqError::Decode { .. } => false,
        }
    }
}

/// As the ports want it: transient failures marked so that the step retries them.
pub(crate) fn port(e: RabbitMqError) -> PortError {
    if e.is_transient() {
        let retry_after = match &e {
            RabbitMqError::Api { retry_after, .. } => *retry_after,
            _ => None,
        };
        crate::ports::Transient::wrap(e, retry_after)
    } else {
        e.into()
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by RabbitMQ or proxies before it).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(std::time::Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: StatusCode, reason: &str) -> RabbitMqError {
        RabbitMqError::Api {
            method: Method::PUT,
            path: "/api/users/x".into(),
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    #[test]
    fn a_minority_nodes_timeout_is_worth_a_retry_and_other_bad_requests_are_not() {
        assert!(api(StatusCode::BAD_REQUEST, "timeout").is_transient());
        assert!(
            api(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Timed out waiting for the vhost to initialise"
            )
            .is_transient()
        );
        assert!(!api(StatusCode::BAD_REQUEST, "password_hash or password is required").is_transient());
        assert!(!api(StatusCode::UNAUTHORIZED, "timeout").is_transient());
    }
}
