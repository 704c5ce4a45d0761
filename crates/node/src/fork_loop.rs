//! A forked child's event loop must never run dry the way Node's own does: when `uv_run`
//! returns, Node drains its platform's worker tasks, waiting for threads that only the fork
//! server has, and hangs. So the child keeps its loop alive with a handle of its own and
//! watches, before each poll, whether anything else is alive; when nothing is, it calls
//! JavaScript, which emits `'beforeExit'` (stage 1) and, if the loop is still dry the next time,
//! `'exit'` and `_exit` (stage 2) — what Node does, without the drain.

use std::cell::{Cell, RefCell};
use std::os::raw::{c_int, c_void};

use napi::bindgen_prelude::Function;
use napi::{Env, JsValue};
use napi_derive::napi;

type Loop = napi::sys::uv_loop_s;

extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_async_init(event_loop: *mut Loop, handle: *mut c_void, cb: Option<extern "C" fn(*mut c_void)>) -> c_int;
    fn uv_prepare_init(event_loop: *mut Loop, handle: *mut c_void) -> c_int;
    fn uv_prepare_start(handle: *mut c_void, cb: Option<extern "C" fn(*mut c_void)>) -> c_int;
    fn uv_ref(handle: *mut c_void);
    fn uv_unref(handle: *mut c_void);
    fn uv_loop_alive(event_loop: *const Loop) -> c_int;
}

/// libuv's handle kinds (uv.h, `uv_handle_type`).
const UV_ASYNC: c_int = 1;
const UV_PREPARE: c_int = 9;

struct Watch {
    event_loop: *mut Loop,
    keepalive: *mut c_void,
    tsfn: napi::sys::napi_threadsafe_function,
    /// 0: alive; 1: ran dry once ('beforeExit'); 2: dry again ('exit').
    stage: Cell<u32>,
    /// A call to JavaScript is queued and has not asked for its stage yet.
    queued: Cell<bool>,
}

thread_local! {
    static WATCH: RefCell<Option<Watch>> = const { RefCell::new(None) };
}

use crate::error::Result;

fn fail(msg: &'static str) -> crate::error::Error {
    crate::error::fail("ERR_FORKSERVER", msg)
}

/// A handle's memory for the process's lifetime (libuv handles must not move or be freed
/// while they are open, and these stay open until `_exit`).
fn handle_memory(kind: c_int) -> *mut c_void {
    // SAFETY: uv_handle_size only returns the size of a handle kind.
    let size = unsafe { uv_handle_size(kind) };
    Box::leak(vec![0u64; size.div_ceil(8)].into_boxed_slice()).as_mut_ptr().cast()
}

extern "C" fn on_keepalive(_handle: *mut c_void) {}

extern "C" fn before_poll(_handle: *mut c_void) {
    WATCH.with(|w| {
        let w = w.borrow();
        let Some(w) = w.as_ref() else { return };
        // SAFETY: both handles were initialised on this loop and live until the process ends;
        // this runs on the loop's thread.
        let alive = unsafe {
            uv_unref(w.keepalive);
            let alive = uv_loop_alive(w.event_loop) != 0;
            uv_ref(w.keepalive);
            alive
        };
        if alive {
            w.stage.set(0);
            return;
        }
        if w.queued.get() {
            return;
        }
        w.stage.set(if w.stage.get() == 0 { 1 } else { 2 });
        w.queued.set(true);
        // SAFETY: the function was created on this thread and never released.
        unsafe {
            napi::sys::napi_call_threadsafe_function(
                w.tsfn,
                std::ptr::null_mut(),
                napi::sys::ThreadsafeFunctionCallMode::nonblocking,
            )
        };
    });
}

/// Starts watching this (forked) process's loop; `on_dry` is called with no arguments when it
/// runs dry and asks `forkedLoopStage()` what to do.
#[napi]
pub fn watch_forked_loop(env: Env, on_dry: Function<(), ()>) -> Result<()> {
    if WATCH.with(|w| w.borrow().is_some()) {
        return Err(fail("the loop is already watched"));
    }
    let mut event_loop = std::ptr::null_mut();
    // SAFETY: `env` is this call's environment; the out-pointer is valid.
    if unsafe { napi::sys::napi_get_uv_event_loop(env.raw(), &mut event_loop) } != napi::sys::Status::napi_ok {
        return Err(fail("the event loop could not be reached"));
    }
    let mut name = std::ptr::null_mut();
    let label = "multiproc forked loop";
    // SAFETY: creates a JavaScript string from a valid UTF-8 buffer of the stated length.
    unsafe { napi::sys::napi_create_string_utf8(env.raw(), label.as_ptr().cast(), label.len() as isize, &mut name) };
    let mut tsfn = std::ptr::null_mut();
    // SAFETY: `on_dry` is a live function of this environment; with no call_js_cb, Node calls
    // it with no arguments. The function is never released: it lives as long as the process.
    let status = unsafe {
        napi::sys::napi_create_threadsafe_function(
            env.raw(),
            on_dry.raw(),
            std::ptr::null_mut(),
            name,
            0,
            1,
            std::ptr::null_mut(),
            None,
            std::ptr::null_mut(),
            None,
            &mut tsfn,
        )
    };
    if status != napi::sys::Status::napi_ok {
        return Err(fail("the loop's callback could not be created"));
    }
    // SAFETY: unref'd, the function's own wake-up does not keep the loop alive.
    unsafe { napi::sys::napi_unref_threadsafe_function(env.raw(), tsfn) };
    let keepalive = handle_memory(UV_ASYNC);
    let prepare = handle_memory(UV_PREPARE);
    // SAFETY: both handles have the size libuv asked for and are never moved or freed; the
    // loop is this thread's. The async handle stays referenced (it keeps the loop alive); the
    // prepare handle is unreferenced (it only watches).
    let rc = unsafe {
        let a = uv_async_init(event_loop, keepalive, Some(on_keepalive));
        let p = uv_prepare_init(event_loop, prepare);
        if a == 0 && p == 0 {
            uv_unref(prepare);
            uv_prepare_start(prepare, Some(before_poll))
        } else {
            a.min(p)
        }
    };
    if rc != 0 {
        return Err(fail("the loop's watch could not be started"));
    }
    WATCH.with(|w| {
        *w.borrow_mut() = Some(Watch { event_loop, keepalive, tsfn, stage: Cell::new(0), queued: Cell::new(false) })
    });
    Ok(())
}

/// What the loop watch asks of JavaScript now: 1 emit `'beforeExit'`, 2 exit, 0 nothing.
#[napi]
pub fn forked_loop_stage() -> u32 {
    WATCH.with(|w| {
        w.borrow().as_ref().map_or(0, |w| {
            w.queued.set(false);
            w.stage.get()
        })
    })
}
