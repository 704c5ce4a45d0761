//! Waiting for a shared word to change: an adaptive spin, then a bounded futex sleep.
//!
//! On a 2-vCPU machine a futex sleep and wake costs 5–100 µs, a spinning hand-off under 1 µs.
//! The spin budget is learned from recent hand-offs: it grows to cover waits that ended soon
//! after we started sleeping, shrinks when waits run long, and is zero once the channel idles.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::futex;

/// The longest spin; beyond this a sleeping wake-up is cheaper than burning the core.
pub const MAX_SPIN: Duration = Duration::from_micros(100);
/// The spin budget of a side that has not waited yet.
pub const INITIAL_SPIN: Duration = Duration::from_micros(20);
/// A sleep is cut into slices of at most this long, so callers re-check liveness and closure.
pub const SLICE: Duration = Duration::from_millis(50);

/// The learned spin budget of one waiting side, in nanoseconds. Process-local.
#[derive(Debug, Default)]
pub struct Spinner {
    budget_ns: AtomicU64,
}

impl Spinner {
    pub fn new() -> Spinner {
        Spinner { budget_ns: AtomicU64::new(INITIAL_SPIN.as_nanos() as u64) }
    }

    pub fn budget(&self) -> Duration {
        Duration::from_nanos(self.budget_ns.load(Ordering::Relaxed))
    }

    /// Spins until `ready()` or the budget runs out. Returns whether `ready()` became true.
    pub fn spin(&self, mut ready: impl FnMut() -> bool) -> bool {
        let budget = self.budget();
        if budget.is_zero() {
            return false;
        }
        let start = Instant::now();
        let mut i = 0u32;
        loop {
            if ready() {
                self.learn(start.elapsed(), true);
                return true;
            }
            i = i.wrapping_add(1);
            if i.is_multiple_of(64) {
                let spent = start.elapsed();
                if spent >= budget {
                    return false;
                }
                // Past the first few µs, let a peer that shares this CPU run (when the machine
                // is short of cores, spinning alone would only delay the hand-off it waits for).
                if spent >= YIELD_AFTER {
                    std::thread::yield_now();
                }
            }
            std::hint::spin_loop();
        }
    }

    /// Records how long a wait took in all (spin, then sleep, then the wake-up).
    ///
    /// A busy channel (the wait was short, or a sleep of no more than [`BUSY`] that a long spin
    /// would have caught) spins the full [`MAX_SPIN`] next time: hiccups of tens of µs are common
    /// on a shared 2-vCPU machine, and each one a shorter spin misses costs a 100–250 µs wake-up.
    /// A long wait halves the budget, so an idle channel stops spinning after a handful of waits.
    pub fn learn(&self, waited: Duration, _caught_by_spin: bool) {
        let cur = self.budget_ns.load(Ordering::Relaxed);
        let next = if waited <= BUSY { MAX_SPIN.as_nanos() as u64 } else { cur / 2 };
        self.budget_ns.store(next, Ordering::Relaxed);
    }
}

/// How long a spin runs before it also yields the CPU between checks.
const YIELD_AFTER: Duration = Duration::from_micros(5);

/// A wait up to this long (wake-up latency included) means the channel is busy.
pub const BUSY: Duration = Duration::from_micros(500);

/// Sleeps until `word` differs from `expected` or `deadline` passes, for at most one [`SLICE`].
/// Returns false once the deadline has passed.
pub fn sleep_slice(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    let slice = match deadline {
        None => SLICE,
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return false;
            }
            (d - now).min(SLICE)
        }
    };
    futex::wait(word, expected, slice);
    true
}
