//! `Lock` and `RLock`: a mutual-exclusion word owned by a process (or, in the in-process twin,
//! a thread), robust against its owner's death.
//!
//! Layout after the header: `state: u32` at 16 holds the owner's id (0 when free) with
//! [`WAITERS`] set while somebody sleeps; `count: u32` at 20 the re-entry depth (`RLock`);
//! `record: u64` at 24 the owner record (`id << 32 | start time`, written just after the state
//! changes hands). The uncontended paths are one compare-and-swap, which JavaScript also does
//! directly on a view of these words; anything else (waiting, waking, a dead owner) comes here.
//!
//! Dead owner: a waiter checks, between bounded sleeps, that the owner lives. If it died, the
//! waiter takes the lock over (depth 1) and reports [`Acquired::OwnerDied`]: it holds the lock,
//! and the data it guards may be half-updated (robust-mutex semantics, like `EOWNERDEAD`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{Kind, SyncAttachError, BODY};
use crate::lock::{RobustLock, WhenHeld};
use crate::segment::{Segment, SegmentError};
use crate::wait;

pub use crate::lock::{Acquired, Owner, WAITERS};

pub const STATE: usize = BODY;
pub const COUNT: usize = BODY + 4;
pub const RECORD: usize = BODY + 8;

/// Why a blocking acquire failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AcquireError {
    TimedOut,
}

/// Why a release failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ReleaseError {
    /// The lock is not held by anybody.
    NotHeld,
    /// An `RLock` held by another owner.
    NotOwner,
}

impl std::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseError::NotHeld => write!(f, "release of an unlocked lock"),
            ReleaseError::NotOwner => write!(f, "cannot release an RLock held by another process"),
        }
    }
}

/// A `Lock` or `RLock` in a segment: the core's robust lock, with the re-entry depth beside it.
#[derive(Clone)]
pub struct Mutex {
    seg: Arc<Segment>,
    recursive: bool,
    /// How long a blocked acquire spins before sleeping, learned from recent waits (this process).
    spinner: Arc<wait::Spinner>,
}

impl Mutex {
    /// A new free lock: shared between processes, or the in-process twin.
    pub fn create(recursive: bool, shared: bool) -> Result<Mutex, SegmentError> {
        let kind = if recursive { Kind::RLock } else { Kind::Lock };
        Ok(Mutex { seg: super::create(kind, shared)?, recursive, spinner: Arc::new(wait::Spinner::new()) })
    }

    /// A lock in a segment mapped from another process.
    pub fn attach(seg: Arc<Segment>, recursive: bool) -> Result<Mutex, SyncAttachError> {
        super::check(&seg, if recursive { Kind::RLock } else { Kind::Lock })?;
        Ok(Mutex { seg, recursive, spinner: Arc::new(wait::Spinner::new()) })
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    pub fn is_recursive(&self) -> bool {
        self.recursive
    }

    fn lock(&self) -> RobustLock<'_> {
        RobustLock::new(self.seg.u32_at(STATE), self.seg.u64_at(RECORD))
    }

    fn count(&self) -> &AtomicU32 {
        self.seg.u32_at(COUNT)
    }

    /// The owner's id, 0 when free.
    pub fn owner(&self) -> u32 {
        self.lock().owner()
    }

    /// The re-entry depth (0 when free).
    pub fn depth(&self) -> u32 {
        if self.owner() == 0 {
            0
        } else {
            self.count().load(Ordering::Relaxed)
        }
    }

    pub fn held_by(&self, who: Owner) -> bool {
        self.owner() == who.id
    }

    /// Takes the lock if it is free (or, for an `RLock`, already ours). Never waits, never
    /// looks at a holder's liveness.
    pub fn try_acquire(&self, who: Owner) -> bool {
        if self.lock().try_acquire(who) {
            self.count().store(1, Ordering::Relaxed);
            return true;
        }
        if self.recursive && self.held_by(who) {
            self.count().fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// [`Self::try_acquire`], or takes the lock over if its holder has died. The asynchronous
    /// wait calls this when it wakes, and at least every few hundred milliseconds.
    pub fn try_acquire_or_recover(&self, who: Owner) -> Option<Acquired> {
        if self.try_acquire(who) {
            return Some(Acquired::Clean);
        }
        let taken = self.lock().try_acquire_or_recover(who);
        if taken.is_some() {
            self.count().store(1, Ordering::Relaxed);
        }
        taken
    }

    /// Takes the lock, waiting until `deadline` (`None`: no limit, still in bounded slices). A
    /// `Lock` the caller holds already is waited for too: another owner may release it (Python).
    pub fn acquire(&self, who: Owner, deadline: Option<Instant>) -> Result<Acquired, AcquireError> {
        if self.try_acquire(who) {
            return Ok(Acquired::Clean);
        }
        // Not ours (an RLock of ours was re-entered above): nobody but its owner changes that.
        match self.lock().acquire(who, deadline, WhenHeld::Wait, Some(&self.spinner)) {
            Ok(how) => {
                self.count().store(1, Ordering::Relaxed);
                Ok(how)
            }
            Err(_) => Err(AcquireError::TimedOut),
        }
    }

    /// Marks the lock as waited for and returns `(offset, expected)` of the word an
    /// asynchronous waiter arms the waker on; `None` when it is free now (try again).
    pub fn arm(&self, who: Owner) -> Option<(usize, u32)> {
        let mine = self.recursive.then_some(who.id);
        self.lock().arm(mine).map(|expected| (STATE, expected))
    }

    /// Releases one level. A `Lock` may be released by any process (as in Python); an `RLock`
    /// only by its owner.
    pub fn release(&self, who: Owner) -> Result<(), ReleaseError> {
        let id = self.owner();
        if id == 0 {
            return Err(ReleaseError::NotHeld);
        }
        if self.recursive {
            if id != who.id {
                return Err(ReleaseError::NotOwner);
            }
            let depth = self.count().load(Ordering::Relaxed);
            if depth > 1 {
                self.count().store(depth - 1, Ordering::Relaxed);
                return Ok(());
            }
        }
        self.count().store(0, Ordering::Relaxed);
        self.lock().release();
        Ok(())
    }

    /// Releases every level (a `Condition` wait); returns the depth to restore afterwards.
    pub fn release_all(&self, who: Owner) -> Result<u32, ReleaseError> {
        if self.owner() == 0 {
            return Err(ReleaseError::NotHeld);
        }
        if self.recursive && self.owner() != who.id {
            return Err(ReleaseError::NotOwner);
        }
        let depth = self.count().load(Ordering::Relaxed).max(1);
        self.count().store(1, Ordering::Relaxed);
        self.release(who)?;
        Ok(depth)
    }

    /// After re-acquiring: restores the depth saved by [`Self::release_all`].
    pub fn restore_depth(&self, who: Owner, depth: u32) {
        if self.held_by(who) {
            self.count().store(depth.max(1), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    fn both(test: impl Fn(bool)) {
        test(false);
        test(true);
    }

    #[test]
    fn excludes_threads_and_counts_exactly() {
        both(|shared| {
            let lock = Mutex::create(false, shared).unwrap();
            let counter = Arc::new(AtomicU64::new(0));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (lock, counter) = (lock.clone(), counter.clone());
                    std::thread::spawn(move || {
                        for _ in 0..20_000 {
                            assert_eq!(lock.acquire(Owner::thread(), None), Ok(Acquired::Clean));
                            // A non-atomic read-modify-write: lost updates would show.
                            let v = counter.load(Ordering::Relaxed);
                            counter.store(v + 1, Ordering::Relaxed);
                            lock.release(Owner::thread()).unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(counter.load(Ordering::Relaxed), 80_000);
            assert_eq!(lock.owner(), 0);
        });
    }

    #[test]
    fn rlock_reenters_and_checks_the_owner() {
        both(|shared| {
            let lock = Mutex::create(true, shared).unwrap();
            let me = Owner::thread();
            assert!(lock.try_acquire(me));
            assert!(lock.try_acquire(me));
            assert_eq!(lock.depth(), 2);
            let other = Owner { id: me.id + 1, record: 0 };
            assert_eq!(lock.release(other), Err(ReleaseError::NotOwner));
            assert!(!lock.try_acquire(other));
            assert_eq!(lock.release_all(me), Ok(2));
            assert_eq!(lock.owner(), 0);
            assert!(lock.try_acquire(me));
            lock.restore_depth(me, 2);
            lock.release(me).unwrap();
            lock.release(me).unwrap();
            assert_eq!(lock.release(me), Err(ReleaseError::NotHeld));
        });
    }

    #[test]
    fn plain_lock_errors() {
        both(|shared| {
            let lock = Mutex::create(false, shared).unwrap();
            let me = Owner::thread();
            assert_eq!(lock.release(me), Err(ReleaseError::NotHeld));
            assert!(lock.try_acquire(me));
            assert!(!lock.try_acquire(me));
            let soon = Instant::now() + Duration::from_millis(30);
            assert_eq!(lock.acquire(me, Some(soon)), Err(AcquireError::TimedOut));
            // Any owner may release a plain lock, as in Python.
            lock.release(Owner { id: me.id + 1, record: 0 }).unwrap();
            assert_eq!(lock.owner(), 0);
        });
    }

    #[test]
    fn a_dead_threads_lock_is_taken_over() {
        both(|shared| {
            let lock = Mutex::create(false, shared).unwrap();
            let l2 = lock.clone();
            std::thread::spawn(move || assert!(l2.try_acquire(Owner::thread()))).join().unwrap();
            assert_ne!(lock.owner(), 0);
            let me = Owner::thread();
            assert_eq!(lock.try_acquire_or_recover(me), Some(Acquired::OwnerDied));
            assert!(lock.held_by(me));
            lock.release(me).unwrap();
            let l3 = lock.clone();
            std::thread::spawn(move || assert!(l3.try_acquire(Owner::thread()))).join().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            assert_eq!(lock.acquire(me, Some(deadline)), Ok(Acquired::OwnerDied));
        });
    }

    #[test]
    fn attach_checks_the_header() {
        let lock = Mutex::create(false, true).unwrap();
        let seg = Arc::new(Segment::attach_dup(lock.segment().fd(), 0).unwrap());
        assert!(Mutex::attach(seg.clone(), false).is_ok());
        assert!(matches!(Mutex::attach(seg, true), Err(SyncAttachError::WrongKind { .. })));
        let foreign = Arc::new(Segment::create("x", 64).unwrap());
        assert!(matches!(Mutex::attach(foreign, false), Err(SyncAttachError::NotSync)));
    }
}
