//! Synchronisation primitives that live in shared memory and wait on futexes: process-owned
//! locks (`Lock`, `RLock`), semaphores, events, conditions and barriers.
//!
//! Each object is one small segment: a checked header (magic, version, kind) and its words. Every
//! type has a cross-process form (a memory file other processes map) and an in-process twin
//! (`Segment::private`), with the same code and the same tests. Waits are bounded slices: a
//! waiter re-checks, between slices, what no futex wake reports (a lock holder that died).
//!
//! Blocking waits take an [`Instant`] deadline. Asynchronous callers instead arm the process's
//! waker on the word returned by an `arm_*` method and call the `try_*` method when it fires.

use std::sync::Arc;

use crate::segment::{Segment, SegmentError};

pub mod barrier;
pub mod condition;
pub mod event;
pub mod layout;
pub mod mutex;
pub mod semaphore;

pub use crate::lock::Owner;
pub use barrier::{Arrival, Barrier, BarrierError};
pub use condition::Condition;
pub use event::Event;
pub use mutex::{AcquireError, Acquired, Mutex, ReleaseError};
pub use semaphore::{Semaphore, SemaphoreReleaseError};

/// Bytes of every synchronisation segment: the header and up to 48 bytes of words.
pub const SYNC_SIZE: usize = 64;
/// Where an object's own words start.
pub const BODY: usize = 16;

const MAGIC: u32 = u32::from_le_bytes(*b"MPSY");
const VERSION: u32 = 1;

/// What a synchronisation segment holds (the header's `kind` word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    Lock = 1,
    RLock = 2,
    Semaphore = 3,
    Event = 4,
    Condition = 5,
    Barrier = 6,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Lock,
            2 => Kind::RLock,
            3 => Kind::Semaphore,
            4 => Kind::Event,
            5 => Kind::Condition,
            6 => Kind::Barrier,
            _ => return None,
        })
    }
}

/// Why a segment could not be used as a synchronisation object.
#[derive(Debug)]
pub enum SyncAttachError {
    /// No multiproc header (foreign or corrupt memory), or one of another version.
    NotSync,
    /// A synchronisation object of another kind.
    WrongKind {
        expected: Kind,
        found: Option<Kind>,
    },
    Segment(SegmentError),
}

impl std::fmt::Display for SyncAttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncAttachError::NotSync => write!(f, "shared memory does not hold a multiproc synchronisation object"),
            SyncAttachError::WrongKind { expected, found } => {
                write!(f, "shared memory holds a {found:?}, not a {expected:?}")
            }
            SyncAttachError::Segment(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SyncAttachError {}

/// A new zero-filled segment with a header for `kind`: shared (memfd) or in-process.
pub(crate) fn create(kind: Kind, shared: bool) -> Result<Arc<Segment>, SegmentError> {
    let seg = if shared { Segment::create("multiproc-sync", SYNC_SIZE)? } else { Segment::private(SYNC_SIZE)? };
    seg.u32_at(4).store(VERSION, std::sync::atomic::Ordering::Relaxed);
    seg.u32_at(8).store(kind as u32, std::sync::atomic::Ordering::Relaxed);
    seg.u32_at(0).store(MAGIC, std::sync::atomic::Ordering::Release);
    Ok(Arc::new(seg))
}

/// Checks the header of a mapped segment.
pub(crate) fn check(seg: &Segment, expected: Kind) -> Result<(), SyncAttachError> {
    if seg.len() < SYNC_SIZE {
        return Err(SyncAttachError::NotSync);
    }
    let ord = std::sync::atomic::Ordering::Acquire;
    if seg.u32_at(0).load(ord) != MAGIC || seg.u32_at(4).load(ord) != VERSION {
        return Err(SyncAttachError::NotSync);
    }
    let found = Kind::from_u32(seg.u32_at(8).load(ord));
    if found != Some(expected) {
        return Err(SyncAttachError::WrongKind { expected, found });
    }
    Ok(())
}

/// The kind recorded in a segment's header, if it is a synchronisation object.
pub fn kind_of(seg: &Segment) -> Option<Kind> {
    if seg.len() < SYNC_SIZE || seg.u32_at(0).load(std::sync::atomic::Ordering::Acquire) != MAGIC {
        return None;
    }
    Kind::from_u32(seg.u32_at(8).load(std::sync::atomic::Ordering::Acquire))
}

/// Whether a blocked wait should spin first: not when its deadline has passed (a try).
pub(crate) fn may_spin(deadline: Option<std::time::Instant>) -> bool {
    deadline.is_none_or(|d| std::time::Instant::now() < d)
}
