//! Thin napi bindings over `multiproc-core`. No policy lives here: every error becomes a JS
//! error with a stable `code` (see `error`) that `src/errors.ts` turns into the matching
//! exported error class.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use multiproc_core::sys::{fd, process};
use multiproc_core::waker::Waker;
use multiproc_core::{Channel, ChannelConfig, Ring, Segment, TryRecv};
use napi::bindgen_prelude::{External, Object};
use napi::{Env, JsValue};
use napi_derive::napi;

use crate::error::{attach_error, channel_error, fail, napi_error, os_error, Result};

mod child;
pub mod error;
mod fast;
pub mod shared_memory;
pub mod sync;
mod view;

pub(crate) fn deadline(timeout_ms: f64) -> Option<Instant> {
    (timeout_ms >= 0.0 && timeout_ms.is_finite()).then(|| Instant::now() + Duration::from_secs_f64(timeout_ms / 1000.0))
}

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

/// Adds the per-message calls (see `fast.rs`) to `target`, the binding's exports object.
#[napi]
pub fn install_fast_paths(env: Env, target: Object) -> Result<()> {
    // SAFETY: `env` is this call's environment and `target` a live object of it.
    unsafe { fast::install(env.raw(), target.raw()) }.map_err(napi_error)
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
    Channel::create(config).map(ChannelState::wrap).map_err(channel_error)
}

/// Maps the channel behind an inherited descriptor, taking ownership of it.
#[napi]
pub fn channel_adopt(raw: i32) -> Result<Chan> {
    let owned = fd::adopt(raw).map_err(os_error)?;
    let seg = Segment::attach(owned, 0).map_err(attach_error)?;
    Channel::attach(seg).map(ChannelState::wrap).map_err(channel_error)
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
pub fn waker_disarm(key: f64) -> Result<()> {
    Waker::get().map_err(os_error)?.disarm(key as u64);
    Ok(())
}

#[napi]
pub fn channel_join_sync(ch: &Chan, timeout_ms: f64) -> bool {
    ch.channel.join_tasks(deadline(timeout_ms))
}

/// Overwrites bytes of the segment: for tests of corrupt shared memory only.
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

/// The read end of the process waker's doorbell pipe.
#[napi]
pub fn waker_doorbell() -> Result<i32> {
    Ok(Waker::get().map_err(os_error)?.doorbell())
}

/// Keys of armed waits that fired since the last call.
#[napi]
pub fn waker_take_fired() -> Result<Vec<f64>> {
    Ok(Waker::get().map_err(os_error)?.take_fired().into_iter().map(|k| k as f64).collect())
}

/// A connected pair of Unix stream sockets (close-on-exec); JavaScript owns both descriptors.
#[napi]
pub fn socket_pair() -> Result<Vec<i32>> {
    let (a, b) = fd::socket_pair().map_err(os_error)?;
    Ok(vec![into_raw(a), into_raw(b)])
}

fn into_raw(fd: OwnedFd) -> i32 {
    use std::os::fd::IntoRawFd;
    fd.into_raw_fd()
}

#[napi]
pub fn set_cloexec(fd: i32, on: bool) -> Result<()> {
    fd::set_cloexec(fd, on).map_err(os_error)
}

/// Closes a descriptor JavaScript owns.
#[napi]
pub fn close_fd(raw: i32) {
    // SAFETY: JavaScript hands over a descriptor it owns and will not use again.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
}

/// True when every copy of the peer end of a stream socket is closed.
#[napi]
pub fn peer_hung_up(raw: i32) -> bool {
    fd::peer_hung_up(raw)
}

/// True while the process `pid` runs (and, with `start > 0`, is the one started then).
#[napi]
pub fn process_alive(pid: i32, start: f64) -> bool {
    process::is_alive(pid, start as u64)
}

/// The start time of a process (clock ticks since boot), 0 if it is gone.
#[napi]
pub fn process_start_time(pid: i32) -> f64 {
    process::start_time(pid).unwrap_or(0) as f64
}

/// Kills the calling process with SIGKILL when its parent thread exits, and checks at once.
#[napi]
pub fn die_with_parent(expected_parent: i32) -> Result<()> {
    process::set_parent_death_signal(libc::SIGKILL).map_err(os_error)?;
    if process::parent_pid() != expected_parent {
        process::raise(libc::SIGKILL);
    }
    Ok(())
}

/// A pair of packet sockets for passing descriptors: `[ours, theirs]`.
#[napi]
pub fn packet_pair() -> Result<Vec<i32>> {
    let (a, b) = fd::packet_pair().map_err(os_error)?;
    Ok(vec![into_raw(a), into_raw(b)])
}

/// Sends copies of `fds` with `tag` over a packet socket.
#[napi]
pub fn send_fds(sock: i32, tag: u32, fds: Vec<i32>) -> Result<()> {
    fd::send_fds(sock, tag, &fds).map_err(os_error)
}

/// Receives one descriptor message: `[tag, ...fds]`, or null when none arrived within `timeout_ms`.
#[napi]
pub fn recv_fds(sock: i32, timeout_ms: i32) -> Result<Option<Vec<i64>>> {
    let got = fd::recv_fds(sock, timeout_ms).map_err(os_error)?;
    Ok(got.map(|(tag, fds)| std::iter::once(tag as i64).chain(fds.into_iter().map(|f| into_raw(f) as i64)).collect()))
}
