//! Mailgun webhooks: never lose an alert, never send one twice.
//!
//! - [`signature`]: the signing key, and Mailgun's HMAC-SHA256 over `timestamp + token`, compared
//!   in constant time, then checked against an acceptance horizon that covers Mailgun's whole
//!   retry schedule (a retry carries the original signature block).
//! - [`webhook`]: the body, JSON (current webhooks) or form-encoded (legacy webhooks), read into
//!   one shape, with a size limit and errors that never quote the input.
//! - [`keyring`]: the key as a container holds it, read again when a signature does not match.
//! - [`alert`]: which events mean a mail is lost for good, and the alert a person reads.
//!
//! Replay protection and exactly-once alerts come from the delivery ledger
//! ([`crate::ports::DeliveryLedger`]), keyed by the signature's token, not from a short window.

pub mod alert;
pub mod keyring;
pub mod signature;
pub mod webhook;

pub use alert::{Alert, Verdict, classify};
pub use keyring::{Keyring, Reloaded};
pub use signature::{
    FUTURE_SKEW, HORIZON, KeyError, Signature, SigningKey, VerifyError, load_signing_key, verify,
};
pub use webhook::{MAX_BODY, ParseError, Webhook, parse};
