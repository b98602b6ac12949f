//! Where the daemon's control socket is (config v1 "Socket discovery"), from plain paths:
//! the config crate resolves the keys and the mode, this module only orders the places.

use std::path::PathBuf;

/// The socket's file name inside a sockets directory.
pub const SOCKET_FILE: &str = "rmp.sock";
/// The system daemon's socket.
pub const SYSTEM_SOCKET: &str = "/run/runloop/rmp.sock";
/// The user daemon's sockets directory, under the user's home.
pub const USER_SOCKETS_DIR: &str = ".runloop/sock";

/// The configured places, already expanded (`~` resolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketPlaces {
    /// `runtime.socket_path`: when set, the only candidate (and it must answer).
    pub socket_path: Option<PathBuf>,
    /// `runtime.sockets_dir`.
    pub sockets_dir: Option<PathBuf>,
    /// The user's home in user mode; `None` in system mode.
    pub user_home: Option<PathBuf>,
}

impl SocketPlaces {
    /// Where a client looks, in order.
    pub fn candidates(&self) -> Vec<PathBuf> {
        if let Some(path) = &self.socket_path {
            return vec![path.clone()];
        }
        let mut out = Vec::new();
        if let Some(dir) = &self.sockets_dir {
            out.push(dir.join(SOCKET_FILE));
        }
        if let Some(home) = &self.user_home {
            out.push(home.join(USER_SOCKETS_DIR).join(SOCKET_FILE));
        }
        out.push(PathBuf::from(SYSTEM_SOCKET));
        out.dedup();
        out
    }

    /// Where the daemon binds: the socket path, else the sockets dir, else the mode's
    /// default (`~/.runloop/sock/rmp.sock` for a user, `/run/runloop/rmp.sock` for the
    /// system; system mode ignores `runtime.sockets_dir`).
    pub fn bind_path(&self) -> PathBuf {
        if let Some(path) = &self.socket_path {
            return path.clone();
        }
        match &self.user_home {
            None => PathBuf::from(SYSTEM_SOCKET),
            Some(home) => match &self.sockets_dir {
                Some(dir) => dir.join(SOCKET_FILE),
                None => home.join(USER_SOCKETS_DIR).join(SOCKET_FILE),
            },
        }
    }

    /// Whether the socket path was set explicitly (then it must answer; no fallback).
    pub fn is_explicit(&self) -> bool {
        self.socket_path.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_order_and_the_short_circuit() {
        let user = SocketPlaces {
            socket_path: None,
            sockets_dir: Some("/tmp/s".into()),
            user_home: Some("/home/u".into()),
        };
        assert_eq!(
            user.candidates(),
            vec![
                PathBuf::from("/tmp/s/rmp.sock"),
                "/home/u/.runloop/sock/rmp.sock".into(),
                SYSTEM_SOCKET.into()
            ]
        );
        assert_eq!(user.bind_path(), PathBuf::from("/tmp/s/rmp.sock"));
        let explicit = SocketPlaces {
            socket_path: Some("/x.sock".into()),
            ..user
        };
        assert_eq!(explicit.candidates(), vec![PathBuf::from("/x.sock")]);
        assert!(explicit.is_explicit());
        let system = SocketPlaces {
            sockets_dir: Some("/tmp/s".into()),
            ..SocketPlaces::default()
        };
        assert_eq!(system.bind_path(), PathBuf::from(SYSTEM_SOCKET));
    }
}
