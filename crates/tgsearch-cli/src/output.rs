//! What the CLI prints: a short human summary, or JSON with `--json`. Never a password, except
//! `credentials --show-password`.

use std::time::Duration;

use tgsearch::TenantId;
use tgsearch::app::LiveProvisioner;
use tgsearch::bootstrap::Bootstrapped;
use tgsearch::cells::InCell;
use tgsearch::cells::reconcile::CellsReport;
use tgsearch::ports::{Converged, Removed};
use tgsearch::provision::Provisioned;
use tgsearch::readiness::Readiness;
use tgsearch::status::TenantStatus;
use tgsearch::teardown::TornDown;

fn json(value: serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(&value).expect("JSON output"));
}

fn removed(r: &Removed) -> String {
    match r {
        Removed::Deleted => "removed".into(),
        Removed::AlreadyAbsent => "already absent".into(),
        Removed::LeftAlone(why) => format!("FOREIGN, left alone: {why}"),
    }
}

fn converged(c: &Converged) -> String {
    match c {
        Converged::Created => "created".into(),
        Converged::Unchanged => "unchanged".into(),
        Converged::Repaired(what) => format!("REPAIRED: {what}"),
        Converged::NeedsPerson(what) => format!("NEEDS A PERSON: {what}"),
    }
}

pub fn provisioned(as_json: bool, done: &Provisioned, at: &InCell<'_, LiveProvisioner>, took: Duration) {
    let secret = at.provisioner.store.tenant_secret_name(&done.tenant);
    if as_json {
        return json(serde_json::json!({
            "sub": done.tenant.as_str(),
            "cell": at.cell_name(),
            "secret": secret,
            "created_secret": done.created_secret,
            "vhost": done.credentials.vhost,
            "username": done.credentials.username,
            "steps": done.timings,
            "changes": done.changes.iter().map(|(step, c)| serde_json::json!({"resource": step, "outcome": c})).collect::<Vec<_>>(),
            "ms": took.as_millis() as u64,
        }));
    }
    let how = if done.created_secret {
        "created"
    } else {
        "existing, password kept"
    };
    println!("provisioned tenant {} in {} ms", done.tenant, took.as_millis());
    println!("  cell        {}", at.cell_name());
    println!("  secret      {secret} ({how})");
    println!(
        "  broker      {} (user {}, no tags, configure/write/read .* on vhost {} only)",
        at.provisioner.broker.base_url(),
        done.credentials.username,
        done.credentials.vhost
    );
    for (step, outcome) in &done.changes {
        println!("  {:<11} {}", step.as_str(), converged(outcome));
    }
    let steps: Vec<String> = done
        .timings
        .iter()
        .map(|t| format!("{} {:.1} ms", t.step, t.micros as f64 / 1000.0))
        .collect();
    println!("  steps       {}", steps.join(", "));
}

pub fn torn_down(as_json: bool, cell: &str, done: &TornDown) {
    if as_json {
        let mut value = serde_json::to_value(done).expect("JSON output");
        value["cell"] = cell.into();
        return json(value);
    }
    println!("tore down tenant {} (cell {cell})", done.sub);
    println!("  deployment   {}", removed(&done.deployment));
    println!("  volume       {}", removed(&done.volume));
    println!("  k8s secret   {}", removed(&done.kube_secret));
    println!("  vhost        {}", removed(&done.vhost));
    println!("  user         {}", removed(&done.user));
    println!("  secret       {}", removed(&done.secret));
}

pub fn status(as_json: bool, cell: &str, status: &TenantStatus) {
    if as_json {
        let mut value = serde_json::to_value(status).expect("JSON output");
        value["cell"] = cell.into();
        value["complete"] = status.is_complete().into();
        value["state"] = if status.is_complete() {
            "ready"
        } else if status.is_absent() {
            "absent"
        } else if status.is_provisioning() {
            "provisioning"
        } else {
            "incomplete"
        }
        .into();
        return json(value);
    }
    println!("cell: {cell}");
    print!("{status}");
    let verdict = if status.is_complete() {
        "complete"
    } else if status.is_absent() {
        "absent"
    } else if status.is_provisioning() {
        "provisioning (incomplete): the worker, `tgsearch provision` or reconcile completes it"
    } else {
        "incomplete: `tgsearch provision` or `tgsearch teardown` converges it"
    };
    println!("  → {verdict}");
}

pub fn bootstrapped(as_json: bool, done: &Bootstrapped) {
    if as_json {
        return json(serde_json::to_value(done).expect("JSON output"));
    }
    println!("RabbitMQ administrator `{}` is in place", done.admin_user);
    println!(
        "  secret          {} ({})",
        done.secret_id,
        if done.created_secret {
            "created"
        } else {
            "existing"
        }
    );
    println!(
        "  user            {}",
        if done.created_user {
            "created"
        } else {
            "already worked"
        }
    );
    println!("  default user    {}", removed(&done.bootstrap_user));
}

pub fn reconciled(as_json: bool, cells: &CellsReport) {
    if as_json {
        return json(serde_json::to_value(cells).expect("JSON output"));
    }
    for run in &cells.cells {
        match &run.error {
            Some(e) => println!("cell {:<12} NOT reconciled, nothing of it changed: {e}", run.cell),
            None => println!(
                "cell {:<12} {} tenants mapped{}{}",
                run.cell,
                run.mapped,
                run.health
                    .as_deref()
                    .map(|h| format!(", unhealthy: {h}"))
                    .unwrap_or_default(),
                run.counter_repaired
                    .map(|(was, now)| format!(", counter repaired {was} -> {now}"))
                    .unwrap_or_default()
            ),
        }
    }
    for (sub, cell) in &cells.placed {
        println!("placed {sub} in cell {cell}");
    }
    for (sub, why) in &cells.unplaced {
        println!("NO CELL for {sub}: {why}");
    }
    if !cells.released.is_empty() {
        println!(
            "map entries of removed users released: {}",
            cells.released.join(", ")
        );
    }
    let report = &cells.total;
    println!(
        "{} users in the pool, {} tenants with resources{}",
        report.users,
        report.tenants_seen,
        if report.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    let list = |subs: &[String]| {
        if subs.is_empty() {
            "none".to_string()
        } else {
            subs.join(", ")
        }
    };
    println!("  to provision  {}", list(&report.plan.provision));
    println!("  to check      {} tenants", report.plan.check.len());
    println!("  to remove     {}", list(&report.plan.remove));
    for f in &report.foreign {
        println!("  {f}");
    }
    if report.dry_run {
        return;
    }
    println!("  provisioned   {}", list(&report.provisioned));
    for c in &report.repaired {
        println!("  repaired      {} {}: {}", c.sub, c.resource, c.detail);
    }
    println!("  removed       {}", list(&report.removed));
    for c in &report.left_alone {
        println!("  left alone    {} {}: {}", c.sub, c.resource, c.detail);
    }
    for c in &report.kept {
        println!("  kept          {}: {}", c.sub, c.detail);
    }
    for c in &report.needs_person {
        println!("  NEEDS PERSON  {} {}: {}", c.sub, c.resource, c.detail);
    }
    for (sub, error) in &report.failed {
        println!("  FAILED        {sub}: {error}");
    }
    if let Some(why) = &report.refused_removals {
        println!("  REFUSED       {why}");
    }
    if !report.left_for_next_run.is_empty() {
        println!(
            "  next run      {} (out of time)",
            list(&report.left_for_next_run)
        );
    }
}

/// `credentials`: what `GET /tenant` would answer. With `show_password`, the JSON is the
/// function's own answer (plus `sub`); without it, the password is left out and masked in
/// `amqp_uri`.
pub fn credentials(as_json: bool, show_password: bool, tenant: &TenantId, readiness: &Readiness) {
    let c = match readiness {
        Readiness::Ready(c) => c,
        Readiness::Provisioning if as_json => {
            return json(serde_json::json!({ "sub": tenant.as_str(), "status": "provisioning" }));
        }
        Readiness::Absent if as_json => {
            return json(serde_json::json!({ "sub": tenant.as_str(), "status": "absent" }));
        }
        Readiness::Provisioning => {
            return println!(
                "tenant {tenant}: provisioning (incomplete in some system; `tgsearch status --sub {tenant}` shows which)"
            );
        }
        Readiness::Absent => {
            return println!(
                "tenant {tenant}: absent (no tenant; `tgsearch provision --sub {tenant}` creates it)"
            );
        }
    };
    let uri = if show_password {
        c.amqp_uri.expose().to_owned()
    } else {
        c.amqp_uri
            .expose()
            .replacen(&format!(":{}@", c.password.expose()), ":********@", 1)
    };
    if as_json {
        let mut value = serde_json::json!({
            "sub": tenant.as_str(),
            "status": "ready",
            "username": c.username,
            "vhost": c.vhost,
            "amqp_uri": uri,
        });
        if show_password {
            value["password"] = c.password.expose().into();
        }
        return json(value);
    }
    println!("tenant {tenant}: ready");
    println!("  username  {}", c.username);
    println!("  vhost     {}", c.vhost);
    println!("  amqp_uri  {uri}");
    if show_password {
        println!("  password  {}", c.password.expose());
    } else {
        println!("  password  hidden (--show-password shows it)");
    }
}

/// `status --all`: the fleet by state, then what provisioning tenants lack, then foreign
/// resources. `--json` adds every tenant's `sub` by state.
pub fn fleet(
    as_json: bool,
    fleet: &tgsearch::fleet::Fleet,
    cells: &[(String, tgsearch::fleet::Fleet)],
    took: Duration,
) {
    use tgsearch::fleet::FleetState;
    let counts = |fleet: &tgsearch::fleet::Fleet| -> serde_json::Value {
        FleetState::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), fleet.count(*s).into()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    if as_json {
        let mut value = serde_json::to_value(fleet).expect("a fleet serializes");
        value["counts"] = counts(fleet);
        value["cells"] = cells
            .iter()
            .map(|(cell, part)| (cell.clone(), counts(part)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        value["seconds"] = took.as_secs_f64().into();
        json(value);
        return;
    }
    for (cell, part) in cells {
        let states: Vec<String> = FleetState::ALL
            .iter()
            .filter(|s| part.count(**s) > 0)
            .map(|s| format!("{} {}", part.count(*s), s.as_str().replace('_', " ")))
            .collect();
        println!(
            "cell {cell:<12} {}",
            if states.is_empty() {
                "no tenants".to_owned()
            } else {
                states.join(", ")
            }
        );
    }
    println!(
        "{} users in the pool, {} confirmed and enabled ({:.1} s)",
        fleet.users,
        fleet.active_users,
        took.as_secs_f64()
    );
    let what = |state: FleetState| match state {
        FleetState::Ready => "complete in every system",
        FleetState::Provisioning => "partly there: the worker or reconcile completes them",
        FleetState::Missing => "confirmed users without any resource: reconcile creates them",
        FleetState::Drift => "password, stored secret or rights differ: reconcile repairs them",
        FleetState::NeedsPerson => "a foreign resource is in the way: see below",
        FleetState::Orphaned => "users no longer in the pool: reconcile removes them",
        FleetState::Inactive => "users disabled or unconfirmed: kept until deleted",
    };
    for state in FleetState::ALL {
        let n = fleet.count(state);
        let mark = if n == 0 || matches!(state, FleetState::Ready | FleetState::Inactive) {
            " "
        } else {
            "!"
        };
        println!(
            "{mark} {:<13} {n:>7}  {}",
            state.as_str().replace('_', " "),
            what(state)
        );
    }
    println!(
        "{} {:<13} {:>7}  resources named like a tenant's that are not ours (left alone)",
        if fleet.foreign.is_empty() { " " } else { "!" },
        "foreign",
        fleet.foreign.len()
    );
    if !fleet.lacking.is_empty() {
        let lacking: Vec<String> = fleet.lacking.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!("provisioning tenants lack: {}", lacking.join(", "));
    }
    for foreign in fleet.foreign.iter().take(20) {
        println!("  {foreign}");
    }
    if fleet.foreign.len() > 20 {
        println!("  ... and {} more (--json lists all)", fleet.foreign.len() - 20);
    }
    for (sub, why) in fleet.drift.iter().take(5) {
        println!("drift: {sub}: {why}");
    }
    for state in [FleetState::NeedsPerson, FleetState::Missing, FleetState::Orphaned] {
        let subs = fleet.tenants.get(&state).map(Vec::as_slice).unwrap_or_default();
        if !subs.is_empty() {
            let shown: Vec<&str> = subs.iter().take(5).map(String::as_str).collect();
            let more = subs.len().saturating_sub(5);
            println!(
                "{}: {}{}",
                state.as_str().replace('_', " "),
                shown.join(" "),
                if more > 0 {
                    format!(" (+{more}, --json lists all)")
                } else {
                    String::new()
                }
            );
        }
    }
}
