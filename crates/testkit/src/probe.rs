//! A probe API server over TLS: answers every request with a Kubernetes `/version` body and
//! reports each request it saw, to check what a client sends (kubectl's exec plugin token, the
//! EKS client's bearer header).

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

/// The `/version` body, complete enough for kubectl and `kube::Client::apiserver_version`.
pub const VERSION_BODY: &str = r#"{"major":"1","minor":"36","gitVersion":"v1.36.0","gitCommit":"0","gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.23","compiler":"gc","platform":"linux/amd64"}"#;

pub struct Probe {
    pub port: u16,
    requests: UnboundedReceiver<String>,
}

impl Probe {
    pub async fn start(tls: Arc<rustls::ServerConfig>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 16 * 1024];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let _ = seen.send(String::from_utf8_lossy(&buf[..n]).to_string());
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        VERSION_BODY.len()
                    );
                    let _ = conn.write_all(format!("{head}{VERSION_BODY}").as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { port, requests }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The requests seen so far.
    pub fn requests(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            seen.push(r);
        }
        seen
    }

    /// The bearer tokens of the requests seen so far (header names are case-insensitive).
    pub fn bearer_tokens(&mut self) -> Vec<String> {
        self.requests()
            .iter()
            .flat_map(|r| r.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|l| {
                let (name, value) = l.split_once(':')?;
                let value = value.trim();
                (name.eq_ignore_ascii_case("authorization"))
                    .then(|| value.strip_prefix("Bearer ").map(str::to_owned))
                    .flatten()
            })
            .collect()
    }
}

/// A kubeconfig for `probe` in a fresh temporary folder, trusting `ca_pem`, with `user` (the
/// YAML under `user:`, indented four spaces) as its one user. Returns the folder and the file.
pub fn kubeconfig(probe: &Probe, ca_pem: &str, user: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tgsearch-kubeconfig-{}", crate::fresh_tenant()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    let file = dir.join("config");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: probe\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: probe\n  context: {{cluster: probe, user: probe}}\ncurrent-context: probe\nusers:\n- name: probe\n  user:\n{user}",
        probe.url(),
        dir.join("ca.pem").display()
    );
    std::fs::write(&file, text).unwrap();
    (dir, file)
}
