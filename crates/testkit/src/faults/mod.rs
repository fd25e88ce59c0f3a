//! A fault-injecting proxy, placed in front of a real server in a test: the function under test
//! talks to the proxy's port, the proxy forwards to the server, and the test decides at run time
//! what goes wrong in between.
//!
//! Connection faults ([`Proxy::tcp`], and every HTTP proxy too):
//! - pass through (the default, and what [`Proxy::heal`] returns to);
//! - black hole: connections are accepted, nothing is forwarded or answered, ever
//!   ([`Proxy::black_hole`]); connections open at that moment go silent too;
//! - reset: every open connection is reset now ([`Proxy::reset_all`]), or the next `n` that carry
//!   data are reset when they do ([`Proxy::reset_next`], a one-off blip);
//! - latency on every chunk, both ways ([`Proxy::latency`]);
//! - stop listening (connections refused, open ones reset, as when a server dies) and start
//!   again on the same port ([`Proxy::stop`], [`Proxy::start`]).
//!
//! HTTP faults ([`Proxy::http`], [`Proxy::https`]): requests that match a [`Rule`] (method,
//! path pattern, headers; the first `n` times or always) are answered by the proxy with a
//! [`Canned`] response instead of being forwarded: a plain status, a Kubernetes `Status`
//! object, AWS JSON 1.1 throttling, `Retry-After`... Every request is recorded
//! ([`Proxy::requests`]) so a test can tell what the client did (retried? waited?).
//!
//! The HTTP layer runs behind the connection layer: the outer listener relays bytes to an inner
//! HTTP server on an ephemeral port, which answers or forwards each request to the real server
//! over a connection of its own (TLS to the server when its URL is `https`).

mod handoff;
mod http;
mod rig;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::handoff::{HandOffQueue, HandedOff};
pub use self::http::{Canned, Rule, Seen};
pub use self::rig::{PATIENT_SYNC, POST_CONFIRMATION_TIMEOUT, Rig, Verdict, check_clear_error, reference_in};
pub use self::tls::TestCa;

/// How long the proxy waits for the real server to accept a connection.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(5);

/// What happens to bytes on the proxy's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Pass,
    BlackHole,
}

struct Shared {
    port: u16,
    /// Where accepted connections are relayed: the real server, or the inner HTTP layer.
    target: SocketAddr,
    flow: watch::Sender<Flow>,
    latency: Mutex<Duration>,
    /// Connections still to reset on their next chunk from the client.
    resets: AtomicUsize,
    /// Bumped to reset every open connection.
    epoch: watch::Sender<u64>,
    accept_loop: Mutex<Option<JoinHandle<()>>>,
    accepted: AtomicUsize,
}

/// A proxy on `127.0.0.1:<ephemeral port>` in front of one real server. Dropping it stops it.
pub struct Proxy {
    shared: Arc<Shared>,
    http: Option<Arc<http::Layer>>,
}

impl Proxy {
    /// A byte-level proxy (AMQP, or anything over TCP) in front of `upstream` (`host:port`).
    pub async fn tcp(upstream: &str) -> Result<Self> {
        let target = resolve(upstream).await?;
        Self::listen(target, None).await
    }

    /// An HTTP proxy in front of `upstream` (`http://` or `https://` base URL; for `https` the
    /// server is verified against `upstream_ca_pem`). Clients talk plain HTTP to the proxy.
    pub async fn http(upstream: &str, upstream_ca_pem: Option<&str>) -> Result<Self> {
        let layer = http::Layer::start(upstream, upstream_ca_pem, None).await?;
        let target = layer.addr();
        Self::listen(target, Some(layer)).await
    }

    /// An HTTPS proxy: terminates TLS with a certificate of `ca` (clients trust `ca.pem()`), and
    /// forwards to `upstream` over TLS verified against `upstream_ca_pem`. The Kubernetes API's
    /// stand-in is reached this way, as a function reaches EKS.
    pub async fn https(upstream: &str, upstream_ca_pem: Option<&str>, ca: &TestCa) -> Result<Self> {
        let layer = http::Layer::start(upstream, upstream_ca_pem, Some(ca.server_config()?)).await?;
        let target = layer.addr();
        Self::listen(target, Some(layer)).await
    }

    async fn listen(target: SocketAddr, http: Option<Arc<http::Layer>>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            port,
            target,
            flow: watch::channel(Flow::Pass).0,
            latency: Mutex::new(Duration::ZERO),
            resets: AtomicUsize::new(0),
            epoch: watch::channel(0).0,
            accept_loop: Mutex::new(None),
            accepted: AtomicUsize::new(0),
        });
        let handle = tokio::spawn(accept_loop(shared.clone(), listener));
        *shared.accept_loop.lock().unwrap() = Some(handle);
        if let Some(layer) = &http {
            // A rule may stop the server mid-request ("RabbitMQ died while creating the vhost").
            let weak = Arc::downgrade(&shared);
            layer.on_stop(Box::new(move || {
                if let Some(shared) = weak.upgrade() {
                    stop_listening(&shared);
                }
            }));
        }
        Ok(Self { shared, http })
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.shared.port)
    }

    /// `<scheme>://127.0.0.1:<port>` for an HTTP(S) proxy's clients.
    pub fn url(&self) -> String {
        let scheme = match &self.http {
            Some(layer) if layer.terminates_tls() => "https",
            _ => "http",
        };
        format!("{scheme}://127.0.0.1:{}", self.shared.port)
    }

    /// Back to a faithful proxy: listening, passing, no latency, no pending resets, no rules.
    pub async fn heal(&self) -> Result<()> {
        self.shared.flow.send_replace(Flow::Pass);
        *self.shared.latency.lock().unwrap() = Duration::ZERO;
        self.shared.resets.store(0, Ordering::SeqCst);
        if let Some(layer) = &self.http {
            layer.clear_rules();
        }
        self.start().await
    }

    /// Accept connections and never answer; open connections go silent too.
    pub fn black_hole(&self) {
        self.shared.flow.send_replace(Flow::BlackHole);
    }

    /// Forward again (connections already swallowed by a black hole stay silent, as on a real
    /// network path that dropped them).
    pub fn pass(&self) {
        self.shared.flow.send_replace(Flow::Pass);
    }

    /// Delay every chunk, in both directions, by `delay`.
    pub fn latency(&self, delay: Duration) {
        *self.shared.latency.lock().unwrap() = delay;
    }

    /// Reset (TCP RST) every open connection now.
    pub fn reset_all(&self) {
        self.shared.epoch.send_modify(|e| *e += 1);
    }

    /// Reset the next `n` connections that send something, at that moment (the request is lost
    /// in flight).
    pub fn reset_next(&self, n: usize) {
        self.shared.resets.store(n, Ordering::SeqCst);
    }

    /// Stop listening (new connections are refused once this returns) and reset every open
    /// connection: the server went away.
    pub async fn stop(&self) {
        let handle = stop_listening(&self.shared);
        if let Some(handle) = handle {
            // An aborted task resolves once it is dropped, and with it the listener.
            let _ = handle.await;
        }
    }

    /// Listen again on the same port (no-op when listening).
    pub async fn start(&self) -> Result<()> {
        if let Some(handle) = self.shared.accept_loop.lock().unwrap().as_ref()
            && !handle.is_finished()
        {
            return Ok(());
        }
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.shared.port)).await {
                Ok(l) => break l,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("re-listening on port {}", self.shared.port));
                }
            }
        };
        let handle = tokio::spawn(accept_loop(self.shared.clone(), listener));
        *self.shared.accept_loop.lock().unwrap() = Some(handle);
        Ok(())
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Answer requests matching `rule` with its canned response instead of forwarding them.
    /// Panics on a byte-level proxy.
    pub fn answer(&self, rule: Rule) {
        self.http_layer().add_rule(rule);
    }

    /// Forward everything again (rules removed), leaving connection faults as they are.
    pub fn clear_rules(&self) {
        self.http_layer().clear_rules();
    }

    /// Every HTTP request seen so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.http_layer().seen()
    }

    fn http_layer(&self) -> &http::Layer {
        self.http
            .as_deref()
            .expect("HTTP rules need an HTTP proxy (Proxy::http or Proxy::https)")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        stop_listening(&self.shared);
        if let Some(layer) = &self.http {
            layer.stop();
        }
    }
}

fn stop_listening(shared: &Shared) -> Option<JoinHandle<()>> {
    let handle = shared.accept_loop.lock().unwrap().take();
    if let Some(handle) = &handle {
        handle.abort();
    }
    shared.epoch.send_modify(|e| *e += 1);
    handle
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    while let Ok((client, _)) = listener.accept().await {
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(relay(shared.clone(), client));
    }
}

/// How one direction of a relayed connection ended.
enum End {
    Closed,
    Reset,
    Swallowed,
}

async fn relay(shared: Arc<Shared>, client: TcpStream) {
    let mut epoch = shared.epoch.subscribe();
    epoch.mark_unchanged();
    let _ = client.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let connected = tokio::time::timeout(UPSTREAM_CONNECT, TcpStream::connect(shared.target)).await;
    let Ok(Ok(upstream)) = connected else {
        reset(client_read, client_write);
        return;
    };
    let _ = upstream.set_nodelay(true);
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let end = tokio::select! {
        end = pump(&shared, &mut client_read, &mut upstream_write, true) => end,
        end = pump(&shared, &mut upstream_read, &mut client_write, false) => end,
        _ = epoch.changed() => End::Reset,
    };
    match end {
        End::Closed => {}
        End::Reset => reset(client_read, client_write),
        End::Swallowed => {
            // Keep the client's connection open and silent until it gives up or is reset.
            drop((upstream_read, upstream_write));
            let mut sink = [0u8; 4096];
            let swallow = async { while matches!(client_read.read(&mut sink).await, Ok(n) if n > 0) {} };
            tokio::select! {
                _ = swallow => {}
                _ = epoch.changed() => reset(client_read, client_write),
            }
        }
    }
}

async fn pump(shared: &Shared, from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, from_client: bool) -> End {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if *shared.flow.borrow() == Flow::BlackHole {
            return End::Swallowed;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return End::Closed,
            Ok(n) => n,
        };
        if from_client
            && shared
                .resets
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return End::Reset;
        }
        let delay = *shared.latency.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if *shared.flow.borrow() == Flow::BlackHole {
            return End::Swallowed;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
    }
}

/// Closes the client's connection with a TCP RST, as a crashed peer or a middlebox does.
fn reset(read: OwnedReadHalf, write: OwnedWriteHalf) {
    let _ = read.as_ref().set_zero_linger();
    drop((read, write));
}
