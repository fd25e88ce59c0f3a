//! The tenant's backend on Kubernetes: a Secret with its `AMQP_URI`, a PersistentVolumeClaim for
//! its data, and a Deployment rendered from `manifests/backend-deployment.yaml`.
//!
//! The template is parsed into typed `k8s-openapi` objects (with serde-saphyr) and the
//! per-tenant fields are set in code; nothing is substituted into YAML text. It is embedded at
//! compile time and checked by a unit test, so a broken template fails the build.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Secret, SecretKeySelector, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::credentials::SecretUri;
use crate::env::{ConfigError, Env};
use crate::tenant::TenantId;

/// The template as operators edit it.
pub const TEMPLATE_YAML: &str = include_str!("../../../manifests/backend-deployment.yaml");
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "tgsearch-provisioner");
pub const TENANT_LABEL: &str = "tgsearch.io/tenant";
pub const FIELD_MANAGER: &str = "tgsearch-provisioner";
/// The container that runs TG-Search core, and the volume that holds its data.
pub const CONTAINER: &str = "backend";
pub const DATA_VOLUME: &str = "data";
pub const AMQP_URI_KEY: &str = "AMQP_URI";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("manifests/backend-deployment.yaml is not a valid Deployment: {0}")]
    Parse(String),
    #[error("manifests/backend-deployment.yaml: {0}")]
    Shape(&'static str),
    #[error(
        "manifests/backend-deployment.yaml has keys a Deployment does not know (misspelled?), which would be dropped silently: {0}"
    )]
    UnknownKeys(String),
}

/// What varies between installations, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    pub namespace: String,
    /// `BACKEND_IMAGE`: the TG-Search core image.
    pub image: String,
    /// `BACKEND_STORAGE_SIZE`, default 1Gi.
    pub storage_size: String,
    /// `BACKEND_STORAGE_CLASS`; unset: the cluster's default class.
    pub storage_class: Option<String>,
}

impl BackendSettings {
    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>, namespace: &str) -> Result<Self, ConfigError> {
        let image = env.required(
            "BACKEND_IMAGE",
            "the TG-Search core container image, e.g. ghcr.io/tgsearch/core:1.4",
        )?;
        if image.chars().any(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                name: "BACKEND_IMAGE",
                reason: format!("`{image}` is not an image reference"),
            });
        }
        let storage_size = env
            .optional("BACKEND_STORAGE_SIZE")
            .unwrap_or_else(|| "1Gi".into());
        if !is_quantity(&storage_size) {
            return Err(ConfigError::Invalid {
                name: "BACKEND_STORAGE_SIZE",
                reason: format!("`{storage_size}` is not a Kubernetes quantity such as 1Gi or 500Mi"),
            });
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            image,
            storage_size,
            storage_class: env.optional("BACKEND_STORAGE_CLASS"),
        })
    }
}

/// A plain `<digits>[.digits]<suffix>` quantity (what a storage request uses).
fn is_quantity(q: &str) -> bool {
    quantity_bytes(q).is_some_and(|b| b > 0)
}

/// The bytes a storage quantity such as `1Gi`, `500Mi` or `2G` stands for (`None`: not a plain
/// quantity), so that sizes written differently compare.
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let digits_end = q
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits_end);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        _ => return None,
    };
    (number >= 0.0).then(|| (number * scale).round() as u128)
}

/// Parses and checks the embedded template.
pub fn template() -> Result<Deployment, TemplateError> {
    parse_template(TEMPLATE_YAML)
}

pub fn parse_template(yaml: &str) -> Result<Deployment, TemplateError> {
    let raw: serde_json::Value =
        serde_saphyr::from_str(yaml).map_err(|e| TemplateError::Parse(e.to_string()))?;
    let deployment: Deployment =
        serde_json::from_value(raw.clone()).map_err(|e| TemplateError::Parse(e.to_string()))?;
    // k8s-openapi ignores keys it does not know: re-serialise and compare, so that an operator's
    // typo (`enableServicelinks`) is an error instead of a setting that silently vanishes.
    let typed = serde_json::to_value(&deployment).expect("k8s-openapi objects serialize");
    let mut dropped = Vec::new();
    dropped_keys(&raw, &typed, "", &mut dropped);
    if !dropped.is_empty() {
        return Err(TemplateError::UnknownKeys(dropped.join(", ")));
    }
    let spec = deployment
        .spec
        .as_ref()
        .ok_or(TemplateError::Shape("spec is missing"))?;
    let pod = spec
        .template
        .spec
        .as_ref()
        .ok_or(TemplateError::Shape("spec.template.spec is missing"))?;
    if !pod.containers.iter().any(|c| c.name == CONTAINER) {
        return Err(TemplateError::Shape("no container named `backend`"));
    }
    let has_data = pod.volumes.as_ref().is_some_and(|v| {
        v.iter()
            .any(|v| v.name == DATA_VOLUME && v.persistent_volume_claim.is_some())
    });
    if !has_data {
        return Err(TemplateError::Shape(
            "no persistentVolumeClaim volume named `data`",
        ));
    }
    if spec.replicas.unwrap_or(1) != 1 {
        return Err(TemplateError::Shape(
            "replicas must be 1: the data volume is ReadWriteOnce",
        ));
    }
    if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("Recreate") {
        return Err(TemplateError::Shape(
            "strategy must be Recreate: the data volume is ReadWriteOnce",
        ));
    }
    Ok(deployment)
}

/// Paths of keys in `raw` (the YAML) that `typed` (the object re-serialised) lacks.
fn dropped_keys(raw: &serde_json::Value, typed: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    match (raw, typed) {
        (Value::Object(raw), Value::Object(typed)) => {
            for (key, value) in raw {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match typed.get(key) {
                    Some(t) => dropped_keys(value, t, &here, out),
                    // An explicit null is an absent value, not an unknown key.
                    None if value.is_null() => {}
                    None => out.push(here),
                }
            }
        }
        (Value::Array(raw), Value::Array(typed)) => {
            for (i, (r, t)) in raw.iter().zip(typed).enumerate() {
                dropped_keys(r, t, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Kubernetes names of a tenant's objects.
pub fn deployment_name(tenant: &TenantId) -> String {
    format!("backend-{tenant}")
}
pub fn secret_name(tenant: &TenantId) -> String {
    deployment_name(tenant)
}
pub fn volume_name(tenant: &TenantId) -> String {
    format!("backend-{tenant}-data")
}

/// The labels every object of the tenant carries; also its selector.
pub fn tenant_labels(tenant: &TenantId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (TENANT_LABEL.to_owned(), tenant.to_string()),
    ])
}

/// `tgsearch.io/tenant=<sub>,app.kubernetes.io/managed-by=tgsearch-provisioner`.
pub fn tenant_selector(tenant: &TenantId) -> String {
    tenant_labels(tenant)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn meta(
    tenant: &TenantId,
    name: String,
    settings: &BackendSettings,
    extra: Option<&BTreeMap<String, String>>,
) -> ObjectMeta {
    let mut labels = extra.cloned().unwrap_or_default();
    labels.extend(tenant_labels(tenant));
    ObjectMeta {
        name: Some(name),
        namespace: Some(settings.namespace.clone()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The tenant's Secret: the `AMQP_URI` its backend connects with.
pub fn render_secret(tenant: &TenantId, settings: &BackendSettings, amqp_uri: &SecretUri) -> Secret {
    Secret {
        metadata: meta(tenant, secret_name(tenant), settings, None),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            AMQP_URI_KEY.to_owned(),
            ByteString(amqp_uri.expose().as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

/// The tenant's data volume claim.
pub fn render_volume(tenant: &TenantId, settings: &BackendSettings) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(tenant, volume_name(tenant), settings, None),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: settings.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(settings.storage_size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The tenant's Deployment: the template with the per-tenant fields set.
pub fn render_deployment(tenant: &TenantId, settings: &BackendSettings, template: &Deployment) -> Deployment {
    let mut d = template.clone();
    d.metadata = ObjectMeta {
        // The template's annotations (e.g. the scanner's explained skips) stay.
        annotations: template.metadata.annotations.clone(),
        ..meta(
            tenant,
            deployment_name(tenant),
            settings,
            template.metadata.labels.as_ref(),
        )
    };
    let spec = d.spec.as_mut().expect("checked by parse_template");
    let mut selector = spec.selector.match_labels.clone().unwrap_or_default();
    selector.extend(tenant_labels(tenant));
    spec.selector.match_labels = Some(selector);
    let pod_meta = spec.template.metadata.get_or_insert_with(Default::default);
    let mut pod_labels = pod_meta.labels.clone().unwrap_or_default();
    pod_labels.extend(tenant_labels(tenant));
    pod_meta.labels = Some(pod_labels);
    let pod = spec.template.spec.as_mut().expect("checked by parse_template");
    for container in pod.containers.iter_mut().filter(|c| c.name == CONTAINER) {
        container.image = Some(settings.image.clone());
        let env = container.env.get_or_insert_with(Vec::new);
        env.retain(|e| e.name != AMQP_URI_KEY);
        env.push(EnvVar {
            name: AMQP_URI_KEY.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret_name(tenant),
                    key: AMQP_URI_KEY.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for volume in pod.volumes.iter_mut().flatten().filter(|v| v.name == DATA_VOLUME) {
        volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
            claim_name: volume_name(tenant),
            read_only: None,
        });
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{Password, TenantCredentials};

    fn tenant() -> TenantId {
        TenantId::parse("4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c").unwrap()
    }

    fn settings() -> BackendSettings {
        BackendSettings {
            namespace: "tgsearch".into(),
            image: "ghcr.io/tgsearch/core:1.4".into(),
            storage_size: "2Gi".into(),
            storage_class: Some("gp3".into()),
        }
    }

    #[test]
    fn the_embedded_template_is_a_valid_backend() {
        template().expect("manifests/backend-deployment.yaml must parse and keep its shape");
    }

    #[test]
    fn the_deployment_is_the_template_with_the_tenant_set() {
        let d = render_deployment(&tenant(), &settings(), &template().unwrap());
        let labels = d.metadata.labels.as_ref().unwrap();
        assert_eq!(
            d.metadata.name.as_deref(),
            Some("backend-4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c")
        );
        assert_eq!(labels[TENANT_LABEL], tenant().as_str());
        assert_eq!(labels[MANAGED_BY.0], MANAGED_BY.1);
        assert_eq!(
            labels["app.kubernetes.io/name"], "tgsearch-backend",
            "template labels are kept"
        );
        let spec = d.spec.unwrap();
        let selector = spec.selector.match_labels.unwrap();
        assert_eq!(selector[TENANT_LABEL], tenant().as_str());
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        assert!(
            selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
            "the selector matches the pods"
        );
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/tgsearch/core:1.4"));
        let uri = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "AMQP_URI")
            .unwrap();
        let sel = uri.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!(
            (sel.name.as_str(), sel.key.as_str()),
            ("backend-4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c", "AMQP_URI")
        );
        let data = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().claim_name,
            "backend-4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c-data"
        );
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(pod.automount_service_account_token, Some(false));
        // Hardened as a scanner expects.
        let pod_sc = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_sc.run_as_non_root, Some(true));
        assert_eq!(pod_sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        let resources = c.resources.as_ref().unwrap();
        assert!(resources.requests.is_some() && resources.limits.is_some());
        assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
        let mount = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "data")
            .unwrap();
        assert_eq!(mount.mount_path, "/data");
        // The Telegram API credentials: files from Secrets Manager through the CSI driver, under
        // the backend's own identity; no Kubernetes Secret the functions could read.
        assert!(c.env_from.is_none(), "no envFrom: {:?}", c.env_from);
        assert_eq!(pod.service_account_name.as_deref(), Some("tgsearch-backend"));
        let telegram = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "telegram-api")
            .expect("the telegram-api volume");
        assert_eq!(telegram.csi.as_ref().unwrap().driver, "secrets-store.csi.k8s.io");
        assert!(telegram.secret.is_none());
    }

    #[test]
    fn secret_and_volume_carry_the_tenant() {
        let creds = TenantCredentials::new(
            &tenant(),
            Password::new("pw"),
            &reqwest::Url::parse("amqp://mq:5672").unwrap(),
        );
        let s = render_secret(&tenant(), &settings(), &creds.amqp_uri);
        assert_eq!(s.data.unwrap()["AMQP_URI"].0, creds.amqp_uri.expose().as_bytes());
        let v = render_volume(&tenant(), &settings());
        assert_eq!(
            v.metadata.name.as_deref(),
            Some("backend-4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c-data")
        );
        let spec = v.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("gp3"));
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "2Gi");
    }

    #[test]
    fn broken_templates_are_refused_with_the_reason() {
        let cases = [
            (
                "kind: Deployment\nspec: [not, a, map]\n",
                "not a valid Deployment",
            ),
            (
                &TEMPLATE_YAML.replace("name: backend\n", "name: core\n"),
                "no container named `backend`",
            ),
            (
                &TEMPLATE_YAML.replace("replicas: 1", "replicas: 2"),
                "replicas must be 1",
            ),
            (
                &TEMPLATE_YAML.replace("type: Recreate", "type: RollingUpdate"),
                "Recreate",
            ),
            (
                &TEMPLATE_YAML.replace("automountServiceAccountToken:", "automountServiceAccountTokens:"),
                "spec.template.spec.automountServiceAccountTokens",
            ),
            (
                &TEMPLATE_YAML.replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:"),
                "readOnlyRootFileSystem",
            ),
        ];
        for (yaml, why) in cases {
            let err = parse_template(yaml).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn a_key_kubernetes_does_not_know_fails_instead_of_vanishing() {
        let misspelled = TEMPLATE_YAML.replacen("spec:\n", "spec:\n  enableServicelinks: false\n", 1);
        assert_ne!(misspelled, TEMPLATE_YAML, "the test must change the template");
        let err = parse_template(&misspelled).unwrap_err().to_string();
        assert!(err.contains("spec.enableServicelinks"), "{err}");
    }

    #[test]
    fn storage_sizes_compare_however_they_are_written() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("1024Mi"), quantity_bytes("1Gi"));
        assert!(quantity_bytes("2G") < quantity_bytes("2Gi"));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("lots"), None);
        assert_eq!(quantity_bytes("1Xi"), None);
    }

    #[test]
    fn settings_are_validated() {
        let env = |vars: Vec<(&'static str, &'static str)>| {
            Env::from_lookup(move |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
        };
        let err = BackendSettings::from(&env(vec![]), "ns").unwrap_err();
        assert!(err.to_string().contains("BACKEND_IMAGE"));
        let err = BackendSettings::from(
            &env(vec![("BACKEND_IMAGE", "x"), ("BACKEND_STORAGE_SIZE", "lots")]),
            "ns",
        )
        .unwrap_err();
        assert!(err.to_string().contains("BACKEND_STORAGE_SIZE"));
        let ok = BackendSettings::from(&env(vec![("BACKEND_IMAGE", "x")]), "ns").unwrap();
        assert_eq!(ok.storage_size, "1Gi");
    }
}
