//! The tenant id and the names derived from it. The names are a contract with the frontend.

use std::fmt;

/// A tenant is one Cognito user, identified by its `sub`: a lowercase, hyphenated UUID.
///
/// Everything a tenant owns is named after it, so the id is validated once, here, and every
/// other module takes a `TenantId` instead of a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{value}` is not a tenant id: {reason} (expected a lowercase UUID such as 1b2c3d4e-0000-4000-8000-00000000abcd)"
)]
pub struct InvalidTenantId {
    /// The offending input, truncated so that a huge payload does not flood the logs.
    pub value: String,
    pub reason: &'static str,
}

impl TenantId {
    pub fn parse(value: &str) -> Result<Self, InvalidTenantId> {
        let invalid = |reason| InvalidTenantId {
            value: value.chars().take(64).collect(),
            reason,
        };
        if value.is_empty() {
            return Err(invalid("it is empty"));
        }
        if value.len() != 36 {
            return Err(invalid("it must be 36 characters long"));
        }
        for (i, c) in value.char_indices() {
            let hyphen_position = matches!(i, 8 | 13 | 18 | 23);
            match (hyphen_position, c) {
                (true, '-') => {}
                (true, _) => return Err(invalid("hyphens must separate 8-4-4-4-12 hex digits")),
                (false, '0'..='9' | 'a'..='f') => {}
                (false, 'A'..='F') => return Err(invalid("hex digits must be lowercase")),
                (false, _) => return Err(invalid("it may contain only hex digits and hyphens")),
            }
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// RabbitMQ user name of the tenant.
    pub fn rabbitmq_user(&self) -> &str {
        &self.0
    }

    /// RabbitMQ virtual host of the tenant.
    pub fn vhost(&self) -> &str {
        &self.0
    }

    /// Secrets Manager name of the tenant's credentials.
    pub fn secret_name(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TenantId {
    type Err = InvalidTenantId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_lowercase_uuid() {
        let id = TenantId::parse("4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c").unwrap();
        assert_eq!(id.vhost(), "4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c");
        assert_eq!(
            id.secret_name("tgsearch/users/"),
            "tgsearch/users/4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
        );
    }

    #[test]
    fn rejects_what_is_not_a_lowercase_uuid_and_says_why() {
        let cases = [
            ("", "empty"),
            ("4F1C2B3A-9D8E-4F7A-8B6C-5D4E3F2A1B0C", "lowercase"),
            ("4f1c2b3a9d8e4f7a8b6c5d4e3f2a1b0c", "36 characters"),
            ("4f1c2b3a-9d8e-4f7a-8b6c_5d4e3f2a1b0c", "hyphens"),
            ("4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0/", "only hex digits"),
            ("../../../etc/passwd-aaaaaaaaaaaaaaaa", "only hex digits"),
        ];
        for (input, reason) in cases {
            let err = TenantId::parse(input).unwrap_err();
            assert!(err.to_string().contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn error_truncates_huge_input() {
        let err = TenantId::parse(&"a".repeat(10_000)).unwrap_err();
        assert_eq!(err.value.len(), 64);
    }
}
