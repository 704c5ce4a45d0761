/**
 * The far side of the IPC benchmark (bench/ipc.mjs). Exports the echo and sink loops that
 * multiproc children run (`new Process({ target: { module, name } })`); started as a
 * `child_process.fork` child (`--fork-child <role>`) or as a worker thread (`workerData.role`), it
 * runs the same loops over Node's own IPC.
 *
 * Protocol, the same on every transport: data messages are bytes (or `{ id, x }` objects) whose
 * sequence number is in their first 4 bytes (or `id`); control messages are strings. An echo
 * sends every data message back and stops at 'quit'. A sink counts data messages, answers 'end'
 * with its tally `{ n, bytes, outOfOrder, peakRssMiB }` (then starts a new tally), and stops at 'quit'.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads'

/** No single wait in the benchmark comes near this; it only keeps a broken case bounded. */
const WAIT_MS = 10_000
const wait = { timeout: WAIT_MS }

/** The sequence number a data message carries. */
export function seqOf(m) {
  if (m instanceof Uint8Array) return m[0] + m[1] * 0x100 + m[2] * 0x10000 + m[3] * 0x1000000
  return m.id
}

/** Counts what a sink receives; `take` returns the tally to send back on 'end'. */
function tally() {
  let n = 0
  let bytes = 0
  let outOfOrder = 0
  return {
    add(m) {
      if (seqOf(m) !== n) outOfOrder++
      n++
      if (m instanceof Uint8Array) bytes += m.byteLength
    },
    take() {
      // Peak resident memory of the consumer's process so far, in MiB.
      const t = { n, bytes, outOfOrder, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }
      n = bytes = outOfOrder = 0
      return t
    },
  }
}

// ---- multiproc targets ----

export async function queueEchoAsync(inq, outq) {
  for (;;) {
    const m = await inq.get(wait)
    if (typeof m === 'string') return
    await outq.put(m, wait)
  }
}

export function queueEchoSync(inq, outq) {
  for (;;) {
    const m = inq.getSync(wait)
    if (typeof m === 'string') return
    outq.putSync(m, wait)
  }
}

export async function queueSinkAsync(inq, outq) {
  const t = tally()
  for (;;) {
    const m = await inq.get(wait)
    if (m === 'quit') return
    if (m === 'end') await outq.put(t.take(), wait)
    else t.add(m)
  }
}

export function queueSinkSync(inq, outq) {
  const t = tally()
  for (;;) {
    const m = inq.getSync(wait)
    if (m === 'quit') return
    if (m === 'end') outq.putSync(t.take(), wait)
    else t.add(m)
  }
}

export async function pipeEchoAsync(conn) {
  for (;;) {
    const m = await conn.recv(wait)
    if (typeof m === 'string') return
    await conn.send(m)
  }
}

export function pipeEchoSync(conn) {
  for (;;) {
    const m = conn.recvSync(wait)
    if (typeof m === 'string') return
    conn.sendSync(m)
  }
}

export async function pipeSinkAsync(conn) {
  const t = tally()
  for (;;) {
    const m = await conn.recv(wait)
    if (m === 'quit') return
    if (m === 'end') await conn.send(t.take())
    else t.add(m)
  }
}

export function pipeSinkSync(conn) {
  const t = tally()
  for (;;) {
    const m = conn.recvSync(wait)
    if (m === 'quit') return
    if (m === 'end') conn.sendSync(t.take())
    else t.add(m)
  }
}

/**
 * A sink that receives every message's bytes into one reused buffer (`recvBytesInto`), as a
 * consumer that processes and drops each message would. Control messages are the only short ones.
 */
function intoSink(receive, send) {
  const t = tally()
  const buf = Buffer.allocUnsafeSlow(4 << 20)
  return async () => {
    for (;;) {
      const len = await receive(buf)
      if (len < 64) {
        // Control messages reach these sinks as bytes (see connectMultiproc in ipc.mjs).
        const m = buf.toString('utf8', 0, len)
        if (m === 'quit') return
        if (m === 'end') await send(t.take())
        continue
      }
      t.add(buf.subarray(0, len))
    }
  }
}

export function pipeSinkIntoAsync(conn) {
  return intoSink(
    (buf) => conn.recvBytesInto(buf, 0, wait),
    (v) => conn.send(v),
  )()
}

export function pipeSinkIntoSync(conn) {
  const t = tally()
  const buf = Buffer.allocUnsafeSlow(4 << 20)
  for (;;) {
    const len = conn.recvBytesIntoSync(buf, 0, wait)
    if (len < 64) {
      const m = buf.toString('utf8', 0, len)
      if (m === 'quit') return
      if (m === 'end') conn.sendSync(t.take())
      continue
    }
    t.add(buf.subarray(0, len))
  }
}

// ---- Node's own IPC: the same loops on 'message' events ----

/** Serves `role` ('echo' or 'sink') over a port with `on('message')` and a `send` function. */
function serve(role, port, send, quit) {
  const t = tally()
  port.on('message', (m) => {
    if (m === 'quit') return quit()
    if (role === 'echo') return send(m)
    if (m === 'end') return send(t.take())
    t.add(m)
  })
  send('ready')
}

if (process.argv[2] === '--fork-child' && process.send) {
  serve(
    process.argv[3],
    process,
    (m) => process.send(m),
    () => process.disconnect(),
  )
  // The parent went away (or said 'quit'): nothing keeps us then.
  process.on('disconnect', () => process.exit(0))
} else if (!isMainThread && workerData?.role) {
  serve(
    workerData.role,
    parentPort,
    (m) => parentPort.postMessage(m),
    () => parentPort.close(),
  )
}
