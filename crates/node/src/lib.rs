//! Thin napi bindings over `multiproc-core`, one module a concept: channels (Queue, Pipe), the
//! per-message fast paths, synchronisation objects, named shared memory, children, descriptors
//! and the process waker. No policy lives here: every error becomes a JS error with a stable
//! `code` (see `error`) that `src/errors.ts` turns into the matching exported error class.

use std::time::{Duration, Instant};

use napi::bindgen_prelude::Object;
use napi::{Env, JsValue};
use napi_derive::napi;

use crate::error::{napi_error, Result};

pub mod channel;
mod child;
pub mod descriptors;
pub mod error;
mod fast;
pub mod fork;
pub mod fork_loop;
pub mod shared_memory;
pub mod sync;
mod view;
pub mod waker;

pub(crate) fn deadline(timeout_ms: f64) -> Option<Instant> {
    (timeout_ms >= 0.0 && timeout_ms.is_finite()).then(|| Instant::now() + Duration::from_secs_f64(timeout_ms / 1000.0))
}

/// Adds the per-message calls (see `fast.rs`) to `target`, the binding's exports object.
#[napi]
pub fn install_fast_paths(env: Env, target: Object) -> Result<()> {
    // SAFETY: `env` is this call's environment and `target` a live object of it.
    unsafe { fast::install(env.raw(), target.raw()) }.map_err(napi_error)
}
