//! Owned descriptors and the few descriptor-level calls the core needs.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Takes ownership of a descriptor number the caller is known to hold (e.g. an inherited one).
pub fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only inspects the descriptor table.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the descriptor is open (checked above) and the caller hands us its ownership.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new descriptor for the same open file, close-on-exec.
pub fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor or fails; no memory is touched.
    let new = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Sets or clears close-on-exec.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_SETFD only changes descriptor flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) })?;
    Ok(())
}

/// A connected pair of Unix stream sockets, close-on-exec.
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe whose write end never blocks, both ends close-on-exec: `(read, write)`.
pub fn doorbell_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETFL on a descriptor we own.
    check(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) })?;
    Ok((r, w))
}

/// Writes one byte, ignoring a full pipe (the reader is already due to wake).
pub fn ring(fd: RawFd) {
    let b = 1u8;
    // SAFETY: writes one byte from a valid stack location.
    unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
}

/// True when the peer of a stream socket has closed every copy of its end (or the fd is bad).
pub fn peer_hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: `p` is one valid pollfd; timeout 0 never blocks.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    rc > 0 && p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLNVAL | libc::POLLERR) != 0
}

/// A plain pipe, both ends close-on-exec: `(read, write)`. Writes of up to 4096 bytes from
/// several processes never interleave.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of Unix sequenced-packet sockets, close-on-exec: one message per send.
pub fn packet_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The most descriptors one message may carry (the kernel's SCM_MAX_FD).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

const CMSG_SPACE: usize = 8 * 256 + 64;

/// Sends `fds` (copies of them) with a 4-byte tag as one message over a Unix socket.
pub fn send_fds(sock: RawFd, tag: u32, fds: &[RawFd]) -> io::Result<()> {
    let mut data = [0u8; 8];
    data[..4].copy_from_slice(&tag.to_le_bytes());
    data[4..].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    // A packet socket takes the 8 bytes whole or not at all.
    send_part(sock, &data, fds, 0).map(|_| ())
}

/// One `sendmsg` of `data` (not empty) with copies of `fds` attached; retried when interrupted.
/// Returns how many bytes went.
pub fn send_part(sock: RawFd, data: &[u8], fds: &[RawFd], flags: i32) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let mut control = [0u64; CMSG_SPACE / 8];
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds);
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
        let (space, len) = unsafe { (libc::CMSG_SPACE(bytes as u32) as usize, libc::CMSG_LEN(bytes as u32) as usize) };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer is aligned (u64) and at least `space` bytes long (≤ 253 fds),
        // so the first header and its data fit inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = len;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), fds.len());
        }
    }
    loop {
        // SAFETY: `msg` points at live buffers for the duration of the call.
        let rc = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL | flags) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives one message sent by [`send_fds`], waiting at most `timeout_ms` (negative: no limit).
/// `Ok(None)`: nothing arrived in time. The descriptors arrive close-on-exec.
pub fn recv_fds(sock: RawFd, timeout_ms: i32) -> io::Result<Option<(u32, Vec<OwnedFd>)>> {
    let mut p = libc::pollfd { fd: sock, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: `p` is one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc > 0 {
            break;
        }
        if rc == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let mut data = [0u8; 8];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    let mut control = [0u64; CMSG_SPACE / 8];
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE;
    // SAFETY: `msg` points at live buffers of the sizes it states.
    let n = check(unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) } as libc::c_int)?;
    // SAFETY: `msg` was just filled by a successful recvmsg.
    let fds = unsafe { received_rights(&msg) };
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the sending end is closed"));
    }
    let tag = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let count = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    if n != 8 || msg.msg_flags & libc::MSG_CTRUNC != 0 || count != fds.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "a descriptor message arrived damaged or truncated"));
    }
    Ok(Some((tag, fds)))
}

/// The descriptors an `SCM_RIGHTS` message carried, now owned by the caller.
///
/// # Safety
/// `msg` must have just been filled by a successful `recvmsg`: its control buffer then holds
/// `msg_controllen` bytes of well-formed headers.
pub(crate) unsafe fn received_rights(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: (the caller's guarantee) CMSG_FIRSTHDR/NXTHDR stay inside the control buffer, and
    // each SCM_RIGHTS payload holds whole descriptors that the kernel gave to this process.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..payload / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    fds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_travel_with_their_tag_and_stay_usable() {
        let (a, b) = packet_pair().unwrap();
        let (r, w) = doorbell_pipe().unwrap();
        send_fds(a.as_raw_fd(), 7, &[w.as_raw_fd(), r.as_raw_fd()]).unwrap();
        send_fds(a.as_raw_fd(), 8, &[]).unwrap();
        drop(w);
        let (tag, fds) = recv_fds(b.as_raw_fd(), 1000).unwrap().unwrap();
        assert_eq!((tag, fds.len()), (7, 2));
        ring(fds[0].as_raw_fd());
        let mut byte = 0u8;
        // SAFETY: reads one byte into a valid stack location.
        let n = unsafe { libc::read(fds[1].as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        assert_eq!((n, byte), (1, 1));
        let (tag, fds) = recv_fds(b.as_raw_fd(), 1000).unwrap().unwrap();
        assert_eq!((tag, fds.len()), (8, 0));
        assert!(recv_fds(b.as_raw_fd(), 10).unwrap().is_none());
        assert!(send_fds(a.as_raw_fd(), 1, &vec![r.as_raw_fd(); MAX_FDS_PER_MESSAGE + 1]).is_err());
        drop(a);
        assert!(recv_fds(b.as_raw_fd(), 1000).is_err());
    }
}
