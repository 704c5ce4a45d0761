//! Glue for named shared memory (`SharedMemory`) and for the anonymous data segments behind
//! `Value` and the shared arrays: one `External` per mapping and a view of its bytes.

use std::sync::Arc;

use multiproc_core::shared_memory::{self, SharedMemoryError};
use multiproc_core::sys::fd;
use multiproc_core::Segment;
use napi::bindgen_prelude::{ArrayBuffer, External};
use napi::Env;
use napi_derive::napi;

use crate::error::{attach_error, fail, napi_error, os_error, segment_error, Error, Result};

type Seg = External<Arc<Segment>>;

fn shm_error(e: SharedMemoryError) -> Error {
    let code = match e {
        SharedMemoryError::InvalidName(_) => "ERR_INVALID_ARG_VALUE",
        SharedMemoryError::InvalidSize(_) => "ERR_OUT_OF_RANGE",
        SharedMemoryError::AlreadyExists(_) => "ERR_EXISTS",
        SharedMemoryError::NotFound(_) => "ERR_NOT_FOUND",
        SharedMemoryError::PermissionDenied(_) => "ERR_PERMISSION",
        SharedMemoryError::Empty(_) => "ERR_INVALID_ARG_VALUE",
        SharedMemoryError::Os(io) => return os_error(io),
    };
    fail(code, e)
}

/// Creates the named segment `name` (no leading `/`) of `size` bytes.
#[napi]
pub fn shm_create(name: String, size: f64) -> Result<Seg> {
    if !(size.is_finite() && size >= 0.0 && size.fract() == 0.0) {
        return Err(fail("ERR_OUT_OF_RANGE", format!("a shared memory size must be a positive integer, not {size}")));
    }
    Ok(External::new(Arc::new(shared_memory::create(&name, size as usize).map_err(shm_error)?)))
}

/// Attaches to the existing named segment `name`.
#[napi]
pub fn shm_attach(name: String) -> Result<Seg> {
    Ok(External::new(Arc::new(shared_memory::attach(&name).map_err(shm_error)?)))
}

#[napi]
pub fn shm_unlink(name: String) -> Result<()> {
    shared_memory::unlink(&name).map_err(shm_error)
}

/// A new anonymous (memfd) data segment of `size` bytes.
#[napi]
pub fn segment_create(size: f64) -> Result<Seg> {
    Segment::create("multiproc-data", size as usize).map(|s| External::new(Arc::new(s))).map_err(segment_error)
}

/// Maps the segment behind a received descriptor, taking ownership of it.
#[napi]
pub fn segment_adopt(raw: i32) -> Result<Seg> {
    let owned = fd::adopt(raw).map_err(os_error)?;
    Segment::attach(owned, 1).map(|s| External::new(Arc::new(s))).map_err(attach_error)
}

#[napi]
pub fn segment_fd(s: &Seg) -> i32 {
    s.fd()
}

#[napi]
pub fn segment_size(s: &Seg) -> f64 {
    s.len() as f64
}

/// The segment's bytes as an `ArrayBuffer`. Create one per segment.
#[napi]
pub fn segment_view<'e>(env: &'e Env, s: &Seg) -> Result<ArrayBuffer<'e>> {
    crate::view::array_buffer(env, s)
}

/// Detaches a view (every typed array over it becomes empty) so the mapping can go.
#[napi]
pub fn view_detach(buf: ArrayBuffer) -> Result<()> {
    buf.detach().map_err(napi_error)
}

/// A pipe `[read, write]` (close-on-exec) for the resource tracker; JavaScript owns both.
#[napi]
pub fn tracker_pipe() -> Result<Vec<i32>> {
    use std::os::fd::IntoRawFd;
    let (r, w) = fd::pipe().map_err(os_error)?;
    Ok(vec![r.into_raw_fd(), w.into_raw_fd()])
}
