//! AWS Secrets Manager: tenant credentials (create-or-read, first writer wins) and the RabbitMQ
//! admin credentials.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_secretsmanager::types::Tag;
use serde::{Serialize, de::DeserializeOwned};

use crate::credentials::TenantCredentials;
use crate::ports::{
    CredentialStore, CredentialVersions, Foreign, Found, PortError, Removed, Stored, Versioned,
};
use crate::tenant::TenantId;

mod batch;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("Secrets Manager {operation} on `{secret}` failed: {message}")]
    Api {
        operation: &'static str,
        secret: String,
        /// The SDK's error with its whole context (code, message, request id).
        message: String,
        /// A retry may succeed (timeout, throttling, a server error).
        transient: bool,
        #[source]
        source: PortError,
    },
    #[error("secret `{secret}` does not exist")]
    NotFound { secret: String },
    #[error("secret `{secret}` has no string value")]
    NoString { secret: String },
    /// The value is not the expected JSON. The serde message is not shown: it could quote the
    /// secret itself.
    #[error("secret `{secret}` is not the expected JSON {expected}")]
    Malformed { secret: String, expected: &'static str },
    #[error(
        "secret `{secret}` is scheduled for deletion; restore it (`aws secretsmanager restore-secret`) or delete it for good before this tenant can be provisioned again"
    )]
    ScheduledForDeletion { secret: String },
}

fn api_error<E>(
    operation: &'static str,
    secret: &str,
    err: aws_sdk_secretsmanager::error::SdkError<E>,
) -> SecretsError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    SecretsError::Api {
        operation,
        secret: secret.to_owned(),
        message: DisplayErrorContext(&err).to_string(),
        transient: sdk_transient(&err),
        source: Box::new(err),
    }
}

/// Whether an AWS SDK failure may pass on retry (after the SDK's own retries): no answer, a
/// timeout, throttling, a server error.
pub fn sdk_transient<E: ProvideErrorMetadata>(err: &aws_sdk_secretsmanager::error::SdkError<E>) -> bool {
    use aws_sdk_secretsmanager::error::SdkError;
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => {
            s.raw().status().as_u16() >= 500
                || matches!(
                    s.err().code(),
                    Some(
                        "ThrottlingException"
                            | "Throttling"
                            | "TooManyRequestsException"
                            | "RequestLimitExceeded"
                            | "InternalServiceError"
                            | "ServiceUnavailable"
                    )
                )
        }
        _ => false,
    }
}

/// As the ports want it: transient failures marked so that the step retries them.
fn port(e: SecretsError) -> PortError {
    if matches!(e, SecretsError::Api { transient: true, .. }) {
        crate::ports::Transient::wrap(e, None)
    } else {
        e.into()
    }
}

/// Secrets Manager access for the provisioner.
#[derive(Clone, Debug)]
pub struct SecretsManager {
    client: Client,
    tenant_prefix: String,
}

impl SecretsManager {
    pub fn new(client: Client, tenant_prefix: impl Into<String>) -> Self {
        Self {
            client,
            tenant_prefix: tenant_prefix.into(),
        }
    }

    /// A client built from the process' one AWS configuration.
    pub fn from_aws(aws: &aws_config::SdkConfig, tenant_prefix: impl Into<String>) -> Self {
        Self::new(Client::new(aws), tenant_prefix)
    }

    pub fn tenant_secret_name(&self, tenant: &TenantId) -> String {
        tenant.secret_name(&self.tenant_prefix)
    }

    pub fn tenant_prefix(&self) -> &str {
        &self.tenant_prefix
    }

    /// Reads a secret's string as it is; `None` when the secret does not exist.
    pub async fn read_string(&self, secret_id: &str) -> Result<Option<String>, SecretsError> {
        Ok(self
            .get_value(secret_id, Some(CURRENT), None)
            .await?
            .map(|(_, text)| text))
    }

    /// GetSecretValue of one version, by label or by id: its id and its string; `None` when the
    /// secret or the version does not exist.
    async fn get_value(
        &self,
        secret_id: &str,
        stage: Option<&str>,
        version: Option<&str>,
    ) -> Result<Option<(String, String)>, SecretsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_stage(stage.map(str::to_owned))
            .set_version_id(version.map(str::to_owned))
            .send()
            .await;
        match out {
            Ok(out) => {
                let text = out.secret_string().ok_or_else(|| SecretsError::NoString {
                    secret: secret_id.into(),
                })?;
                Ok(Some((
                    out.version_id().unwrap_or_default().to_owned(),
                    text.to_owned(),
                )))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) if is_scheduled_for_deletion(e.code(), e.message()) => {
                Err(SecretsError::ScheduledForDeletion {
                    secret: secret_id.into(),
                })
            }
            Err(e) => Err(api_error("GetSecretValue", secret_id, e)),
        }
    }

    /// Reads a JSON secret. `expected` names the shape in the error, never the content.
    pub async fn read_json<T: DeserializeOwned>(
        &self,
        secret_id: &str,
        expected: &'static str,
    ) -> Result<Option<T>, SecretsError> {
        let Some(text) = self.read_string(secret_id).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| SecretsError::Malformed {
                secret: secret_id.into(),
                expected,
            })
    }

    /// Creates `name` with `value` unless it exists; returns what is stored and whether this call
    /// created it.
    pub async fn create_or_read_json<T: Serialize + DeserializeOwned + Clone>(
        &self,
        name: &str,
        value: &T,
        description: &str,
        tags: &[(&str, &str)],
        expected: &'static str,
    ) -> Result<(T, bool), SecretsError> {
        if self.create_json(name, value, description, tags).await? {
            return Ok((value.clone(), true));
        }
        // Another invocation (a retry, or a concurrent duplicate) won: use its value.
        match self.read_json(name, expected).await? {
            Some(stored) => Ok((stored, false)),
            None => Err(SecretsError::NotFound { secret: name.into() }),
        }
    }

    /// Creates `name` with `value`; `false` when it exists already.
    pub async fn create_json<T: Serialize>(
        &self,
        name: &str,
        value: &T,
        description: &str,
        tags: &[(&str, &str)],
    ) -> Result<bool, SecretsError> {
        let body = serde_json::to_string(value).expect("secret values serialize to JSON");
        let mut request = self
            .client
            .create_secret()
            .name(name)
            .description(description)
            .secret_string(body);
        for (key, value) in tags {
            request = request.tags(Tag::builder().key(*key).value(*value).build());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_exists_exception()) =>
            {
                Ok(false)
            }
            Err(e) if is_scheduled_for_deletion(e.code(), e.message()) => {
                Err(SecretsError::ScheduledForDeletion { secret: name.into() })
            }
            Err(e) => Err(api_error("CreateSecret", name, e)),
        }
    }

    /// The tags of secret `name`; `None` when it does not exist.
    pub async fn tags(&self, name: &str) -> Result<Option<Vec<(String, String)>>, SecretsError> {
        Ok(self.describe(name).await?.map(|d| d.tags))
    }

    /// Stores `value` as the new current version of the existing secret `name`.
    pub async fn put_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), SecretsError> {
        let body = serde_json::to_string(value).expect("secret values serialize to JSON");
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(body)
            .send()
            .await
            .map(drop)
            .map_err(|e| api_error("PutSecretValue", name, e))
    }

    /// Deletes a secret at once, without the recovery window. Callers check it exists (and is
    /// theirs) first: a forced delete of a missing secret may succeed without a word.
    pub async fn force_delete(&self, name: &str) -> Result<Removed, SecretsError> {
        match self
            .client
            .delete_secret()
            .secret_id(name)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(Removed::Deleted),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(Removed::AlreadyAbsent)
            }
            Err(e) => Err(api_error("DeleteSecret", name, e)),
        }
    }

    /// Names of all secrets under `prefix` with their tags (for reconcile), following pagination.
    pub async fn list_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<(String, String)>)>, SecretsError> {
        let mut names = Vec::new();
        let mut pages = self
            .client
            .list_secrets()
            .filters(
                aws_sdk_secretsmanager::types::Filter::builder()
                    .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
                    .values(prefix)
                    .build(),
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("ListSecrets", prefix, e))?;
            names.extend(
                page.secret_list()
                    .iter()
                    .filter(|s| s.name().is_some_and(|n| n.starts_with(prefix)))
                    .map(|s| {
                        let tags = s
                            .tags()
                            .iter()
                            .map(|t| {
                                (
                                    t.key().unwrap_or_default().to_owned(),
                                    t.value().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect();
                        (s.name().unwrap_or_default().to_owned(), tags)
                    }),
            );
        }
        Ok(names)
    }
}

/// Secrets Manager's staging labels.
pub const CURRENT: &str = "AWSCURRENT";
pub const PENDING: &str = "AWSPENDING";

/// What DescribeSecret says of a secret: its tags, and which version carries which label.
#[derive(Debug, Clone, Default)]
pub struct Described {
    pub tags: Vec<(String, String)>,
    pub stages: Vec<(String, Vec<String>)>,
}

impl Described {
    /// The version carrying `label`.
    pub fn version_with(&self, label: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, labels)| labels.iter().any(|l| l == label))
            .map(|(id, _)| id.as_str())
    }
}

impl SecretsManager {
    /// Tags and staging labels of `name`; `None` when it does not exist.
    pub async fn describe(&self, name: &str) -> Result<Option<Described>, SecretsError> {
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(out) => Ok(Some(Described {
                tags: out
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().to_owned(),
                            t.value().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
                stages: out
                    .version_ids_to_stages()
                    .map(|m| {
                        m.iter()
                            .map(|(id, labels)| (id.clone(), labels.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(api_error("DescribeSecret", name, e)),
        }
    }

    /// One version's JSON value and id, by label (`stage`) or by id; `None` when absent.
    async fn read_version<T: DeserializeOwned>(
        &self,
        name: &str,
        stage: Option<&str>,
        version: Option<&str>,
        expected: &'static str,
    ) -> Result<Option<(String, T)>, SecretsError> {
        let Some((id, text)) = self.get_value(name, stage, version).await? else {
            return Ok(None);
        };
        let value = serde_json::from_str(&text).map_err(|_| SecretsError::Malformed {
            secret: name.into(),
            expected,
        })?;
        Ok(Some((id, value)))
    }

    /// Moves `label` to version `to` (from whichever version has it), or takes it off `from`.
    async fn move_label(
        &self,
        name: &str,
        label: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), SecretsError> {
        self.client
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage(label)
            .set_move_to_version_id(to.map(str::to_owned))
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map(drop)
            .map_err(|e| api_error("UpdateSecretVersionStage", name, e))
    }
}

impl SecretsManager {
    /// A tenant secret's tags and labels, and its current version, read at once; with its
    /// ownership.
    async fn current(&self, tenant: &TenantId) -> Result<Found<(Described, Versioned)>, PortError> {
        let name = self.tenant_secret_name(tenant);
        let (described, current) = tokio::join!(
            self.describe(&name),
            self.read_version::<TenantCredentials>(&name, Some(CURRENT), None, TENANT_SECRET_SHAPE)
        );
        let Some(described) = described.map_err(port)? else {
            return Ok(Found::Absent);
        };
        if let Some(reason) = foreign_reason(tenant, &described.tags) {
            return Ok(Found::Foreign(reason));
        }
        Ok(match current.map_err(port)? {
            Some((version, credentials)) => Found::Ours((described, Versioned { version, credentials })),
            // Deleted between the two calls.
            None => Found::Absent,
        })
    }
}

// A name whose secret is scheduled for deletion is refused with InvalidRequestException and a
// message saying so; any other InvalidRequestException is a real error.
fn is_scheduled_for_deletion(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("InvalidRequestException")
        && message.is_some_and(|m| m.to_ascii_lowercase().contains("deletion"))
}

const TENANT_SECRET_SHAPE: &str = r#"{"username","password","vhost","amqp_uri"}"#;
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "tgsearch-provisioner");
const TENANT_TAG: &str = "tgsearch.io/tenant";

/// Why a tenant secret is not provably ours (`None`: it is): both tags must say so.
pub fn foreign_reason(tenant: &TenantId, tags: &[(String, String)]) -> Option<String> {
    let tag = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if tag(MANAGED_BY.0) != Some(MANAGED_BY.1) {
        return Some(format!("no tag {}={}", MANAGED_BY.0, MANAGED_BY.1));
    }
    if tag(TENANT_TAG) != Some(tenant.as_str()) {
        return Some(format!("its tag {TENANT_TAG} does not name this tenant"));
    }
    None
}

impl CredentialStore for SecretsManager {
    async fn create_or_read(
        &self,
        tenant: &TenantId,
        candidate: &TenantCredentials,
    ) -> Result<Stored, PortError> {
        let name = self.tenant_secret_name(tenant);
        let created = self
            .create_json(
                &name,
                candidate,
                "TGSearch tenant RabbitMQ credentials",
                &[(MANAGED_BY.0, MANAGED_BY.1), (TENANT_TAG, tenant.as_str())],
            )
            .await
            .map_err(port)?;
        if created {
            return Ok(Stored {
                credentials: candidate.clone(),
                created: true,
            });
        }
        // A retry, a concurrent duplicate, or somebody else's secret of that name.
        match self.read(tenant).await? {
            Found::Ours(credentials) => Ok(Stored {
                credentials,
                created: false,
            }),
            Found::Foreign(reason) => Err(Foreign {
                kind: "secret",
                name,
                reason,
            }
            .into()),
            // Deleted between our create and our read: a retry settles it.
            Found::Absent => Err(crate::ports::Transient::wrap(
                SecretsError::NotFound { secret: name },
                None,
            )),
        }
    }

    async fn read(&self, tenant: &TenantId) -> Result<Found<TenantCredentials>, PortError> {
        Ok(match self.current(tenant).await? {
            Found::Ours((_, current)) => Found::Ours(current.credentials),
            Found::Absent => Found::Absent,
            Found::Foreign(reason) => Found::Foreign(reason),
        })
    }

    async fn versions(&self, tenant: &TenantId) -> Result<Found<CredentialVersions>, PortError> {
        let (described, current) = match self.current(tenant).await? {
            Found::Ours(found) => found,
            Found::Absent => return Ok(Found::Absent),
            Found::Foreign(reason) => return Ok(Found::Foreign(reason)),
        };
        let name = self.tenant_secret_name(tenant);
        let pending = match described.version_with(PENDING) {
            Some(id) if id != current.version => self
                .read_version::<TenantCredentials>(&name, None, Some(id), TENANT_SECRET_SHAPE)
                .await
                .map_err(port)?
                .map(|(version, credentials)| Versioned { version, credentials }),
            _ => None,
        };
        Ok(Found::Ours(CredentialVersions { current, pending }))
    }

    async fn put_pending(
        &self,
        tenant: &TenantId,
        token: &str,
        credentials: &TenantCredentials,
    ) -> Result<(), PortError> {
        let name = self.tenant_secret_name(tenant);
        let body = serde_json::to_string(credentials).expect("credentials serialize to JSON");
        self.client
            .put_secret_value()
            .secret_id(&name)
            .client_request_token(token)
            .secret_string(body)
            .version_stages(PENDING)
            .send()
            .await
            .map(drop)
            .map_err(|e| port(api_error("PutSecretValue", &name, e)))
    }

    async fn promote(&self, tenant: &TenantId, pending: &str) -> Result<(), PortError> {
        let name = self.tenant_secret_name(tenant);
        let described = self
            .describe(&name)
            .await
            .map_err(port)?
            .ok_or_else(|| port(SecretsError::NotFound { secret: name.clone() }))?;
        let current = described.version_with(CURRENT).map(str::to_owned);
        if current.as_deref() != Some(pending) {
            self.move_label(&name, CURRENT, Some(pending), current.as_deref())
                .await
                .map_err(port)?;
        }
        if described.version_with(PENDING) == Some(pending) {
            self.move_label(&name, PENDING, None, Some(pending))
                .await
                .map_err(port)?;
        }
        Ok(())
    }

    async fn replace(&self, tenant: &TenantId, credentials: &TenantCredentials) -> Result<(), PortError> {
        self.put_json(&self.tenant_secret_name(tenant), credentials)
            .await
            .map_err(port)
    }

    async fn remove(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        let name = self.tenant_secret_name(tenant);
        let Some(tags) = self.tags(&name).await.map_err(port)? else {
            return Ok(Removed::AlreadyAbsent);
        };
        if let Some(reason) = foreign_reason(tenant, &tags) {
            return Ok(Removed::LeftAlone(reason));
        }
        self.force_delete(&name).await.map_err(port)
    }
}
