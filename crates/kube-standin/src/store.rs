//! The objects, in memory and optionally saved to a file: what etcd is to the API server. One
//! lock serializes every write, so a request reads, checks and writes atomically.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use crate::kinds::Kind;

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Data {
    objects: BTreeMap<String, Value>,
    resource_version: u64,
}

pub struct Store {
    data: Mutex<Data>,
    file: Option<PathBuf>,
}

/// `plural/namespace/name`, namespace empty for cluster-scoped kinds.
fn key(kind: &Kind, ns: &str, name: &str) -> String {
    let scope = if kind.namespaced { ns } else { "" };
    format!("{}/{scope}/{name}", kind.plural)
}

/// Exclusive access to the objects for one request.
pub struct Tx<'a> {
    data: MutexGuard<'a, Data>,
    file: Option<&'a PathBuf>,
    dirty: bool,
}

impl Store {
    pub fn open(file: Option<PathBuf>) -> anyhow::Result<Self> {
        let data = match &file {
            Some(f) if f.exists() => serde_json::from_slice(&std::fs::read(f)?)?,
            _ => Data::default(),
        };
        Ok(Self {
            data: Mutex::new(data),
            file,
        })
    }

    pub fn begin(&self) -> Tx<'_> {
        Tx {
            data: self.data.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            file: self.file.as_ref(),
            dirty: false,
        }
    }
}

impl Tx<'_> {
    pub fn get(&self, kind: &Kind, ns: &str, name: &str) -> Option<Value> {
        self.data.objects.get(&key(kind, ns, name)).cloned()
    }

    /// Objects of a kind in `ns` (every namespace for `None`).
    pub fn list(&self, kind: &Kind, ns: Option<&str>) -> Vec<Value> {
        let prefix = match ns.filter(|_| kind.namespaced) {
            Some(ns) => format!("{}/{ns}/", kind.plural),
            None => format!("{}/", kind.plural),
        };
        self.data
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn resource_version(&self) -> u64 {
        self.data.resource_version
    }

    /// Stores `object` with the next resourceVersion, which it returns.
    pub fn put(&mut self, kind: &Kind, ns: &str, name: &str, mut object: Value) -> Value {
        self.data.resource_version += 1;
        object["metadata"]["resourceVersion"] = self.data.resource_version.to_string().into();
        self.data.objects.insert(key(kind, ns, name), object.clone());
        self.dirty = true;
        object
    }

    pub fn remove(&mut self, kind: &Kind, ns: &str, name: &str) -> Option<Value> {
        let removed = self.data.objects.remove(&key(kind, ns, name));
        if removed.is_some() {
            self.data.resource_version += 1;
            self.dirty = true;
        }
        removed
    }

    /// Removes every namespaced object of namespace `ns`.
    pub fn remove_namespace_contents(&mut self, ns: &str) {
        self.data.objects.retain(|k, _| k.split('/').nth(1) != Some(ns));
        self.dirty = true;
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(f) = self.file
            && let Err(e) = std::fs::write(f, serde_json::to_vec(&*self.data).unwrap_or_default())
        {
            tracing::warn!(error = %e, file = %f.display(), "cannot save state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{NAMESPACES, SECRETS};
    use serde_json::json;

    #[test]
    fn state_survives_a_restart_with_a_state_file() {
        let file = std::env::temp_dir().join(format!("kube-standin-{}.json", rand::random::<u64>()));
        {
            let store = Store::open(Some(file.clone())).unwrap();
            let mut tx = store.begin();
            tx.put(
                &SECRETS,
                "tgsearch",
                "kept",
                json!({"metadata": {"name": "kept", "uid": "u1"}}),
            );
        }
        let store = Store::open(Some(file.clone())).unwrap();
        let tx = store.begin();
        let again = tx.get(&SECRETS, "tgsearch", "kept").unwrap();
        assert_eq!(again["metadata"]["uid"], "u1");
        assert_eq!(again["metadata"]["resourceVersion"], "1");
        assert!(tx.get(&NAMESPACES, "", "kept").is_none());
        drop(tx);
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn lists_are_scoped_by_namespace() {
        let store = Store::open(None).unwrap();
        let mut tx = store.begin();
        tx.put(&SECRETS, "a", "x", json!({"metadata": {}}));
        tx.put(&SECRETS, "ab", "y", json!({"metadata": {}}));
        assert_eq!(tx.list(&SECRETS, Some("a")).len(), 1);
        assert_eq!(tx.list(&SECRETS, None).len(), 2);
        tx.remove_namespace_contents("a");
        assert_eq!(tx.list(&SECRETS, None).len(), 1);
    }
}
