//! N confirmations at once (launch day): N warm post-confirmation instances (release builds,
//! as Lambda scales out) answer N signups fired together. What Cognito sees (answer times,
//! failed triggers), how many were handed to the worker, and how long until every tenant is
//! complete: the stack's own event source (its poller) delivers the hand-offs to the
//! provision-worker under the emulator, as SQS would in AWS. Then every tenant is checked over
//! AMQP, torn down, and checked gone.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use serde_json::{Value, json};
use testkit::runtime::{Answer, Function};
use testkit::stack::Stack;
use testkit::{amqp, events, fresh_tenant};
use tgsearch::app::AppContext;
use tgsearch::deadline::Deadline;
use tgsearch::status::tenant_status;

use super::functions::{TIMEOUT, instance, warm_up};
use super::stats::{Report, Stats, ms};

/// How long the bench waits for every tenant of a burst to be complete.
const COMPLETE_WITHIN: Duration = Duration::from_secs(120);

pub async fn run(stack: &Stack, app: &AppContext, n: usize, report: &mut Report) -> Result<()> {
    // Warm instances (connections open), warmed on one complete tenant of their own.
    let existing = fresh_tenant();
    app.provisioner
        .provision(&existing, &Deadline::new(Duration::from_secs(30), None))
        .await?;
    let pool: Vec<Function> = (0..n).map(|_| instance(stack, "post-confirmation")).collect();
    futures::stream::iter(&pool)
        .for_each_concurrent(8, |f| {
            let existing = &existing;
            async move {
                let _ = warm_up(f, existing).await;
            }
        })
        .await;
    let warm_hand_offs: usize = pool
        .iter()
        .map(|f| f.logs().matches("handed off to the provisioning worker").count())
        .sum();
    // Users of the stack's pool: the worker provisions a hand-off only for a user Cognito knows.
    let tenants: Vec<_> = testkit::cognito::pool_tenants(n).await;
    let signups: Vec<Value> = tenants.iter().map(events::signup_for).collect();
    let started = Instant::now();
    let outcomes =
        futures::future::join_all(pool.iter().zip(&signups).map(|(f, e)| f.invoke(e, TIMEOUT))).await;
    let answers: Vec<Duration> = outcomes.iter().map(|o| o.elapsed).collect();
    let failed: Vec<String> = outcomes
        .iter()
        .zip(&tenants)
        .filter(|(o, _)| !matches!(o.answer, Answer::Ok(_)))
        .map(|(o, t)| format!("{t}: {}", o.error().unwrap_or_default()))
        .collect();
    let handed_off: usize = pool
        .iter()
        .map(|f| f.logs().matches("handed off to the provisioning worker").count())
        .sum::<usize>()
        - warm_hand_offs;

    // Until every tenant is complete (the hand-offs finished by the worker).
    let mut pending: Vec<_> = tenants.clone();
    while !pending.is_empty() && started.elapsed() < COMPLETE_WITHIN {
        let statuses = futures::stream::iter(pending.clone())
            .map(|t| async move {
                let complete = tenant_status(&app.provisioner, &t)
                    .await
                    .is_ok_and(|s| s.is_complete());
                (t, complete)
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        pending = statuses.into_iter().filter(|(_, c)| !c).map(|(t, _)| t).collect();
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let all_complete_after = started.elapsed();

    // Every complete tenant logs in to its vhost over AMQP with its stored password (a login,
    // retried, not a publish: the check must not load the broker it measures).
    let inconsistent = futures::stream::iter(tenants.iter().filter(|t| !pending.contains(t)))
        .map(|t| async move {
            use tgsearch::ports::CredentialStore;
            let stored = app.provisioner.store.read(t).await.ok()?.ours()?;
            let mut last = None;
            for _ in 0..3 {
                match amqp::connect(stored.amqp_uri.expose()).await {
                    Ok(connection) => {
                        let _ = connection.close().await;
                        return None;
                    }
                    Err(e) => last = Some(format!("{t}: {e:#}")),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            last
        })
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect::<Vec<_>>()
        .await;

    // Teardown, and nothing left behind.
    let deadline = || Deadline::new(Duration::from_secs(60), None);
    futures::stream::iter(&tenants)
        .for_each_concurrent(8, |t| async move {
            testkit::cognito::delete_pool_user(t).await;
            let _ = app.provisioner.teardown(t, &deadline()).await;
        })
        .await;
    let leftovers = futures::stream::iter(&tenants)
        .map(|t| async move {
            let absent = tenant_status(&app.provisioner, t)
                .await
                .is_ok_and(|s| s.is_absent());
            (!absent).then(|| t.to_string())
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect::<Vec<_>>()
        .await;
    for f in &pool {
        f.stop().await;
    }
    let _ = app.provisioner.teardown(&existing, &deadline()).await;

    report.sample(&format!("{n} confirmations at once"), &answers);
    let answers = Stats::of(answers).expect("n > 0");
    println!(
        "\n{n} confirmations at once ({n} warm instances): Cognito's answer p50 {} p99 {} max {}; \
         {} failed triggers; {handed_off} handed off; every tenant complete after {}{}; {} inconsistent; {} left after teardown",
        ms(answers.p50),
        ms(answers.p99),
        ms(answers.max),
        failed.len(),
        ms(all_complete_after),
        if pending.is_empty() {
            String::new()
        } else {
            format!(" ({} NOT complete)", pending.len())
        },
        inconsistent.len(),
        leftovers.len()
    );
    for f in failed.iter().chain(&inconsistent).take(5) {
        println!("    {f}");
    }
    if n >= 200 {
        let numbers = format!(
            "{} failed, p99 {}, complete after {}, {} inconsistent, {} left",
            failed.len(),
            ms(answers.p99),
            ms(all_complete_after),
            inconsistent.len(),
            leftovers.len()
        );
        report.target(
            format!("{n} at once: no failed trigger, answers p99 under 1 s, all complete within 60 s, none inconsistent, none left"),
            failed.is_empty()
                && answers.p99 < Duration::from_secs(1)
                && pending.is_empty()
                && all_complete_after <= Duration::from_secs(60)
                && inconsistent.is_empty()
                && leftovers.is_empty(),
            numbers,
        );
    }
    report.put(
        &format!("burst_{n}"),
        json!({
            "answers": answers.json(), "failed_triggers": failed.len(), "handed_off": handed_off,
            "all_complete_ms": if pending.is_empty() { Some(super::stats::ms_f(all_complete_after)) } else { None },
            "not_complete": pending.len(), "inconsistent": inconsistent.len(), "left_after_teardown": leftovers.len(),
        }),
    );
    Ok(())
}
