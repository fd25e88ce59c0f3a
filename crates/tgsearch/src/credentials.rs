//! Tenant credentials: generated once, stored in Secrets Manager, never logged.

use std::fmt;

use rand::RngExt;
use rand::distr::Alphanumeric;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::tenant::TenantId;

/// 32 alphanumeric characters: about 190 bits, and nothing that needs escaping in a URI.
pub const PASSWORD_LEN: usize = 32;

/// A password from the thread-local CSPRNG (ChaCha, seeded from the operating system).
pub fn generate_password() -> Password {
    let value: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect();
    Password(value)
}

/// A random UUID (version 4, RFC 4122 variant) from the same CSPRNG: Secrets Manager's
/// `ClientRequestToken` (32 to 64 characters), and the shape of a Cognito `sub`.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself: call only where it is sent to the system that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What the frontend reads from `${USER_SECRET_PREFIX}<sub>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCredentials {
    pub username: String,
    pub password: Password,
    pub vhost: String,
    /// `amqp(s)://<user>:<password>@<broker>/<vhost>`: also a secret, since it holds the password.
    pub amqp_uri: SecretUri,
}

/// A URI that embeds a password: redacted like one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUri(String);

impl SecretUri {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretUri(<redacted>)")
    }
}

impl TenantCredentials {
    /// Credentials for `tenant` with `password`, reachable through `broker`.
    pub fn new(tenant: &TenantId, password: Password, broker: &Url) -> Self {
        let amqp_uri = amqp_uri(broker, tenant.rabbitmq_user(), &password, tenant.vhost());
        Self {
            username: tenant.rabbitmq_user().to_owned(),
            password,
            vhost: tenant.vhost().to_owned(),
            amqp_uri,
        }
    }

    /// What in these (stored) credentials differs from `expected`, the credentials rebuilt from
    /// the stored password; `None` when nothing does. Names fields, never values.
    pub fn drift_from(&self, expected: &Self) -> Option<String> {
        let mut fields = Vec::new();
        if self.username != expected.username {
            fields.push("username");
        }
        if self.vhost != expected.vhost {
            fields.push("vhost");
        }
        if self.password != expected.password {
            fields.push("password (empty)");
        }
        if self.amqp_uri != expected.amqp_uri {
            fields.push("amqp_uri");
        }
        (!fields.is_empty()).then(|| {
            format!(
                "{} did not match the tenant, its stored password and the configured broker: rebuilt",
                fields.join(", ")
            )
        })
    }
}

/// Everything but RFC 3986 unreserved characters is escaped in a URI path segment.
pub const URI_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `segment` percent-encoded for a URI path (a vhost in an AMQP URI, a name in an API path).
pub fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, URI_COMPONENT).to_string()
}

/// Builds the tenant's AMQP URI. The vhost is the URI path, percent-encoded as the AMQP URI spec
/// asks; user and password go through the URL setters, which escape what must be escaped.
pub fn amqp_uri(broker: &Url, user: &str, password: &Password, vhost: &str) -> SecretUri {
    let mut url = broker.clone();
    // The broker URL was validated to have a host, so these setters cannot fail.
    let _ = url.set_username(user);
    let _ = url.set_password(Some(password.expose()));
    url.set_path(&format!("/{}", encode_segment(vhost)));
    SecretUri(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_alphanumeric_and_different() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.expose().len(), PASSWORD_LEN);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn uuids_are_version_4_and_different() {
        let a = random_uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, random_uuid());
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let tenant = TenantId::parse("4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c").unwrap();
        let broker = Url::parse("amqp://mq.local:5672").unwrap();
        let creds = TenantCredentials::new(&tenant, Password::new("hunter2hunter2"), &broker);
        let shown = format!("{creds:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn amqp_uri_carries_user_password_and_vhost() {
        let tenant = TenantId::parse("4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c").unwrap();
        let broker = Url::parse("amqps://mq.example.com:5671").unwrap();
        let creds = TenantCredentials::new(&tenant, Password::new("p4ss"), &broker);
        assert_eq!(
            creds.amqp_uri.expose(),
            "amqps://4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c:p4ss@mq.example.com:5671/4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
        );
        let json = serde_json::to_value(&creds).unwrap();
        assert_eq!(json["password"], "p4ss");
        assert_eq!(json["vhost"], tenant.as_str());
    }

    #[test]
    fn drift_names_the_fields_never_the_values() {
        let tenant = TenantId::parse("4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c").unwrap();
        let other = TenantId::parse("0a1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c").unwrap();
        let broker = Url::parse("amqps://mq.example.com:5671").unwrap();
        let expected = TenantCredentials::new(&tenant, Password::new("p4ssw0rd-own"), &broker);
        assert_eq!(expected.drift_from(&expected), None);
        let mut edited = expected.clone();
        edited.amqp_uri = TenantCredentials::new(&other, Password::new("n31ghb0ur"), &broker).amqp_uri;
        let drift = edited.drift_from(&expected).unwrap();
        assert!(drift.starts_with("amqp_uri did not match"), "{drift}");
        assert!(
            !drift.contains("n31ghb0ur") && !drift.contains("p4ssw0rd"),
            "{drift}"
        );
    }

    #[test]
    fn a_special_vhost_is_percent_encoded() {
        let broker = Url::parse("amqp://h:5672").unwrap();
        let uri = amqp_uri(&broker, "u", &Password::new("p"), "/");
        assert_eq!(uri.expose(), "amqp://u:p@h:5672/%2F");
    }
}
