// The child side of bench/sync.mjs: the partner of each hand-off benchmark.

/** Lock ping-pong: waits for `ping` (released by the parent), then releases `pong`. */
export async function lockPartner(ping, pong, rounds, useAsync) {
  for (let i = 0; i < rounds; i++) {
    if (useAsync) await ping.acquire()
    else ping.acquireSync()
    pong.release()
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
