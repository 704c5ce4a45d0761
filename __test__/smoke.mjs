// A quick end-to-end check for every supported Node major: a child process, a queue, a pipe and
// a pool (map, a handle sent to a running worker, a revived remote error, `await using`).
import assert from 'node:assert/strict'
import { Pipe, Pool, Process, Queue } from '../dist/index.js'

const q = new Queue()
const [mine, theirs] = Pipe()
const child = new Process({
  target: { module: new URL('./fixtures/smoke-worker.mjs', import.meta.url), name: 'echo' },
  args: [q, theirs],
  daemon: true,
})
await child.start()
theirs.close()
await mine.send({ n: 21, when: new Date(0), big: 2n ** 70n })
const reply = await q.get({ timeout: 10_000 })
assert.deepEqual(reply, { n: 42, when: new Date(0), big: 2n ** 71n })
assert.equal((await mine.recv({ timeout: 10_000 })).length, 1 << 20)
await child.join(10_000)
assert.equal(child.exitCode, 0)
{
  const pool = new Pool({ processes: 2 })
  assert.deepEqual(await pool.map((x) => x * x, [1, 2, 3, 4, 5], { chunksize: 2 }), [1, 4, 9, 16, 25])
  const sink = new Queue()
  await pool.apply((queue, v) => queue.putSync(v), [sink, 'via a running worker'])
  assert.equal(await sink.get({ timeout: 10_000 }), 'via a running worker')
  const err = await pool.apply(() => Promise.reject(Object.assign(new RangeError('no'), { code: 'E_NO' }))).catch((e) => e)
  assert.equal(err.code, 'ERR_REMOTE')
  assert.equal(err.cause.code, 'E_NO')
  assert.ok(err.cause instanceof RangeError)
  await pool[Symbol.asyncDispose]()
  assert.equal(pool.workers.length, 0)
}
console.log(`smoke ok on Node ${process.version}`)
