//! A fork server: a process that forks a copy of itself per request, so that a child starts
//! from a runtime that is already warm instead of from `exec`.
//!
//! A requester connects to the server's abstract Unix address and sends one request: a length
//! and an opaque header, with the descriptors the child needs attached (SCM_RIGHTS). The server
//! forks; in the child [`serve`] returns the request, in the server it answers `Started` with
//! the child's pid and a pidfd of it, watches the child, reaps it, and answers `Exited` with its
//! status on the same connection. The server ends when its lifeline (a pipe whose write end only
//! the program that started it holds) reaches end-of-file.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::sys::fork as sys;
use crate::sys::process::{self, ExitStatus};

/// The largest request header the server reads (the requester's environment is most of it).
pub const MAX_HEADER: usize = 16 << 20;
/// How long a connection may take to deliver its request once it has started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

const STARTED: u32 = 1;
const EXITED: u32 = 2;
const FAILED: u32 = 3;

/// A request as the forked child receives it.
pub struct Request {
    pub header: Vec<u8>,
    /// The descriptors sent with it, in the order they were sent (close-on-exec).
    pub fds: Vec<OwnedFd>,
}

/// How [`serve`] returned.
pub enum Served {
    /// This is a forked child, and this is what it was asked to be.
    Child(Request),
    /// The program that started the server is gone: the server should exit.
    LifelineEnded,
}

/// What the server told a requester.
#[derive(Debug)]
pub enum Reply {
    /// The child runs: its pid and a pidfd of it.
    Started { pid: i32, pidfd: OwnedFd },
    /// The child exited: Python's exit code (negative: killed by that signal).
    Exited(i32),
    /// The fork failed with this errno.
    Failed(i32),
    /// The connection ended without an answer: the server is gone.
    Gone,
}

/// A fresh abstract address (random, so that no other program can guess it).
pub fn new_address() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    sys::random_bytes(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("multiproc-forkserver-{}-{hex}", process::current_pid()))
}

/// Connects to the server at `address` and sends one request. The connection then carries
/// the server's answers (see [`receive`]).
pub fn request(address: &str, header: &[u8], fds: &[RawFd]) -> io::Result<OwnedFd> {
    if header.len() > MAX_HEADER {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the fork request is too large"));
    }
    let conn = sys::connect_abstract(address)?;
    let mut message = Vec::with_capacity(4 + header.len());
    message.extend_from_slice(&(header.len() as u32).to_le_bytes());
    message.extend_from_slice(header);
    sys::send_message(conn.as_raw_fd(), &message, fds)?;
    Ok(conn)
}

/// The next answer on a request's connection, waiting up to `timeout_ms` (negative: no limit);
/// `None` when none came in time.
pub fn receive(conn: RawFd, timeout_ms: i32) -> io::Result<Option<Reply>> {
    if !sys::wait_readable(conn, timeout_ms)? {
        return Ok(None);
    }
    let mut buf = [0u8; 8];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < buf.len() {
        if got > 0 && !sys::wait_readable(conn, 1000)? {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the fork server sent half an answer"));
        }
        let (n, more) = match sys::recv_message(conn, &mut buf[got..]) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Ok(Some(Reply::Gone)),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Some(Reply::Gone));
        }
        got += n;
        fds.extend(more);
    }
    let kind = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let value = i32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut fds = fds.into_iter();
    Ok(Some(match (kind, fds.next()) {
        (STARTED, Some(pidfd)) => Reply::Started { pid: value, pidfd },
        (EXITED, None) => Reply::Exited(value),
        (FAILED, None) => Reply::Failed(value),
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "the fork server sent an unknown answer")),
    }))
}

fn answer(conn: &OwnedFd, kind: u32, value: i32, fds: &[RawFd]) {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&kind.to_le_bytes());
    buf[4..].copy_from_slice(&value.to_le_bytes());
    // A requester that went away no longer needs the answer.
    let _ = sys::send_message(conn.as_raw_fd(), &buf, fds);
}

/// A connection whose request has not fully arrived.
struct Pending {
    conn: OwnedFd,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
    since: Instant,
}

/// A running child and the connection its exit is reported on.
struct Watched {
    pidfd: OwnedFd,
    conn: OwnedFd,
}

enum Progress {
    More,
    Complete,
    Broken,
}

impl Pending {
    fn read(&mut self) -> Progress {
        let mut chunk = vec![0u8; 64 * 1024];
        // The socket was reported readable: this read does not block.
        match sys::recv_message(self.conn.as_raw_fd(), &mut chunk) {
            Ok((0, _)) | Err(_) => Progress::Broken,
            Ok((n, fds)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.fds.extend(fds);
                if self.buf.len() < 4 {
                    return Progress::More;
                }
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
                if len > MAX_HEADER || self.buf.len() > 4 + len {
                    Progress::Broken
                } else if self.buf.len() == 4 + len {
                    Progress::Complete
                } else {
                    Progress::More
                }
            }
        }
    }
}

/// Runs the server until its lifeline ends, forking a child per request. Returns in each child
/// (with its request) and in the server once the lifeline has ended; every descriptor of the
/// server's is closed in the child before it returns.
pub fn serve(listener: OwnedFd, lifeline: OwnedFd) -> io::Result<Served> {
    let uid = sys::effective_uid();
    let mut pending: Vec<Pending> = Vec::new();
    let mut children: Vec<Watched> = Vec::new();
    loop {
        let mut fds = Vec::with_capacity(2 + pending.len() + children.len());
        fds.push(libc::pollfd { fd: lifeline.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.extend(pending.iter().map(|p| libc::pollfd { fd: p.conn.as_raw_fd(), events: libc::POLLIN, revents: 0 }));
        fds.extend(children.iter().map(|c| libc::pollfd { fd: c.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }));
        let timeout = if pending.is_empty() { -1 } else { 1000 };
        sys::poll(&mut fds, timeout)?;
        if fds[0].revents != 0 {
            return Ok(Served::LifelineEnded);
        }
        // Children first: an exit is reported before anything new is started.
        let first_child = 2 + pending.len();
        for i in (0..children.len()).rev() {
            if fds[first_child + i].revents == 0 {
                continue;
            }
            let status = match process::try_reap(&children[i].pidfd) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                // Not ours any more (cannot happen unless someone else reaped it): report a failure.
                Err(_) => ExitStatus::Exited(255),
            };
            let watched = children.swap_remove(i);
            answer(&watched.conn, EXITED, status.code(), &[]);
        }
        let mut ready = Vec::new();
        for i in (0..pending.len()).rev() {
            let revents = fds[2 + i].revents;
            if revents != 0 {
                match pending[i].read() {
                    Progress::More => {}
                    Progress::Broken => {
                        pending.swap_remove(i);
                    }
                    Progress::Complete => ready.push(pending.swap_remove(i)),
                }
            } else if pending[i].since.elapsed() > REQUEST_TIMEOUT {
                pending.swap_remove(i);
            }
        }
        if fds[1].revents != 0 {
            while let Some(conn) = sys::accept(listener.as_raw_fd())? {
                // Only this user's processes may ask: a forked child runs with our rights.
                if sys::peer_uid(conn.as_raw_fd()).ok() == Some(uid) {
                    pending.push(Pending { conn, buf: Vec::new(), fds: Vec::new(), since: Instant::now() });
                }
            }
        }
        for req in ready {
            // Forking in a `fork_all_mappings` failure would give a child without its heap.
            let forked = sys::fork_all_mappings().and_then(|()| sys::fork());
            match forked {
                Ok(0) => {
                    drop(listener);
                    drop(lifeline);
                    drop(pending);
                    drop(children);
                    sys::ignore_interrupts(false);
                    let Pending { conn, buf, fds, .. } = req;
                    drop(conn);
                    return Ok(Served::Child(Request { header: buf[4..].to_vec(), fds }));
                }
                Ok(pid) => {
                    drop(req.fds);
                    match process::pidfd_open(pid) {
                        Ok(pidfd) => {
                            answer(&req.conn, STARTED, pid, &[pidfd.as_raw_fd()]);
                            children.push(Watched { pidfd, conn: req.conn });
                        }
                        Err(e) => {
                            // Without a pidfd nobody could watch it: end it now.
                            let _ = process::kill(pid, libc::SIGKILL);
                            // The pid is our unreaped child: reap it so that no zombie stays.
                            let _ = wait_pid(pid);
                            answer(&req.conn, FAILED, e.raw_os_error().unwrap_or(libc::EIO), &[]);
                        }
                    }
                }
                Err(e) => answer(&req.conn, FAILED, e.raw_os_error().unwrap_or(libc::EIO), &[]),
            }
        }
    }
}

fn wait_pid(pid: i32) -> io::Result<()> {
    loop {
        if process::try_reap_pid(pid)?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Starts the server's side of things in this process: ignore interrupts (the program's own
/// Ctrl-C must not kill the server before the program; the lifeline ends it).
pub fn prepare_server() {
    sys::ignore_interrupts(true);
}

/// Kills this process (SIGKILL) as soon as `fd` becomes readable or hangs up: given a pidfd of
/// the requester, a forked child dies with it although its OS parent is the server.
pub fn die_when_readable(fd: OwnedFd) -> io::Result<()> {
    std::thread::Builder::new().name("multiproc-lifeline".into()).stack_size(64 * 1024).spawn(move || {
        loop {
            match sys::wait_readable(fd.as_raw_fd(), -1) {
                Ok(true) => break,
                Ok(false) => continue,
                Err(_) => break,
            }
        }
        process::raise(libc::SIGKILL);
    })?;
    Ok(())
}

/// Ends the process at once, without exit handlers (what a forked runtime must do: its
/// teardown would wait for threads that only the server has).
pub fn exit_now(code: i32) -> ! {
    sys::exit_now(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_forked_answered_and_reported() {
        // The server watches its children through pidfds; valgrind does not know pidfd_open.
        if process::pidfd_open(process::current_pid()).is_err() {
            eprintln!("skipped: pidfd_open is not available here");
            return;
        }
        let address = new_address().unwrap();
        let listener = sys::listen_abstract(&address).unwrap();
        let (life_r, life_w) = crate::sys::fd::pipe().unwrap();
        match sys::fork().unwrap() {
            0 => {
                // The server, in a child of the test: forks one child that exits 7.
                drop(life_w);
                match serve(listener, life_r) {
                    Ok(Served::Child(req)) => exit_now(if req.header == b"hi" && req.fds.len() == 1 { 7 } else { 1 }),
                    _ => exit_now(0),
                }
            }
            server => {
                drop(listener);
                drop(life_r);
                let (a, _b) = crate::sys::fd::socket_pair().unwrap();
                let conn = request(&address, b"hi", &[a.as_raw_fd()]).unwrap();
                let Some(Reply::Started { pid, pidfd: _ }) = receive(conn.as_raw_fd(), 10_000).unwrap() else {
                    panic!("no start")
                };
                assert!(pid > 0);
                match receive(conn.as_raw_fd(), 10_000).unwrap() {
                    Some(Reply::Exited(7)) => {}
                    other => panic!("unexpected {other:?}"),
                }
                drop(life_w);
                wait_pid(server).unwrap();
            }
        }
    }
}
