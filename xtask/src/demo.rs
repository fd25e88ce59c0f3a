//! `cargo xtask demo`: one new user, end to end, through the real Lambda binaries.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use testkit::lambda::{Invocation, invoke};
use testkit::{amqp, events};
use tgsearch::adapters::rabbitmq::AdminCredentials;
use tgsearch::credentials::TenantCredentials;
use tgsearch::ports::CredentialStore;
use tgsearch::status::tenant_status;

use crate::stack;

pub async fn run(keep: bool) -> Result<()> {
    // Two cells, so that the demo shows placement: each a broker and a cluster of its own.
    let stack = stack::up_with(stack::Options {
        cells: 2,
        ..Default::default()
    })
    .await?;
    let app = stack.app().await;
    let http = reqwest::Client::new();
    let endpoint = stack.lambda_endpoint().to_owned();
    let user = crate::demo_frontend::sign_up(&stack).await?;
    let tenant = user.tenant.clone();

    println!("\n1. Cognito confirms a new user; it invokes post-confirmation (sub {tenant})");
    let event = events::signup_for(&tenant);
    let started = Instant::now();
    let answer = invoke(&http, &endpoint, "post-confirmation", &event).await?;
    let took = started.elapsed();
    match answer {
        Invocation::Ok(returned) if returned == event => {
            println!(
                "   ✓ the Lambda answered in {} ms with the event unchanged, as Cognito requires",
                took.as_millis()
            )
        }
        Invocation::Ok(_) => bail!("post-confirmation did not return the event unchanged"),
        Invocation::FunctionError { error_type, message } => {
            bail!("post-confirmation failed: {error_type}: {message}")
        }
    }

    println!("\n2. What now exists, in every system");
    use tgsearch::cells::TenantCells;
    let at = app.cells.locate(&tenant).await?;
    let Some(cell) = at.cell.clone() else {
        bail!(
            "the tenant has no entry in the cell map ({})",
            testkit::stack::TENANT_CELLS_TABLE
        );
    };
    let local = testkit::stack::local_cells()
        .into_iter()
        .find(|c| c.name == cell.as_str())
        .context("the tenant's cell is not one of the stack's")?;
    println!(
        "   cell: {cell} (placed by post-confirmation: the least-filled open cell that answered), broker {}, cluster {}",
        local.management_url(),
        local.cluster_name
    );
    let broker = &at.provisioner.broker;
    if let (Ok(overview), Ok(view), Ok(store)) =
        tokio::join!(broker.overview(), broker.cluster_view(), broker.metadata_store())
    {
        println!(
            "   broker: RabbitMQ {} on Erlang {}, cluster {} ({} of {} nodes running), metadata in {store}",
            overview.rabbitmq_version,
            overview.erlang_version,
            overview.cluster_name,
            view.nodes.iter().filter(|n| n.running).count(),
            view.nodes.len()
        );
    }
    let status = tenant_status(&at.provisioner, &tenant).await?;
    for line in status.to_string().lines() {
        println!("   {line}");
    }
    let creds: TenantCredentials = app
        .provisioner
        .store
        .read(&tenant)
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .ours()
        .context("the tenant secret is missing")?;
    let masked = creds
        .amqp_uri
        .expose()
        .replace(creds.password.expose(), "********");
    println!(
        "   secret JSON: username {}, vhost {}, amqp_uri {masked}",
        creds.username, creds.vhost
    );

    println!("\n   Plain kubectl on cell {cell}'s cluster, through `tgsearch eks-token` (as with EKS):");
    let kubectl = std::process::Command::new("kubectl")
        .args([
            "--context",
            local.cluster_name,
            "get",
            "deployments,secrets,pvc",
            "-l",
            &format!("tgsearch.io/tenant={tenant}"),
        ])
        .envs(testkit::stack::exports())
        .output();
    match kubectl {
        Ok(out) if out.status.success() => {
            for line in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.is_empty())
            {
                println!("   {line}");
            }
        }
        Ok(out) => bail!("kubectl failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => println!("   (kubectl is not installed: {e})"),
    }

    println!("\n3. The tenant logs in to its vhost over AMQP with the stored amqp_uri");
    let message = format!("hello from {tenant}");
    let back = amqp::round_trip(creds.amqp_uri.expose(), message.as_bytes()).await?;
    println!(
        "   ✓ published and read back {:?}",
        String::from_utf8_lossy(&back)
    );
    match amqp::connect_to_vhost(creds.amqp_uri.expose(), "/").await {
        Ok(_) => bail!("the tenant could open vhost `/`: isolation is broken"),
        Err(e) => {
            // amqprs wraps the broker's answer in its frame dump: show the broker's words.
            let text = e.to_string();
            let reason = text
                .split_once("reply_text: ShortStr(")
                .and_then(|(_, rest)| rest.split_once(", \""))
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or(text.as_str(), |(reason, _)| reason);
            println!("   ✓ vhost `/` refused it ({reason})")
        }
    }
    let as_tenant = at.provisioner.broker.with_credentials(AdminCredentials {
        username: creds.username.clone(),
        password: creds.password.clone(),
    });
    match as_tenant.whoami().await {
        Ok(_) => bail!("the tenant can use the management API"),
        Err(e) => println!(
            "   ✓ the management API refused it ({})",
            e.status().map(|s| s.to_string()).unwrap_or_default()
        ),
    }

    crate::demo_frontend::run(&stack, &endpoint, &user).await?;

    if keep {
        println!(
            "\n5. Kept. Inspect with `tgsearch status --sub {tenant}`, remove with `tgsearch teardown --sub {tenant}`"
        );
        return Ok(());
    }
    crate::demo_frontend::leave(&stack, &user).await?;
    println!("\n5. The teardown Lambda removes the tenant");
    let done = invoke(
        &http,
        &endpoint,
        "teardown",
        &serde_json::json!({ "sub": tenant.as_str() }),
    )
    .await?
    .unwrap_ok();
    println!("   {done}");
    let after = tenant_status(&at.provisioner, &tenant).await?;
    if !after.is_absent() {
        bail!("something of the tenant survived teardown:\n{after}");
    }
    if app.cells.locate(&tenant).await?.cell.is_some() {
        bail!("the tenant's cell map entry survived teardown");
    }
    println!("   ✓ nothing of {tenant} is left, in cell {cell} or in the cell map");
    Ok(())
}
