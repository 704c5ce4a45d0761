//! A fork server: a process that forks a copy of itself per request, so that a child starts
//! from a runtime that is already warm instead of from `exec`.
//!
//! A requester connects to the server's abstract Unix address and sends one request: a length
//! and an opaque header, with the descriptors the child needs attached (SCM_RIGHTS). The server
//! keeps one child forked ahead of need, a spare: in it [`serve`] returns, and the runtime above
//! warms up, then blocks in [`take_request`]. The server hands the request to the spare, answers
//! `Started` with its pid and a pidfd of it, forks the next spare, watches the child, reaps it,
//! and answers `Exited` with its status on the same connection. The server ends when its lifeline (a pipe whose write end only
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
    /// This is a spare child: its request comes on this connection ([`take_request`]).
    Spare(OwnedFd),
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

/// A forked child that waits for a request (see [`take_request`]), and the connection its
/// request is handed over on.
struct Spare {
    pid: i32,
    pidfd: OwnedFd,
    conn: OwnedFd,
}

/// A request being handed to a spare, a part at a time when its socket is full (the server
/// never blocks on a spare). The descriptors go with the first part.
struct Handoff {
    conn: OwnedFd,
    data: Vec<u8>,
    sent: usize,
    fds: Vec<OwnedFd>,
}

impl Handoff {
    /// Sends what fits now; true once all of it went (or the spare died, which is reported as
    /// its exit).
    fn progress(&mut self) -> bool {
        let raw: Vec<RawFd> = self.fds.iter().map(|f| f.as_raw_fd()).collect();
        match sys::send_some(self.conn.as_raw_fd(), &self.data[self.sent..], &raw) {
            Ok(0) => {}
            Ok(n) => {
                self.sent += n;
                self.fds.clear();
            }
            Err(_) => self.sent = self.data.len(),
        }
        self.sent == self.data.len()
    }
}

/// How forking a spare came out.
enum Forked {
    Server(Spare),
    /// This is the spare: the connection its request will come on.
    Spare(OwnedFd),
}

/// Forks a spare child. Forking in a `fork_all_mappings` failure would give a child without
/// its heap, so that failure fails the fork.
fn fork_spare() -> io::Result<Forked> {
    let (ours, theirs) = crate::sys::fd::socket_pair()?;
    sys::fork_all_mappings()?;
    match sys::fork()? {
        0 => {
            drop(ours);
            Ok(Forked::Spare(theirs))
        }
        pid => {
            drop(theirs);
            match process::pidfd_open(pid) {
                Ok(pidfd) => Ok(Forked::Server(Spare { pid, pidfd, conn: ours })),
                Err(e) => {
                    // Without a pidfd nobody could watch it: end it now, and reap it so that no
                    // zombie stays.
                    let _ = process::kill(pid, libc::SIGKILL);
                    let _ = wait_pid(pid);
                    Err(e)
                }
            }
        }
    }
}

/// Runs the server until its lifeline ends. The server keeps one spare child forked ahead of
/// need (its runtime warms up while nobody waits) and hands each request to the spare, then
/// forks the next. Returns in each spare (with the connection its request comes on, see
/// [`take_request`]) and in the server once the lifeline has ended; every descriptor of the
/// server's is closed in the spare before it returns.
pub fn serve(listener: OwnedFd, lifeline: OwnedFd) -> io::Result<Served> {
    let uid = sys::effective_uid();
    let mut pending: Vec<Pending> = Vec::new();
    let mut children: Vec<Watched> = Vec::new();
    let mut handoffs: Vec<Handoff> = Vec::new();
    let mut spare: Option<Spare> = None;
    loop {
        if spare.is_none() {
            match fork_spare() {
                Ok(Forked::Spare(conn)) => {
                    drop((listener, lifeline, pending, children, handoffs));
                    return Ok(Served::Spare(conn));
                }
                Ok(Forked::Server(s)) => spare = Some(s),
                // Out of processes or memory: answer the next request with the error.
                Err(_) => {}
            }
        }
        let mut fds = Vec::with_capacity(3 + pending.len() + children.len() + handoffs.len());
        fds.push(libc::pollfd { fd: lifeline.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        let spare_fd = spare.as_ref().map_or(-1, |s| s.pidfd.as_raw_fd());
        fds.push(libc::pollfd { fd: spare_fd, events: libc::POLLIN, revents: 0 });
        fds.extend(pending.iter().map(|p| libc::pollfd { fd: p.conn.as_raw_fd(), events: libc::POLLIN, revents: 0 }));
        fds.extend(children.iter().map(|c| libc::pollfd { fd: c.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }));
        fds.extend(handoffs.iter().map(|h| libc::pollfd { fd: h.conn.as_raw_fd(), events: libc::POLLOUT, revents: 0 }));
        // Without a spare (forking failed) or with a request half read, look again in a second.
        let timeout = if pending.is_empty() && spare.is_some() { -1 } else { 1000 };
        sys::poll(&mut fds, timeout)?;
        if fds[0].revents != 0 {
            // The program is gone: so is a spare that nobody asked for.
            if let Some(s) = spare.take() {
                let _ = process::pidfd_signal(&s.pidfd, libc::SIGKILL);
                let _ = wait_pid(s.pid);
            }
            return Ok(Served::LifelineEnded);
        }
        if fds[2].revents != 0 {
            // The spare died unasked (killed by somebody): reap it; the next turn forks another.
            if let Some(s) = spare.take() {
                let _ = wait_pid(s.pid);
            }
        }
        // Children first: an exit is reported before anything new is started.
        let first_child = 3 + pending.len();
        let first_handoff = first_child + children.len();
        for i in (0..handoffs.len()).rev() {
            if fds[first_handoff + i].revents == 0 {
                continue;
            }
            if handoffs[i].progress() {
                handoffs.swap_remove(i);
            }
        }
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
            let revents = fds[3 + i].revents;
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
        let mut ready = ready.into_iter();
        while let Some(req) = ready.next() {
            let s = match spare.take() {
                Some(s) => s,
                None => match fork_spare() {
                    Ok(Forked::Server(s)) => s,
                    Ok(Forked::Spare(conn)) => {
                        drop((listener, lifeline, pending, children, handoffs, req, ready));
                        return Ok(Served::Spare(conn));
                    }
                    Err(e) => {
                        answer(&req.conn, FAILED, e.raw_os_error().unwrap_or(libc::EIO), &[]);
                        continue;
                    }
                },
            };
            let Pending { conn, buf, fds, .. } = req;
            let mut handoff = Handoff { conn: s.conn, data: buf, sent: 0, fds };
            if !handoff.progress() {
                handoffs.push(handoff);
            }
            answer(&conn, STARTED, s.pid, &[s.pidfd.as_raw_fd()]);
            children.push(Watched { pidfd: s.pidfd, conn });
        }
    }
}

/// In a spare: waits for the server to hand it its request. `None` when the server went away
/// first (the spare should then exit). Interrupts are the default again once it has one.
pub fn take_request(conn: OwnedFd) -> io::Result<Option<Request>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut fds = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let (n, more) = sys::recv_message(conn.as_raw_fd(), &mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        fds.extend(more);
        if buf.len() >= 4 {
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len > MAX_HEADER || buf.len() > 4 + len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the fork server handed over a malformed request",
                ));
            }
            if buf.len() == 4 + len {
                sys::ignore_interrupts(false);
                return Ok(Some(Request { header: buf.split_off(4), fds }));
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
                    Ok(Served::Spare(conn)) => match take_request(conn) {
                        Ok(Some(req)) => exit_now(if req.header == b"hi" && req.fds.len() == 1 { 7 } else { 1 }),
                        _ => exit_now(3),
                    },
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
