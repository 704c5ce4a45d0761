//! Forking a warm runtime, and the Unix-socket calls of a fork server: an abstract-namespace
//! listener, the peer's uid, and messages that carry descriptors.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Clears `MADV_DONTFORK` on every mapping of this process, so that a fork copies all of it.
/// Runtimes such as V8 map their heap that way; without this the child has no heap. New
/// mappings may get the flag again, so call it right before each fork.
pub fn fork_all_mappings() -> io::Result<()> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    for line in maps.lines() {
        let Some(range) = line.split_whitespace().next() else { continue };
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else { continue };
        // SAFETY: MADV_DOFORK changes only the inheritance flag of whole mappings listed by the
        // kernel; it touches no memory. Mappings that refuse it (VM_IO, [vsyscall]) keep theirs.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DOFORK) };
    }
    Ok(())
}

/// Forks the calling process: `Ok(0)` in the child, the child's pid in the parent.
pub fn fork() -> io::Result<i32> {
    // SAFETY: fork duplicates the process; the caller makes the child use only state that
    // survives it (the forking thread's), as the fork server's child does.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// Ends the process at once with `code`, running no exit handlers or destructors.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process; nothing of ours runs after it.
    unsafe { libc::_exit(code) }
}

/// Ignores SIGINT (`true`) or restores its default action (`false`).
pub fn ignore_interrupts(ignore: bool) {
    let action = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: setting a signal's disposition to SIG_IGN or SIG_DFL installs no handler code.
    unsafe { libc::signal(libc::SIGINT, action) };
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Fills `buf` with random bytes from the kernel.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: writes at most `buf.len() - off` bytes into the live buffer.
        let n = unsafe { libc::getrandom(buf[off..].as_mut_ptr().cast(), buf.len() - off, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        off += n as usize;
    }
    Ok(())
}

fn abstract_address(name: &str) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = name.as_bytes();
    // The leading NUL of sun_path puts the name in the abstract namespace: no file, gone with its last descriptor.
    if bytes.is_empty() || bytes.len() + 1 > addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a fork server address is 1 to 106 bytes"));
    }
    for (i, b) in bytes.iter().enumerate() {
        addr.sun_path[i + 1] = *b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + bytes.len();
    Ok((addr, len as libc::socklen_t))
}

fn stream_socket(nonblocking: bool) -> io::Result<OwnedFd> {
    let flags = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: socket creates a descriptor or fails.
    let fd = check(unsafe { libc::socket(libc::AF_UNIX, flags, 0) })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking listening stream socket on the abstract address `name`, close-on-exec.
pub fn listen_abstract(name: &str) -> io::Result<OwnedFd> {
    let (addr, len) = abstract_address(name)?;
    let fd = stream_socket(true)?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    check(unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) })?;
    // SAFETY: listen only changes the socket's state.
    check(unsafe { libc::listen(fd.as_raw_fd(), 128) })?;
    Ok(fd)
}

/// A blocking stream socket connected to the abstract address `name`, close-on-exec.
pub fn connect_abstract(name: &str) -> io::Result<OwnedFd> {
    let (addr, len) = abstract_address(name)?;
    let fd = stream_socket(false)?;
    loop {
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
        let rc = unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) };
        if rc == 0 {
            return Ok(fd);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Accepts one waiting connection (blocking, close-on-exec); `None` when none is waiting.
pub fn accept(listener: RawFd) -> io::Result<Option<OwnedFd>> {
    loop {
        // SAFETY: accept4 with null address pointers only creates a descriptor or fails.
        let rc = unsafe { libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
        if rc >= 0 {
            // SAFETY: `rc` was just created and is owned by nobody else.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(rc) }));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            // The peer gave up between poll and accept.
            _ if err.raw_os_error() == Some(libc::ECONNABORTED) => continue,
            _ => return Err(err),
        }
    }
}

/// The uid of the process at the other end of a connected Unix socket.
pub fn peer_uid(sock: RawFd) -> io::Result<u32> {
    // SAFETY: ucred is plain old data; all-zero is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid out-pointers of the stated size.
    check(unsafe {
        libc::getsockopt(sock, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len)
    })?;
    Ok(cred.uid)
}

/// The most descriptors one message may carry (the kernel's SCM_MAX_FD).
pub const MAX_FDS: usize = 253;
const CONTROL_BYTES: usize = 8 * 256 + 64;

/// Sends `data` with copies of `fds` attached to its first byte.
pub fn send_message(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut sent = 0;
    while sent < data.len() {
        sent += super::fd::send_part(sock, &data[sent..], if sent == 0 { fds } else { &[] }, 0)?;
    }
    Ok(())
}

/// Sends what fits of `data` now without blocking (`fds` attached to its first byte); returns
/// how many bytes went, 0 when none could.
pub fn send_some(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    match super::fd::send_part(sock, data, fds, libc::MSG_DONTWAIT) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        other => other,
    }
}

/// Waits up to `timeout_ms` (negative: no limit) for `sock` to be readable; false on timeout.
pub fn wait_readable(sock: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: sock, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: `p` is one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads what is there (at most `buf.len()` bytes, blocking until something is) with the
/// descriptors attached to it, close-on-exec. `Ok((0, _))` is end-of-file.
pub fn recv_message(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; CONTROL_BYTES / 8];
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_BYTES;
    let n = loop {
        // SAFETY: `msg` points at live buffers of the sizes it states.
        let rc = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if rc >= 0 {
            break rc as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    // SAFETY: `msg` was just filled by a successful recvmsg.
    let fds = unsafe { super::fd::received_rights(&msg) };
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "a message carried more descriptors than allowed"));
    }
    Ok((n, fds))
}

/// Waits on several descriptors at once; fills each `revents`. Returns how many are ready.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    loop {
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Makes descriptor `onto` refer to what `from` refers to (`dup2`); `onto` is not close-on-exec.
pub fn duplicate_onto(from: RawFd, onto: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: dup2 only changes the descriptor table.
        let rc = unsafe { libc::dup2(from, onto) };
        if rc >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
