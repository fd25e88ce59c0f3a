//! Runs a real Lambda binary (`target/debug/post-confirmation`, ...) under a small
//! implementation of the Lambda Runtime API, as AWS documents it: the function polls
//! `GET /2018-06-01/runtime/invocation/next` and gets the event with
//! `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` (a real deadline, epoch
//! milliseconds), `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`, then
//! posts `.../invocation/{id}/response` or `.../invocation/{id}/error`; an init failure may be
//! posted to `/2018-06-01/runtime/init/error`.
//!
//! Why not cargo-lambda's emulator (`cargo lambda watch`, which the stack runs): it starts every
//! function with the one environment it was started with, so a test cannot point one function
//! at a fault proxy without pointing all of them there, and it sends the function's timeout
//! (`600000`) in `Lambda-Runtime-Deadline-Ms` instead of an epoch deadline, so no function
//! under it ever sees a real deadline. Here each [`Function`] gets the environment its test
//! chose, each invocation a real deadline, and a cold start is a process started by the
//! invocation itself, measured from the process start as Cognito counts it. Tests that need
//! none of this go through the stack's emulator ([`crate::lambda::invoke`]).
//!
//! As Lambda does, an invocation that is not answered by its deadline (plus a short grace, to
//! tell "late" from "never") kills the process, and the next invocation starts a new one; so
//! does a process that exits or reports an init error.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Lambda's limit on the init phase of an on-demand function.
pub const INIT_LIMIT: Duration = Duration::from_secs(10);
/// How long past its deadline an invocation is still awaited, to report a late answer as late.
pub const GRACE: Duration = Duration::from_secs(2);
/// Cognito's wait for a trigger, cold start included.
pub const COGNITO_LIMIT: Duration = Duration::from_secs(5);

/// What the caller of an invocation got.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The function's response (JSON, or a JSON string when it was not JSON).
    Ok(Value),
    /// `.../invocation/{id}/error`: the function's `errorType` and `errorMessage`.
    Error { error_type: String, message: String },
    /// `/runtime/init/error` before the invocation was taken.
    InitError { error_type: String, message: String },
    /// The process exited before answering (Lambda reports `Runtime.ExitError`).
    Exited { status: String },
    /// No answer by the deadline and the grace after it (Lambda: "Task timed out"); the
    /// process was killed.
    TimedOut,
}

/// One invocation, as its caller saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub answer: Answer,
    /// From the invoke to the answer (or to giving up). On a cold start the invoke is the
    /// process start.
    pub elapsed: Duration,
    /// This invocation started the process.
    pub cold: bool,
    /// From the invoke to the function taking the event (the init time, on a cold start).
    pub dispatched_after: Option<Duration>,
    /// From the invoke to the deadline the function was given in `Lambda-Runtime-Deadline-Ms`.
    pub deadline_after: Option<Duration>,
}

impl Outcome {
    /// An answer of any kind came within `limit` of the invoke.
    pub fn answered_within(&self, limit: Duration) -> bool {
        !matches!(self.answer, Answer::TimedOut) && self.elapsed <= limit
    }

    /// An answer came before the deadline the function was given (or, when it never took the
    /// event, within Lambda's init limit).
    pub fn answered_before_deadline(&self) -> bool {
        self.answered_within(self.deadline_after.unwrap_or(INIT_LIMIT))
    }

    /// The error text a caller would see, if the invocation failed.
    pub fn error(&self) -> Option<String> {
        match &self.answer {
            Answer::Ok(_) => None,
            Answer::Error { error_type, message } | Answer::InitError { error_type, message } => {
                Some(format!("{error_type}: {message}"))
            }
            Answer::Exited { status } => Some(format!("Runtime.ExitError: the process exited ({status})")),
            Answer::TimedOut => Some("Task timed out".into()),
        }
    }
}

/// A Lambda function: its binary, its environment, its logs, and (between invocations) its
/// running process.
pub struct Function {
    name: String,
    binary: PathBuf,
    env: BTreeMap<String, String>,
    instance: tokio::sync::Mutex<Option<Instance>>,
    logs: Arc<Mutex<String>>,
}

/// The binary of a workspace function, next to the test's own build output
/// (`<target>/debug/<name>`). Panics with the command that builds it when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // <target>/debug/deps/<test>-<hash>
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from <target>/<profile>/deps");
    let path = profile.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p {name}` (`cargo xtask test` builds every function)",
        path.display()
    );
    path
}

/// The running stack's environment for a function, as `stack env` prints it (EKS mode: no
/// `KUBECONFIG`; no emulator address).
pub fn stack_env(stack: &crate::stack::Stack) -> BTreeMap<String, String> {
    crate::stack::exports()
        .keys()
        .filter(|k| !matches!(**k, "KUBECONFIG" | crate::stack::LAMBDA_ENDPOINT_VAR))
        .map(|k| (k.to_string(), stack.var(k).to_owned()))
        .collect()
}

impl Function {
    /// The workspace function `name` (its debug binary), with exactly `env` as its environment
    /// plus what Lambda itself sets (`AWS_LAMBDA_*`; `RUST_LOG=info` unless `env` sets it).
    pub fn new(name: &str, env: BTreeMap<String, String>) -> Self {
        Self {
            name: name.to_owned(),
            binary: binary(name),
            env,
            instance: tokio::sync::Mutex::new(None),
            logs: Arc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the function's processes wrote so far, stdout and stderr.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The last `n` lines of the logs, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The same function with another build of its binary (e.g. `<target>/release/<name>`).
    pub fn with_binary(name: &str, binary: PathBuf, env: BTreeMap<String, String>) -> Self {
        assert!(binary.exists(), "{} is missing: build it first", binary.display());
        Self {
            binary,
            ..Self::new_unchecked(name, env)
        }
    }

    fn new_unchecked(name: &str, env: BTreeMap<String, String>) -> Self {
        Self {
            name: name.to_owned(),
            binary: PathBuf::new(),
            env,
            instance: tokio::sync::Mutex::new(None),
            logs: Arc::default(),
        }
    }

    /// The running process's peak resident memory (`VmHWM`), in KiB.
    pub async fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.instance.lock().await.as_ref()?.pid?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Stops the running process, if any: the next invocation is a cold start.
    pub async fn stop(&self) {
        if let Some(instance) = self.instance.lock().await.take() {
            instance.kill().await;
        }
    }

    /// Invokes with a JSON event; `timeout` is the function's configured timeout (the deadline
    /// is `timeout` after the function takes the event, as in Lambda).
    pub async fn invoke(&self, event: &Value, timeout: Duration) -> Outcome {
        self.invoke_raw(serde_json::to_vec(event).expect("JSON"), timeout)
            .await
    }

    /// Invokes with any bytes as the event (truncated or malformed JSON included).
    pub async fn invoke_raw(&self, event: Vec<u8>, timeout: Duration) -> Outcome {
        let invoked = Instant::now();
        let mut slot = self.instance.lock().await;
        let alive = slot.as_ref().is_some_and(|i| i.exited.borrow().is_none());
        let cold = !alive;
        if cold {
            if let Some(old) = slot.take() {
                old.kill().await;
            }
            *slot = Some(
                self.spawn()
                    .await
                    .unwrap_or_else(|e| panic!("cannot start {}: {e:#}", self.name)),
            );
        }
        let instance = slot.as_ref().expect("started");
        let id = crate::fresh_tenant().to_string();
        let (reply_tx, mut reply_rx) = oneshot::channel();
        let (dispatch_tx, mut dispatch_rx) = oneshot::channel();
        instance.api.waiting.lock().unwrap().insert(id.clone(), reply_tx);
        instance
            .api
            .queue
            .send(Pending {
                id,
                body: Bytes::from(event),
                timeout,
                dispatched: dispatch_tx,
            })
            .expect("the runtime API is running");
        let mut init_error = instance.api.init_error.subscribe();
        let mut exited = instance.exited.clone();
        let mut dispatched: Option<(Instant, Instant)> = None; // (taken at, deadline)
        let answer = loop {
            let give_up = match dispatched {
                None => invoked + INIT_LIMIT,
                Some((_, deadline)) => deadline + GRACE,
            };
            tokio::select! {
                taken = &mut dispatch_rx, if dispatched.is_none() => {
                    let at = taken.unwrap_or_else(|_| Instant::now());
                    dispatched = Some((at, at + timeout));
                }
                reply = &mut reply_rx => break match reply {
                    Ok(Reply::Response(body)) => Answer::Ok(
                        serde_json::from_slice(&body)
                            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
                    ),
                    Ok(Reply::Error { error_type, message }) => Answer::Error { error_type, message },
                    Err(_) => Answer::Exited { status: "the runtime API closed".into() },
                },
                _ = init_error.changed() => {
                    let (error_type, message) = init_error.borrow().clone().unwrap_or_default();
                    break Answer::InitError { error_type, message };
                }
                _ = exited.changed() => {
                    // An answer posted just before the exit wins.
                    if let Ok(Reply::Response(body)) = reply_rx.try_recv() {
                        break Answer::Ok(serde_json::from_slice(&body).unwrap_or_default());
                    }
                    let status = exited.borrow().clone().unwrap_or_default();
                    break Answer::Exited { status };
                }
                _ = tokio::time::sleep_until(give_up.into()) => break Answer::TimedOut,
            }
        };
        let elapsed = invoked.elapsed();
        if !matches!(answer, Answer::Ok(_) | Answer::Error { .. })
            && let Some(instance) = slot.take()
        {
            instance.kill().await;
        }
        Outcome {
            answer,
            elapsed,
            cold,
            dispatched_after: dispatched.map(|(at, _)| at - invoked),
            deadline_after: dispatched.map(|(_, deadline)| deadline - invoked),
        }
    }

    async fn spawn(&self) -> Result<Instance> {
        let (api, server, addr) = Api::serve(&self.name).await?;
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(&self.env)
            .env("AWS_LAMBDA_RUNTIME_API", addr)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", self.name))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "testkit")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(collect(out, self.logs.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(collect(err, self.logs.clone()));
        }
        let pid = child.id();
        let (exited_tx, exited) = watch::channel(None);
        let (kill, kill_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let text = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            exited_tx.send_replace(Some(text));
        });
        Ok(Instance {
            api,
            server,
            pid,
            exited,
            kill: Some(kill),
        })
    }
}

async fn collect(stream: impl AsyncRead + Unpin, logs: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut logs = logs.lock().unwrap();
        logs.push_str(&strip_ansi(&line));
        logs.push('\n');
    }
}

/// The text of a log line without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Instance {
    api: Arc<Api>,
    server: JoinHandle<()>,
    pid: Option<u32>,
    exited: watch::Receiver<Option<String>>,
    kill: Option<oneshot::Sender<()>>,
}

impl Instance {
    async fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        let _ = self.exited.wait_for(Option::is_some).await;
        self.server.abort();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        self.server.abort();
    }
}

struct Pending {
    id: String,
    body: Bytes,
    timeout: Duration,
    dispatched: oneshot::Sender<Instant>,
}

enum Reply {
    Response(Bytes),
    Error { error_type: String, message: String },
}

/// The Runtime API of one process.
struct Api {
    queue: mpsc::UnboundedSender<Pending>,
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    init_error: watch::Sender<Option<(String, String)>>,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    arn: String,
}

const PREFIX: &str = "/2018-06-01/runtime";

impl Api {
    async fn serve(function: &str) -> Result<(Arc<Self>, JoinHandle<()>, String)> {
        let (queue, next) = mpsc::unbounded_channel();
        let api = Arc::new(Self {
            queue,
            next: tokio::sync::Mutex::new(next),
            waiting: Mutex::default(),
            init_error: watch::channel(None).0,
            arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let served = api.clone();
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let api = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.route(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok((api, server, addr))
    }

    async fn route(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return reply(StatusCode::NOT_FOUND, "{\"errorMessage\":\"unknown path\"}");
        };
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (Method::GET, ["invocation", "next"]) => self.next().await,
            (Method::POST, ["invocation", id, "response"]) => {
                let id = id.to_string();
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                self.deliver(&id, Reply::Response(body))
            }
            (Method::POST, ["invocation", id, "error"]) => {
                let id = id.to_string();
                let (error_type, message) = diagnostic(request).await;
                self.deliver(&id, Reply::Error { error_type, message })
            }
            (Method::POST, ["init", "error"]) => {
                let diagnostic = diagnostic(request).await;
                self.init_error.send_replace(Some(diagnostic));
                reply(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
            }
            _ => reply(StatusCode::NOT_FOUND, "{\"errorMessage\":\"unknown path\"}"),
        }
    }

    async fn next(&self) -> Response<Full<Bytes>> {
        let pending = self.next.lock().await.recv().await;
        let Some(pending) = pending else {
            return reply(StatusCode::GONE, "{}");
        };
        let taken = Instant::now();
        let deadline = SystemTime::now() + pending.timeout;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        let _ = pending.dispatched.send(taken);
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", &pending.id)
            .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
            .header("lambda-runtime-invoked-function-arn", &self.arn)
            .header(
                "lambda-runtime-trace-id",
                format!(
                    "Root=1-{:08x}-{};Parent=0000000000000000;Sampled=0",
                    deadline_ms / 1000,
                    &pending.id.replace('-', "")[..24]
                ),
            )
            .body(Full::new(pending.body))
            .expect("a valid response")
    }

    fn deliver(&self, id: &str, answer: Reply) -> Response<Full<Bytes>> {
        match self.waiting.lock().unwrap().remove(id) {
            Some(waiter) => {
                let _ = waiter.send(answer);
                reply(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
            }
            None => reply(
                StatusCode::BAD_REQUEST,
                "{\"errorType\":\"InvalidRequestID\",\"errorMessage\":\"unknown or already answered request id\"}",
            ),
        }
    }
}

async fn diagnostic(request: Request<Incoming>) -> (String, String) {
    let header_type = request
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let error_type = parsed["errorType"]
        .as_str()
        .map(str::to_owned)
        .or(header_type)
        .unwrap_or_default();
    let message = parsed["errorMessage"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    (error_type, message)
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a valid response")
}
