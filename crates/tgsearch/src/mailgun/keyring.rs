//! The signing key as the webhook holds it: loaded at cold start, and read again from Secrets
//! Manager when a signature does not match it (at most once per [`RELOAD_INTERVAL`] per
//! container), so a key rotated in Mailgun and in the secret loses no delivery to a container
//! that still holds the old one. Mailgun never retries a 406: a mismatch whose key cannot be read
//! again answers 503 instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::{KeyError, SigningKey};

/// The least time between two reads of the key by one container.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

type Load = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<SigningKey, KeyError>> + Send>> + Send + Sync>;

/// What asking for a fresh key found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// A different key is stored: verify again with it.
    Changed,
    /// The stored key is the one held: the signature is wrong.
    Same,
    /// The key was read (and found the same) moments ago; it is not read again yet.
    TooSoon,
    /// The key could not be read (the reason, never the key).
    Failed(String),
}

pub struct Keyring {
    current: RwLock<SigningKey>,
    load: Option<Load>,
    last: Mutex<Option<Instant>>,
    interval: Duration,
}

impl Keyring {
    /// A key that is never read again (tests, or a key given inline).
    pub fn fixed(key: SigningKey) -> Self {
        Self {
            current: RwLock::new(key),
            load: None,
            last: Mutex::new(None),
            interval: RELOAD_INTERVAL,
        }
    }

    /// `key`, read again through `load` on a mismatch.
    pub fn reloading<F, Fut>(key: SigningKey, load: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<SigningKey, KeyError>> + Send + 'static,
    {
        Self {
            current: RwLock::new(key),
            load: Some(Box::new(move || Box::pin(load()))),
            // The first mismatch reads again at once: a forged request after a cold start is
            // refused after one read, not deferred.
            last: Mutex::new(None),
            interval: RELOAD_INTERVAL,
        }
    }

    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    pub fn current(&self) -> SigningKey {
        self.current.read().expect("key lock").clone()
    }

    /// Reads the key again unless it was read within the interval.
    pub async fn reload(&self) -> Reloaded {
        let Some(load) = &self.load else {
            return Reloaded::Same;
        };
        {
            let mut last = self.last.lock().expect("reload lock");
            if last.is_some_and(|at| at.elapsed() < self.interval) {
                return Reloaded::TooSoon;
            }
            *last = Some(Instant::now());
        }
        match tokio::time::timeout(Duration::from_secs(3), load()).await {
            Err(_) => Reloaded::Failed("Secrets Manager did not answer within 3 s".into()),
            Ok(Err(e)) => Reloaded::Failed(e.to_string()),
            Ok(Ok(key)) => {
                let mut current = self.current.write().expect("key lock");
                if *current == key {
                    Reloaded::Same
                } else {
                    *current = key;
                    Reloaded::Changed
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_changed_key_is_taken_and_reads_are_rate_limited() {
        let stored = Arc::new(Mutex::new("old".to_string()));
        let reads = Arc::new(AtomicUsize::new(0));
        let (s, r) = (stored.clone(), reads.clone());
        let ring = Keyring::reloading(SigningKey::new("old").unwrap(), move || {
            let key = s.lock().unwrap().clone();
            r.fetch_add(1, Ordering::SeqCst);
            async move { SigningKey::new(key) }
        });
        assert_eq!(ring.reload().await, Reloaded::Same);
        *stored.lock().unwrap() = "new".into();
        assert_eq!(ring.reload().await, Reloaded::TooSoon);
        tokio::time::advance(RELOAD_INTERVAL).await;
        assert_eq!(ring.reload().await, Reloaded::Changed);
        assert_eq!(ring.current(), SigningKey::new("new").unwrap());
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }
}
