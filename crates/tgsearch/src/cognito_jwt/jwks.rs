//! The user pool's signing keys (its JWKS), fetched over HTTPS once per container and again only
//! when a token names a key we do not know, at most once per [`REFRESH_AFTER_SUCCESS`], so a
//! stream of tokens with made-up `kid`s cannot make the function fetch on every request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use tokio::time::Instant;

/// The most one JWKS fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// After a successful fetch, an unknown `kid` triggers the next one no sooner than this.
pub const REFRESH_AFTER_SUCCESS: Duration = Duration::from_secs(10);
/// After a failed fetch, the next attempt waits this long (requests meanwhile get 503).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// A JWKS larger than this is not a user pool's.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot fetch the user pool's keys from {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the user pool's keys at {url} did not arrive within {ms} ms")]
    TimedOut { url: String, ms: u64 },
    #[error("{url} answered {status} instead of the user pool's keys")]
    Status { url: String, status: u16 },
    #[error("{url} sent more than {MAX_JWKS_BYTES} bytes: not a JWKS")]
    TooLarge { url: String },
    #[error("{url} did not send a JWKS: {reason}")]
    Malformed { url: String, reason: String },
    #[error("the JWKS at {url} holds no RS256 signing key")]
    NoKeys { url: String },
    #[error("the user pool's keys could not be fetched a moment ago; next attempt in {retry_in_ms} ms")]
    RecentlyFailed { retry_in_ms: u64 },
}

/// Where the keys come from: HTTPS in production, memory in unit tests.
pub trait JwksFetch: Send + Sync {
    /// Where the keys are, for messages.
    fn url(&self) -> &str;
    /// The JWKS document's bytes.
    fn fetch(&self) -> impl Future<Output = Result<Vec<u8>, JwksError>> + Send;
}

/// The pool's JWKS over HTTP(S), with the process' one client, under [`FETCH_TIMEOUT`].
#[derive(Clone, Debug)]
pub struct HttpJwks {
    http: reqwest::Client,
    url: String,
}

impl HttpJwks {
    pub fn new(http: reqwest::Client, url: impl Into<String>) -> Self {
        Self {
            http,
            url: url.into(),
        }
    }
}

impl JwksFetch for HttpJwks {
    fn url(&self) -> &str {
        &self.url
    }

    async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
        let url = || self.url.clone();
        let http_error = |source: reqwest::Error| {
            if source.is_timeout() {
                JwksError::TimedOut {
                    url: url(),
                    ms: FETCH_TIMEOUT.as_millis() as u64,
                }
            } else {
                JwksError::Http { url: url(), source }
            }
        };
        let mut response = self
            .http
            .get(&self.url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(http_error)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: url(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http_error)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::TooLarge { url: url() });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The RS256 signature keys of a JWKS document, by `kid`. Keys of other types, other algorithms,
/// other uses, or without a `kid` are skipped, as is any entry that does not parse.
pub fn parse_keys(url: &str, document: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document = serde_json::from_slice(document).map_err(|e| JwksError::Malformed {
        url: url.into(),
        reason: e.to_string(),
    })?;
    let keys: HashMap<_, _> = doc
        .keys
        .into_iter()
        .filter_map(|raw| serde_json::from_value::<Jwk>(raw).ok())
        .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
        .filter(|jwk| matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256)))
        .filter(|jwk| matches!(jwk.common.public_key_use, None | Some(PublicKeyUse::Signature)))
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some((kid, Arc::new(key)))
        })
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoKeys { url: url.into() });
    }
    Ok(keys)
}

#[derive(Debug, Default)]
struct Attempt {
    at: Option<Instant>,
    succeeded: bool,
}

/// The keys of one user pool, shared by every request of a container.
pub struct KeyCache<F> {
    source: F,
    keys: RwLock<Arc<HashMap<String, Arc<DecodingKey>>>>,
    /// Held while fetching, so concurrent requests wait for one fetch instead of starting theirs.
    last: tokio::sync::Mutex<Attempt>,
}

impl<F: JwksFetch> KeyCache<F> {
    pub fn new(source: F) -> Self {
        Self {
            source,
            keys: RwLock::default(),
            last: tokio::sync::Mutex::default(),
        }
    }

    fn known(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(kid)
            .cloned()
    }

    /// Fetches the keys now, whatever the rate limit says: for the cold start. Returns how many
    /// usable keys the pool publishes.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let mut last = self.last.lock().await;
        self.fetch(&mut last).await
    }

    async fn fetch(&self, last: &mut Attempt) -> Result<usize, JwksError> {
        last.at = Some(Instant::now());
        last.succeeded = false;
        let document = self.source.fetch().await?;
        let keys = parse_keys(self.source.url(), &document)?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
        last.succeeded = true;
        Ok(count)
    }

    /// The key named `kid`: `Ok(None)` when the pool does not publish it (as of the last fetch
    /// the rate limit allowed), `Err` when the keys cannot be had at the moment.
    pub async fn key(&self, kid: &str) -> Result<Option<Arc<DecodingKey>>, JwksError> {
        if let Some(key) = self.known(kid) {
            return Ok(Some(key));
        }
        let mut last = self.last.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.known(kid) {
            return Ok(Some(key));
        }
        if let Some(at) = last.at {
            let wait = if last.succeeded {
                REFRESH_AFTER_SUCCESS
            } else {
                RETRY_AFTER_FAILURE
            };
            let next = at + wait;
            let now = Instant::now();
            if now < next {
                return if last.succeeded {
                    Ok(None)
                } else {
                    Err(JwksError::RecentlyFailed {
                        retry_in_ms: (next - now).as_millis() as u64,
                    })
                };
            }
        }
        let count = self.fetch(&mut last).await?;
        tracing::info!(keys = count, url = %self.source.url(), "fetched the user pool's keys");
        Ok(self.known(kid))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A JWKS in memory that counts how often it is fetched, and can be made to fail.
    pub(crate) struct MemoryJwks {
        pub document: std::sync::Mutex<Result<Vec<u8>, u16>>,
        pub fetches: AtomicUsize,
    }

    impl MemoryJwks {
        pub(crate) fn new(document: serde_json::Value) -> Self {
            Self {
                document: std::sync::Mutex::new(Ok(document.to_string().into_bytes())),
                fetches: AtomicUsize::new(0),
            }
        }
        pub(crate) fn set(&self, document: Result<serde_json::Value, u16>) {
            *self.document.lock().unwrap() = document.map(|d| d.to_string().into_bytes());
        }
        pub(crate) fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    impl JwksFetch for MemoryJwks {
        fn url(&self) -> &str {
            "memory://jwks"
        }
        async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            self.document
                .lock()
                .unwrap()
                .clone()
                .map_err(|status| JwksError::Status {
                    url: self.url().into(),
                    status,
                })
        }
    }

    impl<F: JwksFetch> JwksFetch for Arc<F> {
        fn url(&self) -> &str {
            (**self).url()
        }
        fn fetch(&self) -> impl Future<Output = Result<Vec<u8>, JwksError>> + Send {
            (**self).fetch()
        }
    }

    // The public half of moto's Cognito key: a real pool's JWKS has this shape.
    const N: &str = "j1pT3xKbswmMySvCefmiD3mfDaRFpZ9Y3Jl4fF0hMaCRVAt_e0yR7BeueDfqmj_NhVSO0WB5ao5e8V-9RFQOtK8SrqKl3i01-CyWYPICwybaGKhbJJR0S_6cZ8n5kscF1MjpIlsJcCzm-yKgTc3Mxk6KtrLoNgRvMwGLeHUXPkhS9YHfDKRe864iMFOK4df69brIYEICG2VLduh0hXYa0i-J3drwm7vxNdX7pVpCDu34qJtYoWq6CXt3Tzfi3YfWp8cFjGNbaDa3WnCd2IXpp0TFsFS-cEsw5rJjSl5OllJGeZKBtLeyVTy9PYwnk7MW43WSYeYstbk9NluX4H8Iuw";

    fn rsa(kid: &str) -> serde_json::Value {
        serde_json::json!({"alg": "RS256", "e": "AQAB", "kid": kid, "kty": "RSA", "n": N, "use": "sig"})
    }

    #[test]
    fn only_rs256_signature_keys_with_a_kid_are_kept() {
        let doc = serde_json::json!({"keys": [
            rsa("good"),
            {"e": "AQAB", "kid": "no-alg-no-use", "kty": "RSA", "n": N},
            {"alg": "RS384", "e": "AQAB", "kid": "rs384", "kty": "RSA", "n": N},
            {"alg": "RS256", "e": "AQAB", "kid": "enc", "kty": "RSA", "n": N, "use": "enc"},
            {"alg": "RS256", "e": "AQAB", "kty": "RSA", "n": N},
            {"alg": "HS256", "kid": "hmac", "kty": "oct", "k": "c2VjcmV0"},
            {"kid": "garbage", "kty": "RSA"},
            "not even an object",
        ]});
        let keys = parse_keys("u", doc.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["good", "no-alg-no-use"]);
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error_that_names_the_url() {
        let err = parse_keys("https://x/jwks", br#"{"keys": []}"#).unwrap_err();
        assert!(matches!(err, JwksError::NoKeys { .. }), "{err}");
        assert!(err.to_string().contains("https://x/jwks"));
        let err = parse_keys("https://x/jwks", b"<html>").unwrap_err();
        assert!(matches!(err, JwksError::Malformed { .. }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_refresh_at_most_once_per_interval() {
        let source = Arc::new(MemoryJwks::new(serde_json::json!({"keys": [rsa("k1")]})));
        let cache = KeyCache::new(source.clone());
        assert!(cache.key("k1").await.unwrap().is_some());
        assert_eq!(source.fetches(), 1);
        // A burst of made-up kids right after a fetch: no fetch at all.
        for i in 0..100 {
            assert!(cache.key(&format!("garbage-{i}")).await.unwrap().is_none());
        }
        assert_eq!(source.fetches(), 1);
        // The pool rotates in a new key; once the interval has passed, one fetch finds it.
        source.set(Ok(serde_json::json!({"keys": [rsa("k1"), rsa("k2")]})));
        tokio::time::advance(REFRESH_AFTER_SUCCESS).await;
        assert!(cache.key("k2").await.unwrap().is_some());
        assert_eq!(source.fetches(), 2);
        // Known keys never fetch.
        for _ in 0..10 {
            assert!(cache.key("k1").await.unwrap().is_some());
        }
        assert_eq!(source.fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_is_retried_after_a_short_pause_and_reported_meanwhile() {
        let source = Arc::new(MemoryJwks::new(serde_json::json!({"keys": [rsa("k1")]})));
        source.set(Err(503));
        let cache = KeyCache::new(source.clone());
        let err = cache.key("k1").await.unwrap_err();
        assert!(matches!(err, JwksError::Status { status: 503, .. }), "{err}");
        let err = cache.key("k1").await.unwrap_err();
        assert!(matches!(err, JwksError::RecentlyFailed { .. }), "{err}");
        assert_eq!(source.fetches(), 1);
        source.set(Ok(serde_json::json!({"keys": [rsa("k1")]})));
        tokio::time::advance(RETRY_AFTER_FAILURE).await;
        assert!(cache.key("k1").await.unwrap().is_some());
        assert_eq!(source.fetches(), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch() {
        let source = Arc::new(MemoryJwks::new(serde_json::json!({"keys": [rsa("k1")]})));
        let cache = KeyCache::new(source.clone());
        let all = futures::future::join_all((0..20).map(|_| cache.key("k1"))).await;
        assert!(all.iter().all(|k| matches!(k, Ok(Some(_)))));
        assert_eq!(source.fetches(), 1);
    }
}
