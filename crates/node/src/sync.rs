//! Glue for the synchronisation objects of `multiproc_core::sync`: one `External` per object,
//! a view of its words for the uncontended paths JavaScript takes with `Atomics`, and the
//! waiting, waking and dead-owner paths. Owners are processes.

use std::sync::Arc;

use multiproc_core::sync::{
    self, AcquireError, Acquired, Arrival, Barrier, BarrierError, Condition, Event, Mutex, Owner, Semaphore,
    SyncAttachError,
};
use multiproc_core::sys::fd;
use multiproc_core::waker::Waker;
use multiproc_core::Segment;
use napi::bindgen_prelude::{ArrayBuffer, External};
use napi::Env;
use napi_derive::napi;

use crate::deadline;
use crate::error::{fail, os_error, segment_error, Error, Result};

pub enum Object {
    Mutex(Mutex),
    Semaphore(Semaphore),
    Event(Event),
    Condition(Condition),
    Barrier(Barrier),
}

type Sync = External<Object>;

impl Object {
    fn segment(&self) -> &Arc<Segment> {
        match self {
            Object::Mutex(m) => m.segment(),
            Object::Semaphore(s) => s.segment(),
            Object::Event(e) => e.segment(),
            Object::Condition(c) => c.segment(),
            Object::Barrier(b) => b.segment(),
        }
    }
}

fn attach_error(e: SyncAttachError) -> Error {
    match e {
        SyncAttachError::Segment(e) => segment_error(e),
        e => fail("ERR_PROTOCOL", e),
    }
}

fn mutex(s: &Sync) -> Result<&Mutex> {
    match &**s {
        Object::Mutex(m) => Ok(m),
        _ => Err(fail("ERR_INVALID_ARG", "not a lock")),
    }
}

fn semaphore(s: &Sync) -> Result<&Semaphore> {
    match &**s {
        Object::Semaphore(m) => Ok(m),
        _ => Err(fail("ERR_INVALID_ARG", "not a semaphore")),
    }
}

fn event(s: &Sync) -> Result<&Event> {
    match &**s {
        Object::Event(m) => Ok(m),
        _ => Err(fail("ERR_INVALID_ARG", "not an event")),
    }
}

fn condition(s: &Sync) -> Result<&Condition> {
    match &**s {
        Object::Condition(m) => Ok(m),
        _ => Err(fail("ERR_INVALID_ARG", "not a condition")),
    }
}

fn barrier(s: &Sync) -> Result<&Barrier> {
    match &**s {
        Object::Barrier(m) => Ok(m),
        _ => Err(fail("ERR_INVALID_ARG", "not a barrier")),
    }
}

/// A new object: `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore` (`value`), `Event`,
/// `Condition` or `Barrier` (`value` parties).
#[napi]
pub fn sync_create(kind: String, value: u32) -> Result<Sync> {
    let seg_err = segment_error;
    let obj = match kind.as_str() {
        "Lock" => Object::Mutex(Mutex::create(false, true).map_err(seg_err)?),
        "RLock" => Object::Mutex(Mutex::create(true, true).map_err(seg_err)?),
        "Semaphore" => Object::Semaphore(Semaphore::create(value, false, true).map_err(seg_err)?),
        "BoundedSemaphore" => Object::Semaphore(Semaphore::create(value, true, true).map_err(seg_err)?),
        "Event" => Object::Event(Event::create(true).map_err(seg_err)?),
        "Condition" => Object::Condition(Condition::create(true).map_err(seg_err)?),
        "Barrier" => Object::Barrier(Barrier::create(value, true).map_err(seg_err)?),
        _ => return Err(fail("ERR_INVALID_ARG", format!("unknown kind {kind}"))),
    };
    Ok(External::new(obj))
}

/// Maps the object behind a received descriptor (taking ownership of it), checking its header.
#[napi]
pub fn sync_adopt(kind: String, raw: i32) -> Result<Sync> {
    let owned = fd::adopt(raw).map_err(os_error)?;
    let seg = Arc::new(Segment::attach(owned, sync::SYNC_SIZE).map_err(crate::error::attach_error)?);
    let obj = match kind.as_str() {
        "Lock" => Object::Mutex(Mutex::attach(seg, false).map_err(attach_error)?),
        "RLock" => Object::Mutex(Mutex::attach(seg, true).map_err(attach_error)?),
        "Semaphore" | "BoundedSemaphore" => Object::Semaphore(Semaphore::attach(seg).map_err(attach_error)?),
        "Event" => Object::Event(Event::attach(seg).map_err(attach_error)?),
        "Condition" => Object::Condition(Condition::attach(seg).map_err(attach_error)?),
        "Barrier" => Object::Barrier(Barrier::attach(seg).map_err(attach_error)?),
        _ => return Err(fail("ERR_INVALID_ARG", format!("unknown kind {kind}"))),
    };
    Ok(External::new(obj))
}

#[napi]
pub fn sync_fd(s: &Sync) -> i32 {
    s.segment().fd()
}

/// The object's words as an `ArrayBuffer` (64 bytes; see the core's layouts).
#[napi]
pub fn sync_view<'e>(env: &'e Env, s: &Sync) -> Result<ArrayBuffer<'e>> {
    crate::view::array_buffer(env, s.segment())
}

/// This process's owner id and record (high and low halves), as JavaScript's fast path writes them.
/// The words of a synchronisation segment that JavaScript touches directly, and the spin
/// policy, by name (see `multiproc_core::sync::layout`).
#[napi]
pub fn sync_layout() -> std::collections::HashMap<String, f64> {
    sync::layout::LAYOUT.iter().map(|&(name, value)| (name.to_string(), value as f64)).collect()
}

#[napi]
pub fn sync_owner() -> Vec<u32> {
    let o = Owner::process();
    vec![o.id, (o.record >> 32) as u32, o.record as u32]
}

fn arm_waker(key: f64, seg: &Arc<Segment>, armed: Option<(usize, u32)>) -> Result<bool> {
    let Some((offset, expected)) = armed else { return Ok(false) };
    Waker::get().map_err(os_error)?.arm(key as u64, seg.clone(), offset, expected);
    Ok(true)
}

fn disarm_waker(key: f64) -> Result<()> {
    Waker::get().map_err(os_error)?.disarm(key as u64);
    Ok(())
}

fn acquired(a: Acquired) -> i32 {
    match a {
        Acquired::Clean => 0,
        Acquired::OwnerDied => 1,
    }
}

/// Blocking acquire: 0 taken, 1 taken over from a dead owner, -1 timed out.
#[napi]
pub fn lock_acquire_sync(s: &Sync, timeout_ms: f64) -> Result<i32> {
    match mutex(s)?.acquire(Owner::process(), deadline(timeout_ms)) {
        Ok(a) => Ok(acquired(a)),
        Err(AcquireError::TimedOut) => Ok(-1),
    }
}

/// Non-blocking acquire that also takes over a dead owner's lock: 0, 1, or -1 (held).
#[napi]
pub fn lock_try_recover(s: &Sync) -> Result<i32> {
    Ok(mutex(s)?.try_acquire_or_recover(Owner::process()).map_or(-1, acquired))
}

/// Arms the waker for an asynchronous acquire; false when the lock looks free (try again).
#[napi]
pub fn lock_arm(s: &Sync, key: f64) -> Result<bool> {
    let m = mutex(s)?;
    arm_waker(key, m.segment(), m.arm(Owner::process()))
}

#[napi]
pub fn lock_release(s: &Sync) -> Result<()> {
    mutex(s)?.release(Owner::process()).map_err(|e| fail("ERR_INVALID_STATE", e))
}

/// Releases every level; returns the depth to restore (Condition waits).
#[napi]
pub fn lock_release_all(s: &Sync) -> Result<u32> {
    mutex(s)?.release_all(Owner::process()).map_err(|e| fail("ERR_INVALID_STATE", e))
}

#[napi]
pub fn lock_restore_depth(s: &Sync, depth: u32) -> Result<()> {
    mutex(s)?.restore_depth(Owner::process(), depth);
    Ok(())
}

#[napi]
pub fn sem_acquire_sync(s: &Sync, timeout_ms: f64) -> Result<bool> {
    Ok(semaphore(s)?.acquire(deadline(timeout_ms)))
}

#[napi]
pub fn sem_arm(s: &Sync, key: f64) -> Result<bool> {
    let sem = semaphore(s)?;
    arm_waker(key, sem.segment(), sem.arm())
}

#[napi]
pub fn sem_disarm(s: &Sync, key: f64) -> Result<()> {
    disarm_waker(key)?;
    semaphore(s)?.disarm();
    Ok(())
}

#[napi]
pub fn sem_release(s: &Sync) -> Result<()> {
    semaphore(s)?.release().map_err(|e| fail("ERR_INVALID_STATE", e))
}

/// Wakes the semaphore's sleepers after JavaScript added a unit itself.
#[napi]
pub fn sem_wake(s: &Sync) -> Result<()> {
    semaphore(s)?.wake_sleepers();
    Ok(())
}

#[napi]
pub fn event_set(s: &Sync) -> Result<()> {
    event(s)?.set();
    Ok(())
}

#[napi]
pub fn event_wait_sync(s: &Sync, timeout_ms: f64) -> Result<bool> {
    Ok(event(s)?.wait(deadline(timeout_ms)))
}

#[napi]
pub fn event_arm(s: &Sync, key: f64) -> Result<bool> {
    let e = event(s)?;
    arm_waker(key, e.segment(), e.arm())
}

#[napi]
pub fn event_disarm(s: &Sync, key: f64) -> Result<()> {
    disarm_waker(key)?;
    event(s)?.disarm();
    Ok(())
}

/// Under the lock: joins the waiters; returns the sequence number to wait on.
#[napi]
pub fn cond_enter(s: &Sync) -> Result<u32> {
    Ok(condition(s)?.enter())
}

#[napi]
pub fn cond_observe(s: &Sync) -> Result<u32> {
    Ok(condition(s)?.observe())
}

/// Without the lock: sleeps until notified or timed out; false when the timeout passed.
#[napi]
pub fn cond_sleep_sync(s: &Sync, observed: u32, timeout_ms: f64) -> Result<bool> {
    Ok(condition(s)?.sleep(observed, deadline(timeout_ms)))
}

#[napi]
pub fn cond_arm(s: &Sync, observed: u32, key: f64) -> Result<bool> {
    let c = condition(s)?;
    arm_waker(key, c.segment(), c.arm(observed))
}

#[napi]
pub fn cond_take_token(s: &Sync) -> Result<bool> {
    Ok(condition(s)?.take_token())
}

#[napi]
pub fn cond_leave(s: &Sync) -> Result<()> {
    condition(s)?.leave();
    Ok(())
}

#[napi]
pub fn cond_notify(s: &Sync, n: u32) -> Result<u32> {
    Ok(condition(s)?.notify(n))
}

/// `[kind, generation, index]`: kind 0 wait, 1 last party, 2 busy (wait for the generation to
/// move, then arrive again), 3 the internal lock could not be taken within `timeout_ms` (try
/// again later). `ERR_BROKEN_BARRIER` when broken.
#[napi]
pub fn barrier_arrive(s: &Sync, timeout_ms: f64) -> Result<Vec<u32>> {
    match barrier(s)?.arrive(deadline(timeout_ms)) {
        Ok(Arrival::Wait { gen, index }) => Ok(vec![0, gen, index]),
        Ok(Arrival::Last { gen, index }) => Ok(vec![1, gen, index]),
        Ok(Arrival::Busy { gen }) => Ok(vec![2, gen, 0]),
        Err(BarrierError::TimedOut) => Ok(vec![3, 0, 0]),
        Err(e) => Err(barrier_error(e)),
    }
}

fn barrier_error(e: BarrierError) -> Error {
    match e {
        BarrierError::Broken => fail("ERR_BROKEN_BARRIER", "the barrier is broken"),
        BarrierError::TimedOut => fail("ERR_TIMEOUT", "the barrier's internal lock was not free in time"),
        BarrierError::Stuck => fail(
            "ERR_PROTOCOL",
            "the barrier's internal lock stays taken by a live process that is not a party (the segment was overwritten)",
        ),
    }
}

#[napi]
pub fn barrier_cross(s: &Sync, gen: u32) -> Result<()> {
    barrier(s)?.cross(gen).map_err(barrier_error)
}

#[napi]
pub fn barrier_abort(s: &Sync) -> Result<()> {
    barrier(s)?.abort().map_err(barrier_error)
}

#[napi]
pub fn barrier_abort_generation(s: &Sync, gen: u32) -> Result<()> {
    barrier(s)?.abort_generation(gen).map_err(barrier_error)
}

#[napi]
pub fn barrier_reset(s: &Sync) -> Result<()> {
    barrier(s)?.reset().map_err(barrier_error)
}

/// -1 while generation `gen` lasts, 0 when it crossed, 1 when it was broken or reset.
#[napi]
pub fn barrier_outcome(s: &Sync, gen: u32) -> Result<i32> {
    Ok(match barrier(s)?.outcome(gen) {
        None => -1,
        Some(Ok(())) => 0,
        Some(Err(_)) => 1,
    })
}

/// Blocking wait for generation `gen`: 0 crossed, 1 broken, 2 timed out (the barrier is then
/// broken too).
#[napi]
pub fn barrier_wait_sync(s: &Sync, gen: u32, timeout_ms: f64) -> Result<i32> {
    match barrier(s)?.wait_generation(gen, deadline(timeout_ms)) {
        Ok(()) => Ok(0),
        Err(BarrierError::Broken) => Ok(1),
        Err(BarrierError::TimedOut) => Ok(2),
        Err(e) => Err(barrier_error(e)),
    }
}

/// Blocking wait for the generation to move past `gen` (a busy arrival).
#[napi]
pub fn barrier_wait_moved_sync(s: &Sync, gen: u32, timeout_ms: f64) -> Result<bool> {
    Ok(barrier(s)?.wait_moved(gen, deadline(timeout_ms)))
}

#[napi]
pub fn barrier_arm(s: &Sync, gen: u32, key: f64) -> Result<bool> {
    let b = barrier(s)?;
    arm_waker(key, b.segment(), b.arm(gen))
}

/// `[parties, nWaiting, broken]`.
#[napi]
pub fn barrier_info(s: &Sync) -> Result<Vec<u32>> {
    let b = barrier(s)?;
    Ok(vec![b.parties(), b.n_waiting(), b.broken() as u32])
}
