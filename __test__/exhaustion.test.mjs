// Running out of descriptors, and the death of a parent.
//
// Descriptors: a child started under `ulimit -n 64` (fixtures/exhaustion.mjs) makes Queues,
// Pipes, Locks, … and starts Processes until the system refuses. The refusal must be a typed
// error with a code of its own for an exhausted resource (docs/api-notes.md: ResourceError,
// ERR_NO_DESCRIPTORS, errno EMFILE) and a message that says what ran out; after giving half of
// them back (close(), or for objects without one, dropping them and collecting garbage) the next
// creation works; nothing is left in /dev/shm and no process it started outlives it.
//
// A parent's death: daemon.test.mjs covers idle daemons and a watching non-daemon child of a
// SIGKILLed parent, pool-faults.test.mjs an idle pool's workers. Here the children are busy: the
// workers of a pool in the middle of a map, daemons blocked in getSync, spinning and awaiting a
// get — all gone soon after the parent (no bound asserted beyond the watchdog); non-daemon
// children in the middle of their work run on and exit normally.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { ResourceError } from '../dist/index.js'
import { checkNoLeaks, fixtureUrl, isDead, procStat, within } from './helpers.mjs'

checkNoLeaks(test)

const W = 30000
const LIMIT = 64

async function until(cond, ms, what) {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`watchdog: ${what} did not happen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** Runs `sh -c script`; resolves with its exit and output. Killed (its group) by the watchdog. */
function sh(script, ms = 60000) {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {}
    }, ms)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

// ---- descriptors ----

const SCRIPT = fileURLToPath(fixtureUrl('exhaustion.mjs'))

for (const resource of ['Queue', 'JoinableQueue', 'Pipe', 'Lock', 'Event', 'Value', 'RawArray', 'SharedMemory', 'Process']) {
  test.serial(
    `${resource} after ${resource} until the descriptors run out (ulimit -n ${LIMIT}): a typed resource error; giving some back lets the next one through`,
    async (t) => {
      const r = await sh(`ulimit -n ${LIMIT} && exec "${process.execPath}" --expose-gc "${SCRIPT}" ${resource}`)
      t.is(r.code, 0, `the program failed (signal ${r.signal}): ${r.stderr.slice(-2000)}`)
      const line = r.stdout.trim().split('\n').pop()
      const out = JSON.parse(line || '{}')
      t.log(`created ${out.created}; refused with ${out.error?.name} ${out.error?.code} (${out.error?.errno}): ${out.error?.message}`)
      t.true(out.created > 0, 'some were made before the limit')
      const e = out.error
      t.truthy(e, 'the limit was reached')
      if (e) {
        t.true(e.typed, `a package class or TypeError/RangeError with a code: ${e.name} ${e.code}`)
        t.is(typeof e.code, 'string')
        t.is(e.name, ResourceError.name)
        t.regex(e.code, /^ERR_NO_|^ERR_RESOURCE/, 'a code for an exhausted resource')
        t.is(e.errno, 'EMFILE')
        t.regex(e.message, /descriptor|too many open files|EMFILE/i, 'the message says what ran out')
      }
      // A segment's descriptor goes with its last reference (docs/design.md, "Open ends"): a
      // Queue's close() is global and leaves it readable, so it keeps its segment; logged only.
      if (out.afterClose !== undefined)
        t.log(`after close() of half of them, one more: ${out.afterClose.ok ? 'made' : out.afterClose.error.code}`)
      t.true(out.afterGc.ok, `after dropping half of them and collecting garbage, one more: ${JSON.stringify(out.afterGc.error)}`)
      // Every process it started is gone (they are daemons, and it killed and joined them).
      await until(() => out.children.every(isDead), W, 'its children to be gone').catch(() => {})
      t.deepEqual(
        out.children.filter((p) => !isDead(p)).map((p) => ({ pid: p, ...procStat(p) })),
        [],
        'processes it started are left',
      )
    },
  )
}

// ---- a parent's death ----

const PARENT = fileURLToPath(fixtureUrl('orphan-parent.mjs'))

/** Starts the orphan-parent fixture; resolves with its report line and its exit. */
async function startParent(t, mode, file = '') {
  const child = spawn(process.execPath, [PARENT, mode, file], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let out = ''
  child.stdout.on('data', (d) => {
    out += d
  })
  await within(
    W,
    until(() => out.includes('\n') || child.exitCode !== null, W, 'the parent to report'),
    'the parent to report',
  )
  return { child, exited, report: JSON.parse(out.split('\n')[0]) }
}

/** Reports how long after `since` the pids were all dead; kills (and fails on) any left. */
async function allGone(t, pids, since, what) {
  await until(() => pids.every(isDead), W, `${what} to be gone`).catch(() => {})
  const left = pids.filter((p) => !isDead(p))
  t.deepEqual(
    left.map((pid) => ({ pid, ...procStat(pid) })),
    [],
    `${what} outlived their SIGKILLed parent`,
  )
  for (const p of left) {
    try {
      process.kill(p, 'SIGKILL')
    } catch {}
  }
  t.log(`${what} gone ${Math.round(performance.now() - since)} ms after the parent's death was seen`)
}

test.serial('a parent SIGKILLed while its Pool is in the middle of a map: the workers die with it', async (t) => {
  const { child, exited, report } = await startParent(t, 'pool')
  t.is(report.workers.length, 2)
  for (const pid of report.workers) t.is(procStat(pid)?.ppid, report.self, `worker ${pid} is the parent's child`)
  child.kill('SIGKILL')
  t.deepEqual(await within(W, exited, 'the parent to die'), { code: null, signal: 'SIGKILL' })
  await allGone(t, report.workers, performance.now(), 'the busy pool workers')
})

test.serial(
  'a parent SIGKILLed while its children work: busy daemons (in getSync, spinning, awaiting) die; non-daemon children finish their work and exit 0',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'orphans-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const file = join(dir, 'exits')
    const { child, exited, report } = await startParent(t, 'processes', file)
    t.is(report.daemons.length, 3)
    t.is(report.workers.length, 2)
    child.kill('SIGKILL')
    t.deepEqual(await within(W, exited, 'the parent to die'), { code: null, signal: 'SIGKILL' })
    const seen = performance.now()
    await allGone(t, report.daemons, seen, 'the busy daemon children')
    // The non-daemon children run on (Python semantics) …
    for (const pid of report.workers) t.false(isDead(pid), `non-daemon child ${pid} runs on after its parent's death`)
    // … to the end of their work, and exit normally.
    await until(() => report.workers.every(isDead), W, 'the non-daemon children to finish').catch(() => {})
    let exits = ''
    try {
      exits = readFileSync(file, 'utf8')
    } catch {}
    t.deepEqual(
      exits.trim().split('\n').filter(Boolean).sort(),
      report.workers.map((pid) => `${pid} exit 0`).sort(),
      'each non-daemon child wrote its exit code',
    )
    for (const p of report.workers.filter((p) => !isDead(p))) process.kill(p, 'SIGKILL')
  },
)
