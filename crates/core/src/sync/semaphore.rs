//! `Semaphore` and `BoundedSemaphore`: a counter in shared memory.
//!
//! Layout after the header: `value: u32` at 16 (the futex word), `sleepers: u32` at 20 (waits
//! in progress, blocking or armed; a release wakes only when there are some), `max: u32` at 24
//! ([`VALUE_MAX`] unless bounded). Taking one is a compare-and-swap that JavaScript also does on a view.
//! A process that dies holding a unit does not give it back (as in Python).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{Kind, SyncAttachError, BODY};
use crate::segment::{Segment, SegmentError};
use crate::sys::futex;
use crate::wait;

pub const VALUE: usize = BODY;
pub const SLEEPERS: usize = BODY + 4;
pub const MAX: usize = BODY + 8;
/// The largest value a semaphore holds.
pub const VALUE_MAX: u32 = i32::MAX as u32;

#[derive(Debug, PartialEq, Eq)]
pub enum SemaphoreReleaseError {
    /// A bounded semaphore released more often than acquired (or past [`VALUE_MAX`]).
    TooManyReleases,
}

impl std::fmt::Display for SemaphoreReleaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "semaphore or lock released too many times")
    }
}

#[derive(Clone)]
pub struct Semaphore {
    seg: Arc<Segment>,
    spinner: Arc<wait::Spinner>,
}

impl Semaphore {
    /// A semaphore holding `value`; `bounded`: releases beyond the initial value fail.
    pub fn create(value: u32, bounded: bool, shared: bool) -> Result<Semaphore, SegmentError> {
        let seg = super::create(Kind::Semaphore, shared)?;
        seg.u32_at(VALUE).store(value.min(VALUE_MAX), Ordering::Relaxed);
        seg.u32_at(MAX).store(if bounded { value.min(VALUE_MAX) } else { VALUE_MAX }, Ordering::Release);
        Ok(Semaphore { seg, spinner: Arc::new(wait::Spinner::new()) })
    }

    pub fn attach(seg: Arc<Segment>) -> Result<Semaphore, SyncAttachError> {
        super::check(&seg, Kind::Semaphore)?;
        Ok(Semaphore { seg, spinner: Arc::new(wait::Spinner::new()) })
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    fn value_word(&self) -> &AtomicU32 {
        self.seg.u32_at(VALUE)
    }

    fn sleepers(&self) -> &AtomicU32 {
        self.seg.u32_at(SLEEPERS)
    }

    pub fn value(&self) -> u32 {
        self.value_word().load(Ordering::Acquire)
    }

    /// The largest value: the initial one for a `BoundedSemaphore`, [`VALUE_MAX`] otherwise.
    pub fn max(&self) -> u32 {
        self.seg.u32_at(MAX).load(Ordering::Acquire)
    }

    pub fn try_acquire(&self) -> bool {
        let word = self.value_word();
        let mut v = word.load(Ordering::Relaxed);
        while v > 0 {
            match word.compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Takes one unit, waiting until `deadline`; false when it passed.
    pub fn acquire(&self, deadline: Option<Instant>) -> bool {
        if self.try_acquire() {
            return true;
        }
        let started = Instant::now();
        if super::may_spin(deadline) && self.spinner.spin(|| self.value() > 0) && self.try_acquire() {
            return true;
        }
        self.sleepers().fetch_add(1, Ordering::SeqCst);
        let got = loop {
            if self.try_acquire() {
                break true;
            }
            if !wait::sleep_slice(self.value_word(), 0, deadline) {
                break self.try_acquire();
            }
        };
        self.sleepers().fetch_sub(1, Ordering::SeqCst);
        self.spinner.learn(started.elapsed(), false);
        got
    }

    /// Counts an asynchronous waiter and returns the word to arm; `None` (not counted) when a
    /// unit is available now. Pair with [`Self::disarm`].
    pub fn arm(&self) -> Option<(usize, u32)> {
        self.sleepers().fetch_add(1, Ordering::SeqCst);
        if self.value_word().load(Ordering::SeqCst) > 0 {
            self.sleepers().fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some((VALUE, 0))
    }

    pub fn disarm(&self) {
        self.sleepers().fetch_sub(1, Ordering::SeqCst);
    }

    /// Gives one unit back and wakes a sleeper, if any.
    pub fn release(&self) -> Result<(), SemaphoreReleaseError> {
        let word = self.value_word();
        let limit = self.max();
        let mut v = word.load(Ordering::Relaxed);
        loop {
            if v >= limit {
                return Err(SemaphoreReleaseError::TooManyReleases);
            }
            match word.compare_exchange_weak(v, v + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        self.wake_sleepers();
        Ok(())
    }

    /// Wakes sleepers after JavaScript has added a unit itself.
    pub fn wake_sleepers(&self) {
        if self.sleepers().load(Ordering::SeqCst) > 0 {
            // Every waiting process's waker thread may sleep on the word: wake them all.
            futex::wake(self.value_word(), i32::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn never_admits_more_than_its_value() {
        for shared in [false, true] {
            let sem = Semaphore::create(2, false, shared).unwrap();
            let inside = Arc::new(AtomicU32::new(0));
            let most = Arc::new(AtomicU32::new(0));
            let threads: Vec<_> = (0..5)
                .map(|_| {
                    let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
                    std::thread::spawn(move || {
                        for _ in 0..2_000 {
                            assert!(sem.acquire(None));
                            let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(n, Ordering::SeqCst);
                            std::hint::spin_loop();
                            inside.fetch_sub(1, Ordering::SeqCst);
                            sem.release().unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert!(most.load(Ordering::SeqCst) <= 2);
            assert_eq!(sem.value(), 2);
        }
    }

    #[test]
    fn bounded_refuses_over_release_and_times_out() {
        for shared in [false, true] {
            let sem = Semaphore::create(1, true, shared).unwrap();
            assert_eq!(sem.release(), Err(SemaphoreReleaseError::TooManyReleases));
            assert!(sem.try_acquire());
            assert!(!sem.acquire(Some(Instant::now() + Duration::from_millis(20))));
            sem.release().unwrap();
            let plain = Semaphore::create(0, false, shared).unwrap();
            plain.release().unwrap();
            plain.release().unwrap();
            assert_eq!(plain.value(), 2);
        }
    }

    #[test]
    fn a_release_wakes_a_sleeper() {
        for shared in [false, true] {
            let sem = Semaphore::create(0, false, shared).unwrap();
            let s2 = sem.clone();
            let t = std::thread::spawn(move || s2.acquire(Some(Instant::now() + Duration::from_secs(10))));
            std::thread::sleep(Duration::from_millis(20));
            sem.release().unwrap();
            assert!(t.join().unwrap());
        }
    }
}
