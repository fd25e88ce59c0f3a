//! The tenant's Kubernetes objects. Each step reads the live object first: absent, it is
//! created by server-side apply (field manager `tgsearch-provisioner`, forced, strict field
//! validation); present without the provisioner's labels, it is foreign and left alone;
//! present and ours, it is brought back to what it must be, within what Kubernetes allows (a
//! volume grows, never shrinks or changes class; a Deployment keeps its immutable selector).
//! Deletes carry the `uid` just read as a precondition, so an object re-created in between by
//! someone else is never deleted.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{self, BackendSettings, FIELD_MANAGER, quantity_bytes};
use crate::credentials::SecretUri;
use crate::ports::{Converged, Foreign, PortError, Removed, TenantBackend};
use crate::tenant::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("Kubernetes refused to {action} {kind} `{namespace}/{name}`: {code} {reason}: {message}{hint}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        code: u16,
        reason: String,
        message: String,
        hint: &'static str,
        /// `details.retryAfterSeconds` of the Status, when set.
        retry_after: Option<std::time::Duration>,
    },
    #[error("cannot reach the Kubernetes API to {action} {kind} `{namespace}/{name}`: {source}")]
    Transport {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl KubeError {
    /// The API server's status code, when it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Api { code, .. } => Some(*code),
            KubeError::Transport { .. } => None,
        }
    }

    /// A failure a retry may fix: no answer, throttling (429), a concurrent writer that changed
    /// the object under us (409 "the object has been modified"), a server error. A 409 apply
    /// conflict with another field manager is no such thing: it stays until a person looks.
    pub fn is_transient(&self) -> bool {
        match self {
            // An apply the server cannot even type (an unknown field) answers 500, for ever.
            KubeError::Api { message, .. } if message.contains("field not declared in schema") => false,
            KubeError::Api {
                code: 409, message, ..
            } => message.contains("the object has been modified"),
            KubeError::Api { code, .. } => matches!(code, 408 | 429) || *code >= 500,
            // Not a network failure: the token could not be signed, the config is wrong.
            KubeError::Transport {
                source: kube::Error::Auth(_) | kube::Error::InferConfig(_) | kube::Error::SerdeError(_),
                ..
            } => false,
            KubeError::Transport { .. } => true,
        }
    }
}

/// As the ports want it: transient failures marked so that the step retries them.
fn port(e: KubeError) -> PortError {
    if e.is_transient() {
        let retry_after = match &e {
            KubeError::Api { retry_after, .. } => *retry_after,
            KubeError::Transport { .. } => None,
        };
        crate::ports::Transient::wrap(e, retry_after)
    } else {
        e.into()
    }
}

fn hint(code: u16) -> &'static str {
    match code {
        401 => {
            " (the cluster does not accept the provisioner's token: check its EKS access entry or aws-auth mapping)"
        }
        403 => {
            " (the provisioner's identity lacks RBAC rights in this namespace, or an admission plugin refused: see manifests/cluster/provisioner-rbac.yaml)"
        }
        404 => " (does the namespace exist? create it once: kubectl create namespace tgsearch)",
        409 => " (another field manager owns these fields, or the object changed meanwhile)",
        422 => " (the object is invalid: check manifests/backend-deployment.yaml)",
        _ => "",
    }
}

/// Why an object is not provably the tenant's (`None`: it is): both labels must say so.
pub fn not_ours(meta: &ObjectMeta, tenant: &TenantId) -> Option<String> {
    let labels = meta.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    if label(backend::MANAGED_BY.0) != Some(backend::MANAGED_BY.1) {
        return Some(format!(
            "no label {}={}",
            backend::MANAGED_BY.0,
            backend::MANAGED_BY.1
        ));
    }
    if label(backend::TENANT_LABEL) != Some(tenant.as_str()) {
        return Some(format!(
            "its label {} does not name this tenant",
            backend::TENANT_LABEL
        ));
    }
    None
}

/// Kubernetes access for one namespace, with the parsed template.
#[derive(Clone)]
pub struct KubeBackend {
    client: kube::Client,
    settings: BackendSettings,
    template: Deployment,
}

/// What the provisioner's labels say is in the namespace, and what merely looks like it.
#[derive(Debug, Default, Clone)]
pub struct KubeInventory {
    /// Tenants (by `sub`) with a Secret, a volume, a Deployment of theirs.
    pub secrets: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub deployments: BTreeSet<String>,
    /// Objects named like a tenant's without the provisioner's labels: (kind, name, why).
    pub foreign: Vec<(&'static str, String, String)>,
}

impl KubeBackend {
    pub fn new(client: kube::Client, settings: BackendSettings, template: Deployment) -> Self {
        Self {
            client,
            settings,
            template,
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    pub fn settings(&self) -> &BackendSettings {
        &self.settings
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    fn error(&self, action: &'static str, kind: &'static str, name: &str, err: kube::Error) -> KubeError {
        match err {
            kube::Error::Api(status) => KubeError::Api {
                action,
                kind,
                namespace: self.settings.namespace.clone(),
                name: name.to_owned(),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
                hint: hint(status.code),
                retry_after: status
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|s| *s > 0)
                    .map(|s| std::time::Duration::from_secs(s.into())),
            },
            source => KubeError::Transport {
                action,
                kind,
                namespace: self.settings.namespace.clone(),
                name: name.to_owned(),
                source,
            },
        }
    }

    async fn get<K>(&self, kind: &'static str, name: &str) -> Result<Option<K>, KubeError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .map_err(|e| self.error("read", kind, name, e))
    }

    /// Server-side apply, forced, with strict field validation: an unknown field is an error,
    /// not silently dropped.
    async fn apply<K>(&self, kind: &'static str, name: &str, object: &K) -> Result<K, KubeError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let params = PatchParams::apply(FIELD_MANAGER).force().validation_strict();
        self.api::<K>()
            .patch(name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| self.error("apply", kind, name, e))
    }

    /// The live object, `Err(Foreign)` when it is not the tenant's.
    async fn get_ours<K>(
        &self,
        kind: &'static str,
        name: &str,
        tenant: &TenantId,
    ) -> Result<Option<K>, PortError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let live = self.get::<K>(kind, name).await.map_err(port)?;
        if let Some(why) = live.as_ref().and_then(|o| not_ours(o.meta(), tenant)) {
            return Err(Foreign {
                kind,
                name: name.to_owned(),
                reason: why,
            }
            .into());
        }
        Ok(live)
    }

    /// Deletes the object when it is the tenant's, with its `uid` as precondition.
    async fn delete<K>(&self, kind: &'static str, name: &str, tenant: &TenantId) -> Result<Removed, KubeError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let Some(live) = self.get::<K>(kind, name).await? else {
            return Ok(Removed::AlreadyAbsent);
        };
        if let Some(why) = not_ours(live.meta(), tenant) {
            return Ok(Removed::LeftAlone(why));
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: live.meta().uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api::<K>().delete(name, &params).await {
            Ok(_) => Ok(Removed::Deleted),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Removed::AlreadyAbsent),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Removed::LeftAlone(
                "it was replaced by another object while being removed".into(),
            )),
            Err(e) => Err(self.error("delete", kind, name, e)),
        }
    }

    /// What is in the namespace: the tenants' objects by their labels, and look-alikes.
    pub async fn inventory(&self) -> Result<KubeInventory, KubeError> {
        let ns = &self.settings.namespace;
        let all = ListParams::default();
        let (secrets, volumes, deployments) = (
            self.api::<Secret>(),
            self.api::<PersistentVolumeClaim>(),
            self.api::<Deployment>(),
        );
        let (secrets, volumes, deployments) = tokio::join!(
            secrets.list_metadata(&all),
            volumes.list_metadata(&all),
            deployments.list_metadata(&all),
        );
        let mut inventory = KubeInventory::default();
        let secrets: Vec<ObjectMeta> = secrets
            .map_err(|e| self.error("list", "Secret", ns, e))?
            .items
            .into_iter()
            .map(|o| o.metadata)
            .collect();
        let volumes: Vec<ObjectMeta> = volumes
            .map_err(|e| self.error("list", "PersistentVolumeClaim", ns, e))?
            .items
            .into_iter()
            .map(|o| o.metadata)
            .collect();
        let deployments: Vec<ObjectMeta> = deployments
            .map_err(|e| self.error("list", "Deployment", ns, e))?
            .items
            .into_iter()
            .map(|o| o.metadata)
            .collect();
        let lists = [
            ("Secret", secrets, "", &mut inventory.secrets),
            ("PersistentVolumeClaim", volumes, "-data", &mut inventory.volumes),
            ("Deployment", deployments, "", &mut inventory.deployments),
        ];
        let mut foreign = Vec::new();
        for (kind, items, suffix, ours) in lists {
            for meta in items {
                let name = meta.name.clone().unwrap_or_default();
                // `backend-<sub>` or `backend-<sub>-data`: the names a tenant's objects have.
                let Some(tenant) = name
                    .strip_prefix("backend-")
                    .and_then(|rest| rest.strip_suffix(suffix))
                    .and_then(|sub| TenantId::parse(sub).ok())
                else {
                    continue;
                };
                match not_ours(&meta, &tenant) {
                    None => {
                        ours.insert(tenant.to_string());
                    }
                    Some(why) => foreign.push((kind, name, why)),
                }
            }
        }
        inventory.foreign = foreign;
        Ok(inventory)
    }

    /// The tenant's objects as they are in the cluster (for `status` and the demo).
    pub async fn get_all(
        &self,
        tenant: &TenantId,
    ) -> Result<(Option<Secret>, Option<PersistentVolumeClaim>, Option<Deployment>), KubeError> {
        let (s, v, d) = (
            backend::secret_name(tenant),
            backend::volume_name(tenant),
            backend::deployment_name(tenant),
        );
        let (secret, volume, deployment) = tokio::join!(
            self.get::<Secret>("Secret", &s),
            self.get::<PersistentVolumeClaim>("PersistentVolumeClaim", &v),
            self.get::<Deployment>("Deployment", &d)
        );
        Ok((secret?, volume?, deployment?))
    }

    /// The Deployment to apply for `tenant`: the template rendered, with the live selector
    /// kept when the template's differs (a Deployment's selector is immutable).
    pub fn desired_deployment(
        &self,
        tenant: &TenantId,
        live: Option<&Deployment>,
    ) -> (Deployment, Option<String>) {
        let mut desired = backend::render_deployment(tenant, &self.settings, &self.template);
        let live_selector = live.and_then(|d| d.spec.as_ref()).map(|s| s.selector.clone());
        let spec = desired.spec.as_mut().expect("rendered Deployments have a spec");
        match live_selector {
            Some(selector) if selector != spec.selector => {
                let pod_labels = spec
                    .template
                    .metadata
                    .get_or_insert_with(Default::default)
                    .labels
                    .get_or_insert_with(BTreeMap::new);
                pod_labels.extend(selector.match_labels.clone().unwrap_or_default());
                spec.selector = selector;
                (
                    desired,
                    Some(
                        "the template's selector differs from the live one, which is immutable: the live one is kept; delete the Deployment to adopt the new selector"
                            .into(),
                    ),
                )
            }
            _ => (desired, None),
        }
    }
}

fn storage(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

/// The pod template annotation that names the credentials version the backend runs on.
pub const CREDENTIALS_VERSION: &str = "tgsearch.io/credentials-version";

impl TenantBackend for KubeBackend {
    async fn ensure_secret(&self, tenant: &TenantId, amqp_uri: &SecretUri) -> Result<Converged, PortError> {
        let name = backend::secret_name(tenant);
        let live = self.get_ours::<Secret>("Secret", &name, tenant).await?;
        let outcome = match &live {
            None => Converged::Created,
            Some(s) => {
                let current = s.data.as_ref().and_then(|d| d.get(backend::AMQP_URI_KEY));
                if current.is_some_and(|v| v.0 == amqp_uri.expose().as_bytes()) {
                    return Ok(Converged::Unchanged);
                }
                Converged::Repaired("its AMQP_URI did not match the stored credentials".into())
            }
        };
        let secret = backend::render_secret(tenant, &self.settings, amqp_uri);
        self.apply("Secret", &name, &secret).await.map_err(port)?;
        Ok(outcome)
    }

    async fn secret_holds(&self, tenant: &TenantId, amqp_uri: &SecretUri) -> Result<bool, PortError> {
        let name = backend::secret_name(tenant);
        let live = self.get_ours::<Secret>("Secret", &name, tenant).await?;
        Ok(live
            .and_then(|s| s.data)
            .and_then(|d| d.get(backend::AMQP_URI_KEY).cloned())
            .is_some_and(|v| v.0 == amqp_uri.expose().as_bytes()))
    }

    async fn ensure_volume(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        let name = backend::volume_name(tenant);
        let Some(live) = self
            .get_ours::<PersistentVolumeClaim>("PersistentVolumeClaim", &name, tenant)
            .await?
        else {
            let volume = backend::render_volume(tenant, &self.settings);
            self.apply("PersistentVolumeClaim", &name, &volume)
                .await
                .map_err(port)?;
            return Ok(Converged::Created);
        };
        let live_class = live.spec.as_ref().and_then(|s| s.storage_class_name.clone());
        let mut needs_person = Vec::new();
        if let Some(wanted) = &self.settings.storage_class
            && live_class.as_ref() != Some(wanted)
        {
            needs_person.push(format!(
                "BACKEND_STORAGE_CLASS is `{wanted}` but the volume's class is `{}`: a volume's class never changes; move the data by hand if it must",
                live_class.as_deref().unwrap_or("<default>")
            ));
        }
        let live_size = storage(&live).unwrap_or_default();
        let wanted_size = &self.settings.storage_size;
        let mut grown = None;
        match (quantity_bytes(&live_size), quantity_bytes(wanted_size)) {
            (Some(have), Some(want)) if want > have => {
                // Grow, keeping the live class: only the request changes.
                let mut settings = self.settings.clone();
                settings.storage_class = live_class.clone();
                let volume = backend::render_volume(tenant, &settings);
                match self.apply("PersistentVolumeClaim", &name, &volume).await {
                    Ok(_) => grown = Some(format!("grown from {live_size} to {wanted_size}")),
                    Err(e) if matches!(e.code(), Some(403 | 422)) => needs_person.push(format!(
                        "growing it from {live_size} to {wanted_size} was refused (does its class allow expansion? is it bound?): {e}"
                    )),
                    Err(e) => return Err(port(e)),
                }
            }
            (Some(have), Some(want)) if want < have => needs_person.push(format!(
                "BACKEND_STORAGE_SIZE is {wanted_size} but the volume holds {live_size}: volumes never shrink"
            )),
            _ => {}
        }
        Ok(match (needs_person.is_empty(), grown) {
            (false, grown) => Converged::NeedsPerson(
                grown
                    .into_iter()
                    .chain(needs_person)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            (true, Some(grown)) => Converged::Repaired(grown),
            (true, None) => Converged::Unchanged,
        })
    }

    async fn ensure_deployment(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        let name = backend::deployment_name(tenant);
        let live = self.get_ours::<Deployment>("Deployment", &name, tenant).await?;
        let (desired, kept_selector) = self.desired_deployment(tenant, live.as_ref());
        let applied = self.apply("Deployment", &name, &desired).await.map_err(port)?;
        let Some(live) = live else {
            return Ok(Converged::Created);
        };
        // Server-side apply bumps the generation exactly when the spec changed.
        let changed = applied.metadata.generation != live.metadata.generation;
        Ok(match (kept_selector, changed) {
            (Some(why), _) => Converged::NeedsPerson(why),
            (None, true) => Converged::Repaired("its spec differed from the template".into()),
            (None, false) => Converged::Unchanged,
        })
    }

    async fn restart(&self, tenant: &TenantId, version: &str) -> Result<Converged, PortError> {
        // As `kubectl rollout restart` does, with the credentials' version as the value, under a
        // field manager of its own so that the provisioner's next apply does not take the
        // annotation away (and restart again). The same version twice restarts once.
        let name = backend::deployment_name(tenant);
        let Some(live) = self.get_ours::<Deployment>("Deployment", &name, tenant).await? else {
            return Err("the backend Deployment does not exist yet; provisioning creates it".into());
        };
        let running = live
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CREDENTIALS_VERSION))
            .map(String::as_str);
        if running == Some(version) {
            return Ok(Converged::Unchanged);
        }
        let patch = serde_json::json!({
            "spec": {"template": {"metadata": {"annotations": {CREDENTIALS_VERSION: version}}}}
        });
        self.api::<Deployment>()
            .patch(
                &name,
                &PatchParams {
                    field_manager: Some("tgsearch-rotation".into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| port(self.error("restart", "Deployment", &name, e)))?;
        Ok(Converged::Repaired(format!(
            "restarted onto credentials version {version}"
        )))
    }

    async fn remove_deployment(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        self.delete::<Deployment>("Deployment", &backend::deployment_name(tenant), tenant)
            .await
            .map_err(port)
    }

    async fn remove_volume(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        self.delete::<PersistentVolumeClaim>("PersistentVolumeClaim", &backend::volume_name(tenant), tenant)
            .await
            .map_err(port)
    }

    async fn remove_secret(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        self.delete::<Secret>("Secret", &backend::secret_name(tenant), tenant)
            .await
            .map_err(port)
    }
}
