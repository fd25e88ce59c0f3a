//! What exists from the start: namespaces (as the API server creates `default` and
//! `kube-system`) and the StorageClasses of an EKS cluster plus one that allows expansion.

use serde_json::{Value, json};

use crate::kinds::{self, Kind};
use crate::lifecycle;
use crate::managed::{self, Context, ManagerId, Managers};
use crate::store::Store;

fn create_if_absent(store: &Store, kind: &Kind, mut object: Value, manager: &str) {
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let mut tx = store.begin();
    if tx.get(kind, "", &name).is_some() {
        return;
    }
    crate::defaults::apply(kind.kind, &mut object);
    let mut managers = Managers::new();
    let ignored = lifecycle::ignored_fields(kind);
    let now = lifecycle::now();
    managed::record_update(
        &lifecycle::skeleton(kind),
        &object,
        &mut managers,
        &ManagerId::updater(manager, kind.api_version, ""),
        &Context {
            ty: kind.ty,
            api_version: kind.api_version,
            ignored: &ignored,
            now: &now,
        },
    );
    lifecycle::prepare_create(kind, "", &name, &mut object);
    object["metadata"]["managedFields"] = managed::encode(&managers);
    tx.put(kind, "", &name, object);
}

pub fn seed(store: &Store, namespaces: &[String]) {
    for ns in namespaces.iter().filter(|n| !n.is_empty()) {
        create_if_absent(
            store,
            &kinds::NAMESPACES,
            json!({"metadata": {"name": ns}}),
            "kube-apiserver",
        );
    }
    for class in lifecycle::seed_storage_classes() {
        create_if_absent(store, &kinds::STORAGE_CLASSES, class, "kube-standin");
    }
}
