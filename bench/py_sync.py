#!/usr/bin/env python3
"""CPython's side of bench/sync.mjs: the same measurements over multiprocessing's Lock and Event
(the same protocols, CLOCK_MONOTONIC stamps in shared memory for the lock hand-off).

    python3 bench/py_sync.py '<config JSON>'

Prints one line: '@@RESULT ' followed by the results as JSON (nanoseconds).
"""

import json
import multiprocessing as mp
import sys
import time


def lock_waiter(lock, state, stamp, out, rounds):
    for i in range(rounds):
        while state[1] != i:
            pass
        state[0] = 2 * i + 1
        lock.acquire()
        out[i] = time.monotonic_ns() - stamp[0]
        lock.release()
        state[0] = 2 * i + 2


def event_partner(ping, pong, rounds):
    for _ in range(rounds):
        ping.wait()
        ping.clear()
        pong.set()


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def uncontended(n):
    lock = mp.Lock()
    for _ in range(n // 10):
        lock.acquire()
        lock.release()
    t = time.perf_counter_ns()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return (time.perf_counter_ns() - t) / n


def pause(us):
    until = time.monotonic_ns() + us * 1000
    while time.monotonic_ns() < until:
        pass


def hand_off(warmup, rounds, settle_us):
    """As bench/sync.mjs: the parent stamps the time and releases, the waiting child measures."""
    total = warmup + rounds
    lock = mp.Lock()
    state = mp.RawArray("i", 2)
    stamp = mp.RawArray("q", 1)
    out = mp.RawArray("d", total)
    lock.acquire()
    p = mp.Process(target=lock_waiter, args=(lock, state, stamp, out, total), daemon=True)
    p.start()
    for i in range(total):
        while state[0] != 2 * i + 1:
            pass
        pause(settle_us)
        stamp[0] = time.monotonic_ns()
        lock.release()
        while state[0] != 2 * i + 2:
            pass
        lock.acquire()
        state[1] = i + 1
    p.join(10)
    lat = list(out[warmup:])
    return {"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99)}


def ping_pong(warmup, rounds):
    ping, pong = mp.Event(), mp.Event()
    p = mp.Process(target=event_partner, args=(ping, pong, warmup + rounds), daemon=True)
    p.start()
    rtts = []
    for i in range(warmup + rounds):
        t = time.perf_counter_ns()
        ping.set()
        pong.wait()
        pong.clear()
        if i >= warmup:
            rtts.append(time.perf_counter_ns() - t)
    p.join(10)
    return {"p50": percentile(rtts, 0.5) / 2, "p99": percentile(rtts, 0.99) / 2}


def main():
    cfg = json.loads(sys.argv[1])
    out = {
        "uncontended": uncontended(cfg["uncontended"] // 10),
        "lock": hand_off(cfg["warmup"], cfg["rounds"], cfg["settleUs"]),
        "event": ping_pong(cfg["warmup"], cfg["rounds"]),
    }
    print("@@RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
