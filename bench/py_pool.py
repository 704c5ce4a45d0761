#!/usr/bin/env python3
"""CPython's side of bench/pool.mjs: one scenario per run, with multiprocessing.Pool.

    python3 bench/py_pool.py <map|map1|apply|cpu|start> '<config JSON>'

Same tasks and sizes as the Node cases (default start method, default chunksize for `map`), and
prints one line: '@@RESULT ' followed by the result as JSON.
"""

import json
import multiprocessing as mp
import sys
import time


def square(x):
    return x * x


def inc(x):
    return x + 1


def primes(bounds):
    lo, hi = bounds
    count = 0
    for n in range(max(lo, 2), hi):
        if n % 2 == 0:
            if n == 2:
                count += 1
            continue
        d = 3
        prime = True
        while d * d <= n:
            if n % d == 0:
                prime = False
                break
            d += 2
        if prime:
            count += 1
    return count


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(scenario, cfg):
    n = cfg["workers"]
    t0 = time.perf_counter()
    with mp.Pool(n) as pool:
        if scenario == "start":
            pool.apply(inc, (1,))
            first = (time.perf_counter() - t0) * 1000
            pool.map(inc, range(n * 4), chunksize=1)
            pids = [p.pid for p in pool._pool]
            per = sum(rss_mib(p) for p in pids) / len(pids)
            return {"firstResultMs": first, "perWorkerMiB": per, "measuredAs": "RSS of each worker process"}
        if scenario in ("map", "map1"):
            items = cfg["mapItems"] if scenario == "map" else cfg["mapOneItems"]
            chunksize = None if scenario == "map" else 1
            data = list(range(items))
            until = time.perf_counter() + cfg["warmupMs"] / 1000  # warm-up, as the Node cases
            while time.perf_counter() < until:
                pool.map(square, data[: items // 4], chunksize)
            rates = []
            started = time.perf_counter()
            while len(rates) < 3 and (not rates or (time.perf_counter() - started) * 1000 < cfg["mapBudgetMs"]):
                t = time.perf_counter()
                out = pool.map(square, data, chunksize)
                rates.append(items / (time.perf_counter() - t))
                assert len(out) == items and out[-1] == (items - 1) ** 2
            rates.sort()
            return {"items": items, "runs": len(rates), "tasksPerSec": rates[(len(rates) - 1) // 2]}
        if scenario == "apply":
            for i in range(cfg["apply"]["warmup"]):
                pool.apply(inc, (i,))
            lat = []
            for i in range(cfg["apply"]["calls"]):
                t = time.perf_counter()
                assert pool.apply(inc, (i,)) == i + 1
                lat.append(time.perf_counter() - t)
            lat.sort()
            return {"calls": len(lat), "p50Us": lat[len(lat) // 2] * 1e6, "p99Us": lat[int(len(lat) * 0.99)] * 1e6}
        if scenario == "cpu":
            limit, step = cfg["cpu"]["pyLimit"], cfg["cpu"]["pyRange"]
            work = [(lo, min(limit, lo + step)) for lo in range(0, limit, step)]
            t = time.perf_counter()
            single = sum(primes(r) for r in work)
            one = time.perf_counter() - t
            pool.map(primes, work[:4], 1)
            t = time.perf_counter()
            total = sum(pool.map(primes, work, 1))
            many = time.perf_counter() - t
            assert total == single
            return {"oneSeconds": one, "poolSeconds": many, "speedup": one / many, "primes": total}
    raise ValueError(f"unknown scenario {scenario}")


if __name__ == "__main__":
    scenario, cfg = sys.argv[1], json.loads(sys.argv[2])
    try:
        line = {"ok": True, **run(scenario, cfg)}
    except Exception as e:  # noqa: BLE001 - reported, not raised
        line = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print("@@RESULT " + json.dumps(line), flush=True)
