//! The `ExecCredential` kubectl reads from a credential plugin, as `aws eks get-token` prints it.

use std::time::{SystemTime, UNIX_EPOCH};

use super::EksToken;

pub const V1: &str = "client.authentication.k8s.io/v1";
pub const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";
pub const V1ALPHA1: &str = "client.authentication.k8s.io/v1alpha1";

/// The API version to answer with, from the `KUBERNETES_EXEC_INFO` kubectl passes, and a warning
/// for stderr when that variable was unusable. v1beta1 is the fallback, as in the AWS CLI.
pub fn api_version(exec_info: Option<&str>) -> (&'static str, Option<String>) {
    let Some(raw) = exec_info.filter(|r| !r.trim().is_empty()) else {
        return (V1BETA1, None);
    };
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(raw);
    let Ok(info) = parsed else {
        return (
            V1BETA1,
            Some(format!(
                "cannot parse KUBERNETES_EXEC_INFO, defaulting to {V1BETA1}"
            )),
        );
    };
    match info["apiVersion"].as_str() {
        Some(V1) => (V1, None),
        Some(V1BETA1) => (V1BETA1, None),
        Some(V1ALPHA1) => (
            V1ALPHA1,
            Some(format!("kubeconfig uses the deprecated {V1ALPHA1}; move to {V1}")),
        ),
        Some(other) => (
            V1BETA1,
            Some(format!(
                "unrecognized API version {other:?} in KUBERNETES_EXEC_INFO, defaulting to {V1BETA1}"
            )),
        ),
        None => (
            V1BETA1,
            Some(format!(
                "KUBERNETES_EXEC_INFO has no apiVersion, defaulting to {V1BETA1}"
            )),
        ),
    }
}

/// The ExecCredential object.
pub fn exec_credential(token: &EksToken, api_version: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "ExecCredential",
        "apiVersion": api_version,
        "spec": {},
        "status": {
            "expirationTimestamp": rfc3339(token.expires_at),
            "token": token.token,
        }
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eks::verify::parse_amz_date;
    use std::time::Duration;

    #[test]
    fn rfc3339_round_trips_with_amz_dates() {
        for secs in [0u64, 951_782_400, 1_795_336_400, 4_102_444_799] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let s = rfc3339(t);
            let amz = s.replace(['-', ':'], "");
            assert_eq!(parse_amz_date(&amz), Some(t), "{s}");
        }
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn the_api_version_follows_kubernetes_exec_info() {
        assert_eq!(api_version(None), (V1BETA1, None));
        assert_eq!(api_version(Some(r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#)).0, V1);
        let (v, warning) = api_version(Some("{not json"));
        assert_eq!(v, V1BETA1);
        assert!(warning.unwrap().contains("cannot parse"));
        let (v, warning) = api_version(Some(r#"{"apiVersion":"client.authentication.k8s.io/v2"}"#));
        assert_eq!(v, V1BETA1);
        assert!(warning.unwrap().contains("unrecognized"));
    }
}
