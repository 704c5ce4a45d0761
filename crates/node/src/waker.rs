//! The process waker: the thread that watches armed shared words, and the doorbell pipe the
//! event loop reads.

use multiproc_core::waker::Waker;
use napi_derive::napi;

use crate::error::{os_error, Result};

/// The read end of the process waker's doorbell pipe.
#[napi]
pub fn waker_doorbell() -> Result<i32> {
    Ok(Waker::get().map_err(os_error)?.doorbell())
}

/// Keys of armed waits that fired since the last call.
#[napi]
pub fn waker_take_fired() -> Result<Vec<f64>> {
    Ok(Waker::get().map_err(os_error)?.take_fired().into_iter().map(|k| k as f64).collect())
}

#[napi]
pub fn waker_disarm(key: f64) -> Result<()> {
    Waker::get().map_err(os_error)?.disarm(key as u64);
    Ok(())
}
