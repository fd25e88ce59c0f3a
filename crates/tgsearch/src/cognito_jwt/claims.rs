//! The claim checks that make a correctly signed token one of *ours*: this pool, this app client,
//! the configured kind of token, a tenant `sub`. Pure, so every rule has a unit test.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::tenant::TenantId;

/// Which of Cognito's two JWTs an endpoint accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenUse {
    /// The ID token: `token_use: id`, the app client in `aud`.
    Id,
    /// The access token: `token_use: access`, the app client in `client_id`, no `aud`.
    Access,
}

impl TokenUse {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenUse::Id => "id",
            TokenUse::Access => "access",
        }
    }
}

impl fmt::Display for TokenUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenUse {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "id" => Ok(TokenUse::Id),
            "access" => Ok(TokenUse::Access),
            other => Err(format!("`{other}` is neither `id` nor `access`")),
        }
    }
}

/// What a token must say to be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// `https://cognito-idp.<region>.amazonaws.com/<pool>`.
    pub issuer: String,
    /// The app client the token was issued to.
    pub client_id: String,
    pub token_use: TokenUse,
}

/// `aud` is a string in Cognito's ID tokens; RFC 7519 also allows an array.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, client_id: &str) -> bool {
        match self {
            Audience::One(a) => a == client_id,
            Audience::Many(all) => all.iter().any(|a| a == client_id),
        }
    }
}

/// The claims this module reads; everything else in the token is ignored.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub token_use: Option<String>,
    pub aud: Option<Audience>,
    pub client_id: Option<String>,
    /// Seconds since the epoch (Cognito writes integers; a JSON number of any kind is read).
    pub iat: Option<f64>,
}

/// Why a token was refused. Logged (never the token or any claim's value) and never sent to the
/// caller, who only learns `invalid_token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no bearer token in the Authorization header")]
    Missing,
    #[error("the Authorization header is not one `Bearer <token>`")]
    NotBearer,
    #[error("the token is longer than any Cognito token")]
    TooLong,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is not signed with RS256")]
    Algorithm,
    #[error("the token header names no key (`kid`)")]
    NoKid,
    #[error("the token is signed with a key the user pool does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token lacks a required claim (exp, iss or sub)")]
    MissingClaim,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token was issued by another issuer (another user pool)")]
    Issuer,
    #[error("the token is not the configured kind (`token_use`)")]
    TokenUse,
    #[error("the ID token was issued to another app client (`aud`)")]
    Audience,
    #[error("the access token was issued to another app client (`client_id`)")]
    ClientId,
    #[error("the token's `sub` is not a tenant id")]
    Subject,
}

/// Checks a signature-verified token's claims; returns the tenant it speaks for.
/// `now` is seconds since the epoch; `leeway` the clock skew tolerated on `iat`.
pub fn check(claims: &Claims, expected: &Expected, now: u64, leeway: u64) -> Result<TenantId, Rejection> {
    if claims.iss.as_deref() != Some(expected.issuer.as_str()) {
        return Err(Rejection::Issuer);
    }
    if claims.token_use.as_deref() != Some(expected.token_use.as_str()) {
        return Err(Rejection::TokenUse);
    }
    match expected.token_use {
        TokenUse::Id => {
            if !claims
                .aud
                .as_ref()
                .is_some_and(|aud| aud.contains(&expected.client_id))
            {
                return Err(Rejection::Audience);
            }
        }
        TokenUse::Access => {
            if claims.client_id.as_deref() != Some(expected.client_id.as_str()) {
                return Err(Rejection::ClientId);
            }
        }
    }
    if claims.iat.is_some_and(|iat| iat > (now + leeway) as f64) {
        return Err(Rejection::IssuedInFuture);
    }
    let sub = claims.sub.as_deref().ok_or(Rejection::MissingClaim)?;
    TenantId::parse(sub).map_err(|_| Rejection::Subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool";
    const CLIENT: &str = "frontendclient0123456789ab";
    const SUB: &str = "4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c";
    const NOW: u64 = 1_800_000_000;

    fn expected(token_use: TokenUse) -> Expected {
        Expected {
            issuer: ISS.into(),
            client_id: CLIENT.into(),
            token_use,
        }
    }

    fn id_claims() -> Claims {
        Claims {
            iss: Some(ISS.into()),
            sub: Some(SUB.into()),
            token_use: Some("id".into()),
            aud: Some(Audience::One(CLIENT.into())),
            client_id: None,
            iat: Some(NOW as f64),
        }
    }

    fn access_claims() -> Claims {
        Claims {
            token_use: Some("access".into()),
            aud: None,
            client_id: Some(CLIENT.into()),
            ..id_claims()
        }
    }

    #[test]
    fn an_id_token_of_this_pool_and_client_names_its_tenant() {
        let tenant = check(&id_claims(), &expected(TokenUse::Id), NOW, 5).unwrap();
        assert_eq!(tenant.as_str(), SUB);
        // RFC 7519 allows an array of audiences.
        let many = Claims {
            aud: Some(Audience::Many(vec!["other".into(), CLIENT.into()])),
            ..id_claims()
        };
        assert!(check(&many, &expected(TokenUse::Id), NOW, 5).is_ok());
    }

    #[test]
    fn an_access_token_of_this_pool_and_client_names_its_tenant() {
        let tenant = check(&access_claims(), &expected(TokenUse::Access), NOW, 5).unwrap();
        assert_eq!(tenant.as_str(), SUB);
    }

    #[test]
    fn the_other_kind_of_token_is_refused() {
        assert_eq!(
            check(&access_claims(), &expected(TokenUse::Id), NOW, 5),
            Err(Rejection::TokenUse)
        );
        assert_eq!(
            check(&id_claims(), &expected(TokenUse::Access), NOW, 5),
            Err(Rejection::TokenUse)
        );
        // An access token dressed up with our client as `aud` is still an access token.
        let dressed = Claims {
            aud: Some(Audience::One(CLIENT.into())),
            ..access_claims()
        };
        assert_eq!(
            check(&dressed, &expected(TokenUse::Id), NOW, 5),
            Err(Rejection::TokenUse)
        );
        let none = Claims {
            token_use: None,
            ..id_claims()
        };
        assert_eq!(
            check(&none, &expected(TokenUse::Id), NOW, 5),
            Err(Rejection::TokenUse)
        );
    }

    #[test]
    fn another_pool_is_refused() {
        for iss in [
            None,
            Some("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"),
            Some("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool/"),
            Some("http://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool"),
        ] {
            let claims = Claims {
                iss: iss.map(String::from),
                ..id_claims()
            };
            assert_eq!(
                check(&claims, &expected(TokenUse::Id), NOW, 5),
                Err(Rejection::Issuer),
                "{iss:?}"
            );
        }
    }

    #[test]
    fn another_app_client_is_refused() {
        for aud in [
            None,
            Some(Audience::One("someoneelse".into())),
            Some(Audience::Many(vec![])),
            Some(Audience::One(format!("{CLIENT} "))),
        ] {
            let claims = Claims { aud, ..id_claims() };
            assert_eq!(
                check(&claims, &expected(TokenUse::Id), NOW, 5),
                Err(Rejection::Audience)
            );
        }
        // An ID token does not pass on `client_id`; an access token not on `aud`.
        let sneaky_id = Claims {
            aud: Some(Audience::One("someoneelse".into())),
            client_id: Some(CLIENT.into()),
            ..id_claims()
        };
        assert_eq!(
            check(&sneaky_id, &expected(TokenUse::Id), NOW, 5),
            Err(Rejection::Audience)
        );
        let sneaky_access = Claims {
            aud: Some(Audience::One(CLIENT.into())),
            client_id: Some("someoneelse".into()),
            ..access_claims()
        };
        assert_eq!(
            check(&sneaky_access, &expected(TokenUse::Access), NOW, 5),
            Err(Rejection::ClientId)
        );
    }

    #[test]
    fn a_sub_that_is_no_tenant_id_is_refused() {
        for sub in [
            None,
            Some("4F1C2B3A-9D8E-4F7A-8B6C-5D4E3F2A1B0C"),
            Some("../4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a"),
            Some(""),
        ] {
            let claims = Claims {
                sub: sub.map(String::from),
                ..id_claims()
            };
            let want = if sub.is_none() {
                Rejection::MissingClaim
            } else {
                Rejection::Subject
            };
            assert_eq!(check(&claims, &expected(TokenUse::Id), NOW, 5), Err(want));
        }
    }

    #[test]
    fn a_token_from_the_future_is_refused_beyond_the_leeway() {
        let soon = Claims {
            iat: Some((NOW + 5) as f64),
            ..id_claims()
        };
        assert!(check(&soon, &expected(TokenUse::Id), NOW, 5).is_ok());
        let later = Claims {
            iat: Some((NOW + 60) as f64),
            ..id_claims()
        };
        assert_eq!(
            check(&later, &expected(TokenUse::Id), NOW, 5),
            Err(Rejection::IssuedInFuture)
        );
    }

    #[test]
    fn token_use_settings_parse() {
        assert_eq!("id".parse::<TokenUse>(), Ok(TokenUse::Id));
        assert_eq!("access".parse::<TokenUse>(), Ok(TokenUse::Access));
        assert!("refresh".parse::<TokenUse>().unwrap_err().contains("`refresh`"));
    }
}
