// A quick end-to-end check for every supported Node major: a child process, a queue and a pipe.
import assert from 'node:assert/strict'
import { Pipe, Process, Queue } from '../dist/index.js'

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
console.log(`smoke ok on Node ${process.version}`)
