//! Logging for the Lambdas and the CLI: as `lambda_runtime`'s default subscriber
//! (`AWS_LAMBDA_LOG_FORMAT=JSON` for JSON, `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` for the level), with
//! one difference that is the point of this module: the libraries that can print what goes over
//! the wire (request bodies with passwords, signed headers, bearer tokens, a signable body when
//! `LOG_SIGNABLE_BODY` is set) are held at INFO whatever the environment asks, so no level, TRACE
//! included, puts a secret in the logs. This project's own crates log at any level and never log
//! a secret.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{Directive, LevelFilter};

/// Targets that never log below INFO here: HTTP, TLS, AWS signing and SDK internals, the
/// Kubernetes client, the Lambda runtime.
pub const HELD_AT_INFO: &[&str] = &[
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sdk_cognitoidentityprovider",
    "aws_sdk_dynamodb",
    "aws_sdk_eks",
    "aws_sdk_secretsmanager",
    "aws_sdk_sns",
    "aws_sdk_sqs",
    "aws_sdk_sts",
    "aws_sigv4",
    "aws_smithy_checksums",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_json",
    "aws_smithy_observability",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_types",
    "h2",
    "hyper",
    "hyper_rustls",
    "hyper_timeout",
    "hyper_util",
    "kube",
    "kube_client",
    "kube_core",
    "lambda_http",
    "lambda_runtime",
    "lambda_runtime_api_client",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "tower",
    "tower_http",
];

/// The filter: the environment's level and directives, then the held targets capped at INFO
/// (a directive for a named target overrides a broader one, and ours come last).
pub fn filter(level: Option<&str>, directives: Option<&str>) -> EnvFilter {
    let default = level
        .and_then(|l| LevelFilter::from_str(l).ok())
        .unwrap_or(LevelFilter::INFO);
    let mut filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .parse_lossy(directives.unwrap_or(""));
    for target in HELD_AT_INFO {
        let requested = directives
            .unwrap_or("")
            .split(',')
            .filter_map(|d| d.split_once('='))
            .find(|(t, _)| t.trim() == *target)
            .and_then(|(_, l)| LevelFilter::from_str(l.trim()).ok())
            .unwrap_or(default);
        // Quieter than INFO when asked; never louder.
        let level = requested.min(LevelFilter::INFO);
        if let Ok(directive) = Directive::from_str(&format!("{target}={level}")) {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the subscriber, once per process, writing to `writer`.
pub fn init_with_writer<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    // RUST_LOG may be a single level ("trace") or directives ("tgsearch=debug,info").
    let directives = std::env::var("RUST_LOG").ok();
    let level_only = level.as_deref().filter(|l| LevelFilter::from_str(l).is_ok());
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter(level_only, directives.as_deref()))
        .with_writer(writer);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
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
    fn trace_everywhere_still_holds_the_wire_at_info() {
        let shown = filter(Some("trace"), Some("trace,aws_sigv4=trace,hyper=debug")).to_string();
        for target in [
            "aws_sigv4=info",
            "hyper=info",
            "h2=info",
            "aws_smithy_runtime=info",
        ] {
            assert!(shown.contains(target), "{target} missing from {shown}");
        }
        assert!(!shown.contains("aws_sigv4=trace"), "{shown}");
    }

    #[test]
    fn quieter_requests_are_kept() {
        let shown = filter(Some("info"), Some("info,hyper=warn")).to_string();
        assert!(shown.contains("hyper=warn"), "{shown}");
    }
}
