//! `Event`: a flag in shared memory that waiters sleep on until it is set.
//!
//! Layout after the header: `flag: u32` at 16 (the futex word), `sleepers: u32` at 20.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{Kind, SyncAttachError, BODY};
use crate::segment::{Segment, SegmentError};
use crate::sys::futex;
use crate::wait;

pub const FLAG: usize = BODY;
pub const SLEEPERS: usize = BODY + 4;

#[derive(Clone)]
pub struct Event {
    seg: Arc<Segment>,
    spinner: Arc<wait::Spinner>,
}

impl Event {
    pub fn create(shared: bool) -> Result<Event, SegmentError> {
        Ok(Event { seg: super::create(Kind::Event, shared)?, spinner: Arc::new(wait::Spinner::new()) })
    }

    pub fn attach(seg: Arc<Segment>) -> Result<Event, SyncAttachError> {
        super::check(&seg, Kind::Event)?;
        Ok(Event { seg, spinner: Arc::new(wait::Spinner::new()) })
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    fn flag(&self) -> &AtomicU32 {
        self.seg.u32_at(FLAG)
    }

    fn sleepers(&self) -> &AtomicU32 {
        self.seg.u32_at(SLEEPERS)
    }

    pub fn is_set(&self) -> bool {
        self.flag().load(Ordering::Acquire) != 0
    }

    pub fn set(&self) {
        self.flag().store(1, Ordering::SeqCst);
        if self.sleepers().load(Ordering::SeqCst) > 0 {
            futex::wake(self.flag(), i32::MAX);
        }
    }

    pub fn clear(&self) {
        self.flag().store(0, Ordering::SeqCst);
    }

    /// Waits until set or `deadline`; returns whether it is set.
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        if self.is_set() {
            return true;
        }
        let started = Instant::now();
        if super::may_spin(deadline) && self.spinner.spin(|| self.is_set()) {
            return true;
        }
        self.sleepers().fetch_add(1, Ordering::SeqCst);
        while !self.is_set() && wait::sleep_slice(self.flag(), 0, deadline) {}
        self.sleepers().fetch_sub(1, Ordering::SeqCst);
        self.spinner.learn(started.elapsed(), false);
        self.is_set()
    }

    /// Counts an asynchronous waiter and returns the word to arm; `None` when set now.
    pub fn arm(&self) -> Option<(usize, u32)> {
        self.sleepers().fetch_add(1, Ordering::SeqCst);
        if self.flag().load(Ordering::SeqCst) != 0 {
            self.sleepers().fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some((FLAG, 0))
    }

    pub fn disarm(&self) {
        self.sleepers().fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn set_wakes_every_waiter_and_clear_resets() {
        for shared in [false, true] {
            let ev = Event::create(shared).unwrap();
            assert!(!ev.wait(Some(Instant::now() + Duration::from_millis(10))));
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let ev = ev.clone();
                    std::thread::spawn(move || ev.wait(Some(Instant::now() + Duration::from_secs(10))))
                })
                .collect();
            std::thread::sleep(Duration::from_millis(20));
            ev.set();
            for w in waiters {
                assert!(w.join().unwrap());
            }
            assert!(ev.is_set());
            ev.clear();
            assert!(!ev.is_set());
        }
    }
}
