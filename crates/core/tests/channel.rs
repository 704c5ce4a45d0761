//! The channel across real processes: this test binary re-runs itself as the second process
//! (`MPROC_ROLE` says which part to play), inheriting the segment's descriptor.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc_core::lock::{Acquired, Owner, RobustLock, WhenHeld};
use multiproc_core::{Channel, ChannelConfig, ChannelError, OpenError, Segment, TryRecv};

mod common;
use common::{role, spawn_role};

fn attach(fd: RawFd) -> Channel {
    let seg = Segment::attach(multiproc_core::sys::fd::adopt(fd).unwrap(), 0).unwrap();
    Channel::attach(seg).unwrap()
}

fn message(i: u64, len: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; len];
    v[..8.min(len)].copy_from_slice(&i.to_le_bytes()[..8.min(len)]);
    v
}

#[test]
fn messages_cross_processes_in_order() {
    if let Some((role, fd)) = role() {
        assert_eq!(role, "producer");
        let ring = attach(fd).ring(0);
        for i in 0..20_000u64 {
            let len = 8 + (i as usize * 7919) % 3000;
            ring.send(1, &message(i, len), None, &mut || true).unwrap();
        }
        // One message much larger than the ring streams through it.
        ring.send(2, &message(7, 1 << 20), None, &mut || true).unwrap();
        return;
    }
    let chan = Channel::create(ChannelConfig { capacity: 64 * 1024, ..Default::default() }).unwrap();
    let ring = chan.ring(0);
    let child = spawn_role("messages_cross_processes_in_order", "producer", chan.segment().fd());
    let deadline = Some(Instant::now() + Duration::from_secs(30));
    for i in 0..20_000u64 {
        let (kind, data) = ring.recv(deadline, &mut || true).unwrap();
        assert_eq!(kind, 1);
        assert_eq!(data, message(i, 8 + (i as usize * 7919) % 3000));
    }
    let (kind, data) = ring.recv(deadline, &mut || true).unwrap();
    assert_eq!((kind, data.len()), (2, 1 << 20));
    assert_eq!(data, message(7, 1 << 20));
    assert_eq!(child.wait(Some(Duration::from_secs(10))).unwrap().map(|s| s.code()), Some(0));
}

#[test]
fn a_lock_whose_owner_was_killed_is_taken_over() {
    if let Some((role, fd)) = role() {
        assert_eq!(role, "owner");
        let seg = Segment::attach(multiproc_core::sys::fd::adopt(fd).unwrap(), 16).unwrap();
        let lock = RobustLock::new(seg.u32_at(0), seg.u64_at(8));
        assert_eq!(lock.acquire(Owner::thread(), None, WhenHeld::Refuse, None), Ok(Acquired::Clean));
        seg.u32_at(4).store(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let seg = Segment::create("test-lock", 4096).unwrap();
    let child = spawn_role("a_lock_whose_owner_was_killed_is_taken_over", "owner", seg.fd());
    let held = seg.u32_at(4);
    let start = Instant::now();
    while held.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "child never took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    let lock = RobustLock::new(seg.u32_at(0), seg.u64_at(8));
    assert!(!lock.try_acquire(Owner::thread()));
    child.signal(libc_sigkill()).unwrap();
    let got = lock.acquire(Owner::thread(), Some(Instant::now() + Duration::from_secs(5)), WhenHeld::Refuse, None);
    assert_eq!(got, Ok(Acquired::OwnerDied));
    assert!(lock.release());
    assert_eq!(child.wait(Some(Duration::from_secs(5))).unwrap().map(|s| s.code()), Some(-9));
}

/// A try (deadline: now) takes a dead owner's lock over at once, as the channel's non-blocking
/// paths need: the first try used to give up after setting the waiters bit.
#[test]
fn a_single_try_takes_over_a_dead_owners_lock() {
    let seg = Segment::create("test-lock", 4096).unwrap();
    // A thread id above any pid_max: no such thread exists.
    let dead: u32 = 0x3fff_fff0;
    seg.u64_at(8).store((dead as u64) << 32, Ordering::SeqCst);
    seg.u32_at(0).store(dead, Ordering::SeqCst);
    let lock = RobustLock::new(seg.u32_at(0), seg.u64_at(8));
    assert_eq!(lock.acquire(Owner::thread(), Some(Instant::now()), WhenHeld::Refuse, None), Ok(Acquired::OwnerDied));
    assert!(lock.release());
}

fn libc_sigkill() -> i32 {
    9
}

#[test]
fn garbage_in_shared_memory_is_a_protocol_error() {
    let chan = Channel::create(ChannelConfig::default()).unwrap();
    let ring = chan.ring(0);
    ring.try_send(0, b"hello").unwrap();
    // Frame header of the first message: ring data starts after two 256-byte headers.
    chan.segment().write(512, &[0xff; 8]);
    assert!(matches!(ring.try_recv(&mut [0u8; 64]), Err(ChannelError::Protocol(_))));

    let chan = Channel::create(ChannelConfig::default()).unwrap();
    let ring = chan.ring(0);
    chan.segment().u64_at(256).store(u64::MAX / 3, Ordering::SeqCst); // tail far past head
    assert!(matches!(ring.try_recv(&mut [0u8; 64]), Err(ChannelError::Protocol(_))));
    assert!(matches!(ring.try_send(0, b"x"), Err(ChannelError::Protocol(_))));

    // A header that claims another capacity is refused on attach.
    let chan = Channel::create(ChannelConfig::default()).unwrap();
    chan.segment().u64_at(16).store(12345, Ordering::SeqCst);
    let seg = Segment::attach_dup(chan.segment().fd(), 0).unwrap();
    assert!(matches!(Channel::attach(seg), Err(OpenError::Protocol(_))));
}

#[test]
fn full_empty_closed() {
    let chan = Channel::create(ChannelConfig { maxsize: 2, ..Default::default() }).unwrap();
    let ring = chan.ring(0);
    let mut buf = [0u8; 16];
    assert_eq!(ring.try_recv(&mut buf), Ok(TryRecv::Empty));
    assert_eq!(ring.try_send(0, b"a"), Ok(multiproc_core::TrySend::Sent));
    assert_eq!(ring.try_send(0, b"b"), Ok(multiproc_core::TrySend::Sent));
    assert_eq!(ring.try_send(0, b"c"), Ok(multiproc_core::TrySend::Full));
    assert_eq!(ring.len(), 2);
    ring.close();
    assert_eq!(ring.try_send(0, b"d"), Err(ChannelError::Closed));
    assert_eq!(ring.try_recv(&mut buf[..0]), Ok(TryRecv::NeedsBuffer(1)));
    assert_eq!(ring.try_recv(&mut buf), Ok(TryRecv::Done(0, 1)));
    assert_eq!(&buf[..1], b"a");
    assert_eq!(ring.try_recv(&mut buf), Ok(TryRecv::Done(0, 1)));
    assert_eq!(&buf[..1], b"b");
    assert_eq!(ring.try_recv(&mut buf), Err(ChannelError::Closed));
    let timed = chan.ring(0).recv(Some(Instant::now() + Duration::from_millis(50)), &mut || true);
    assert_eq!(timed, Err(ChannelError::Closed));
}

#[test]
fn a_timed_receive_times_out() {
    let chan = Channel::create(ChannelConfig::default()).unwrap();
    let start = Instant::now();
    let r = chan.ring(0).recv(Some(Instant::now() + Duration::from_millis(80)), &mut || true);
    assert_eq!(r, Err(ChannelError::TimedOut));
    assert!(start.elapsed() >= Duration::from_millis(80));
}

/// Processes that only ever try the lock (deadline: now), as the channel's non-blocking paths
/// do, contend for it: the dead-owner check each failed try makes must never take a live owner's
/// lock, even in the instant between a new owner's taking the word and writing its record.
#[test]
fn trying_processes_never_share_a_lock() {
    fn contend(seg: &Segment, rounds: u32) {
        let lock = RobustLock::new(seg.u32_at(0), seg.u64_at(8));
        let (inside, overlaps) = (seg.u32_at(64), seg.u32_at(68));
        for _ in 0..rounds {
            if lock.acquire(Owner::thread(), Some(Instant::now()), WhenHeld::Refuse, None).is_ok() {
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                // Hold it a moment, as a copy would, so that others' tries run out and check.
                let until = Instant::now() + Duration::from_micros(2);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(lock.release());
            }
        }
    }
    if let Some((role, fd)) = role() {
        assert_eq!(role, "contender");
        contend(&Segment::attach(multiproc_core::sys::fd::adopt(fd).unwrap(), 4096).unwrap(), 50_000);
        return;
    }
    let seg = Segment::create("test-contended-lock", 4096).unwrap();
    let children: Vec<_> =
        (0..3).map(|_| spawn_role("trying_processes_never_share_a_lock", "contender", seg.fd())).collect();
    contend(&seg, 50_000);
    for child in children {
        assert_eq!(child.wait(Some(Duration::from_secs(60))).unwrap().map(|s| s.code()), Some(0));
    }
    assert_eq!(seg.u32_at(68).load(Ordering::SeqCst), 0, "a lock was held by two processes at once");
}
