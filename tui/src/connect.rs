//! Where agtop looks for the daemon: `--socket`, else `$RUNLOOP__RUNTIME__SOCKET_PATH`,
//! else `$RUNLOOP__RUNTIME__SOCKETS_DIR`, the user's `~/.runloop/sock/rmp.sock` and the
//! system socket, in `runloop_client::discovery`'s order. The config file itself is not
//! read: its parser lives in the kernel crate, which agtop must not link.

use std::path::{Path, PathBuf};

use runloop_client::SocketPlaces;

/// The environment agtop reads, as plain values (so tests pass their own).
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub socket_path: Option<String>,
    pub sockets_dir: Option<String>,
    pub home: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            socket_path: var("RUNLOOP__RUNTIME__SOCKET_PATH"),
            sockets_dir: var("RUNLOOP__RUNTIME__SOCKETS_DIR"),
            home: var("HOME").map(PathBuf::from),
        }
    }
}

/// `~/x` under `home`; any other path as it is.
fn expand(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// The places to try, `--socket` first.
pub fn places(flag: Option<&Path>, env: &Env) -> SocketPlaces {
    let home = env.home.as_deref();
    SocketPlaces {
        socket_path: flag
            .map(Path::to_owned)
            .or_else(|| env.socket_path.as_deref().map(|p| expand(p, home))),
        sockets_dir: env.sockets_dir.as_deref().map(|d| expand(d, home)),
        user_home: env.home.clone(),
    }
}

/// The first candidate that accepts a connection, else every place tried.
pub async fn find(places: &SocketPlaces) -> Result<PathBuf, Vec<(PathBuf, String)>> {
    let mut tried = Vec::new();
    for path in places.candidates() {
        match tokio::net::UnixStream::connect(&path).await {
            Ok(_) => return Ok(path),
            Err(e) => tried.push((path, e.to_string())),
        }
    }
    Err(tried)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_then_env_then_the_default_places() {
        let env = Env {
            socket_path: Some("~/s/rmp.sock".into()),
            sockets_dir: None,
            home: Some("/home/ada".into()),
        };
        let p = places(Some(Path::new("/x.sock")), &env);
        assert_eq!(p.candidates(), [PathBuf::from("/x.sock")]);
        let p = places(None, &env);
        assert_eq!(p.candidates(), [PathBuf::from("/home/ada/s/rmp.sock")]);
        let env = Env {
            socket_path: None,
            ..env
        };
        assert_eq!(
            places(None, &env).candidates(),
            [
                PathBuf::from("/home/ada/.runloop/sock/rmp.sock"),
                PathBuf::from(runloop_client::discovery::SYSTEM_SOCKET)
            ]
        );
    }

    #[tokio::test]
    async fn nothing_listening_lists_every_place_tried() {
        let dir = std::env::temp_dir().join(format!("agtop-find-{}", std::process::id()));
        let places = SocketPlaces {
            socket_path: Some(dir.join("none.sock")),
            ..SocketPlaces::default()
        };
        let tried = find(&places).await.unwrap_err();
        assert_eq!(tried.len(), 1);
        assert_eq!(tried[0].0, dir.join("none.sock"));
    }
}
