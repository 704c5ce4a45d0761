//! multiproc's core: shared-memory channels, futex waits, process-owned locks, synchronisation
//! primitives, named shared memory and child processes, for Linux. Knows nothing of JavaScript; `crates/node` binds it.

pub mod forkserver;
pub mod lock;
pub mod ring;
pub mod segment;
pub mod shared_memory;
pub mod spawn;
pub mod sync;
pub mod sys;
pub mod wait;
pub mod waker;

pub use ring::{Channel, ChannelConfig, ChannelError, OpenError, Ring, TryRecv, TrySend};
pub use segment::{Segment, SegmentError};
pub use spawn::{spawn, Child, SpawnOptions};
pub use sys::process::ExitStatus;
