//! Who holds the listening socket bound at a path: what `runloopd` says when it finds its
//! socket answered by someone else, and how it tells a live daemon from the short-lived
//! leftovers of a killed one.
//!
//! The listening sockets of this network namespace are read from `/proc/net/unix` (path,
//! inode, the listening flag); their holders from the `socket:[inode]` links under
//! `/proc/<pid>/fd`. A process of another uid is not readable unless we are root: it is
//! then not named (the answer says how many processes could not be read).

use std::path::Path;

/// `__SO_ACCEPTCON` in `/proc/net/unix`'s Flags column: the socket listens.
const ACCEPTCON: u32 = 0x0001_0000;
/// Most processes looked at, and most holders named.
const PROCESSES_MAX: usize = 65_536;
const HOLDERS_MAX: usize = 16;
/// Most fds looked at per process.
const FDS_MAX: usize = 65_536;

/// One process holding the listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/<pid>/comm`: the name of the process's main thread ("?" when unreadable).
    pub comm: String,
}

/// The processes holding a listening socket bound at `path` (at most [`HOLDERS_MAX`]).
pub fn listening_holders(path: &Path) -> Vec<Holder> {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    let inodes = listening_inodes(&table, path);
    if inodes.is_empty() {
        return Vec::new();
    }
    let links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut holders = Vec::new();
    for entry in procs.flatten().take(PROCESSES_MAX) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().take(FDS_MAX).any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| links.iter().any(|w| l.as_os_str() == w.as_str()))
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm"))
                .map(|c| c.trim_end().to_owned())
                .unwrap_or_else(|_| "?".into());
            holders.push(Holder { pid, comm });
            if holders.len() == HOLDERS_MAX {
                break;
            }
        }
    }
    holders
}

/// The inodes of the listening sockets bound at `path`, from `/proc/net/unix`'s text.
fn listening_inodes(table: &str, path: &Path) -> Vec<u64> {
    let Some(want) = path.to_str() else {
        return Vec::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode [Path]; a path may hold spaces.
            let mut rest = line;
            let mut cols = [""; 7];
            for col in &mut cols {
                let (head, tail) = rest.trim_start().split_once(' ')?;
                *col = head;
                rest = tail;
            }
            let flags = u32::from_str_radix(cols[3], 16).ok()?;
            let inode: u64 = cols[6].parse().ok()?;
            (flags & ACCEPTCON != 0 && rest == want).then_some(inode)
        })
        .collect()
}

/// "pid 12 (runloopd), pid 40 (runloop-sandbo)", or "no process this user can see".
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
    fn the_table_gives_only_listening_sockets_at_exactly_that_path() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000058d22a7d: 00000002 00000000 00010000 0001 01 8085 /run/a/rmp.sock\n\
            000000002c3dfe23: 00000003 00000000 00000000 0001 03 8095 /run/a/rmp.sock\n\
            000000002c3dfe24: 00000002 00000000 00010000 0001 01 8096 /run/a/rmp.sock.old\n\
            000000002c3dfe25: 00000002 00000000 00010000 0001 01 8097\n";
        assert_eq!(
            listening_inodes(table, Path::new("/run/a/rmp.sock")),
            vec![8085]
        );
        assert!(listening_inodes(table, Path::new("/run/b")).is_empty());
    }

    #[test]
    fn a_live_listener_is_found_in_this_process_and_gone_once_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rmp.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let holders = listening_holders(&path);
        assert_eq!(
            holders.iter().map(|h| h.pid).collect::<Vec<_>>(),
            vec![std::process::id()],
            "{holders:?}"
        );
        assert!(describe(&holders).starts_with(&format!("pid {} (", std::process::id())));
        drop(listener);
        assert_eq!(listening_holders(&path), Vec::new());
        assert_eq!(describe(&[]), "no process this user can see holds it");
    }
}
