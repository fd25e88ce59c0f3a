//! The event fixtures in `tests/events/`, shared with `cargo lambda invoke --data-file` and
//! `sam local invoke -e`.

use std::path::PathBuf;

use serde_json::Value;
use tgsearch::TenantId;

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/events")
}

/// A fixture as JSON.
pub fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The signup fixture for `tenant`: Cognito's post-confirmation event of a new user.
pub fn signup_for(tenant: &TenantId) -> Value {
    let mut event = load("post-confirmation-signup.json");
    let email = format!("user-{}@example.com", &tenant.as_str()[..8]);
    event["userName"] = tenant.as_str().into();
    let attributes = &mut event["request"]["userAttributes"];
    attributes["sub"] = tenant.as_str().into();
    attributes["email"] = email.clone().into();
    attributes["cognito:email_alias"] = email.into();
    event
}
