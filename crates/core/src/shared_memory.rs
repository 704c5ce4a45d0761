//! Named shared memory (`SharedMemory`): a POSIX segment that any process, CPython's
//! `multiprocessing.shared_memory` included, can attach to by name.

use std::io;
use std::os::fd::AsRawFd;

use crate::segment::{Segment, SegmentError, MAX_SEGMENT_SIZE};
use crate::sys::shm::{self, ShmNameError};
use crate::sys::{fd, memfd};

/// Why a named segment could not be created, attached or unlinked.
#[derive(Debug)]
pub enum SharedMemoryError {
    InvalidName(ShmNameError),
    /// Zero, or larger than the system allows.
    InvalidSize(usize),
    /// `create` found the name taken.
    AlreadyExists(String),
    /// Attaching (or unlinking) found no segment of that name.
    NotFound(String),
    PermissionDenied(String),
    /// An existing segment of zero bytes cannot be mapped.
    Empty(String),
    Os(io::Error),
}

impl std::fmt::Display for SharedMemoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SharedMemoryError::InvalidName(e) => write!(f, "{e}"),
            SharedMemoryError::InvalidSize(n) => {
                write!(f, "a shared memory size must be between 1 and {MAX_SEGMENT_SIZE} bytes, not {n}")
            }
            SharedMemoryError::AlreadyExists(n) => write!(f, "a shared memory segment named '{n}' already exists"),
            SharedMemoryError::NotFound(n) => write!(f, "no shared memory segment named '{n}'"),
            SharedMemoryError::PermissionDenied(n) => {
                write!(f, "no permission to open the shared memory segment '{n}'")
            }
            SharedMemoryError::Empty(n) => write!(f, "the shared memory segment '{n}' has a size of zero"),
            SharedMemoryError::Os(e) => write!(f, "shared memory: {e}"),
        }
    }
}

impl std::error::Error for SharedMemoryError {}

fn os_error(name: &str, e: io::Error) -> SharedMemoryError {
    match e.kind() {
        io::ErrorKind::AlreadyExists => SharedMemoryError::AlreadyExists(name.to_owned()),
        io::ErrorKind::NotFound => SharedMemoryError::NotFound(name.to_owned()),
        io::ErrorKind::PermissionDenied => SharedMemoryError::PermissionDenied(name.to_owned()),
        _ => SharedMemoryError::Os(e),
    }
}

/// Creates the segment `name` (without the leading `/`) of `size` bytes, mode 0600, and maps it.
pub fn create(name: &str, size: usize) -> Result<Segment, SharedMemoryError> {
    let path = shm::path_of(name).map_err(SharedMemoryError::InvalidName)?;
    if size == 0 || size > MAX_SEGMENT_SIZE {
        return Err(SharedMemoryError::InvalidSize(size));
    }
    let fd = shm::create(&path, size).map_err(|e| os_error(name, e))?;
    Segment::attach(fd, size).map_err(|e| {
        let _ = shm::unlink(&path);
        match e {
            SegmentError::Os(e) => SharedMemoryError::Os(e),
            _ => SharedMemoryError::InvalidSize(size),
        }
    })
}

/// Attaches to the existing segment `name`, mapping all of it.
pub fn attach(name: &str) -> Result<Segment, SharedMemoryError> {
    let path = shm::path_of(name).map_err(SharedMemoryError::InvalidName)?;
    let fd = shm::open(&path).map_err(|e| os_error(name, e))?;
    if memfd::size(fd.as_raw_fd()).map_err(SharedMemoryError::Os)? == 0 {
        return Err(SharedMemoryError::Empty(name.to_owned()));
    }
    Segment::attach(fd, 1).map_err(|e| match e {
        SegmentError::Os(e) => SharedMemoryError::Os(e),
        _ => SharedMemoryError::Empty(name.to_owned()),
    })
}

/// Maps a segment from a descriptor received from another process (it may be unlinked already).
pub fn adopt(raw: i32) -> Result<Segment, SharedMemoryError> {
    let fd = fd::adopt(raw).map_err(SharedMemoryError::Os)?;
    Segment::attach(fd, 1).map_err(|e| match e {
        SegmentError::Os(e) => SharedMemoryError::Os(e),
        _ => SharedMemoryError::Empty(format!("fd {raw}")),
    })
}

/// Removes the name; existing mappings stay valid.
pub fn unlink(name: &str) -> Result<(), SharedMemoryError> {
    let path = shm::path_of(name).map_err(SharedMemoryError::InvalidName)?;
    shm::unlink(&path).map_err(|e| os_error(name, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique() -> String {
        format!("mp-test-{}-{:?}", std::process::id(), std::time::Instant::now()).replace([' ', '.'], "_")
    }

    #[test]
    fn create_attach_unlink() {
        let name = unique();
        let a = create(&name, 10_000).unwrap();
        assert!(matches!(create(&name, 10), Err(SharedMemoryError::AlreadyExists(_))));
        let b = attach(&name).unwrap();
        assert_eq!(b.len(), 10_000);
        a.write(5000, b"hello");
        let mut got = [0u8; 5];
        b.read(5000, &mut got);
        assert_eq!(&got, b"hello");
        let mode = std::fs::metadata(format!("/dev/shm/{name}")).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o777
        });
        assert_eq!(mode.unwrap(), 0o600);
        unlink(&name).unwrap();
        assert!(matches!(attach(&name), Err(SharedMemoryError::NotFound(_))));
        assert!(matches!(unlink(&name), Err(SharedMemoryError::NotFound(_))));
    }

    #[test]
    fn bad_names_and_sizes() {
        assert!(matches!(create("a/b", 10), Err(SharedMemoryError::InvalidName(ShmNameError::BadCharacter))));
        assert!(matches!(create("", 10), Err(SharedMemoryError::InvalidName(ShmNameError::Empty))));
        assert!(matches!(
            create(&"x".repeat(300), 10),
            Err(SharedMemoryError::InvalidName(ShmNameError::TooLong(300)))
        ));
        assert!(matches!(create(&unique(), 0), Err(SharedMemoryError::InvalidSize(0))));
    }
}
