//! Test fixtures: the real llama.cpp model server (started through the project's script) and a
//! small named stub HTTP server for what the real one cannot produce.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const TEST_KEY: &str = "test-key";

/// The project's model-server script, found from whichever crate includes this fixture.
pub fn script() -> PathBuf {
    let rel = "packaging/scripts/model-server.sh";
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join(rel))
        .find(|path| path.exists())
        .expect("packaging/scripts/model-server.sh above the crate")
}

/// Why the real model server cannot be used, as every test that needs it reports it.
fn unavailable(reason: &str) -> String {
    format!("the real model server (packaging/scripts/model-server.sh) could not start: {reason}")
}

/// Installs the real model server through the script (idempotent, fast when installed).
fn install() -> Result<(), String> {
    let out = Command::new("bash")
        .arg(script())
        .arg("install")
        .output()
        .map_err(|e| format!("run model-server.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "model-server.sh install failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Installs the real model server, or panics naming the part and the reason.
pub fn ensure_installed() {
    install().unwrap_or_else(|reason| panic!("{}", unavailable(&reason)));
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

/// A running real model server; stopped by PID when dropped (also on panic).
#[derive(Debug)]
pub struct RealServer {
    pub pid: u32,
    pub port: u16,
}

impl RealServer {
    /// Starts the server (installing it first through the script if needed). Panics, naming
    /// the part and the reason, when it cannot start: the project installs this server, so a
    /// test that cannot reach it fails instead of passing without having exercised it.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|reason| panic!("{}", unavailable(&reason)))
    }

    /// Starts the server (installing it first through the script if needed), or returns the
    /// reason it cannot start here.
    fn try_start() -> Result<Self, String> {
        match Self::start_once() {
            Err((3, _)) => {
                install()?;
                Self::start_once().map_err(|(_, reason)| reason)
            }
            other => other.map_err(|(_, reason)| reason),
        }
    }

    /// One start attempt; the error carries the script's exit code (3 = not installed).
    fn start_once() -> Result<Self, (i32, String)> {
        let port = free_port().map_err(|e| (1, format!("pick a loopback port: {e}")))?;
        let out = Command::new("bash")
            .arg(script())
            .args(["start", &port.to_string(), TEST_KEY])
            .output()
            .map_err(|e| (1, format!("run model-server.sh: {e}")))?;
        if !out.status.success() {
            let reason = format!(
                "model-server.sh start failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Err((out.status.code().unwrap_or(1), reason));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let pid = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("pid="))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| (1, format!("no pid in script output {text:?}")))?;
        Ok(Self { pid, port })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", &self.pid.to_string()])
            .status();
    }
}

/// One scripted stub reply.
#[derive(Clone, Debug)]
pub enum StubReply {
    /// Status, extra headers, body.
    Http(u16, Vec<(String, String)>, String),
    /// Close the connection without answering.
    Drop,
    /// Answer 200 with an SSE body.
    Sse(String),
    /// Read the request, then never answer (holds the connection for a minute).
    Hang,
}

/// A STUB OpenAI-compatible server on loopback: answers each request with the next scripted
/// reply (the last one repeats). Used only for tool calls, 429 with Retry-After and dropped
/// connections, which the real SmolLM2 server cannot produce.
#[derive(Debug, Clone)]
pub struct Stub {
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    pub async fn start(replies: Vec<StubReply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let reply = replies[n.min(replies.len() - 1)].clone();
                n += 1;
                let seen = seen.clone();
                tokio::spawn(async move {
                    let request = read_request(&mut sock).await;
                    seen.lock().unwrap().push(request);
                    let bytes = match reply {
                        StubReply::Drop => return,
                        StubReply::Hang => {
                            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                            return;
                        }
                        StubReply::Http(status, headers, body) => {
                            let mut head = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                                body.len()
                            );
                            for (k, v) in headers {
                                head.push_str(&format!("{k}: {v}\r\n"));
                            }
                            format!("{head}\r\n{body}")
                        }
                        StubReply::Sse(body) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                    };
                    let _ = sock.write_all(bytes.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { base_url, requests }
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while let Ok(n) = sock.read(&mut tmp).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
