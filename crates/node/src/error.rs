//! Errors as data. Every failure the binding reports is a JS `Error` whose `code` is the
//! package's stable code (Node-API sets it from the error's status, which here is the code
//! itself) and whose message is the plain text; where the OS gave an errno, its name travels as
//! the error's `cause`, an `Error` whose message is that name (`EMFILE`), because Node-API gives a
//! Rust error no other field. `src/errors.ts` maps the code to the package's class with a switch.

use multiproc_core::{ChannelError, OpenError, SegmentError};

/// A stable error code (`ERR_…`), the status of the binding's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub &'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// What the binding's functions return.
pub type Error = napi::Error<Code>;
pub type Result<T> = std::result::Result<T, Error>;

/// A failure with `code` and a message.
pub fn fail(code: &'static str, msg: impl std::fmt::Display) -> Error {
    Error::new(Code(code), msg.to_string())
}

/// A failure the OS reported with `errno`: its name rides along as the cause.
fn fail_errno(code: &'static str, errno: &'static str, msg: impl std::fmt::Display) -> Error {
    let mut e = fail(code, msg);
    e.set_cause(napi::Error::new(napi::Status::GenericFailure, errno.to_string()));
    e
}

/// An error of Node-API itself (a value of the wrong type reached the binding).
pub fn napi_error(e: napi::Error) -> Error {
    fail("ERR_INVALID_ARG", e.reason)
}

/// The code for an errno: running out of a resource has codes of its own, with the errno's
/// name; any other errno takes `fallback`, and its name too when it has one.
pub fn errno_code(errno: i32, fallback: &'static str) -> (&'static str, Option<&'static str>) {
    match errno {
        libc::EMFILE => ("ERR_NO_DESCRIPTORS", Some("EMFILE")),
        libc::ENFILE => ("ERR_NO_DESCRIPTORS", Some("ENFILE")),
        libc::ENOMEM => ("ERR_NO_MEMORY", Some("ENOMEM")),
        libc::ENOSPC => ("ERR_NO_SPACE", Some("ENOSPC")),
        libc::EAGAIN => (fallback, Some("EAGAIN")),
        libc::EACCES => (fallback, Some("EACCES")),
        libc::EPERM => (fallback, Some("EPERM")),
        libc::ENOENT => (fallback, Some("ENOENT")),
        libc::EEXIST => (fallback, Some("EEXIST")),
        libc::EINVAL => (fallback, Some("EINVAL")),
        libc::EBADF => (fallback, Some("EBADF")),
        _ => (fallback, None),
    }
}

fn with_errno(errno: Option<i32>, fallback: &'static str, msg: impl std::fmt::Display) -> Error {
    match errno.map(|n| errno_code(n, fallback)) {
        Some((code, Some(name))) => fail_errno(code, name, msg),
        Some((code, None)) => fail(code, msg),
        None => fail(fallback, msg),
    }
}

/// The stable code of each channel error, by cause.
pub fn channel_code(e: &ChannelError) -> &'static str {
    match e {
        ChannelError::Closed => "ERR_CLOSED",
        ChannelError::Protocol(_) => "ERR_PROTOCOL",
        ChannelError::TooLarge { .. } => "ERR_MESSAGE_TOO_LARGE",
        ChannelError::TimedOut => "ERR_TIMEOUT",
        ChannelError::Busy => "ERR_INVALID_STATE",
    }
}

pub fn channel_error(e: ChannelError) -> Error {
    fail(channel_code(&e), &e)
}

/// A channel that could not be made (a bad configuration, the system's refusal) or mapped
/// (foreign memory).
pub fn open_error(e: OpenError) -> Error {
    match e {
        OpenError::InvalidConfig(m) => fail("ERR_OUT_OF_RANGE", m),
        OpenError::Segment(e) => segment_error(e),
        e @ OpenError::Protocol(_) => fail("ERR_PROTOCOL", e),
    }
}

/// A failed fork: `EAGAIN` there means the process limit was reached.
pub fn spawn_error(e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EAGAIN) {
        return fail_errno("ERR_NO_PROCESSES", "EAGAIN", e);
    }
    os_error(e)
}

/// A segment that could not be mapped: foreign memory is a protocol error, the system's refusal not.
pub fn attach_error(e: SegmentError) -> Error {
    match e {
        SegmentError::Os(_) => segment_error(e),
        e => fail("ERR_PROTOCOL", e),
    }
}

/// A segment that could not be made or mapped.
pub fn segment_error(e: SegmentError) -> Error {
    let errno = match &e {
        SegmentError::Os(io) => io.raw_os_error(),
        _ => None,
    };
    with_errno(errno, "ERR_SHARED_MEMORY", e)
}

pub fn os_error(e: std::io::Error) -> Error {
    with_errno(e.raw_os_error(), "ERR_OS", e)
}
