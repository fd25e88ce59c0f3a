//! Logging for the Lambdas and the CLI: as `lambda_runtime`'s default subscriber
//! (`AWS_LAMBDA_LOG_FORMAT=JSON` for JSON, `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` for the level and
//! directives), with one difference that is the point of this module: only this workspace's
//! crates may log below INFO. Other crates print what goes over the wire at DEBUG and TRACE
//! (`lambda_runtime` logs every raw event, `Authorization` header included; the SDK's signer logs
//! the canonical request, and the signable body when `LOG_SIGNABLE_BODY` is set; HTTP/2 and TLS
//! log frames), and no level, TRACE included, may put a password, a token or a key in the logs.
//! This project's own code logs at any level and never logs a secret.

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The workspace's crates (targets are module paths: `tgsearch::...`, `post_confirmation`, ...).
const OURS: &[&str] = &[
    "tgsearch",
    "post_confirmation",
    "provision_worker",
    "teardown",
    "reconcile",
    "mailgun_webhook",
    "tenant_credentials",
    "kube_standin",
];

/// Whether an event may be logged at all: anything from our crates, INFO and above from others.
pub fn may_log(target: &str, level: &Level) -> bool {
    *level <= Level::INFO
        || OURS.iter().any(|ours| {
            target == *ours
                || target
                    .strip_prefix(ours)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
}

/// Installs the subscriber, once per process, writing to `writer`.
pub fn init_with_writer<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let guard = filter_fn(|meta: &Metadata<'_>| may_log(meta.target(), meta.level()));
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter)
        .with_writer(writer);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json {
        fmt.json().finish().with(guard).try_init()
    } else {
        fmt.finish().with(guard).try_init()
    };
}

/// The Lambdas' subscriber (stdout, as Lambda collects it).
pub fn init() {
    init_with_writer(std::io::stdout);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_never_log_below_info() {
        for target in [
            "lambda_runtime::layers::api_response",
            "aws_smithy_runtime::client::http",
            "aws_sigv4::http_request::sign",
            "h2::codec",
            "tgsearchx",
        ] {
            assert!(!may_log(target, &Level::TRACE), "{target}");
            assert!(!may_log(target, &Level::DEBUG), "{target}");
            assert!(may_log(target, &Level::INFO), "{target}");
        }
        assert!(may_log("tgsearch::cognito_jwt::jwks", &Level::TRACE));
        assert!(may_log("post_confirmation", &Level::DEBUG));
        assert!(may_log("hyper", &Level::ERROR));
    }
}
