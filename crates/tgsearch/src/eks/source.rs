//! Where tokens come from at run time: credentials from the SDK's provider chain (environment,
//! profile, container, IMDS, an assumed role), a region, a cluster, and a cache that re-signs a
//! token before clients would consider it expired. One per process: a warm Lambda container
//! lives for hours, a token for 15 minutes.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use super::token::{EksToken, TokenError, sign_token};

/// Re-sign this long before `expires_at`, so a request never leaves with a token about to lapse.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "no AWS region: pass --region or set AWS_REGION (the token is presigned for the regional STS endpoint)"
    )]
    NoRegion,
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role"
    )]
    NoCredentialsProvider,
    #[error("cannot load AWS credentials: {0}")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

pub struct TokenSource {
    cluster: String,
    region: String,
    credentials: SharedCredentialsProvider,
    cached: Mutex<Option<EksToken>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("cluster", &self.cluster)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(
        cluster: impl Into<String>,
        region: impl Into<String>,
        credentials: SharedCredentialsProvider,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            region: region.into(),
            credentials,
            cached: Mutex::new(None),
        }
    }

    /// From the process' AWS configuration; `region` overrides its region.
    pub fn from_sdk_config(
        cluster: &str,
        region: Option<String>,
        aws: &SdkConfig,
    ) -> Result<Self, SourceError> {
        let region = region
            .or_else(|| aws.region().map(|r| r.to_string()))
            .ok_or(SourceError::NoRegion)?;
        let credentials = aws
            .credentials_provider()
            .ok_or(SourceError::NoCredentialsProvider)?;
        Ok(Self::new(cluster, region, credentials))
    }

    /// As `from_sdk_config`, with credentials of an assumed role (`sts:AssumeRole`, session
    /// name `EKSGetTokenAuth` as the AWS CLI uses).
    pub async fn assuming_role(
        cluster: &str,
        region: Option<String>,
        role_arn: &str,
        aws: &SdkConfig,
    ) -> Result<Self, SourceError> {
        let base = Self::from_sdk_config(cluster, region, aws)?;
        let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name("EKSGetTokenAuth")
            .region(aws_config::Region::new(base.region.clone()))
            .configure(aws)
            .build()
            .await;
        Ok(Self::new(
            cluster,
            base.region,
            SharedCredentialsProvider::new(provider),
        ))
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// A newly signed token (no cache).
    pub async fn sign(&self) -> Result<EksToken, SourceError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(SourceError::Credentials)?;
        Ok(sign_token(
            &self.cluster,
            &self.region,
            &credentials,
            SystemTime::now(),
        )?)
    }

    /// The cached token while it has more than `REFRESH_MARGIN` left, else a new one.
    pub async fn token(&self) -> Result<EksToken, SourceError> {
        let now = SystemTime::now();
        if let Some(t) = self.cached.lock().unwrap().as_ref()
            && now + REFRESH_MARGIN < t.expires_at
        {
            return Ok(t.clone());
        }
        let fresh = self.sign().await?;
        *self.cached.lock().unwrap() = Some(fresh.clone());
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    fn source() -> TokenSource {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        TokenSource::new("tgsearch", "us-east-1", SharedCredentialsProvider::new(creds))
    }

    #[tokio::test]
    async fn a_cached_token_is_reused_until_it_nears_expiry() {
        let s = source();
        let first = s.token().await.unwrap();
        assert_eq!(s.token().await.unwrap().token, first.token);
        // Age the cached token past the refresh point: the next call signs anew.
        let aged = EksToken {
            expires_at: SystemTime::now() + REFRESH_MARGIN / 2,
            ..first.clone()
        };
        *s.cached.lock().unwrap() = Some(aged);
        let next = s.token().await.unwrap();
        assert!(next.expires_at > SystemTime::now() + Duration::from_secs(13 * 60));
    }

    #[test]
    fn a_missing_region_is_named() {
        let aws = SdkConfig::builder()
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "a", "b", None, None, "t",
            )))
            .build();
        let err = TokenSource::from_sdk_config("c", None, &aws).unwrap_err();
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
    }
}
