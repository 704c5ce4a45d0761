//! A mutual-exclusion word in shared memory, owned by a thread (of any process) and robust
//! against its owner's death.
//!
//! Layout (16 bytes, 8-aligned): `state: u32` holds the owner's thread id (0 when free; the pid
//! for a process's main thread) with [`WAITERS`] set when somebody sleeps; `owner: u64` records
//! `tid << 32 | start time` of the owner, so that a recycled id is not mistaken for it. The record
//! is written just after the state changes hands: a record that names another thread than the
//! state is not yet (or no longer) the owner's, and then only the id's existence is checked. A waiter sleeps in bounded slices and, between
//! them, checks that the owner still lives; if not, it takes the lock over and says so.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::sys::{futex, process};
use crate::wait;

pub const LOCK_SIZE: usize = 16;
const WAITERS: u32 = 1 << 31;
const PID_MASK: u32 = !WAITERS;
const OWNER_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// A lock word and its owner record, borrowed from a segment.
#[derive(Clone, Copy)]
pub struct LockRef<'a> {
    state: &'a AtomicU32,
    owner_start: &'a AtomicU64,
}

/// How an acquire ended (thread-owned locks here, process-owned ones in `sync::mutex`).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Acquired {
    /// Taken normally.
    Clean,
    /// Taken over from an owner that died holding it; the guarded data may be half-updated.
    OwnerDied,
}

/// Why an acquire failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AcquireError {
    TimedOut,
    /// The calling thread already holds it (the lock is not re-entrant).
    WouldDeadlock,
}

thread_local! {
    static SELF: (u32, u64) = {
        let tid = process::current_tid() as u32;
        (tid, record_of(tid, process::start_time(tid as i32).unwrap_or(0)))
    };
}

const START_MASK: u64 = 0xffff_ffff;

/// An owner record: the thread id, and the low 32 bits of its start time (clock ticks since boot).
fn record_of(tid: u32, start: u64) -> u64 {
    ((tid as u64) << 32) | (start & START_MASK)
}

/// The calling thread's id and owner record.
pub fn identity() -> (u32, u64) {
    SELF.with(|s| *s)
}

impl<'a> LockRef<'a> {
    pub fn new(state: &'a AtomicU32, owner_start: &'a AtomicU64) -> Self {
        LockRef { state, owner_start }
    }

    /// The owner's thread id, 0 when free.
    pub fn owner(&self) -> u32 {
        self.state.load(Ordering::Acquire) & PID_MASK
    }

    pub fn held_by_me(&self) -> bool {
        self.owner() == identity().0
    }

    /// Takes the lock if free. `None` when somebody (alive or not) holds it.
    pub fn try_acquire(&self) -> Option<Acquired> {
        let (pid, start) = identity();
        if self.state.compare_exchange(0, pid, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            self.owner_start.store(start, Ordering::Release);
            return Some(Acquired::Clean);
        }
        None
    }

    /// Takes the lock, waiting until `deadline` (`None`: no limit, still in bounded slices).
    pub fn acquire(&self, deadline: Option<Instant>) -> Result<Acquired, AcquireError> {
        if let Some(a) = self.try_acquire() {
            return Ok(a);
        }
        let (me, start) = identity();
        let mut spins = 0u32;
        let mut last_check = Instant::now();
        loop {
            let cur = self.state.load(Ordering::Relaxed);
            if cur == 0 {
                if let Some(a) = self.try_acquire() {
                    return Ok(a);
                }
                continue;
            }
            let owner = cur & PID_MASK;
            if owner == me {
                return Err(AcquireError::WouldDeadlock);
            }
            // Critical sections are short: spin a little before sleeping.
            if spins < 200 {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            // Reading /proc costs microseconds: look at the owner only after a while of waiting.
            let check_owner = last_check.elapsed() >= OWNER_CHECK_EVERY;
            if check_owner {
                last_check = Instant::now();
            }
            if check_owner && self.holder_is_dead(cur) {
                // Take it over, keeping the waiters bit so sleepers are still woken on release.
                let next = me | (cur & WAITERS);
                if self.state.compare_exchange(cur, next, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    self.owner_start.store(start, Ordering::Release);
                    return Ok(Acquired::OwnerDied);
                }
                continue;
            }
            let with_waiters = cur | WAITERS;
            if cur & WAITERS == 0
                && self.state.compare_exchange(cur, with_waiters, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // Before giving up, make sure the owner is not dead: a caller that only ever
                // tries (deadline now) must still be able to take over a dead owner's lock. The
                // word now carries the waiters bit: compare against that.
                if !check_owner && self.holder_is_dead(with_waiters) {
                    last_check = Instant::now() - OWNER_CHECK_EVERY;
                    continue;
                }
                return Err(AcquireError::TimedOut);
            }
            wait::sleep_slice(self.state, with_waiters, deadline);
        }
    }

    /// True when the lock is held by a thread that no longer exists.
    pub fn owner_is_dead(&self) -> bool {
        self.holder_is_dead(self.state.load(Ordering::Acquire))
    }

    /// Whether the thread named in `observed` (a value of the state word) has died.
    fn holder_is_dead(&self, observed: u32) -> bool {
        let tid = observed & PID_MASK;
        if tid == 0 {
            return false;
        }
        let record = self.owner_start.load(Ordering::Acquire);
        // Only a record of this very thread says when it started; otherwise it is being written.
        let start = if (record >> 32) as u32 == tid { record & START_MASK } else { 0 };
        let gone = match process::task(tid as i32) {
            process::Task::Live(t) => start != 0 && (t & START_MASK) != start,
            process::Task::Zombie => true,
            // Unreadable is not proof of death (hidden /proc entries): ask the kernel directly.
            process::Task::Unreadable => !process::exists(tid as i32),
        };
        // It may have released the lock and exited since we looked: only a holder that is gone
        // while the word still names it died holding it.
        gone && self.state.load(Ordering::Acquire) == observed
    }

    /// Releases the lock. Returns false when the calling thread did not hold it.
    pub fn release(&self) -> bool {
        let (me, _) = identity();
        let cur = self.state.load(Ordering::Relaxed);
        if cur & PID_MASK != me {
            return false;
        }
        let prev = self.state.swap(0, Ordering::Release);
        if prev & WAITERS != 0 {
            futex::wake(self.state, i32::MAX);
        }
        true
    }
}
