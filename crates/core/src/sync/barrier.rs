//! `Barrier`: `parties` waits meet, then all go on together; it can be broken (a timeout,
//! `abort`) and reset.
//!
//! Layout after the header: `gen: u32` at 16 (the futex word; moves on every crossing, break
//! or reset), `count: u32` at 20 (parties arrived in this generation), `broken: u32` at 24,
//! `parties: u32` at 28, `history: u64` at 32 (bit `g % 64` set when generation `g` ended by
//! crossing rather than by a break or reset), and a short internal lock at 40 that guards these
//! words during an operation (never across a wait). A waiter that slept through a generation
//! change learns from `history` whether its generation crossed, even if a break followed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{Kind, SyncAttachError, BODY};
use crate::lock::{Owner, RobustLock, WhenHeld};
use crate::segment::{Segment, SegmentError};
use crate::sys::futex;
use crate::wait;

pub const GEN: usize = BODY;
const COUNT: usize = BODY + 4;
const BROKEN: usize = BODY + 8;
const PARTIES: usize = BODY + 12;
const HISTORY: usize = BODY + 16;
const GUARD: usize = BODY + 24;
const GUARD_RECORD: usize = BODY + 32;

/// What an arrival at the barrier means for the caller.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Arrival {
    /// Wait for generation `gen` to end; `index` is the arrival order (Python's return value).
    Wait { gen: u32, index: u32 },
    /// The last party: run the action, then call [`Barrier::cross`] (or `abort` if it failed).
    Last { gen: u32, index: u32 },
    /// The previous generation is crossing (its last party runs the action): wait for `gen` to
    /// move, then arrive again.
    Busy { gen: u32 },
}

#[derive(Debug, PartialEq, Eq)]
pub enum BarrierError {
    Broken,
    TimedOut,
    /// The internal lock stayed taken by a live process for [`GUARD_PATIENCE`]: not a party of
    /// ours (whose hold lasts a few instructions), so the segment was written by a stranger.
    Stuck,
}

/// How long the operations without a deadline wait for the internal lock before [`BarrierError::Stuck`].
pub const GUARD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone)]
pub struct Barrier {
    seg: Arc<Segment>,
}

impl Barrier {
    pub fn create(parties: u32, shared: bool) -> Result<Barrier, SegmentError> {
        let seg = super::create(Kind::Barrier, shared)?;
        seg.u32_at(PARTIES).store(parties.max(1), Ordering::Release);
        Ok(Barrier { seg })
    }

    pub fn attach(seg: Arc<Segment>) -> Result<Barrier, SyncAttachError> {
        super::check(&seg, Kind::Barrier)?;
        if seg.u32_at(PARTIES).load(Ordering::Acquire) == 0 {
            return Err(SyncAttachError::NotSync);
        }
        Ok(Barrier { seg })
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.seg.u32_at(offset)
    }

    fn history(&self) -> &AtomicU64 {
        self.seg.u64_at(HISTORY)
    }

    fn guard(&self) -> RobustLock<'_> {
        RobustLock::new(self.seg.u32_at(GUARD), self.seg.u64_at(GUARD_RECORD))
    }

    /// Runs `f` holding the internal lock, taken by `deadline` (it is held for a few
    /// instructions only, a holder that died is taken over); `TimedOut` if it cannot be.
    fn guarded_by<R>(&self, deadline: Option<Instant>, f: impl FnOnce() -> R) -> Result<R, BarrierError> {
        let (_held, _) =
            self.guard().lock(Owner::thread(), deadline, WhenHeld::Refuse).map_err(|_| BarrierError::TimedOut)?;
        Ok(f())
    }

    /// [`Self::guarded_by`] for the operations without a deadline: `Stuck` past [`GUARD_PATIENCE`].
    fn guarded(&self, f: impl FnOnce()) -> Result<(), BarrierError> {
        self.guarded_by(Some(Instant::now() + GUARD_PATIENCE), f).map_err(|_| BarrierError::Stuck)
    }

    pub fn parties(&self) -> u32 {
        self.word(PARTIES).load(Ordering::Acquire)
    }

    pub fn n_waiting(&self) -> u32 {
        self.word(COUNT).load(Ordering::Acquire).min(self.parties())
    }

    pub fn broken(&self) -> bool {
        self.word(BROKEN).load(Ordering::Acquire) != 0
    }

    pub fn generation(&self) -> u32 {
        self.word(GEN).load(Ordering::Acquire)
    }

    /// Arrives; `TimedOut` when the internal lock cannot be taken by `deadline` (a live
    /// process holds it: not one of ours, whose hold lasts a few instructions).
    pub fn arrive(&self, deadline: Option<Instant>) -> Result<Arrival, BarrierError> {
        self.guarded_by(deadline, || {
            if self.broken() {
                return Err(BarrierError::Broken);
            }
            let gen = self.generation();
            let count = self.word(COUNT).load(Ordering::Relaxed);
            let parties = self.parties();
            if count >= parties {
                return Ok(Arrival::Busy { gen });
            }
            self.word(COUNT).store(count + 1, Ordering::Relaxed);
            Ok(if count + 1 == parties {
                Arrival::Last { gen, index: count }
            } else {
                Arrival::Wait { gen, index: count }
            })
        })?
    }

    /// The last party of generation `gen` releases everyone.
    pub fn cross(&self, gen: u32) -> Result<(), BarrierError> {
        self.guarded(|| {
            if self.generation() != gen {
                return; // broken or reset meanwhile
            }
            self.history().fetch_or(1 << (gen % 64), Ordering::SeqCst);
            self.word(COUNT).store(0, Ordering::Relaxed);
            self.word(GEN).store(gen.wrapping_add(1), Ordering::SeqCst);
        })?;
        futex::wake(self.word(GEN), i32::MAX);
        Ok(())
    }

    /// Ends the current generation without crossing: `broken` says whether it stays broken.
    fn end(&self, broken: bool) {
        let gen = self.generation();
        self.history().fetch_and(!(1 << (gen % 64)), Ordering::SeqCst);
        self.word(COUNT).store(0, Ordering::Relaxed);
        self.word(BROKEN).store(broken as u32, Ordering::SeqCst);
        self.word(GEN).store(gen.wrapping_add(1), Ordering::SeqCst);
        futex::wake(self.word(GEN), i32::MAX);
    }

    /// Breaks the barrier: every waiter, and every later arrival until `reset`, fails.
    pub fn abort(&self) -> Result<(), BarrierError> {
        self.guarded(|| {
            if !self.broken() {
                self.end(true);
            }
        })
    }

    /// A waiter of generation `gen` gave up (timeout): breaks it, unless it ended meanwhile.
    pub fn abort_generation(&self, gen: u32) -> Result<(), BarrierError> {
        self.guarded(|| {
            if !self.broken() && self.generation() == gen {
                self.end(true);
            }
        })
    }

    /// Back to the empty state; parties waiting now fail with `Broken`.
    pub fn reset(&self) -> Result<(), BarrierError> {
        self.guarded(|| {
            if self.broken() {
                self.word(COUNT).store(0, Ordering::Relaxed);
                self.word(BROKEN).store(0, Ordering::SeqCst);
            } else if self.word(COUNT).load(Ordering::Relaxed) > 0 {
                self.end(false);
            }
        })
    }

    /// How generation `gen` ended, or `None` while it lasts.
    pub fn outcome(&self, gen: u32) -> Option<Result<(), BarrierError>> {
        if self.generation() == gen {
            return None;
        }
        Some(if self.history().load(Ordering::SeqCst) & (1 << (gen % 64)) != 0 {
            Ok(())
        } else {
            Err(BarrierError::Broken)
        })
    }

    /// The word an asynchronous waiter of `gen` arms; `None` once the generation has ended.
    pub fn arm(&self, gen: u32) -> Option<(usize, u32)> {
        (self.generation() == gen).then_some((GEN, gen))
    }

    /// Waits for generation `gen` to end. A wait that runs out breaks the barrier (as Python).
    pub fn wait_generation(&self, gen: u32, deadline: Option<Instant>) -> Result<(), BarrierError> {
        loop {
            if let Some(r) = self.outcome(gen) {
                return r;
            }
            if !wait::sleep_slice(self.word(GEN), gen, deadline) {
                if let Some(r) = self.outcome(gen) {
                    return r;
                }
                self.abort_generation(gen)?;
                return Err(BarrierError::TimedOut);
            }
        }
    }

    /// Waits for the generation to move past `gen` (after a [`Arrival::Busy`]); false when the
    /// deadline passed first.
    pub fn wait_moved(&self, gen: u32, deadline: Option<Instant>) -> bool {
        while self.generation() == gen {
            if !wait::sleep_slice(self.word(GEN), gen, deadline) {
                return self.generation() != gen;
            }
        }
        true
    }

    /// One party's whole blocking wait, with an action run by the last party.
    pub fn wait(&self, deadline: Option<Instant>, action: impl FnOnce()) -> Result<u32, BarrierError> {
        loop {
            match self.arrive(deadline)? {
                Arrival::Busy { gen } => {
                    if !self.wait_moved(gen, deadline) {
                        return Err(BarrierError::TimedOut);
                    }
                }
                Arrival::Last { gen, index } => {
                    action();
                    self.cross(gen)?;
                    return Ok(index);
                }
                Arrival::Wait { gen, index } => return self.wait_generation(gen, deadline).map(|_| index),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parties_cross_many_times_with_one_action_each() {
        for shared in [false, true] {
            let barrier = Barrier::create(4, shared).unwrap();
            let actions = Arc::new(AtomicU32::new(0));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (b, actions) = (barrier.clone(), actions.clone());
                    std::thread::spawn(move || {
                        let mut indices = 0u64;
                        for _ in 0..300 {
                            let i = b
                                .wait(Some(Instant::now() + Duration::from_secs(20)), || {
                                    actions.fetch_add(1, Ordering::SeqCst);
                                })
                                .unwrap();
                            indices += i as u64;
                        }
                        indices
                    })
                })
                .collect();
            let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
            assert_eq!(total, 300 * (1 + 2 + 3));
            assert_eq!(actions.load(Ordering::SeqCst), 300);
            assert_eq!(barrier.n_waiting(), 0);
        }
    }

    #[test]
    fn abort_breaks_waiters_and_reset_heals() {
        for shared in [false, true] {
            let barrier = Barrier::create(3, shared).unwrap();
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let b = barrier.clone();
                    std::thread::spawn(move || b.wait(Some(Instant::now() + Duration::from_secs(20)), || {}))
                })
                .collect();
            while barrier.n_waiting() < 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            barrier.abort().unwrap();
            for w in waiters {
                assert_eq!(w.join().unwrap(), Err(BarrierError::Broken));
            }
            assert!(barrier.broken());
            assert_eq!(barrier.wait(None, || {}), Err(BarrierError::Broken));
            barrier.reset().unwrap();
            assert!(!barrier.broken());
            // A wait that times out breaks it.
            assert_eq!(
                barrier.wait(Some(Instant::now() + Duration::from_millis(20)), || {}),
                Err(BarrierError::TimedOut)
            );
            assert!(barrier.broken());
        }
    }
}
