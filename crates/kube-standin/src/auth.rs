//! Bearer-token authentication the way EKS does it: aws-iam-authenticator's `Verify()` checks
//! on the token, then the part STS plays in AWS, checking the SigV4 signature itself, here
//! against the credential pairs the stand-in knows (moto's server cannot route a presigned GET
//! to STS). Each pair maps to a Kubernetes user and groups, as an EKS access entry maps an IAM
//! principal.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use subtle::ConstantTimeEq;
use tgsearch::eks::sign_token;
use tgsearch::eks::token::sts_host;
use tgsearch::eks::verify::check_token;

/// Who a request comes from, as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    /// Includes `system:authenticated`.
    pub groups: Vec<String>,
}

/// A credential pair and the user it authenticates as.
#[derive(Clone)]
pub struct Identity {
    pub access_key: String,
    secret_key: String,
    pub user: UserInfo,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("user", &self.user)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("an identity is ACCESS_KEY_ID:SECRET_ACCESS_KEY:USERNAME[|GROUP,...]; {0}")]
    Malformed(&'static str),
}

impl Identity {
    pub fn new(access_key: &str, secret_key: &str, username: &str, groups: &[String]) -> Self {
        let mut groups: Vec<String> = groups.iter().filter(|g| !g.is_empty()).cloned().collect();
        groups.push("system:authenticated".into());
        Self {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            user: UserInfo {
                name: username.to_owned(),
                groups,
            },
        }
    }

    /// `ACCESS_KEY_ID:SECRET_ACCESS_KEY:USERNAME|GROUP1,GROUP2`. Usernames (ARNs) and groups
    /// (`system:masters`) contain colons, hence `|` before the groups. The error never
    /// quotes the value (it holds a secret).
    pub fn parse(spec: &str) -> Result<Self, IdentityError> {
        let mut parts = spec.splitn(3, ':');
        let (Some(key), Some(secret), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(IdentityError::Malformed(
                "it has fewer than three ':'-separated parts",
            ));
        };
        if key.is_empty() || secret.is_empty() {
            return Err(IdentityError::Malformed(
                "the access key id and the secret must not be empty",
            ));
        }
        let (user, groups) = rest.split_once('|').unwrap_or((rest, ""));
        if user.is_empty() {
            return Err(IdentityError::Malformed("the username must not be empty"));
        }
        let groups: Vec<String> = groups.split(',').map(|g| g.trim().to_owned()).collect();
        Ok(Self::new(key, secret, user, &groups))
    }
}

pub struct Authenticator {
    pub cluster: String,
    pub identities: Vec<Identity>,
}

impl Authenticator {
    /// Checks an `Authorization` header. The error says why, for the server's log only: the
    /// client gets a plain 401, as from EKS.
    pub fn verify(&self, header: Option<&str>, now: SystemTime) -> Result<UserInfo, String> {
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
        // Every identity is compared, so the time does not say which key ids exist.
        let mut found = None;
        for identity in &self.identities {
            if bool::from(
                checked
                    .access_key_id
                    .as_bytes()
                    .ct_eq(identity.access_key.as_bytes()),
            ) {
                found = Some(identity);
            }
        }
        let identity = found.ok_or("unknown access key (InvalidClientTokenId)")?;
        let credentials = Credentials::new(
            &identity.access_key,
            &identity.secret_key,
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
        Ok(identity.user.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn auth() -> Authenticator {
        Authenticator {
            cluster: "tgsearch-local".into(),
            identities: vec![
                Identity::new(
                    "testing",
                    "testing",
                    "arn:aws:sts::1:assumed-role/p/s",
                    &["tgsearch-provisioner".into()],
                ),
                Identity::parse("admin:admin-secret:kubernetes-admin|system:masters").unwrap(),
            ],
        }
    }

    fn token(cluster: &str, key: &str, secret: &str, at: SystemTime) -> String {
        let c = Credentials::new(key, secret, None, None, "t");
        format!(
            "Bearer {}",
            sign_token(cluster, "us-east-1", &c, at).unwrap().token
        )
    }

    #[test]
    fn each_credential_pair_authenticates_as_its_user() {
        let now = SystemTime::now();
        let provisioner = auth()
            .verify(Some(&token("tgsearch-local", "testing", "testing", now)), now)
            .unwrap();
        assert_eq!(provisioner.name, "arn:aws:sts::1:assumed-role/p/s");
        assert_eq!(
            provisioner.groups,
            ["tgsearch-provisioner", "system:authenticated"]
        );
        let admin = auth()
            .verify(Some(&token("tgsearch-local", "admin", "admin-secret", now)), now)
            .unwrap();
        assert_eq!(admin.name, "kubernetes-admin");
        assert_eq!(admin.groups, ["system:masters", "system:authenticated"]);
    }

    #[test]
    fn wrong_expired_or_foreign_tokens_fail() {
        let now = SystemTime::now();
        let a = auth();
        assert!(a.verify(None, now).unwrap_err().contains("no bearer"));
        assert!(a.verify(Some("Bearer abc"), now).unwrap_err().contains("prefix"));
        assert!(
            a.verify(Some(&token("tgsearch-local", "testing", "wrong", now)), now)
                .unwrap_err()
                .contains("SignatureDoesNotMatch")
        );
        assert!(
            a.verify(Some(&token("tgsearch-local", "admin", "testing", now)), now)
                .unwrap_err()
                .contains("SignatureDoesNotMatch"),
            "one identity's key with another's secret"
        );
        assert!(
            a.verify(Some(&token("tgsearch-local", "nobody", "x", now)), now)
                .unwrap_err()
                .contains("InvalidClientTokenId")
        );
        assert!(
            a.verify(Some(&token("other-cluster", "testing", "testing", now)), now)
                .unwrap_err()
                .contains("SignatureDoesNotMatch")
        );
        let old = now - Duration::from_secs(16 * 60);
        assert!(
            a.verify(Some(&token("tgsearch-local", "testing", "testing", old)), now)
                .unwrap_err()
                .contains("expired")
        );
    }

    #[test]
    fn identities_parse_arns_and_colon_groups() {
        let i =
            Identity::parse("AKIA1:s3cr/et+:arn:aws:sts::123456789012:assumed-role/r/s|system:masters,ops")
                .unwrap();
        assert_eq!(i.access_key, "AKIA1");
        assert_eq!(i.user.name, "arn:aws:sts::123456789012:assumed-role/r/s");
        assert_eq!(i.user.groups, ["system:masters", "ops", "system:authenticated"]);
        assert_eq!(
            Identity::parse("a:b:user").unwrap().user.groups,
            ["system:authenticated"]
        );
        let err = Identity::parse("a:topsecret").unwrap_err().to_string();
        assert!(!err.contains("topsecret"), "{err}");
        assert!(Identity::parse("a::user").is_err());
        assert!(!format!("{i:?}").contains("s3cr"));
    }
}
