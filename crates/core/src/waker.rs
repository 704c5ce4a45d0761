//! One thread per process that sleeps on every shared word an asynchronous wait is armed on
//! (`futex_waitv`), and rings a doorbell pipe that the event loop watches when any of them moves.
//! Waiting this way parks no thread-pool thread and costs no CPU while idle.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::segment::Segment;
use crate::sys::{fd, futex, process};

/// The most words one `futex_waitv` takes, one of which is our control word.
const MAX_WORDS: usize = 128;

struct Armed {
    seg: Arc<Segment>,
    offset: usize,
    expected: u32,
}

#[derive(Default)]
struct State {
    armed: HashMap<u64, Armed>,
    fired: Vec<u64>,
}

/// The process's waker: arm words under keys, learn which fired after the doorbell rings.
/// How often the armed words are looked at where `futex_waitv` is refused.
const POLL_WITHOUT_WAITV: Duration = Duration::from_millis(1);

pub struct Waker {
    state: Mutex<State>,
    control: AtomicU32,
    doorbell_read: OwnedFd,
    doorbell_write: OwnedFd,
}

/// The waker of this fork generation (see [`process::fork_generation`]).
static WAKER: Mutex<Option<(u64, Arc<Waker>)>> = Mutex::new(None);

impl Waker {
    /// The process-wide waker, started on first use. A child forked off a process that had one
    /// (a fork server's) starts its own: the thread did not come through the fork.
    pub fn get() -> io::Result<Arc<Waker>> {
        let generation = process::fork_generation();
        let mut current = WAKER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, waker)) = current.as_ref() {
            if *g == generation {
                return Ok(waker.clone());
            }
        }
        let (r, w) = fd::doorbell_pipe()?;
        let waker = Arc::new(Waker {
            state: Mutex::default(),
            control: AtomicU32::new(0),
            doorbell_read: r,
            doorbell_write: w,
        });
        let runner = waker.clone();
        std::thread::Builder::new().name("multiproc-waker".into()).stack_size(64 * 1024).spawn(move || runner.run())?;
        // The forked-off waker is left as it is: its doorbell may still be watched by the event
        // loop (closing it under a watcher would be worse than one idle descriptor), and its
        // state lock may have been held by its thread at the fork.
        if let Some(old) = current.replace((generation, waker.clone())) {
            std::mem::forget(old);
        }
        Ok(waker)
    }

    /// The read end of the doorbell: readable when some armed word has fired.
    pub fn doorbell(&self) -> i32 {
        self.doorbell_read.as_raw_fd()
    }

    /// Watches the word at `offset` in `seg` until it differs from `expected`.
    pub fn arm(&self, key: u64, seg: Arc<Segment>, offset: usize, expected: u32) {
        seg.u32_at(offset); // validates the offset now, not on the waker thread
        self.state.lock().unwrap().armed.insert(key, Armed { seg, offset, expected });
        self.poke();
    }

    /// Stops watching `key`. Returns false if it had already fired (or was never armed).
    pub fn disarm(&self, key: u64) -> bool {
        let mut st = self.state.lock().unwrap();
        st.fired.retain(|k| *k != key);
        let was = st.armed.remove(&key).is_some();
        drop(st);
        if was {
            self.poke();
        }
        was
    }

    /// The keys that fired since the last call.
    pub fn take_fired(&self) -> Vec<u64> {
        std::mem::take(&mut self.state.lock().unwrap().fired)
    }

    fn poke(&self) {
        self.control.fetch_add(1, Ordering::SeqCst);
        futex::wake(&self.control, 1);
    }

    fn run(&self) {
        loop {
            let control = self.control.load(Ordering::SeqCst);
            let mut entries = vec![futex::WaitvEntry::new(&self.control, control)];
            let mut overflow = false;
            // Keep the segments mapped while the kernel may read their words.
            let mut held: Vec<Arc<Segment>> = Vec::new();
            {
                let st = self.state.lock().unwrap();
                for armed in st.armed.values() {
                    if entries.len() == MAX_WORDS {
                        overflow = true;
                        break;
                    }
                    entries.push(futex::WaitvEntry::new(armed.seg.u32_at(armed.offset), armed.expected));
                    held.push(armed.seg.clone());
                }
            }
            let timeout = if overflow { Duration::from_millis(2) } else { Duration::from_secs(1) };
            if futex::waitv(&entries, timeout).is_err() {
                // futex_waitv refused (a kernel before 5.16, or a seccomp profile that blocks it):
                // watch the control word alone and look at the armed words every millisecond.
                // Waits then wake up to 1 ms late, and an idle armed wait costs a little CPU,
                // instead of this loop spinning.
                futex::wait(&self.control, control, POLL_WITHOUT_WAITV);
            }
            drop(held);
            let mut st = self.state.lock().unwrap();
            let moved: Vec<u64> = st
                .armed
                .iter()
                .filter(|(_, a)| a.seg.u32_at(a.offset).load(Ordering::SeqCst) != a.expected)
                .map(|(k, _)| *k)
                .collect();
            if moved.is_empty() {
                continue;
            }
            for k in &moved {
                st.armed.remove(k);
            }
            st.fired.extend(moved);
            drop(st);
            fd::ring(self.doorbell_write.as_raw_fd());
        }
    }
}
