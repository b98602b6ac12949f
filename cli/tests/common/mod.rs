//! Shared by the CLI tests that drive a real `runloopd`: a per-test `HOME` and the daemon
//! itself (its own process and control socket), SIGTERMed and reaped when dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A fresh, empty directory for one test, used as its `HOME`.
pub fn home(prefix: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real daemon, SIGTERMed (then reaped) on drop.
pub struct Daemon(pub Child);

impl Daemon {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0.id() as i32)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

pub fn runloopd(home: &Path, socket: &Path) -> Daemon {
    let bin = Path::new(env!("CARGO_BIN_EXE_rlp")).with_file_name("runloopd");
    assert!(
        bin.is_file(),
        "build it first: cargo build -p runloop-kernel --bin runloopd"
    );
    let _ = std::fs::remove_file(socket);
    let child = Command::new(bin)
        .arg("--socket")
        .arg(socket)
        .env("HOME", home)
        .env_remove("RUNLOOP_BUNDLES_DIR")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    for _ in 0..1000 {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return daemon;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("runloopd did not listen on {}", socket.display());
}

/// `rlp` with its own `HOME`; `socket` names the daemon's (None: the default under that
/// `HOME`, where no daemon listens, so commands run embedded).
pub fn rlp_command(home: &Path, socket: Option<&Path>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rlp"));
    c.args(args)
        .env("HOME", home)
        .env_remove("RUNLOOP__RUNTIME__SOCKET_PATH")
        .env_remove("RUNLOOP_BUNDLES_DIR");
    if let Some(socket) = socket {
        c.env("RUNLOOP__RUNTIME__SOCKET_PATH", socket);
    }
    c
}

pub fn rlp(home: &Path, socket: Option<&Path>, args: &[&str]) -> Output {
    rlp_command(home, socket, args).output().unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout {}\nstderr {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// The path of an example opening in `examples/openings`.
pub fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/openings")
        .join(name)
        .display()
        .to_string()
}
