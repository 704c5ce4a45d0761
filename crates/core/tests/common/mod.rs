//! What the cross-process tests share: this test binary re-runs itself as the other process
//! (`MPROC_ROLE` says which part to play), inheriting descriptors named in the environment.
// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use std::os::fd::RawFd;

use multiproc_core::{spawn, SpawnOptions};

/// The role this process plays and its first inherited descriptor, in a re-run; `None` in the parent.
pub fn role() -> Option<(String, RawFd)> {
    let role = std::env::var("MPROC_ROLE").ok()?;
    let fd = std::env::var("MPROC_FD").ok()?.parse().ok()?;
    Some((role, fd))
}

/// Every descriptor this re-run inherited, in the order given to [`spawn_with`].
pub fn inherited_fds() -> Vec<RawFd> {
    std::env::var("MPROC_FDS").unwrap().split(',').map(|f| f.parse().unwrap()).collect()
}

/// Starts this test binary again, running only `test` in the role `role`, with `fds` inherited.
pub fn spawn_with(test: &str, role: &str, fds: &[RawFd]) -> multiproc_core::Child {
    let exe = std::env::current_exe().unwrap();
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.push(("MPROC_ROLE".into(), role.into()));
    env.push(("MPROC_FD".into(), fds[0].to_string()));
    env.push(("MPROC_FDS".into(), fds.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(",")));
    spawn(&SpawnOptions {
        program: exe.to_string_lossy().into_owned(),
        args: vec![test.into(), "--exact".into(), "--test-threads=1".into()],
        env: Some(env),
        inherit: fds.to_vec(),
        daemon: true,
        ..Default::default()
    })
    .unwrap()
}

/// [`spawn_with`] one descriptor.
pub fn spawn_role(test: &str, role: &str, fd: RawFd) -> multiproc_core::Child {
    spawn_with(test, role, &[fd])
}
