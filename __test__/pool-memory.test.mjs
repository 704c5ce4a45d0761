// Pool imap backpressure (API.md "Pool": iterables may be lazy; `imap` pulls input only as
// workers free up): a slow consumer of an imap over 1,000,000 items keeps the source pulled only
// a bounded way ahead and the parent's heap bounded. Measured in a separate node with
// --expose-gc (fixtures/pool-imap-memory.mjs), which prints a JSON result.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import { square } from './fixtures/pool-tasks.mjs'
import { checkNoLeaks, fixtureUrl, throttled, within } from './helpers.mjs'
import { createPool } from './pool-backend.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const MB = 1 << 20

function runFixture(args) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--expose-gc', fileURLToPath(fixtureUrl('pool-imap-memory.mjs')), ...args],
      { timeout: 50000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`pool-imap-memory ${args} failed: ${err.message}\n${stderr}`))
        else resolve(JSON.parse(stdout.trim().split('\n').at(-1)))
      },
    )
  })
}

test.serial(
  'imap over a generator of 1,000,000 items, slow consumer of 20,000: source < 2,000 items ahead, heap growth < 20 MB',
  async (t) => {
    const r = await within(55000, runFixture(['imap', '20000']), 'the fixture')
    t.log(r)
    t.true(r.gc, 'ran with --expose-gc')
    t.is(r.consumed, 20000)
    t.is(r.wrong, 0, 'results in order and correct')
    t.true(r.maxAhead < 2000, `the source was pulled ${r.maxAhead} items ahead of the consumer`)
    t.true(r.pulled < 20000 + 2000, `pulled ${r.pulled} in all`)
    t.is(r.pulledAfterBreak, r.pulled, 'nothing pulled after the break')
    t.true(r.finalised, 'the generator was closed on break')
    t.true(r.peak < 20 * MB, `heap grew by ${(r.peak / MB).toFixed(1)} MB`)
    t.true(r.finalGrowth < 20 * MB, `heap grew by ${(r.finalGrowth / MB).toFixed(1)} MB at the end`)
  },
)

test.serial(
  'imapUnordered over an async generator of 1,000,000 items, slow consumer of 20,000: source < 2,000 items ahead, heap growth < 20 MB',
  async (t) => {
    const r = await within(55000, runFixture(['imapUnordered', '20000']), 'the fixture')
    t.log(r)
    t.is(r.consumed, 20000)
    t.is(r.wrong, 0)
    t.true(r.maxAhead < 2000, `the source was pulled ${r.maxAhead} items ahead of the consumer`)
    t.is(r.pulledAfterBreak, r.pulled)
    t.true(r.finalised)
    t.true(r.peak < 20 * MB, `heap grew by ${(r.peak / MB).toFixed(1)} MB`)
  },
)

test.serial('a stalled imap consumer: the source is not pulled further (< 2,000 ahead) while nobody reads', async (t) => {
  const pool = createPool({ processes: 2, modules: [fixtureUrl('pool-tasks.mjs')] })
  t.teardown(async () => {
    pool.terminate()
    await within(10000, pool.join(), 'teardown join').catch(() => {})
  })
  for (const [name, start] of [
    ['imap', (src) => pool.imap(square, src)],
    ['imapUnordered', (src) => pool.imapUnordered(square, src)],
    ['imap chunksize 10', (src) => pool.imap(square, src, { chunksize: 10 })],
  ]) {
    let pulled = 0
    function* endless() {
      for (let i = 0; ; i++) {
        pulled++
        yield i
      }
    }
    const it = start(endless())
    for (let i = 0; i < 5; i++) await within(20000, it.next(), `${name} next`)
    await new Promise((r) => setTimeout(r, 500)) // the consumer stalls; the workers are idle
    const stalled = pulled
    t.true(stalled < 5 + 2000, `${name}: pulled ${stalled} while the consumer took 5`)
    await new Promise((r) => setTimeout(r, 300))
    t.is(pulled, stalled, `${name}: no more pulled while nobody reads`)
    // reading on pulls on
    for (let i = 0; i < 1000; i++) await within(20000, it.next(), `${name} next`)
    t.true(pulled >= 1005, `${name}: pulled ${pulled}`)
    await it.return()
  }
  pool.close()
  await within(20000, pool.join(), 'join')
})

test.serial('2,000 calls each with a fresh inline function whose closure holds 100 KB: heap growth < 20 MB', async (t) => {
  const r = await within(
    55000,
    new Promise((resolve, reject) => {
      execFile(
        process.execPath,
        ['--expose-gc', fileURLToPath(fixtureUrl('pool-target-memory.mjs')), '2000'],
        { timeout: 50000, killSignal: 'SIGKILL' },
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout.trim().split('\n').at(-1))),
      )
    }),
    'the fixture',
  )
  t.log(r)
  t.true(r.gc)
  t.is(r.wrong, 0)
  t.true(
    r.growth < 20 * MB,
    `heap grew by ${(r.growth / MB).toFixed(1)} MB: the pool keeps the functions (and their closures) it was given`,
  )
})

test.serial('imap with slow tasks pulls input only as workers free up (at most 4 chunks per worker ahead of the results)', async (t) => {
  const { sleepPid } = await import('./fixtures/pool-tasks.mjs')
  const pool = createPool({ processes: 2, modules: [fixtureUrl('pool-tasks.mjs')] })
  t.teardown(async () => {
    pool.terminate()
    await within(10000, pool.join(), 'teardown join').catch(() => {})
  })
  await within(20000, pool.map(sleepPid, [1, 1, 1, 1], { chunksize: 1 }), 'warm-up')
  for (const chunksize of [1, 4]) {
    let pulled = 0
    function* source() {
      for (let i = 0; i < 40; i++) {
        pulled++
        yield 30 // ms of work per item
      }
    }
    let got = 0
    let maxAhead = 0
    await within(
      30000,
      (async () => {
        for await (const _ of pool.imap(sleepPid, source(), { chunksize })) {
          got++
          maxAhead = Math.max(maxAhead, pulled - got)
        }
      })(),
      'imap',
    )
    t.is(got, 40)
    t.true(maxAhead <= 2 * 4 * chunksize, `chunksize ${chunksize}: the input was pulled ${maxAhead} items ahead of the results`)
  }
})
