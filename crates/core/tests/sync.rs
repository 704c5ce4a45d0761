//! The synchronisation objects across real processes: this test binary re-runs itself as the
//! second process (`MPROC_ROLE` says which part to play), inheriting the object's descriptor.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_core::sync::{Acquired, Event, Mutex, Owner, Semaphore};
use multiproc_core::{spawn, Segment, SpawnOptions};

fn role() -> Option<(String, RawFd)> {
    let role = std::env::var("MPROC_ROLE").ok()?;
    let fd = std::env::var("MPROC_FD").ok()?.parse().ok()?;
    Some((role, fd))
}

fn segment(fd: RawFd) -> Arc<Segment> {
    Arc::new(Segment::attach(multiproc_core::sys::fd::adopt(fd).unwrap(), 0).unwrap())
}

fn spawn_role(test: &str, role: &str, fd: RawFd) -> multiproc_core::Child {
    let exe = std::env::current_exe().unwrap();
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.push(("MPROC_ROLE".into(), role.into()));
    env.push(("MPROC_FD".into(), fd.to_string()));
    spawn(&SpawnOptions {
        program: exe.to_string_lossy().into_owned(),
        args: vec![test.into(), "--exact".into(), "--test-threads=1".into()],
        env: Some(env),
        inherit: vec![fd],
        daemon: true,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_killed_holders_lock_is_taken_over_by_another_process() {
    if let Some((role, fd)) = role() {
        assert_eq!(role, "holder");
        let lock = Mutex::attach(segment(fd), false).unwrap();
        assert_eq!(lock.acquire(Owner::process(), None), Ok(Acquired::Clean));
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let lock = Mutex::create(false, true).unwrap();
    let child = spawn_role("a_killed_holders_lock_is_taken_over_by_another_process", "holder", lock.segment().fd());
    let until = Instant::now() + Duration::from_secs(20);
    while lock.owner() == 0 {
        assert!(Instant::now() < until, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(lock.owner(), child.pid() as u32);
    let me = Owner::process();
    assert!(!lock.try_acquire(me));
    assert_eq!(lock.try_acquire_or_recover(me), None, "a live holder is not taken over");
    child.signal(libc::SIGKILL).unwrap();
    assert!(child.wait(Some(Duration::from_secs(10))).unwrap().is_some());
    assert_eq!(lock.acquire(me, Some(Instant::now() + Duration::from_secs(10))), Ok(Acquired::OwnerDied));
    lock.release(me).unwrap();
}

#[test]
fn semaphore_and_event_across_processes() {
    if let Some((role, fd)) = role() {
        let seg = segment(fd);
        match role.as_str() {
            "releaser" => {
                let sem = Semaphore::attach(seg).unwrap();
                for _ in 0..1000 {
                    sem.release().unwrap();
                }
            }
            "setter" => {
                std::thread::sleep(Duration::from_millis(20));
                Event::attach(seg).unwrap().set();
            }
            _ => unreachable!(),
        }
        return;
    }
    let sem = Semaphore::create(0, false, true).unwrap();
    let child = spawn_role("semaphore_and_event_across_processes", "releaser", sem.segment().fd());
    for _ in 0..1000 {
        assert!(sem.acquire(Some(Instant::now() + Duration::from_secs(10))));
    }
    assert!(child.wait(Some(Duration::from_secs(10))).unwrap().is_some());
    let event = Event::create(true).unwrap();
    let child = spawn_role("semaphore_and_event_across_processes", "setter", event.segment().fd());
    assert!(event.wait(Some(Instant::now() + Duration::from_secs(10))));
    assert!(child.wait(Some(Duration::from_secs(10))).unwrap().is_some());
}
