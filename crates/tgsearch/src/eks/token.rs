//! Signing an EKS token: a SigV4 query-presigned `GET https://sts.<region>.amazonaws.com/
//! ?Action=GetCallerIdentity&Version=2011-06-15` with the `x-k8s-aws-id: <cluster>` header
//! signed, valid 60 s for the presigned request, then `k8s-aws-v1.` + unpadded URL-safe base64.
//!
//! The API server (through aws-iam-authenticator or EKS itself) replays the URL against STS to
//! learn who signed it. The token is usable for 15 minutes after its `X-Amz-Date`.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What every EKS token starts with.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds a token to one cluster.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// `X-Amz-Expires` of the presigned URL, as `aws eks get-token` sets it.
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);
/// How long the server accepts a token after its `X-Amz-Date`.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// When clients should stop using a token: a minute before the server would refuse it, as
/// `aws eks get-token` reports in `expirationTimestamp`.
pub const REFRESH_AFTER: Duration = Duration::from_secs(14 * 60);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot sign an EKS token: {0}")]
    Signing(String),
    #[error("cluster name must not be empty")]
    EmptyCluster,
    #[error("region `{0}` is not a valid AWS region name")]
    BadRegion(String),
}

/// A signed token and when clients should consider it expired.
#[derive(Clone)]
pub struct EksToken {
    pub token: String,
    pub signed_at: SystemTime,
    /// `signed_at` + 14 minutes: refresh before this.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for EksToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The regional STS endpoint the token is presigned for.
pub fn sts_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("sts.{region}.amazonaws.com.cn")
    } else {
        format!("sts.{region}.amazonaws.com")
    }
}

/// AWS's query encoding: everything but RFC 3986 unreserved characters.
fn encode(value: &str) -> String {
    crate::credentials::encode_segment(value)
}

/// Signs a token for `cluster` with `credentials` in `region` at time `now`.
pub fn sign_token(
    cluster: &str,
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<EksToken, TokenError> {
    if cluster.is_empty() {
        return Err(TokenError::EmptyCluster);
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(TokenError::BadRegion(region.to_owned()));
    }
    let base = format!(
        "https://{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_host(region)
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| TokenError::Signing(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "GET",
        base.as_str(),
        std::iter::once((CLUSTER_ID_HEADER, cluster)),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| TokenError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| TokenError::Signing(e.to_string()))?
        .into_parts();
    let mut url = base;
    // The signature goes last, as botocore writes it: the same URL, byte for byte.
    let mut params: Vec<_> = instructions.params().iter().collect();
    params.sort_by_key(|(name, _)| *name == "X-Amz-Signature");
    for (name, value) in params {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&encode(value));
    }
    Ok(EksToken {
        token: format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(url.as_bytes())),
        signed_at: now,
        expires_at: now + REFRESH_AFTER,
    })
}

/// The presigned URL inside a token.
pub fn decode_url(token: &str) -> Option<String> {
    let encoded = token.strip_prefix(TOKEN_PREFIX)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(session: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session.map(String::from),
            None,
            "test",
        )
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_token_is_a_presigned_sts_url_bound_to_the_cluster() {
        let t = sign_token("tgsearch", "eu-west-1", &creds(None), at(1_795_000_000)).unwrap();
        assert!(t.token.starts_with("k8s-aws-v1."));
        assert!(!t.token.contains('='), "unpadded");
        let url = decode_url(&t.token).unwrap();
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20261118%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing in {url}");
        }
        assert!(!url.contains("X-Amz-Security-Token"));
        assert_eq!(t.expires_at, at(1_795_000_000 + 14 * 60));
    }

    #[test]
    fn a_session_token_is_signed_into_the_url() {
        let t = sign_token(
            "c",
            "us-east-1",
            &creds(Some("FQoG/session+token=")),
            at(1_795_000_000),
        )
        .unwrap();
        let url = decode_url(&t.token).unwrap();
        assert!(
            url.contains("X-Amz-Security-Token=FQoG%2Fsession%2Btoken%3D"),
            "{url}"
        );
    }

    #[test]
    fn the_signature_depends_on_cluster_time_and_key() {
        let base = sign_token("a", "us-east-1", &creds(None), at(1_795_000_000))
            .unwrap()
            .token;
        assert_eq!(
            base,
            sign_token("a", "us-east-1", &creds(None), at(1_795_000_000))
                .unwrap()
                .token
        );
        assert_ne!(
            base,
            sign_token("b", "us-east-1", &creds(None), at(1_795_000_000))
                .unwrap()
                .token
        );
        assert_ne!(
            base,
            sign_token("a", "us-east-1", &creds(None), at(1_795_000_001))
                .unwrap()
                .token
        );
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(matches!(
            sign_token("", "us-east-1", &creds(None), at(0)),
            Err(TokenError::EmptyCluster)
        ));
        assert!(matches!(
            sign_token("c", "us east", &creds(None), at(0)),
            Err(TokenError::BadRegion(_))
        ));
    }
}
