//! A sequence of ring operations read from the input: sends (whole or streamed), receives into
//! buffers of the size asked for, abandoned sends and receives, the simulated death of a
//! producer or consumer mid-stream, and bytes written anywhere over the ring's header and data.
//!
//! Until the first write of garbage, a model checks every message received: it is the next one
//! sent that was not lost (abandoned), intact, and no operation fails with a protocol error.
//! After garbage, anything but a panic, a hang or an out-of-bounds access is allowed.
#![no_main]

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use multiproc_core::{Channel, ChannelConfig, ChannelError, Ring, Segment, TryRecv, TrySend};

const CAP: usize = 4096;
/// Ring 0 starts after the segment header; its header, then its data.
const RING0: usize = 256;
const REGION: usize = 256 + CAP;
const TAIL: usize = RING0;
const HEAD: usize = RING0 + 128;
const PLOCK: usize = RING0 + 16;
const CLOCK: usize = RING0 + 144;
const CSTREAM_START: usize = RING0 + 176;
/// A thread id that no process has (above any `pid_max`): a lock naming it has a dead owner.
const DEAD: u32 = 0x3fff_fff0;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
}

struct Sent {
    start: u64,
    kind: u8,
    data: Vec<u8>,
    lost: bool,
}

struct Fuzz {
    seg: std::sync::Arc<Segment>,
    chan: Channel,
    tx: Ring,
    rx: Ring,
    /// Handles of "dead" parties: dropped only at the end, so they never release anything.
    dead: Vec<Ring>,
    model: VecDeque<Sent>,
    next_id: u32,
    /// The message `tx` is streaming: its bytes, and its place in the model.
    streaming: Option<(Vec<u8>, u64)>,
    /// The start of the message `rx` is inside, if it is reading one it began itself.
    reading: Option<u64>,
    rbuf: Vec<u8>,
    corrupt: bool,
}

impl Fuzz {
    fn pos(&self, off: usize) -> u64 {
        self.seg.u64_at(off).load(Ordering::SeqCst)
    }

    fn lose(&mut self, start: u64) {
        if let Some(m) = self.model.iter_mut().find(|m| m.start == start) {
            m.lost = true;
        }
    }

    /// Errors are fine once the ring holds garbage; before, only the expected ones are.
    fn check<T: std::fmt::Debug>(&self, what: &str, r: &Result<T, ChannelError>) {
        if self.corrupt {
            return;
        }
        if let Err(e) = r {
            panic!("{what} on a clean ring: {e:?}");
        }
    }

    fn send(&mut self, input: &mut Input, whole: bool) -> Option<()> {
        let len = (input.u16()? as usize % (3 * CAP)).max(4);
        let kind = input.byte()?;
        let id = self.next_id;
        self.next_id += 1;
        let mut data: Vec<u8> = (0..len).map(|i| (i as u32 ^ id.wrapping_mul(31)) as u8).collect();
        data[..4].copy_from_slice(&id.to_le_bytes());
        let start = self.pos(TAIL);
        let busy = self.tx.is_sending();
        let r = if whole { self.tx.try_send_whole(kind, &data) } else { self.tx.try_send(kind, &data) };
        if busy {
            // (A whole send of a message larger than the ring is refused before that is asked.)
            let refused = r == Err(ChannelError::Busy) || (whole && r == Ok(TrySend::Full));
            assert!(self.corrupt || refused, "a second send while streaming: {r:?}");
            return Some(());
        }
        self.check("send", &r);
        match r {
            Ok(TrySend::Sent) => self.model.push_back(Sent { start, kind, data, lost: false }),
            Ok(TrySend::Streaming) => {
                assert!(self.corrupt || !whole, "a whole send streamed");
                self.model.push_back(Sent { start, kind, data: data.clone(), lost: false });
                self.streaming = Some((data, start));
            }
            _ => {}
        }
        Some(())
    }

    fn continue_send(&mut self) {
        let Some((data, _)) = &self.streaming else { return };
        let r = self.tx.continue_send(data);
        self.check("continue_send", &r);
        if r == Ok(true) {
            self.streaming = None;
        }
    }

    fn recv(&mut self) {
        let r = self.rx.try_recv(&mut self.rbuf);
        self.check("recv", &r);
        match r {
            Ok(TryRecv::Done(kind, len)) => {
                self.reading = None;
                if self.corrupt {
                    return;
                }
                while self.model.front().is_some_and(|m| m.lost) {
                    self.model.pop_front();
                }
                let m = self.model.pop_front().expect("a message received that was never sent");
                assert_eq!((kind, len), (m.kind, m.data.len()), "the wrong message");
                assert!(self.rbuf[..len] == m.data[..], "a damaged message");
            }
            Ok(TryRecv::NeedsBuffer(n)) => {
                // Garbage may ask for up to the message limit: never allocate more than a few rings.
                if n <= 4 * CAP {
                    self.rbuf.resize(n, 0);
                }
            }
            // Where the message being read starts, as the consumer recorded it for a successor.
            Ok(TryRecv::Streaming) => self.reading = Some(self.pos(CSTREAM_START)),
            Ok(TryRecv::Empty) => self.reading = None,
            Err(_) => {}
        }
    }

    fn abandon_send(&mut self) {
        let r = self.tx.abandon_send();
        self.check("abandon_send", &r);
        assert!(self.corrupt || r == Ok(self.streaming.is_some()));
        if let Some((_, start)) = self.streaming.take() {
            self.lose(start);
        }
    }

    fn abandon_recv(&mut self) {
        let was = self.rx.is_receiving();
        assert_eq!(self.rx.abandon_recv(), was);
        if let Some(start) = self.reading.take() {
            self.lose(start);
        }
    }

    /// The producer dies where it stands: its lock names a thread that is gone.
    fn kill_producer(&mut self) {
        let tx = std::mem::replace(&mut self.tx, self.chan.ring(0));
        if tx.is_sending() {
            self.seg.u64_at(PLOCK + 8).store((DEAD as u64) << 32, Ordering::SeqCst);
            self.seg.u32_at(PLOCK).store(DEAD, Ordering::SeqCst);
            if let Some((_, start)) = self.streaming.take() {
                self.lose(start);
            }
        }
        self.dead.push(tx);
    }

    fn kill_consumer(&mut self) {
        let rx = std::mem::replace(&mut self.rx, self.chan.ring(0));
        if rx.is_receiving() {
            self.seg.u64_at(CLOCK + 8).store((DEAD as u64) << 32, Ordering::SeqCst);
            self.seg.u32_at(CLOCK).store(DEAD, Ordering::SeqCst);
            if let Some(start) = self.reading.take() {
                self.lose(start);
            }
        }
        self.dead.push(rx);
    }

    fn scribble(&mut self, input: &mut Input) -> Option<()> {
        let offset = input.u16()? as usize % REGION;
        let len = (input.byte()? as usize % 16).min(REGION - offset);
        let mut bytes = [0u8; 16];
        for b in &mut bytes[..len] {
            *b = input.byte()?;
        }
        self.seg.write(RING0 + offset, &bytes[..len]);
        self.corrupt = true;
        Some(())
    }
}

fuzz_target!(|data: &[u8]| {
    let chan = Channel::create_private(ChannelConfig { capacity: CAP, ..Default::default() }).unwrap();
    let mut f = Fuzz {
        seg: chan.segment().clone(),
        tx: chan.ring(0),
        rx: chan.ring(0),
        chan,
        dead: Vec::new(),
        model: VecDeque::new(),
        next_id: 0,
        streaming: None,
        reading: None,
        rbuf: vec![0u8; 64],
        corrupt: false,
    };
    let mut input = Input(data);
    // FUZZ_TRACE=1 prints each operation and the model, to read a crash by.
    let trace = std::env::var_os("FUZZ_TRACE").is_some();
    for _ in 0..256 {
        let Some(op) = input.byte() else { break };
        if trace {
            let (head, tail) = (f.pos(HEAD), f.pos(TAIL));
            eprintln!(
                "op {} head {head} tail {tail} model {:?}",
                op % 10,
                f.model.iter().map(|m| (m.start, m.data.len(), m.lost)).collect::<Vec<_>>()
            );
        }
        let more = match op % 10 {
            0 | 1 => f.send(&mut input, false),
            2 => f.send(&mut input, true),
            9 => f.scribble(&mut input),
            other => {
                match (other, op & 0x10 == 0) {
                    (3 | 4, _) => f.continue_send(),
                    (5 | 6, _) => f.recv(),
                    (7, true) => f.abandon_send(),
                    (7, false) => f.abandon_recv(),
                    (_, true) => f.kill_producer(),
                    (_, false) => f.kill_consumer(),
                }
                Some(())
            }
        };
        if more.is_none() {
            break;
        }
        if !f.corrupt {
            let (head, tail) = (f.pos(HEAD), f.pos(TAIL));
            assert!(tail.wrapping_sub(head) <= CAP as u64, "head {head}, tail {tail}");
        }
    }
    // Whatever state it is left in, what is committed can be drained without a panic.
    for _ in 0..64 {
        f.recv();
        f.continue_send();
    }
    let dead = std::mem::take(&mut f.dead);
    drop(f);
    drop(dead);
});
