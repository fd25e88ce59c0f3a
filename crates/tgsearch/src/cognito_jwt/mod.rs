//! Verification of Cognito user-pool tokens (RS256 JWTs), so that a function is safe on its own:
//! behind a Lambda function URL, or behind an API Gateway authorizer that is missing or
//! misconfigured.
//!
//! A token is accepted only when
//! - it is a JWS signed with RS256 (no other algorithm, whatever its header says) by a key of the
//!   pool's JWKS, found by the header's `kid` ([`jwks`]: fetched once per container under a
//!   deadline, refreshed on an unknown `kid` at most once per [`jwks::REFRESH_AFTER_SUCCESS`]);
//! - `iss` is the pool, `exp` has not passed (with [`LEEWAY`] for clock skew), `iat` is not in the
//!   future;
//! - `token_use` is the configured kind, and the app client matches: `aud` for an ID token,
//!   `client_id` for an access token ([`claims`]);
//! - `sub` is a tenant id (a lowercase UUID).
//!
//! - and Cognito still knows the user as active ([`sessions`]: not disabled, deleted or signed
//!   out), asked at most every 30 s per token per container.
//!
//! The signature itself is checked by `jsonwebtoken` on aws-lc-rs; nothing here hand-writes RS256.

pub mod claims;
pub mod jwks;
pub mod sessions;
pub(crate) mod verifier;

use std::time::Duration;

pub use claims::{Expected, Rejection, TokenUse};
pub use jwks::{HttpJwks, JwksError, JwksFetch, KeyCache};
pub use sessions::{CachedSessions, Session, SessionCheck};
pub use verifier::{TokenVerifier, VerifyError};

/// Clock skew tolerated on `exp` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(5);

/// Longest token considered at all: Cognito's are 1-2 KB; anything far larger is refused before
/// it is parsed.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The issuer of a user pool's tokens: `https://cognito-idp.<region>.amazonaws.com/<pool>`.
pub fn issuer(region: &str, pool_id: &str) -> String {
    format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}")
}

/// Where a pool publishes its signing keys: `<issuer>/.well-known/jwks.json`.
pub fn jwks_url(issuer: &str) -> String {
    format!("{issuer}/.well-known/jwks.json")
}

/// The region a user pool lives in, from its id (`eu-west-1_AbCdEf123` → `eu-west-1`), or `None`
/// when the id does not have that shape.
pub fn pool_region(pool_id: &str) -> Option<&str> {
    let (region, id) = pool_id.split_once('_')?;
    let region_ok = region.split('-').count() >= 3
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let id_ok = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
    (region_ok && id_ok).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_pool_id() {
        assert_eq!(pool_region("eu-west-1_AbCdEf123"), Some("eu-west-1"));
        assert_eq!(
            pool_region("us-east-1_008a1fae79844b0d95aacf16d56b9378"),
            Some("us-east-1")
        );
        assert_eq!(pool_region("us-gov-west-1_Abc"), Some("us-gov-west-1"));
        for bad in [
            "",
            "AbCdEf123",
            "eu-west-1_",
            "_Abc",
            "eu_Abc",
            "eu-west-1_a/b",
            "EU-WEST-1_Abc",
        ] {
            assert_eq!(pool_region(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn issuer_and_jwks_url_follow_cognito() {
        let iss = issuer("eu-west-1", "eu-west-1_AbC");
        assert_eq!(iss, "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC");
        assert_eq!(
            jwks_url(&iss),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC/.well-known/jwks.json"
        );
    }
}
