//! A bearer token in, the tenant it speaks for out.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};

use super::claims::{self, Claims, Expected, Rejection};
use super::jwks::{JwksError, JwksFetch, KeyCache};
use super::{LEEWAY, MAX_TOKEN_LEN};
use crate::tenant::TenantId;

/// Why a token did not yield a tenant.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is not one of ours: the caller gets 401.
    #[error("token refused: {0}")]
    Rejected(#[from] Rejection),
    /// The pool's keys cannot be had: nothing can be decided, the caller should retry (503).
    #[error(transparent)]
    KeysUnavailable(#[from] JwksError),
}

/// Verifies Cognito tokens of one pool and app client. Build once per container.
pub struct TokenVerifier<F> {
    expected: Expected,
    keys: KeyCache<F>,
    validation: Validation,
}

impl<F: JwksFetch> TokenVerifier<F> {
    pub fn new(expected: Expected, source: F) -> Self {
        // RS256 only, whatever the token's header claims; `exp` with a small leeway; `iss` here
        // and again in `claims::check`; `aud` is checked there, since access tokens carry
        // `client_id` instead.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.validate_aud = false;
        validation.set_issuer(&[&expected.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Self {
            expected,
            keys: KeyCache::new(source),
            validation,
        }
    }

    pub fn expected(&self) -> &Expected {
        &self.expected
    }

    /// Fetches the pool's keys ahead of the first request (cold start).
    pub async fn prefetch(&self) -> Result<usize, JwksError> {
        self.keys.refresh().await
    }

    pub async fn verify(&self, token: &str) -> Result<TenantId, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Rejection::TooLong.into());
        }
        let header = decode_header(token).map_err(|_| Rejection::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(Rejection::Algorithm.into());
        }
        let kid = header.kid.ok_or(Rejection::NoKid)?;
        let key = self.keys.key(&kid).await?.ok_or(Rejection::UnknownKey)?;
        let data = decode::<Claims>(token, &key, &self.validation).map_err(|e| rejection(e.kind()))?;
        let now = jsonwebtoken::get_current_timestamp();
        Ok(claims::check(
            &data.claims,
            &self.expected,
            now,
            LEEWAY.as_secs(),
        )?)
    }
}

fn rejection(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) => Rejection::Signature,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::MissingRequiredClaim(_) => Rejection::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Rejection::Algorithm,
        _ => Rejection::Malformed,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Tokens signed here with keys generated here, checked against an in-memory JWKS: every
    //! way a token can be wrong, one at a time.

    use std::sync::Arc;

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};

    use super::*;
    use crate::cognito_jwt::TokenUse;
    use crate::cognito_jwt::jwks::tests::MemoryJwks;

    pub(crate) const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool";
    pub(crate) const CLIENT: &str = "frontendclient0123456789ab";
    pub(crate) const SUB: &str = "4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c";

    /// An RSA key made for the test: signs tokens, and publishes its public half as a JWK.
    pub(crate) struct TestKey {
        pub kid: String,
        encoding: EncodingKey,
        pub jwk: Value,
    }

    impl TestKey {
        pub(crate) fn generate(kid: &str) -> Self {
            let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                STANDARD.encode(der.as_ref())
            );
            let public = pair.public_key();
            let jwk = json!({
                "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            });
            Self {
                kid: kid.into(),
                encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
                jwk,
            }
        }

        pub(crate) fn sign(&self, claims: &Value) -> String {
            self.sign_as(&self.kid, claims)
        }

        pub(crate) fn sign_as(&self, kid: &str, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(kid.into());
            encode(&header, claims, &self.encoding).unwrap()
        }
    }

    pub(crate) fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    pub(crate) fn id_claims() -> Value {
        json!({"iss": ISS, "sub": SUB, "aud": CLIENT, "token_use": "id", "iat": now(), "exp": now() + 3600,
               "cognito:username": "someone"})
    }

    pub(crate) fn access_claims() -> Value {
        json!({"iss": ISS, "sub": SUB, "client_id": CLIENT, "token_use": "access", "iat": now(), "exp": now() + 3600,
               "scope": "aws.cognito.signin.user.admin"})
    }

    pub(crate) fn expected(token_use: TokenUse) -> Expected {
        Expected {
            issuer: ISS.into(),
            client_id: CLIENT.into(),
            token_use,
        }
    }

    pub(crate) fn verifier(key: &TestKey, token_use: TokenUse) -> TokenVerifier<Arc<MemoryJwks>> {
        let jwks = Arc::new(MemoryJwks::new(json!({ "keys": [key.jwk] })));
        TokenVerifier::new(expected(token_use), jwks)
    }

    fn with(mut claims: Value, field: &str, value: Value) -> Value {
        claims[field] = value;
        claims
    }

    fn without(mut claims: Value, field: &str) -> Value {
        claims.as_object_mut().unwrap().remove(field);
        claims
    }

    async fn rejection_of(v: &TokenVerifier<Arc<MemoryJwks>>, token: &str) -> Rejection {
        match v.verify(token).await {
            Err(VerifyError::Rejected(r)) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_genuine_token_of_the_configured_kind_yields_its_tenant() {
        let key = TestKey::generate("k1");
        let v = verifier(&key, TokenUse::Id);
        assert_eq!(v.verify(&key.sign(&id_claims())).await.unwrap().as_str(), SUB);
        let v = verifier(&key, TokenUse::Access);
        assert_eq!(v.verify(&key.sign(&access_claims())).await.unwrap().as_str(), SUB);
    }

    #[tokio::test]
    async fn every_wrong_claim_is_refused() {
        let key = TestKey::generate("k1");
        let v = verifier(&key, TokenUse::Id);
        let cases = [
            (with(id_claims(), "exp", json!(now() - 60)), Rejection::Expired),
            (without(id_claims(), "exp"), Rejection::MissingClaim),
            (
                with(
                    id_claims(),
                    "iss",
                    json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"),
                ),
                Rejection::Issuer,
            ),
            (without(id_claims(), "iss"), Rejection::MissingClaim),
            (
                with(id_claims(), "aud", json!("another-client")),
                Rejection::Audience,
            ),
            (access_claims(), Rejection::TokenUse),
            (with(id_claims(), "sub", json!("not-a-uuid")), Rejection::Subject),
            (without(id_claims(), "sub"), Rejection::MissingClaim),
            (
                with(id_claims(), "iat", json!(now() + 600)),
                Rejection::IssuedInFuture,
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(rejection_of(&v, &key.sign(&claims)).await, want, "{claims}");
        }
    }

    #[tokio::test]
    async fn an_expiry_within_the_leeway_is_tolerated() {
        let key = TestKey::generate("k1");
        let v = verifier(&key, TokenUse::Id);
        let just = with(id_claims(), "exp", json!(now() - 2));
        assert!(v.verify(&key.sign(&just)).await.is_ok());
    }

    #[tokio::test]
    async fn another_key_is_refused_whatever_kid_it_claims() {
        let ours = TestKey::generate("k1");
        let theirs = TestKey::generate("k1");
        let v = verifier(&ours, TokenUse::Id);
        // Same kid as ours: the signature does not verify.
        assert_eq!(
            rejection_of(&v, &theirs.sign(&id_claims())).await,
            Rejection::Signature
        );
        // A kid the pool does not publish.
        assert_eq!(
            rejection_of(&v, &theirs.sign_as("k-unknown", &id_claims())).await,
            Rejection::UnknownKey
        );
    }

    #[tokio::test]
    async fn other_algorithms_and_garbage_are_refused() {
        let key = TestKey::generate("k1");
        let v = verifier(&key, TokenUse::Id);
        // HS256 with the public key's bytes as the secret: the classic confusion attack.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let hs = encode(
            &header,
            &id_claims(),
            &EncodingKey::from_secret(key.jwk["n"].as_str().unwrap().as_bytes()),
        )
        .unwrap();
        assert_eq!(rejection_of(&v, &hs).await, Rejection::Algorithm);
        // `alg: none`, unsigned.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(id_claims().to_string())
        );
        assert_eq!(rejection_of(&v, &none).await, Rejection::Malformed);
        // No kid.
        let mut header = Header::new(Algorithm::RS256);
        header.kid = None;
        let no_kid = encode(&header, &id_claims(), &key.encoding).unwrap();
        assert_eq!(rejection_of(&v, &no_kid).await, Rejection::NoKid);
        for garbage in ["", "a.b.c", "not a token", "...."] {
            assert_eq!(
                rejection_of(&v, garbage).await,
                Rejection::Malformed,
                "{garbage:?}"
            );
        }
        assert_eq!(
            rejection_of(&v, &"a".repeat(MAX_TOKEN_LEN + 1)).await,
            Rejection::TooLong
        );
        // A genuine token with its payload swapped for another sub's.
        let genuine = key.sign(&id_claims());
        let parts: Vec<&str> = genuine.split('.').collect();
        let other = with(id_claims(), "sub", json!("00000000-0000-4000-8000-000000000000"));
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(other.to_string()),
            parts[2]
        );
        assert_eq!(rejection_of(&v, &forged).await, Rejection::Signature);
    }

    #[tokio::test]
    async fn unreachable_keys_are_not_a_rejection() {
        let key = TestKey::generate("k1");
        let jwks = Arc::new(MemoryJwks::new(json!({ "keys": [key.jwk] })));
        jwks.set(Err(500));
        let v = TokenVerifier::new(expected(TokenUse::Id), jwks);
        let err = v.verify(&key.sign(&id_claims())).await.unwrap_err();
        assert!(matches!(err, VerifyError::KeysUnavailable(_)), "{err:?}");
    }
}
