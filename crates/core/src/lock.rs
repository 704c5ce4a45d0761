//! The one robust lock: a word in shared memory owned by a process or a thread, robust against
//! its owner's death. `Lock`/`RLock` (owned by processes), a ring's producer and consumer locks
//! and a barrier's internal guard (owned by threads) all use it; who owns is the [`Owner`] the
//! caller passes, re-entry depth is kept by the caller (`sync::mutex`).
//!
//! Layout (two words, anywhere 8-aligned): `state: u32` holds the owner's id (0 when free: a
//! pid, or a thread id) with [`WAITERS`] set while somebody sleeps or an asynchronous wait is
//! armed; `record: u64` records `id << 32 | start time`, so that a recycled id is not mistaken for
//! the owner. The record is written just after the state changes hands: a record that names
//! another id than the state is not yet (or no longer) the owner's, and then only the id's
//! existence is checked. A word with no owner is free whatever its waiters bit says (a hostile
//! or torn write may leave the bit alone).
//!
//! A waiter sleeps in bounded slices and, between them, checks that the owner still lives; if
//! not, it takes the lock over and says so ([`Acquired::OwnerDied`], like `EOWNERDEAD`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread::LocalKey;
use std::time::{Duration, Instant};

use crate::sys::{futex, process};
use crate::wait;

/// Bytes of a lock's two words (`state`, then `record` at +8).
pub const LOCK_SIZE: usize = 16;
/// Set in the state word while somebody sleeps (or an asynchronous wait is armed) on it.
pub const WAITERS: u32 = 1 << 31;
/// The owner's id in the state word.
pub const ID_MASK: u32 = !WAITERS;
/// Where the owner record sits, from the state word.
pub const RECORD_OFFSET: usize = 8;
/// How often a waiter checks that the owner still lives.
pub const OWNER_CHECK_EVERY: Duration = Duration::from_millis(20);
/// Spins of a contended acquire before it sleeps (critical sections are short).
const SPINS: u32 = 200;
const START_MASK: u64 = 0xffff_ffff;

/// Who holds a lock: an id the kernel knows (a pid, or a thread id) and a record
/// `id << 32 | start time` that tells a recycled id from the original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub id: u32,
    pub record: u64,
}

impl Owner {
    fn of(id: i32) -> Owner {
        let start = process::start_time(id).unwrap_or(0);
        Owner { id: id as u32, record: ((id as u32 as u64) << 32) | (start & START_MASK) }
    }

    /// The calling process: locks of the JavaScript API are owned by processes.
    pub fn process() -> Owner {
        thread_local! { static SELF: Cell<Option<(u64, Owner)>> = const { Cell::new(None) }; }
        Owner::cached(&SELF, process::current_pid)
    }

    /// The calling thread: ring locks, and the in-process twins' tests.
    pub fn thread() -> Owner {
        thread_local! { static SELF: Cell<Option<(u64, Owner)>> = const { Cell::new(None) }; }
        Owner::cached(&SELF, process::current_tid)
    }

    /// Computed once per fork generation: a child forked off this process is someone else.
    fn cached(cell: &'static LocalKey<Cell<Option<(u64, Owner)>>>, id: fn() -> i32) -> Owner {
        let generation = process::fork_generation();
        cell.with(|c| match c.get() {
            Some((g, owner)) if g == generation => owner,
            _ => {
                let owner = Owner::of(id());
                c.set(Some((generation, owner)));
                owner
            }
        })
    }
}

/// True when the holder named by `id` (with the owner `record` read beside it) has died.
pub fn holder_is_dead(id: u32, record: u64) -> bool {
    if id == 0 {
        return false;
    }
    // Only a record of this very holder says when it started; otherwise it is being written.
    let start = if (record >> 32) as u32 == id { record & START_MASK } else { 0 };
    match process::task(id as i32) {
        process::Task::Live(t) => start != 0 && (t & START_MASK) != start,
        process::Task::Zombie => true,
        // Unreadable is not proof of death (hidden /proc entries): ask the kernel directly.
        process::Task::Unreadable => !process::exists(id as i32),
    }
}

/// How an acquire ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Acquired {
    /// Taken normally.
    Clean,
    /// Taken over from an owner that died holding it; the guarded data may be half-updated.
    OwnerDied,
}

/// Why an acquire failed.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum AcquireError {
    TimedOut,
    /// The caller already holds it, and the lock was asked to refuse that ([`WhenHeld::Refuse`]).
    WouldDeadlock,
}

/// What an acquire does when the caller already holds the (non-reentrant) lock.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum WhenHeld {
    /// Wait like anybody else: another thread of the owner may release it (Python's `Lock`).
    Wait,
    /// Fail at once with [`AcquireError::WouldDeadlock`].
    Refuse,
}

/// A lock's two words, borrowed from a segment.
#[derive(Clone, Copy)]
pub struct RobustLock<'a> {
    state: &'a AtomicU32,
    record: &'a AtomicU64,
}

impl<'a> RobustLock<'a> {
    pub fn new(state: &'a AtomicU32, record: &'a AtomicU64) -> Self {
        RobustLock { state, record }
    }

    /// The state word (what an asynchronous waiter arms the waker on).
    pub fn state_word(&self) -> &'a AtomicU32 {
        self.state
    }

    /// The owner's id, 0 when free.
    pub fn owner(&self) -> u32 {
        self.state.load(Ordering::Acquire) & ID_MASK
    }

    pub fn held_by(&self, who: Owner) -> bool {
        self.owner() == who.id
    }

    /// Takes the lock if it has no owner. Never waits, never looks at a holder's liveness.
    pub fn try_acquire(&self, who: Owner) -> bool {
        let mut cur = 0;
        loop {
            // A stray waiters bit on a free word is kept: the release then wakes, harmlessly.
            match self.state.compare_exchange(cur, who.id | (cur & WAITERS), Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    self.record.store(who.record, Ordering::Release);
                    return true;
                }
                Err(seen) if seen & ID_MASK == 0 => cur = seen,
                Err(_) => return false,
            }
        }
    }

    /// [`Self::try_acquire`], or takes the lock over if its holder has died. The asynchronous
    /// waits call this when they wake, and at least every few hundred milliseconds.
    pub fn try_acquire_or_recover(&self, who: Owner) -> Option<Acquired> {
        if self.try_acquire(who) {
            return Some(Acquired::Clean);
        }
        let cur = self.state.load(Ordering::Acquire);
        if cur & ID_MASK != who.id && self.holder_is_dead(cur) && self.take_over(cur, who) {
            return Some(Acquired::OwnerDied);
        }
        None
    }

    /// True when the lock is held by an owner that no longer exists.
    pub fn owner_is_dead(&self) -> bool {
        self.holder_is_dead(self.state.load(Ordering::Acquire))
    }

    /// Whether the holder named in `observed` (a value of the state word) died holding it.
    fn holder_is_dead(&self, observed: u32) -> bool {
        let dead = holder_is_dead(observed & ID_MASK, self.record.load(Ordering::Acquire));
        // It may have released the lock and exited since we looked: only a holder that is gone
        // while the word still names it died holding it.
        dead && self.state.load(Ordering::Acquire) == observed
    }

    fn take_over(&self, observed: u32, who: Owner) -> bool {
        // Keep the waiters bit, so that sleepers are still woken on release.
        let next = who.id | (observed & WAITERS);
        if self.state.compare_exchange(observed, next, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            self.record.store(who.record, Ordering::Release);
            return true;
        }
        false
    }

    /// Takes the lock, waiting until `deadline` (`None`: no limit, still in bounded slices);
    /// a deadline already past is a try that still takes over a dead owner's lock. `spinner`,
    /// when given, spins for its learned budget before the fixed spins, and learns from the wait.
    pub fn acquire(
        &self,
        who: Owner,
        deadline: Option<Instant>,
        when_held: WhenHeld,
        spinner: Option<&wait::Spinner>,
    ) -> Result<Acquired, AcquireError> {
        if self.try_acquire(who) {
            return Ok(Acquired::Clean);
        }
        let started = Instant::now();
        let r = self.acquire_slow(who, deadline, when_held, spinner);
        if let Some(s) = spinner {
            s.learn(started.elapsed(), false);
        }
        r
    }

    fn acquire_slow(
        &self,
        who: Owner,
        deadline: Option<Instant>,
        when_held: WhenHeld,
        spinner: Option<&wait::Spinner>,
    ) -> Result<Acquired, AcquireError> {
        let may_spin = deadline.is_none_or(|d| Instant::now() < d);
        if let Some(s) = spinner.filter(|_| may_spin) {
            // Hand-offs between processes are fast when the waiter is still awake.
            if s.spin(|| self.owner() == 0) && self.try_acquire(who) {
                return Ok(Acquired::Clean);
            }
        }
        let mut spins = 0u32;
        let mut last_check = Instant::now();
        loop {
            let cur = self.state.load(Ordering::Relaxed);
            let id = cur & ID_MASK;
            if id == 0 {
                if self.try_acquire(who) {
                    return Ok(Acquired::Clean);
                }
                continue;
            }
            if id == who.id && when_held == WhenHeld::Refuse {
                return Err(AcquireError::WouldDeadlock);
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            // Reading /proc costs microseconds: look at the owner only after a while of waiting.
            let check_owner = last_check.elapsed() >= OWNER_CHECK_EVERY;
            if check_owner {
                last_check = Instant::now();
                if self.holder_is_dead(cur) {
                    if self.take_over(cur, who) {
                        return Ok(Acquired::OwnerDied);
                    }
                    continue;
                }
            }
            let with_waiters = cur | WAITERS;
            if cur & WAITERS == 0
                && self.state.compare_exchange(cur, with_waiters, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // A caller that only ever tries must still be able to take over a dead owner's
                // lock. The word now carries the waiters bit: compare against that.
                if !check_owner && self.holder_is_dead(with_waiters) {
                    if self.take_over(with_waiters, who) {
                        return Ok(Acquired::OwnerDied);
                    }
                    continue;
                }
                return Err(AcquireError::TimedOut);
            }
            wait::sleep_slice(self.state, with_waiters, deadline);
        }
    }

    /// Marks the lock as waited for and returns the state value an asynchronous waiter arms
    /// the waker on; `None` when it has no owner now, or `mine` names its owner (try again).
    pub fn arm(&self, mine: Option<u32>) -> Option<u32> {
        loop {
            let cur = self.state.load(Ordering::Relaxed);
            let id = cur & ID_MASK;
            if id == 0 || Some(id) == mine {
                return None;
            }
            let with_waiters = cur | WAITERS;
            if cur == with_waiters
                || self.state.compare_exchange(cur, with_waiters, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                return Some(with_waiters);
            }
        }
    }

    /// Frees the lock whoever holds it, waking sleepers. False when it had no owner.
    pub fn release(&self) -> bool {
        let prev = self.state.swap(0, Ordering::Release);
        if prev & WAITERS != 0 {
            futex::wake(self.state, i32::MAX);
        }
        prev & ID_MASK != 0
    }

    /// Frees the lock if `who` holds it. False (and nothing changes) otherwise.
    pub fn release_if_held_by(&self, who: Owner) -> bool {
        if self.owner() != who.id {
            return false;
        }
        self.release()
    }

    /// Takes the lock (as [`Self::acquire`]) and returns a guard that frees it when dropped.
    pub fn lock(
        self,
        who: Owner,
        deadline: Option<Instant>,
        when_held: WhenHeld,
    ) -> Result<(Guard<'a>, Acquired), AcquireError> {
        let acquired = self.acquire(who, deadline, when_held, None)?;
        Ok((Guard { lock: self, who }, acquired))
    }
}

/// Holds a [`RobustLock`] until dropped.
pub struct Guard<'a> {
    lock: RobustLock<'a>,
    who: Owner,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.lock.release_if_held_by(self.who);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> (AtomicU32, AtomicU64) {
        (AtomicU32::new(0), AtomicU64::new(0))
    }

    #[test]
    fn a_word_with_only_the_waiters_bit_is_free() {
        let (state, record) = words();
        state.store(WAITERS, Ordering::Relaxed);
        let lock = RobustLock::new(&state, &record);
        let me = Owner::thread();
        assert_eq!(lock.owner(), 0);
        assert_eq!(lock.arm(None), None);
        assert!(lock.try_acquire(me));
        assert!(lock.held_by(me));
        assert!(lock.release());
        state.store(WAITERS, Ordering::Relaxed);
        let soon = Instant::now() + Duration::from_millis(200);
        assert_eq!(lock.acquire(me, Some(soon), WhenHeld::Refuse, None), Ok(Acquired::Clean));
        assert!(lock.release());
        assert!(!lock.release());
    }

    #[test]
    fn refuses_or_waits_for_its_own_holder() {
        let (state, record) = words();
        let lock = RobustLock::new(&state, &record);
        let me = Owner::thread();
        assert!(lock.try_acquire(me));
        assert!(!lock.try_acquire(me));
        assert_eq!(lock.acquire(me, None, WhenHeld::Refuse, None), Err(AcquireError::WouldDeadlock));
        let soon = Instant::now() + Duration::from_millis(30);
        assert_eq!(lock.acquire(me, Some(soon), WhenHeld::Wait, None), Err(AcquireError::TimedOut));
        assert!(lock.release_if_held_by(me));
    }

    #[test]
    fn a_guard_releases_on_drop_and_a_dead_threads_lock_is_taken_over() {
        let (state, record) = words();
        let lock = RobustLock::new(&state, &record);
        {
            let (_guard, how) = lock.lock(Owner::thread(), None, WhenHeld::Refuse).unwrap();
            assert_eq!(how, Acquired::Clean);
            assert!(lock.held_by(Owner::thread()));
        }
        assert_eq!(lock.owner(), 0);
        std::thread::scope(|s| {
            s.spawn(|| assert!(lock.try_acquire(Owner::thread())));
        });
        assert_ne!(lock.owner(), 0);
        let soon = Instant::now() + Duration::from_secs(5);
        assert_eq!(lock.acquire(Owner::thread(), Some(soon), WhenHeld::Refuse, None), Ok(Acquired::OwnerDied));
        // A try (deadline past) takes over a dead owner's lock too.
        std::thread::scope(|s| {
            s.spawn(|| {
                lock.release();
                assert!(lock.try_acquire(Owner::thread()))
            });
        });
        // A joined thread may linger in the kernel for a moment.
        let give_up = Instant::now() + Duration::from_secs(5);
        while !lock.owner_is_dead() && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
        let past = Instant::now();
        assert_eq!(lock.acquire(Owner::thread(), Some(past), WhenHeld::Refuse, None), Ok(Acquired::OwnerDied));
    }

    #[test]
    fn excludes_threads() {
        let (state, record) = words();
        let counter = AtomicU64::new(0);
        let lock = RobustLock::new(&state, &record);
        let spinner = wait::Spinner::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        let me = Owner::thread();
                        assert_eq!(lock.acquire(me, None, WhenHeld::Refuse, Some(&spinner)), Ok(Acquired::Clean));
                        let v = counter.load(Ordering::Relaxed);
                        counter.store(v + 1, Ordering::Relaxed);
                        assert!(lock.release_if_held_by(me));
                    }
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
    }
}
