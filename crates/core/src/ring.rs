//! A channel: one or two bounded rings of length-prefixed messages in one shared segment.
//!
//! Each ring is a byte stream guarded by two process-owned locks, one for producers (they own
//! `tail`) and one for consumers (they own `head`), so any number of producers and consumers in
//! any processes share it, and each side's critical section is a copy and a store. A message
//! whose frame fits in the ring is committed whole by one store of `tail`; a larger one is
//! streamed through the ring while its producer (and then its consumer) keeps its lock.
//!
//! A streamed message whose producer gives up (a timeout) or dies is abandoned: whoever then holds
//! the producer lock writes an abandonment record (where the frame starts, where it now ends) and
//! consumers skip those bytes, so the ring goes on for everyone else.
//!
//! Nothing read from shared memory is trusted: the header is validated on attach and copied into
//! this handle, `tail - head` is checked against the capacity on every access, and every frame
//! header and abandonment record is checked before anything is allocated or skipped.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::lock::{AcquireError, Acquired, Owner, RobustLock, WhenHeld, RECORD_OFFSET};

use crate::segment::{Segment, SegmentError};
use crate::sys::futex;
use crate::wait::{self, Spinner};

pub const MAGIC: u64 = u64::from_le_bytes(*b"MPROCCH\0");
/// 2: the abandonment record replaced the ring's broken flag.
pub const VERSION: u32 = 2;
pub const MIN_CAPACITY: usize = 4096;
pub const MAX_CAPACITY: usize = 1 << 30;
/// The largest message a channel carries unless configured lower (frames store a u32 length).
pub const MAX_MESSAGE: usize = (u32::MAX as usize) - 64;

const SEG_HEADER: usize = 256;
const RING_HEADER: usize = 256;
const FRAME_HEADER: usize = 8;

// Segment header.
const S_MAGIC: usize = 0;
const S_VERSION: usize = 8;
const S_RINGS: usize = 12;
const S_CAPACITY: usize = 16;
const S_MAX_MESSAGE: usize = 24;
const S_MAXSIZE: usize = 32;
/// Tasks put and not yet marked done (JoinableQueue); a futex word that `join` waits on.
const S_UNFINISHED: usize = 64;

// Ring header: the producers' cache line, flags, then the consumers' cache line.
const R_TAIL: usize = 0;
const R_MSGS_IN: usize = 8;
const R_PLOCK: usize = 16;
const R_SPACE_SEQ: usize = 32;
const R_SPACE_WAITERS: usize = 36;
const R_PSTREAM_LEFT: usize = 40;
/// Where the frame being streamed in starts (its header's position).
const R_PSTREAM_START: usize = 48;
const R_CLOSED: usize = 64;
/// The abandonment record: non-zero when valid, then the abandoned frame's start and end.
const R_ABANDONED: usize = 68;
const R_ABANDON_START: usize = 72;
const R_ABANDON_END: usize = 80;
const R_HEAD: usize = 128;
const R_MSGS_OUT: usize = 136;
const R_CLOCK: usize = 144;
const R_DATA_SEQ: usize = 160;
const R_DATA_WAITERS: usize = 164;
const R_CSTREAM_LEFT: usize = 168;
/// Where the frame being streamed out starts, for a consumer that takes over its remainder.
const R_CSTREAM_START: usize = 176;

/// Why a channel operation failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The channel was closed: no more sends; receives fail once it is drained.
    Closed,
    /// The shared memory does not hold a valid channel (corrupt, hostile or foreign).
    Protocol(String),
    /// The message is larger than this channel's limit.
    TooLarge { len: usize, max: usize },
    /// The deadline passed.
    TimedOut,
    /// This process is already streaming a large message on this side of the ring.
    Busy,
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelError::Closed => write!(f, "channel is closed"),
            ChannelError::Protocol(m) => write!(f, "corrupt channel: {m}"),
            ChannelError::TooLarge { len, max } => write!(f, "message of {len} bytes exceeds the limit of {max} bytes"),
            ChannelError::TimedOut => write!(f, "timed out"),
            ChannelError::Busy => write!(f, "another operation of this process is in progress on this channel"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// Why a channel could not be made or mapped.
#[derive(Debug)]
pub enum OpenError {
    /// The configuration asked for is not one a channel can have.
    InvalidConfig(String),
    /// The memory could not be made or mapped (the system refused: see its errno).
    Segment(SegmentError),
    /// The memory does not hold a valid channel (corrupt, hostile or foreign).
    Protocol(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::InvalidConfig(m) => write!(f, "{m}"),
            OpenError::Segment(e) => write!(f, "{e}"),
            OpenError::Protocol(m) => write!(f, "corrupt channel: {m}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<SegmentError> for OpenError {
    fn from(e: SegmentError) -> Self {
        OpenError::Segment(e)
    }
}

fn corrupt<T>(msg: impl Into<String>) -> Result<T, OpenError> {
    Err(OpenError::Protocol(msg.into()))
}

fn protocol<T>(msg: impl Into<String>) -> Result<T, ChannelError> {
    Err(ChannelError::Protocol(msg.into()))
}

/// Parameters of a new channel.
#[derive(Clone, Copy, Debug)]
pub struct ChannelConfig {
    /// Number of rings: 1 (a queue, a simplex pipe) or 2 (a duplex pipe).
    pub rings: usize,
    /// Bytes of ring data, rounded up to a power of two.
    pub capacity: usize,
    /// Largest message accepted, in bytes.
    pub max_message: usize,
    /// Most messages held at once; 0 for no limit but space.
    pub maxsize: u64,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig { rings: 1, capacity: 1 << 20, max_message: MAX_MESSAGE, maxsize: 0 }
    }
}

/// Result of a non-blocking send.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySend {
    Sent,
    /// No room now (or another producer holds the ring): wait for space and retry.
    Full,
    /// A large message started streaming; call [`Ring::continue_send`] as space frees.
    Streaming,
}

/// Result of a receive into a caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecv {
    /// A whole message is at the start of the buffer: its kind and length.
    Done(u8, usize),
    /// The next message needs a buffer of this many bytes; nothing was taken.
    NeedsBuffer(usize),
    /// Nothing to take yet.
    Empty,
    /// A large message is arriving into the buffer: call again with the same buffer.
    Streaming,
}

/// A large message this handle is writing into the ring.
struct SendStream {
    len: usize,
    written: usize,
}

/// A large message this handle is reading out of the ring, into the caller's buffer.
struct RecvStream {
    kind: u8,
    len: usize,
    filled: usize,
    /// Skipping the rest of a message whose consumer died or gave up; `R_CSTREAM_LEFT` counts it.
    discard: bool,
    /// The position of the frame's header: an abandonment record names it.
    start: u64,
}

/// Where the abandonment record stands for a consumer at `head`.
#[derive(Debug, PartialEq, Eq)]
enum Abandoned {
    /// No record.
    None,
    /// A frame further on was abandoned: read on until it comes up.
    Ahead,
    /// The frame at `head` (or the one the consumer is inside) was abandoned; it ends at `end`.
    Here { end: u64 },
    /// A frame already passed: a consumer died between skipping it and clearing the record.
    Stale,
}

/// A segment holding `rings` rings, shared by every process that maps it.
pub struct Channel {
    seg: Arc<Segment>,
    config: ChannelConfig,
}

impl Channel {
    pub fn create(config: ChannelConfig) -> Result<Channel, OpenError> {
        let config = Self::validated(config)?;
        let seg = Segment::create("multiproc-channel", Self::size_for(config.rings, config.capacity))?;
        Ok(Self::init(seg, config))
    }

    /// The in-process twin of [`Channel::create`]: the same rings in private memory, for threads
    /// of one process (and for testing the ring apart from the cross-process plumbing).
    pub fn create_private(config: ChannelConfig) -> Result<Channel, OpenError> {
        let config = Self::validated(config)?;
        let seg = Segment::private(Self::size_for(config.rings, config.capacity))?;
        Ok(Self::init(seg, config))
    }

    fn init(seg: Segment, config: ChannelConfig) -> Channel {
        seg.u32_at(S_VERSION).store(VERSION, Ordering::Relaxed);
        seg.u32_at(S_RINGS).store(config.rings as u32, Ordering::Relaxed);
        seg.u64_at(S_CAPACITY).store(config.capacity as u64, Ordering::Relaxed);
        seg.u64_at(S_MAX_MESSAGE).store(config.max_message as u64, Ordering::Relaxed);
        seg.u64_at(S_MAXSIZE).store(config.maxsize, Ordering::Relaxed);
        seg.u64_at(S_MAGIC).store(MAGIC, Ordering::Release);
        Channel { seg: Arc::new(seg), config }
    }

    fn validated(config: ChannelConfig) -> Result<ChannelConfig, OpenError> {
        if config.rings == 0 || config.rings > 2 {
            return Err(OpenError::InvalidConfig(format!("a channel has 1 or 2 rings, not {}", config.rings)));
        }
        if config.capacity > MAX_CAPACITY {
            return Err(OpenError::InvalidConfig(format!("capacity {} exceeds {MAX_CAPACITY}", config.capacity)));
        }
        let capacity = config.capacity.max(MIN_CAPACITY).next_power_of_two();
        let max_message = config.max_message.clamp(1, MAX_MESSAGE);
        Ok(ChannelConfig { capacity, max_message, ..config })
    }

    /// Validates and maps a channel segment received from another process.
    pub fn attach(seg: Segment) -> Result<Channel, OpenError> {
        if seg.len() < SEG_HEADER {
            return corrupt("segment too small for a channel header");
        }
        if seg.u64_at(S_MAGIC).load(Ordering::Acquire) != MAGIC {
            return corrupt("bad magic: not a multiproc channel");
        }
        let version = seg.u32_at(S_VERSION).load(Ordering::Relaxed);
        if version != VERSION {
            return corrupt(format!("wire format version {version}, expected {VERSION}"));
        }
        let rings = seg.u32_at(S_RINGS).load(Ordering::Relaxed) as usize;
        let capacity = seg.u64_at(S_CAPACITY).load(Ordering::Relaxed);
        let max_message = seg.u64_at(S_MAX_MESSAGE).load(Ordering::Relaxed);
        let maxsize = seg.u64_at(S_MAXSIZE).load(Ordering::Relaxed);
        if !(1..=2).contains(&rings) {
            return corrupt(format!("ring count {rings}"));
        }
        if capacity < MIN_CAPACITY as u64 || capacity > MAX_CAPACITY as u64 || !capacity.is_power_of_two() {
            return corrupt(format!("ring capacity {capacity}"));
        }
        let capacity = capacity as usize;
        if max_message == 0 || max_message > MAX_MESSAGE as u64 {
            return corrupt(format!("message limit {max_message}"));
        }
        if seg.len() < Self::size_for(rings, capacity) {
            return corrupt("segment smaller than its header says");
        }
        let config = ChannelConfig { rings, capacity, max_message: max_message as usize, maxsize };
        Ok(Channel { seg: Arc::new(seg), config })
    }

    fn size_for(rings: usize, capacity: usize) -> usize {
        SEG_HEADER + rings * (RING_HEADER + capacity)
    }

    pub fn config(&self) -> ChannelConfig {
        self.config
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Counts one more unfinished task (a JoinableQueue `put`).
    pub fn task_added(&self) {
        self.seg.u32_at(S_UNFINISHED).fetch_add(1, Ordering::SeqCst);
    }

    /// Counts one task done; wakes joiners at zero. `None` if none was unfinished.
    pub fn task_done(&self) -> Option<u32> {
        let word = self.seg.u32_at(S_UNFINISHED);
        let mut cur = word.load(Ordering::SeqCst);
        loop {
            if cur == 0 {
                return None;
            }
            match word.compare_exchange(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(v) => cur = v,
            }
        }
        if cur == 1 {
            futex::wake(word, i32::MAX);
        }
        Some(cur - 1)
    }

    /// Unfinished tasks, and the offset of their futex word in the segment.
    pub fn unfinished(&self) -> (u32, usize) {
        (self.seg.u32_at(S_UNFINISHED).load(Ordering::SeqCst), S_UNFINISHED)
    }

    /// Blocks until no task is unfinished or `deadline` passes; false on timeout.
    pub fn join_tasks(&self, deadline: Option<Instant>) -> bool {
        let word = self.seg.u32_at(S_UNFINISHED);
        loop {
            let cur = word.load(Ordering::SeqCst);
            if cur == 0 {
                return true;
            }
            if !wait::sleep_slice(word, cur, deadline) {
                return false;
            }
        }
    }

    /// A handle on ring `index`, with its own process-local stream state and spin budgets.
    pub fn ring(&self, index: usize) -> Ring {
        assert!(index < self.config.rings, "ring index out of range");
        let base = SEG_HEADER + index * (RING_HEADER + self.config.capacity);
        Ring {
            seg: self.seg.clone(),
            base,
            data: base + RING_HEADER,
            cap: self.config.capacity,
            max_message: self.config.max_message,
            maxsize: self.config.maxsize,
            send: Mutex::new(None),
            recv: Mutex::new(None),
            send_spin: Spinner::new(),
            recv_spin: Spinner::new(),
        }
    }
}

/// One direction of a channel, as seen by one process.
pub struct Ring {
    seg: Arc<Segment>,
    base: usize,
    data: usize,
    cap: usize,
    max_message: usize,
    maxsize: u64,
    send: Mutex<Option<SendStream>>,
    recv: Mutex<Option<RecvStream>>,
    send_spin: Spinner,
    recv_spin: Spinner,
}

fn frame_check(len: u32, kind: u8) -> u16 {
    ((len ^ (len >> 16)) as u16) ^ (kind as u16).wrapping_mul(0x0101) ^ 0x5A3C
}

fn encode_header(len: usize, kind: u8) -> [u8; FRAME_HEADER] {
    let len = len as u32;
    let mut h = [0u8; FRAME_HEADER];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4] = kind;
    h[6..8].copy_from_slice(&frame_check(len, kind).to_le_bytes());
    h
}

impl Ring {
    fn u32(&self, off: usize) -> &AtomicU32 {
        self.seg.u32_at(self.base + off)
    }
    fn u64(&self, off: usize) -> &AtomicU64 {
        self.seg.u64_at(self.base + off)
    }
    /// The side locks are owned by threads: a stream in progress belongs to its handle's thread.
    fn producer_lock(&self) -> RobustLock<'_> {
        RobustLock::new(self.u32(R_PLOCK), self.u64(R_PLOCK + RECORD_OFFSET))
    }
    fn consumer_lock(&self) -> RobustLock<'_> {
        RobustLock::new(self.u32(R_CLOCK), self.u64(R_CLOCK + RECORD_OFFSET))
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Messages committed and not yet taken (approximate while others are active, as in Python).
    pub fn len(&self) -> u64 {
        let out = self.u64(R_MSGS_OUT).load(Ordering::Acquire);
        self.u64(R_MSGS_IN).load(Ordering::Acquire).saturating_sub(out)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.maxsize > 0 && self.len() >= self.maxsize
    }

    pub fn is_closed(&self) -> bool {
        self.u32(R_CLOSED).load(Ordering::Acquire) != 0
    }

    /// Closes the ring for every process: sends fail, receives drain then fail; wakes everyone.
    pub fn close(&self) {
        self.u32(R_CLOSED).store(1, Ordering::SeqCst);
        self.bump(R_DATA_SEQ, R_DATA_WAITERS, true);
        self.bump(R_SPACE_SEQ, R_SPACE_WAITERS, true);
    }

    // ---- abandoned messages ----

    /// Holding the producer lock: gives up the streamed message that its previous holder (dead)
    /// or this handle left unfinished. Writes the abandonment record (release: it is visible
    /// before the lock is free and before any frame that follows), zeroes the remainder and wakes
    /// consumers. False when nothing was streaming.
    fn reclaim_stream(&self) -> Result<bool, ChannelError> {
        let left = self.u64(R_PSTREAM_LEFT).load(Ordering::Relaxed);
        if left == 0 {
            return Ok(false);
        }
        let start = self.u64(R_PSTREAM_START).load(Ordering::Relaxed);
        let tail = self.u64(R_TAIL).load(Ordering::Relaxed);
        let written = tail.wrapping_sub(start);
        let whole = written.checked_add(left);
        if written < FRAME_HEADER as u64 || whole.is_none_or(|n| n > (FRAME_HEADER + self.max_message) as u64) {
            return protocol(format!("streamed frame at {start} with {written} bytes written and {left} left"));
        }
        if self.u32(R_ABANDONED).load(Ordering::Acquire) != 0 {
            // Only a reclaim that died between writing this record and zeroing the remainder
            // leaves one behind: a stream cannot start while a record is pending.
            if self.u64(R_ABANDON_START).load(Ordering::Relaxed) != start {
                return protocol("a second abandoned message while one is pending");
            }
        } else {
            self.u64(R_ABANDON_START).store(start, Ordering::Relaxed);
            self.u64(R_ABANDON_END).store(tail, Ordering::Relaxed);
            self.u32(R_ABANDONED).store(1, Ordering::Release);
        }
        self.u64(R_PSTREAM_LEFT).store(0, Ordering::Release);
        self.bump(R_DATA_SEQ, R_DATA_WAITERS, true);
        Ok(true)
    }

    /// Holding the consumer lock: reads the abandonment record and places it relative to a
    /// consumer at `head`, inside the frame starting at `inside` if any. Anything that cannot
    /// be a record a producer wrote is a protocol error.
    fn abandonment(&self, head: u64, inside: Option<u64>) -> Result<Abandoned, ChannelError> {
        if self.u32(R_ABANDONED).load(Ordering::Acquire) == 0 {
            return Ok(Abandoned::None);
        }
        let start = self.u64(R_ABANDON_START).load(Ordering::Relaxed);
        let end = self.u64(R_ABANDON_END).load(Ordering::Relaxed);
        // The record was written before the tail moved past its end: a tail read now covers it.
        let tail = self.u64(R_TAIL).load(Ordering::Acquire);
        let used = tail.wrapping_sub(head);
        if used > self.cap as u64 {
            return protocol(format!("ring indices out of range (head {head}, tail {tail}, capacity {})", self.cap));
        }
        let size = end.wrapping_sub(start);
        if size < FRAME_HEADER as u64 || size >= (FRAME_HEADER + self.max_message) as u64 {
            return protocol(format!("abandoned frame of {size} bytes"));
        }
        // Positions relative to the consumer; a legitimate record lies within [head, tail].
        let (to_start, to_end) = (start.wrapping_sub(head), end.wrapping_sub(head));
        if start == inside.unwrap_or(head) {
            if to_end > used {
                return protocol("abandoned frame ends outside the ring's data");
            }
            return Ok(Abandoned::Here { end });
        }
        if to_start > 0 && to_start <= to_end && to_end <= used {
            return Ok(Abandoned::Ahead);
        }
        if inside.is_none() && head.wrapping_sub(end) < 1 << 62 {
            return Ok(Abandoned::Stale);
        }
        protocol("abandonment record out of place")
    }

    /// Holding the consumer lock: the record is used up; streams may start again.
    fn clear_abandonment(&self) {
        self.u32(R_ABANDONED).store(0, Ordering::Release);
        // Producers of a large message wait for this on the space sequence.
        self.bump(R_SPACE_SEQ, R_SPACE_WAITERS, false);
    }

    /// Holding the consumer lock, at a frame boundary: skips the abandoned frame at `head`.
    fn skip_abandoned(&self, head: u64, end: u64) -> Result<(), ChannelError> {
        let (_, len) = self.frame_at(head)?;
        let frame = (FRAME_HEADER + len) as u64;
        if frame <= self.cap as u64 || end.wrapping_sub(head) >= frame {
            return protocol("the abandoned frame is not an unfinished streamed message");
        }
        self.u64(R_HEAD).store(end, Ordering::Release);
        self.u64(R_MSGS_OUT).fetch_add(1, Ordering::AcqRel);
        self.clear_abandonment();
        Ok(())
    }

    /// A consumer inside a streamed message that has stopped arriving: if the producer lock's
    /// holder died (or the lock is free), take it and give the message up on the producer's
    /// behalf. True when the caller should look again (the record is there, or data came).
    fn reclaim_for_consumer(&self, head: u64, start: u64) -> Result<bool, ChannelError> {
        let lock = self.producer_lock();
        if lock.owner() != 0 && !lock.owner_is_dead() {
            return Ok(false);
        }
        match self.lock_now(lock) {
            Ok(_) => {}
            Err(ChannelError::TimedOut) => return Ok(false),
            Err(e) => return Err(e),
        }
        let outcome = match self.reclaim_stream() {
            Ok(true) => Ok(true),
            // Nothing was streaming: the message was finished or given up since we looked.
            Ok(false) => {
                let moved = self.u64(R_TAIL).load(Ordering::Acquire) != head;
                if moved || matches!(self.abandonment(head, Some(start)), Ok(Abandoned::Here { .. })) {
                    Ok(true)
                } else {
                    protocol("a streamed message stopped arriving and no producer is writing it")
                }
            }
            Err(e) => Err(e),
        };
        self.unlock_producer();
        outcome
    }

    /// Gives up the large message this handle is streaming out (its deadline passed, or the
    /// caller stopped): consumers discard what of it is in the ring, and the ring goes on.
    /// False when nothing was streaming.
    pub fn abandon_send(&self) -> Result<bool, ChannelError> {
        if self.send.lock().unwrap().take().is_none() {
            return Ok(false);
        }
        let reclaimed = self.reclaim_stream();
        self.unlock_producer();
        reclaimed.map(|_| true)
    }

    /// Gives up the large message this handle is receiving: the rest of it is skipped by the
    /// next consumer as it arrives, so that message is lost. False when nothing was arriving.
    pub fn abandon_recv(&self) -> bool {
        if self.recv.lock().unwrap().take().is_none() {
            return false;
        }
        // R_CSTREAM_LEFT and R_CSTREAM_START still say what is left and where it began.
        self.unlock_consumer();
        true
    }

    /// Advances a wake-up sequence and wakes its sleepers, if any (or always, with `force`).
    ///
    /// Without sleepers the sequence is left alone: a waiter registers itself (SeqCst) before it
    /// reads the sequence and re-checks its condition, so if we see no waiter here, it will see
    /// the change we just published. That keeps the uncontended path free of a shared RMW.
    fn bump(&self, seq: usize, waiters: usize, force: bool) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if force || self.u32(waiters).load(Ordering::SeqCst) > 0 {
            let word = self.u32(seq);
            word.fetch_add(1, Ordering::SeqCst);
            futex::wake(word, i32::MAX);
        }
    }

    fn head_tail(&self) -> Result<(u64, u64), ChannelError> {
        let head = self.u64(R_HEAD).load(Ordering::Acquire);
        let tail = self.u64(R_TAIL).load(Ordering::Acquire);
        let used = tail.wrapping_sub(head);
        if used > self.cap as u64 {
            return protocol(format!("ring indices out of range (head {head}, tail {tail}, capacity {})", self.cap));
        }
        Ok((head, tail))
    }

    fn write_at(&self, pos: u64, src: &[u8]) {
        let idx = (pos as usize) & (self.cap - 1);
        let first = src.len().min(self.cap - idx);
        self.seg.write(self.data + idx, &src[..first]);
        if first < src.len() {
            self.seg.write(self.data, &src[first..]);
        }
    }

    fn read_at(&self, pos: u64, dst: &mut [u8]) {
        let idx = (pos as usize) & (self.cap - 1);
        let first = dst.len().min(self.cap - idx);
        self.seg.read(self.data + idx, &mut dst[..first]);
        if first < dst.len() {
            let rest = dst.len() - first;
            self.seg.read(self.data, &mut dst[first..first + rest]);
        }
    }

    /// The kind and length in the frame header at `pos`, checked (the length against the limit).
    fn frame_at(&self, pos: u64) -> Result<(u8, usize), ChannelError> {
        let mut h = [0u8; FRAME_HEADER];
        self.read_at(pos, &mut h);
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let kind = h[4];
        let check = u16::from_le_bytes([h[6], h[7]]);
        if check != frame_check(len, kind) || h[5] != 0 {
            return protocol("frame header check failed");
        }
        let len = len as usize;
        if len > self.max_message {
            return protocol(format!("frame length {len} exceeds the limit {}", self.max_message));
        }
        Ok((kind, len))
    }

    /// Takes a side's lock if it is free or soon will be (it may spin through another process's
    /// short copy); `TimedOut` otherwise. The clock is read only when the lock is contended.
    fn lock_now(&self, lock: RobustLock<'_>) -> Result<Acquired, ChannelError> {
        let me = Owner::thread();
        if lock.try_acquire(me) {
            return Ok(Acquired::Clean);
        }
        match lock.acquire(me, Some(Instant::now()), WhenHeld::Refuse, None) {
            Ok(a) => Ok(a),
            Err(AcquireError::TimedOut) => Err(ChannelError::TimedOut),
            Err(AcquireError::WouldDeadlock) => Err(ChannelError::Busy),
        }
    }

    fn unlock_producer(&self) {
        self.producer_lock().release_if_held_by(Owner::thread());
        // Producers waiting for the lock sleep on the space sequence.
        self.bump(R_SPACE_SEQ, R_SPACE_WAITERS, false);
    }

    fn unlock_consumer(&self) {
        self.consumer_lock().release_if_held_by(Owner::thread());
        self.bump(R_DATA_SEQ, R_DATA_WAITERS, false);
    }

    // ---- sending ----

    /// Sends without waiting for space (it may wait briefly for another producer's short copy).
    /// A message larger than the ring starts streaming: finish it with [`Ring::continue_send`],
    /// passing the same bytes.
    pub fn try_send(&self, kind: u8, data: &[u8]) -> Result<TrySend, ChannelError> {
        self.try_send_inner(kind, data, true)
    }

    /// As [`Ring::try_send`], but a message larger than the ring is refused with `Full` instead of
    /// starting to stream: for callers that must never wait.
    pub fn try_send_whole(&self, kind: u8, data: &[u8]) -> Result<TrySend, ChannelError> {
        self.try_send_inner(kind, data, false)
    }

    fn try_send_inner(&self, kind: u8, data: &[u8], may_stream: bool) -> Result<TrySend, ChannelError> {
        if !may_stream && FRAME_HEADER + data.len() > self.cap {
            return Ok(TrySend::Full);
        }
        if data.len() > self.max_message {
            return Err(ChannelError::TooLarge { len: data.len(), max: self.max_message });
        }
        if self.send.lock().unwrap().is_some() {
            return Err(ChannelError::Busy);
        }
        if self.is_closed() {
            return Err(ChannelError::Closed);
        }
        match self.lock_now(self.producer_lock()) {
            Ok(_) => {
                // The previous holder died in the middle of a large message (the lock was taken
                // over): nobody can finish it, so give it up for it and go on.
                if let Err(e) = self.reclaim_stream() {
                    self.unlock_producer();
                    return Err(e);
                }
            }
            Err(ChannelError::TimedOut) => return Ok(TrySend::Full),
            Err(e) => return Err(e),
        }
        let result = self.send_locked(kind, data);
        match result {
            Ok(TrySend::Streaming) => {}
            _ => self.unlock_producer(),
        }
        if matches!(result, Ok(TrySend::Sent) | Ok(TrySend::Streaming)) {
            self.bump(R_DATA_SEQ, R_DATA_WAITERS, false);
        }
        result
    }

    fn send_locked(&self, kind: u8, data: &[u8]) -> Result<TrySend, ChannelError> {
        if self.is_closed() {
            return Err(ChannelError::Closed);
        }
        if self.is_full() {
            return Ok(TrySend::Full);
        }
        let (head, tail) = self.head_tail()?;
        let free = self.cap - tail.wrapping_sub(head) as usize;
        let frame = FRAME_HEADER + data.len();
        if frame <= self.cap {
            if free < frame {
                return Ok(TrySend::Full);
            }
            self.write_at(tail, &encode_header(data.len(), kind));
            self.write_at(tail.wrapping_add(FRAME_HEADER as u64), data);
            self.u64(R_MSGS_IN).fetch_add(1, Ordering::AcqRel);
            self.u64(R_TAIL).store(tail.wrapping_add(frame as u64), Ordering::Release);
            return Ok(TrySend::Sent);
        }
        // One abandonment record at a time: a stream (which could be abandoned in turn) waits
        // until consumers have passed the last message given up. Small messages go on.
        if free < FRAME_HEADER || self.u32(R_ABANDONED).load(Ordering::Acquire) != 0 {
            return Ok(TrySend::Full);
        }
        // Larger than the ring: stream it, header first.
        let chunk = (free - FRAME_HEADER).min(data.len());
        self.write_at(tail, &encode_header(data.len(), kind));
        self.write_at(tail.wrapping_add(FRAME_HEADER as u64), &data[..chunk]);
        self.u64(R_PSTREAM_START).store(tail, Ordering::Relaxed);
        self.u64(R_PSTREAM_LEFT).store((data.len() - chunk) as u64, Ordering::Relaxed);
        self.u64(R_MSGS_IN).fetch_add(1, Ordering::AcqRel);
        self.u64(R_TAIL).store(tail.wrapping_add((FRAME_HEADER + chunk) as u64), Ordering::Release);
        *self.send.lock().unwrap() = Some(SendStream { len: data.len(), written: chunk });
        Ok(TrySend::Streaming)
    }

    /// Streams more of the large message begun by [`Ring::try_send`] with these same bytes.
    /// Returns true once all of it is in the ring.
    pub fn continue_send(&self, data: &[u8]) -> Result<bool, ChannelError> {
        let mut guard = self.send.lock().unwrap();
        let Some(stream) = guard.as_mut() else { return Ok(true) };
        if data.len() != stream.len {
            return Err(ChannelError::Busy);
        }
        let (head, tail) = self.head_tail()?;
        let free = self.cap - tail.wrapping_sub(head) as usize;
        if free == 0 {
            return Ok(false);
        }
        let chunk = free.min(stream.len - stream.written);
        self.write_at(tail, &data[stream.written..stream.written + chunk]);
        stream.written += chunk;
        let left = stream.len - stream.written;
        self.u64(R_PSTREAM_LEFT).store(left as u64, Ordering::Relaxed);
        self.u64(R_TAIL).store(tail.wrapping_add(chunk as u64), Ordering::Release);
        let done = left == 0;
        if done {
            *guard = None;
            drop(guard);
            self.unlock_producer();
        }
        self.bump(R_DATA_SEQ, R_DATA_WAITERS, false);
        Ok(done)
    }

    /// True while this handle is streaming a large message out.
    pub fn is_sending(&self) -> bool {
        self.send.lock().unwrap().is_some()
    }

    /// Sends, waiting for space until `deadline` (`None`: as long as it takes). `alive` is asked
    /// between sleeps; false ends the wait with `Closed` (the receiving side is gone). A large
    /// message that cannot be finished in time is abandoned: consumers discard its beginning.
    pub fn send(
        &self,
        kind: u8,
        data: &[u8],
        deadline: Option<Instant>,
        alive: &mut dyn FnMut() -> bool,
    ) -> Result<(), ChannelError> {
        loop {
            match self.try_send(kind, data)? {
                TrySend::Sent => return Ok(()),
                TrySend::Streaming => break,
                TrySend::Full => {
                    if !alive() {
                        return Err(ChannelError::Closed);
                    }
                    self.wait_side(R_SPACE_SEQ, R_SPACE_WAITERS, deadline, true, |r| r.can_send(data.len()))?
                }
            }
        }
        loop {
            let step = match self.continue_send(data) {
                Ok(true) => return Ok(()),
                Ok(false) if !alive() => Err(ChannelError::Closed),
                Ok(false) => self.wait_side(R_SPACE_SEQ, R_SPACE_WAITERS, deadline, true, |r| r.space_free()),
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                let _ = self.abandon_send();
                return Err(e);
            }
        }
    }

    fn space_free(&self) -> bool {
        self.head_tail().map(|(h, t)| t.wrapping_sub(h) < self.cap as u64).unwrap_or(true)
    }

    /// Whether a send of `len` bytes might now make progress (or fail at once).
    pub fn can_send(&self, len: usize) -> bool {
        // A message already streaming is finished even if the ring was closed meanwhile.
        if self.is_sending() {
            return self.space_free();
        }
        if self.is_closed() {
            return true;
        }
        if self.producer_lock().owner() != 0 || self.is_full() {
            return false;
        }
        if FRAME_HEADER + len > self.cap && self.u32(R_ABANDONED).load(Ordering::Relaxed) != 0 {
            return false;
        }
        let Ok((head, tail)) = self.head_tail() else { return true };
        let free = self.cap - tail.wrapping_sub(head) as usize;
        free >= (FRAME_HEADER + len).min(self.cap)
    }

    // ---- receiving ----

    /// Takes a message into `dst` if one is there. A message longer than `dst` is left in place
    /// ([`TryRecv::NeedsBuffer`]); a large one that has begun arriving must be continued with the
    /// same buffer, and `Empty` then means that it was abandoned by its producer (it is lost).
    /// `Err(Closed)` once the ring is closed and drained.
    pub fn try_recv(&self, dst: &mut [u8]) -> Result<TryRecv, ChannelError> {
        loop {
            let mut guard = self.recv.lock().unwrap();
            if let Some(stream) = guard.as_ref() {
                let discarding = stream.discard;
                let r = self.continue_recv(&mut guard, dst)?;
                // A remainder skipped to its end: go on to the message after it.
                if discarding && r == TryRecv::Empty {
                    continue;
                }
                return Ok(r);
            }
            drop(guard);
            match self.lock_now(self.consumer_lock()) {
                Ok(_) => {}
                Err(ChannelError::TimedOut) => return Ok(TryRecv::Empty),
                Err(e) => return Err(e),
            }
            // A consumer died or gave up in the middle of a message: the rest of that message
            // went with it. Skip its remaining bytes as they arrive.
            let left = self.u64(R_CSTREAM_LEFT).load(Ordering::Relaxed);
            if left != 0 {
                if left > self.max_message as u64 {
                    self.unlock_consumer();
                    return protocol("stream remainder exceeds the message limit");
                }
                let start = self.u64(R_CSTREAM_START).load(Ordering::Relaxed);
                *self.recv.lock().unwrap() =
                    Some(RecvStream { kind: 0, len: left as usize, filled: 0, discard: true, start });
                continue;
            }
            let result = self.recv_locked(dst);
            match result {
                Ok(TryRecv::Streaming) => {}
                _ => self.unlock_consumer(),
            }
            if matches!(result, Ok(TryRecv::Done(..)) | Ok(TryRecv::Streaming)) {
                self.bump(R_SPACE_SEQ, R_SPACE_WAITERS, false);
            }
            return result;
        }
    }

    fn recv_locked(&self, dst: &mut [u8]) -> Result<TryRecv, ChannelError> {
        loop {
            let (head, tail) = self.head_tail()?;
            // Read after the tail: a tail that covers bytes written after an abandonment also
            // shows its record.
            match self.abandonment(head, None)? {
                Abandoned::Here { end } => {
                    self.skip_abandoned(head, end)?;
                    continue;
                }
                Abandoned::Stale => {
                    self.clear_abandonment();
                    continue;
                }
                Abandoned::None | Abandoned::Ahead => {}
            }
            let avail = tail.wrapping_sub(head) as usize;
            if avail == 0 {
                if self.is_closed() {
                    return Err(ChannelError::Closed);
                }
                return Ok(TryRecv::Empty);
            }
            if avail < FRAME_HEADER {
                return protocol(format!("{avail} bytes in the ring, less than a frame header"));
            }
            let (kind, len) = self.frame_at(head)?;
            let frame = FRAME_HEADER + len;
            if len > dst.len() {
                // A large message given up just now needs no buffer: skip it instead.
                if frame > self.cap && matches!(self.abandonment(head, None)?, Abandoned::Here { .. }) {
                    continue;
                }
                return Ok(TryRecv::NeedsBuffer(len));
            }
            if frame <= self.cap {
                if avail < frame {
                    return protocol(format!("frame of {frame} bytes but only {avail} committed"));
                }
                self.read_at(head.wrapping_add(FRAME_HEADER as u64), &mut dst[..len]);
                self.u64(R_MSGS_OUT).fetch_add(1, Ordering::AcqRel);
                self.u64(R_HEAD).store(head.wrapping_add(frame as u64), Ordering::Release);
                return Ok(TryRecv::Done(kind, len));
            }
            // A streamed message: its producer must be writing it right now, with exactly the
            // bytes not yet in the ring (or fewer, if it wrote more since we looked) still to come.
            let left = self.u64(R_PSTREAM_LEFT).load(Ordering::Acquire);
            let unwritten = (len - (avail - FRAME_HEADER)) as u64;
            if left == 0 || left > unwritten {
                // Or its producer gave it up since we looked: the record comes before the zero.
                if matches!(self.abandonment(head, None)?, Abandoned::Here { .. }) {
                    continue;
                }
                return protocol(format!(
                    "a frame of {len} bytes is larger than the ring but no producer is streaming it"
                ));
            }
            // Take what is here and keep the lock: the next call continues with the rest.
            let chunk = (avail - FRAME_HEADER).min(len);
            self.read_at(head.wrapping_add(FRAME_HEADER as u64), &mut dst[..chunk]);
            self.u64(R_CSTREAM_START).store(head, Ordering::Relaxed);
            self.u64(R_CSTREAM_LEFT).store((len - chunk) as u64, Ordering::Relaxed);
            self.u64(R_HEAD).store(head.wrapping_add((FRAME_HEADER + chunk) as u64), Ordering::Release);
            *self.recv.lock().unwrap() = Some(RecvStream { kind, len, filled: chunk, discard: false, start: head });
            return Ok(TryRecv::Streaming);
        }
    }

    fn continue_recv(&self, guard: &mut Option<RecvStream>, dst: &mut [u8]) -> Result<TryRecv, ChannelError> {
        let stream = guard.as_mut().expect("stream state");
        if !stream.discard && dst.len() < stream.len {
            return Err(ChannelError::Busy);
        }
        let left = stream.len - stream.filled;
        if left > 0 {
            let (head, tail) = self.head_tail()?;
            if let Abandoned::Here { end } = self.abandonment(head, Some(stream.start))? {
                // Its producer gave it up or died: what of it is in the ring is all there is.
                *guard = None;
                self.u64(R_HEAD).store(end, Ordering::Release);
                self.u64(R_CSTREAM_LEFT).store(0, Ordering::Relaxed);
                self.u64(R_MSGS_OUT).fetch_add(1, Ordering::AcqRel);
                self.clear_abandonment();
                self.unlock_consumer();
                return Ok(TryRecv::Empty);
            }
            let avail = tail.wrapping_sub(head) as usize;
            if avail == 0 {
                if self.reclaim_for_consumer(head, stream.start)? {
                    return self.continue_recv(guard, dst);
                }
                return Ok(TryRecv::Streaming);
            }
            let chunk = avail.min(left);
            if !stream.discard {
                self.read_at(head, &mut dst[stream.filled..stream.filled + chunk]);
            }
            stream.filled += chunk;
            self.u64(R_CSTREAM_LEFT).store((left - chunk) as u64, Ordering::Relaxed);
            self.u64(R_HEAD).store(head.wrapping_add(chunk as u64), Ordering::Release);
            self.bump(R_SPACE_SEQ, R_SPACE_WAITERS, false);
            if chunk < left {
                return Ok(TryRecv::Streaming);
            }
        }
        let stream = guard.take().expect("stream state");
        self.u64(R_MSGS_OUT).fetch_add(1, Ordering::AcqRel);
        self.unlock_consumer();
        if stream.discard {
            // Skipped; the caller (still holding `self.recv`) simply tries again.
            return Ok(TryRecv::Empty);
        }
        Ok(TryRecv::Done(stream.kind, stream.len))
    }

    /// Receives into `dst`, waiting until `deadline` (`None`: as long as it takes; still in
    /// bounded slices). Returns `Done`, or `NeedsBuffer` when the next message is longer than
    /// `dst`. `alive` is asked between slices; false ends the wait with `Closed` once drained.
    /// A large message still arriving when the deadline passes is given up (it is lost).
    pub fn recv_into(
        &self,
        dst: &mut [u8],
        deadline: Option<Instant>,
        alive: &mut dyn FnMut() -> bool,
    ) -> Result<TryRecv, ChannelError> {
        loop {
            match self.try_recv(dst)? {
                r @ (TryRecv::Done(..) | TryRecv::NeedsBuffer(_)) => return Ok(r),
                TryRecv::Streaming => {
                    if let Err(e) = self.wait_side(R_DATA_SEQ, R_DATA_WAITERS, deadline, false, |r| r.can_recv()) {
                        // Out of time in the middle of a message: the next consumer skips the rest.
                        self.abandon_recv();
                        return Err(e);
                    }
                }
                TryRecv::Empty => {
                    if !alive() {
                        // Re-check once: the peer may have sent just before it went away.
                        let last = self.try_recv(dst)?;
                        if matches!(last, TryRecv::Done(..) | TryRecv::NeedsBuffer(_)) {
                            return Ok(last);
                        }
                        return Err(ChannelError::Closed);
                    }
                    self.wait_side(R_DATA_SEQ, R_DATA_WAITERS, deadline, false, |r| r.can_recv())?;
                }
            }
        }
    }

    /// Receives a message into a new buffer: `(kind, bytes)`.
    pub fn recv(
        &self,
        deadline: Option<Instant>,
        alive: &mut dyn FnMut() -> bool,
    ) -> Result<(u8, Vec<u8>), ChannelError> {
        let mut buf = Vec::new();
        loop {
            match self.recv_into(&mut buf, deadline, alive)? {
                TryRecv::Done(kind, len) => {
                    buf.truncate(len);
                    return Ok((kind, buf));
                }
                TryRecv::NeedsBuffer(len) => buf.resize(len, 0),
                _ => unreachable!("recv_into returns Done or NeedsBuffer"),
            }
        }
    }

    /// True while this handle is in the middle of receiving a large message.
    pub fn is_receiving(&self) -> bool {
        self.recv.lock().unwrap().is_some()
    }

    /// Whether a receive might now make progress (or fail at once).
    pub fn can_recv(&self) -> bool {
        let Ok((head, tail)) = self.head_tail() else { return true };
        if self.is_receiving() {
            // Inside a message that stopped arriving, a record can only be for that message.
            return tail != head || self.u32(R_ABANDONED).load(Ordering::Relaxed) != 0;
        }
        // Closed and drained is final, but draining needs the consumer lock like any receive.
        (self.is_closed() || tail != head) && self.consumer_lock().owner() == 0
    }

    /// Waits until `ready` holds or the sequence word moves: spin first, then sleep one slice.
    fn wait_side(
        &self,
        seq: usize,
        waiters: usize,
        deadline: Option<Instant>,
        sending: bool,
        ready: impl Fn(&Ring) -> bool,
    ) -> Result<(), ChannelError> {
        let spinner = if sending { &self.send_spin } else { &self.recv_spin };
        let start = Instant::now();
        // The caller has just tried: once out of time, a side that looks ready but still cannot
        // proceed (a lock a live stranger holds) must not keep it looping.
        if deadline.is_some_and(|d| start >= d) {
            return Err(ChannelError::TimedOut);
        }
        if spinner.spin(|| ready(self)) {
            return Ok(());
        }
        let word = self.u32(seq);
        let waiters = self.u32(waiters);
        waiters.fetch_add(1, Ordering::SeqCst);
        let expected = word.load(Ordering::SeqCst);
        let result = if ready(self) || wait::sleep_slice(word, expected, deadline) {
            Ok(())
        } else {
            Err(ChannelError::TimedOut)
        };
        waiters.fetch_sub(1, Ordering::SeqCst);
        spinner.learn(start.elapsed(), false);
        result
    }

    // ---- waking asynchronous waiters ----

    /// Registers an asynchronous receiver. Returns the word to wait on and its value, or `None`
    /// (unregistered again) when a receive can make progress now.
    pub fn arm_recv(&self) -> Option<(usize, u32)> {
        self.arm(R_DATA_SEQ, R_DATA_WAITERS, |r| r.can_recv())
    }

    pub fn disarm_recv(&self) {
        self.u32(R_DATA_WAITERS).fetch_sub(1, Ordering::SeqCst);
    }

    /// Registers an asynchronous sender of `len` bytes; as [`Ring::arm_recv`].
    pub fn arm_send(&self, len: usize) -> Option<(usize, u32)> {
        self.arm(R_SPACE_SEQ, R_SPACE_WAITERS, |r| r.can_send(len))
    }

    pub fn disarm_send(&self) {
        self.u32(R_SPACE_WAITERS).fetch_sub(1, Ordering::SeqCst);
    }

    /// Returns the sequence word's offset in the segment and the value to wait on.
    fn arm(&self, seq: usize, waiters: usize, ready: impl Fn(&Ring) -> bool) -> Option<(usize, u32)> {
        let word = self.u32(seq);
        self.u32(waiters).fetch_add(1, Ordering::SeqCst);
        let expected = word.load(Ordering::SeqCst);
        // A lock held by a dead thread moves no word: report ready so the caller takes it over.
        // A consumer inside a large message waits on its producer, any other on the consumers.
        let lock = if seq == R_DATA_SEQ && !self.is_receiving() { self.consumer_lock() } else { self.producer_lock() };
        if ready(self) || lock.owner_is_dead() {
            self.u32(waiters).fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some((self.base + seq, expected))
    }

    /// Spins for up to the learned budget until a receive can progress. For the async path.
    pub fn spin_recv(&self) -> bool {
        self.recv_spin.spin(|| self.can_recv())
    }

    /// Spins for up to the learned budget until a send of `len` bytes can progress.
    pub fn spin_send(&self, len: usize) -> bool {
        self.send_spin.spin(|| self.can_send(len))
    }

    /// Tells the spinner how long an asynchronous wait lasted after its spin failed.
    pub fn learn_wait(&self, sending: bool, waited: std::time::Duration) {
        if sending { &self.send_spin } else { &self.recv_spin }.learn(waited, false);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // A handle dropped mid-stream gives up what it holds so others are not wedged.
        if self.recv.get_mut().map(|s| s.take().is_some()).unwrap_or(false) {
            self.unlock_consumer();
        }
        if self.send.get_mut().map(|s| s.take().is_some()).unwrap_or(false) {
            let _ = self.reclaim_stream();
            self.unlock_producer();
        }
    }
}
