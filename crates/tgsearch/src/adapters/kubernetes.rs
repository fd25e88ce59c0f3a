//! The tenant's Kubernetes objects, written by server-side apply (field manager
//! `tgsearch-provisioner`, forced), so a retry or a changed template converges.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{self, BackendSettings, FIELD_MANAGER};
use crate::credentials::SecretUri;
use crate::ports::{PortError, Removed, TenantBackend};
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

fn hint(code: u16) -> &'static str {
    match code {
        401 => {
            " (the cluster does not accept the provisioner's token: check its EKS access entry or aws-auth mapping)"
        }
        403 => {
            " (the provisioner's identity lacks RBAC rights in this namespace: see manifests/provisioner-rbac.yaml)"
        }
        404 => " (does the namespace exist? create it once: kubectl create namespace tgsearch)",
        409 => " (another field manager owns these fields)",
        422 => " (the object is invalid: check manifests/backend-deployment.yaml)",
        _ => "",
    }
}

/// Kubernetes access for one namespace, with the parsed template.
#[derive(Clone)]
pub struct KubeBackend {
    client: kube::Client,
    settings: BackendSettings,
    template: Deployment,
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

    async fn apply<K>(&self, kind: &'static str, name: &str, object: &K) -> Result<(), KubeError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api::<K>()
            .patch(name, &params, &Patch::Apply(object))
            .await
            .map(drop)
            .map_err(|e| self.error("apply", kind, name, e))
    }

    async fn delete<K>(&self, kind: &'static str, name: &str) -> Result<Removed, KubeError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        match self.api::<K>().delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(Removed::Deleted),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Removed::AlreadyAbsent),
            Err(e) => Err(self.error("delete", kind, name, e)),
        }
    }

    /// Tenants that own at least one object of each kind, by the `tgsearch.io/tenant` label of
    /// the objects this provisioner manages: (secrets, volumes, deployments).
    pub async fn tenants(
        &self,
    ) -> Result<
        (
            std::collections::BTreeSet<String>,
            std::collections::BTreeSet<String>,
            std::collections::BTreeSet<String>,
        ),
        KubeError,
    > {
        let params = kube::api::ListParams::default().labels(&format!(
            "{}={}",
            backend::MANAGED_BY.0,
            backend::MANAGED_BY.1
        ));
        fn tenants_of<K: kube::Resource>(items: Vec<K>) -> std::collections::BTreeSet<String> {
            items
                .iter()
                .filter_map(|o| o.meta().labels.as_ref()?.get(backend::TENANT_LABEL).cloned())
                .collect()
        }
        let ns = &self.settings.namespace;
        let (secrets, volumes, deployments) = (
            self.api::<Secret>(),
            self.api::<PersistentVolumeClaim>(),
            self.api::<Deployment>(),
        );
        let (secrets, volumes, deployments) = tokio::join!(
            secrets.list(&params),
            volumes.list(&params),
            deployments.list(&params)
        );
        Ok((
            tenants_of(secrets.map_err(|e| self.error("list", "Secret", ns, e))?.items),
            tenants_of(
                volumes
                    .map_err(|e| self.error("list", "PersistentVolumeClaim", ns, e))?
                    .items,
            ),
            tenants_of(
                deployments
                    .map_err(|e| self.error("list", "Deployment", ns, e))?
                    .items,
            ),
        ))
    }

    /// The tenant's objects as they are in the cluster (for `status` and the demo).
    pub async fn get(
        &self,
        tenant: &TenantId,
    ) -> Result<(Option<Secret>, Option<PersistentVolumeClaim>, Option<Deployment>), KubeError> {
        let (s, v, d) = (
            backend::secret_name(tenant),
            backend::volume_name(tenant),
            backend::deployment_name(tenant),
        );
        let secrets = self.api::<Secret>();
        let volumes = self.api::<PersistentVolumeClaim>();
        let deployments = self.api::<Deployment>();
        let (secret, volume, deployment) =
            tokio::join!(secrets.get_opt(&s), volumes.get_opt(&v), deployments.get_opt(&d));
        Ok((
            secret.map_err(|e| self.error("read", "Secret", &s, e))?,
            volume.map_err(|e| self.error("read", "PersistentVolumeClaim", &v, e))?,
            deployment.map_err(|e| self.error("read", "Deployment", &d, e))?,
        ))
    }
}

impl TenantBackend for KubeBackend {
    async fn ensure_secret(&self, tenant: &TenantId, amqp_uri: &SecretUri) -> Result<(), PortError> {
        let secret = backend::render_secret(tenant, &self.settings, amqp_uri);
        Ok(self
            .apply("Secret", &backend::secret_name(tenant), &secret)
            .await?)
    }

    async fn ensure_volume(&self, tenant: &TenantId) -> Result<(), PortError> {
        let volume = backend::render_volume(tenant, &self.settings);
        Ok(self
            .apply("PersistentVolumeClaim", &backend::volume_name(tenant), &volume)
            .await?)
    }

    async fn ensure_deployment(&self, tenant: &TenantId) -> Result<(), PortError> {
        let deployment = backend::render_deployment(tenant, &self.settings, &self.template);
        Ok(self
            .apply("Deployment", &backend::deployment_name(tenant), &deployment)
            .await?)
    }

    async fn remove_deployment(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        Ok(self
            .delete::<Deployment>("Deployment", &backend::deployment_name(tenant))
            .await?)
    }

    async fn remove_volume(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        Ok(self
            .delete::<PersistentVolumeClaim>("PersistentVolumeClaim", &backend::volume_name(tenant))
            .await?)
    }

    async fn remove_secret(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        Ok(self
            .delete::<Secret>("Secret", &backend::secret_name(tenant))
            .await?)
    }
}
