//! Who holds the socket bound at a path: what `runloopd` says when it finds its socket
//! answered by someone else, and how it tells a live daemon from the short-lived leftovers
//! of a killed one.
//!
//! The sockets of this network namespace come from `/proc/net/unix` (path and inode),
//! their holders from the fds under `/proc/<pid>/fd` (both through `procfs`). Only one
//! socket can be bound at a path, so the one found there is the listener that answered. A
//! process of another uid is not readable unless we are root: it is then not named.

use std::path::Path;

use procfs::process::FDTarget;

/// Most processes looked at, and most holders named.
const PROCESSES_MAX: usize = 65_536;
const HOLDERS_MAX: usize = 16;
/// Most fds looked at per process.
const FDS_MAX: usize = 65_536;

/// One process holding the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// The process's name (`comm` of its main thread; "?" when unreadable).
    pub comm: String,
}

/// The processes holding the socket bound at `path` (at most [`HOLDERS_MAX`]).
pub fn listening_holders(path: &Path) -> Vec<Holder> {
    let inodes: Vec<u64> = procfs::net::unix()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.path.as_deref() == Some(path))
        .map(|e| e.inode)
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut holders = Vec::new();
    for process in procs.take(PROCESSES_MAX).flatten() {
        let Ok(fds) = process.fd() else { continue };
        let holds = fds
            .take(FDS_MAX)
            .flatten()
            .any(|fd| matches!(fd.target, FDTarget::Socket(i) if inodes.contains(&i)));
        if holds {
            let comm = process
                .stat()
                .map(|s| s.comm)
                .unwrap_or_else(|_| "?".into());
            holders.push(Holder {
                pid: process.pid().unsigned_abs(),
                comm,
            });
            if holders.len() == HOLDERS_MAX {
                break;
            }
        }
    }
    holders
}

/// "pid 12 (runloopd), pid 40 (sandbox-spawner)", or that no visible process holds it.
pub fn describe(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "no process this user can see holds it".into();
    }
    holders
        .iter()
        .map(|h| format!("pid {} ({})", h.pid, h.comm))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_listener_is_found_in_this_process_and_gone_once_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rmp.sock");
        let other = dir.path().join("rmp.sock.old");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let _beside = std::os::unix::net::UnixListener::bind(&other).expect("bind");
        let holders = listening_holders(&path);
        assert_eq!(
            holders.iter().map(|h| h.pid).collect::<Vec<_>>(),
            vec![std::process::id()],
            "{holders:?}"
        );
        assert!(describe(&holders).starts_with(&format!("pid {} (", std::process::id())));
        drop(listener);
        assert_eq!(listening_holders(&path), Vec::new());
        assert_eq!(listening_holders(&dir.path().join("nothing")), Vec::new());
        assert_eq!(describe(&[]), "no process this user can see holds it");
    }
}
