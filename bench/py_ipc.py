#!/usr/bin/env python3
"""CPython's side of bench/ipc.mjs: one transport, one scenario per run.

    python3 bench/py_ipc.py <py-pipe|py-queue> <rtt|bulk|small> '<config JSON>'

Runs the same protocol as bench/ipc-worker.mjs over multiprocessing.Pipe (send_bytes /
recv_bytes) or multiprocessing.Queue (put / get), with the default start method, and prints one
line: '@@RESULT ' followed by the result as JSON. Data messages are bytes of the benchmark's size;
control messages are shorter than 8 bytes: b'E' (answer with the tally: count, bytes and the
consumer's peak RSS in MiB) and b'Q' (quit).
"""

import json
import multiprocessing as mp
import resource
import sys
import time

END = b"E"
QUIT = b"Q"


def is_control(m):
    return len(m) < 8


def peak_rss_mib():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


# ---- children ----


def pipe_echo(conn):
    while True:
        m = conn.recv_bytes()
        if is_control(m):
            return
        conn.send_bytes(m)


def pipe_sink(conn):
    n = nbytes = 0
    while True:
        m = conn.recv_bytes()
        if m == QUIT:
            return
        if m == END:
            conn.send((n, nbytes, peak_rss_mib()))
            n = nbytes = 0
        else:
            n += 1
            nbytes += len(m)


def queue_echo(q, back, wait_s):
    while True:
        m = q.get(timeout=wait_s)
        if is_control(m):
            return
        back.put(m)


def queue_sink(q, back, wait_s):
    n = nbytes = 0
    while True:
        m = q.get(timeout=wait_s)
        if m == QUIT:
            return
        if m == END:
            back.put((n, nbytes, peak_rss_mib()))
            n = nbytes = 0
        else:
            n += 1
            nbytes += len(m)


# ---- the parent's end ----


class Endpoint:
    """send(m) / recv() towards a child running an echo or a sink."""

    def __init__(self, transport, role, wait_s):
        self.wait_s = wait_s
        if transport == "py-pipe":
            mine, theirs = mp.Pipe()
            target = pipe_echo if role == "echo" else pipe_sink
            self.proc = mp.Process(target=target, args=(theirs,), daemon=True)
            self.proc.start()
            theirs.close()
            self.send = mine.send_bytes
            # Pipe.recv has no timeout; the runner's hard limit bounds a hang here.
            self.recv_data = mine.recv_bytes
            self.recv_ack = mine.recv
            self._stop = lambda: mine.send_bytes(QUIT)
        else:
            q, back = mp.Queue(), mp.Queue()
            target = queue_echo if role == "echo" else queue_sink
            self.proc = mp.Process(target=target, args=(q, back, wait_s), daemon=True)
            self.proc.start()
            self.send = q.put
            self.recv_data = self.recv_ack = lambda: back.get(timeout=wait_s)
            self._stop = lambda: q.put(QUIT)

    def close(self):
        if self.proc.is_alive():
            self._stop()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        if self.proc.exitcode != 0:
            raise RuntimeError(f"the child exited with {self.proc.exitcode}")


def measure_rtt(ep, size, cfg):
    buf = bytes([0xA5]) * size
    send, recv, clock = ep.send, ep.recv_data, time.perf_counter_ns

    def run(n, limit_ms):
        lat = []
        stop_at = clock() + limit_ms * 1_000_000
        for _ in range(n):
            t0 = clock()
            send(buf)
            r = recv()
            t1 = clock()
            if len(r) != size:
                raise RuntimeError(f"a round trip brought back {len(r)} bytes, not {size}")
            lat.append((t1 - t0) / 1000)
            if t1 > stop_at:
                break
        return lat

    run(cfg["warmup"], cfg["maxMs"] / 2)
    lat = sorted(run(cfg["roundTrips"], cfg["maxMs"]))
    n = len(lat)

    def pct(p):
        return lat[min(n - 1, int(p * n))]

    return {
        "roundTrips": n,
        "p50Us": pct(0.5),
        "p99Us": pct(0.99),
        "meanUs": sum(lat) / n,
        "minUs": lat[0],
        "maxUs": lat[-1],
    }


def measure_one_way(ep, size, cfg):
    buf = bytes([0xA5]) * size
    send = ep.send

    def phase(n):
        t0 = time.perf_counter()
        for _ in range(n):
            send(buf)
        send(END)
        got = ep.recv_ack()
        s = time.perf_counter() - t0
        if tuple(got[:2]) != (n, n * size):
            raise RuntimeError(f"sent {n} messages ({n * size} B), the consumer counted {got}")
        return s, got[2]

    cal, _ = phase(cfg["calibrate"])
    n = max(cfg["min"], min(cfg["max"], round(cfg["calibrate"] / cal * cfg["targetMs"] / 1000)))
    s, peak = phase(n)
    return {"messages": n, "seconds": s, "msgPerSec": n / s, "mbPerSec": n * size / 1e6 / s, "consumerPeakRssMiB": peak}


def main():
    transport, scenario, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    size = config["bulkBytes"] if scenario == "bulk" else config["smallBytes"]
    wait_s = config["waitMs"] / 1000
    try:
        ep = Endpoint(transport, "echo" if scenario == "rtt" else "sink", wait_s)
        failure = None
        result = None
        try:
            result = measure_rtt(ep, size, config["rtt"]) if scenario == "rtt" else measure_one_way(ep, size, config[scenario])
        except Exception as e:  # noqa: BLE001 - reported, not raised
            failure = e
        try:
            ep.close()
        except Exception as e:  # noqa: BLE001
            if failure is None:
                result["shutdownError"] = f"{type(e).__name__}: {e}"
        if failure is not None:
            raise failure
        line = {"ok": True, **result}
    except Exception as e:  # noqa: BLE001
        line = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print("@@RESULT " + json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
