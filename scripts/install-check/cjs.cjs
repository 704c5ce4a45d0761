// A CommonJS consumer: the same as esm.mjs, through require().
const assert = require('node:assert/strict')
const { Lock, Pool, Process, Queue } = require('multiproc')

async function main() {
  const pool = new Pool({ processes: 2 })
  try {
    assert.deepEqual(await pool.map((x) => x + 1, [1, 2, 3]), [2, 3, 4])
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
  assert.equal((await queue.get({ timeout: 200 }).catch((err) => err)).code, 'ERR_TIMEOUT')
  lock.release()
  assert.equal(await queue.get({ timeout: 10_000 }), 'after the lock')
  await child.join(10_000)
  assert.equal(child.exitCode, 0)
  console.log(`cjs ok on Node ${process.version}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
