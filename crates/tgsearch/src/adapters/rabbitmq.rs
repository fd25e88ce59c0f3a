//! Client of the RabbitMQ management HTTP API (`/api/...`).
//!
//! Names are percent-encoded into the path (the default vhost `/` becomes `%2F`); errors keep
//! the HTTP status and RabbitMQ's own `reason`; deletes treat 404 as "already gone", which is
//! what makes teardown idempotent.

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::credentials::{Password, URI_COMPONENT};
use crate::ports::{Converged, Foreign, PortError, Removed, Transient};
use crate::tenant::TenantId;

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
        /// The `Retry-After` the server sent, if any.
        retry_after: Option<std::time::Duration>,
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

    /// A failure a retry may fix: no answer (refused, reset, timed out), a 5xx, 429 or 408.
    pub fn is_transient(&self) -> bool {
        match self {
            RabbitMqError::Transport { .. } => true,
            RabbitMqError::Api { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            RabbitMqError::Decode { .. } => false,
        }
    }
}

/// As the ports want it: transient failures marked so that the step retries them.
fn port(e: RabbitMqError) -> PortError {
    if e.is_transient() {
        let retry_after = match &e {
            RabbitMqError::Api { retry_after, .. } => *retry_after,
            _ => None,
        };
        crate::ports::Transient::wrap(e, retry_after)
    } else {
        e.into()
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by RabbitMQ or proxies before it).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(std::time::Duration::from_secs)
}

/// A virtual host as the API reports it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Vhost {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Per node: `running`, `stopped` (its supervisor failed there, e.g. created while the node
    /// was leaving the cluster: clients routed to that node get "vhost is down") or `nodedown`.
    #[serde(default)]
    pub cluster_state: std::collections::BTreeMap<String, String>,
}

impl Vhost {
    /// Nodes that are up but do not run the vhost.
    pub fn stopped_on(&self) -> Vec<&str> {
        self.cluster_state
            .iter()
            .filter(|(_, state)| state.as_str() == "stopped")
            .map(|(node, _)| node.as_str())
            .collect()
    }
}

/// A user as the API reports it. The password hash is salted (RabbitMQ's
/// `rabbit_password_hashing_*`): it proves a password without revealing it, and is never shown.
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    #[serde(default, deserialize_with = "tags_from_list_or_string")]
    pub tags: Vec<String>,
    #[serde(default)]
    password_hash: String,
    #[serde(default)]
    hashing_algorithm: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Whether `password` is this user's: RabbitMQ stores base64(salt ++ H(salt ++ password))
    /// with a 4-byte salt and H from `hashing_algorithm` (SHA-256 by default, SHA-512 where
    /// configured). Compared in constant time. `false` for users without a password and for the
    /// legacy MD5 scheme (RabbitMQ before 3.6).
    pub fn has_password(&self, password: &Password) -> bool {
        use base64::Engine;
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let Ok(stored) = base64::engine::general_purpose::STANDARD.decode(self.password_hash.trim()) else {
            return false;
        };
        if stored.len() <= 4 {
            return false;
        }
        let (salt, hash) = stored.split_at(4);
        let computed: Vec<u8> = match self.hashing_algorithm.as_str() {
            "rabbit_password_hashing_sha256" | "" => sha2::Sha256::new()
                .chain_update(salt)
                .chain_update(password.expose())
                .finalize()
                .to_vec(),
            "rabbit_password_hashing_sha512" => sha2::Sha512::new()
                .chain_update(salt)
                .chain_update(password.expose())
                .finalize()
                .to_vec(),
            _ => return false,
        };
        computed.len() == hash.len() && bool::from(computed.ct_eq(hash))
    }
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
        let retry_after = retry_after(response.headers());
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
            retry_after,
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

    /// Every vhost's name, description and tags, without the message statistics that make
    /// `/api/vhosts` costly with thousands of vhosts.
    pub async fn list_vhosts(&self) -> Result<Vec<Vhost>, RabbitMqError> {
        Ok(self
            .get_json("/api/vhosts?disable_stats=true&columns=name,description,tags".into())
            .await?
            .unwrap_or_default())
    }

    /// Starts a vhost that is stopped on `node` (`POST /api/vhosts/{name}/start/{node}`).
    pub async fn start_vhost(&self, name: &str, node: &str) -> Result<(), RabbitMqError> {
        self.send(
            Method::POST,
            format!("/api/vhosts/{}/start/{}", enc(name), enc(node)),
            None,
        )
        .await
        .map(drop)
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

    pub async fn delete_permission(&self, vhost: &str, user: &str) -> Result<Removed, RabbitMqError> {
        self.delete(format!("/api/permissions/{}/{}", enc(vhost), enc(user)))
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

/// What a tenant's vhost is described and tagged with, so operators can tell tenant vhosts apart,
/// and how the provisioner recognises the vhosts it created.
pub const TENANT_VHOST_TAG: &str = "tgsearch";

impl Vhost {
    pub fn is_tenant_vhost(&self) -> bool {
        self.tags.iter().any(|t| t == TENANT_VHOST_TAG)
    }
}

fn foreign(kind: &'static str, name: &str, reason: impl Into<String>) -> PortError {
    Foreign {
        kind,
        name: name.to_owned(),
        reason: reason.into(),
    }
    .into()
}

/// The rule that proves a tag-less RabbitMQ user named `<sub>` was written by the provisioner
/// (tenant users carry no tags, so no tag can): its password is the one stored in the tenant's
/// secret, or it holds a permission on the tenant's `tgsearch`-tagged vhost. `None` when the
/// user is ours, else why not.
pub fn user_not_ours(
    user: &User,
    stored: Option<&Password>,
    own_vhost_tagged: bool,
    permissions: &[Permission],
) -> Option<String> {
    if !user.tags.is_empty() {
        return Some(format!(
            "it has tags ({}); tenant users never do",
            user.tags.join(",")
        ));
    }
    if stored.is_some_and(|p| user.has_password(p)) {
        return None;
    }
    let on_own_vhost = permissions.iter().any(|p| p.vhost == user.name);
    if own_vhost_tagged && on_own_vhost {
        return None;
    }
    Some(
        "its password is not the tenant's stored one and it has no permission on the tenant's tagged vhost"
            .into(),
    )
}

impl ManagementClient {
    /// The user, its permissions and whether the same-named vhost is a tenant vhost: what the
    /// ownership rule needs.
    async fn observe_user(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<(User, Vec<Permission>, bool)>, RabbitMqError> {
        let Some(user) = self.get_user(tenant.rabbitmq_user()).await? else {
            return Ok(None);
        };
        let (permissions, vhost) = tokio::join!(
            self.user_permissions(tenant.rabbitmq_user()),
            self.get_vhost(tenant.vhost())
        );
        let tagged = vhost?.is_some_and(|v| v.is_tenant_vhost());
        Ok(Some((user, permissions?, tagged)))
    }
}

impl crate::ports::TenantBroker for ManagementClient {
    async fn ensure_vhost(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        match self.get_vhost(tenant.vhost()).await.map_err(port)? {
            Some(v) if v.is_tenant_vhost() => Ok(Converged::Unchanged),
            Some(_) => Err(foreign(
                "vhost",
                tenant.vhost(),
                format!("it has no `{TENANT_VHOST_TAG}` tag"),
            )),
            None => {
                self.put_vhost(tenant.vhost(), TENANT_VHOST_TAG, &[TENANT_VHOST_TAG])
                    .await
                    .map_err(port)?;
                Ok(Converged::Created)
            }
        }
    }

    async fn ensure_vhost_running(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        let Some(vhost) = self.get_vhost(tenant.vhost()).await.map_err(port)? else {
            return Err(Transient::wrap(
                "the vhost vanished while being checked; retry",
                None,
            ));
        };
        let stopped: Vec<String> = vhost.stopped_on().iter().map(|n| n.to_string()).collect();
        if stopped.is_empty() {
            return Ok(Converged::Unchanged);
        }
        for node in &stopped {
            self.start_vhost(tenant.vhost(), node).await.map_err(port)?;
        }
        Ok(Converged::Repaired(format!(
            "it was stopped on {} and is started again",
            stopped.join(", ")
        )))
    }

    async fn ensure_user(&self, tenant: &TenantId, password: &Password) -> Result<Converged, PortError> {
        let outcome = match self.get_user(tenant.rabbitmq_user()).await.map_err(port)? {
            None => Converged::Created,
            Some(user) if user.tags.is_empty() && user.has_password(password) => {
                return Ok(Converged::Unchanged);
            }
            Some(_) => {
                // Not obviously ours: look at its permissions before touching it.
                let Some((user, permissions, tagged)) = self.observe_user(tenant).await.map_err(port)? else {
                    return Err("the user vanished while being checked; retry".into());
                };
                if let Some(why) = user_not_ours(&user, None, tagged, &permissions) {
                    return Err(foreign("RabbitMQ user", tenant.rabbitmq_user(), why));
                }
                Converged::Repaired("its password did not match the stored secret".into())
            }
        };
        // No tags: the tenant may use AMQP, not the management API.
        self.put_user(tenant.rabbitmq_user(), password, &[])
            .await
            .map_err(port)?;
        Ok(outcome)
    }

    async fn ensure_permission(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        let user = tenant.rabbitmq_user();
        let permissions = self.user_permissions(user).await.map_err(port)?;
        let full = |p: &Permission| p.configure == ".*" && p.write == ".*" && p.read == ".*";
        let own = permissions.iter().find(|p| p.vhost == tenant.vhost());
        let mut repaired = Vec::new();
        if !own.is_some_and(full) {
            self.put_permission(tenant.vhost(), user, ".*", ".*", ".*")
                .await
                .map_err(port)?;
            if own.is_some() {
                repaired.push("its rights on its vhost were not `.*` configure/write/read".to_owned());
            }
        }
        for other in permissions.iter().filter(|p| p.vhost != tenant.vhost()) {
            self.delete_permission(&other.vhost, user).await.map_err(port)?;
            repaired.push(format!("revoked its rights on vhost `{}`", other.vhost));
        }
        Ok(match (own, repaired.is_empty()) {
            (_, false) => Converged::Repaired(repaired.join("; ")),
            (None, true) => Converged::Created,
            (Some(_), true) => Converged::Unchanged,
        })
    }

    async fn remove_user(&self, tenant: &TenantId, stored: Option<&Password>) -> Result<Removed, PortError> {
        let Some((user, permissions, tagged)) = self.observe_user(tenant).await.map_err(port)? else {
            return Ok(Removed::AlreadyAbsent);
        };
        if let Some(why) = user_not_ours(&user, stored, tagged, &permissions) {
            return Ok(Removed::LeftAlone(why));
        }
        self.delete_user(tenant.rabbitmq_user()).await.map_err(port)
    }

    async fn recreate_user(&self, tenant: &TenantId, password: &Password) -> Result<(), PortError> {
        let Some((user, permissions, tagged)) = self.observe_user(tenant).await.map_err(port)? else {
            return Err("the tenant's RabbitMQ user does not exist; provision the tenant first".into());
        };
        if let Some(why) = user_not_ours(&user, Some(password), tagged, &permissions) {
            return Err(foreign("RabbitMQ user", tenant.rabbitmq_user(), why));
        }
        // The management API lists connections only after a statistics interval (seconds); a
        // deleted user's connections are closed at once.
        self.delete_user(tenant.rabbitmq_user()).await.map_err(port)?;
        self.put_user(tenant.rabbitmq_user(), password, &[])
            .await
            .map_err(port)?;
        self.put_permission(tenant.vhost(), tenant.rabbitmq_user(), ".*", ".*", ".*")
            .await
            .map_err(port)
    }

    async fn remove_vhost(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        match self.get_vhost(tenant.vhost()).await.map_err(port)? {
            None => Ok(Removed::AlreadyAbsent),
            Some(v) if !v.is_tenant_vhost() => {
                Ok(Removed::LeftAlone(format!("it has no `{TENANT_VHOST_TAG}` tag")))
            }
            Some(_) => Ok(self.delete_vhost(tenant.vhost()).await.map_err(port)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(hash: &str, algorithm: &str) -> User {
        User {
            name: "u".into(),
            tags: vec![],
            password_hash: hash.into(),
            hashing_algorithm: algorithm.into(),
        }
    }

    #[test]
    fn a_password_is_checked_against_rabbitmqs_salted_hash() {
        // Made by RabbitMQ 3.10 for password `s3cret`.
        let u = user(
            "u4ztcx2N6czrDkKFH0fMqJnGWuxFBW7SpHbbs4jHbIl414OC",
            "rabbit_password_hashing_sha256",
        );
        assert!(u.has_password(&Password::new("s3cret")));
        assert!(!u.has_password(&Password::new("s3cret ")));
        assert!(!user("", "rabbit_password_hashing_sha256").has_password(&Password::new("")));
        assert!(!user("bm90IGJhc2U2NA", "rabbit_password_hashing_md5").has_password(&Password::new("x")));
        assert!(!format!("{u:?}").contains("u4zt"), "the hash is never shown");
    }

    #[test]
    fn the_ownership_rule_for_tagless_users() {
        let mine = user(
            "u4ztcx2N6czrDkKFH0fMqJnGWuxFBW7SpHbbs4jHbIl414OC",
            "rabbit_password_hashing_sha256",
        );
        let on_own = vec![Permission {
            user: "u".into(),
            vhost: "u".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }];
        let pw = Password::new("s3cret");
        let other = Password::new("other");
        assert_eq!(user_not_ours(&mine, Some(&pw), false, &[]), None);
        assert_eq!(user_not_ours(&mine, Some(&other), true, &on_own), None);
        assert!(user_not_ours(&mine, Some(&other), false, &on_own).is_some());
        assert!(user_not_ours(&mine, None, true, &[]).is_some());
        let mut tagged = mine.clone();
        tagged.tags = vec!["management".into()];
        assert!(
            user_not_ours(&tagged, Some(&pw), true, &on_own)
                .unwrap()
                .contains("tags")
        );
    }
}
