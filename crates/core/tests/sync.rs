//! The synchronisation objects across real processes: this test binary re-runs itself as the
//! second process (`MPROC_ROLE` says which part to play), inheriting the object's descriptor.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_core::sync::{Acquired, Barrier, Condition, Event, Mutex, Owner, Semaphore};
use multiproc_core::Segment;

mod common;
use common::{inherited_fds, role, spawn_role, spawn_with};

fn segments() -> Vec<Arc<Segment>> {
    inherited_fds().into_iter().map(segment).collect()
}

fn segment(fd: RawFd) -> Arc<Segment> {
    Arc::new(Segment::attach(multiproc_core::sys::fd::adopt(fd).unwrap(), 0).unwrap())
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

#[test]
fn three_processes_cross_a_barrier_many_times() {
    const ROUNDS: u32 = 200;
    let long = || Some(Instant::now() + Duration::from_secs(30));
    if let Some((role, fd)) = role() {
        assert_eq!(role, "party");
        let barrier = Barrier::attach(segment(fd)).unwrap();
        for _ in 0..ROUNDS {
            barrier.wait(long(), || {}).unwrap();
        }
        return;
    }
    let barrier = Barrier::create(3, true).unwrap();
    let fd = barrier.segment().fd();
    let test = "three_processes_cross_a_barrier_many_times";
    let children = [spawn_role(test, "party", fd), spawn_role(test, "party", fd)];
    let mut actions = 0;
    for _ in 0..ROUNDS {
        barrier.wait(long(), || actions += 1).unwrap();
    }
    for c in children {
        assert_eq!(c.wait(Some(Duration::from_secs(20))).unwrap().map(|s| s.code()), Some(0));
    }
    assert!(actions <= ROUNDS);
    assert!(!barrier.broken());
}

#[test]
fn a_condition_hands_off_between_processes() {
    const N: u32 = 2_000;
    let until = || Some(Instant::now() + Duration::from_secs(30));
    let me = Owner::process();
    // Python's Condition.wait over the parts: see condition.rs.
    let wait = |cond: &Condition, lock: &Mutex| {
        let mut observed = cond.enter();
        loop {
            let depth = lock.release_all(me).unwrap();
            let moved = cond.sleep(observed, until());
            lock.acquire(me, None).unwrap();
            lock.restore_depth(me, depth);
            if cond.take_token() {
                return;
            }
            assert!(moved, "a wait timed out: a wake-up was lost");
            observed = cond.observe();
        }
    };
    let (lock, cond, slot) = if role().is_some() {
        let segs = segments();
        (
            Mutex::attach(segs[0].clone(), false).unwrap(),
            Condition::attach(segs[1].clone()).unwrap(),
            Event::attach(segs[2].clone()).unwrap(),
        )
    } else {
        (Mutex::create(false, true).unwrap(), Condition::create(true).unwrap(), Event::create(true).unwrap())
    };
    // The slot is the Event's flag word, used as a plain shared cell under the lock.
    let cell = || slot.segment().u32_at(multiproc_core::sync::event::FLAG);
    let child = if role().is_some() {
        None
    } else {
        let fds = [lock.segment().fd(), cond.segment().fd(), slot.segment().fd()];
        Some(spawn_with("a_condition_hands_off_between_processes", "producer", &fds))
    };
    for i in 1..=N {
        lock.acquire(me, None).unwrap();
        if child.is_none() {
            // producer: wait for an empty slot, fill it
            while cell().load(std::sync::atomic::Ordering::SeqCst) != 0 {
                wait(&cond, &lock);
            }
            cell().store(i, std::sync::atomic::Ordering::SeqCst);
        } else {
            // consumer: wait for the next value, empty the slot
            while cell().load(std::sync::atomic::Ordering::SeqCst) == 0 {
                wait(&cond, &lock);
            }
            assert_eq!(cell().swap(0, std::sync::atomic::Ordering::SeqCst), i);
        }
        cond.notify(1);
        lock.release(me).unwrap();
    }
    if let Some(c) = child {
        assert_eq!(c.wait(Some(Duration::from_secs(20))).unwrap().map(|s| s.code()), Some(0));
    }
}
