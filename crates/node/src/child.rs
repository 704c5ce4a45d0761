//! Spawning and watching child processes.

use multiproc_core::{spawn, Child, SpawnOptions};
use napi_derive::napi;

use crate::error::{os_error, spawn_error, Result};

#[napi(object)]
pub struct SpawnSpec {
    pub program: String,
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs: the child's whole environment.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub inherit: Vec<i32>,
    pub daemon: bool,
}

/// A started child process. Reaped by `tryWait`/`waitSync` once it exits.
#[napi]
pub struct NativeChild {
    child: Child,
}

#[napi]
impl NativeChild {
    #[napi(factory)]
    pub fn spawn(spec: SpawnSpec) -> Result<NativeChild> {
        let env =
            spec.env.iter().filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))).collect();
        let opts = SpawnOptions {
            program: spec.program,
            args: spec.args,
            env: Some(env),
            cwd: spec.cwd,
            inherit: spec.inherit,
            daemon: spec.daemon,
        };
        spawn(&opts).map(|child| NativeChild { child }).map_err(spawn_error)
    }

    #[napi(getter)]
    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// The exit code (negative signal number when killed), or `null` while it runs.
    #[napi]
    pub fn try_wait(&self) -> Result<Option<i32>> {
        Ok(self.child.try_wait().map_err(os_error)?.map(|s| s.code()))
    }

    /// Blocks up to `timeout_ms` (negative: no limit) for the child to exit.
    #[napi]
    pub fn wait_sync(&self, timeout_ms: f64) -> Result<Option<i32>> {
        let timeout = (timeout_ms >= 0.0).then(|| std::time::Duration::from_secs_f64(timeout_ms / 1000.0));
        Ok(self.child.wait(timeout).map_err(os_error)?.map(|s| s.code()))
    }

    #[napi]
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.child.signal(signal).map_err(os_error)
    }
}
