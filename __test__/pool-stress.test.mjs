// Pool under mixed load: many distinct targets sent by source, calls of every kind at once, tasks
// of uneven length (so the pool takes queued chunks back and re-sends them), workers replaced by
// maxTasksPerChild, and workers SIGKILLed at random moments. Every call must end with the right
// result, or — only for work a killed worker was running — with WorkerExitedError.
import avaTest from 'ava'

import { WorkerExitedError } from '../dist/index.js'
import { checkNoLeaks, isDead, throttled, within } from './helpers.mjs'
import { backend, createPool, needs } from './pool-backend.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

/** Tests that need the workers to be processes of this machine (pids, kills, /proc). */
const local = needs(test, 'localProcesses')

/** Seeds: fixed by default; POOL_STRESS_SEED=n shifts them to explore other runs. */
const SEED = Number(process.env.POOL_STRESS_SEED ?? 0)

const range = (n) => Array.from({ length: n }, (_, i) => i)

/** A tiny deterministic generator (mulberry32). */
function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** Target k: sleeps item.ms, returns item.v * k + k (each has its own source text). */
function target(k) {
  return new Function(
    'item',
    `if (item.ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, item.ms); return item.v * ${k} + ${k}`,
  )
}
const expected = (k, item) => item.v * k + k

const settle = (p) =>
  Promise.resolve(p).then(
    (value) => ({ value }),
    (error) => ({ error }),
  )

/** Runs `n` random calls at once; returns per call { kind, k, items, outcome } (imap: per item). */
async function mixedLoad(pool, random, n) {
  const fns = range(12).map((k) => target(k + 1))
  const jobs = []
  for (let c = 0; c < n; c++) {
    const k = 1 + Math.floor(random() * 12)
    const fn = fns[k - 1]
    const count = 1 + Math.floor(random() * 30)
    const items = range(count).map((v) => ({ v, ms: random() < 0.15 ? Math.floor(random() * 40) : 0 }))
    const kind = ['apply', 'map', 'starmap', 'imap', 'imapUnordered'][Math.floor(random() * 5)]
    const chunksize = random() < 0.5 ? undefined : 1 + Math.floor(random() * 4)
    let run
    switch (kind) {
      case 'apply':
        run = settle(pool.apply(fn, [items[0]])).then((o) => [o])
        break
      case 'map':
        run = settle(pool.map(fn, items, { chunksize })).then((o) => [o])
        break
      case 'starmap':
        run = settle(
          pool.starmap(
            fn,
            items.map((i) => [i]),
            { chunksize },
          ),
        ).then((o) => [o])
        break
      default: {
        const it = kind === 'imap' ? pool.imap(fn, items, { chunksize }) : pool.imapUnordered(fn, items, { chunksize })
        run = (async () => {
          const out = []
          for (;;) {
            const r = await settle(it.next())
            if (r.value?.done) return out
            out.push(r.error ? r : { value: r.value.value })
          }
        })()
      }
    }
    jobs.push(run.then((outcomes) => ({ kind, k, items, chunksize, outcomes })))
  }
  return Promise.all(jobs)
}

/** Checks one call's outcome; returns how many chunks it lost to worker deaths. */
function check(t, job) {
  const { kind, k, items, outcomes } = job
  let lost = 0
  const what = `${kind} of ${items.length} with target ${k}`
  if (kind === 'apply' || kind === 'map' || kind === 'starmap') {
    const [o] = outcomes
    if (o.error) {
      t.true(o.error instanceof WorkerExitedError, `${what}: ${o.error}`)
      return 1
    }
    const want = kind === 'apply' ? expected(k, items[0]) : items.map((i) => expected(k, i))
    t.deepEqual(o.value, want, what)
    return 0
  }
  const values = []
  for (const o of outcomes) {
    if (o.error) {
      t.true(o.error instanceof WorkerExitedError, `${what}: ${o.error}`)
      lost++
    } else values.push(o.value)
  }
  const want = items.map((i) => expected(k, i))
  if (lost === 0) {
    if (kind === 'imap') t.deepEqual(values, want, what)
    else
      t.deepEqual(
        [...values].sort((a, b) => a - b),
        want,
        what,
      )
  } else {
    for (const v of values) t.true(want.includes(v), `${what}: unexpected ${v}`)
  }
  return lost
}

function makePool(t, opts) {
  const pool = createPool({ processes: 2, ...opts })
  t.teardown(async () => {
    pool.terminate()
    await within(10000, pool.join(), 'teardown join').catch(() => {})
  })
  return pool
}

test.serial('80 mixed calls with 12 targets sent by source and uneven tasks: every result right', async (t) => {
  const pool = makePool(t)
  const jobs = await within(30000, mixedLoad(pool, rng(SEED + 1), 80), 'the mixed load')
  let lost = 0
  for (const job of jobs) lost += check(t, job)
  t.is(lost, 0)
  if (backend.localProcesses) t.is(pool.workers.length, 2)
})

test.serial('the same with maxTasksPerChild: 10 (workers replaced all the time): every result right', async (t) => {
  const pool = makePool(t, { maxTasksPerChild: 10 })
  const jobs = await within(30000, mixedLoad(pool, rng(SEED + 2), 30), 'the mixed load')
  let lost = 0
  for (const job of jobs) lost += check(t, job)
  t.is(lost, 0)
})

local.serial(
  'the same while workers are SIGKILLed at random moments: only work they were running is lost, as WorkerExitedError',
  async (t) => {
    const pool = makePool(t)
    const random = rng(SEED + 3)
    let kills = 0
    let stop = false
    const killer = (async () => {
      while (!stop && kills < 6) {
        await new Promise((r) => setTimeout(r, 60 + random() * 80))
        const ws = pool.workers.filter((w) => w.pid && !isDead(w.pid))
        if (ws.length === 0) continue
        const victim = ws[Math.floor(random() * ws.length)]
        try {
          process.kill(victim.pid, 'SIGKILL')
          kills++
        } catch {}
      }
    })()
    const jobs = await within(40000, mixedLoad(pool, random, 80), 'the mixed load under kills')
    stop = true
    await killer
    let lost = 0
    for (const job of jobs) lost += check(t, job)
    t.log(`${kills} kills, ${lost} chunks lost`)
    t.true(lost <= kills, `${lost} chunks lost to ${kills} kills`)
    // whole again
    const deadline = Date.now() + 10000
    while (pool.workers.length !== 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    t.is(pool.workers.length, 2)
    const again = await within(
      20000,
      pool.map(
        target(3),
        range(10).map((v) => ({ v, ms: 0 })),
      ),
      'map after',
    )
    t.deepEqual(
      again,
      range(10).map((v) => v * 3 + 3),
    )
  },
)

local.serial(
  'everything at once: timeouts, aborts, kills and maxTasksPerChild: every call settles, with the right value or an expected error',
  async (t) => {
    const { AbortError, TimeoutError } = await import('../dist/index.js')
    const pool = makePool(t, { maxTasksPerChild: 8 })
    const random = rng(SEED + 4)
    const fns = range(6).map((k) => target(k + 1))
    const spin = new Function('item', 'if (item.spin) { while (true) {} } return item.v')
    let stop = false
    let kills = 0
    const killer = (async () => {
      while (!stop && kills < 4) {
        await new Promise((r) => setTimeout(r, 100 + random() * 150))
        const ws = pool.workers.filter((w) => w.pid && !isDead(w.pid))
        if (ws.length === 0) continue
        try {
          process.kill(ws[Math.floor(random() * ws.length)].pid, 'SIGKILL')
          kills++
        } catch {}
      }
    })()
    const jobs = []
    for (let c = 0; c < 40; c++) {
      const roll = random()
      if (roll < 0.15) {
        // a call that spins: only its timeout ends it
        jobs.push(
          settle(pool.apply(spin, [{ spin: true, v: c }], { timeout: 200 + Math.floor(random() * 200) })).then((o) => ({
            c,
            kind: 'spin',
            o,
          })),
        )
      } else if (roll < 0.3) {
        const ac = new AbortController()
        setTimeout(() => ac.abort(), Math.floor(random() * 300))
        const items = range(20).map((v) => ({ v, ms: 10 }))
        jobs.push(settle(pool.map(fns[0], items, { signal: ac.signal, chunksize: 2 })).then((o) => ({ c, kind: 'aborted', o, items })))
      } else {
        const k = 1 + Math.floor(random() * 6)
        const items = range(1 + Math.floor(random() * 20)).map((v) => ({ v, ms: random() < 0.2 ? 15 : 0 }))
        const timeout = random() < 0.3 ? 20000 : undefined
        jobs.push(
          settle(pool.map(fns[k - 1], items, { timeout, chunksize: 1 + Math.floor(random() * 3) })).then((o) => ({
            c,
            kind: 'map',
            o,
            k,
            items,
          })),
        )
      }
    }
    const all = await within(60000, Promise.all(jobs), 'every call to settle')
    stop = true
    await killer
    let lost = 0
    for (const { c, kind, o, k, items } of all) {
      if (kind === 'spin') {
        t.true(o.error instanceof TimeoutError || o.error instanceof WorkerExitedError, `call ${c} (spins): ${o.error ?? o.value}`)
      } else if (kind === 'aborted') {
        if (o.error) t.true(o.error instanceof AbortError || o.error instanceof WorkerExitedError, `call ${c} (aborted): ${o.error}`)
        else
          t.deepEqual(
            o.value,
            items.map((i) => expected(1, i)),
          )
      } else if (o.error) {
        t.true(o.error instanceof WorkerExitedError, `call ${c}: ${o.error}`)
        lost++
      } else {
        t.deepEqual(
          o.value,
          items.map((i) => expected(k, i)),
          `call ${c}`,
        )
      }
    }
    t.log(`${kills} kills; ${lost} plain maps lost a chunk to them`)
    t.true(lost <= kills)
    const deadline = Date.now() + 10000
    while (pool.workers.length !== 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    t.is(pool.workers.length, 2)
    t.deepEqual(
      await within(
        20000,
        pool.map(
          target(2),
          range(5).map((v) => ({ v, ms: 0 })),
        ),
        'map after',
      ),
      [2, 4, 6, 8, 10],
    )
  },
)

test.serial('calls made from progress callbacks on a fresh pool each get their own result', async (t) => {
  let mismatches = 0
  for (let run = 0; run < 25; run++) {
    const pool = makePool(t)
    const nested = []
    await within(
      20000,
      pool.applyAsync((x) => x, [1], { callback: (v) => nested.push(pool.apply((y) => y * 10, [v])) }).get(),
      'applyAsync',
    )
    await within(20000, Promise.all(nested), 'the call made in the callback')
    const args = []
    const calls = []
    await within(
      20000,
      pool.map((x) => x, [1, 2, 3, 4], {
        chunksize: 1,
        onProgress: ({ done }) => {
          args.push(done)
          calls.push(pool.applyAsync((y) => [y, process.pid], [done]))
        },
      }),
      'map',
    )
    const results = await within(20000, Promise.all(calls.map((c) => c.get())), 'the calls made in onProgress')
    const ok = results.every((r, i) => r[0] === args[i])
    if (!ok) {
      mismatches++
      t.log(`run ${run}: calls made with ${JSON.stringify(args)} got ${JSON.stringify(results.map((r) => r[0]))}`)
    }
    pool.terminate()
    await within(10000, pool.join(), 'join')
  }
  t.is(mismatches, 0, 'every call resolves with its own result')
})

test.serial('without worker deaths every task runs exactly once, also when queued chunks are taken back and re-sent', async (t) => {
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const tasksUrl = new URL('./fixtures/pool-tasks.mjs', import.meta.url)
  const { logRun } = await import(tasksUrl)
  const dir = mkdtempSync(join(tmpdir(), 'pool-once-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (let run = 0; run < 4; run++) {
    const log = join(dir, `runs-${run}`)
    const pool = makePool(t, { modules: [tasksUrl] })
    const calls = []
    for (let c = 0; c < 12; c++) {
      // uneven tasks (some 20 ms): idle workers take back what waits behind the long ones
      const items = range(15).map((i) => [c * 100 + i, log, (i * 7 + c) % 5 === 0 ? 20 : 0])
      if (c % 3 === 0) calls.push(pool.starmap(logRun, items, { chunksize: 1 }))
      else if (c % 3 === 1) calls.push(pool.starmap(logRun, items))
      else calls.push(Promise.all(items.map((a) => pool.apply(logRun, a))))
    }
    await within(30000, Promise.all(calls), `run ${run}`)
    const counts = new Map()
    for (const line of readFileSync(log, 'utf8').trim().split('\n')) counts.set(line, (counts.get(line) ?? 0) + 1)
    t.is(counts.size, 180, `run ${run}: every task ran`)
    t.deepEqual(
      [...counts].filter(([, n]) => n > 1),
      [],
      `run ${run}: no task ran twice`,
    )
    pool.terminate()
    await within(10000, pool.join(), 'join')
  }
})
