// The child side of bench/sync.mjs: the partner of each hand-off benchmark.

/**
 * Lock hand-off, the waiting side. Round i: wait until the parent holds the lock again
 * (`state[1] === i`), announce (`state[0] = 2i + 1`), block in acquire; on return, record how
 * long ago the parent stamped its release (`stamp[0]`, CLOCK_MONOTONIC ns), release, say done.
 */
export async function lockWaiter(lock, state, stamp, out, rounds, useAsync) {
  for (let i = 0; i < rounds; i++) {
    while (Atomics.load(state, 1) !== i) {}
    Atomics.store(state, 0, 2 * i + 1)
    if (useAsync) await lock.acquire()
    else lock.acquireSync()
    out[i] = Number(process.hrtime.bigint() - stamp[0])
    lock.release()
    Atomics.store(state, 0, 2 * i + 2)
  }
}

/** Event ping-pong: waits for `ping`, clears it, sets `pong`. */
export async function eventPartner(ping, pong, rounds, useAsync) {
  for (let i = 0; i < rounds; i++) {
    if (useAsync) await ping.wait()
    else ping.waitSync()
    ping.clear()
    pong.set()
  }
}
