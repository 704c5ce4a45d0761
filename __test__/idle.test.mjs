import { execFile } from 'node:child_process'
import { pbkdf2, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gzip } from 'node:zlib'

import test from 'ava'

import { Queue, TimeoutError } from '../dist/index.js'
import { checkNoLeaks, fixtureUrl, within } from './helpers.mjs'

checkNoLeaks(test)

// The CPU measurements run in fresh processes (see fixtures/idle-probe.mjs), concurrently with
// each other; the thread-pool tests below run serially in this worker.

const IDLE_MS = 3000
const BUDGET_US = 30_000 // 1 % of one core over 3 s

/** Runs fixtures/idle-probe.mjs in a fresh node and returns what it measured. */
function probe(mode) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [fileURLToPath(fixtureUrl('idle-probe.mjs')), mode, String(IDLE_MS)],
      { timeout: IDLE_MS + 15000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`idle probe ${mode} failed: ${err.message}; stderr: ${stderr}`))
        else resolve(JSON.parse(stdout))
      },
    )
  })
}

for (const [mode, what] of [
  ['get', 'an idle await q.get()'],
  ['getSync', 'an idle blocking q.getSync()'],
  ['recv', 'an idle await conn.recv() with a live peer process'],
]) {
  test(`${what} costs under 1 % of a core`, async (t) => {
    const r = await probe(mode)
    t.log(`${(r.cpuUs / 1000).toFixed(1)} ms of CPU in ${r.waitedMs.toFixed(0)} ms; by thread (ms): ${JSON.stringify(r.threadsMs)}`)
    t.is(r.error, 'TimeoutError')
    t.true(r.waitedMs >= IDLE_MS - 10, `waited ${r.waitedMs} ms`)
    t.true(r.cpuUs < BUDGET_US, `used ${r.cpuUs} µs of CPU`)
  })
}

test.serial('8 pending gets leave the libuv thread pool free: file reads, crypto and zlib complete meanwhile', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'multiproc-idle-'))
  const file = join(dir, 'data.bin')
  const content = randomBytes(4 << 20)
  writeFileSync(file, content)
  try {
    const queues = Array.from({ length: 8 }, () => new Queue())
    let firstTimeout = Number.POSITIVE_INFINITY
    const gets = queues.map((q) =>
      q.get({ timeout: 1500 }).then(
        () => 'got an item from an empty queue',
        (err) => {
          firstTimeout = Math.min(firstTimeout, performance.now())
          return err
        },
      ),
    )
    // Give the gets time to arm their waits (they should not occupy thread-pool threads).
    await new Promise((r) => setTimeout(r, 100))
    const t0 = performance.now()
    // More thread-pool jobs than the default pool has threads (4), several rounds of file reads.
    const work = await within(
      10000,
      Promise.all([
        ...Array.from({ length: 6 }, () => readFile(file)),
        promisify(pbkdf2)('pw', 'salt', 1000, 32, 'sha256'),
        promisify(gzip)(content.subarray(0, 1 << 16)),
      ]),
      'thread-pool work',
    )
    const doneAt = performance.now()
    for (const buf of work.slice(0, 6)) t.true(buf.equals(content))
    t.is(work[6].length, 32)
    t.true(work[7].length > 0)
    t.true(doneAt < firstTimeout, `thread-pool work finished ${(doneAt - t0).toFixed(0)} ms after it began, before any get timed out`)
    const results = await within(10000, Promise.all(gets), 'the gets timing out')
    for (const r of results) t.true(r instanceof TimeoutError, String(r))
    t.true(firstTimeout > doneAt)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test.serial('an item put while many gets are pending reaches exactly one of them', async (t) => {
  const q = new Queue()
  const gets = Array.from({ length: 8 }, () =>
    q.get({ timeout: 1000 }).then(
      (v) => ({ v }),
      (err) => ({ err }),
    ),
  )
  await new Promise((r) => setTimeout(r, 50))
  await q.put('only one')
  const results = await within(10000, Promise.all(gets), 'gets')
  t.deepEqual(
    results.filter((r) => 'v' in r),
    [{ v: 'only one' }],
  )
  for (const r of results.filter((r) => 'err' in r)) t.true(r.err instanceof TimeoutError)
})
