//! Looking at a sandbox's socket (and the driver's wake descriptor) with `poll`: the
//! socket is non-blocking, so every wait in `process` and `pipeline` is one of these.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Whether `sock` has something to read (data, or the peer's close) right now.
pub(crate) fn readable_now(sock: &UnixStream) -> bool {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one live, initialised pollfd; poll only writes its `revents`; a zero
    // timeout never blocks.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc != 0 && pfd.revents != 0
}

/// Waits until `sock` is ready for `events`, `wake` is readable, or `timeout` passes
/// (`None`: no limit). Returns whether `wake` is readable.
pub(crate) fn poll_fds(
    sock: &UnixStream,
    events: libc::c_short,
    wake: Option<RawFd>,
    timeout: Option<Duration>,
) -> bool {
    let timeout_ms = match timeout {
        // Rounded up, so a deadline is never polled past as "not yet" in a busy loop.
        Some(t) => i32::try_from(t.as_micros().div_ceil(1_000)).unwrap_or(i32::MAX),
        None => -1,
    };
    let (rc, fds) = poll_two(sock, events, wake, timeout_ms);
    rc > 0 && wake.is_some() && fds[1].revents & libc::POLLIN != 0
}

/// Whether the socket (for `events`) or the wake descriptor is ready now, without waiting.
pub(crate) fn ready_now(sock: &UnixStream, events: libc::c_short, wake: Option<RawFd>) -> bool {
    poll_two(sock, events, wake, 0).0 > 0
}

/// `poll` on the socket and, when given, the wake descriptor: poll's result and the fds.
fn poll_two(
    sock: &UnixStream,
    events: libc::c_short,
    wake: Option<RawFd>,
    timeout_ms: i32,
) -> (i32, [libc::pollfd; 2]) {
    let mut fds = [
        libc::pollfd {
            fd: sock.as_raw_fd(),
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let nfds = if wake.is_some() { 2 } else { 1 };
    // SAFETY: `fds` is a live array of `nfds` initialised pollfd structs; poll only writes
    // their `revents` fields. A negative fd in the second slot is ignored by poll.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout_ms) };
    (rc, fds)
}
