//! The time budget of one invocation, and the steps that spend it.
//!
//! Cognito gives up on a trigger after 5 s. Each step runs under one shared deadline, the earlier
//! of `PROVISION_BUDGET_MS` from the start and the Lambda's own deadline minus a margin, so the
//! function always answers in time with an error naming the step that ran out of time.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::ports::PortError;

/// Time kept back from the Lambda deadline to serialize and send the answer.
pub const RESPONSE_MARGIN: Duration = Duration::from_millis(200);

/// One unit of provisioning or teardown work, as named in logs, errors and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Create-or-read the tenant secret in Secrets Manager.
    Secret,
    /// The tenant's RabbitMQ vhost.
    Vhost,
    /// The tenant's RabbitMQ user.
    User,
    /// The user's permission on the vhost.
    Permission,
    /// The Kubernetes Secret holding `AMQP_URI`.
    KubeSecret,
    /// The PersistentVolumeClaim for the tenant's data.
    Volume,
    /// The backend Deployment.
    Deployment,
    /// Asking the user directory (Cognito) about the tenant's user.
    Directory,
    /// Handing an unfinished provisioning to the queue.
    HandOff,
    /// Taking the tenant's lock, under which its credentials are written.
    Lock,
    /// The tenant's limits on the broker.
    Limits,
}

impl Step {
    pub const ALL: [Step; 11] = [
        Step::Secret,
        Step::Vhost,
        Step::User,
        Step::Permission,
        Step::KubeSecret,
        Step::Volume,
        Step::Deployment,
        Step::Directory,
        Step::HandOff,
        Step::Lock,
        Step::Limits,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Secret => "secret",
            Step::Vhost => "vhost",
            Step::User => "user",
            Step::Permission => "permission",
            Step::KubeSecret => "kube-secret",
            Step::Volume => "volume",
            Step::Deployment => "deployment",
            Step::Directory => "directory",
            Step::HandOff => "hand-off",
            Step::Lock => "lock",
            Step::Limits => "limits",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step that failed or ran out of time.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("step `{step}` did not finish within the {budget_ms} ms budget")]
    TimedOut { step: Step, budget_ms: u64 },
    #[error("step `{step}` failed: {source}")]
    Failed {
        step: Step,
        #[source]
        source: PortError,
    },
}

impl StepError {
    pub fn step(&self) -> Step {
        match self {
            StepError::TimedOut { step, .. } | StepError::Failed { step, .. } => *step,
        }
    }

    /// A resource that is not the provisioner's stands in the way: no retry can help.
    pub fn is_foreign(&self) -> bool {
        match self {
            StepError::Failed { source, .. } => crate::ports::Foreign::is_in(source.as_ref()),
            StepError::TimedOut { .. } => false,
        }
    }
}

/// How long one step took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepTiming {
    pub step: Step,
    pub micros: u64,
}

/// The deadline shared by all steps of one invocation.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// `budget` from now, cut short by the Lambda deadline (milliseconds since the Unix epoch,
    /// as in `lambda_runtime::Context::deadline`) when there is one.
    pub fn new(budget: Duration, lambda_deadline_ms: Option<u64>) -> Self {
        let budget = match lambda_deadline_ms.and_then(remaining_until) {
            Some(left) => budget.min(left.saturating_sub(RESPONSE_MARGIN)),
            None => budget,
        };
        Self {
            at: Instant::now() + budget,
            budget,
        }
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Runs one step under the deadline and measures it. A transient failure (see
    /// [`crate::ports::Transient`]) is retried with jittered exponential backoff, honouring the
    /// server's `Retry-After`, never past the deadline; anything else fails at once.
    pub async fn run<T, F, Fut>(&self, step: Step, mut work: F) -> Result<(T, StepTiming), StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, PortError>>,
    {
        let started = Instant::now();
        let retrying = async {
            let mut attempt = 0;
            loop {
                let error = match work().await {
                    Ok(value) => return Ok(value),
                    Err(e) => e,
                };
                let Some(retry_after) = crate::ports::Transient::of(&error) else {
                    return Err(error);
                };
                attempt += 1;
                let wait = backoff(attempt, retry_after);
                if attempt >= MAX_ATTEMPTS || Instant::now() + wait >= self.at {
                    return Err(error);
                }
                tracing::debug!(step = %step, attempt, wait_ms = wait.as_millis() as u64, error = %error, "transient failure, retrying");
                tokio::time::sleep(wait).await;
            }
        };
        let outcome = tokio::time::timeout_at(self.at, retrying).await;
        let elapsed = started.elapsed();
        let timing = StepTiming {
            step,
            micros: elapsed.as_micros() as u64,
        };
        match outcome {
            Ok(Ok(value)) => {
                tracing::debug!(step = %step, ms = elapsed.as_millis() as u64, "step done");
                Ok((value, timing))
            }
            Ok(Err(source)) => Err(StepError::Failed { step, source }),
            Err(_) => Err(StepError::TimedOut {
                step,
                budget_ms: self.budget.as_millis() as u64,
            }),
        }
    }
}

/// Attempts of one step, the first included.
const MAX_ATTEMPTS: u32 = 5;

/// Full-jitter exponential backoff (50 ms doubling, at most 1 s), or the server's `Retry-After`
/// when it asks for longer.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = Duration::from_millis(50 * (1u64 << attempt.min(5))).min(Duration::from_secs(1));
    let jittered = ceiling.mul_f64(0.5 + rand::random::<f64>() / 2.0);
    retry_after.map_or(jittered, |r| r.max(jittered))
}

/// 2020-01-01T00:00:00Z in epoch milliseconds. A "deadline" before it is no epoch timestamp:
/// cargo-lambda's emulator sends the function timeout (e.g. `600000`) in that header.
const PLAUSIBLE_EPOCH_MS: u64 = 1_577_836_800_000;

/// Time left until a Lambda deadline (epoch milliseconds); `None` for values that are no
/// epoch deadline.
pub fn remaining_until(deadline_ms: u64) -> Option<Duration> {
    if deadline_ms < PLAUSIBLE_EPOCH_MS {
        return None;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some(Duration::from_millis(deadline_ms).saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch_ms_in(d: Duration) -> u64 {
        (SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + d).as_millis() as u64
    }

    #[test]
    fn the_lambda_deadline_cuts_the_budget_short() {
        let d = Deadline::new(
            Duration::from_millis(4500),
            Some(epoch_ms_in(Duration::from_secs(1))),
        );
        assert!(d.budget() <= Duration::from_millis(800), "{:?}", d.budget());
        let d = Deadline::new(
            Duration::from_millis(4500),
            Some(epoch_ms_in(Duration::from_secs(60))),
        );
        assert_eq!(d.budget(), Duration::from_millis(4500));
    }

    #[test]
    fn a_deadline_in_the_past_leaves_no_time() {
        let past = epoch_ms_in(Duration::ZERO) - 1000;
        let d = Deadline::new(Duration::from_millis(4500), Some(past));
        assert_eq!(d.budget(), Duration::ZERO);
    }

    #[test]
    fn a_relative_timeout_in_the_deadline_header_is_ignored() {
        // cargo-lambda's emulator sends the timeout (600 s) instead of an epoch deadline.
        let d = Deadline::new(Duration::from_millis(4500), Some(600_000));
        assert_eq!(d.budget(), Duration::from_millis(4500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_and_a_permanent_one_is_not() {
        let d = Deadline::new(Duration::from_secs(5), None);
        let mut calls = 0;
        let (value, _) = d
            .run(Step::User, || {
                calls += 1;
                let fail = calls < 3;
                async move {
                    if fail {
                        Err(crate::ports::Transient::wrap("503 Service Unavailable", None))
                    } else {
                        Ok(calls)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 3);
        let mut calls = 0;
        let err = d
            .run(Step::User, || {
                calls += 1;
                async { Err::<(), PortError>("400 Bad Request".into()) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(err.to_string(), "step `user` failed: 400 Bad Request");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_before_the_deadline_with_the_last_error() {
        let d = Deadline::new(Duration::from_millis(500), None);
        let err = d
            .run(Step::Vhost, || async {
                Err::<(), PortError>(crate::ports::Transient::wrap(
                    "429 Too Many Requests",
                    Some(Duration::from_secs(2)),
                ))
            })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "step `vhost` failed: 429 Too Many Requests");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_step_is_named_when_time_runs_out() {
        let d = Deadline::new(Duration::from_millis(50), None);
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, PortError>(())
        };
        let err = d.run(Step::Vhost, slow).await.unwrap_err();
        assert_eq!(err.step(), Step::Vhost);
        assert_eq!(
            err.to_string(),
            "step `vhost` did not finish within the 50 ms budget"
        );
    }
}
