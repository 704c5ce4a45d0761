//! Anonymous shared memory: `memfd_create`, sizing, and mapping.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Creates an anonymous, close-on-exec memory file of `size` bytes, fully allocated up front so
/// that running out of memory is an error here rather than a SIGBUS later, and sealed at that
/// size: no process that maps it can shrink it under the others' mappings (a SIGBUS in all).
pub fn create(name: &str, size: usize) -> io::Result<OwnedFd> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `cname` is a valid NUL-terminated string.
    let fd = check(unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fchmod on a descriptor we own.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) })?;
    // SAFETY: ftruncate on a descriptor we own.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) })?;
    // SAFETY: fallocate on a descriptor we own; reserves the pages.
    let rc = unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, size as libc::off_t) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(err);
        }
    }
    // No more seals either: a later F_SEAL_FUTURE_WRITE would stop newcomers mapping it writable.
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own, created with MFD_ALLOW_SEALING.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}

/// The size in bytes of the file behind `fd`.
pub fn size(fd: RawFd) -> io::Result<usize> {
    // SAFETY: `st` is a valid out-pointer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into `st` only.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st.st_size as usize)
}

/// Maps `size` bytes of `fd` shared, read-write.
pub fn map(fd: RawFd, size: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh shared mapping chosen by the kernel; no existing memory is affected.
    let p =
        unsafe { libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p as *mut u8).ok_or_else(|| io::Error::from(io::ErrorKind::Other))
}

/// Maps `size` bytes of zero-filled private anonymous memory, read-write.
pub fn map_private(size: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh private mapping chosen by the kernel; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p as *mut u8).ok_or_else(|| io::Error::from(io::ErrorKind::Other))
}

/// Unmaps a mapping made by [`map`] or [`map_private`].
///
/// # Safety
/// `ptr`/`size` must be exactly one mapping returned by [`map`], with no live references into it.
pub unsafe fn unmap(ptr: NonNull<u8>, size: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::munmap(ptr.as_ptr() as *mut libc::c_void, size) };
}
