//! How structured-merge-diff sees the kinds the stand-in serves: which lists are associative
//! (merged item by item, by their key fields), which are sets, which structs and maps are
//! atomic. Taken from the `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and
//! `x-kubernetes-map-type` markers of Kubernetes 1.36's OpenAPI document. Anything not
//! described here follows the API server's defaults: objects are granular structs, lists are
//! atomic, scalars are leaves.

/// A key field of an associative list, with its OpenAPI default (used when an item omits it).
pub struct KeyField {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

pub enum Ty {
    /// A struct: named fields, described ones by their type, the others inferred.
    Struct(&'static [(&'static str, &'static Ty)]),
    /// A granular map: every value of this type.
    Map(&'static Ty),
    /// A scalar, or a struct, map or list replaced as a whole.
    Atomic,
    /// An associative list (`x-kubernetes-list-type: map`).
    Keyed(&'static [KeyField], &'static Ty),
    /// A set of scalars (`x-kubernetes-list-type: set`).
    Set,
    /// Not described: an object is a struct of inferred fields, a list is atomic.
    Inferred,
}

pub static INFERRED: Ty = Ty::Inferred;
pub static ATOMIC: Ty = Ty::Atomic;
static STRING_MAP: Ty = Ty::Map(&ATOMIC);

const fn key(name: &'static str) -> KeyField {
    KeyField { name, default: None }
}
static BY_NAME: [KeyField; 1] = [key("name")];
static BY_TYPE: [KeyField; 1] = [key("type")];

static OBJECT_META: Ty = Ty::Struct(&[
    ("labels", &STRING_MAP),
    ("annotations", &STRING_MAP),
    ("finalizers", &Ty::Set),
    ("managedFields", &ATOMIC),
    ("ownerReferences", &Ty::Keyed(&[key("uid")], &ATOMIC)),
]);

static ENV_VAR: Ty = Ty::Struct(&[(
    "valueFrom",
    &Ty::Struct(&[
        ("configMapKeyRef", &ATOMIC),
        ("secretKeyRef", &ATOMIC),
        ("fieldRef", &ATOMIC),
        ("resourceFieldRef", &ATOMIC),
    ]),
)]);

static RESOURCES: Ty = Ty::Struct(&[
    ("claims", &Ty::Keyed(&BY_NAME, &INFERRED)),
    ("limits", &STRING_MAP),
    ("requests", &STRING_MAP),
]);

static CONTAINER: Ty = Ty::Struct(&[
    ("env", &Ty::Keyed(&BY_NAME, &ENV_VAR)),
    (
        "ports",
        &Ty::Keyed(
            &[
                key("containerPort"),
                KeyField {
                    name: "protocol",
                    default: Some("TCP"),
                },
            ],
            &INFERRED,
        ),
    ),
    ("volumeMounts", &Ty::Keyed(&[key("mountPath")], &INFERRED)),
    ("volumeDevices", &Ty::Keyed(&[key("devicePath")], &INFERRED)),
    ("resources", &RESOURCES),
]);

static PVC_SPEC: Ty = Ty::Struct(&[
    ("selector", &ATOMIC),
    ("dataSource", &ATOMIC),
    (
        "resources",
        &Ty::Struct(&[("limits", &STRING_MAP), ("requests", &STRING_MAP)]),
    ),
]);

static VOLUME: Ty = Ty::Struct(&[
    ("csi", &Ty::Struct(&[("volumeAttributes", &STRING_MAP)])),
    ("flexVolume", &Ty::Struct(&[("options", &STRING_MAP)])),
    (
        "ephemeral",
        &Ty::Struct(&[(
            "volumeClaimTemplate",
            &Ty::Struct(&[("metadata", &OBJECT_META), ("spec", &PVC_SPEC)]),
        )]),
    ),
]);

static AFFINITY: Ty = Ty::Struct(&[(
    "nodeAffinity",
    &Ty::Struct(&[("requiredDuringSchedulingIgnoredDuringExecution", &ATOMIC)]),
)]);

static POD_SPEC: Ty = Ty::Struct(&[
    ("containers", &Ty::Keyed(&BY_NAME, &CONTAINER)),
    ("initContainers", &Ty::Keyed(&BY_NAME, &CONTAINER)),
    ("ephemeralContainers", &Ty::Keyed(&BY_NAME, &CONTAINER)),
    ("volumes", &Ty::Keyed(&BY_NAME, &VOLUME)),
    ("imagePullSecrets", &Ty::Keyed(&BY_NAME, &ATOMIC)),
    ("hostAliases", &Ty::Keyed(&[key("ip")], &INFERRED)),
    ("resourceClaims", &Ty::Keyed(&BY_NAME, &INFERRED)),
    ("schedulingGates", &Ty::Keyed(&BY_NAME, &INFERRED)),
    (
        "topologySpreadConstraints",
        &Ty::Keyed(
            &[key("topologyKey"), key("whenUnsatisfiable")],
            &Ty::Struct(&[("labelSelector", &ATOMIC)]),
        ),
    ),
    ("nodeSelector", &ATOMIC),
    ("overhead", &STRING_MAP),
    ("affinity", &AFFINITY),
]);

static CONDITIONS: Ty = Ty::Keyed(&BY_TYPE, &INFERRED);

pub static DEPLOYMENT: Ty = Ty::Struct(&[
    ("metadata", &OBJECT_META),
    (
        "spec",
        &Ty::Struct(&[
            ("selector", &ATOMIC),
            (
                "template",
                &Ty::Struct(&[("metadata", &OBJECT_META), ("spec", &POD_SPEC)]),
            ),
        ]),
    ),
    ("status", &Ty::Struct(&[("conditions", &CONDITIONS)])),
]);

pub static PERSISTENT_VOLUME_CLAIM: Ty = Ty::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &PVC_SPEC),
    (
        "status",
        &Ty::Struct(&[
            ("capacity", &STRING_MAP),
            ("allocatedResources", &STRING_MAP),
            ("allocatedResourceStatuses", &STRING_MAP),
            ("conditions", &CONDITIONS),
        ]),
    ),
]);

pub static SECRET: Ty = Ty::Struct(&[
    ("metadata", &OBJECT_META),
    ("data", &STRING_MAP),
    ("stringData", &STRING_MAP),
]);

pub static NAMESPACE: Ty = Ty::Struct(&[
    ("metadata", &OBJECT_META),
    ("status", &Ty::Struct(&[("conditions", &CONDITIONS)])),
]);

pub static STORAGE_CLASS: Ty = Ty::Struct(&[("metadata", &OBJECT_META), ("parameters", &STRING_MAP)]);

/// Objects the stand-in only lists (events, pods, replica sets): metadata is typed, the rest
/// inferred.
pub static GENERIC: Ty = Ty::Struct(&[("metadata", &OBJECT_META)]);

impl Ty {
    /// The type of a field of this struct or map.
    pub fn field(&self, name: &str) -> &'static Ty {
        match self {
            Ty::Struct(fields) => fields
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(&INFERRED, |(_, t)| *t),
            Ty::Map(elem) => elem,
            _ => &INFERRED,
        }
    }

    /// The type of the items of this list.
    pub fn item(&self) -> &'static Ty {
        match self {
            Ty::Keyed(_, elem) => elem,
            _ => &ATOMIC,
        }
    }

    /// Whether `name` is a named field of a struct (as opposed to a key of a map).
    pub fn is_struct(&self) -> bool {
        matches!(self, Ty::Struct(_) | Ty::Inferred)
    }
}
