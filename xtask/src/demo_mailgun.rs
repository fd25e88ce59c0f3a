//! `cargo xtask demo mailgun`: a mail lost for good becomes one readable alert, and Mailgun's
//! retry of the same delivery becomes no second one.

use std::time::SystemTime;

use anyhow::{Result, bail};
use testkit::mailgun::{AlertProbe, permanent_failure, post, signing_key, token, webhook};

use crate::stack;

pub async fn run() -> Result<()> {
    let stack = stack::up().await?;
    let key = signing_key(&stack).await;
    let probe = AlertProbe::subscribe(&stack).await;
    let recipient = format!("{}@example.com", &testkit::fresh_tenant().as_str()[..8]);

    println!("\n1. Mailgun gives up on a notification to {recipient} (hard bounce, 550)");
    println!("   and POSTs the event to the mailgun-webhook's function URL, signed with the webhook key");
    let body = webhook(&key, SystemTime::now(), &token(), permanent_failure(&recipient)).to_string();
    let (code, answer) = post(&stack, "application/json", body.clone().into_bytes()).await;
    println!("   → {code} {answer}");
    if code != 200 {
        bail!("the webhook refused a genuine delivery");
    }
    let alerts = probe.alerts_about(&stack, &recipient).await;
    let [alert] = alerts.as_slice() else {
        bail!("expected one alert, got {}", alerts.len())
    };
    println!("\n2. What the operator receives from the alert topic (an SQS queue subscribed to it):");
    println!("   Subject: {}", alert.subject);
    for line in serde_json::to_string_pretty(&alert.alert)?.lines() {
        println!("   {line}");
    }

    println!("\n3. Mailgun delivers the same webhook again (a retry, same signature block)");
    let (code, answer) = post(&stack, "application/json", body.into_bytes()).await;
    println!("   → {code} {answer}");
    let again = probe.alerts_about(&stack, &recipient).await;
    if !again.is_empty() {
        bail!("the retry alerted again");
    }
    println!("   ✓ no second alert: the delivery ledger (DynamoDB) remembers the token");

    println!("\n4. Someone without the key forges one");
    let forged = webhook(
        "not-the-key",
        SystemTime::now(),
        &token(),
        permanent_failure(&recipient),
    );
    let (code, answer) = post(&stack, "application/json", forged.to_string().into_bytes()).await;
    println!("   → {code} {answer} (406: Mailgun, or anyone, must not retry it)");
    probe.close(&stack).await;
    Ok(())
}
