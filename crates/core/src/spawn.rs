//! Starting child processes that inherit chosen descriptors, and watching and reaping them.
//!
//! Children are forked from the calling thread (spawn from the main thread: the kernel's
//! parent-death signal follows the thread that forked). A daemon child asks for SIGKILL when its
//! parent dies and, since the parent may already be gone by then, checks right after.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sys::process::{self, ExitStatus};

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    pub program: String,
    pub args: Vec<String>,
    /// The whole environment of the child; `None` inherits this process's.
    pub env: Option<Vec<(String, String)>>,
    pub cwd: Option<String>,
    /// Descriptors the child inherits under the same numbers. Standard input is `/dev/null`
    /// unless 0 is listed.
    pub inherit: Vec<RawFd>,
    /// Dies with its parent (SIGKILL), even when the parent is killed.
    pub daemon: bool,
}

/// A started child. Not reaped until [`Child::try_wait`] or [`Child::wait`] sees it exit.
pub struct Child {
    pid: i32,
    /// `None` where the kernel (or a tool like valgrind) has no pidfds: then the pid is used,
    /// which is safe as long as we have not reaped it.
    pidfd: Option<OwnedFd>,
    status: Mutex<Option<ExitStatus>>,
}

pub fn spawn(opts: &SpawnOptions) -> io::Result<Child> {
    let mut cmd = Command::new(&opts.program);
    cmd.args(&opts.args);
    if let Some(env) = &opts.env {
        cmd.env_clear();
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
    }
    if let Some(cwd) = &opts.cwd {
        cmd.current_dir(cwd);
    }
    // As Python's children do, read from /dev/null unless told to share standard input.
    if !opts.inherit.contains(&0) {
        cmd.stdin(std::process::Stdio::null());
    }
    let inherit = opts.inherit.clone();
    let daemon = opts.daemon;
    let parent = process::current_pid();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (fcntl, prctl, getppid, raise); `inherit` was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &inherit {
                crate::sys::fd::set_cloexec(fd, false)?;
            }
            if daemon {
                process::set_parent_death_signal(libc::SIGKILL)?;
                if process::parent_pid() != parent {
                    process::raise(libc::SIGKILL);
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    // The child cannot be reaped by anyone else before we do, so its pid is still ours here.
    let pidfd = match process::pidfd_open(pid) {
        Ok(fd) => Some(fd),
        // No pidfd here (a kernel before 5.3, or a seccomp profile that refuses the call, as
        // older container runtimes do): the child is watched by polling its pid instead.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => None,
        Err(e) => {
            // Out of descriptors, say: nothing may be left behind.
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    drop(child);
    Ok(Child { pid, pidfd, status: Mutex::new(None) })
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A descriptor that becomes readable when the child exits (-1 without pidfd support).
    pub fn pidfd(&self) -> RawFd {
        self.pidfd.as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }

    /// The exit status if the child has exited (reaping it the first time).
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        let mut status = self.status.lock().unwrap();
        if status.is_none() {
            *status = match &self.pidfd {
                Some(fd) => process::try_reap(fd)?,
                None => process::try_reap_pid(self.pid)?,
            };
        }
        Ok(*status)
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<ExitStatus>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            let slice = match deadline {
                None => 100,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    (d - now).as_millis().clamp(1, 100) as i32
                }
            };
            match &self.pidfd {
                Some(fd) => {
                    process::pidfd_exited(fd, slice);
                }
                None => std::thread::sleep(Duration::from_millis(slice.min(5) as u64)),
            }
        }
    }

    /// Sends a signal, unless the child has already been reaped.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        if self.status.lock().unwrap().is_some() {
            return Ok(());
        }
        match &self.pidfd {
            Some(fd) => process::pidfd_signal(fd, signal),
            None => process::kill(self.pid, signal),
        }
    }
}
