//! The four calls made for every message (`channelTrySend`, `channelSendSync`, `channelTryRecv`,
//! `channelRecvSync`) as plain Node-API callbacks. napi-rs's generated conversions open a borrow
//! scope per call and allocate for it, which here cost more than the work itself; these read
//! their few arguments with direct Node-API calls instead. Everything else stays generated.

use std::ffi::{c_void, CString};
use std::ptr;

use multiproc_core::sys::fd;
use multiproc_core::{ChannelError, Ring, TrySend};
use napi::bindgen_prelude::External;
use napi::sys;

use crate::channel::{receipt, ChannelState};
use crate::deadline;
use crate::error::channel_code;

type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// Adds the callbacks to `exports`, beside the generated ones.
///
/// # Safety
/// `env` must be the environment of the current call and `exports` an object of it.
pub(crate) unsafe fn install(env: sys::napi_env, exports: sys::napi_value) -> napi::Result<()> {
    let functions: [(&str, Callback); 4] = [
        ("channelTrySend", try_send),
        ("channelSendSync", send_sync),
        ("channelTryRecv", try_recv),
        ("channelRecvSync", recv_sync),
    ];
    for (name, callback) in functions {
        let cname = CString::new(name).expect("no NUL in names");
        let mut function = ptr::null_mut();
        // SAFETY: `env` and `exports` come from module registration; `cname` outlives both calls.
        let status = unsafe {
            sys::napi_create_function(
                env,
                cname.as_ptr(),
                name.len() as isize,
                Some(callback),
                ptr::null_mut(),
                &mut function,
            )
        };
        if status == sys::Status::napi_ok {
            // SAFETY: as above; `function` was just created in this env.
            unsafe { sys::napi_set_named_property(env, exports, cname.as_ptr(), function) };
        }
    }
    Ok(())
}

/// Arguments of one call, read lazily; any failure becomes a thrown `ERR_INVALID_ARG`.
struct Args {
    env: sys::napi_env,
    argv: [sys::napi_value; 6],
}

struct Thrown;

impl Args {
    /// # Safety
    /// `env` and `info` must be those of a callback invocation in progress.
    unsafe fn new(env: sys::napi_env, info: sys::napi_callback_info) -> Args {
        let mut argc = 6usize;
        let mut argv = [ptr::null_mut(); 6];
        // SAFETY: `argv` has room for `argc` values; missing arguments are filled with undefined.
        unsafe { sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut()) };
        Args { env, argv }
    }

    fn check(&self, status: sys::napi_status, what: &str) -> Result<(), Thrown> {
        if status == sys::Status::napi_ok {
            Ok(())
        } else {
            Err(self.throw("ERR_INVALID_ARG", &format!("{what}: wrong type")))
        }
    }

    fn channel(&self) -> Result<&'static ChannelState, Thrown> {
        let mut data: *mut c_void = ptr::null_mut();
        // SAFETY: argv[0] is a value of this call; `data` is a valid out-pointer.
        self.check(unsafe { sys::napi_get_value_external(self.env, self.argv[0], &mut data) }, "channel")?;
        // SAFETY: napi-rs checks that `data` is a live External<ChannelState> it created before
        // dereferencing it; the object lives as long as the JavaScript value we were passed.
        unsafe { External::<ChannelState>::inner_from_raw(data) }
            .ok_or_else(|| self.throw("ERR_INVALID_ARG", "not a channel"))
    }

    /// Ring `argv[1]` of the channel in `argv[0]`.
    fn ring(&self) -> Result<&'static Ring, Thrown> {
        let ch = self.channel()?;
        ch.ring(self.u32(1)?).map_err(|_| self.throw("ERR_INVALID_ARG", "no such ring"))
    }

    fn u32(&self, i: usize) -> Result<u32, Thrown> {
        let mut v = 0u32;
        // SAFETY: argv[i] is a value of this call; `v` is a valid out-pointer.
        self.check(unsafe { sys::napi_get_value_uint32(self.env, self.argv[i], &mut v) }, "number")?;
        Ok(v)
    }

    fn f64(&self, i: usize) -> Result<f64, Thrown> {
        let mut v = 0f64;
        // SAFETY: as in `u32`.
        self.check(unsafe { sys::napi_get_value_double(self.env, self.argv[i], &mut v) }, "number")?;
        Ok(v)
    }

    fn i32(&self, i: usize) -> Result<i32, Thrown> {
        let mut v = 0i32;
        // SAFETY: as in `u32`.
        self.check(unsafe { sys::napi_get_value_int32(self.env, self.argv[i], &mut v) }, "number")?;
        Ok(v)
    }

    fn bool(&self, i: usize) -> Result<bool, Thrown> {
        let mut v = false;
        // SAFETY: as in `u32`.
        self.check(unsafe { sys::napi_get_value_bool(self.env, self.argv[i], &mut v) }, "boolean")?;
        Ok(v)
    }

    /// The bytes of a Buffer or Uint8Array argument. They stay valid during the call: nothing
    /// here runs JavaScript, so the garbage collector cannot move or free them meanwhile.
    fn bytes(&self, i: usize) -> Result<&'static mut [u8], Thrown> {
        let mut data: *mut c_void = ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: argv[i] is a value of this call; both out-pointers are valid.
        self.check(unsafe { sys::napi_get_buffer_info(self.env, self.argv[i], &mut data, &mut len) }, "buffer")?;
        if len == 0 || data.is_null() {
            return Ok(&mut []);
        }
        // SAFETY: Node-API reports `len` bytes at `data`, owned by the buffer for this call.
        Ok(unsafe { std::slice::from_raw_parts_mut(data as *mut u8, len) })
    }

    fn throw(&self, code: &str, msg: &str) -> Thrown {
        let code = CString::new(code).unwrap_or_default();
        let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
        // SAFETY: NUL-terminated code and message.
        unsafe { sys::napi_throw_error(self.env, code.as_ptr(), text.as_ptr()) };
        Thrown
    }

    fn fail(&self, e: ChannelError) -> Thrown {
        self.throw(channel_code(&e), &e.to_string())
    }

    fn number(&self, v: f64) -> sys::napi_value {
        let mut out = ptr::null_mut();
        // SAFETY: `out` is a valid out-pointer.
        unsafe { sys::napi_create_double(self.env, v, &mut out) };
        out
    }

    fn undefined(&self) -> sys::napi_value {
        let mut out = ptr::null_mut();
        // SAFETY: `out` is a valid out-pointer.
        unsafe { sys::napi_get_undefined(self.env, &mut out) };
        out
    }
}

/// Runs a callback body; an error was thrown already, and a panic (a bug) becomes a thrown
/// error too instead of unwinding into Node.
fn finish(a: &Args, body: impl FnOnce() -> Result<sys::napi_value, Thrown>) -> sys::napi_value {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(r) => r.unwrap_or(ptr::null_mut()),
        Err(_) => {
            a.throw("ERR_INTERNAL", "multiproc's native code failed (a bug: please report it)");
            ptr::null_mut()
        }
    }
}

/// `channelTrySend(chan, ring, kind, bytes, whole)`: 0 sent, 1 no room, 2 streaming.
unsafe extern "C" fn try_send(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node-API with this invocation's env and info.
    let a = unsafe { Args::new(env, info) };
    finish(&a, || {
        let ring = a.ring()?;
        let (kind, data, whole) = (a.u32(2)? as u8, a.bytes(3)?, a.bool(4)?);
        let sent = if whole { ring.try_send_whole(kind, data) } else { ring.try_send(kind, data) };
        let status = match sent.map_err(|e| a.fail(e))? {
            TrySend::Sent => 0.0,
            TrySend::Full => 1.0,
            TrySend::Streaming => 2.0,
        };
        Ok(a.number(status))
    })
}

/// `channelSendSync(chan, ring, kind, bytes, timeoutMs, peerFd)`.
unsafe extern "C" fn send_sync(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node-API with this invocation's env and info.
    let a = unsafe { Args::new(env, info) };
    finish(&a, || {
        let ring = a.ring()?;
        let (kind, data, until, peer) = (a.u32(2)? as u8, a.bytes(3)?, deadline(a.f64(4)?), a.i32(5)?);
        let mut alive = || peer < 0 || !fd::peer_hung_up(peer);
        ring.send(kind, data, until, &mut alive).map_err(|e| a.fail(e))?;
        Ok(a.undefined())
    })
}

/// `channelTryRecv(chan, ring, dst)`: see `receipt`.
unsafe extern "C" fn try_recv(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node-API with this invocation's env and info.
    let a = unsafe { Args::new(env, info) };
    finish(&a, || {
        let ring = a.ring()?;
        let r = ring.try_recv(a.bytes(2)?).map_err(|e| a.fail(e))?;
        Ok(a.number(receipt(r)))
    })
}

/// `channelRecvSync(chan, ring, dst, timeoutMs, peerFd)`: see `receipt`.
unsafe extern "C" fn recv_sync(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by Node-API with this invocation's env and info.
    let a = unsafe { Args::new(env, info) };
    finish(&a, || {
        let ring = a.ring()?;
        let (dst, until, peer) = (a.bytes(2)?, deadline(a.f64(3)?), a.i32(4)?);
        let mut alive = || peer < 0 || !fd::peer_hung_up(peer);
        let r = ring.recv_into(dst, until, &mut alive).map_err(|e| a.fail(e))?;
        Ok(a.number(receipt(r)))
    })
}
