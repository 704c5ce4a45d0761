//! Property tests: any sequence of message sizes, through rings of any capacity, arrives intact
//! and in order, with a consumer on another thread (streaming when messages outgrow the ring).

use std::time::{Duration, Instant};

use multiproc_core::{Channel, ChannelConfig};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn messages_arrive_intact_and_in_order(sizes in prop::collection::vec(0usize..20_000, 1..60), cap_pow in 12u32..16) {
        let chan = Channel::create(ChannelConfig { capacity: 1 << cap_pow, ..Default::default() }).unwrap();
        let tx = chan.ring(0);
        let rx = chan.ring(0);
        let expected: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect()).collect();
        let to_send = expected.clone();
        let producer = std::thread::spawn(move || {
            for (i, m) in to_send.iter().enumerate() {
                tx.send(i as u8, m, None).unwrap();
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
