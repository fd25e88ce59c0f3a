//! Reading settings from the environment: the lookup, the error that names the variable, and
//! the URL rules (no credentials in a URL, TLS unless the host is this machine or the network is
//! declared private). The lowest layer of configuration: each part's settings type (the
//! cluster's, the backend's, ...) reads itself through it, and `config` puts them together.

use std::time::Duration;

pub use reqwest::Url;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {name} is not set ({hint})")]
    Missing { name: &'static str, hint: &'static str },
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Reads settings through a lookup function, so tests need not touch the process environment.
pub struct Env<F>(F);

impl Env<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn process() -> Self {
        Env(|name| std::env::var(name).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn from_lookup(lookup: F) -> Self {
        Env(lookup)
    }

    /// The value of a variable; set but empty counts as unset.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str, hint: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing { name, hint })
    }

    pub fn url(&self, name: &'static str, hint: &'static str, schemes: &[&str]) -> Result<Url, ConfigError> {
        let raw = self.required(name, hint)?;
        parse_url(name, &raw, schemes)
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`); unset: `default`.
    pub fn flag_or(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                name,
                reason: format!("`{v}` is not true or false"),
            }),
        }
    }

    /// A positive whole number up to `max`; unset: `default`.
    pub fn count_or(&self, name: &'static str, default: u32, max: u32) -> Result<u32, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if n > 0 && n <= max => Ok(n),
                _ => Err(ConfigError::Invalid {
                    name,
                    reason: format!(
                        "`{}` is not a whole number from 1 to {max}",
                        raw.chars().take(40).collect::<String>()
                    ),
                }),
            },
        }
    }

    pub fn millis_or(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        match self.optional(name) {
            None => Ok(Duration::from_millis(default)),
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                _ => Err(ConfigError::Invalid {
                    name,
                    reason: format!("`{raw}` is not a positive number of milliseconds"),
                }),
            },
        }
    }
}

/// Parses a URL setting; credentials in it are refused (they belong in Secrets Manager, and a
/// URL is printed in logs and error messages).
pub fn parse_url(name: &'static str, raw: &str, schemes: &[&str]) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim()).map_err(|e| ConfigError::Invalid {
        name,
        reason: format!("`{raw}` is not a URL: {e}"),
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("scheme `{}` is not one of {}", url.scheme(), schemes.join(", ")),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::Invalid {
            name,
            reason: "the URL must not carry credentials; they come from Secrets Manager".into(),
        });
    }
    if url.host_str().is_none() {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("`{raw}` has no host"),
        });
    }
    Ok(url)
}

/// Whether `url` names this machine (plaintext to it crosses no network).
fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        None => false,
        Some(host) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => {
                    host.eq_ignore_ascii_case("localhost")
                        || host.to_ascii_lowercase().ends_with(".localhost")
                }
            }
        }
    }
}

/// TLS by default: a plaintext URL to anything but loopback carries passwords in clear text
/// over a network, and is refused unless `RABBITMQ_ALLOW_PLAINTEXT` says the network is private.
pub fn require_tls(
    name: &'static str,
    url: &Url,
    secure: &str,
    carries: &str,
    (allow_plaintext, override_name): (bool, &str),
) -> Result<(), ConfigError> {
    if url.scheme() == secure || allow_plaintext || is_loopback(url) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        name,
        reason: format!(
            "`{}://{}` would carry {carries} in clear text to another machine: use {secure}://, or set {override_name}=true if that host is reachable only inside a private network",
            url.scheme(),
            url.host_str().unwrap_or_default()
        ),
    })
}
