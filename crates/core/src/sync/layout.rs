//! The words of a synchronisation segment that other code reads and writes directly (the
//! JavaScript fast paths: an uncontended acquire or release is one compare-and-swap there), and
//! the spin policy those paths follow. Each offset is defined once, in its object's module; this
//! table only names them, and the binding exports it so that TypeScript never writes a number of
//! its own.

use super::{barrier, condition, event, mutex, semaphore, BODY, SYNC_SIZE};
use crate::{lock, wait};

/// `(name, value)`. An `object.word` name is the word's byte offset in the segment; a name
/// ending in `Mask` or `Bit` is a bit pattern, one ending in `Ns` or `Ms` a duration; `size` and
/// `body` are the segment's size and where an object's own words start.
pub const LAYOUT: &[(&str, u64)] = &[
    ("size", SYNC_SIZE as u64),
    ("body", BODY as u64),
    ("lock.state", mutex::STATE as u64),
    ("lock.count", mutex::COUNT as u64),
    ("lock.record", mutex::RECORD as u64),
    ("lock.waitersBit", lock::WAITERS as u64),
    ("lock.idMask", lock::ID_MASK as u64),
    ("lock.ownerCheckMs", lock::OWNER_CHECK_EVERY.as_millis() as u64),
    ("semaphore.value", semaphore::VALUE as u64),
    ("semaphore.sleepers", semaphore::SLEEPERS as u64),
    ("semaphore.max", semaphore::MAX as u64),
    ("event.flag", event::FLAG as u64),
    ("event.sleepers", event::SLEEPERS as u64),
    ("condition.seq", condition::SEQ as u64),
    ("barrier.gen", barrier::GEN as u64),
    ("spin.startNs", wait::INITIAL_SPIN.as_nanos() as u64),
    ("spin.maxNs", wait::MAX_SPIN.as_nanos() as u64),
    ("spin.busyNs", wait::BUSY.as_nanos() as u64),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_aligned_and_inside_the_segment() {
        for &(name, value) in LAYOUT {
            let is_offset = !["Mask", "Bit", "Ns", "Ms"].iter().any(|s| name.ends_with(s)) && name.contains('.');
            if is_offset {
                let width = if name.ends_with(".record") { 8 } else { 4 };
                assert_eq!(value % width, 0, "{name} is not {width}-aligned");
                assert!(value >= BODY as u64 && value + width <= SYNC_SIZE as u64, "{name} is outside the body");
            }
        }
        let mut names: Vec<_> = LAYOUT.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), LAYOUT.len(), "a name is listed twice");
    }
}
