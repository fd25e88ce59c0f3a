//! The body Mailgun POSTs, read into one shape.
//!
//! - Current webhooks: JSON `{"signature": {...}, "event-data": {...}}`.
//! - Legacy webhooks: form fields (`application/x-www-form-urlencoded` or `multipart/form-data`)
//!   `timestamp`, `token`, `signature`, `event` (`dropped`, `bounced`, `delivered`, ...),
//!   `recipient`, `domain`, `reason`, `code`, `error`, `description`, `Message-Id`,
//!   `message-headers`. They are translated into the JSON webhook's `event-data` shape, so one
//!   classifier serves both.
//!
//! Bodies over [`MAX_BODY`] are refused before parsing, and parse errors are fixed texts: they
//! never quote the input back.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::signature::Signature;

/// The largest body read. Mailgun's webhooks are a few KiB; attachments are not sent to them.
pub const MAX_BODY: usize = 256 * 1024;

/// A webhook: its signature block and its event, in the JSON webhook's `event-data` shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub signature: Signature,
    pub event: Value,
}

impl Webhook {
    /// SHA-256 of the event, canonical (object keys sorted), hex: what a token was first seen
    /// with, so that the same token arriving with another event is recognised as a replay.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        canonical(&self.event, &mut hasher);
        hex::encode(hasher.finalize())
    }
}

/// Feeds `value` to `hasher` with object keys in sorted order, whatever order the map keeps.
fn canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for key in keys {
                hasher.update(serde_json::to_string(key).expect("strings serialize").as_bytes());
                hasher.update(b":");
                canonical(&map[key], hasher);
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                canonical(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

/// Why a body is not a webhook. Fixed texts: nothing of the input is quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is larger than 256 KiB")]
    TooLarge,
    #[error("the body is not valid JSON (it may be truncated)")]
    NotJson,
    #[error("the body has no `signature` object with string `timestamp`, `token` and `signature`")]
    NoSignature,
    #[error("the body has no `event-data` object")]
    NoEventData,
    #[error("the form body is malformed")]
    BadForm,
    #[error("the form has no `timestamp`, `token` and `signature` fields")]
    NoFormSignature,
    #[error("the form has no `event` field")]
    NoFormEvent,
    #[error("unsupported content type: send application/json, or a form for legacy webhooks")]
    UnsupportedType,
}

/// Reads a webhook body according to its `Content-Type`.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Webhook, ParseError> {
    if body.len() > MAX_BODY {
        return Err(ParseError::TooLarge);
    }
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" | "" => parse_json(body),
        "application/x-www-form-urlencoded" => legacy(urlencoded(body)?),
        "multipart/form-data" => {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .ok_or(ParseError::BadForm)?;
            legacy(multipart(body, &boundary)?)
        }
        _ => Err(ParseError::UnsupportedType),
    }
}

fn parse_json(body: &[u8]) -> Result<Webhook, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::NotJson)?;
    let signature = value
        .get("signature")
        .cloned()
        .and_then(|s| serde_json::from_value::<Signature>(s).ok())
        .ok_or(ParseError::NoSignature)?;
    let event = value
        .get("event-data")
        .filter(|e| e.is_object())
        .cloned()
        .ok_or(ParseError::NoEventData)?;
    Ok(Webhook { signature, event })
}

type Fields = Vec<(String, String)>;

fn urlencoded(body: &[u8]) -> Result<Fields, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ParseError::BadForm)?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}

fn form_decode(s: &str) -> Result<String, ParseError> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ParseError::BadForm)
}

/// The text fields of a `multipart/form-data` body (file parts, such as attachments, skipped).
fn multipart(body: &[u8], boundary: &str) -> Result<Fields, ParseError> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(ParseError::BadForm);
    }
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut parts = text.split(delimiter.as_str());
    parts.next(); // the preamble
    let mut fields = Vec::new();
    let mut closed = false;
    for part in parts {
        if part.starts_with("--") {
            closed = true;
            break;
        }
        let part = part.strip_prefix("\r\n").ok_or(ParseError::BadForm)?;
        let (head, value) = part.split_once("\r\n\r\n").ok_or(ParseError::BadForm)?;
        let value = value.strip_suffix("\r\n").ok_or(ParseError::BadForm)?;
        let disposition = head
            .lines()
            .find_map(|l| {
                let (name, v) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then_some(v)
            })
            .ok_or(ParseError::BadForm)?;
        let param = |key: &str| {
            disposition.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        if param("filename").is_some() {
            continue;
        }
        let name = param("name").ok_or(ParseError::BadForm)?;
        fields.push((name, value.to_owned()));
    }
    if !closed {
        return Err(ParseError::BadForm);
    }
    Ok(fields)
}

/// A legacy webhook's fields in the current `event-data` shape.
fn legacy(fields: Fields) -> Result<Webhook, ParseError> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let signature = match (get("timestamp"), get("token"), get("signature")) {
        (Some(timestamp), Some(token), Some(signature)) => Signature {
            timestamp,
            token,
            signature,
        },
        _ => return Err(ParseError::NoFormSignature),
    };
    let legacy_event = get("event").ok_or(ParseError::NoFormEvent)?;
    // Legacy `dropped` and `bounced` are permanent failures: Mailgun gave up on the message.
    let (event, severity) = match legacy_event.as_str() {
        "dropped" | "bounced" => ("failed", "permanent"),
        other => (other, ""),
    };
    let headers: Vec<(String, String)> = get("message-headers")
        .and_then(|h| serde_json::from_str(&h).ok())
        .unwrap_or_default();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut message_headers = Map::new();
    if let Some(id) = get("Message-Id").or_else(|| header("Message-Id")) {
        message_headers.insert("message-id".into(), id.trim_matches(['<', '>']).into());
    }
    if let Some(subject) = header("Subject") {
        message_headers.insert("subject".into(), subject.into());
    }
    let recipient = get("recipient").unwrap_or_default();
    let mut event_data = json!({
        "event": event,
        "legacy-event": legacy_event,
        "recipient": recipient,
        "recipient-domain": recipient.rsplit_once('@').map(|(_, d)| d).unwrap_or_default(),
        "reason": get("reason").unwrap_or_default(),
        "delivery-status": {
            "code": get("code").and_then(|c| c.trim().parse::<i64>().ok()),
            "message": get("error").unwrap_or_default(),
            "description": get("description").or_else(|| get("notification")).unwrap_or_default(),
        },
        "message": {"headers": message_headers},
    });
    if !severity.is_empty() {
        event_data["severity"] = severity.into();
    }
    Ok(Webhook {
        signature,
        event: event_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = r#""signature": {"timestamp": "1795000000", "token": "t0k3n", "signature": "abcd"}"#;

    #[test]
    fn a_json_webhook_is_read() {
        let body = format!(r#"{{{SIG}, "event-data": {{"event": "failed", "severity": "permanent"}}}}"#);
        let w = parse("application/json; charset=utf-8", body.as_bytes()).unwrap();
        assert_eq!(w.signature.token, "t0k3n");
        assert_eq!(w.event["severity"], "permanent");
    }

    #[test]
    fn what_is_not_a_webhook_is_refused_without_quoting_it() {
        let secret_looking = "password=hunter2hunter2";
        let truncated = format!(r#"{{{SIG}, "event-data": {{"event": "fai"#);
        let cases: Vec<(String, Vec<u8>, ParseError)> = vec![
            (
                "application/json".into(),
                secret_looking.into(),
                ParseError::NotJson,
            ),
            (
                "application/json".into(),
                truncated.into_bytes(),
                ParseError::NotJson,
            ),
            (
                "application/json".into(),
                br#"{"event-data": {"event": "failed"}}"#.to_vec(),
                ParseError::NoSignature,
            ),
            (
                "application/json".into(),
                format!("{{{SIG}}}").into_bytes(),
                ParseError::NoEventData,
            ),
            (
                "application/json".into(),
                format!(r#"{{{SIG}, "event-data": "failed"}}"#).into_bytes(),
                ParseError::NoEventData,
            ),
            (
                "application/json".into(),
                vec![b' '; MAX_BODY + 1],
                ParseError::TooLarge,
            ),
            (
                "text/plain".into(),
                b"hello".to_vec(),
                ParseError::UnsupportedType,
            ),
            (
                "application/x-www-form-urlencoded".into(),
                b"event=dropped".to_vec(),
                ParseError::NoFormSignature,
            ),
        ];
        for (ct, body, expected) in cases {
            let err = parse(&ct, &body).unwrap_err();
            assert_eq!(err, expected);
            assert!(!err.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn a_legacy_form_webhook_is_read_as_a_permanent_failure() {
        let headers = serde_json::to_string(&[
            ["Subject", "Your TGSearch match"],
            ["Message-Id", "<20261126.1@tgsearch.io>"],
        ])
        .unwrap();
        let body = format!(
            "timestamp=1795000000&token=t0k3n&signature=abcd&event=dropped&recipient=alice%40example.com&reason=old&code=605&description=Not+delivering+to+previously+bounced+address&message-headers={}",
            percent_encoding::utf8_percent_encode(&headers, percent_encoding::NON_ALPHANUMERIC)
        );
        let w = parse("application/x-www-form-urlencoded", body.as_bytes()).unwrap();
        assert_eq!(w.signature.timestamp, "1795000000");
        assert_eq!(w.event["event"], "failed");
        assert_eq!(w.event["severity"], "permanent");
        assert_eq!(w.event["reason"], "old");
        assert_eq!(w.event["recipient-domain"], "example.com");
        assert_eq!(w.event["delivery-status"]["code"], 605);
        assert_eq!(
            w.event["delivery-status"]["description"],
            "Not delivering to previously bounced address"
        );
        assert_eq!(
            w.event["message"]["headers"]["message-id"],
            "20261126.1@tgsearch.io"
        );
        assert_eq!(w.event["message"]["headers"]["subject"], "Your TGSearch match");
    }

    #[test]
    fn a_multipart_legacy_webhook_is_read() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"timestamp\"\r\n\r\n1795000000\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nt0k3n\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"signature\"\r\n\r\nabcd\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\nbounced\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"recipient\"\r\n\r\nbob@example.org\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"m.eml\"\r\nContent-Type: message/rfc822\r\n\r\nraw\r\n\
--XyZ--\r\n";
        let w = parse("multipart/form-data; boundary=XyZ", body.as_bytes()).unwrap();
        assert_eq!(w.signature.token, "t0k3n");
        assert_eq!(w.event["event"], "failed");
        assert_eq!(w.event["legacy-event"], "bounced");
        assert_eq!(w.event["recipient"], "bob@example.org");
        let truncated = &body[..body.len() - 12];
        assert_eq!(
            parse("multipart/form-data; boundary=XyZ", truncated.as_bytes()).unwrap_err(),
            ParseError::BadForm
        );
    }

    #[test]
    fn the_digest_tells_events_apart_and_ignores_key_order() {
        let a = parse(
            "application/json",
            format!(r#"{{{SIG}, "event-data": {{"id": "1", "event": "failed"}}}}"#).as_bytes(),
        )
        .unwrap();
        let same = parse(
            "application/json",
            format!(r#"{{"event-data": {{"event": "failed", "id": "1"}}, {SIG}}}"#).as_bytes(),
        )
        .unwrap();
        let other = parse(
            "application/json",
            format!(r#"{{{SIG}, "event-data": {{"id": "2", "event": "failed"}}}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(a.digest(), same.digest());
        assert_ne!(a.digest(), other.digest());
    }
}
