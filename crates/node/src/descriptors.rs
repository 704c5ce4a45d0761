//! Descriptors JavaScript owns: socket pairs, close-on-exec, and passing descriptors over
//! packet sockets (`SCM_RIGHTS`); and the liveness of other processes.

use std::os::fd::{FromRawFd, OwnedFd};

use multiproc_core::sys::{fd, process};
use napi_derive::napi;

use crate::error::{os_error, Result};

/// A connected pair of Unix stream sockets (close-on-exec); JavaScript owns both descriptors.
#[napi]
pub fn socket_pair() -> Result<Vec<i32>> {
    let (a, b) = fd::socket_pair().map_err(os_error)?;
    Ok(vec![into_raw(a), into_raw(b)])
}

fn into_raw(fd: OwnedFd) -> i32 {
    use std::os::fd::IntoRawFd;
    fd.into_raw_fd()
}

#[napi]
pub fn set_cloexec(fd: i32, on: bool) -> Result<()> {
    fd::set_cloexec(fd, on).map_err(os_error)
}

/// Closes a descriptor JavaScript owns.
#[napi]
pub fn close_fd(raw: i32) {
    // SAFETY: JavaScript hands over a descriptor it owns and will not use again.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
}

/// True when every copy of the peer end of a stream socket is closed.
#[napi]
pub fn peer_hung_up(raw: i32) -> bool {
    fd::peer_hung_up(raw)
}

/// True while the process `pid` runs (and, with `start > 0`, is the one started then).
#[napi]
pub fn process_alive(pid: i32, start: f64) -> bool {
    process::is_alive(pid, start as u64)
}

/// The start time of a process (clock ticks since boot), 0 if it is gone.
#[napi]
pub fn process_start_time(pid: i32) -> f64 {
    process::start_time(pid).unwrap_or(0) as f64
}

/// Kills the calling process with SIGKILL when its parent thread exits, and checks at once.
#[napi]
pub fn die_with_parent(expected_parent: i32) -> Result<()> {
    process::set_parent_death_signal(libc::SIGKILL).map_err(os_error)?;
    if process::parent_pid() != expected_parent {
        process::raise(libc::SIGKILL);
    }
    Ok(())
}

/// A pair of packet sockets for passing descriptors: `[ours, theirs]`.
#[napi]
pub fn packet_pair() -> Result<Vec<i32>> {
    let (a, b) = fd::packet_pair().map_err(os_error)?;
    Ok(vec![into_raw(a), into_raw(b)])
}

/// Sends copies of `fds` with `tag` over a packet socket.
#[napi]
pub fn send_fds(sock: i32, tag: u32, fds: Vec<i32>) -> Result<()> {
    fd::send_fds(sock, tag, &fds).map_err(os_error)
}

/// Receives one descriptor message: `[tag, ...fds]`, or null when none arrived within `timeout_ms`.
#[napi]
pub fn recv_fds(sock: i32, timeout_ms: i32) -> Result<Option<Vec<i64>>> {
    let got = fd::recv_fds(sock, timeout_ms).map_err(os_error)?;
    Ok(got.map(|(tag, fds)| std::iter::once(tag as i64).chain(fds.into_iter().map(|f| into_raw(f) as i64)).collect()))
}
