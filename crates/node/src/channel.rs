//! Channels (the rings behind Queue, JoinableQueue, SimpleQueue and Pipe): creating and
//! adopting them, and every call but the per-message ones (those are in `fast.rs`).

use std::time::Duration;

use multiproc_core::sys::fd;
use multiproc_core::waker::Waker;
use multiproc_core::{Channel, ChannelConfig, Ring, Segment, TryRecv};
use napi::bindgen_prelude::External;
use napi_derive::napi;

use crate::deadline;
use crate::error::{attach_error, channel_error, fail, open_error, os_error, Result};

/// A channel segment and a handle on each of its rings, held by JavaScript as an `External`.
/// Hot paths are free functions over it: a napi class method costs several times a function call.
pub struct ChannelState {
    channel: Channel,
    rings: Vec<Ring>,
}

type Chan = External<ChannelState>;

impl ChannelState {
    fn wrap(channel: Channel) -> Chan {
        let rings = (0..channel.config().rings).map(|i| channel.ring(i)).collect();
        External::new(ChannelState { channel, rings })
    }

    pub(crate) fn ring(&self, index: u32) -> Result<&Ring> {
        self.rings.get(index as usize).ok_or_else(|| fail("ERR_INVALID_ARG", "no such ring"))
    }
}

/// Encodes a receive for JavaScript in one number: `len * 256 + kind` when a message of `len`
/// bytes is at the start of the buffer; `-1` for nothing yet; `-2` while a large message is
/// arriving into the buffer (pass the same one again); `-(n + 2)` (n ≥ 1) when the next message
/// needs a buffer of `n` bytes.
pub(crate) fn receipt(r: TryRecv) -> f64 {
    match r {
        TryRecv::Done(kind, len) => (len as f64) * 256.0 + kind as f64,
        TryRecv::NeedsBuffer(n) => -(n as f64) - 2.0,
        TryRecv::Streaming => -2.0,
        TryRecv::Empty => -1.0,
    }
}

#[napi(object)]
pub struct ChannelInfo {
    pub fd: i32,
    pub rings: u32,
    pub capacity: f64,
    pub max_message: f64,
    pub maxsize: f64,
}

#[napi]
pub fn channel_create(rings: u32, capacity: f64, max_message: f64, maxsize: f64) -> Result<Chan> {
    let config = ChannelConfig {
        rings: rings as usize,
        capacity: capacity as usize,
        max_message: max_message as usize,
        maxsize: maxsize as u64,
    };
    Channel::create(config).map(ChannelState::wrap).map_err(open_error)
}

/// Maps the channel behind an inherited descriptor, taking ownership of it.
#[napi]
pub fn channel_adopt(raw: i32) -> Result<Chan> {
    let owned = fd::adopt(raw).map_err(os_error)?;
    let seg = Segment::attach(owned, 0).map_err(attach_error)?;
    Channel::attach(seg).map(ChannelState::wrap).map_err(open_error)
}

#[napi]
pub fn channel_info(ch: &Chan) -> ChannelInfo {
    let c = ch.channel.config();
    ChannelInfo {
        fd: ch.channel.segment().fd(),
        rings: c.rings as u32,
        capacity: c.capacity as f64,
        max_message: c.max_message as f64,
        maxsize: c.maxsize as f64,
    }
}

/// Streams more of a large message (pass the same bytes); true once it is all in the ring.
#[napi]
pub fn channel_continue_send(ch: &Chan, ring: u32, data: &[u8]) -> Result<bool> {
    ch.ring(ring)?.continue_send(data).map_err(channel_error)
}

/// Gives up the large message this process is streaming out (consumers discard it); false
/// when none was.
#[napi]
pub fn channel_abandon_send(ch: &Chan, ring: u32) -> Result<bool> {
    ch.ring(ring)?.abandon_send().map_err(channel_error)
}

/// Gives up the large message this process is receiving (the next consumer skips its rest);
/// false when none was.
#[napi]
pub fn channel_abandon_recv(ch: &Chan, ring: u32) -> Result<bool> {
    Ok(ch.ring(ring)?.abandon_recv())
}

/// Spins up to the learned budget for a receive to become possible.
#[napi]
pub fn channel_spin_recv(ch: &Chan, ring: u32) -> Result<bool> {
    Ok(ch.ring(ring)?.spin_recv())
}

#[napi]
pub fn channel_spin_send(ch: &Chan, ring: u32, len: f64) -> Result<bool> {
    Ok(ch.ring(ring)?.spin_send(len as usize))
}

/// Arms the process waker under `key`; false when a receive can progress now (not armed).
#[napi]
pub fn channel_arm_recv(ch: &Chan, ring: u32, key: f64) -> Result<bool> {
    let r = ch.ring(ring)?;
    let Some((offset, expected)) = r.arm_recv() else { return Ok(false) };
    Waker::get().map_err(os_error)?.arm(key as u64, ch.channel.segment().clone(), offset, expected);
    Ok(true)
}

/// Ends an armed receive wait (fired or cancelled); `waited_ms` teaches the spinner.
#[napi]
pub fn channel_disarm_recv(ch: &Chan, ring: u32, key: f64, waited_ms: f64) -> Result<()> {
    let r = ch.ring(ring)?;
    Waker::get().map_err(os_error)?.disarm(key as u64);
    r.disarm_recv();
    r.learn_wait(false, Duration::from_secs_f64(waited_ms.max(0.0) / 1000.0));
    Ok(())
}

#[napi]
pub fn channel_arm_send(ch: &Chan, ring: u32, len: f64, key: f64) -> Result<bool> {
    let r = ch.ring(ring)?;
    let Some((offset, expected)) = r.arm_send(len as usize) else { return Ok(false) };
    Waker::get().map_err(os_error)?.arm(key as u64, ch.channel.segment().clone(), offset, expected);
    Ok(true)
}

#[napi]
pub fn channel_disarm_send(ch: &Chan, ring: u32, key: f64, waited_ms: f64) -> Result<()> {
    let r = ch.ring(ring)?;
    Waker::get().map_err(os_error)?.disarm(key as u64);
    r.disarm_send();
    r.learn_wait(true, Duration::from_secs_f64(waited_ms.max(0.0) / 1000.0));
    Ok(())
}

#[napi]
pub fn channel_close(ch: &Chan, ring: u32) -> Result<()> {
    ch.ring(ring)?.close();
    Ok(())
}

/// Whether a receive could make progress now (data, closed or broken), without taking anything.
#[napi]
pub fn channel_can_recv(ch: &Chan, ring: u32) -> Result<bool> {
    Ok(ch.ring(ring)?.can_recv())
}

#[napi]
pub fn channel_qsize(ch: &Chan, ring: u32) -> Result<f64> {
    Ok(ch.ring(ring)?.len() as f64)
}

#[napi]
pub fn channel_is_full(ch: &Chan, ring: u32) -> Result<bool> {
    Ok(ch.ring(ring)?.is_full())
}

#[napi]
pub fn channel_task_added(ch: &Chan) {
    ch.channel.task_added();
}

/// Remaining unfinished tasks; `ERR_INVALID_STATE` when none was unfinished.
#[napi]
pub fn channel_task_done(ch: &Chan) -> Result<u32> {
    ch.channel
        .task_done()
        .ok_or_else(|| fail("ERR_INVALID_STATE", "taskDone() called more times than there were items"))
}

/// Arms the waker on the unfinished-task count; false when it is already zero.
#[napi]
pub fn channel_arm_join(ch: &Chan, key: f64) -> Result<bool> {
    let (count, offset) = ch.channel.unfinished();
    if count == 0 {
        return Ok(false);
    }
    Waker::get().map_err(os_error)?.arm(key as u64, ch.channel.segment().clone(), offset, count);
    Ok(true)
}

#[napi]
pub fn channel_join_sync(ch: &Chan, timeout_ms: f64) -> bool {
    ch.channel.join_tasks(deadline(timeout_ms))
}

/// Overwrites bytes of the segment: for tests of corrupt shared memory only (not in release
/// builds: the `test-hooks` feature).
#[cfg(feature = "test-hooks")]
#[napi]
pub fn channel_corrupt_for_test(ch: &Chan, offset: f64, bytes: &[u8]) -> Result<()> {
    let seg = ch.channel.segment();
    let offset = offset as usize;
    if offset.checked_add(bytes.len()).is_none_or(|end| end > seg.len()) {
        return Err(fail("ERR_INVALID_ARG", "offset out of range"));
    }
    seg.write(offset, bytes);
    Ok(())
}
