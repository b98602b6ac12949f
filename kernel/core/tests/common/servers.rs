//! The project's real test servers, started by their own scripts
//! (`packaging/scripts/<name>.sh start <dir>`, which print `pid=… port=…`) and stopped by
//! pid when dropped. Stands alone: the kernel's tests have it through `common`, the CLI's
//! tests and the kernel's benches `#[path]`-include it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The project's scripts: `packaging/scripts` in the first folder above the including
/// crate that has one.
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("packaging/scripts"))
        .find(|dir| dir.is_dir())
        .expect("packaging/scripts above the crate")
}

/// One `key=value` word of what a script printed.
fn field(stdout: &str, key: &str) -> String {
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {stdout:?}"))
        .to_owned()
}

/// A server one of the project's scripts started; stopped by its pid when dropped.
pub struct Started {
    pub pid: u32,
    script: PathBuf,
    stdout: String,
}

impl Started {
    /// `packaging/scripts/<script> start <dir>`, checked: a failed start names the
    /// script's install step (`packaging/scripts/test.sh` runs it).
    pub fn start(script: &str, dir: &Path) -> Self {
        let path = scripts().join(script);
        let out = Command::new("bash")
            .arg(&path)
            .arg("start")
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script} start failed (run `packaging/scripts/{script} install`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let pid = field(&stdout, "pid=").parse().unwrap();
        Self {
            pid,
            script: path,
            stdout,
        }
    }

    /// The value the script printed for `key` (e.g. `"port="`).
    pub fn field(&self, key: &str) -> String {
        field(&self.stdout, key)
    }

    /// The value for `key` as a port.
    pub fn port(&self, key: &str) -> u16 {
        self.field(key).parse().unwrap()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let status = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(self.pid.to_string())
            .status();
        let stopped = matches!(status, Ok(s) if s.success());
        if !stopped && !std::thread::panicking() {
            panic!("{} stop {}: {status:?}", self.script.display(), self.pid);
        }
    }
}

/// The real OTLP receiver (`otlp-receiver.sh`: the official OTLP protobuf definitions
/// behind gRPC and HTTP servers on loopback), writing what it received as JSON lines.
pub struct OtlpReceiver {
    pub server: Started,
    pub grpc_port: u16,
    pub http_port: u16,
    dir: tempfile::TempDir,
}

impl OtlpReceiver {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = Started::start("otlp-receiver.sh", dir.path());
        Self {
            grpc_port: server.port("grpc_port="),
            http_port: server.port("http_port="),
            server,
            dir,
        }
    }

    /// The gRPC endpoint, as an exporter's config names it.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The HTTP (protobuf) endpoint.
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Every record received so far in `file` (`spans.jsonl`, `metrics.jsonl`).
    pub fn lines(&self, file: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The spans of one trace received so far.
    pub fn spans(&self, trace_id: &str) -> Vec<Value> {
        self.lines("spans.jsonl")
            .into_iter()
            .filter(|s| s["trace_id"] == trace_id)
            .collect()
    }
}
