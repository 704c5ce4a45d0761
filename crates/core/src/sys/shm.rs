//! Named POSIX shared memory: `shm_open` / `shm_unlink`, as CPython's `_posixshmem` uses them
//! (`/` + the name), so either side can attach to a segment the other created.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The longest name, in bytes (a file name under `/dev/shm`).
pub const MAX_NAME: usize = 255;

/// Why a name cannot name a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum ShmNameError {
    Empty,
    TooLong(usize),
    /// Contains `/` or a NUL byte, or is `.` or `..`.
    BadCharacter,
}

impl std::fmt::Display for ShmNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShmNameError::Empty => write!(f, "a shared memory name must not be empty"),
            ShmNameError::TooLong(n) => write!(f, "a shared memory name has at most {MAX_NAME} bytes, not {n}"),
            ShmNameError::BadCharacter => {
                write!(f, "a shared memory name must not contain '/' or NUL, nor be '.' or '..'")
            }
        }
    }
}

/// Checks `name` (without the leading `/`) and returns the path `shm_open` takes.
pub fn path_of(name: &str) -> Result<CString, ShmNameError> {
    if name.is_empty() {
        return Err(ShmNameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(ShmNameError::TooLong(name.len()));
    }
    if name.contains(['/', '\0']) || name == "." || name == ".." {
        return Err(ShmNameError::BadCharacter);
    }
    CString::new(format!("/{name}")).map_err(|_| ShmNameError::BadCharacter)
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Creates a new segment (fails with `AlreadyExists` if the name is taken), mode 0600,
/// close-on-exec, `size` bytes allocated up front (no SIGBUS later on a full `/dev/shm`).
pub fn create(path: &CString, size: usize) -> io::Result<OwnedFd> {
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: `path` is a valid NUL-terminated string.
    let fd = check(unsafe { libc::shm_open(path.as_ptr(), flags, 0o600) })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sized = (|| {
        // SAFETY: fchmod on a descriptor we own (the umask may have narrowed 0600 only).
        check(unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) })?;
        // SAFETY: ftruncate on a descriptor we own.
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) })?;
        // SAFETY: posix_fallocate on a descriptor we own; reserves the pages.
        let rc = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, size as libc::off_t) };
        if rc != 0 && rc != libc::EOPNOTSUPP && rc != libc::EINVAL {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    })();
    if let Err(e) = sized {
        let _ = unlink(path);
        return Err(e);
    }
    Ok(fd)
}

/// Opens an existing segment read-write, close-on-exec.
pub fn open(path: &CString) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string.
    let fd = check(unsafe { libc::shm_open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the name; mappings and descriptors that exist stay valid.
pub fn unlink(path: &CString) -> io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string.
    check(unsafe { libc::shm_unlink(path.as_ptr()) })?;
    Ok(())
}
