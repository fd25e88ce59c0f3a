//! AWS Secrets Manager: tenant credentials (create-or-read, first writer wins) and the RabbitMQ
//! admin credentials.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_secretsmanager::types::Tag;
use serde::{Serialize, de::DeserializeOwned};

use crate::credentials::TenantCredentials;
use crate::ports::{CredentialStore, PortError, Removed, Stored};
use crate::tenant::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("Secrets Manager {operation} on `{secret}` failed: {message}")]
    Api {
        operation: &'static str,
        secret: String,
        /// The SDK's error with its whole context (code, message, request id).
        message: String,
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
    #[error("secret `{secret}` does not belong to this tenant: {reason}")]
    WrongTenant { secret: String, reason: String },
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
    E: std::error::Error + Send + Sync + 'static,
{
    SecretsError::Api {
        operation,
        secret: secret.to_owned(),
        message: DisplayErrorContext(&err).to_string(),
        source: Box::new(err),
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
        match self.client.get_secret_value().secret_id(secret_id).send().await {
            Ok(out) => {
                out.secret_string()
                    .map(|s| Some(s.to_owned()))
                    .ok_or_else(|| SecretsError::NoString {
                        secret: secret_id.into(),
                    })
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
            Ok(_) => Ok((value.clone(), true)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_exists_exception()) =>
            {
                // Another invocation (a retry, or a concurrent duplicate) won: use its value.
                match self.read_json(name, expected).await? {
                    Some(stored) => Ok((stored, false)),
                    None => Err(SecretsError::NotFound { secret: name.into() }),
                }
            }
            Err(e) if is_scheduled_for_deletion(e.code(), e.message()) => {
                Err(SecretsError::ScheduledForDeletion { secret: name.into() })
            }
            Err(e) => Err(api_error("CreateSecret", name, e)),
        }
    }

    /// Deletes a secret at once, without the recovery window.
    pub async fn force_delete(&self, name: &str) -> Result<Removed, SecretsError> {
        // A forced delete of a missing secret may succeed without a word, so ask first: the
        // report must say whether something was there.
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(Removed::AlreadyAbsent);
            }
            Err(e) => return Err(api_error("DescribeSecret", name, e)),
        }
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

    /// Names of all tenant secrets (for reconcile and status), following pagination.
    pub async fn list_names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, SecretsError> {
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
                    .filter_map(|s| s.name())
                    .filter(|n| n.starts_with(prefix))
                    .map(String::from),
            );
        }
        Ok(names)
    }
}

// A name whose secret is scheduled for deletion is refused with InvalidRequestException and a
// message saying so; any other InvalidRequestException is a real error.
fn is_scheduled_for_deletion(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("InvalidRequestException")
        && message.is_some_and(|m| m.to_ascii_lowercase().contains("deletion"))
}

const TENANT_SECRET_SHAPE: &str = r#"{"username","password","vhost","amqp_uri"}"#;

impl CredentialStore for SecretsManager {
    async fn create_or_read(
        &self,
        tenant: &TenantId,
        candidate: &TenantCredentials,
    ) -> Result<Stored, PortError> {
        let name = self.tenant_secret_name(tenant);
        let (credentials, created) = self
            .create_or_read_json::<TenantCredentials>(
                &name,
                candidate,
                "TGSearch tenant RabbitMQ credentials",
                &[
                    ("app.kubernetes.io/managed-by", "tgsearch-provisioner"),
                    ("tgsearch.io/tenant", tenant.as_str()),
                ],
                TENANT_SECRET_SHAPE,
            )
            .await?;
        credentials
            .check_belongs_to(tenant)
            .map_err(|reason| SecretsError::WrongTenant { secret: name, reason })?;
        Ok(Stored { credentials, created })
    }

    async fn read(&self, tenant: &TenantId) -> Result<Option<TenantCredentials>, PortError> {
        let name = self.tenant_secret_name(tenant);
        Ok(self.read_json(&name, TENANT_SECRET_SHAPE).await?)
    }

    async fn remove(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        Ok(self.force_delete(&self.tenant_secret_name(tenant)).await?)
    }
}
