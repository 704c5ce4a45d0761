//! A shared-memory segment: an anonymous memory file mapped into this process, with bounds-checked
//! access. Every offset and length that reaches this module is checked against the mapping, so a
//! corrupt or hostile peer can change bytes but never make us touch memory outside the segment.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::sys::{fd, memfd};

/// Why a segment could not be created or attached.
#[derive(Debug)]
pub enum SegmentError {
    /// The requested size is zero or too large for this system.
    InvalidSize(usize),
    /// The descriptor does not refer to a segment of ours (not a memory file, or too small).
    NotASegment,
    /// The system refused (out of memory, too many open files, …).
    Os(io::Error),
}

impl std::fmt::Display for SegmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentError::InvalidSize(n) => write!(f, "invalid segment size {n}"),
            SegmentError::NotASegment => write!(f, "descriptor is not a multiproc segment"),
            SegmentError::Os(e) => write!(f, "shared memory: {e}"),
        }
    }
}

impl std::error::Error for SegmentError {}

pub const MAX_SEGMENT_SIZE: usize = 1 << 40;

/// An owned mapping of a shared memory file (or, for the in-process twin, of private anonymous
/// memory that threads of one process share). Unmapped on drop.
pub struct Segment {
    fd: Option<OwnedFd>,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all access goes through atomics or copies whose
// bounds are checked, and the protocol above decides who may write where.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` only hands out atomics and bounds-checked copies.
unsafe impl Sync for Segment {}

impl Segment {
    /// A new zero-filled anonymous segment of `len` bytes (mode 0600, close-on-exec).
    pub fn create(name: &str, len: usize) -> Result<Segment, SegmentError> {
        if len == 0 || len > MAX_SEGMENT_SIZE {
            return Err(SegmentError::InvalidSize(len));
        }
        let fd = memfd::create(name, len).map_err(SegmentError::Os)?;
        Self::map_fd(fd, len)
    }

    /// The in-process twin: zero-filled private memory with the same layout and accessors, shared
    /// only by the threads of this process. Every concept built on segments runs on it unchanged,
    /// so their tests run against both kinds.
    pub fn private(len: usize) -> Result<Segment, SegmentError> {
        if len == 0 || len > MAX_SEGMENT_SIZE {
            return Err(SegmentError::InvalidSize(len));
        }
        let ptr = memfd::map_private(len).map_err(SegmentError::Os)?;
        Ok(Segment { fd: None, ptr, len })
    }

    /// Maps the segment behind an inherited or received descriptor, taking ownership of it.
    pub fn attach(fd: OwnedFd, min_len: usize) -> Result<Segment, SegmentError> {
        let len = memfd::size(fd.as_raw_fd()).map_err(|_| SegmentError::NotASegment)?;
        if len < min_len || len > MAX_SEGMENT_SIZE {
            return Err(SegmentError::NotASegment);
        }
        Self::map_fd(fd, len)
    }

    /// Maps a second, independent copy of `fd` (the caller keeps its descriptor).
    pub fn attach_dup(raw: RawFd, min_len: usize) -> Result<Segment, SegmentError> {
        Self::attach(fd::duplicate(raw).map_err(SegmentError::Os)?, min_len)
    }

    fn map_fd(fd: OwnedFd, len: usize) -> Result<Segment, SegmentError> {
        let ptr = memfd::map(fd.as_raw_fd(), len).map_err(SegmentError::Os)?;
        Ok(Segment { fd: Some(fd), ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The descriptor other processes can map; -1 for the in-process twin.
    pub fn fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }

    fn check(&self, offset: usize, len: usize, align: usize) {
        let end = offset.checked_add(len).expect("segment offset overflow");
        assert!(
            end <= self.len && offset.is_multiple_of(align),
            "segment access out of bounds: {offset}+{len} of {}",
            self.len
        );
    }

    /// The 32-bit atomic at `offset` (panics on a bad offset: offsets are our own constants).
    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `self`; AtomicU32
        // has the same layout as u32 and tolerates concurrent access from other processes.
        unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU32) }
    }

    /// The 64-bit atomic at `offset`.
    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: as in `u32_at`, for an aligned 8-byte word.
        unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU64) }
    }

    /// Copies `dst.len()` bytes out of the segment at `offset`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len(), 1);
        // SAFETY: the source range is inside the mapping (checked) and cannot overlap `dst`,
        // which is private memory. Peers may write these bytes concurrently only if they break
        // the protocol; the bytes are then garbage that the caller validates, never pointers.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), dst.as_mut_ptr(), dst.len()) };
    }

    /// Copies `src` into the segment at `offset`.
    pub fn write(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len(), 1);
        // SAFETY: the destination range is inside the mapping (checked) and cannot overlap `src`.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len()) };
    }

    /// Fills `len` bytes at `offset` with zeros.
    pub fn zero(&self, offset: usize, len: usize) {
        self.check(offset, len, 1);
        // SAFETY: the range is inside the mapping (checked).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(offset), 0, len) };
    }

    /// The raw bytes `[offset, offset+len)`, for views that JavaScript reads and writes directly.
    pub fn as_ptr_range(&self, offset: usize, len: usize) -> *mut u8 {
        self.check(offset, len, 1);
        // SAFETY: in bounds (checked); the pointer is only dereferenced by the caller.
        unsafe { self.ptr.as_ptr().add(offset) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly our mapping; every reference into it borrows `self`.
        unsafe { memfd::unmap(self.ptr, self.len) };
    }
}
