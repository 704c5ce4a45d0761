//! Futex wait and wake on words that may live in shared memory (never `FUTEX_PRIVATE_FLAG`).

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Outcome of a bounded futex wait.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// Woken, interrupted, or the word no longer held the expected value: re-check.
    Woken,
    /// The timeout elapsed.
    TimedOut,
}

/// Sleeps while `word == expected`, at most `timeout`.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) -> Wait {
    let ts = timespec(timeout);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        Wait::TimedOut
    } else {
        Wait::Woken
    }
}

/// Wakes up to `count` sleepers on `word`; returns how many were woken.
pub fn wake(word: &AtomicU32, count: i32) -> usize {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access memory beyond the key.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    rc.max(0) as usize
}

/// One word of a `futex_waitv` call (Linux ≥ 5.16), laid out as the kernel's `struct futex_waitv`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WaitvEntry {
    pub expected: u64,
    pub uaddr: u64,
    pub flags: u32,
    pub reserved: u32,
}

const FUTEX2_SIZE_U32: u32 = 0x02;
const SYS_FUTEX_WAITV: libc::c_long = 449;

impl WaitvEntry {
    pub fn new(word: &AtomicU32, expected: u32) -> Self {
        WaitvEntry { expected: expected as u64, uaddr: word.as_ptr() as u64, flags: FUTEX2_SIZE_U32, reserved: 0 }
    }
}

/// Outcome of `waitv`.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitvResult {
    /// The entry at this index was woken.
    Woken(usize),
    /// Some word already differed, a signal arrived, or the timeout elapsed: re-check all.
    Recheck,
}

/// Sleeps until any of `entries` is woken or differs from its expected value, at most `timeout`.
/// Every entry's address must stay mapped until this returns.
pub fn waitv(entries: &[WaitvEntry], timeout: Duration) -> io::Result<WaitvResult> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let deadline = add(now, timeout);
    // SAFETY: `entries` is a valid array of kernel-layout `futex_waitv` records whose addresses the
    // caller keeps mapped; `deadline` is a valid absolute CLOCK_MONOTONIC time.
    let rc = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            entries.as_ptr(),
            entries.len() as libc::c_uint,
            0u32,
            &deadline as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    if rc >= 0 {
        return Ok(WaitvResult::Woken(rc as usize));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::ETIMEDOUT) | Some(libc::EINTR) => Ok(WaitvResult::Recheck),
        _ => Err(err),
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

fn add(t: libc::timespec, d: Duration) -> libc::timespec {
    let mut sec = t.tv_sec.saturating_add(d.as_secs().min(i32::MAX as u64) as libc::time_t);
    let mut nsec = t.tv_nsec + d.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec += 1;
    }
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}
