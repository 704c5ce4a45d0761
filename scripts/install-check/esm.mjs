// An ESM consumer: a Pool.map, a Process fed through a Queue, and a Lock held across processes.
import assert from 'node:assert/strict'
import { Lock, Pool, Process, Queue } from 'multiproc'

const pool = new Pool({ processes: 2 })
try {
  assert.deepEqual(await pool.map((x) => x * x, [1, 2, 3, 4]), [1, 4, 9, 16])
} finally {
  pool.close()
  await pool.join()
}

const queue = new Queue()
const lock = new Lock()
await lock.acquire()
const child = new Process({
  target: (q, l) => {
    l.acquireSync()
    q.putSync('after the lock')
    l.release()
  },
  args: [queue, lock],
})
await child.start()
// The child blocks on the lock this process holds: nothing arrives until it is released.
assert.equal((await queue.get({ timeout: 200 }).catch((err) => err)).code, 'ERR_TIMEOUT')
lock.release()
assert.equal(await queue.get({ timeout: 10_000 }), 'after the lock')
await child.join(10_000)
assert.equal(child.exitCode, 0)
console.log(`esm ok on Node ${process.version}`)
