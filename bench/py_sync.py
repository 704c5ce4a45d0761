#!/usr/bin/env python3
"""CPython's side of bench/sync.mjs: the same measurements over multiprocessing's Lock and Event.

    python3 bench/py_sync.py '<config JSON>'

Prints one line: '@@RESULT ' followed by the results as JSON (nanoseconds).
"""

import json
import multiprocessing as mp
import sys
import time


def lock_partner(ping, pong, rounds):
    for _ in range(rounds):
        ping.acquire()
        pong.release()


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


def ping_pong(kind, warmup, rounds):
    ping, pong = (mp.Lock(), mp.Lock()) if kind == "lock" else (mp.Event(), mp.Event())
    if kind == "lock":
        ping.acquire()
        pong.acquire()
    target = lock_partner if kind == "lock" else event_partner
    p = mp.Process(target=target, args=(ping, pong, warmup + rounds), daemon=True)
    p.start()
    rtts = []
    for i in range(warmup + rounds):
        t = time.perf_counter_ns()
        if kind == "lock":
            ping.release()
            pong.acquire()
        else:
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
        "lock": ping_pong("lock", cfg["warmup"], cfg["rounds"]),
        "event": ping_pong("event", cfg["warmup"], cfg["rounds"]),
    }
    print("@@RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
