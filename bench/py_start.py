#!/usr/bin/env python3
"""CPython's side of bench/start.mjs: one case per run, with one start method.

    python3 bench/py_start.py <first|memory|pool|recycle|firstMap> <fork|forkserver|spawn> '<config JSON>'

Prints one line: '@@RESULT ' followed by the result as JSON.
"""

import json
import multiprocessing as mp
import sys
import time


def echo_first(q):
    q.put(1)


def idle(q):
    import os
    q.put(os.getpid())
    time.sleep(3600)


def inc(x):
    return x + 1


def square(x):
    return x * x


def memory_of(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:"):
                out[parts[0][:-1]] = int(parts[1]) / 1024
    return {"rssMiB": out.get("Rss", 0), "pssMiB": out.get("Pss", 0)}


def quantile(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main():
    name, method, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] if len(sys.argv) > 3 else "{}")
    ctx = mp.get_context(method)
    if name == "first":
        q = ctx.Queue()

        def one():
            t0 = time.perf_counter()
            p = ctx.Process(target=echo_first, args=(q,))
            p.start()
            q.get(timeout=60)
            ms = (time.perf_counter() - t0) * 1000
            p.join()
            return ms

        for _ in range(3):
            one()
        n = config.get("n", 20)
        ms = [one() for _ in range(n)]
        r = {"p50": quantile(ms, 0.5), "p90": quantile(ms, 0.9), "n": n}
    elif name == "memory":
        q = ctx.Queue()
        ps = []
        for _ in range(3):
            p = ctx.Process(target=idle, args=(q,), daemon=True)
            p.start()
            q.get(timeout=60)
            ps.append(p)
        time.sleep(1)
        m = [memory_of(p.pid) for p in ps]
        for p in ps:
            p.kill()
        r = {"rssMiB": sum(x["rssMiB"] for x in m) / 3, "pssMiB": sum(x["pssMiB"] for x in m) / 3}
    elif name == "pool":
        if config.get("warm") and method == "forkserver":
            from multiprocessing import forkserver
            forkserver.ensure_running()
            time.sleep(2)
        t0 = time.perf_counter()
        with ctx.Pool(2) as pool:
            pool.apply(inc, (1,))
            r = {"ms": (time.perf_counter() - t0) * 1000}
    elif name == "recycle":
        n = config.get("n", 200)
        with ctx.Pool(2, maxtasksperchild=1) as pool:
            pool.map(inc, [1, 2], chunksize=1)
            t0 = time.perf_counter()
            pool.map(inc, range(n), chunksize=1)
            r = {"tasksPerSec": n / (time.perf_counter() - t0), "n": n}
    elif name == "firstMap":
        with ctx.Pool(2) as pool:
            pool.map(square, range(20000))
            t0 = time.perf_counter()
            pool.map(square, range(200000))
            r = {"tasksPerSec": 200000 / (time.perf_counter() - t0)}
    else:
        raise SystemExit(f"unknown case {name}")
    r["ok"] = True
    print("@@RESULT " + json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
