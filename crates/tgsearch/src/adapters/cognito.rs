//! The Cognito user pool as the directory of who should have a tenant.

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::error::DisplayErrorContext;
use aws_sdk_cognitoidentityprovider::types::UserStatusType;

use crate::cognito_jwt::{Session, SessionCheck, TokenUse};
use crate::ports::{DirectoryUser, PortError, UserDirectory};

#[derive(Debug, thiserror::Error)]
#[error("Cognito on pool `{pool}` failed: {message}")]
pub struct CognitoError {
    pub pool: String,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct CognitoDirectory {
    client: Client,
    pool_id: String,
}

impl CognitoDirectory {
    pub fn new(aws: &aws_config::SdkConfig, pool_id: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            pool_id: pool_id.into(),
        }
    }
}

fn directory_user(user: &aws_sdk_cognitoidentityprovider::types::UserType) -> Option<DirectoryUser> {
    let sub = user
        .attributes()
        .iter()
        .find(|a| a.name() == "sub")
        .and_then(|a| a.value())
        .or(user.username())?;
    Some(DirectoryUser {
        sub: sub.to_owned(),
        confirmed: matches!(
            user.user_status(),
            Some(UserStatusType::Confirmed | UserStatusType::ExternalProvider)
        ),
        enabled: user.enabled(),
    })
}

impl UserDirectory for CognitoDirectory {
    async fn user(&self, sub: &str) -> Result<Option<DirectoryUser>, PortError> {
        // ListUsers' filter language: a quoted string, `"` and `\` escaped.
        let quoted = sub.replace('\\', "\\\\").replace('"', "\\\"");
        let page = self
            .client
            .list_users()
            .user_pool_id(&self.pool_id)
            .filter(format!("sub = \"{quoted}\""))
            .limit(2)
            .send()
            .await
            .map_err(|e| CognitoError {
                pool: self.pool_id.clone(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
        Ok(page
            .users()
            .iter()
            .filter_map(directory_user)
            .find(|u| u.sub == sub))
    }

    async fn users(&self) -> Result<Vec<DirectoryUser>, PortError> {
        let mut users = Vec::new();
        let mut pages = self
            .client
            .list_users()
            .user_pool_id(&self.pool_id)
            .attributes_to_get("sub")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CognitoError {
                pool: self.pool_id.clone(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
            users.extend(page.users().iter().filter_map(directory_user));
        }
        Ok(users)
    }
}

/// Cognito's word on a token's user ([`crate::cognito_jwt::sessions`]).
#[derive(Clone, Debug)]
pub struct CognitoSessions {
    client: Client,
    directory: CognitoDirectory,
    token_use: TokenUse,
}

impl CognitoSessions {
    pub fn new(aws: &aws_config::SdkConfig, pool_id: impl Into<String>, token_use: TokenUse) -> Self {
        Self {
            client: Client::new(aws),
            directory: CognitoDirectory::new(aws, pool_id),
            token_use,
        }
    }
}

impl SessionCheck for CognitoSessions {
    async fn check(&self, sub: &str, token: &str) -> Result<Session, PortError> {
        match self.token_use {
            TokenUse::Access => match self.client.get_user().access_token(token).send().await {
                Ok(_) => Ok(Session::Active),
                Err(e) => match e.as_service_error() {
                    Some(s) if s.is_not_authorized_exception() => Ok(Session::Revoked(
                        "Cognito refuses the token (signed out, disabled or revoked)".into(),
                    )),
                    Some(s) if s.is_user_not_found_exception() => {
                        Ok(Session::Revoked("the user was deleted".into()))
                    }
                    // The request is not quoted: it carries the token.
                    _ => Err(CognitoError {
                        pool: self.directory.pool_id.clone(),
                        message: format!("GetUser failed: {}", DisplayErrorContext(&e)),
                    }
                    .into()),
                },
            },
            TokenUse::Id => Ok(match self.directory.user(sub).await? {
                None => Session::Revoked("the user was deleted".into()),
                Some(u) if !u.enabled => Session::Revoked("the user is disabled".into()),
                Some(u) if !u.confirmed => Session::Revoked("the user is not confirmed".into()),
                Some(_) => Session::Active,
            }),
        }
    }
}
