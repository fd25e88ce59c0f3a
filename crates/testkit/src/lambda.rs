//! Invokes a function through the Lambda invoke API that `cargo lambda watch` serves, the way
//! `cargo lambda invoke` and the AWS SDK do.

use anyhow::{Context, Result};
use serde_json::Value;

/// The outcome of one invocation: the function's answer, or the error it reported.
#[derive(Debug)]
pub enum Invocation {
    Ok(Value),
    /// `errorType` and `errorMessage`, as Lambda reports a function error.
    FunctionError {
        error_type: String,
        message: String,
    },
}

impl Invocation {
    pub fn unwrap_ok(self) -> Value {
        match self {
            Invocation::Ok(v) => v,
            Invocation::FunctionError { error_type, message } => {
                panic!("the function failed: {error_type}: {message}")
            }
        }
    }
}

/// Invokes `function` with `payload` as its event.
pub async fn invoke(
    http: &reqwest::Client,
    endpoint: &str,
    function: &str,
    payload: &Value,
) -> Result<Invocation> {
    invoke_bytes(http, endpoint, function, serde_json::to_vec(payload)?).await
}

/// Invokes `function` with `body` as the event's bytes, JSON or not (hostile input). An answer
/// that is not JSON comes back as a JSON string.
pub async fn invoke_bytes(
    http: &reqwest::Client,
    endpoint: &str,
    function: &str,
    body: Vec<u8>,
) -> Result<Invocation> {
    let url = format!("{endpoint}/2015-03-31/functions/{function}/invocations");
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .timeout(std::time::Duration::from_secs(120))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let function_error = response.headers().contains_key("x-amz-function-error");
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("reading the answer of {url} ({status})"))?;
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
    let looks_like_error = body.get("errorMessage").is_some();
    if function_error || looks_like_error || !status.is_success() {
        return Ok(Invocation::FunctionError {
            error_type: body["errorType"].as_str().unwrap_or_default().to_owned(),
            message: body["errorMessage"].as_str().unwrap_or(&text).to_owned(),
        });
    }
    Ok(Invocation::Ok(body))
}
