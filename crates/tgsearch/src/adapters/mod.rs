//! One module per external system, each implementing the ports it serves.

pub mod cell_registry;
pub mod cognito;
pub mod dynamodb;
pub mod kubernetes;
pub mod rabbitmq;
pub mod secrets_manager;
pub mod sns;
pub mod sqs;
pub mod tenant_access;
pub mod tenant_guard;
