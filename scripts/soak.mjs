// A soak: producers and consumers in separate processes on a few Queues, small messages mixed
// with messages larger than the ring, while a chaos loop SIGKILLs random producers and consumers
// and starts replacements. Every message carries a unique id and a checksum. Producers record an
// id as committed once its put has resolved; consumers record each id they took and whether its
// checksum held. Both write to files of their own (O_APPEND, one line per id), so that the
// record does not depend on the queues under test.
//
//   npm run soak -- [--seconds N] [--seed S] [--producers P] [--consumers C] [--queues Q]
//
// Prints one line of JSON: sent (committed), received, lost (committed, never received),
// duplicated, corrupted, the kills, and `ok`. Exits non-zero if a message was duplicated or
// corrupted, if more were lost on a queue than the consumers killed on it can have held (one
// each: the message it had taken but not yet recorded, or the large one it was in the middle of
// reading), if a message
// nobody committed arrived more often than killed producers explain, if a queue broke, or if
// anything hung (a watchdog on every wait).
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { EOFError, Event, Process, parentProcess, Queue, TimeoutError } from '../dist/index.js'

/** The ring of every queue: large messages (LARGE_MIN and up) stream through it. */
const RING = 64 * 1024
const LARGE_MIN = 96 * 1024
const LARGE_MAX = 320 * 1024
/** One message in this many is large. */
const LARGE_EVERY = 25

// ---- messages: [u32 checksum][u16 id length][id][payload] ----

function fnv1a(bytes, from) {
  let h = 0x811c9dc5
  for (let i = from; i < bytes.length; i++) {
    h ^= bytes[i]
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** A deterministic PRNG (mulberry32). */
function prng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function message(id, size, rand) {
  const idBytes = Buffer.from(id)
  const buf = Buffer.allocUnsafe(6 + idBytes.length + size)
  buf.writeUInt16LE(idBytes.length, 4)
  idBytes.copy(buf, 6)
  let x = Math.floor(rand() * 0xffffffff)
  for (let i = 6 + idBytes.length; i < buf.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    buf[i] = x >>> 24
  }
  buf.writeUInt32LE(fnv1a(buf, 4), 0)
  return buf
}

/** `{ id, ok }` of a received message: ok when its checksum holds. */
function check(buf) {
  if (!Buffer.isBuffer(buf) || buf.length < 6) return { id: null, ok: false }
  const n = buf.readUInt16LE(4)
  const id = buf.subarray(6, 6 + n).toString()
  return { id, ok: buf.length >= 6 + n && buf.readUInt32LE(0) === fnv1a(buf, 4) }
}

// ---- the children ----

/** Puts messages until `stop` is set; records each id once its put has resolved. */
export async function producer(queues, stop, name, seed, file) {
  const out = openSync(file, 'a')
  const rand = prng(seed)
  for (let n = 0; !stop.isSet(); n++) {
    const id = `${name}-${n}`
    const large = rand() * LARGE_EVERY < 1
    const size = large ? LARGE_MIN + Math.floor(rand() * (LARGE_MAX - LARGE_MIN)) : 16 + Math.floor(rand() * 200)
    const k = Math.floor(rand() * queues.length)
    const q = queues[k]
    try {
      await q.put(message(id, size, rand), { timeout: 1000 })
    } catch (err) {
      if (err instanceof TimeoutError) continue // not committed; a streamed one is abandoned
      throw err
    }
    writeSync(out, `${id} ${k}\n`)
  }
  closeSync(out)
}

/** Takes messages until its queue is closed and drained; records each id and whether it held. */
export async function consumer(q, file) {
  const out = openSync(file, 'a')
  for (;;) {
    let m
    try {
      m = await q.get({ timeout: 1000 })
    } catch (err) {
      if (err instanceof TimeoutError) continue
      if (err instanceof EOFError) break
      throw err
    }
    const { id, ok } = check(m)
    writeSync(out, `${id} ${ok ? 'ok' : 'corrupt'}\n`)
  }
  closeSync(out)
}

// ---- the soak ----

function parseArgs(argv) {
  const opts = { seconds: 10, seed: 1, producers: 3, consumers: 3, queues: 2 }
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '')
    if (!(key in opts)) throw new Error(`unknown option ${argv[i]} (known: ${Object.keys(opts).join(', ')})`)
    const v = Number(argv[++i])
    if (!Number.isFinite(v) || v < (key === 'seed' ? 0 : 1)) throw new Error(`--${key} takes a number, got ${argv[i]}`)
    opts[key] = v
  }
  return opts
}

/** Rejects after `ms` with a message naming what hung. */
async function within(ms, promise, what) {
  let timer
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`hung: ${what} (${ms} ms)`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** Lines of every file in `dir` whose name starts with `prefix` (a torn last line is dropped). */
function linesOf(dir, prefix) {
  const lines = []
  for (const f of readdirSync(dir)) {
    if (!f.startsWith(prefix)) continue
    const text = readFileSync(join(dir, f), 'utf8')
    const complete = text.endsWith('\n') ? text : text.slice(0, text.lastIndexOf('\n') + 1)
    for (const l of complete.split('\n')) if (l) lines.push(l)
  }
  return lines
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const rand = prng(opts.seed)
  const dir = mkdtempSync(join(tmpdir(), 'multiproc-soak-'))
  const self = { module: import.meta.url }
  const queues = Array.from({ length: opts.queues }, () => new Queue({ capacityBytes: RING }))
  const stop = new Event()
  const producers = new Set()
  const consumers = new Set()
  let started = 0
  const stats = { producersKilled: 0, consumersKilled: 0, brokenQueue: null, hung: null }
  /** Consumers killed, per queue: each may have held one message of that queue. */
  const killedOn = queues.map(() => 0)

  async function startProducer() {
    const name = `p${started++}`
    const p = new Process({
      target: { ...self, name: 'producer' },
      args: [queues, stop, name, Math.floor(rand() * 2 ** 31), join(dir, `commit-${name}`)],
      daemon: true,
      name,
    })
    await within(30000, p.start(), `start of ${name}`)
    producers.add(p)
  }
  async function startConsumer(q) {
    const name = `c${started++}`
    const p = new Process({ target: { ...self, name: 'consumer' }, args: [q, join(dir, `got-${name}`)], daemon: true, name })
    p.queue = q
    await within(30000, p.start(), `start of ${name}`)
    consumers.add(p)
  }

  try {
    for (let i = 0; i < opts.producers; i++) await startProducer()
    for (let i = 0; i < opts.consumers; i++) await startConsumer(queues[i % queues.length])
    for (const q of queues) if (![...consumers].some((c) => c.queue === q)) await startConsumer(q)

    // Chaos: kill a random producer or consumer every 100–600 ms and start its replacement.
    const end = performance.now() + opts.seconds * 1000
    while (performance.now() < end) {
      await new Promise((r) => setTimeout(r, 100 + rand() * 500))
      const pool = rand() < 0.5 ? producers : consumers
      const victims = [...pool]
      const victim = victims[Math.floor(rand() * victims.length)]
      if (!victim) continue
      victim.kill()
      await within(10000, victim.join(), `join of the killed ${victim.name}`)
      pool.delete(victim)
      if (pool === producers) {
        stats.producersKilled++
        await startProducer()
      } else {
        stats.consumersKilled++
        killedOn[queues.indexOf(victim.queue)]++
        await startConsumer(victim.queue)
      }
    }
    // Wind down: producers finish their current put and exit; then the queues close, and the
    // consumers drain them and exit.
    stop.set()
    for (const p of producers) await within(30000, p.join(), `join of ${p.name}`)
    for (const p of producers) if (p.exitCode !== 0) stats.brokenQueue ??= `${p.name} exited with ${p.exitCode}`
    for (const q of queues) q.close()
    for (const p of consumers) await within(60000, p.join(), `join of ${p.name} (draining)`)
    for (const p of consumers) if (p.exitCode !== 0) stats.brokenQueue ??= `${p.name} exited with ${p.exitCode}`
  } catch (err) {
    stats.hung = err.message
    for (const p of [...producers, ...consumers]) p.kill()
  }

  /** id → the queue it was put on */
  const committed = new Map(linesOf(dir, 'commit-').map((l) => l.split(' ')))
  const seen = new Map()
  let corrupted = 0
  for (const l of linesOf(dir, 'got-')) {
    const [id, state] = l.split(' ')
    if (state !== 'ok') corrupted++
    seen.set(id, (seen.get(id) ?? 0) + 1)
  }
  rmSync(dir, { recursive: true, force: true })
  const lost = [...committed.keys()].filter((id) => !seen.has(id))
  // A lost message is explained if a consumer of its queue was killed; one per killed consumer.
  const lostOn = queues.map(() => 0)
  for (const id of lost) lostOn[Number(committed.get(id))]++
  const unexplained = lostOn.reduce((sum, n, k) => sum + Math.max(0, n - killedOn[k]), 0)
  const duplicated = [...seen.values()].filter((n) => n > 1).length
  const uncommitted = [...seen.keys()].filter((id) => !committed.has(id)).length
  const summary = {
    seconds: opts.seconds,
    seed: opts.seed,
    sent: committed.size,
    received: seen.size,
    lost: lost.length,
    // Lost beyond what the consumers killed on each queue can have held.
    lostUnexplained: unexplained,
    duplicated,
    corrupted,
    // Put by a producer killed before it could record the commit.
    receivedUncommitted: uncommitted,
    producersKilled: stats.producersKilled,
    consumersKilled: stats.consumersKilled,
    ...(stats.brokenQueue ? { brokenQueue: stats.brokenQueue } : {}),
    ...(stats.hung ? { hung: stats.hung } : {}),
    ...(lost.length > 0 ? { lostIds: lost.slice(0, 10) } : {}),
  }
  summary.ok =
    !stats.hung && !stats.brokenQueue && duplicated === 0 && corrupted === 0 && unexplained === 0 && uncommitted <= stats.producersKilled
  process.stdout.write(`${JSON.stringify(summary)}\n`)
  process.exit(summary.ok ? 0 : 1)
}

if (!parentProcess()) await main()
