//! The checks aws-iam-authenticator's server-side `Verify()` makes on a token before it asks
//! STS who signed it. The local Kubernetes API stand-in runs them, and tests hold our signer to
//! them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::token::{CLUSTER_ID_HEADER, TOKEN_LIFETIME, TOKEN_PREFIX, decode_url};

/// The authenticator refuses longer tokens.
pub const MAX_TOKEN_LEN: usize = 4 * 1024;

/// Query parameters a presigned `GetCallerIdentity` URL may carry (compared lowercased).
const ALLOWED_PARAMS: &[&str] = &[
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid EKS token: {0}")]
pub struct VerifyError(pub String);

/// A token that passed the checks: the presigned URL, ready to be replayed against STS with the
/// `x-k8s-aws-id` header, and what it says of its signer.
#[derive(Debug, Clone)]
pub struct CheckedToken {
    pub url: String,
    pub host: String,
    /// Lowercased query parameter names with their (decoded) values.
    pub params: BTreeMap<String, String>,
    pub access_key_id: String,
    pub signed_at: SystemTime,
}

fn fail<T>(msg: impl Into<String>) -> Result<T, VerifyError> {
    Err(VerifyError(msg.into()))
}

/// `sts.amazonaws.com`, `sts.<region>.amazonaws.com` or `sts.<region>.amazonaws.com.cn`.
fn is_sts_host(host: &str) -> bool {
    if host == "sts.amazonaws.com" {
        return true;
    }
    let region = host.strip_prefix("sts.").and_then(|h| {
        h.strip_suffix(".amazonaws.com")
            .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
    });
    region.is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years after 1970.
    let (y, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + se))
}

/// Runs the authenticator's checks on `token` at time `now`.
pub fn check_token(token: &str, now: SystemTime) -> Result<CheckedToken, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return fail("token is too large");
    }
    if !token.starts_with(TOKEN_PREFIX) {
        return fail(format!("token is missing expected \"{TOKEN_PREFIX}\" prefix"));
    }
    let Some(url) = decode_url(token) else {
        return fail("token is not valid base64url");
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| VerifyError(format!("not a URL: {e}")))?;
    if parsed.scheme() != "https" {
        return fail(format!(
            "unexpected scheme {:?} in pre-signed URL",
            parsed.scheme()
        ));
    }
    let host = parsed.host_str().unwrap_or_default().to_owned();
    if parsed.port().is_some() || !is_sts_host(&host) {
        return fail(format!("unexpected hostname {host:?} in pre-signed URL"));
    }
    if parsed.path() != "/" {
        return fail("unexpected path in pre-signed URL");
    }
    let mut params = BTreeMap::new();
    for (key, value) in parsed.query_pairs() {
        let key = key.to_ascii_lowercase();
        if !ALLOWED_PARAMS.contains(&key.as_str()) {
            return fail(format!("non-whitelisted query parameter {key:?}"));
        }
        if params.insert(key, value.into_owned()).is_some() {
            return fail("query parameter with multiple values not supported");
        }
    }
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    if get("action") != "GetCallerIdentity" {
        return fail("unexpected action parameter in pre-signed URL");
    }
    if get("version") != "2011-06-15" {
        return fail("unexpected version parameter in pre-signed URL");
    }
    if !get("x-amz-signedheaders")
        .split(';')
        .any(|h| h == CLUSTER_ID_HEADER)
    {
        return fail(format!(
            "client did not sign the {CLUSTER_ID_HEADER} header in the pre-signed URL"
        ));
    }
    match get("x-amz-expires").parse::<u64>() {
        Ok(s) if s <= 60 => {}
        _ => return fail("X-Amz-Expires parameter must be present and at most 60"),
    }
    let date = get("x-amz-date");
    if date.is_empty() {
        return fail("X-Amz-Date parameter must be present in pre-signed URL");
    }
    let Some(signed_at) = parse_amz_date(date) else {
        return fail(format!("error parsing X-Amz-Date parameter {date}"));
    };
    if now > signed_at + TOKEN_LIFETIME {
        return fail(format!(
            "X-Amz-Date parameter is expired (15 minute expiration) {date}"
        ));
    }
    if signed_at > now + Duration::from_secs(5 * 60) {
        return fail(format!("X-Amz-Date parameter {date} is in the future"));
    }
    let access_key_id = get("x-amz-credential")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    if access_key_id.is_empty() {
        return fail("X-Amz-Credential parameter must be present in pre-signed URL");
    }
    Ok(CheckedToken {
        url,
        host,
        params,
        access_key_id,
        signed_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eks::sign_token;
    use aws_credential_types::Credentials;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn creds() -> Credentials {
        Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), None, "test")
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn token_for(url: &str) -> String {
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(url))
    }

    #[test]
    fn amz_dates_parse() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(at(0)));
        assert_eq!(parse_amz_date("20261117T083320Z"), Some(at(1_794_904_400)));
        assert_eq!(parse_amz_date("2026-11-17T08:33:20Z"), None);
    }

    #[test]
    fn our_tokens_pass_within_15_minutes_and_expire_after() {
        let t = sign_token("tgsearch", "us-east-1", &creds(), at(1_795_000_000)).unwrap();
        let checked = check_token(&t.token, at(1_795_000_000 + 60)).unwrap();
        assert_eq!(checked.access_key_id, "AKIDEXAMPLE");
        assert_eq!(checked.host, "sts.us-east-1.amazonaws.com");
        assert_eq!(checked.params["x-amz-security-token"], "session");
        let err = check_token(&t.token, at(1_795_000_000 + 15 * 60 + 1)).unwrap_err();
        assert!(err.0.contains("expired"), "{err}");
    }

    #[test]
    fn forged_tokens_are_refused() {
        let ok = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261117%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=20261117T083320Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=abc";
        let now = at(1_794_904_400 + 10);
        assert!(check_token(&token_for(ok), now).is_ok());
        let cases = [
            (ok.replace("https://", "http://"), "scheme"),
            (
                ok.replace("sts.us-east-1.amazonaws.com", "sts.evil.example.com"),
                "hostname",
            ),
            (ok.replace("amazonaws.com/", "amazonaws.com:8443/"), "hostname"),
            (ok.replace(".com/?", ".com/x?"), "path"),
            (ok.replace("GetCallerIdentity", "AssumeRole"), "action"),
            (ok.replace("Version=2011-06-15", "Version=2020-01-01"), "version"),
            (ok.replace("host%3Bx-k8s-aws-id", "host"), "x-k8s-aws-id"),
            (
                ok.replace("X-Amz-Expires=60", "X-Amz-Expires=900"),
                "X-Amz-Expires",
            ),
            (format!("{ok}&Foo=bar"), "non-whitelisted"),
            (format!("{ok}&action=GetCallerIdentity"), "multiple values"),
        ];
        for (url, why) in cases {
            let err = check_token(&token_for(&url), now).unwrap_err();
            assert!(err.0.contains(why), "{why}: {err}");
        }
        assert!(check_token("Bearer xyz", now).unwrap_err().0.contains("prefix"));
        assert!(
            check_token(&"k8s-aws-v1.a".repeat(500), now)
                .unwrap_err()
                .0
                .contains("too large")
        );
    }
}
