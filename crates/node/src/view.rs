//! JavaScript views of shared memory: an `ArrayBuffer` whose bytes are a segment's mapping.
//! The buffer keeps the segment mapped until it is collected or detached.

use std::sync::Arc;

use multiproc_core::Segment;
use napi::bindgen_prelude::ArrayBuffer;
use napi::Env;

use crate::error::{napi_error, Result};

/// An `ArrayBuffer` over all of `seg`. Create at most one per mapping: V8 tracks backing
/// stores by address.
pub(crate) fn array_buffer<'e>(env: &'e Env, seg: &Arc<Segment>) -> Result<ArrayBuffer<'e>> {
    let len = seg.len();
    let ptr = seg.as_ptr_range(0, len);
    let keep = seg.clone();
    // SAFETY: `ptr`/`len` are the whole mapping of `seg`, valid and writable until `keep`, moved
    // into the finaliser, is dropped; V8 calls the finaliser only once no view can reach it.
    let buf = unsafe { ArrayBuffer::from_external(env, ptr, len, keep, |_, seg| drop(seg)) }.map_err(napi_error)?;
    // A runtime that forbids external buffers gets a copy instead: useless for shared memory.
    if !std::ptr::eq(buf.as_ptr(), ptr) {
        return Err(crate::error::fail(
            "ERR_SHARED_MEMORY",
            "this JavaScript runtime does not allow views of external memory (external ArrayBuffers)",
        ));
    }
    Ok(buf)
}
