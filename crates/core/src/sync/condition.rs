//! `Condition`: the waiting half of a condition variable; the lock is a separate [`Mutex`].
//!
//! Layout after the header: `seq: u32` at 16 (the futex word, bumped by every notify),
//! `waiting: u32` at 20 (waiters that have not yet left), `tokens: u32` at 24 (notifications
//! not yet taken). Every count changes only under the user's lock, so a notify of `n` wakes at
//! most `n` waiters and none is lost: a waiter reads `seq` before it releases the lock, so a
//! notify that comes after moves the word it sleeps on. A woken waiter re-takes the lock and
//! takes a token; finding none, it waits again.
//!
//! A process that dies while waiting still counts as a waiter, so one later notify may go to it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{Kind, SyncAttachError, BODY};
use crate::segment::{Segment, SegmentError};
use crate::sys::futex;
use crate::wait;

pub const SEQ: usize = BODY;
pub const WAITING: usize = BODY + 4;
pub const TOKENS: usize = BODY + 8;

#[derive(Clone)]
pub struct Condition {
    seg: Arc<Segment>,
    /// How long a waiter spins before it sleeps, learned from recent waits (this process only).
    spinner: Arc<wait::Spinner>,
}

impl Condition {
    pub fn create(shared: bool) -> Result<Condition, SegmentError> {
        Ok(Condition { seg: super::create(Kind::Condition, shared)?, spinner: Arc::new(wait::Spinner::new()) })
    }

    pub fn attach(seg: Arc<Segment>) -> Result<Condition, SyncAttachError> {
        super::check(&seg, Kind::Condition)?;
        Ok(Condition { seg, spinner: Arc::new(wait::Spinner::new()) })
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.seg.u32_at(offset)
    }

    /// Under the lock: joins the waiters; returns the `seq` to wait on once the lock is released.
    pub fn enter(&self) -> u32 {
        self.word(WAITING).fetch_add(1, Ordering::SeqCst);
        self.observe()
    }

    /// Under the lock: the current `seq`, to wait on again after a wake-up without a token.
    pub fn observe(&self) -> u32 {
        self.word(SEQ).load(Ordering::SeqCst)
    }

    /// Without the lock: sleeps until `seq` moves past `observed` or `deadline`; false once
    /// the deadline has passed without a move.
    pub fn sleep(&self, observed: u32, deadline: Option<Instant>) -> bool {
        let started = Instant::now();
        if super::may_spin(deadline) && self.spinner.spin(|| self.word(SEQ).load(Ordering::SeqCst) != observed) {
            return true;
        }
        let moved = self.sleep_slices(observed, deadline);
        self.spinner.learn(started.elapsed(), false);
        moved
    }

    fn sleep_slices(&self, observed: u32, deadline: Option<Instant>) -> bool {
        loop {
            if self.word(SEQ).load(Ordering::SeqCst) != observed {
                return true;
            }
            if !wait::sleep_slice(self.word(SEQ), observed, deadline) {
                return self.word(SEQ).load(Ordering::SeqCst) != observed;
            }
        }
    }

    /// The word an asynchronous waiter arms; `None` when it has moved already.
    pub fn arm(&self, observed: u32) -> Option<(usize, u32)> {
        (self.word(SEQ).load(Ordering::SeqCst) == observed).then_some((SEQ, observed))
    }

    /// Under the lock again: takes a notification if one is left (and then leaves the waiters).
    pub fn take_token(&self) -> bool {
        let tokens = self.word(TOKENS);
        let t = tokens.load(Ordering::SeqCst);
        if t == 0 {
            return false;
        }
        tokens.store(t - 1, Ordering::SeqCst);
        self.leave();
        true
    }

    /// Under the lock: leaves the waiters without a notification (timed out, aborted).
    pub fn leave(&self) {
        let waiting = self.word(WAITING);
        let w = waiting.load(Ordering::SeqCst);
        waiting.store(w.saturating_sub(1), Ordering::SeqCst);
        // Never more notifications outstanding than waiters to take them.
        let tokens = self.word(TOKENS);
        if tokens.load(Ordering::SeqCst) > w.saturating_sub(1) {
            tokens.store(w.saturating_sub(1), Ordering::SeqCst);
        }
    }

    /// Under the lock: wakes up to `n` waiters; returns how many were notified.
    pub fn notify(&self, n: u32) -> u32 {
        let waiting = self.word(WAITING).load(Ordering::SeqCst);
        let tokens = self.word(TOKENS).load(Ordering::SeqCst);
        let k = n.min(waiting.saturating_sub(tokens));
        if k == 0 {
            return 0;
        }
        self.word(TOKENS).store(tokens + k, Ordering::SeqCst);
        self.word(SEQ).fetch_add(1, Ordering::SeqCst);
        // Sleepers are threads of waiting processes or their waker threads: wake them all, and
        // the tokens decide who goes on.
        futex::wake(self.word(SEQ), i32::MAX);
        k
    }

    /// Waiters that have not left yet (an upper bound: a dead waiter stays counted).
    pub fn waiting(&self) -> u32 {
        self.word(WAITING).load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Mutex, Owner};
    use super::*;
    use std::time::Duration;

    /// Python's `Condition.wait` over these parts, as the bindings drive it.
    fn wait(cond: &Condition, lock: &Mutex, deadline: Option<Instant>) -> bool {
        let me = Owner::thread();
        let mut observed = cond.enter();
        loop {
            let depth = lock.release_all(me).unwrap();
            let moved = cond.sleep(observed, deadline);
            lock.acquire(me, None).unwrap();
            lock.restore_depth(me, depth);
            if cond.take_token() {
                return true;
            }
            if !moved || deadline.is_some_and(|d| Instant::now() >= d) {
                cond.leave();
                return false;
            }
            observed = cond.observe();
        }
    }

    #[test]
    fn no_lost_wakeups_across_hand_offs() {
        for shared in [false, true] {
            let lock = Mutex::create(true, shared).unwrap();
            let cond = Condition::create(shared).unwrap();
            let slot = Arc::new(AtomicU32::new(0));
            let (l2, c2, s2) = (lock.clone(), cond.clone(), slot.clone());
            let consumer = std::thread::spawn(move || {
                let me = Owner::thread();
                let mut sum = 0u64;
                for i in 1..=5_000u32 {
                    l2.acquire(me, None).unwrap();
                    while s2.load(Ordering::SeqCst) == 0 {
                        assert!(wait(&c2, &l2, Some(Instant::now() + Duration::from_secs(10))));
                    }
                    assert_eq!(s2.swap(0, Ordering::SeqCst), i);
                    sum += i as u64;
                    c2.notify(1);
                    l2.release(me).unwrap();
                }
                sum
            });
            let me = Owner::thread();
            for i in 1..=5_000u32 {
                lock.acquire(me, None).unwrap();
                while slot.load(Ordering::SeqCst) != 0 {
                    assert!(wait(&cond, &lock, Some(Instant::now() + Duration::from_secs(10))));
                }
                slot.store(i, Ordering::SeqCst);
                cond.notify(1);
                lock.release(me).unwrap();
            }
            assert_eq!(consumer.join().unwrap(), 5_000 * 5_001 / 2);
        }
    }

    #[test]
    fn a_timed_wait_leaves_and_notify_counts_waiters() {
        for shared in [false, true] {
            let lock = Mutex::create(false, shared).unwrap();
            let cond = Condition::create(shared).unwrap();
            let me = Owner::thread();
            lock.acquire(me, None).unwrap();
            assert!(!wait(&cond, &lock, Some(Instant::now() + Duration::from_millis(20))));
            assert!(lock.held_by(me));
            assert_eq!(cond.waiting(), 0);
            assert_eq!(cond.notify(5), 0);
            lock.release(me).unwrap();
        }
    }
}
