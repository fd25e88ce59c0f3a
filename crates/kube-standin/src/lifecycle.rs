//! What happens to an object around validation and storage: the registry strategies
//! (`PrepareForCreate`/`PrepareForUpdate`), the admission plugins that matter here
//! (NamespaceLifecycle, DefaultStorageClass, StorageObjectInUseProtection,
//! PersistentVolumeClaimResize), and the controllers this stand-in simulates, since no pod
//! ever runs: the PersistentVolume binder, the volume expander, the pvc-protection controller.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::fieldpath::Set;
use crate::kinds::{self, Kind};
use crate::managed::{self, Context, ManagerId};
use crate::status::ApiError;
use crate::store::Tx;
use crate::validation::quantity::Quantity;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

pub fn now() -> String {
    tgsearch::eks::exec_credential::rfc3339(SystemTime::now())
}

pub fn new_uid() -> String {
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

/// `{"status": ...}` for kinds whose main resource does not manage status.
pub fn ignored_fields(kind: &Kind) -> Set {
    let mut set = Set::new();
    if kind.has_status {
        set.insert(&crate::fieldpath::fields(&["status"]));
    }
    set
}

/// A zero object of the kind, as the API server's `New()` gives it to field management:
/// non-pointer structs present and empty.
pub fn skeleton(kind: &Kind) -> Value {
    match kind.plural {
        "deployments" => json!({
            "metadata": {}, "spec": {"strategy": {}, "template": {"metadata": {}, "spec": {}}}, "status": {}
        }),
        "persistentvolumeclaims" => json!({"metadata": {}, "spec": {"resources": {}}, "status": {}}),
        "namespaces" => json!({"metadata": {}, "spec": {}, "status": {}}),
        _ => json!({"metadata": {}}),
    }
}

/// Removes `null` members everywhere (the typed objects drop them).
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `stringData` is write-only: its entries are folded into `data`, base64-encoded.
pub fn fold_string_data(kind: &Kind, object: &mut Value) {
    if *kind != kinds::SECRETS {
        return;
    }
    let Some(obj) = object.as_object_mut() else { return };
    if let Some(Value::Object(strings)) = obj.remove("stringData") {
        use base64::Engine;
        let data = obj.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (k, v) in strings {
            data[k.as_str()] = base64::engine::general_purpose::STANDARD
                .encode(v.as_str().unwrap_or_default())
                .into();
        }
    }
}

fn meta(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"].as_object_mut().expect("an object")
}

/// `BeforeCreate`: system metadata and the strategy's `PrepareForCreate`.
pub fn prepare_create(kind: &Kind, ns: &str, name: &str, object: &mut Value) {
    object["apiVersion"] = kind.api_version.into();
    object["kind"] = kind.kind.into();
    let m = meta(object);
    m.insert("name".into(), name.into());
    if kind.namespaced {
        m.insert("namespace".into(), ns.into());
    } else {
        m.remove("namespace");
    }
    m.insert("uid".into(), new_uid().into());
    m.insert("creationTimestamp".into(), now().into());
    for system in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "generation",
    ] {
        m.remove(system);
    }
    if kind.generation {
        m.insert("generation".into(), 1.into());
    }
    match kind.plural {
        "deployments" => object["status"] = json!({}),
        "persistentvolumeclaims" => object["status"] = json!({"phase": "Pending"}),
        "namespaces" => {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        _ => {}
    }
}

/// `BeforeUpdate`: system metadata from the stored object and the strategy's
/// `PrepareForUpdate` (status comes from the status subresource, never from here).
pub fn prepare_update(kind: &Kind, object: &mut Value, old: &Value) {
    object["apiVersion"] = kind.api_version.into();
    object["kind"] = kind.kind.into();
    let old_meta = old["metadata"].clone();
    let m = meta(object);
    for system in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(system) {
            Some(v) => m.insert(system.into(), v.clone()),
            None => m.remove(system),
        };
    }
    if kind.has_status {
        match old.get("status") {
            Some(s) => object["status"] = s.clone(),
            None => {
                if let Some(o) = object.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if *kind == kinds::NAMESPACES {
        object["spec"] = old["spec"].clone();
    }
    if kind.generation && object.get("spec") != old.get("spec") {
        let generation = old_meta["generation"].as_i64().unwrap_or(0) + 1;
        object["metadata"]["generation"] = generation.into();
    }
}

/// Mutating admission on create: NamespaceLifecycle, DefaultStorageClass,
/// StorageObjectInUseProtection.
pub fn admit_create(
    tx: &Tx,
    kind: &Kind,
    ns: &str,
    object: &mut Value,
    default_class: Option<&str>,
) -> Result<(), ApiError> {
    if kind.namespaced {
        match tx.get(&kinds::NAMESPACES, "", ns) {
            None => return Err(ApiError::not_found(&kinds::NAMESPACES, ns)),
            Some(n) if n["metadata"].get("deletionTimestamp").is_some() => {
                return Err(ApiError::forbidden(
                    kind,
                    object["metadata"]["name"].as_str().unwrap_or_default(),
                    &format!("unable to create new content in namespace {ns} because it is being terminated"),
                ));
            }
            Some(_) => {}
        }
    }
    if *kind == kinds::PVCS {
        if let Some(class) = default_class
            && object["spec"].get("storageClassName").is_none_or(Value::is_null)
        {
            object["spec"]["storageClassName"] = class.into();
        }
        let m = meta(object);
        let finalizers = m.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == PVC_PROTECTION)
        {
            list.push(PVC_PROTECTION.into());
        }
    }
    Ok(())
}

fn storage_request(pvc: &Value) -> Option<Quantity> {
    Quantity::parse(pvc["spec"]["resources"]["requests"]["storage"].as_str()?)
}

/// Validating admission on update: PersistentVolumeClaimResize.
pub fn admit_update(tx: &Tx, kind: &Kind, new: &Value, old: &Value) -> Result<(), ApiError> {
    if *kind != kinds::PVCS {
        return Ok(());
    }
    let (Some(new_size), Some(old_size)) = (storage_request(new), storage_request(old)) else {
        return Ok(());
    };
    if new_size <= old_size {
        return Ok(());
    }
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    if old["status"]["phase"].as_str() != Some("Bound") {
        return Err(ApiError::forbidden(
            kind,
            name,
            "Only bound persistent volume claims can be expanded",
        ));
    }
    let class = |c: &Value| {
        c["spec"]["storageClassName"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (class_new, class_old) = (class(new), class(old));
    let allowed = !class_new.is_empty()
        && class_new == class_old
        && tx
            .get(&kinds::STORAGE_CLASSES, "", &class_new)
            .is_some_and(|sc| sc["allowVolumeExpansion"].as_bool() == Some(true));
    if !allowed {
        return Err(ApiError::forbidden(
            kind,
            name,
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        ));
    }
    Ok(())
}

/// Claims the Deployments of a namespace mount.
fn mounted_claims(tx: &Tx, ns: &str) -> Vec<String> {
    tx.list(&kinds::DEPLOYMENTS, Some(ns))
        .iter()
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|v| {
            v["persistentVolumeClaim"]["claimName"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Writes `updated` as `manager` would through the API, recording its managed fields.
fn controller_write(
    tx: &mut Tx,
    kind: &Kind,
    ns: &str,
    name: &str,
    old: &Value,
    mut updated: Value,
    manager: &ManagerId,
) {
    let mut managers = managed::decode(old).unwrap_or_default();
    let now = now();
    let cx = Context {
        ty: kind.ty,
        api_version: kind.api_version,
        ignored: &Set::new(),
        now: &now,
    };
    managed::record_update(old, &updated, &mut managers, manager, &cx);
    updated["metadata"]["managedFields"] = managed::encode(&managers);
    tx.put(kind, ns, name, updated);
}

/// The simulated controllers, run after every write in `ns`: bind pending claims, finish
/// resizes, complete deletions of claims no Deployment mounts any more.
pub fn reconcile(tx: &mut Tx, ns: &str) {
    if ns.is_empty() {
        return;
    }
    let mounted = mounted_claims(tx, ns);
    for pvc in tx.list(&kinds::PVCS, Some(ns)) {
        let name = pvc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let in_use = mounted.contains(&name);
        if pvc["metadata"].get("deletionTimestamp").is_some() {
            if !in_use {
                tx.remove(&kinds::PVCS, ns, &name);
            }
            continue;
        }
        match pvc["status"]["phase"].as_str() {
            Some("Bound") => finish_resize(tx, ns, &name, &pvc),
            _ => bind(tx, ns, &name, &pvc, in_use),
        }
    }
}

/// The PV controller with a dynamic provisioner: a claim of an existing class is bound at
/// once (`Immediate`) or when something mounts it (`WaitForFirstConsumer`). A claim without a
/// class, or of a class that does not exist, stays Pending, as on EKS 1.30+ without a
/// default class.
fn bind(tx: &mut Tx, ns: &str, name: &str, pvc: &Value, in_use: bool) {
    let Some(class_name) = pvc["spec"]["storageClassName"].as_str().filter(|c| !c.is_empty()) else {
        return;
    };
    let Some(class) = tx.get(&kinds::STORAGE_CLASSES, "", class_name) else {
        return;
    };
    let immediate = class["volumeBindingMode"].as_str() != Some("WaitForFirstConsumer");
    if !immediate && !in_use {
        return;
    }
    let provisioner = class["provisioner"].as_str().unwrap_or_default().to_owned();
    let uid = pvc["metadata"]["uid"].as_str().unwrap_or_default();
    let mut bound = pvc.clone();
    bound["spec"]["volumeName"] = format!("pvc-{uid}").into();
    let annotations = meta(&mut bound).entry("annotations").or_insert_with(|| json!({}));
    for (k, v) in [
        ("pv.kubernetes.io/bind-completed", "yes"),
        ("pv.kubernetes.io/bound-by-controller", "yes"),
        (
            "volume.beta.kubernetes.io/storage-provisioner",
            provisioner.as_str(),
        ),
        ("volume.kubernetes.io/storage-provisioner", provisioner.as_str()),
    ] {
        annotations[k] = v.into();
    }
    let controller = ManagerId::updater("kube-controller-manager", "v1", "");
    controller_write(tx, &kinds::PVCS, ns, name, pvc, bound.clone(), &controller);
    let stored = tx.get(&kinds::PVCS, ns, name).unwrap_or(bound);
    let mut with_status = stored.clone();
    with_status["status"] = json!({
        "phase": "Bound",
        "accessModes": stored["spec"]["accessModes"],
        "capacity": {"storage": stored["spec"]["resources"]["requests"]["storage"]},
    });
    let status_writer = ManagerId::updater("kube-controller-manager", "v1", "status");
    controller_write(tx, &kinds::PVCS, ns, name, &stored, with_status, &status_writer);
}

/// The CSI resizer and the kubelet: a bound claim whose request grew gets the new capacity.
fn finish_resize(tx: &mut Tx, ns: &str, name: &str, pvc: &Value) {
    let request = &pvc["spec"]["resources"]["requests"]["storage"];
    let capacity = &pvc["status"]["capacity"]["storage"];
    let (Some(r), Some(c)) = (request.as_str(), capacity.as_str()) else {
        return;
    };
    if Quantity::parse(r) <= Quantity::parse(c) {
        return;
    }
    let mut resized = pvc.clone();
    resized["status"]["capacity"]["storage"] = request.clone();
    controller_write(
        tx,
        &kinds::PVCS,
        ns,
        name,
        pvc,
        resized,
        &ManagerId::updater("kubelet", "v1", "status"),
    );
}

/// Whether a claim is mounted by a Deployment of its namespace (StorageObjectInUseProtection
/// keeps such a claim, marked for deletion, until nothing mounts it).
pub fn claim_in_use(tx: &Tx, ns: &str, name: &str) -> bool {
    mounted_claims(tx, ns).iter().any(|c| c == name)
}

/// The StorageClasses EKS clusters have, plus one that allows expansion, seeded at start.
pub fn seed_storage_classes() -> Vec<Value> {
    vec![
        json!({
            "metadata": {"name": "gp2"},
            "provisioner": "kubernetes.io/aws-ebs",
            "parameters": {"fsType": "ext4", "type": "gp2"},
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"
        }),
        json!({
            "metadata": {"name": "gp3"},
            "provisioner": "ebs.csi.aws.com",
            "parameters": {"type": "gp3", "encrypted": "true"},
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": true
        }),
    ]
}
