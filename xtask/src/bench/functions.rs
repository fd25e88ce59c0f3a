//! The functions as Lambda runs them: the release binaries under `testkit::runtime` (the Lambda
//! Runtime API, real deadlines, one process per instance), with the stack's environment. Times
//! are the function's own plus a loopback HTTP round trip to the runtime API (~0.1 ms); no
//! emulator time is in them (cargo-lambda's emulator starts instances with `cargo run`, one at a
//! time, and would add its own).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use testkit::cognito::pool_tenant;
use testkit::runtime::{Answer, Function, Outcome};
use testkit::stack::Stack;
use testkit::{events, fresh_tenant};
use tgsearch::TenantId;

use super::stats::{Report, Stats, header};
use crate::stack::target_dir;

pub const TIMEOUT: Duration = Duration::from_secs(30);

pub fn release_binary(name: &str) -> PathBuf {
    target_dir().join("release").join(name)
}

/// A fresh instance of a function's release build, with the stack's environment.
pub fn instance(stack: &Stack, name: &str) -> Function {
    instance_with(stack, name, &[])
}

/// [`instance`] with some settings of its environment changed.
pub fn instance_with(stack: &Stack, name: &str, settings: &[(&str, &str)]) -> Function {
    let mut env = testkit::runtime::stack_env(stack);
    for (k, v) in settings {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Function::with_binary(name, release_binary(name), env)
}

pub fn expect_ok(outcome: &Outcome, what: &str, f: &Function) -> Result<Value> {
    match &outcome.answer {
        Answer::Ok(v) => Ok(v.clone()),
        other => bail!("{what} failed: {other:?}\n{}", f.log_tail(10)),
    }
}

/// Warms an instance as a Lambda instance is warm: its connections to Secrets Manager,
/// RabbitMQ and the Kubernetes API open. The signup of an existing, complete tenant: it converges
/// without changing anything.
pub async fn warm_up(f: &Function, existing: &TenantId) -> Result<()> {
    expect_ok(
        &f.invoke(&events::signup_for(existing), TIMEOUT).await,
        "warm-up",
        f,
    )
    .map(drop)
}

/// The Lambda function URL event of a Mailgun webhook (a permanent failure, signed with the
/// stack's key): the whole alerting path, ledger and SNS included.
pub fn webhook_event(key: &str) -> Value {
    let who = format!("{}@example.com", &fresh_tenant().as_str()[..8]);
    let body = testkit::mailgun::webhook(
        key,
        SystemTime::now(),
        &testkit::mailgun::token(),
        testkit::mailgun::permanent_failure(&who),
    );
    let mut event = events::load("mailgun-webhook-url.json");
    event["body"] = body.to_string().into();
    event
}

/// `GET /tenant` without a token: the function's cold start, then a 401.
pub fn credentials_event() -> Value {
    let mut event = events::load("tenant-credentials-http-api.json");
    if let Some(headers) = event["headers"].as_object_mut() {
        headers.remove("authorization");
    }
    event
}

/// An SQS event with one hand-off of `tenant`, as the event source delivers it.
pub fn worker_event(tenant: &TenantId) -> Value {
    let mut event = events::load("provision-worker-sqs.json");
    event["Records"][0]["body"] = json!({"sub": tenant.as_str(), "reason": "bench"})
        .to_string()
        .into();
    event["Records"][0]["messageId"] = fresh_tenant().to_string().into();
    event
}

/// Per-step milliseconds from post-confirmation's log lines (`steps=secret=3.1ms,vhost=...`).
pub fn step_times(logs: &str) -> Vec<(String, Duration)> {
    logs.lines()
        .filter(|l| l.contains("tenant provisioned"))
        .filter_map(|l| l.split("steps=").nth(1))
        .filter_map(|s| s.split_whitespace().next())
        .flat_map(|steps| steps.split(','))
        .filter_map(|kv| {
            let (step, ms) = kv.split_once('=')?;
            let ms: f64 = ms.trim_end_matches("ms").parse().ok()?;
            Some((step.to_owned(), Duration::from_secs_f64(ms / 1000.0)))
        })
        .collect()
}

/// Cold starts, warm signups one at a time and 20 in flight, teardowns, the webhook, peak RSS.
/// Returns the tenants it created (the caller removes them) and the warm signup stats.
pub async fn run(stack: &Stack, signups: usize, report: &mut Report) -> Result<(Vec<TenantId>, Stats)> {
    let key = testkit::mailgun::signing_key(stack).await;
    let mut tenants = Vec::new();

    // Cold starts: a new process per function, its first invocation timed from the process
    // start (as Cognito counts a cold start), and its init alone.
    let post = instance(stack, "post-confirmation");
    // Signups are users of the stack's pool: a hand-off is provisioned only for a user Cognito knows.
    let first = pool_tenant().await;
    let cold_post = post.invoke(&events::signup_for(&first), TIMEOUT).await;
    expect_ok(&cold_post, "post-confirmation (cold)", &post)?;
    tenants.push(first.clone());
    let teardown = instance(stack, "teardown");
    // The user leaves first (teardown refuses an active user's tenant); not timed.
    testkit::cognito::delete_pool_user(&first).await;
    let cold_teardown = teardown.invoke(&json!({"sub": first.as_str()}), TIMEOUT).await;
    expect_ok(&cold_teardown, "teardown (cold)", &teardown)?;
    let webhook = instance(stack, "mailgun-webhook");
    let cold_webhook = webhook.invoke(&webhook_event(&key), TIMEOUT).await;
    expect_ok(&cold_webhook, "mailgun-webhook (cold)", &webhook)?;
    let credentials = instance(stack, "tenant-credentials");
    let cold_credentials = credentials.invoke(&credentials_event(), TIMEOUT).await;
    expect_ok(&cold_credentials, "tenant-credentials (cold)", &credentials)?;
    let worker = instance(stack, "provision-worker");
    let handed = pool_tenant().await;
    let cold_worker = worker.invoke(&worker_event(&handed), TIMEOUT).await;
    expect_ok(&cold_worker, "provision-worker (cold)", &worker)?;
    tenants.push(handed);

    // Warm: one instance, one signup after the other.
    let mut warm = Vec::with_capacity(signups);
    for _ in 0..signups {
        let tenant = pool_tenant().await;
        let outcome = post.invoke(&events::signup_for(&tenant), TIMEOUT).await;
        expect_ok(&outcome, "post-confirmation", &post)?;
        warm.push(outcome.elapsed);
        tenants.push(tenant);
    }
    let handed_off = post
        .logs()
        .matches("handed off to the provisioning worker")
        .count();
    report.sample("post-confirmation, warm, one at a time", &warm);
    let warm_stats = Stats::of(warm).context("no warm signups")?;

    // 20 in flight: 20 warm instances, rounds of 20 signups at once.
    let pool: Vec<Function> = (0..20).map(|_| instance(stack, "post-confirmation")).collect();
    let existing = tenants.last().expect("signed up above").clone();
    for f in &pool {
        warm_up(f, &existing).await?;
    }
    let mut concurrent = Vec::new();
    for _ in 0..signups.div_ceil(20) {
        let round: Vec<TenantId> = testkit::cognito::pool_tenants(20).await;
        let events: Vec<Value> = round.iter().map(events::signup_for).collect();
        let outcomes =
            futures::future::join_all(pool.iter().zip(&events).map(|(f, e)| f.invoke(e, TIMEOUT))).await;
        for (f, outcome) in pool.iter().zip(&outcomes) {
            expect_ok(outcome, "post-confirmation (20 in flight)", f)?;
            concurrent.push(outcome.elapsed);
        }
        tenants.extend(round);
    }
    let concurrent_handed_off: usize = pool
        .iter()
        .map(|f| f.logs().matches("handed off to the provisioning worker").count())
        .sum();

    // The webhook, warm.
    let mut hooks = Vec::new();
    for _ in 0..50 {
        let outcome = webhook.invoke(&webhook_event(&key), TIMEOUT).await;
        expect_ok(&outcome, "mailgun-webhook", &webhook)?;
        hooks.push(outcome.elapsed);
    }

    // Teardowns, warm, once each user has left the pool (not timed).
    let mut teardowns = Vec::new();
    for tenant in tenants.iter().skip(1) {
        testkit::cognito::delete_pool_user(tenant).await;
        let outcome = teardown.invoke(&json!({"sub": tenant.as_str()}), TIMEOUT).await;
        expect_ok(&outcome, "teardown", &teardown)?;
        teardowns.push(outcome.elapsed);
    }

    let mut steps: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    for (step, t) in step_times(&post.logs()) {
        steps.entry(step).or_default().push(t);
    }

    header("Functions, release builds under the Lambda Runtime API (testkit::runtime)");
    report.sample("post-confirmation, warm, 20 in flight", &concurrent);
    report.sample("teardown, warm", &teardowns);
    report.sample("mailgun-webhook, warm", &hooks);
    let concurrent = Stats::of(concurrent).context("no concurrent signups")?;
    let hooks = Stats::of(hooks).context("no webhooks")?;
    let teardowns = Stats::of(teardowns).context("no teardowns")?;
    println!("{}", warm_stats.row("post-confirmation, warm, one at a time"));
    println!("{}", concurrent.row("post-confirmation, warm, 20 in flight"));
    println!("{}", teardowns.row("teardown, warm"));
    println!("{}", hooks.row("mailgun-webhook, warm (ledger + SNS)"));
    println!(
        "  per step of the warm signups (secret ∥ vhost ∥ volume; user ∥ kube-secret; permission ∥ deployment):"
    );
    let mut step_json = serde_json::Map::new();
    for (step, times) in steps {
        if let Some(s) = Stats::of(times) {
            println!("{}", s.row(&format!("  {step}")));
            step_json.insert(step, s.json());
        }
    }
    if handed_off + concurrent_handed_off > 0 {
        println!(
            "  handed off to the worker: {handed_off} of the one-at-a-time, {concurrent_handed_off} of the 20-in-flight signups"
        );
    }

    println!("\nCold starts (process start to first answer; init = until the runtime loop began)");
    let mut cold_json = serde_json::Map::new();
    let mut rss_json = serde_json::Map::new();
    for (name, outcome, f) in [
        ("post-confirmation (first signup)", &cold_post, &post),
        ("teardown", &cold_teardown, &teardown),
        ("mailgun-webhook", &cold_webhook, &webhook),
        (
            "tenant-credentials (GET /tenant, no token)",
            &cold_credentials,
            &credentials,
        ),
        ("provision-worker (one hand-off)", &cold_worker, &worker),
    ] {
        let rss = f.peak_rss_kib().await;
        println!(
            "  {name:<46} {:>9}  init {:>9}  peak RSS {}",
            super::stats::ms(outcome.elapsed),
            outcome.dispatched_after.map(super::stats::ms).unwrap_or_default(),
            rss.map(|k| format!("{:.1} MB", k as f64 / 1024.0))
                .unwrap_or_else(|| "?".into())
        );
        cold_json.insert(
            name.into(),
            json!({"first_answer_ms": super::stats::ms_f(outcome.elapsed),
                   "init_ms": outcome.dispatched_after.map(super::stats::ms_f)}),
        );
        rss_json.insert(name.into(), json!(rss.map(|k| k / 1024)));
        if let Some(kib) = rss {
            report.target(
                format!("{name}: peak RSS under 64 MB"),
                kib < 64 * 1024,
                format!("{:.1} MB", kib as f64 / 1024.0),
            );
        }
    }
    let pool_rss = futures::future::join_all(pool.iter().map(|f| f.peak_rss_kib())).await;
    let pool_max = pool_rss.into_iter().flatten().max();
    if let Some(kib) = pool_max {
        println!(
            "  post-confirmation after {} signups: peak RSS {:.1} MB",
            signups,
            kib as f64 / 1024.0
        );
    }
    report.target(
        "post-confirmation cold start at most 300 ms more than a warm signup",
        cold_post.elapsed <= warm_stats.p50 + Duration::from_millis(300),
        format!(
            "cold {} vs warm p50 {}",
            super::stats::ms(cold_post.elapsed),
            super::stats::ms(warm_stats.p50)
        ),
    );
    report.put(
        "functions",
        json!({
            "post_confirmation_warm": warm_stats.json(),
            "post_confirmation_20_in_flight": concurrent.json(),
            "post_confirmation_steps": step_json,
            "handed_off": {"one_at_a_time": handed_off, "twenty_in_flight": concurrent_handed_off},
            "teardown_warm": teardowns.json(),
            "mailgun_webhook_warm": hooks.json(),
            "cold_starts": cold_json,
            "peak_rss_mb": rss_json,
        }),
    );
    for f in pool
        .iter()
        .chain([&post, &teardown, &webhook, &credentials, &worker])
    {
        f.stop().await;
    }
    Ok((tenants, warm_stats))
}
