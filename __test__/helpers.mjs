// @ts-check
// Shared test helpers: a per-file leak check (no child processes left, no new /dev/shm entries),
// watchdogs for waits, and small /proc utilities. Type-checked (`npm run lint`), like the package.
import { readdirSync, readFileSync } from 'node:fs'
import { setTimeout as delay } from 'node:timers/promises'

import { activeChildren } from '../dist/index.js'

/**
 * Pids of this process's direct children (zombies included), from /proc/self/task/<tid>/children.
 * @param {number} [pid]
 * @returns {number[]}
 */
export function childPids(pid = process.pid) {
  /** @type {Set<number>} */
  const pids = new Set()
  /** @type {string[]} */
  let tasks = []
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return []
  }
  for (const tid of tasks) {
    let text = ''
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8')
    } catch {
      continue
    }
    for (const p of text.trim().split(/\s+/)) if (p) pids.add(Number(p))
  }
  return [...pids]
}

/**
 * `{ comm, state, ppid, cmdline }` of a process, or null when it no longer exists.
 * @param {number} pid
 * @returns {{ comm: string, state: string, ppid: number, cmdline: string } | null}
 */
export function procStat(pid) {
  let text
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  const close = text.lastIndexOf(')')
  const comm = text.slice(text.indexOf('(') + 1, close)
  const fields = text.slice(close + 2).split(' ')
  let cmdline = ''
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
  } catch {}
  return { comm, state: fields[0], ppid: Number(fields[1]), cmdline }
}

/**
 * True when `pid` is gone or only a zombie (it has exited; its reaper may not have run yet).
 * @param {number} pid
 */
export function isDead(pid) {
  const st = procStat(pid)
  return st === null || st.state === 'Z' || st.state === 'X'
}

/** @returns {Set<string>} */
function shmEntries() {
  try {
    return new Set(readdirSync('/dev/shm'))
  } catch {
    return new Set()
  }
}

/**
 * Registers, on the given ava `test`, hooks that fail the file if, after all its tests, a child
 * process of the test process is still there (alive or an unreaped zombie), `activeChildren()` is
 * not empty, or /dev/shm holds entries that were not there when the file started. Leftover
 * children are SIGKILLed (by pid) after being reported, so one failure does not leak into others.
 * @param {import('ava').TestFn} test
 * @param {{ graceMs?: number }} [options]
 */
export function checkNoLeaks(test, { graceMs = 3000 } = {}) {
  let shmBefore = shmEntries()
  test.before('snapshot /dev/shm', () => {
    shmBefore = shmEntries()
  })
  test.after.always('no child processes and no /dev/shm entries are left', async (t) => {
    const deadline = Date.now() + graceMs
    let kids = childPids()
    let newShm = [...shmEntries()].filter((n) => !shmBefore.has(n))
    while ((kids.length > 0 || newShm.length > 0 || activeChildren().length > 0) && Date.now() < deadline) {
      await delay(50)
      kids = childPids()
      newShm = [...shmEntries()].filter((n) => !shmBefore.has(n))
    }
    const described = kids.map((pid) => ({ pid, ...procStat(pid) }))
    for (const { pid } of described) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {}
    }
    t.deepEqual(described, [], 'child processes of the test process are left over')
    t.deepEqual(
      activeChildren().map((p) => p.name),
      [],
      'activeChildren() is not empty',
    )
    t.deepEqual(newShm, [], 'new entries in /dev/shm')
  })
}

/**
 * `test` with at most `limit` of the file's tests running at once (ava starts them all together).
 * A file whose every test boots processes would otherwise start dozens of Node processes at
 * once on a 2-core machine, and its watchdogs would measure the queue for a CPU, not the code.
 * Properties (`test.serial`, `test.before`, …) are ava's own.
 * @param {import('ava').TestFn} test
 * @param {number} [limit]
 * @returns {import('ava').TestFn}
 */
export function throttled(test, limit = Number(process.env.MULTIPROC_TEST_CONCURRENCY) || 4) {
  let running = 0
  /** @type {(() => void)[]} */
  const waiting = []
  const acquire = () => {
    if (running < limit) {
      running++
      return Promise.resolve()
    }
    return new Promise((resolve) => waiting.push(() => resolve(undefined)))
  }
  const release = () => {
    const next = waiting.shift()
    if (next) next()
    else running--
  }
  return new Proxy(test, {
    apply(target, self, [title, impl, ...rest]) {
      if (typeof impl !== 'function') return Reflect.apply(target, self, [title, impl, ...rest])
      /** @param {import('ava').ExecutionContext} t @param {unknown[]} args */
      const limited = async (t, ...args) => {
        await acquire()
        try {
          return await impl(t, ...args)
        } finally {
          release()
        }
      }
      return Reflect.apply(target, self, [title, limited, ...rest])
    },
  })
}

/** Watchdog ticks; a tick that comes much later than this means the machine stalled. */
const TICK_MS = 250

/**
 * Races `promise` against a watchdog that rejects with a message naming what hung. The watchdog
 * counts time in ticks and counts no more than a second for a late one: a machine that stops
 * every process for a while (a loaded CI host) delays the child and the watchdog alike, and is not
 * a hang. `diagnose` adds what was seen at the moment it fired.
 * @template T
 * @param {number} ms
 * @param {Promise<T>} promise
 * @param {string} [what]
 * @param {() => unknown} [diagnose]
 * @returns {Promise<T>}
 */
export async function within(ms, promise, what = 'operation', diagnose) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer
  let counted = 0
  let stalledMs = 0
  let last = performance.now()
  /** @type {Promise<never>} */
  const watchdog = new Promise((_, reject) => {
    const tick = () => {
      const now = performance.now()
      const gap = now - last
      last = now
      counted += Math.min(gap, 1000)
      if (gap > 1000) stalledMs += gap - 1000
      if (counted < ms) {
        timer = setTimeout(tick, Math.min(TICK_MS, ms - counted + 1))
        return
      }
      let seen = ''
      try {
        seen = diagnose ? ` (${JSON.stringify(diagnose())})` : ''
      } catch {}
      const stalls = stalledMs > 0 ? `; ${Math.round(stalledMs)} ms of stalls not counted` : ''
      reject(new Error(`watchdog: ${what} did not finish within ${ms} ms${stalls}${seen}`))
    }
    timer = setTimeout(tick, Math.min(TICK_MS, ms))
  })
  try {
    return await Promise.race([promise, watchdog])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * What a process is doing, from /proc: state, kernel wait channel and syscall of each thread.
 * @param {number | null | undefined} pid
 */
export function whatIsItDoing(pid) {
  if (pid === undefined || pid === null) return null
  const st = procStat(pid)
  if (!st) return { pid, gone: true }
  /** @type {string[]} */
  let tids = []
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {}
  const read = (/** @type {string} */ f) => {
    try {
      return readFileSync(f, 'utf8').trim()
    } catch {
      return '?'
    }
  }
  const threads = tids.slice(0, 12).map((tid) => {
    // A thread's id names it in /proc as a pid does.
    const t = procStat(Number(tid))
    const syscall = read(`/proc/${pid}/task/${tid}/syscall`).split(' ').slice(0, 3).join(' ')
    return `${tid} ${t?.comm} ${t?.state} ${read(`/proc/${pid}/task/${tid}/wchan`)} [${syscall}]`
  })
  return { pid, state: st.state, children: childPids(pid), threads }
}

/**
 * Joins a process with a watchdog and returns its exit code (fails if it is still running).
 * @param {import('../dist/index.js').Process} p
 * @param {number} [ms]
 */
export async function joined(p, ms = 10000) {
  await within(ms, p.join(), `join of ${p.name}`, () => whatIsItDoing(p.pid))
  return p.exitCode
}

/**
 * A fixture target: `{ module, name }` for a function exported by __test__/fixtures/<file>.
 * @param {string} file
 * @param {string} name
 */
export function fixture(file, name) {
  return { module: new URL(`./fixtures/${file}`, import.meta.url), name }
}

/**
 * URL of a fixture module.
 * @param {string} file
 */
export function fixtureUrl(file) {
  return new URL(`./fixtures/${file}`, import.meta.url)
}

/**
 * Registers a teardown that kills `p` if it is still running when the test ends (ava assertions
 * throw, so a failing test would otherwise leave its children behind). Returns `p`.
 * @template {import('../dist/index.js').Process} P
 * @param {import('ava').ExecutionContext} t
 * @param {P} p
 * @returns {P}
 */
export function guard(t, p) {
  t.teardown(async () => {
    let alive = false
    try {
      alive = p.isAlive()
    } catch {} // closed: it had exited
    if (alive) {
      p.kill()
      await within(5000, p.join(), `teardown join of ${p.name}`).catch(() => {})
    }
  })
  return p
}
