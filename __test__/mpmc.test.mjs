import test from 'ava'

import { Process, Queue } from '../dist/index.js'
import { checkNoLeaks, fixture, guard, joined } from './helpers.mjs'

checkNoLeaks(test)

const PRODUCERS = 4
const CONSUMERS = 2
const PER_PRODUCER = 50_000

test.serial(
  `${PRODUCERS} producer processes × ${PER_PRODUCER} messages, ${CONSUMERS} consumer processes: exactly once, FIFO per producer`,
  async (t) => {
    const q = new Queue()
    const results = new Queue()
    const consumers = Array.from({ length: CONSUMERS }, (_, id) =>
      guard(
        t,
        new Process({ target: fixture('mpmc.mjs', 'consume'), args: [q, results, id, PRODUCERS, PER_PRODUCER], name: `consumer-${id}` }),
      ),
    )
    const producers = Array.from({ length: PRODUCERS }, (_, id) =>
      guard(t, new Process({ target: fixture('mpmc.mjs', 'produce'), args: [q, id, PER_PRODUCER], name: `producer-${id}` })),
    )
    for (const c of consumers) await c.start()
    await Promise.all(producers.map((p) => p.start()))
    for (const p of producers) t.is(await joined(p, 90000), 0, `${p.name} exits 0`)
    // Every producer is done: one sentinel per consumer, after all real items (FIFO per producer).
    for (let i = 0; i < CONSUMERS; i++) await q.put(null)

    const reports = []
    for (let i = 0; i < CONSUMERS; i++) reports.push(await results.get({ timeout: 60000 }))
    for (const c of consumers) t.is(await joined(c, 30000), 0, `${c.name} exits 0`)
    t.deepEqual(reports.map((r) => r.id).sort(), [0, 1])

    for (const r of reports) {
      t.is(r.malformed, 0, `consumer ${r.id} got only well-formed items`)
      for (let p = 0; p < PRODUCERS; p++) {
        const seqs = r.seen[p]
        let increasing = true
        for (let i = 1; i < seqs.length; i++) {
          if (seqs[i] <= seqs[i - 1]) {
            increasing = false
            t.fail(`consumer ${r.id}: producer ${p} seq ${seqs[i]} after ${seqs[i - 1]} (index ${i})`)
            break
          }
        }
        t.true(increasing, `consumer ${r.id} sees producer ${p}'s items in order`)
      }
    }

    // Exactly once: each (producer, seq) seen by exactly one consumer, none missing.
    for (let p = 0; p < PRODUCERS; p++) {
      const hits = new Uint8Array(PER_PRODUCER)
      let total = 0
      let sum = 0
      for (const r of reports) {
        for (const s of r.seen[p]) {
          hits[s]++
          total++
          sum += s
        }
      }
      t.is(total, PER_PRODUCER, `producer ${p}: count`)
      t.is(sum, (PER_PRODUCER * (PER_PRODUCER - 1)) / 2, `producer ${p}: sum of sequence numbers`)
      const wrong = hits.findIndex((h) => h !== 1)
      t.is(wrong, -1, `producer ${p}: seq ${wrong} arrived ${hits[wrong]} times`)
    }
    const perConsumer = reports.map((r) => r.counts.reduce((a, b) => a + b, 0))
    t.is(
      perConsumer.reduce((a, b) => a + b, 0),
      PRODUCERS * PER_PRODUCER,
    )
    t.log(`items per consumer: ${perConsumer.join(', ')}`)
    t.true(q.empty())
  },
)

test.serial('un-awaited async puts keep FIFO per producer across processes (maxsize 5)', async (t) => {
  const N = 5000
  const q = new Queue({ maxsize: 5 })
  const producers = [0, 1].map((id) => guard(t, new Process({ target: fixture('misc.mjs', 'putUnawaited'), args: [q, id, N] })))
  for (const p of producers) await p.start()
  const next = [0, 0]
  for (let i = 0; i < 2 * N; i++) {
    const [id, seq] = await q.get({ timeout: 20000 })
    if (seq !== next[id]) t.fail(`producer ${id}: got ${seq}, expected ${next[id]}`)
    next[id]++
  }
  t.deepEqual(next, [N, N])
  for (const p of producers) t.is(await joined(p), 0)
  t.true(q.empty())
})
