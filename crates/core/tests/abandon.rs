//! Large messages whose producer dies or gives up mid-stream, and consumers that give up
//! mid-read: the abandoned message is discarded and the ring goes on for everyone else. The
//! cross-process tests re-run this binary as the other processes (see `common`).

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc_core::{Channel, ChannelConfig, ChannelError, Ring, Segment, TryRecv, TrySend};

mod common;
use common::{role, spawn_role};

const SIGKILL: i32 = 9;
const RING: usize = 64 * 1024;
const HUGE: usize = 1 << 20;
/// Where ring 0's header starts in a channel segment, and its abandonment record there.
const RING0: usize = 256;
const ABANDONED: usize = RING0 + 68;
const ABANDON_START: usize = RING0 + 72;
const ABANDON_END: usize = RING0 + 80;

fn attach(fd: RawFd) -> Channel {
    let seg = Segment::attach(multiproc_core::sys::fd::adopt(fd).unwrap(), 0).unwrap();
    Channel::attach(seg).unwrap()
}

/// Message `i` of producer `p`: its numbers first, then a filler, `len` bytes in all.
fn message(p: u8, i: u32, len: usize) -> Vec<u8> {
    let mut v = vec![p ^ (i as u8); len.max(5)];
    v[0] = p;
    v[1..5].copy_from_slice(&i.to_le_bytes());
    v
}

fn parse(m: &[u8]) -> (u8, u32) {
    (m[0], u32::from_le_bytes(m[1..5].try_into().unwrap()))
}

/// The length of message `i` of the producers that carry on: mostly small, every 50th larger
/// than the ring (so streams start again after the abandoned one).
fn length(i: u32) -> usize {
    if i % 50 == 49 {
        3 * RING + i as usize
    } else {
        16 + (i as usize * 7919) % 2000
    }
}

fn within() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(30))
}

/// Waits (with a watchdog) until `cond` holds.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "watchdog: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The roles of the cross-process tests: the streamer that is killed, and a producer that
/// carries on.
fn play(role: &str, fd: RawFd) {
    let chan = attach(fd);
    let ring = chan.ring(0);
    match role {
        "streamer" => {
            for i in 0..10 {
                ring.send(0, &message(1, i, 100), None, &mut || true).unwrap();
            }
            // Nobody reads it whole: this blocks mid-stream until the process is killed.
            ring.send(0, &message(1, 10, HUGE), None, &mut || true).unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "carry-on" => {
            for i in 0..500 {
                ring.send(0, &message(2, i, length(i)), within(), &mut || true).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Receives until both `producers` have sent `each` messages, checking every one arrives once,
/// in order per producer, and that none of the killed streamer's large message does.
fn receive_all(ring: &Ring, producers: &[u8], each: u32) {
    let mut next = [0u32; 256];
    while producers.iter().any(|&p| next[p as usize] < each) {
        let (_, m) = ring.recv(within(), &mut || true).unwrap();
        let (p, i) = parse(&m);
        assert!(producers.contains(&p), "a message of producer {p} ({} bytes)", m.len());
        assert_eq!(i, next[p as usize], "producer {p}: message {i} out of order");
        assert!(m == message(p, i, length(i)), "producer {p}: message {i} is damaged ({} bytes)", m.len());
        next[p as usize] += 1;
    }
    assert_eq!(ring.len(), 0, "messages left or miscounted");
}

/// The killed streamer's ten small messages, then its large one started (the ring is full).
fn start_streamer(test: &str, chan: &Channel, ring: &Ring) -> multiproc_core::Child {
    let child = spawn_role(test, "streamer", chan.segment().fd());
    for i in 0..10 {
        let (_, m) = ring.recv(within(), &mut || true).unwrap();
        assert_eq!(parse(&m), (1, i));
    }
    // Its large message has begun (counted in) and filled the ring: the streamer waits for
    // space, mid-message. (The producer lock alone can be held before the header is in.)
    until("the large message filling the ring", || ring.len() == 1 && !ring.can_send(RING));
    child
}

fn kill(child: multiproc_core::Child) {
    child.signal(SIGKILL).unwrap();
    assert_eq!(child.wait(Some(Duration::from_secs(10))).unwrap().map(|s| s.code()), Some(-SIGKILL));
}

#[test]
fn a_producer_killed_mid_stream_with_no_reader_is_skipped_and_the_ring_goes_on() {
    if let Some((role, fd)) = role() {
        return play(&role, fd);
    }
    let test = "a_producer_killed_mid_stream_with_no_reader_is_skipped_and_the_ring_goes_on";
    let chan = Channel::create(ChannelConfig { capacity: RING, ..Default::default() }).unwrap();
    let ring = chan.ring(0);
    let streamer = start_streamer(test, &chan, &ring);
    kill(streamer);
    // Another producer takes the dead one's lock over, gives its message up, and carries on;
    // this process sends too, and reads everything.
    let other = spawn_role(test, "carry-on", chan.segment().fd());
    let mine = std::thread::spawn({
        let ring = chan.ring(0);
        move || {
            for i in 0..500 {
                ring.send(0, &message(3, i, length(i)), within(), &mut || true).unwrap();
            }
        }
    });
    receive_all(&ring, &[2, 3], 500);
    mine.join().unwrap();
    assert_eq!(other.wait(Some(Duration::from_secs(30))).unwrap().map(|s| s.code()), Some(0));
}

#[test]
fn a_producer_killed_while_its_message_is_being_read_is_given_up_by_the_reader() {
    if let Some((role, fd)) = role() {
        return play(&role, fd);
    }
    let test = "a_producer_killed_while_its_message_is_being_read_is_given_up_by_the_reader";
    let chan = Channel::create(ChannelConfig { capacity: RING, ..Default::default() }).unwrap();
    let ring = chan.ring(0);
    let streamer = start_streamer(test, &chan, &ring);
    // Start reading the large message, then kill its producer while we are inside it.
    let mut buf = vec![0u8; HUGE];
    let mut r = ring.try_recv(&mut buf).unwrap();
    assert_eq!(r, TryRecv::Streaming);
    kill(streamer);
    // The reader finds the ring empty and the producer dead: it gives the message up itself.
    until("the reader giving the dead producer's message up", || {
        r = ring.try_recv(&mut buf).unwrap();
        r != TryRecv::Streaming
    });
    assert_eq!(r, TryRecv::Empty);
    assert!(!ring.is_receiving());
    assert_eq!(ring.len(), 0);
    let other = spawn_role(test, "carry-on", chan.segment().fd());
    receive_all(&ring, &[2], 500);
    assert_eq!(other.wait(Some(Duration::from_secs(30))).unwrap().map(|s| s.code()), Some(0));
}

#[test]
fn a_consumer_killed_mid_read_loses_only_that_message() {
    if let Some((role, fd)) = role() {
        assert_eq!(role, "reader");
        let chan = attach(fd);
        let ring = chan.ring(0);
        let mut buf = vec![0u8; HUGE];
        until("the large message", || ring.try_recv(&mut buf).unwrap() == TryRecv::Streaming);
        // Inside the message: say so, then stall there until killed.
        chan.ring(1).send(0, b"inside", within(), &mut || true).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let chan = Channel::create(ChannelConfig { rings: 2, capacity: RING, ..Default::default() }).unwrap();
    let ring = chan.ring(0);
    let reader = spawn_role("a_consumer_killed_mid_read_loses_only_that_message", "reader", chan.segment().fd());
    let producer = std::thread::spawn({
        let ring = chan.ring(0);
        move || {
            ring.send(0, &message(1, 0, HUGE), within(), &mut || true).unwrap();
            for i in 1..200 {
                ring.send(0, &message(1, i, length(i)), within(), &mut || true).unwrap();
            }
        }
    });
    assert_eq!(chan.ring(1).recv(within(), &mut || true).unwrap().1, b"inside");
    kill(reader);
    // This process takes the dead reader's place: the rest of its message is skipped.
    for i in 1..200 {
        let (_, m) = ring.recv(within(), &mut || true).unwrap();
        assert_eq!(parse(&m), (1, i));
        assert!(m == message(1, i, length(i)));
    }
    producer.join().unwrap();
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_timed_send_of_a_large_message_ends_on_time_and_is_discarded() {
    let chan = Channel::create(ChannelConfig { capacity: 4096, ..Default::default() }).unwrap();
    let (tx, rx) = (chan.ring(0), chan.ring(0));
    let start = Instant::now();
    let r = tx.send(0, &vec![7u8; 64 * 1024], Some(start + Duration::from_millis(100)), &mut || true);
    assert_eq!(r, Err(ChannelError::TimedOut));
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(!tx.is_sending());
    // The ring goes on: the abandoned message is skipped, later ones (large too) arrive.
    let big = message(4, 1, 20_000);
    let sender = std::thread::spawn({
        let (tx, big) = (chan.ring(0), big.clone());
        move || {
            tx.send(0, b"after", within(), &mut || true).unwrap();
            tx.send(0, &big, within(), &mut || true).unwrap();
        }
    });
    assert_eq!(rx.recv(within(), &mut || true).unwrap().1, b"after");
    assert!(rx.recv(within(), &mut || true).unwrap().1 == big);
    sender.join().unwrap();
    assert_eq!(rx.len(), 0);
}

#[test]
fn a_timed_receive_inside_a_large_message_gives_it_up() {
    let chan = Channel::create(ChannelConfig { capacity: 4096, ..Default::default() }).unwrap();
    let (tx, rx) = (chan.ring(0), chan.ring(0));
    let big = vec![9u8; 64 * 1024];
    assert_eq!(tx.try_send(0, &big), Ok(TrySend::Streaming));
    // The producer stalls: a timed receive ends on time, mid-message.
    let start = Instant::now();
    let r = rx.recv(Some(start + Duration::from_millis(100)), &mut || true);
    assert_eq!(r, Err(ChannelError::TimedOut));
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(!rx.is_receiving());
    // The producer finishes; the next receive skips the rest and gets the next message.
    let receiver = std::thread::spawn({
        let rx = chan.ring(0);
        move || rx.recv(within(), &mut || true)
    });
    until("the large message finishing", || tx.continue_send(&big).unwrap());
    tx.send(0, b"next", within(), &mut || true).unwrap();
    assert_eq!(receiver.join().unwrap().unwrap().1, b"next");
    assert_eq!(tx.len(), 0);
}

#[test]
fn abandoning_a_send_while_it_is_being_read() {
    for private in [false, true] {
        let config = ChannelConfig { capacity: 4096, ..Default::default() };
        let chan = if private { Channel::create_private(config) } else { Channel::create(config) }.unwrap();
        let (tx, rx) = (chan.ring(0), chan.ring(0));
        let big = vec![1u8; 20_000];
        let mut buf = vec![0u8; 20_000];
        assert_eq!(tx.try_send(0, &big), Ok(TrySend::Streaming));
        assert_eq!(rx.try_recv(&mut buf), Ok(TryRecv::Streaming));
        assert_eq!(tx.continue_send(&big), Ok(false));
        assert_eq!(rx.try_recv(&mut buf), Ok(TryRecv::Streaming));
        assert_eq!(tx.abandon_send(), Ok(true));
        assert_eq!(tx.abandon_send(), Ok(false));
        // A reader inside it learns that it is lost.
        assert_eq!(rx.try_recv(&mut buf), Ok(TryRecv::Empty));
        assert!(!rx.is_receiving());
        assert_eq!(rx.len(), 0);
        assert_eq!(tx.try_send(0, b"small"), Ok(TrySend::Sent));
        assert_eq!(rx.try_recv(&mut buf), Ok(TryRecv::Done(0, 5)));
        assert_eq!(tx.try_send(0, &big), Ok(TrySend::Streaming));
        assert!(!rx.abandon_recv());
    }
}

#[test]
fn while_an_abandoned_message_is_pending_streams_wait_and_small_messages_flow() {
    let chan = Channel::create_private(ChannelConfig { capacity: 4096, ..Default::default() }).unwrap();
    let (tx, rx) = (chan.ring(0), chan.ring(0));
    let big = vec![2u8; 10_000];
    let (mut buf, mut small) = (vec![0u8; big.len()], [0u8; 16]);
    assert_eq!(tx.try_send(0, &big), Ok(TrySend::Streaming));
    assert_eq!(rx.try_recv(&mut buf), Ok(TryRecv::Streaming));
    assert_eq!(tx.abandon_send(), Ok(true));
    // The reader has not yet passed it: a second stream would need a second record.
    assert!(!tx.can_send(big.len()));
    assert_eq!(tx.try_send(0, &big), Ok(TrySend::Full));
    assert!(tx.can_send(10));
    assert_eq!(tx.try_send(0, b"a"), Ok(TrySend::Sent));
    assert_eq!(rx.try_recv(&mut buf), Ok(TryRecv::Empty));
    assert_eq!(rx.try_recv(&mut small), Ok(TryRecv::Done(0, 1)));
    assert_eq!(rx.len(), 0);
    // A reader that never started it skips it whole; a handle dropped mid-stream gives it up.
    for drop_it in [false, true] {
        let tx = chan.ring(0);
        assert_eq!(tx.try_send(0, &big), Ok(TrySend::Streaming));
        if drop_it {
            drop(tx);
        } else {
            assert_eq!(tx.abandon_send(), Ok(true));
        }
        assert_eq!(rx.try_recv(&mut small), Ok(TryRecv::Empty));
        assert_eq!(rx.len(), 0);
    }
    assert_eq!(tx.try_send(0, b"b"), Ok(TrySend::Sent));
    assert_eq!(rx.try_recv(&mut small), Ok(TryRecv::Done(0, 1)));
    assert_eq!(&small[..1], b"b");
    assert_eq!(tx.try_send(0, &big), Ok(TrySend::Streaming));
}

#[test]
fn a_hostile_abandonment_record_is_a_protocol_error() {
    let hostile: [(u64, u64); 5] = [(0, 1), (0, u64::MAX), (4, 100_000), (1 << 40, (1 << 40) + 64), (0, 8)];
    for (start, end) in hostile {
        let chan = Channel::create_private(ChannelConfig { capacity: 4096, ..Default::default() }).unwrap();
        let ring = chan.ring(0);
        assert_eq!(ring.try_send(0, b"hello"), Ok(TrySend::Sent));
        let seg = chan.segment();
        seg.u64_at(ABANDON_START).store(start, Ordering::SeqCst);
        seg.u64_at(ABANDON_END).store(end, Ordering::SeqCst);
        seg.u32_at(ABANDONED).store(1, Ordering::SeqCst);
        let r = ring.try_recv(&mut [0u8; 64]);
        assert!(matches!(r, Err(ChannelError::Protocol(_))), "record {start}..{end}: {r:?}");
        let timed = ring.recv(Some(Instant::now() + Duration::from_millis(20)), &mut || true);
        assert!(matches!(timed, Err(ChannelError::Protocol(_))), "record {start}..{end}: {timed:?}");
    }
}
