//! `tgsearch status`: what exists of one tenant, in every system, and whether it is what it
//! must be, without showing secrets. Read only; the same checks decide readiness for the
//! frontend and what reconcile will repair.

use std::fmt;

use crate::adapters::kubernetes::{KubeError, not_ours};
use crate::adapters::rabbitmq::{
    ClusterView, Permission, RabbitMqError, User, missing_built_in_exchanges, user_not_ours,
};
use crate::app::LiveProvisioner;
use crate::backend::{self, AMQP_URI_KEY, CONTAINER, DATA_VOLUME, quantity_bytes};
use crate::credentials::TenantCredentials;
use crate::deadline::Step;
use crate::ports::{Found, PortError};
use crate::tenant::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read the tenant secret: {0}")]
    Secret(#[source] PortError),
    #[error("cannot query RabbitMQ: {0}")]
    RabbitMq(#[from] RabbitMqError),
    #[error("cannot query Kubernetes: {0}")]
    Kube(#[from] KubeError),
}

/// How one resource stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// There, and what it must be.
    Ok,
    Missing,
    /// There, but not what it must be: provisioning or reconcile repairs it.
    Drift,
    /// There, different in a way the provisioner must not change on its own.
    NeedsPerson,
    /// Named like the tenant's, not provably the provisioner's: left alone.
    Foreign,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ResourceStatus {
    pub resource: Step,
    pub name: String,
    pub state: State,
    /// What differs, or why it is foreign; empty when fine.
    pub detail: String,
}

/// The tenant's Deployment, as far as an operator checks it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentSummary {
    pub image: String,
    pub replicas: i32,
    pub strategy: String,
}

/// The tenant's secret, described without its password.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecretSummary {
    pub name: String,
    pub username: String,
    pub vhost: String,
    /// The broker part of `amqp_uri`, credentials removed.
    pub broker: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantStatus {
    pub sub: String,
    /// Secret, vhost, user, permission, Kubernetes Secret, volume, Deployment, in that order.
    pub resources: Vec<ResourceStatus>,
    pub secret: Option<SecretSummary>,
    /// Every permission the tenant's user holds (anything beyond its own vhost is drift).
    pub permissions: Vec<Permission>,
    pub deployment: Option<DeploymentSummary>,
    /// The broker's nodes as the node that answered sees them (absent when it could not say).
    pub broker: Option<ClusterView>,
    /// The stored credentials as read (never serialized, never shown).
    #[serde(skip)]
    credentials: Option<TenantCredentials>,
}

impl TenantStatus {
    /// The stored credentials that were checked, when they are the provisioner's.
    pub fn credentials(&self) -> Option<&TenantCredentials> {
        self.credentials.as_ref()
    }

    /// Everything is there and what it must be: the tenant can connect.
    pub fn is_complete(&self) -> bool {
        self.resources.iter().all(|r| r.state == State::Ok)
    }

    /// Nothing of the tenant exists (foreign look-alikes aside).
    pub fn is_absent(&self) -> bool {
        self.resources
            .iter()
            .all(|r| matches!(r.state, State::Missing | State::Foreign))
    }

    /// Its credentials are stored but the tenant is not complete yet: provisioning is under way
    /// (or will be finished by the worker or reconcile).
    pub fn is_provisioning(&self) -> bool {
        !self.is_complete() && self.secret.is_some()
    }

    pub fn state_of(&self, resource: Step) -> State {
        self.resources
            .iter()
            .find(|r| r.resource == resource)
            .map_or(State::Missing, |r| r.state)
    }
}

struct Check {
    resource: Step,
    name: String,
}

impl Check {
    fn new(resource: Step, name: impl Into<String>) -> Self {
        Self {
            resource,
            name: name.into(),
        }
    }
    fn is(self, state: State, detail: impl Into<String>) -> ResourceStatus {
        ResourceStatus {
            resource: self.resource,
            name: self.name,
            state,
            detail: detail.into(),
        }
    }
    fn ok(self) -> ResourceStatus {
        self.is(State::Ok, "")
    }
    fn missing(self) -> ResourceStatus {
        self.is(State::Missing, "")
    }
}

pub async fn tenant_status(
    provisioner: &LiveProvisioner,
    tenant: &TenantId,
) -> Result<TenantStatus, StatusError> {
    use crate::ports::CredentialStore;
    let (secrets, rabbitmq, kube) = (&provisioner.store, &provisioner.broker, &provisioner.backend);
    let (stored, (vhost, exchanges), user, permissions, objects, broker) = tokio::join!(
        secrets.read(tenant),
        async {
            tokio::join!(
                rabbitmq.get_vhost(tenant.vhost()),
                rabbitmq.vhost_exchanges(tenant.vhost())
            )
        },
        rabbitmq.get_user(tenant.rabbitmq_user()),
        rabbitmq.user_permissions(tenant.rabbitmq_user()),
        kube.get_all(tenant),
        rabbitmq.cluster_view(),
    );
    let stored = stored.map_err(StatusError::Secret)?;
    let (vhost, user, permissions) = (vhost?, user?, permissions?);
    let missing_exchanges = exchanges?
        .map(|e| missing_built_in_exchanges(&e))
        .unwrap_or_default();
    let (kube_secret, volume, deployment) = objects?;
    let settings = kube.settings();
    let secret_name = secrets.tenant_secret_name(tenant);

    // What the credentials must be: rebuilt from the stored password and the configured broker.
    let expected = match &stored {
        Found::Ours(c) if !c.password.expose().is_empty() => Some(TenantCredentials::new(
            tenant,
            c.password.clone(),
            &provisioner.amqp_url,
        )),
        _ => None,
    };
    let mut resources = Vec::with_capacity(7);
    let check = Check::new(Step::Secret, &secret_name);
    resources.push(match &stored {
        Found::Absent => check.missing(),
        Found::Foreign(why) => check.is(State::Foreign, why),
        Found::Ours(c) => match expected.as_ref().and_then(|e| c.drift_from(e)) {
            Some(drift) => check.is(State::Drift, drift),
            None if expected.is_none() => check.is(State::Drift, "its password is empty"),
            None => check.ok(),
        },
    });
    let tagged = vhost.as_ref().is_some_and(|v| v.is_tenant_vhost());
    let check = Check::new(Step::Vhost, tenant.vhost());
    resources.push(match &vhost {
        None => check.missing(),
        Some(_) if !tagged => check.is(State::Foreign, "it has no `tgsearch` tag"),
        Some(_) if !missing_exchanges.is_empty() => check.is(
            State::Drift,
            format!(
                "its creation was cut short: built-in exchanges missing ({}), so publishing to a queue by name fails",
                missing_exchanges.join(", ")
            ),
        ),
        Some(v) if !v.stopped_on().is_empty() => check.is(
            State::Drift,
            format!(
                "stopped on {}: clients routed there get \"vhost is down\"",
                v.stopped_on().join(", ")
            ),
        ),
        Some(_) => check.ok(),
    });
    resources.push(user_status(
        tenant,
        user.as_ref(),
        expected.as_ref(),
        tagged,
        &permissions,
    ));
    resources.push(permission_status(tenant, user.is_some(), &permissions));
    let check = Check::new(Step::KubeSecret, backend::secret_name(tenant));
    resources.push(match &kube_secret {
        None => check.missing(),
        Some(s) => match not_ours(&s.metadata, tenant) {
            Some(why) => check.is(State::Foreign, why),
            None => {
                let uri = s.data.as_ref().and_then(|d| d.get(AMQP_URI_KEY));
                match (&expected, uri) {
                    (Some(e), Some(uri)) if uri.0 == e.amqp_uri.expose().as_bytes() => check.ok(),
                    (None, _) => check.is(State::Drift, "no stored credentials to compare it with"),
                    _ => check.is(State::Drift, "its AMQP_URI differs from the stored credentials"),
                }
            }
        },
    });
    let check = Check::new(Step::Volume, backend::volume_name(tenant));
    resources.push(match &volume {
        None => check.missing(),
        Some(v) => match not_ours(&v.metadata, tenant) {
            Some(why) => check.is(State::Foreign, why),
            None => {
                let spec = v.spec.clone().unwrap_or_default();
                let size = spec
                    .resources
                    .and_then(|r| r.requests)
                    .and_then(|r| r.get("storage").map(|q| q.0.clone()))
                    .unwrap_or_default();
                let class = spec.storage_class_name.unwrap_or_else(|| "<default>".into());
                let mut person = Vec::new();
                if let Some(wanted) = &settings.storage_class
                    && *wanted != class
                {
                    person.push(format!(
                        "class is `{class}`, BACKEND_STORAGE_CLASS says `{wanted}`"
                    ));
                }
                let (have, want) = (quantity_bytes(&size), quantity_bytes(&settings.storage_size));
                if have > want {
                    person.push(format!(
                        "holds {size}, more than BACKEND_STORAGE_SIZE {}: volumes never shrink",
                        settings.storage_size
                    ));
                }
                if !person.is_empty() {
                    check.is(State::NeedsPerson, person.join("; "))
                } else if have < want {
                    check.is(
                        State::Drift,
                        format!("{size}, will grow to {}", settings.storage_size),
                    )
                } else {
                    check.is(State::Ok, format!("{size}, class {class}"))
                }
            }
        },
    });
    let check = Check::new(Step::Deployment, backend::deployment_name(tenant));
    let mut summary = None;
    resources.push(match &deployment {
        None => check.missing(),
        Some(d) => match not_ours(&d.metadata, tenant) {
            Some(why) => check.is(State::Foreign, why),
            None => {
                let spec = d.spec.clone().unwrap_or_default();
                let pod = spec.template.spec.clone().unwrap_or_default();
                let container = pod
                    .containers
                    .iter()
                    .find(|c| c.name == CONTAINER)
                    .cloned()
                    .unwrap_or_default();
                let image = container.image.clone().unwrap_or_default();
                let uses_secret = container.env.iter().flatten().any(|e| {
                    e.name == AMQP_URI_KEY
                        && e.value_from
                            .as_ref()
                            .and_then(|v| v.secret_key_ref.as_ref())
                            .is_some_and(|r| r.name == backend::secret_name(tenant) && r.key == AMQP_URI_KEY)
                });
                let uses_volume = pod.volumes.iter().flatten().any(|v| {
                    v.name == DATA_VOLUME
                        && v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| c.claim_name == backend::volume_name(tenant))
                });
                let mut drift = Vec::new();
                if !uses_secret {
                    drift.push("AMQP_URI does not come from the tenant's Secret".to_owned());
                }
                if !uses_volume {
                    drift.push("the data volume is not the tenant's claim".to_owned());
                }
                if image != settings.image {
                    drift.push(format!(
                        "image `{image}`, BACKEND_IMAGE says `{}`",
                        settings.image
                    ));
                }
                summary = Some(DeploymentSummary {
                    image,
                    replicas: spec.replicas.unwrap_or(1),
                    strategy: spec.strategy.and_then(|s| s.type_).unwrap_or_default(),
                });
                if drift.is_empty() {
                    check.ok()
                } else {
                    check.is(State::Drift, drift.join("; "))
                }
            }
        },
    });

    let (secret, credentials) = match stored {
        Found::Ours(c) => (
            Some(SecretSummary {
                name: secret_name,
                broker: broker_of(&c),
                username: c.username.clone(),
                vhost: c.vhost.clone(),
            }),
            Some(c),
        ),
        _ => (None, None),
    };
    Ok(TenantStatus {
        sub: tenant.to_string(),
        resources,
        secret,
        permissions,
        deployment: summary,
        broker: broker.ok(),
        credentials,
    })
}

fn user_status(
    tenant: &TenantId,
    user: Option<&User>,
    expected: Option<&TenantCredentials>,
    own_vhost_tagged: bool,
    permissions: &[Permission],
) -> ResourceStatus {
    let check = Check::new(Step::User, tenant.rabbitmq_user());
    let Some(user) = user else {
        return check.missing();
    };
    let stored = expected.map(|e| &e.password);
    if let Some(why) = user_not_ours(user, stored, own_vhost_tagged, permissions) {
        return check.is(State::Foreign, why);
    }
    match stored {
        Some(p) if user.has_password(p) => check.ok(),
        _ => check.is(State::Drift, "its password does not match the stored secret"),
    }
}

fn permission_status(tenant: &TenantId, user_exists: bool, permissions: &[Permission]) -> ResourceStatus {
    let check = Check::new(
        Step::Permission,
        format!("{} on {}", tenant.rabbitmq_user(), tenant.vhost()),
    );
    if !user_exists {
        return check.missing();
    }
    let own = permissions.iter().find(|p| p.vhost == tenant.vhost());
    let mut drift: Vec<String> = permissions
        .iter()
        .filter(|p| p.vhost != tenant.vhost())
        .map(|p| format!("also has rights on vhost `{}`", p.vhost))
        .collect();
    match own {
        None if drift.is_empty() => return check.missing(),
        None => drift.insert(0, "no rights on its own vhost".into()),
        Some(p) if !(p.configure == ".*" && p.write == ".*" && p.read == ".*") => drift.insert(
            0,
            format!(
                "rights on its vhost are configure {:?} write {:?} read {:?}, not `.*`",
                p.configure, p.write, p.read
            ),
        ),
        Some(_) => {}
    }
    if drift.is_empty() {
        check.ok()
    } else {
        check.is(State::Drift, drift.join("; "))
    }
}

/// The broker part of `amqp_uri`, credentials and vhost removed.
fn broker_of(c: &TenantCredentials) -> String {
    let mut broker = reqwest::Url::parse(c.amqp_uri.expose())
        .map(|mut u| {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_path("");
            u.to_string()
        })
        .unwrap_or_else(|_| "<unparseable amqp_uri>".into());
    if broker.ends_with('/') {
        broker.pop();
    }
    broker
}

fn mark(state: State) -> &'static str {
    match state {
        State::Ok => "✓",
        State::Missing => "✗",
        State::Drift => "~",
        State::NeedsPerson => "!",
        State::Foreign => "?",
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tenant {}", self.sub)?;
        for r in &self.resources {
            let state = match r.state {
                State::Ok => String::new(),
                State::Missing => " missing".into(),
                State::Drift => " DRIFT (repaired by provisioning or reconcile):".into(),
                State::NeedsPerson => " NEEDS A PERSON:".into(),
                State::Foreign => " foreign, left alone:".into(),
            };
            let detail = if r.detail.is_empty() {
                String::new()
            } else {
                format!(" {}", r.detail)
            };
            writeln!(
                f,
                "  {} {:<11} {}{state}{detail}",
                mark(r.state),
                r.resource.as_str(),
                r.name
            )?;
        }
        if let Some(s) = &self.secret {
            writeln!(
                f,
                "    credentials: user {}, vhost {}, broker {}",
                s.username, s.vhost, s.broker
            )?;
        }
        if let Some(d) = &self.deployment {
            writeln!(
                f,
                "    deployment: image {}, {} replica, {}",
                d.image, d.replicas, d.strategy
            )?;
        }
        if let Some(problem) = self.broker.as_ref().and_then(ClusterView::problem) {
            writeln!(f, "  ! broker      {problem}")?;
        }
        Ok(())
    }
}
