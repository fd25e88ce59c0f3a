//! The objects, in memory (optionally saved to a file), with the bookkeeping the API server
//! does: `uid`, `resourceVersion`, `generation`, `creationTimestamp`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// A resource the stand-in serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    pub group_version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Whether the object has a `spec` whose changes bump `generation`.
    pub generation: bool,
    /// Served for clients that look (kubectl describe), never written.
    pub read_only: bool,
}

pub const KINDS: &[Kind] = &[
    Kind {
        group_version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        generation: false,
        read_only: false,
    },
    Kind {
        group_version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        generation: false,
        read_only: false,
    },
    Kind {
        group_version: "v1",
        plural: "persistentvolumeclaims",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        generation: false,
        read_only: false,
    },
    Kind {
        group_version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        generation: false,
        read_only: true,
    },
    Kind {
        group_version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        generation: false,
        read_only: true,
    },
    Kind {
        group_version: "apps/v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
        generation: true,
        read_only: false,
    },
    Kind {
        group_version: "apps/v1",
        plural: "replicasets",
        kind: "ReplicaSet",
        namespaced: true,
        generation: true,
        read_only: true,
    },
];

pub fn kind_of(group_version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group_version == group_version && k.plural == plural)
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Data {
    objects: BTreeMap<String, Value>,
    resource_version: u64,
}

pub struct Store {
    data: Mutex<Data>,
    file: Option<PathBuf>,
}

/// `plural/namespace/name` (namespace empty for cluster-scoped kinds), and that namespace.
fn object_key(kind: &Kind, ns: &str, name: &str) -> (String, String) {
    let scope = if kind.namespaced {
        ns.to_owned()
    } else {
        String::new()
    };
    (format!("{}/{scope}/{name}", kind.plural), scope)
}

fn now_rfc3339() -> String {
    tgsearch::eks::exec_credential::rfc3339(std::time::SystemTime::now())
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// JSON merge patch (RFC 7386): maps merge, `null` removes, everything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Does `labels` satisfy an equality-based selector (`a=b,c!=d,e`)?
pub fn matches_selector(labels: Option<&Map<String, Value>>, selector: &str) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            let get = |k: &str| labels.and_then(|l| l.get(k.trim())).and_then(Value::as_str);
            if let Some((k, v)) = term.split_once("!=") {
                get(k) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                get(k) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                get(k).is_none()
            } else {
                get(term).is_some()
            }
        })
}

impl Store {
    pub fn new(file: Option<PathBuf>, namespaces: &[&str]) -> anyhow::Result<Self> {
        let data = match &file {
            Some(f) if f.exists() => serde_json::from_slice(&std::fs::read(f)?)?,
            _ => Data::default(),
        };
        let store = Self {
            data: Mutex::new(data),
            file,
        };
        let ns_kind = kind_of("v1", "namespaces").unwrap();
        for ns in namespaces {
            let _ = store.create(ns_kind, "", json!({"metadata": {"name": ns}}));
        }
        Ok(store)
    }

    fn save(&self, data: &Data) {
        if let Some(f) = &self.file
            && let Err(e) = std::fs::write(f, serde_json::to_vec(data).unwrap_or_default())
        {
            tracing::warn!(error = %e, file = %f.display(), "cannot save state");
        }
    }

    fn check_namespace(data: &Data, kind: &Kind, ns: &str) -> Result<(), ApiError> {
        if kind.namespaced
            && !data
                .objects
                .contains_key(&object_key(kind_of("v1", "namespaces").expect("served"), "", ns).0)
        {
            return Err(ApiError::not_found("namespaces", ns));
        }
        Ok(())
    }

    fn stamp(data: &mut Data, kind: &Kind, ns: &str, name: &str, object: &mut Value, old: Option<&Value>) {
        data.resource_version += 1;
        let obj = object.as_object_mut().expect("objects are JSON objects");
        if kind.kind == "Secret"
            && let Some(Value::Object(strings)) = obj.remove("stringData")
        {
            // As the API server does: stringData is write-only, folded into data.
            use base64::Engine;
            let data = obj.entry("data").or_insert_with(|| json!({}));
            for (k, v) in strings {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
                data[k] = encoded.into();
            }
        }
        obj.insert("apiVersion".into(), kind.group_version.into());
        obj.insert("kind".into(), kind.kind.into());
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        let meta = meta.as_object_mut().expect("metadata is an object");
        meta.insert("name".into(), name.into());
        if kind.namespaced {
            meta.insert("namespace".into(), ns.into());
        }
        meta.insert("resourceVersion".into(), data.resource_version.to_string().into());
        let old_meta = old.and_then(|o| o.get("metadata"));
        let keep = |field: &str, fresh: Value| old_meta.and_then(|m| m.get(field)).cloned().unwrap_or(fresh);
        meta.insert("uid".into(), keep("uid", new_uid().into()));
        meta.insert(
            "creationTimestamp".into(),
            keep("creationTimestamp", now_rfc3339().into()),
        );
        if kind.generation {
            let old_generation = old_meta.and_then(|m| m.get("generation")).and_then(Value::as_u64);
            let spec_changed = old.map(|o| o.get("spec")) != Some(obj.get("spec"));
            let generation = match old_generation {
                None => 1,
                Some(g) if spec_changed => g + 1,
                Some(g) => g,
            };
            obj["metadata"]["generation"] = generation.into();
        }
    }

    pub fn get(&self, kind: &Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        let data = self.data.lock().unwrap();
        data.objects
            .get(&object_key(kind, ns, name).0)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind.plural, name))
    }

    /// Objects of a kind in `ns` (or every namespace for `None`), filtered by a label selector.
    pub fn list(&self, kind: &Kind, ns: Option<&str>, selector: &str) -> (Vec<Value>, u64) {
        let data = self.data.lock().unwrap();
        let prefix = match ns {
            Some(ns) => format!("{}/{ns}/", kind.plural),
            None => format!("{}/", kind.plural),
        };
        let items = data
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .filter(|v| matches_selector(v["metadata"]["labels"].as_object(), selector))
            .cloned()
            .collect();
        (items, data.resource_version)
    }

    pub fn create(&self, kind: &Kind, ns: &str, mut object: Value) -> Result<Value, ApiError> {
        let name = object["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(kind.kind, "", "metadata.name: Required value: name is required")
            })?
            .to_owned();
        validate_name(kind, &name)?;
        let mut data = self.data.lock().unwrap();
        Self::check_namespace(&data, kind, ns)?;
        let (key, scope) = object_key(kind, ns, &name);
        if data.objects.contains_key(&key) {
            return Err(ApiError::already_exists(kind.plural, &name));
        }
        Self::stamp(&mut data, kind, &scope, &name, &mut object, None);
        data.objects.insert(key, object.clone());
        self.save(&data);
        Ok(object)
    }

    /// Server-side apply (simplified: the applied fields are merged over the live object, and
    /// with `force` the applier takes them) or a merge patch; `create` when absent (apply only).
    pub fn patch(
        &self,
        kind: &Kind,
        ns: &str,
        name: &str,
        patch: Value,
        upsert: bool,
    ) -> Result<(Value, bool), ApiError> {
        if let Some(body_name) = patch["metadata"]["name"].as_str()
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(body_ns) = patch["metadata"]["namespace"].as_str()
            && kind.namespaced
            && body_ns != ns
        {
            return Err(ApiError::bad_request(format!(
                "the namespace of the object ({body_ns}) does not match the namespace on the URL ({ns})"
            )));
        }
        validate_name(kind, name)?;
        let mut data = self.data.lock().unwrap();
        Self::check_namespace(&data, kind, ns)?;
        let (key, scope) = object_key(kind, ns, name);
        let old = data.objects.get(&key).cloned();
        let (mut object, created) = match &old {
            Some(existing) => {
                let mut merged = existing.clone();
                merge(&mut merged, &patch);
                (merged, false)
            }
            None if upsert => (patch, true),
            None => return Err(ApiError::not_found(kind.plural, name)),
        };
        Self::stamp(&mut data, kind, &scope, name, &mut object, old.as_ref());
        data.objects.insert(key, object.clone());
        self.save(&data);
        Ok((object, created))
    }

    pub fn replace(&self, kind: &Kind, ns: &str, name: &str, mut object: Value) -> Result<Value, ApiError> {
        let mut data = self.data.lock().unwrap();
        let (key, scope) = object_key(kind, ns, name);
        let old = data
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind.plural, name))?;
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(kind.plural, name));
        }
        Self::stamp(&mut data, kind, &scope, name, &mut object, Some(&old));
        data.objects.insert(key, object.clone());
        self.save(&data);
        Ok(object)
    }

    pub fn delete(&self, kind: &Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        let mut data = self.data.lock().unwrap();
        let (key, _) = object_key(kind, ns, name);
        let removed = data
            .objects
            .remove(&key)
            .ok_or_else(|| ApiError::not_found(kind.plural, name))?;
        if kind.plural == "namespaces" {
            // Deleting a namespace deletes what is in it.
            data.objects.retain(|k, _| k.split('/').nth(1) != Some(name));
        }
        self.save(&data);
        Ok(removed)
    }
}

/// DNS-1123 subdomain names, as the API server validates them.
fn validate_name(kind: &Kind, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            kind.kind,
            name,
            &format!(
                "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_like_the_api_server() {
        let labels = json!({"a": "1", "b": "2"});
        let l = labels.as_object();
        assert!(matches_selector(l, ""));
        assert!(matches_selector(l, "a=1,b==2"));
        assert!(matches_selector(l, "a, c!=3, !c"));
        assert!(!matches_selector(l, "a=2"));
        assert!(!matches_selector(l, "c"));
        assert!(!matches_selector(None, "a"));
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn state_survives_a_restart_with_a_state_file() {
        let file = std::env::temp_dir().join(format!("kube-standin-{}.json", new_uid()));
        let secrets = kind_of("v1", "secrets").unwrap();
        let first = Store::new(Some(file.clone()), &["tgsearch"]).unwrap();
        let created = first
            .create(
                secrets,
                "tgsearch",
                json!({"metadata": {"name": "kept"}, "stringData": {"k": "v"}}),
            )
            .unwrap();
        assert_eq!(created["data"]["k"], "dg==", "stringData is folded into data");
        assert!(created.get("stringData").is_none());
        drop(first);
        let second = Store::new(Some(file.clone()), &["tgsearch"]).unwrap();
        let again = second.get(secrets, "tgsearch", "kept").unwrap();
        assert_eq!(again["metadata"]["uid"], created["metadata"]["uid"]);
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn bookkeeping_follows_the_api_server() {
        let store = Store::new(None, &["tgsearch"]).unwrap();
        let deployments = kind_of("apps/v1", "deployments").unwrap();
        let (d, created) = store
            .patch(
                deployments,
                "tgsearch",
                "web",
                json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}}),
                true,
            )
            .unwrap();
        assert!(created);
        assert_eq!(d["metadata"]["generation"], 1);
        let uid = d["metadata"]["uid"].clone();
        let (same, _) = store
            .patch(
                deployments,
                "tgsearch",
                "web",
                json!({"metadata": {"labels": {"x": "y"}}}),
                true,
            )
            .unwrap();
        assert_eq!(
            same["metadata"]["generation"], 1,
            "metadata changes keep the generation"
        );
        let (changed, _) = store
            .patch(
                deployments,
                "tgsearch",
                "web",
                json!({"spec": {"replicas": 2}}),
                true,
            )
            .unwrap();
        assert_eq!(changed["metadata"]["generation"], 2);
        assert_eq!(changed["metadata"]["uid"], uid);
        assert_ne!(
            changed["metadata"]["resourceVersion"],
            d["metadata"]["resourceVersion"]
        );
        assert_eq!(
            store
                .patch(deployments, "nope", "web", json!({}), true)
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(
            store
                .create(deployments, "tgsearch", json!({"metadata": {"name": "web"}}))
                .unwrap_err()
                .code,
            409
        );
        assert_eq!(
            store
                .create(deployments, "tgsearch", json!({"metadata": {"name": "Web"}}))
                .unwrap_err()
                .code,
            422
        );
        store.delete(deployments, "tgsearch", "web").unwrap();
        assert_eq!(
            store.delete(deployments, "tgsearch", "web").unwrap_err().code,
            404
        );
    }
}
