//! The resources the stand-in serves, and the discovery documents that describe them.

use serde_json::{Value, json};

use crate::schema::{self, Ty};

/// A resource the stand-in serves.
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    /// `v1`, `apps/v1`, `storage.k8s.io/v1`.
    pub api_version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Served for clients that look (kubectl describe), never written.
    pub read_only: bool,
    pub short_names: &'static [&'static str],
    pub ty: &'static Ty,
    /// The main resource ignores `status` (a subresource writes it), so managers never own it.
    pub has_status: bool,
    /// Whether changes of `spec` bump `metadata.generation`.
    pub generation: bool,
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version, self.plural)
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        self.api_version == other.api_version && self.plural == other.plural
    }
}

const fn kind(
    group: &'static str,
    version: &'static str,
    api_version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    ty: &'static Ty,
) -> Kind {
    Kind {
        group,
        version,
        api_version,
        plural,
        kind,
        namespaced,
        read_only: false,
        short_names: &[],
        ty,
        has_status: false,
        generation: false,
    }
}

pub static NAMESPACES: Kind = Kind {
    short_names: &["ns"],
    has_status: true,
    ..kind(
        "",
        "v1",
        "v1",
        "namespaces",
        "Namespace",
        false,
        &schema::NAMESPACE,
    )
};
pub static SECRETS: Kind = kind("", "v1", "v1", "secrets", "Secret", true, &schema::SECRET);
pub static PVCS: Kind = Kind {
    short_names: &["pvc"],
    has_status: true,
    ..kind(
        "",
        "v1",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &schema::PERSISTENT_VOLUME_CLAIM,
    )
};
pub static EVENTS: Kind = Kind {
    read_only: true,
    short_names: &["ev"],
    ..kind("", "v1", "v1", "events", "Event", true, &schema::GENERIC)
};
pub static PODS: Kind = Kind {
    read_only: true,
    short_names: &["po"],
    ..kind("", "v1", "v1", "pods", "Pod", true, &schema::GENERIC)
};
pub static DEPLOYMENTS: Kind = Kind {
    short_names: &["deploy"],
    has_status: true,
    generation: true,
    ..kind(
        "apps",
        "v1",
        "apps/v1",
        "deployments",
        "Deployment",
        true,
        &schema::DEPLOYMENT,
    )
};
pub static REPLICASETS: Kind = Kind {
    read_only: true,
    short_names: &["rs"],
    ..kind(
        "apps",
        "v1",
        "apps/v1",
        "replicasets",
        "ReplicaSet",
        true,
        &schema::GENERIC,
    )
};
pub static STORAGE_CLASSES: Kind = Kind {
    short_names: &["sc"],
    ..kind(
        "storage.k8s.io",
        "v1",
        "storage.k8s.io/v1",
        "storageclasses",
        "StorageClass",
        false,
        &schema::STORAGE_CLASS,
    )
};

pub static KINDS: [&Kind; 8] = [
    &NAMESPACES,
    &SECRETS,
    &PVCS,
    &EVENTS,
    &PODS,
    &DEPLOYMENTS,
    &REPLICASETS,
    &STORAGE_CLASSES,
];

/// The groups besides the core group, with their one version.
const GROUPS: [(&str, &str); 2] = [("apps", "v1"), ("storage.k8s.io", "v1")];

pub fn kind_of(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

pub fn served_group_version(group: &str, version: &str) -> bool {
    (group.is_empty() && version == "v1") || GROUPS.contains(&(group, version))
}

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "36", "gitVersion": "v1.36.0-tgsearch-standin", "gitCommit": "0000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a",
        "compiler": "rustc", "platform": "linux/amd64"
    })
}

pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
}

pub fn api_groups() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|(group, version)| {
            let gv = format!("{group}/{version}");
            json!({
                "name": group,
                "versions": [{"groupVersion": gv, "version": version}],
                "preferredVersion": {"groupVersion": gv, "version": version}
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    let (name, version) = GROUPS.iter().find(|(g, _)| *g == group)?;
    let gv = format!("{name}/{version}");
    Some(json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": name,
        "versions": [{"groupVersion": gv, "version": version}],
        "preferredVersion": {"groupVersion": gv, "version": version}
    }))
}

pub fn resource_list(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .map(|k| {
            let verbs: &[&str] = if k.read_only {
                &["get", "list"]
            } else {
                &[
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                ]
            };
            json!({
                "name": k.plural, "singularName": k.kind.to_ascii_lowercase(), "namespaced": k.namespaced,
                "kind": k.kind, "verbs": verbs, "shortNames": k.short_names
            })
        })
        .collect();
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// The path of a group version in OpenAPI v3 (`api/v1`, `apis/apps/v1`).
fn openapi_gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each group version's document is.
pub fn openapi_v3_index() -> Value {
    let mut paths = serde_json::Map::new();
    for (group, version) in std::iter::once(("", "v1")).chain(GROUPS) {
        let gv = openapi_gv_path(group, version);
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash=kube-standin-1")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/apis/apps/v1`: the operations on the kinds served, with the query
/// parameters they accept. No schemas: enough for kubectl to see that the server validates
/// fields itself (`fieldValidation`), not for `kubectl explain`.
pub fn openapi_v3_document(path: &str) -> Option<Value> {
    let (group, version) = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["api", version] => ("", *version),
        ["apis", group, version] => (*group, *version),
        _ => return None,
    };
    if !served_group_version(group, version) {
        return None;
    }
    let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
        .iter()
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    let mut paths = serde_json::Map::new();
    for k in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version && !k.read_only)
    {
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let base = format!("/{}", openapi_gv_path(group, version));
        let (collection, item) = if k.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", k.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", k.plural),
            )
        } else {
            (
                format!("{base}/{}", k.plural),
                format!("{base}/{}/{{name}}", k.plural),
            )
        };
        let operation = |id: String| json!({"operationId": id, "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {}});
        paths.insert(
            collection,
            json!({"post": operation(format!("create{}", k.kind))}),
        );
        paths.insert(
            item,
            json!({"put": operation(format!("replace{}", k.kind)), "patch": operation(format!("patch{}", k.kind))}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.36.0"},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}
