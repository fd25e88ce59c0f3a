//! Shared by the integration tests, `cargo xtask` and the benchmarks: where the local stack
//! lives, how to reach it, and small clients to check what a user would check.
//!
//! Tests never skip when the stack is down: they fail and say `cargo xtask stack up`.

pub mod amqp;
pub mod broker;
pub mod cluster;
pub mod cognito;
pub mod events;
pub mod faults;
pub mod lambda;
pub mod mailgun;
pub mod probe;
pub mod runtime;
pub mod settle;
pub mod stack;
pub mod tls;

use tgsearch::TenantId;

/// A fresh random tenant id (a UUID v4, as Cognito's `sub`), so tests can run again and again
/// against the same servers.
pub fn fresh_tenant() -> TenantId {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let sub = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    TenantId::parse(&sub).expect("a formatted UUID is a tenant id")
}
