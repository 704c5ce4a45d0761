// A strict TypeScript consumer: the same as esm.mjs, typed, with `await using` (native on Node
// ≥ 24, turned into try/finally by tsc for older ones).
import assert from 'node:assert/strict'
import { Lock, Pool, Process, Queue, TimeoutError } from 'multiproc'

{
  await using pool = new Pool({ processes: 2 })
  const squares: number[] = await pool.map((x: number) => x * x, [1, 2, 3, 4])
  assert.deepEqual(squares, [1, 4, 9, 16])
}

const queue = new Queue<string>()
const lock = new Lock()
await lock.acquire()
const child = new Process({
  target: (q: Queue<string>, l: Lock) => {
    l.acquireSync()
    q.putSync('after the lock')
    l.release()
  },
  args: [queue, lock],
})
await child.start()
const early: unknown = await queue.get({ timeout: 200 }).catch((err: unknown) => err)
assert.ok(early instanceof TimeoutError)
lock.release()
const got: string = await queue.get({ timeout: 10_000 })
assert.equal(got, 'after the lock')
await child.join(10_000)
assert.equal(child.exitCode, 0)
console.log(`typescript ok on Node ${process.version}`)
