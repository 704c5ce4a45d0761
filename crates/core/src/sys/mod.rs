//! Raw OS calls, one file per concern. Everything above this module is safe code
//! (apart from the shared-memory accessors in `segment`).

pub mod fd;
pub mod fork;
pub mod futex;
pub mod memfd;
pub mod process;
pub mod shm;
