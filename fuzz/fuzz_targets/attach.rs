//! A channel segment built from arbitrary bytes: attaching must validate its header, and every
//! ring it accepts must survive receives, sends, streams and abandonment with an error at worst.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc_core::{Channel, Segment, TryRecv, TrySend};

/// Room for the smallest duplex channel (segment header, two ring headers, two 4 KiB rings);
/// the input is written at the start and the rest stays zero, so inputs stay short.
const MIN: usize = 256 + 2 * (256 + 4096);
/// Never allocate more than this for a message a hostile header asks for.
const MAX_BUF: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let seg = Segment::private(data.len().clamp(MIN, 1 << 16)).unwrap();
    seg.write(0, &data[..data.len().min(seg.len())]);
    let Ok(chan) = Channel::attach(seg) else { return };
    let config = chan.config();
    for index in 0..config.rings {
        let ring = chan.ring(index);
        let _ = (ring.len(), ring.is_full(), ring.can_recv(), ring.can_send(10), ring.can_send(3 * config.capacity));
        if ring.arm_recv().is_some() {
            ring.disarm_recv();
        }
        let mut buf = vec![0u8; 64];
        for _ in 0..32 {
            match ring.try_recv(&mut buf) {
                Ok(TryRecv::NeedsBuffer(n)) if n <= MAX_BUF => buf.resize(n, 0),
                Ok(TryRecv::Done(..) | TryRecv::Empty | TryRecv::Streaming) => {}
                _ => break,
            }
        }
        ring.abandon_recv();
        for len in [0, 100, config.capacity - 8, config.capacity + 1] {
            let msg = vec![0x5a; len.min(MAX_BUF)];
            if ring.try_send(1, &msg) == Ok(TrySend::Streaming) {
                for _ in 0..4 {
                    let _ = ring.continue_send(&msg);
                    let _ = ring.try_recv(&mut buf);
                }
                let _ = ring.abandon_send();
            }
        }
        for _ in 0..8 {
            let _ = ring.try_recv(&mut buf);
        }
    }
});
