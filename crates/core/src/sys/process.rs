//! Process-level calls: pidfds, reaping one child, signals, liveness and identity.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// Python's convention: the exit code, or minus the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => -s,
        }
    }
}

/// A descriptor that refers to one process (Linux ≥ 5.3), close-on-exec.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or fails.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// Sends `signal` to the process behind `pidfd` (no pid-reuse race).
pub fn pidfd_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a null siginfo sends a plain signal.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0u32)
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        // Already exited (a zombie or reaped): not an error for terminate()/kill().
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// True when the process behind `pidfd` has exited (readable pidfd).
pub fn pidfd_exited(pidfd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    rc > 0
}

/// Reaps the child behind `pidfd` if it has exited; `None` while it runs.
pub fn try_reap(pidfd: &OwnedFd) -> io::Result<Option<ExitStatus>> {
    // SAFETY: `info` is a valid out-pointer for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on one pidfd (P_PIDFD = 3) writes into `info` only.
    let rc = unsafe {
        libc::waitid(3 as libc::idtype_t, pidfd.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after a successful waitid, si_pid is valid to read (0 when nothing was reaped).
    let pid = unsafe { info.si_pid() };
    if pid == 0 {
        return Ok(None);
    }
    // SAFETY: waitid filled a SIGCHLD siginfo, whose si_status is valid.
    let status = unsafe { info.si_status() };
    Ok(Some(if info.si_code == libc::CLD_EXITED { ExitStatus::Exited(status) } else { ExitStatus::Signaled(status) }))
}

/// Reaps child `pid` if it has exited (for systems, or tools such as valgrind, without pidfds).
pub fn try_reap_pid(pid: i32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    // SAFETY: waitpid on one child pid writes the status word only.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc == 0 {
        return Ok(None);
    }
    Ok(Some(if libc::WIFEXITED(status) {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    } else {
        ExitStatus::Signaled(libc::WTERMSIG(status))
    }))
}

/// Sends `signal` to `pid` (for systems without pidfds; the pid is an unreaped child of ours).
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill only delivers a signal.
    if unsafe { libc::kill(pid, signal) } < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
}

/// Forks this process has come out of as the child, counted by a `pthread_atfork` handler.
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Changes in a child forked off this process (a fork server's): what is cached about "this
/// process" or "this thread" (its id and start time, the waker thread) is valid only for the
/// generation that computed it. The first call installs the counting handler.
pub fn fork_generation() -> u64 {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic, safe in a forked child.
        unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    });
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn current_pid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// The calling thread's id (the pid, on a process's main thread).
pub fn current_tid() -> i32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() }
}

pub fn parent_pid() -> i32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() }
}

/// The start time of a process in clock ticks since boot, from `/proc/PID/stat`; `None` if it
/// does not exist or has already exited (zombie). Together with the pid it names one process.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" || state == "x" {
        return None;
    }
    // Field 22 overall is starttime; `rest` starts at field 3 (state).
    fields.nth(18)?.parse().ok()
}

/// What `/proc/ID/stat` says of a process or thread.
#[derive(Debug, PartialEq, Eq)]
pub enum Task {
    /// Running (or sleeping, stopped, …), started at this many clock ticks after boot.
    Live(u64),
    /// Exited, not yet reaped.
    Zombie,
    /// No entry could be read: gone, or hidden from us (`hidepid`, some tools' own threads).
    Unreadable,
}

pub fn task(id: i32) -> Task {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{id}/stat")) else { return Task::Unreadable };
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let Some(close) = stat.rfind(')') else { return Task::Unreadable };
    let mut fields = stat[close + 1..].split_whitespace();
    match fields.next() {
        Some("Z" | "X" | "x") => Task::Zombie,
        Some(_) => fields.nth(18).and_then(|f| f.parse().ok()).map_or(Task::Unreadable, Task::Live),
        None => Task::Unreadable,
    }
}

/// Whether any process or thread has id `id` (zombies included), by a null signal.
pub fn exists(id: i32) -> bool {
    // SAFETY: signal 0 only checks that the target exists and may be signalled.
    let rc = unsafe { libc::kill(id, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// True while the process `pid` runs and is the one that started at `start` (0: unknown).
pub fn is_alive(pid: i32, start: u64) -> bool {
    match start_time(pid) {
        None => false,
        Some(t) => start == 0 || t == start,
    }
}

/// Makes the kernel send `signal` to the calling process when its parent thread exits.
/// Async-signal-safe: usable between fork and exec.
pub fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only changes a process attribute.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sends `signal` to the calling process. Async-signal-safe.
pub fn raise(signal: i32) {
    // SAFETY: raise only delivers a signal.
    unsafe { libc::raise(signal) };
}
