//! A fault proxy in front of each dependency of the provisioning functions (RabbitMQ's
//! management API, moto for Secrets Manager, the Kubernetes API stand-in over TLS), the
//! environment that points a function at them, and checks made with independent clients that
//! go straight to the real servers.

use std::collections::BTreeMap;
use std::time::Duration;

use tgsearch::TenantId;
use tgsearch::app::AppContext;
use tgsearch::credentials::TenantCredentials;
use tgsearch::ports::CredentialStore;
use tgsearch::status::tenant_status;

use super::handoff::{HandOffQueue, HandedOff};
use super::{Proxy, TestCa};
use crate::amqp;
use crate::runtime::{Function, Outcome};
use crate::stack::{self, Stack};

/// post-confirmation's configured timeout (`template.yml`): the deadline it is given.
pub const POST_CONFIRMATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The synchronous window of [`Rig::patient_post_confirmation`].
pub const PATIENT_SYNC: Duration = Duration::from_secs(3);

/// Proxies in front of the running stack, and direct clients to check what they let through.
pub struct Rig {
    pub stack: Stack,
    /// Straight to the real servers, for checks.
    pub app: AppContext,
    /// In front of the RabbitMQ management API (HTTP).
    pub management: Proxy,
    /// In front of moto: Secrets Manager, and every other AWS API the functions call (HTTP).
    pub aws: Proxy,
    /// In front of the Kubernetes API stand-in: TLS with a certificate of [`Rig::ca`], TLS on
    /// to the stand-in.
    pub kube: Proxy,
    pub ca: TestCa,
    /// The provisioning queue of this rig's functions (`PROVISION_QUEUE_URL`), its own.
    pub queue: HandOffQueue,
}

/// How a signup under a fault ended, when it ended as it should.
#[derive(Debug)]
pub enum Verdict {
    /// A clear error naming the step, before the deadline.
    Failed(String),
    /// Cognito's event back before the deadline, and the tenant handed to the provisioning
    /// worker with the reason naming the step.
    HandedOff(HandedOff),
}

impl Rig {
    /// Panics with what to start when the stack is not running.
    pub async fn new() -> Self {
        let stack = Stack::require();
        let app = stack.app().await;
        let kube_ca = std::fs::read_to_string(stack::kube_ca_file()).unwrap_or_else(|e| {
            panic!(
                "the Kubernetes stand-in's CA ({}): {e}; start the stack with `cargo xtask stack up`",
                stack::kube_ca_file().display()
            )
        });
        let ca = TestCa::new().expect("a test CA");
        let management = Proxy::http(stack.var("RABBITMQ_MANAGEMENT_URL"), None)
            .await
            .expect("management proxy");
        let aws = Proxy::http(stack.var("AWS_ENDPOINT_URL"), None)
            .await
            .expect("AWS proxy");
        let kube = Proxy::https(stack.var("EKS_CLUSTER_ENDPOINT"), Some(&kube_ca), &ca)
            .await
            .expect("Kubernetes proxy");
        let queue = HandOffQueue::create(&stack).await;
        Self {
            stack,
            app,
            management,
            aws,
            kube,
            ca,
            queue,
        }
    }

    /// The stack's environment with every dependency behind its proxy (EKS mode: the proxy's
    /// address in `EKS_CLUSTER_ENDPOINT`, the test CA in `EKS_CLUSTER_CA`). Tenants' `amqp_uri`
    /// still names the real broker. Without the cell tables: the faults are on the deployment's
    /// own broker and cluster, which a registry's cells would bypass (a cell's broker stopped is
    /// tested with cells, in tgsearch-cli's `tests/cells.rs`).
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env = crate::runtime::stack_env(&self.stack);
        env.remove("CELLS_TABLE");
        env.remove("TENANT_CELLS_TABLE");
        env.insert("RABBITMQ_MANAGEMENT_URL".into(), self.management.url());
        env.insert("AWS_ENDPOINT_URL".into(), self.aws.url());
        env.insert("EKS_CLUSTER_ENDPOINT".into(), self.kube.url());
        env.insert("EKS_CLUSTER_CA".into(), self.ca.base64());
        env.insert("PROVISION_QUEUE_URL".into(), self.queue.url.clone());
        env
    }

    /// A workspace function wired to the proxies.
    pub fn function(&self, name: &str) -> Function {
        Function::new(name, self.env())
    }

    /// `post-confirmation` wired to the proxies, with a synchronous window
    /// (`PROVISION_SYNC_MS`) of [`PATIENT_SYNC`] instead of the deployed 500 ms: for tests of a
    /// blip that a retry inside the signup absorbs, so that a slow machine (debug builds, a
    /// 3-node broker on 2 cores) handing the signup to the worker is not mistaken for the blip's
    /// effect.
    pub fn patient_post_confirmation(&self) -> Function {
        let mut env = self.env();
        env.insert("PROVISION_SYNC_MS".into(), PATIENT_SYNC.as_millis().to_string());
        Function::new("post-confirmation", env)
    }

    /// A signup answered with Cognito's event either completed or handed the tenant to the
    /// worker (the synchronous window ran out, which a slow machine may do without any fault):
    /// finishes a hand-off as the queue's event source would. Cleans up before failing.
    pub async fn finish_hand_off(&self, tenant: &TenantId) {
        let Some(handed) = self.queue.of(tenant.as_str()).await else {
            return;
        };
        let worker = Function::new("provision-worker", self.env());
        if let Err(why) = self.queue.deliver(&worker, &[handed]).await {
            self.fail(
                tenant,
                format!("the worker did not finish the handed-off tenant: {why}"),
            )
            .await;
        }
    }

    /// Invokes `function` with a confirmed password reset (which provisions nothing), so its
    /// cold start is behind it; panics when that fails.
    pub async fn warm(&self, function: &Function) {
        let event = crate::events::load("post-confirmation-forgot-password.json");
        let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
        assert!(
            matches!(outcome.answer, crate::runtime::Answer::Ok(_)),
            "warming {:?} failed: {:?}; last log lines:\n{}",
            function.name(),
            outcome.answer,
            function.log_tail(15)
        );
    }

    /// Heals every proxy.
    pub async fn heal(&self) {
        for proxy in [&self.management, &self.aws, &self.kube] {
            proxy.heal().await.expect("heal a proxy");
        }
    }

    /// One complete tenant (`tenant_status(...).is_complete()`), whose stored `amqp_uri` logs in
    /// to its vhost over AMQP (so RabbitMQ's password is the stored one) and carries the stored
    /// password.
    pub async fn assert_converged(&self, tenant: &TenantId) -> TenantCredentials {
        let status = tenant_status(&self.app.provisioner, tenant)
            .await
            .unwrap_or_else(|e| panic!("status of {tenant}: {e}"));
        assert!(status.is_complete(), "tenant {tenant} is not complete: {status}");
        let creds = self
            .app
            .provisioner
            .store
            .read(tenant)
            .await
            .unwrap()
            .ours()
            .unwrap_or_else(|| panic!("tenant {tenant} has no stored credentials of ours"));
        assert!(
            creds
                .amqp_uri
                .expose()
                .contains(&format!(":{}@", creds.password.expose())),
            "the stored amqp_uri does not carry the stored password"
        );
        let echoed = amqp::round_trip(creds.amqp_uri.expose(), tenant.as_str().as_bytes())
            .await
            .unwrap_or_else(|e| panic!("the stored amqp_uri of {tenant} does not work: {e:#}"));
        assert_eq!(echoed, tenant.as_str().as_bytes());
        creds
    }

    /// Nothing of `tenant` exists in any system.
    pub async fn assert_absent(&self, tenant: &TenantId) {
        let status = tenant_status(&self.app.provisioner, tenant).await.unwrap();
        assert!(
            status.is_absent(),
            "tenant {tenant} left something behind: {status}"
        );
    }

    /// Heals the proxies, removes `tenant` (so a failing test leaves nothing in the shared
    /// stack), then fails with `message`.
    pub async fn fail(&self, tenant: &TenantId, message: String) -> ! {
        self.heal().await;
        let deadline = tgsearch::deadline::Deadline::new(Duration::from_secs(30), None);
        if let Err(e) = self.app.provisioner.teardown(tenant, &deadline).await {
            eprintln!("clean-up of {tenant} failed too: {e}");
        }
        panic!("{message}")
    }

    /// [`check_clear_error`], cleaning `tenant` up before failing.
    pub async fn assert_clear_error(
        &self,
        outcome: &Outcome,
        limit: Duration,
        names: &[&str],
        function: &Function,
        tenant: &TenantId,
    ) -> String {
        match check_clear_error(outcome, limit, names, function) {
            Ok(error) => error,
            Err(why) => self.fail(tenant, why).await,
        }
    }

    /// A signup of `tenant` under a fault ended as it should: a clear error naming one of `names`,
    /// or a hand-off whose reason names one, either before the deadline and within `limit`.
    /// Cleans `tenant` up before failing.
    pub async fn assert_failed_or_handed_off(
        &self,
        outcome: &Outcome,
        limit: Duration,
        names: &[&str],
        function: &Function,
        tenant: &TenantId,
    ) -> Verdict {
        let verdict = match &outcome.answer {
            crate::runtime::Answer::Ok(_) => {
                self.check_handed_off(outcome, limit, names, function, tenant)
                    .await
            }
            _ => check_clear_error(outcome, limit, names, function).map(Verdict::Failed),
        };
        match verdict {
            Ok(verdict) => verdict,
            Err(why) => self.fail(tenant, why).await,
        }
    }

    /// A fresh signup of `tenant` through `function` while a fault is on: it must end as
    /// [`Rig::assert_failed_or_handed_off`] says, within Cognito's 5 s, naming one of `names`.
    pub async fn sign_up_under_fault(
        &self,
        function: &Function,
        tenant: &TenantId,
        names: &[&str],
    ) -> Verdict {
        let outcome = function
            .invoke(&crate::events::signup_for(tenant), POST_CONFIRMATION_TIMEOUT)
            .await;
        self.assert_failed_or_handed_off(&outcome, crate::runtime::COGNITO_LIMIT, names, function, tenant)
            .await
    }

    async fn check_handed_off(
        &self,
        outcome: &Outcome,
        limit: Duration,
        names: &[&str],
        function: &Function,
        tenant: &TenantId,
    ) -> Result<Verdict, String> {
        if !(outcome.answered_before_deadline() && outcome.answered_within(limit)) {
            return Err(format!(
                "the signup was answered after the deadline ({:?}, deadline {:?}); last log lines:\n{}",
                outcome.elapsed,
                outcome.deadline_after,
                function.log_tail(15)
            ));
        }
        let Some(handed) = self.queue.of(tenant.as_str()).await else {
            return Err(format!(
                "the signup was answered as done, but under the fault it could not be, and nothing was handed to the provisioning worker; last log lines:\n{}",
                function.log_tail(15)
            ));
        };
        if !names.iter().any(|n| handed.reason.contains(n)) {
            return Err(format!(
                "handed off with a reason that names none of {names:?}: `{}`",
                handed.reason
            ));
        }
        Ok(Verdict::HandedOff(handed))
    }

    /// After the fault: heal, let the worker finish a hand-off (as the queue's event source
    /// would), then retry the same event (as Cognito would); each must give one complete
    /// tenant, with one password throughout. Removes the tenant at the end.
    pub async fn converges_after_recovery(&self, function: &Function, tenant: &TenantId, verdict: Verdict) {
        self.heal().await;
        let mut password = None;
        if let Verdict::HandedOff(_) = verdict {
            self.finish_hand_off(tenant).await;
            password = Some(self.assert_converged(tenant).await.password);
        }
        let event = crate::events::signup_for(tenant);
        let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
        match &outcome.answer {
            crate::runtime::Answer::Ok(answer) if *answer == event => {}
            other => {
                let why = format!(
                    "the retry after recovery failed: {other:?}; last log lines:\n{}",
                    function.log_tail(15)
                );
                self.fail(tenant, why).await
            }
        }
        // The retry itself may run out of the synchronous window on a slow machine.
        self.finish_hand_off(tenant).await;
        let creds = self.assert_converged(tenant).await;
        if let Some(before) = password {
            assert_eq!(before, creds.password, "the retry changed the tenant's password");
        }
        self.teardown(tenant).await;
    }

    /// A blip must not show: the signup answered with Cognito's event, complete at once (not
    /// left to the worker). Cleans up before failing.
    pub async fn assert_done_despite(&self, outcome: &Outcome, tenant: &TenantId, blip: &str) {
        let event = crate::events::signup_for(tenant);
        let done = matches!(&outcome.answer, crate::runtime::Answer::Ok(answer) if *answer == event);
        if !done {
            let error = outcome.error();
            self.fail(tenant, format!("{blip} failed the signup: {error:?}"))
                .await;
        }
        if let Some(handed) = self.queue.of(tenant.as_str()).await {
            self.fail(
                tenant,
                format!(
                    "{blip} left the signup to the worker instead of a retry: {}",
                    handed.reason
                ),
            )
            .await;
        }
        self.assert_converged(tenant).await;
    }

    /// Removes the tenant through the real servers (clean-up, not under test).
    pub async fn teardown(&self, tenant: &TenantId) {
        crate::cognito::delete_pool_user(tenant).await;
        let deadline = tgsearch::deadline::Deadline::new(Duration::from_secs(30), None);
        self.app
            .provisioner
            .teardown(tenant, &deadline)
            .await
            .unwrap_or_else(|e| panic!("clean-up of {tenant}: {e}"));
    }
}

/// Checks that `outcome` is an error, answered before the function's deadline (and within
/// `limit` of the invoke), whose text names one of `names` (e.g. ``step `vhost` ``); for a
/// process that exited during its cold start, its log must. Returns the error text, or why the
/// check failed (with the function's last log lines).
pub fn check_clear_error(
    outcome: &Outcome,
    limit: Duration,
    names: &[&str],
    function: &Function,
) -> Result<String, String> {
    let Some(error) = outcome.error() else {
        return Err(format!(
            "the invocation succeeded, but it should have failed naming one of {names:?}: {:?}",
            outcome.answer
        ));
    };
    if !(outcome.answered_before_deadline() && outcome.answered_within(limit)) {
        return Err(format!(
            "no answer before the deadline: after {:?} (deadline {:?} after the invoke, limit {limit:?}; cold start: {}, event taken after {:?}) the caller had `{error}`; last log lines:\n{}",
            outcome.elapsed,
            outcome.deadline_after,
            outcome.cold,
            outcome.dispatched_after,
            function.log_tail(15)
        ));
    }
    // A process that exits during its cold start reports nothing through the Runtime API
    // (Lambda shows `Runtime.ExitError`); what it logged is what names the cause.
    let explained = match outcome.answer {
        crate::runtime::Answer::Exited { .. } => format!("{error}\n{}", function.logs()),
        _ => match reference_in(&error) {
            // What Cognito shows the user: a generic message and a reference. The detail is in
            // the function's log under that reference, and nowhere in the message.
            Some(reference) => {
                if let Some(word) = INTERNAL.iter().find(|w| error.contains(*w)) {
                    return Err(format!(
                        "the error a user is shown carries internal detail (`{word}`): `{error}`"
                    ));
                }
                let logged: Vec<String> = function
                    .logs()
                    .lines()
                    .filter(|l| l.contains(reference))
                    .map(str::to_owned)
                    .collect();
                if logged.is_empty() {
                    return Err(format!(
                        "no log line carries the reference {reference} the user was given; last log lines:\n{}",
                        function.log_tail(15)
                    ));
                }
                logged.join("\n")
            }
            None => error.clone(),
        },
    };
    if !names.iter().any(|n| explained.contains(n)) {
        return Err(format!(
            "the error does not name any of {names:?}: `{error}`; last log lines:\n{}",
            function.log_tail(15)
        ));
    }
    Ok(explained)
}

/// What a user must never be shown: addresses, host names, the systems' own messages.
const INTERNAL: &[&str] = &[
    "http://",
    "https://",
    "amqp://",
    "127.0.0.1",
    "localhost",
    "RabbitMQ",
    "Kubernetes",
    "Secrets Manager",
    "step `",
];

/// The reference a withheld error gives (`reference <id>`).
pub fn reference_in(error: &str) -> Option<&str> {
    let rest = &error[error.find("reference ")? + "reference ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}
