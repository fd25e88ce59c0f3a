//! Shared by the integration tests, `cargo xtask` and the benchmarks: where the local stack
//! lives, how to reach it, and small clients to check what a user would check.
//!
//! Tests never skip when the stack is down: they fail and say `cargo xtask stack up`.

pub mod amqp;
pub mod broker;
pub mod cells;
pub mod cluster;
pub mod cognito;
pub mod emf;
pub mod events;
pub mod faults;
pub mod frontend;
pub mod lambda;
pub mod mailgun;
pub mod probe;
pub mod runtime;
pub mod settle;
pub mod stack;
pub mod template;
pub mod tls;

use tgsearch::TenantId;

/// A fresh random tenant id (a UUID v4, as Cognito's `sub`), so tests can run again and again
/// against the same servers.
pub fn fresh_tenant() -> TenantId {
    TenantId::parse(&tgsearch::credentials::random_uuid()).expect("a formatted UUID is a tenant id")
}
