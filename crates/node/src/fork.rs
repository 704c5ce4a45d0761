//! The fork server's calls: the server's loop (which returns in each forked child), the
//! requester's request and answers, and the forked child's own needs (a lifeline, `_exit`).

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use multiproc_core::forkserver::{self, Reply, Served};
use multiproc_core::sys::{fd, fork as sys_fork, process};
use napi::bindgen_prelude::Buffer;
use napi::Env;
use napi_derive::napi;

use crate::error::{fail, os_error, spawn_error, Result};

extern "C" {
    /// libuv's own reset for a forked child (exported by the Node binary).
    fn uv_loop_fork(event_loop: *mut napi::sys::uv_loop_s) -> std::os::raw::c_int;
}

/// Reinitialises this environment's event loop in a forked child: its epoll descriptor,
/// signal pipe and async wake-up are otherwise the server's.
fn reset_event_loop(env: &Env) -> Result<()> {
    let mut event_loop = std::ptr::null_mut();
    // SAFETY: `env` is the live environment of this call; the out-pointer is valid.
    let status = unsafe { napi::sys::napi_get_uv_event_loop(env.raw(), &mut event_loop) };
    if status != napi::sys::Status::napi_ok || event_loop.is_null() {
        return Err(fail("ERR_FORKSERVER", "the event loop of the forked child could not be reached"));
    }
    // SAFETY: called once, on the loop's own (and now only) thread, right after the fork.
    let rc = unsafe { uv_loop_fork(event_loop) };
    if rc != 0 {
        return Err(fail("ERR_FORKSERVER", format!("uv_loop_fork failed ({rc})")));
    }
    Ok(())
}

/// A listening socket for a new fork server and its address: `{ fd, address }`.
#[napi(object)]
pub struct ForkserverListener {
    pub fd: i32,
    pub address: String,
}

#[napi]
pub fn forkserver_listen() -> Result<ForkserverListener> {
    let address = forkserver::new_address().map_err(os_error)?;
    let listener = sys_fork::listen_abstract(&address).map_err(os_error)?;
    Ok(ForkserverListener { fd: listener.into_raw_fd(), address })
}

/// What a forked child was asked to be: the requester's header and descriptors.
#[napi(object)]
pub struct ForkRequest {
    pub header: Buffer,
    pub fds: Vec<i32>,
}

/// Runs the fork server on `listener` until `lifeline` ends (then returns `null`). Returns in
/// every spare child too, once its event loop is its own, with the descriptor its request
/// comes on (see `forkserverTakeRequest`).
#[napi]
pub fn forkserver_serve(env: Env, listener: i32, lifeline: i32) -> Result<Option<i32>> {
    let listener = fd::adopt(listener).map_err(os_error)?;
    let lifeline = fd::adopt(lifeline).map_err(os_error)?;
    forkserver::prepare_server();
    match forkserver::serve(listener, lifeline).map_err(os_error)? {
        Served::LifelineEnded => Ok(None),
        Served::Spare(conn) => {
            reset_event_loop(&env)?;
            Ok(Some(conn.into_raw_fd()))
        }
    }
}

/// In a spare child: blocks until the server hands over its request (`null`: the server is
/// gone). Takes the descriptor `forkserverServe` returned.
#[napi]
pub fn forkserver_take_request(conn: i32) -> Result<Option<ForkRequest>> {
    let conn = fd::adopt(conn).map_err(os_error)?;
    Ok(forkserver::take_request(conn).map_err(os_error)?.map(|req| ForkRequest {
        header: req.header.into(),
        fds: req.fds.into_iter().map(|f| f.into_raw_fd()).collect(),
    }))
}

/// Sends a request to the server at `address`; returns the connection its answers come on.
#[napi]
pub fn forkserver_request(address: String, header: &[u8], fds: Vec<i32>) -> Result<i32> {
    match forkserver::request(&address, header, &fds) {
        Ok(conn) => Ok(conn.into_raw_fd()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::ENOENT)) => {
            Err(fail("ERR_FORKSERVER_DOWN", "no fork server listens at its address"))
        }
        Err(e) => Err(os_error(e)),
    }
}

/// The next answer on a request's connection, within `timeout_ms` (0: only if there is one):
/// `[1, pid, pidfd]` started, `[2, code]` exited, `[3, errno]` fork failed, `[0]` the server
/// is gone; `null` when none came in time.
#[napi]
pub fn forkserver_receive(conn: i32, timeout_ms: i32) -> Result<Option<Vec<i32>>> {
    Ok(forkserver::receive(conn, timeout_ms).map_err(os_error)?.map(|reply| match reply {
        Reply::Started { pid, pidfd } => vec![1, pid, pidfd.into_raw_fd()],
        Reply::Exited(code) => vec![2, code],
        Reply::Failed(errno) => vec![3, errno],
        Reply::Gone => vec![0],
    }))
}

/// The message of an errno the server answered with, as a spawn failure would read.
#[napi]
pub fn forkserver_failure(errno: i32) -> Result<()> {
    Err(spawn_error(std::io::Error::from_raw_os_error(errno)))
}

/// Sends `signal` through a pidfd JavaScript owns (a gone process is not an error).
#[napi]
pub fn pidfd_signal(pidfd: i32, signal: i32) -> Result<()> {
    let owned = fd::adopt(pidfd).map_err(os_error)?;
    let result = process::pidfd_signal(&owned, signal);
    let _ = owned.into_raw_fd();
    result.map_err(os_error)
}

/// Whether the process behind a pidfd JavaScript owns has exited, waiting up to `timeout_ms`.
#[napi]
pub fn pidfd_exited(pidfd: i32, timeout_ms: i32) -> Result<bool> {
    let owned = fd::adopt(pidfd).map_err(os_error)?;
    let exited = process::pidfd_exited(&owned, timeout_ms);
    let _ = owned.into_raw_fd();
    Ok(exited)
}

/// A pidfd of this process (close-on-exec): readable once it has exited.
#[napi]
pub fn own_pidfd() -> Result<i32> {
    Ok(process::pidfd_open(process::current_pid()).map_err(os_error)?.into_raw_fd())
}

/// This process's pid, asked of the kernel (a forked child's `process.pid` is the server's).
#[napi]
pub fn current_pid() -> i32 {
    process::current_pid()
}

/// Kills this process as soon as `fd` (a pidfd of the requester) becomes readable.
#[napi]
pub fn die_with_lifeline(lifeline: i32) -> Result<()> {
    // SAFETY: JavaScript hands over a descriptor it owns and will not use again.
    let owned = unsafe { OwnedFd::from_raw_fd(lifeline) };
    forkserver::die_when_readable(owned).map_err(os_error)
}

/// Ends the process at once with `code` (`_exit`): a forked child's only safe way out.
#[napi]
pub fn exit_now(code: i32) {
    forkserver::exit_now(code)
}

/// Puts a forked child's standard streams in place: `stdout` and `stderr` (descriptors the
/// requester sent, closed here) onto 1 and 2, `/dev/null` onto 0, as a spawned child has them.
#[napi]
pub fn forked_stdio(stdout: i32, stderr: i32) -> Result<()> {
    // SAFETY: JavaScript hands over descriptors it owns and will not use again.
    let (out, err) = unsafe { (OwnedFd::from_raw_fd(stdout), OwnedFd::from_raw_fd(stderr)) };
    let null = std::fs::File::open("/dev/null").map_err(os_error)?;
    sys_fork::duplicate_onto(null.as_raw_fd(), 0).map_err(os_error)?;
    sys_fork::duplicate_onto(out.as_raw_fd(), 1).map_err(os_error)?;
    sys_fork::duplicate_onto(err.as_raw_fd(), 2).map_err(os_error)?;
    Ok(())
}
