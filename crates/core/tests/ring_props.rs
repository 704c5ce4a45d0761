//! Property tests: any sequence of message sizes, through rings of any capacity, arrives intact
//! and in order, with a consumer on another thread (streaming when messages outgrow the ring).
//! Each test runs on both kinds of segment: shared memory, and the in-process twin.

use std::time::{Duration, Instant};

use multiproc_core::{Channel, ChannelConfig};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn messages_arrive_intact_and_in_order(sizes in prop::collection::vec(0usize..20_000, 1..60), cap_pow in 12u32..16, private in any::<bool>()) {
        let config = ChannelConfig { capacity: 1 << cap_pow, ..Default::default() };
        let chan = if private { Channel::create_private(config) } else { Channel::create(config) }.unwrap();
        let tx = chan.ring(0);
        let rx = chan.ring(0);
        let expected: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect()).collect();
        let to_send = expected.clone();
        let producer = std::thread::spawn(move || {
            for (i, m) in to_send.iter().enumerate() {
                tx.send(i as u8, m, None, &mut || true).unwrap();
            }
        });
        let deadline = Some(Instant::now() + Duration::from_secs(20));
        for (i, m) in expected.iter().enumerate() {
            let (kind, data) = rx.recv(deadline, &mut || true).unwrap();
            prop_assert_eq!(kind, i as u8);
            prop_assert_eq!(&data, m);
        }
        producer.join().unwrap();
        prop_assert_eq!(rx.len(), 0);
    }
}

/// Four producer threads and two consumer threads on separate handles of one ring: every message
/// arrives exactly once and in order per producer.
#[test]
fn many_producers_many_consumers_exactly_once() {
    mpmc(Channel::create(ChannelConfig { capacity: 8192, ..Default::default() }).unwrap());
}

#[test]
fn many_producers_many_consumers_exactly_once_in_process() {
    mpmc(Channel::create_private(ChannelConfig { capacity: 8192, ..Default::default() }).unwrap());
}

fn mpmc(chan: Channel) {
    const PRODUCERS: u64 = 4;
    const EACH: u64 = 20_000;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let ring = chan.ring(0);
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let mut m = [0u8; 16];
                    m[..8].copy_from_slice(&p.to_le_bytes());
                    m[8..].copy_from_slice(&i.to_le_bytes());
                    ring.send(0, &m, None, &mut || true).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let ring = chan.ring(0);
            std::thread::spawn(move || {
                let mut last = vec![-1i64; PRODUCERS as usize];
                let mut got = Vec::new();
                let deadline = Some(Instant::now() + Duration::from_secs(60));
                loop {
                    let (kind, m) = ring.recv(deadline, &mut || true).unwrap();
                    if kind == 1 {
                        return got;
                    }
                    let p = u64::from_le_bytes(m[..8].try_into().unwrap()) as usize;
                    let i = u64::from_le_bytes(m[8..].try_into().unwrap()) as i64;
                    assert!(i > last[p], "producer {p}: {i} after {}", last[p]);
                    last[p] = i;
                    got.push((p, i));
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let stop = chan.ring(0);
    stop.send(1, b"", None, &mut || true).unwrap();
    stop.send(1, b"", None, &mut || true).unwrap();
    let mut all: Vec<(usize, i64)> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
    all.sort();
    let expected: Vec<(usize, i64)> =
        (0..PRODUCERS as usize).flat_map(|p| (0..EACH as i64).map(move |i| (p, i))).collect();
    assert_eq!(all, expected);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Garbage written anywhere in a channel's headers or data, between operations, never makes
    /// an operation panic, hang or read out of bounds: it succeeds, reports no room or nothing, or
    /// fails with an error.
    #[test]
    fn garbage_anywhere_is_survived(
        hits in prop::collection::vec((0usize..(512 + 4096), prop::collection::vec(any::<u8>(), 1..16)), 1..8),
        ops in prop::collection::vec((any::<bool>(), 0usize..6000), 1..40),
    ) {
        let chan = Channel::create_private(ChannelConfig { capacity: 4096, ..Default::default() }).unwrap();
        let ring = chan.ring(0);
        let seg = chan.segment().clone();
        let mut buf = vec![0u8; 8192];
        for (i, (send, len)) in ops.iter().enumerate() {
            if let Some((offset, bytes)) = hits.get(i) {
                let end = (*offset + bytes.len()).min(seg.len());
                seg.write(*offset, &bytes[..end - offset]);
            }
            if *send {
                let _ = ring.try_send(1, &vec![7u8; *len]);
            } else {
                let _ = ring.try_recv(&mut buf);
            }
        }
    }
}
