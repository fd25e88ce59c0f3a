//! The HTTP layer of a fault proxy: answers requests that match a rule with a canned response,
//! forwards the others to the real server, and records every request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::UPSTREAM_CONNECT;

/// A response the proxy gives instead of forwarding.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    /// `status` with a small JSON body, as the RabbitMQ management API words its errors.
    pub fn status(status: u16) -> Self {
        Self::json(
            status,
            &json!({"error": "injected_fault", "reason": format!("testkit::faults answered {status}")}),
        )
    }

    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    /// A Kubernetes API error as the API server sends it: a `Status` object with the reason the
    /// API server uses for `code` (500 InternalError, 409 Conflict, 422 Invalid, 429
    /// TooManyRequests with `Retry-After: 1`, 503 ServiceUnavailable, 404 NotFound).
    pub fn kube(code: u16) -> Self {
        let (reason, message) = match code {
            409 => (
                "Conflict",
                "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas",
            ),
            422 => (
                "Invalid",
                "the object is invalid: spec.template.spec.containers[0].image: Required value",
            ),
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            404 => ("NotFound", "the server could not find the requested resource"),
            _ => (
                "InternalError",
                "Internal error occurred: etcdserver: request timed out",
            ),
        };
        let mut details = json!({});
        if code == 429 {
            details["retryAfterSeconds"] = 1.into();
        }
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code,
        });
        let canned = Self::json(code, &status);
        if code == 429 {
            canned.header("retry-after", "1")
        } else {
            canned
        }
    }

    /// Secrets Manager throttling as AWS sends it (JSON 1.1 protocol): 400 with
    /// `__type: ThrottlingException`.
    pub fn aws_throttling() -> Self {
        Self {
            status: 400,
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                (
                    "x-amzn-requestid".into(),
                    "6a1f0e42-0000-4000-8000-fa017fa017fa".into(),
                ),
            ],
            body: json!({"__type": "ThrottlingException", "message": "Rate exceeded"}).to_string(),
        }
    }

    /// Adds (or replaces) a header, e.g. `Retry-After`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(name, value);
        }
        response
            .body(Full::new(Bytes::from(self.body.clone())))
            .expect("a valid canned response")
    }
}

#[derive(Clone, Debug)]
enum Action {
    Respond(Canned),
    StopServer,
}

/// Which requests to intercept, how often, and what to do instead of forwarding them.
#[derive(Clone, Debug)]
pub struct Rule {
    method: Option<String>,
    path: String,
    headers: Vec<(String, String)>,
    remaining: Option<usize>,
    action: Action,
}

impl Rule {
    /// Requests with `method` (`"*"` for any) whose path (without the query) matches `path`,
    /// where `*` stands for any run of characters. Answered with a plain 500 unless
    /// [`Rule::respond`] says otherwise; always, unless [`Rule::times`] says otherwise.
    pub fn on(method: &str, path: &str) -> Self {
        Self {
            method: (method != "*").then(|| method.to_ascii_uppercase()),
            path: path.to_owned(),
            headers: Vec::new(),
            remaining: None,
            action: Action::Respond(Canned::status(500)),
        }
    }

    /// Only requests carrying this header value (name case-insensitive, value a pattern like
    /// the path), e.g. `x-amz-target: secretsmanager.*`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Only the first `n` matching requests; later ones are forwarded.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    pub fn respond(mut self, canned: Canned) -> Self {
        self.action = Action::Respond(canned);
        self
    }

    /// The server dies on this request: the proxy stops listening and resets every connection,
    /// this one included, until [`super::Proxy::start`].
    pub fn stop_server(mut self) -> Self {
        self.action = Action::StopServer;
        self
    }

    fn matches(&self, method: &str, path: &str, headers: &hyper::HeaderMap) -> bool {
        self.remaining != Some(0)
            && self.method.as_deref().is_none_or(|m| m == method)
            && glob(&self.path, path)
            && self.headers.iter().all(|(name, value)| {
                headers
                    .get_all(name.as_str())
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| glob(value, v)))
            })
    }
}

/// `*` matches any run of characters (including none, including `/`).
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `x-amz-target` (the operation of an AWS JSON request), when present.
    pub target: Option<String>,
    /// The status the proxy answered itself, `None` when the request was forwarded.
    pub injected: Option<u16>,
    pub at: Instant,
}

struct Upstream {
    addr: SocketAddr,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

type Stopper = Box<dyn Fn() + Send + Sync>;

pub(super) struct Layer {
    addr: SocketAddr,
    terminates_tls: bool,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    stopper: OnceLock<Stopper>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Layer {
    pub(super) async fn start(
        upstream: &str,
        upstream_ca_pem: Option<&str>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Arc<Self>> {
        let upstream = upstream_of(upstream, upstream_ca_pem).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let layer = Arc::new(Self {
            addr: listener.local_addr()?,
            terminates_tls: tls.is_some(),
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            stopper: OnceLock::new(),
            task: Mutex::new(None),
        });
        let upstream = Arc::new(upstream);
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let weak = Arc::downgrade(&layer);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Some(layer) = weak.upgrade() else { return };
                let upstream = upstream.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                serve(layer, upstream, tls).await;
                            }
                        }
                        None => serve(layer, upstream, tcp).await,
                    }
                });
            }
        });
        *layer.task.lock().unwrap() = Some(task);
        Ok(layer)
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(super) fn terminates_tls(&self) -> bool {
        self.terminates_tls
    }

    pub(super) fn on_stop(&self, stopper: Stopper) {
        let _ = self.stopper.set(stopper);
    }

    pub(super) fn add_rule(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    pub(super) fn clear_rules(&self) {
        self.rules.lock().unwrap().clear();
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(super) fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// The action of the first rule that matches, counting it as used.
    fn intercept(&self, request: &Request<Incoming>) -> Option<Action> {
        let mut rules = self.rules.lock().unwrap();
        let method = request.method().as_str();
        let path = request.uri().path();
        let rule = rules
            .iter_mut()
            .find(|r| r.matches(method, path, request.headers()))?;
        if let Some(n) = &mut rule.remaining {
            *n -= 1;
        }
        Some(rule.action.clone())
    }

    fn record(&self, request: &Request<Incoming>, injected: Option<u16>) {
        self.seen.lock().unwrap().push(Seen {
            method: request.method().to_string(),
            path: request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            target: request
                .headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            injected,
            at: Instant::now(),
        });
    }
}

async fn upstream_of(url: &str, ca_pem: Option<&str>) -> Result<Upstream> {
    let url = reqwest::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    let host = url.host_str().context("the upstream URL has no host")?.to_owned();
    let port = url
        .port_or_known_default()
        .context("the upstream URL has no port")?;
    let addr = super::resolve(&format!("{host}:{port}")).await?;
    let tls = match url.scheme() {
        "http" => None,
        "https" => {
            let ca = ca_pem.context("an https upstream needs its CA")?;
            let name = ServerName::try_from(host)?;
            Some((super::tls::connector(ca)?, name))
        }
        other => bail!("scheme `{other}` is not http or https"),
    };
    Ok(Upstream { addr, tls })
}

/// Serves one client connection; requests on it share one upstream connection, opened lazily.
async fn serve<S>(layer: Arc<Layer>, upstream: Arc<Upstream>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot: Arc<tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>> = Arc::default();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let layer = layer.clone();
        let upstream = upstream.clone();
        let slot = slot.clone();
        async move { Ok::<_, Infallible>(handle(&layer, &upstream, &slot, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(
    layer: &Layer,
    upstream: &Upstream,
    slot: &tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    match layer.intercept(&request) {
        Some(Action::Respond(canned)) => {
            layer.record(&request, Some(canned.status));
            // Read the body as a server would before answering.
            let _ = request.into_body().collect().await;
            canned.response()
        }
        Some(Action::StopServer) => {
            layer.record(&request, Some(0));
            if let Some(stop) = layer.stopper.get() {
                stop();
            }
            // The connection is being reset; never answer.
            std::future::pending().await
        }
        None => {
            layer.record(&request, None);
            forward(upstream, slot, request).await.unwrap_or_else(|e| {
                Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Full::new(Bytes::from(format!(
                        "testkit::faults: upstream: {e:#}"
                    ))))
                    .expect("a valid response")
            })
        }
    }
}

async fn forward(
    upstream: &Upstream,
    slot: &tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut sender = slot.lock().await;
    let reusable = match sender.as_mut() {
        Some(s) => s.ready().await.is_ok(),
        None => false,
    };
    if !reusable {
        *sender = Some(connect(upstream).await?);
    }
    let sender = sender.as_mut().expect("just connected");
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    for hop in ["connection", "keep-alive", "transfer-encoding", "content-length"] {
        parts.headers.remove(hop);
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

async fn connect(upstream: &Upstream) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = tokio::time::timeout(UPSTREAM_CONNECT, TcpStream::connect(upstream.addr))
        .await
        .context("connecting upstream timed out")??;
    let _ = tcp.set_nodelay(true);
    match &upstream.tls {
        None => handshake(tcp).await,
        Some((connector, name)) => {
            let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name.clone(), tcp))
                .await
                .context("TLS handshake upstream timed out")??;
            handshake(tls).await
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn star_matches_any_run() {
        assert!(glob("/api/vhosts/*", "/api/vhosts/abc"));
        assert!(glob(
            "/apis/apps/v1/namespaces/*/deployments/*",
            "/apis/apps/v1/namespaces/t/deployments/backend-x"
        ));
        assert!(!glob("/api/vhosts/*", "/api/users/abc"));
        assert!(glob("/", "/"));
        assert!(!glob("/", "/x"));
        assert!(glob("*", "/anything/at/all"));
    }
}
