//! Client of the RabbitMQ management HTTP API (`/api/...`).
//!
//! Names are percent-encoded into the path (the default vhost `/` becomes `%2F`); errors keep
//! the HTTP status and RabbitMQ's own `reason`; deletes treat 404 as "already gone", which is
//! what makes teardown idempotent.

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::credentials::{Password, URI_COMPONENT};
use crate::ports::Removed;

/// Credentials of a RabbitMQ user that may call the management API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdminCredentials {
    pub username: String,
    pub password: Password,
}

#[derive(Debug, thiserror::Error)]
pub enum RabbitMqError {
    #[error("RabbitMQ management API: {method} {path} answered {status}: {reason}")]
    Api {
        method: Method,
        path: String,
        status: StatusCode,
        /// RabbitMQ's `reason` field, or the body when it is not RabbitMQ's JSON.
        reason: String,
    },
    #[error("RabbitMQ management API: {method} {path} failed: {source}")]
    Transport {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("RabbitMQ management API: {method} {path} answered with an unexpected body: {source}")]
    Decode {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
}

impl RabbitMqError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            RabbitMqError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A virtual host as the API reports it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Vhost {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A user as the API reports it (never its password hash: we do not ask for it).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    #[serde(default, deserialize_with = "tags_from_list_or_string")]
    pub tags: Vec<String>,
}

/// A user's permission on one vhost.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Permission {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

// RabbitMQ 3.x reports tags as a comma-separated string, 3.9+ as a list: accept both.
fn tags_from_list_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Tags::deserialize(d)? {
        Tags::List(list) => list,
        Tags::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
    })
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    reason: String,
}

/// The management API client. Cheap to clone: the `reqwest::Client` inside is shared.
#[derive(Clone)]
pub struct ManagementClient {
    http: reqwest::Client,
    base: Url,
    admin: AdminCredentials,
}

impl std::fmt::Debug for ManagementClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementClient")
            .field("base", &self.base.as_str())
            .field("user", &self.admin.username)
            .finish_non_exhaustive()
    }
}

fn enc(name: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(name, URI_COMPONENT)
}

impl ManagementClient {
    pub fn new(http: reqwest::Client, base: Url, admin: AdminCredentials) -> Self {
        Self { http, base, admin }
    }

    /// The user this client authenticates as.
    pub fn username(&self) -> &str {
        &self.admin.username
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The same API with other credentials (e.g. to check what a tenant's user may do).
    pub fn with_credentials(&self, admin: AdminCredentials) -> Self {
        Self {
            admin,
            ..self.clone()
        }
    }

    async fn send(
        &self,
        method: Method,
        path: String,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, RabbitMqError> {
        // `base` may carry a path prefix (a management UI behind a proxy): keep it.
        let url = format!("{}{}", self.base.as_str().trim_end_matches('/'), path);
        let mut request = self
            .http
            .request(method.clone(), url)
            .basic_auth(&self.admin.username, Some(self.admin.password.expose()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|source| RabbitMqError::Transport {
            method: method.clone(),
            path: path.clone(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let reason = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) if !b.reason.is_empty() => b.reason,
            Ok(b) if !b.error.is_empty() => b.error,
            _ => text.chars().take(300).collect(),
        };
        Err(RabbitMqError::Api {
            method,
            path,
            status,
            reason,
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: String) -> Result<Option<T>, RabbitMqError> {
        match self.send(Method::GET, path.clone(), None).await {
            Ok(response) => response
                .json()
                .await
                .map(Some)
                .map_err(|source| RabbitMqError::Decode {
                    method: Method::GET,
                    path,
                    source,
                }),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, path: String, body: serde_json::Value) -> Result<(), RabbitMqError> {
        self.send(Method::PUT, path, Some(body)).await.map(drop)
    }

    async fn delete(&self, path: String) -> Result<Removed, RabbitMqError> {
        match self.send(Method::DELETE, path, None).await {
            Ok(_) => Ok(Removed::Deleted),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(Removed::AlreadyAbsent),
            Err(e) => Err(e),
        }
    }

    /// Creates or updates a vhost (PUT is idempotent).
    pub async fn put_vhost(&self, name: &str, description: &str, tags: &[&str]) -> Result<(), RabbitMqError> {
        let body = serde_json::json!({ "description": description, "tags": tags.join(",") });
        self.put(format!("/api/vhosts/{}", enc(name)), body).await
    }

    pub async fn get_vhost(&self, name: &str) -> Result<Option<Vhost>, RabbitMqError> {
        self.get_json(format!("/api/vhosts/{}", enc(name))).await
    }

    pub async fn list_vhosts(&self) -> Result<Vec<Vhost>, RabbitMqError> {
        Ok(self.get_json("/api/vhosts".into()).await?.unwrap_or_default())
    }

    pub async fn delete_vhost(&self, name: &str) -> Result<Removed, RabbitMqError> {
        self.delete(format!("/api/vhosts/{}", enc(name))).await
    }

    /// Creates or updates a user with `password` and `tags` (empty: no management access).
    pub async fn put_user(
        &self,
        name: &str,
        password: &Password,
        tags: &[&str],
    ) -> Result<(), RabbitMqError> {
        let body = serde_json::json!({ "password": password.expose(), "tags": tags.join(",") });
        self.put(format!("/api/users/{}", enc(name)), body).await
    }

    pub async fn get_user(&self, name: &str) -> Result<Option<User>, RabbitMqError> {
        self.get_json(format!("/api/users/{}", enc(name))).await
    }

    pub async fn list_users(&self) -> Result<Vec<User>, RabbitMqError> {
        Ok(self.get_json("/api/users".into()).await?.unwrap_or_default())
    }

    pub async fn delete_user(&self, name: &str) -> Result<Removed, RabbitMqError> {
        self.delete(format!("/api/users/{}", enc(name))).await
    }

    pub async fn put_permission(
        &self,
        vhost: &str,
        user: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), RabbitMqError> {
        let body = serde_json::json!({ "configure": configure, "write": write, "read": read });
        self.put(format!("/api/permissions/{}/{}", enc(vhost), enc(user)), body)
            .await
    }

    pub async fn get_permission(&self, vhost: &str, user: &str) -> Result<Option<Permission>, RabbitMqError> {
        self.get_json(format!("/api/permissions/{}/{}", enc(vhost), enc(user)))
            .await
    }

    /// Every permission on the broker.
    pub async fn list_permissions(&self) -> Result<Vec<Permission>, RabbitMqError> {
        Ok(self
            .get_json("/api/permissions".into())
            .await?
            .unwrap_or_default())
    }

    /// All permissions of `user`, on every vhost.
    pub async fn user_permissions(&self, user: &str) -> Result<Vec<Permission>, RabbitMqError> {
        Ok(self
            .get_json(format!("/api/users/{}/permissions", enc(user)))
            .await?
            .unwrap_or_default())
    }

    /// The user these credentials authenticate as; fails with 401 for wrong credentials and for
    /// users without a management tag.
    pub async fn whoami(&self) -> Result<User, RabbitMqError> {
        let path = "/api/whoami".to_string();
        self.send(Method::GET, path.clone(), None)
            .await?
            .json()
            .await
            .map_err(|source| RabbitMqError::Decode {
                method: Method::GET,
                path,
                source,
            })
    }
}

/// What a tenant's vhost is described and tagged with, so operators can tell tenant vhosts apart.
pub const TENANT_VHOST_TAG: &str = "tgsearch";

impl crate::ports::TenantBroker for ManagementClient {
    async fn ensure_vhost(&self, tenant: &crate::TenantId) -> Result<(), crate::ports::PortError> {
        Ok(self
            .put_vhost(tenant.vhost(), TENANT_VHOST_TAG, &[TENANT_VHOST_TAG])
            .await?)
    }

    async fn ensure_user(
        &self,
        tenant: &crate::TenantId,
        password: &Password,
    ) -> Result<(), crate::ports::PortError> {
        // No tags: the tenant may use AMQP, not the management API.
        Ok(self.put_user(tenant.rabbitmq_user(), password, &[]).await?)
    }

    async fn ensure_permission(&self, tenant: &crate::TenantId) -> Result<(), crate::ports::PortError> {
        Ok(self
            .put_permission(tenant.vhost(), tenant.rabbitmq_user(), ".*", ".*", ".*")
            .await?)
    }

    async fn remove_vhost(&self, tenant: &crate::TenantId) -> Result<Removed, crate::ports::PortError> {
        Ok(self.delete_vhost(tenant.vhost()).await?)
    }

    async fn remove_user(&self, tenant: &crate::TenantId) -> Result<Removed, crate::ports::PortError> {
        Ok(self.delete_user(tenant.rabbitmq_user()).await?)
    }
}
