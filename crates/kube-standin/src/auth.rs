//! Bearer-token authentication the way EKS does it: aws-iam-authenticator's `Verify()` checks
//! on the token, then the part STS plays in AWS, checking the SigV4 signature itself, here
//! against the local stack's credentials (moto's server cannot route a presigned GET to STS).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use subtle::ConstantTimeEq;
use tgsearch::eks::sign_token;
use tgsearch::eks::token::sts_host;
use tgsearch::eks::verify::check_token;

pub struct Authenticator {
    pub cluster: String,
    pub access_key: String,
    pub secret_key: String,
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub struct Identity {
    pub arn: String,
}

impl Authenticator {
    /// Checks an `Authorization` header. The error says why, for the server's log only: the
    /// client gets a plain 401, as from EKS.
    pub fn verify(&self, header: Option<&str>, now: SystemTime) -> Result<Identity, String> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or("no bearer token")?
            .trim();
        let checked = check_token(token, now).map_err(|e| e.to_string())?;
        let scope: Vec<&str> = checked.params["x-amz-credential"].split('/').collect();
        let region = *scope.get(2).ok_or("X-Amz-Credential has no region")?;
        if checked.host != sts_host(region) {
            return Err(format!(
                "token is presigned for {}, not the regional STS endpoint of {region}",
                checked.host
            ));
        }
        if !bool::from(checked.access_key_id.as_bytes().ct_eq(self.access_key.as_bytes())) {
            return Err("unknown access key (InvalidClientTokenId)".into());
        }
        let credentials = Credentials::new(
            &self.access_key,
            &self.secret_key,
            checked.params.get("x-amz-security-token").cloned(),
            None,
            "kube-standin",
        );
        // What a client holding these credentials would have sent for this cluster at that
        // instant. The signature covers the cluster name (x-k8s-aws-id), so a token for
        // another cluster fails here too.
        let expected =
            sign_token(&self.cluster, region, &credentials, checked.signed_at).map_err(|e| e.to_string())?;
        let expected = check_token(&expected.token, now).map_err(|e| e.to_string())?;
        let (got, want) = (
            &checked.params["x-amz-signature"],
            &expected.params["x-amz-signature"],
        );
        if !bool::from(got.as_bytes().ct_eq(want.as_bytes())) {
            return Err(
                "signature does not match (SignatureDoesNotMatch: wrong secret key or cluster)".into(),
            );
        }
        Ok(Identity {
            arn: format!("arn:aws:iam::000000000000:user/{}", self.access_key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn auth() -> Authenticator {
        Authenticator {
            cluster: "tgsearch-local".into(),
            access_key: "testing".into(),
            secret_key: "testing".into(),
        }
    }

    fn token(cluster: &str, secret: &str, at: SystemTime) -> String {
        let c = Credentials::new("testing", secret, None, None, "t");
        format!(
            "Bearer {}",
            sign_token(cluster, "us-east-1", &c, at).unwrap().token
        )
    }

    #[test]
    fn a_token_signed_with_the_stack_credentials_passes() {
        let now = SystemTime::now();
        auth()
            .verify(Some(&token("tgsearch-local", "testing", now)), now)
            .unwrap();
    }

    #[test]
    fn wrong_expired_or_foreign_tokens_fail() {
        let now = SystemTime::now();
        let a = auth();
        assert!(a.verify(None, now).unwrap_err().contains("no bearer"));
        assert!(a.verify(Some("Bearer abc"), now).unwrap_err().contains("prefix"));
        assert!(
            a.verify(Some(&token("tgsearch-local", "wrong", now)), now)
                .unwrap_err()
                .contains("SignatureDoesNotMatch")
        );
        assert!(
            a.verify(Some(&token("other-cluster", "testing", now)), now)
                .unwrap_err()
                .contains("SignatureDoesNotMatch")
        );
        let old = now - Duration::from_secs(16 * 60);
        assert!(
            a.verify(Some(&token("tgsearch-local", "testing", old)), now)
                .unwrap_err()
                .contains("expired")
        );
    }
}
