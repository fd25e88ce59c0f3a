//! TGSearch tenant provisioning.
//!
//! - domain logic: [`tenant`], [`credentials`], [`provision`], [`teardown`], [`deadline`],
//!   [`bootstrap`], [`status`];
//! - the capabilities it needs, one trait each: [`ports`];
//! - one adapter per external system: [`adapters`];
//! - entry points: [`handlers`] (Lambda), [`app`] (the context built once per process),
//!   [`config`] (typed settings from the environment).

pub mod adapters;
pub mod app;
pub mod backend;
pub mod bootstrap;
pub mod cells;
pub mod cluster;
pub mod cognito_jwt;
pub mod config;
pub mod credentials;
pub mod deadline;
pub mod eks;
pub mod env;
pub mod fleet;
pub mod handlers;
pub mod mailgun;
pub mod metrics;
pub mod ports;
pub mod provision;
pub mod readiness;
pub mod reconcile;
pub mod rotation;
pub mod status;
pub mod teardown;
pub mod telemetry;
pub mod tenant;

#[cfg(test)]
mod memory;

pub use tenant::{InvalidTenantId, TenantId};
