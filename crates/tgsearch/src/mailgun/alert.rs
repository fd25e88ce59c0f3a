//! Which Mailgun events mean a mail is lost for good, and the alert a person reads about it.
//!
//! Alert-worthy: `failed` with `severity: permanent` (bounced, suppressed, rejected), and
//! `failed` with `reason: old` whatever its severity (Mailgun gave up after its retries; it
//! sometimes reports that as `temporary`). Everything else (delivered, opened, temporary
//! failures Mailgun still retries) is acknowledged and ignored.

use serde_json::Value;

/// SNS refuses subjects over 100 characters, or with anything but printable ASCII.
pub const MAX_SUBJECT: usize = 100;

/// A mail that will never arrive: someone must look at it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Alert {
    /// One line a person reads at a glance; printable ASCII, at most 100 characters.
    pub summary: String,
    pub event_id: String,
    pub recipient: String,
    pub recipient_domain: String,
    pub reason: String,
    pub severity: String,
    /// The SMTP (or Mailgun) delivery-status code.
    pub code: Option<i64>,
    pub message: String,
    pub description: String,
    pub message_id: String,
    pub subject: String,
}

/// What to do with a verified event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Alert(Box<Alert>),
    /// Not a mail lost for good: nothing to do. Names the event, e.g. `failed temporary`.
    Ignore(String),
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn classify(event: &Value) -> Verdict {
    let kind = text(&event["event"]);
    let severity = text(&event["severity"]);
    let reason = text(&event["reason"]);
    if kind != "failed" || (severity != "permanent" && reason != "old") {
        let what = format!("{} {}", short(&kind, 30), short(&severity, 30));
        return Verdict::Ignore(what.trim().to_owned());
    }
    let status = &event["delivery-status"];
    let recipient = text(&event["recipient"]);
    let recipient_domain = match text(&event["recipient-domain"]) {
        d if d.is_empty() => recipient
            .rsplit_once('@')
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default(),
        d => d,
    };
    let code = status["code"]
        .as_i64()
        .or_else(|| status["code"].as_str().and_then(|c| c.trim().parse().ok()));
    let mut alert = Alert {
        summary: String::new(),
        event_id: text(&event["id"]),
        recipient,
        recipient_domain,
        reason,
        severity,
        code,
        message: text(&status["message"]),
        description: text(&status["description"]),
        message_id: text(&event["message"]["headers"]["message-id"]),
        subject: text(&event["message"]["headers"]["subject"]),
    };
    alert.summary = summary(&alert);
    Verdict::Alert(Box::new(alert))
}

fn short(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `Mail lost for good to alice@example.com: bounce 550 (5.1.1 The email account does not exist)`,
/// as printable ASCII (an internationalised domain in its `xn--` form, other characters as `?`)
/// and cut to [`MAX_SUBJECT`] characters.
pub fn summary(alert: &Alert) -> String {
    let reason = if alert.reason.is_empty() {
        alert.severity.as_str()
    } else {
        alert.reason.as_str()
    };
    let mut line = format!(
        "Mail lost for good to {}: {reason}",
        ascii_address(&alert.recipient)
    );
    if let Some(code) = alert.code {
        line.push_str(&format!(" {code}"));
    }
    let detail = if alert.message.is_empty() {
        &alert.description
    } else {
        &alert.message
    };
    if !detail.is_empty() {
        line.push_str(&format!(" ({detail})"));
    }
    subject_line(&line)
}

fn ascii_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let domain = idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_owned());
            format!("{local}@{domain}")
        }
        None => address.to_owned(),
    }
}

/// Printable ASCII only (whitespace runs become one space, anything else `?`), at most
/// [`MAX_SUBJECT`] characters, ending in `...` when cut.
pub fn subject_line(raw: &str) -> String {
    let mut line = String::with_capacity(raw.len().min(MAX_SUBJECT));
    for c in raw.chars() {
        let c = match c {
            c if c.is_whitespace() => ' ',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        };
        if c == ' ' && (line.is_empty() || line.ends_with(' ')) {
            continue;
        }
        line.push(c);
    }
    let line = line.trim_end().to_owned();
    if line.len() <= MAX_SUBJECT {
        return line;
    }
    format!("{}...", line[..MAX_SUBJECT - 3].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed(severity: &str, reason: &str, recipient: &str) -> Value {
        json!({
            "event": "failed", "severity": severity, "reason": reason, "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "recipient": recipient,
            "delivery-status": {"code": 550, "description": "", "message": "5.1.1 The email account does not exist"},
            "message": {"headers": {"message-id": "20261126.1@tgsearch.io", "subject": "3 new matches"}}
        })
    }

    #[test]
    fn permanent_failures_alert_with_everything_a_person_needs() {
        let Verdict::Alert(a) = classify(&failed("permanent", "bounce", "alice@example.com")) else {
            panic!("a permanent failure must alert")
        };
        assert_eq!(a.recipient, "alice@example.com");
        assert_eq!(a.recipient_domain, "example.com");
        assert_eq!(a.code, Some(550));
        assert_eq!(a.message, "5.1.1 The email account does not exist");
        assert_eq!(a.message_id, "20261126.1@tgsearch.io");
        assert_eq!(a.subject, "3 new matches");
        assert_eq!(
            a.summary,
            "Mail lost for good to alice@example.com: bounce 550 (5.1.1 The email account does not exist)"
        );
    }

    #[test]
    fn a_message_too_old_to_retry_alerts_even_as_temporary() {
        assert!(matches!(
            classify(&failed("temporary", "old", "bob@example.com")),
            Verdict::Alert(_)
        ));
        assert_eq!(
            classify(&failed("temporary", "generic", "bob@example.com")),
            Verdict::Ignore("failed temporary".into())
        );
        assert_eq!(
            classify(&json!({"event": "delivered"})),
            Verdict::Ignore("delivered".into())
        );
    }

    #[test]
    fn the_summary_fits_sns_for_any_recipient() {
        let Verdict::Alert(a) = classify(&failed("permanent", "bounce", "用户@例子.广告")) else {
            panic!()
        };
        assert!(a.summary.len() <= MAX_SUBJECT, "{}", a.summary);
        assert!(
            a.summary.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{}",
            a.summary
        );
        assert!(a.summary.contains("??@xn--"), "{}", a.summary);
        let long = format!("{}@example.com", "x".repeat(300));
        let Verdict::Alert(a) = classify(&failed("permanent", "bounce\r\nBcc: x", &long)) else {
            panic!()
        };
        assert_eq!(a.summary.len(), MAX_SUBJECT);
        assert!(a.summary.ends_with("..."));
        assert!(!a.summary.contains('\n'));
    }
}
