//! Whether a verified token's user may still use it. A signature proves who signed in, not that
//! they still may: Cognito keeps a disabled or deleted user's tokens valid until they expire (an
//! hour), and an ID token stays valid after a global sign-out. So every request is also checked
//! with Cognito, at most once per [`SESSION_CACHE`] per token per container:
//!
//! - an **access token** with `GetUser`, which refuses a token whose user is disabled, deleted or
//!   signed out globally (and needs no IAM right: the token authorizes it);
//! - an **ID token** by looking the `sub` up (`ListUsers`): disabled or deleted users are refused;
//!   Cognito offers no way to see a global sign-out for an ID token, which is why the API takes
//!   access tokens by default (`USER_POOL_TOKEN_USE`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::ports::PortError;

/// How long an answer "still active" is trusted per container: within the 60 s a revocation must
/// take effect.
pub const SESSION_CACHE: Duration = Duration::from_secs(30);
/// Entries kept per container at most (a burst of distinct tokens cannot grow it further).
const MAX_ENTRIES: usize = 10_000;

/// What Cognito says of a token's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    Active,
    /// Disabled, deleted, signed out, or not confirmed (why, for the log).
    Revoked(String),
}

/// Asks the user pool about a token (a port, so the handler is tested with a fake).
pub trait SessionCheck: Send + Sync {
    fn check(&self, sub: &str, token: &str) -> impl Future<Output = Result<Session, PortError>> + Send;
}

/// A [`SessionCheck`] whose "active" answers are kept for [`SESSION_CACHE`]; refusals and
/// failures are never kept.
pub struct CachedSessions<C> {
    inner: C,
    ttl: Duration,
    active: Mutex<HashMap<[u8; 32], Instant>>,
}

impl<C: SessionCheck> CachedSessions<C> {
    pub fn new(inner: C) -> Self {
        Self::with_ttl(inner, SESSION_CACHE)
    }

    pub fn with_ttl(inner: C, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            active: Mutex::new(HashMap::new()),
        }
    }

    /// The token's digest: the cache never holds a token.
    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub async fn check(&self, sub: &str, token: &str) -> Result<Session, PortError> {
        let key = Self::key(token);
        let now = Instant::now();
        if self
            .active
            .lock()
            .expect("session cache")
            .get(&key)
            .is_some_and(|until| *until > now)
        {
            return Ok(Session::Active);
        }
        let session = self.inner.check(sub, token).await?;
        if session == Session::Active {
            let mut active = self.active.lock().expect("session cache");
            if active.len() >= MAX_ENTRIES {
                active.retain(|_, until| *until > now);
                if active.len() >= MAX_ENTRIES {
                    active.clear();
                }
            }
            active.insert(key, now + self.ttl);
        }
        Ok(session)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Users in memory: the revoked `sub`s, and how often the pool was asked.
    #[derive(Default)]
    pub struct MemorySessions {
        pub revoked: Mutex<HashSet<String>>,
        pub asked: AtomicUsize,
    }

    impl SessionCheck for MemorySessions {
        async fn check(&self, sub: &str, _token: &str) -> Result<Session, PortError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Ok(if self.revoked.lock().unwrap().contains(sub) {
                Session::Revoked("disabled".into())
            } else {
                Session::Active
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_revocation_is_seen_once_the_cached_answer_lapses() {
        let sessions = CachedSessions::new(MemorySessions::default());
        assert_eq!(sessions.check("a", "t1").await.unwrap(), Session::Active);
        sessions.inner.revoked.lock().unwrap().insert("a".into());
        assert_eq!(
            sessions.check("a", "t1").await.unwrap(),
            Session::Active,
            "cached"
        );
        tokio::time::advance(SESSION_CACHE).await;
        assert!(matches!(
            sessions.check("a", "t1").await.unwrap(),
            Session::Revoked(_)
        ));
        assert!(matches!(
            sessions.check("a", "t1").await.unwrap(),
            Session::Revoked(_)
        ));
        assert_eq!(
            sessions.inner.asked.load(Ordering::SeqCst),
            3,
            "refusals are not cached"
        );
    }
}
