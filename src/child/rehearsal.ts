/**
 * The fork server's dry run of what a forked child does first: decode a request and a boot
 * message, revive a Queue from its handle, import a target module and run it, put and get. Run
 * in the server before its first fork, it leaves that code compiled (with its type feedback) in
 * the heap every child starts from; each child would otherwise compile it on its requester's
 * time. Measured here: Process start → first message p50 6.5–9.5 ms without, 4.0–6.1 ms with.
 */
import v8 from 'node:v8'
import vm from 'node:vm'

import { packHandles, unpackHandles } from '../handles.js'
import { Queue } from '../queue.js'
import { resolveTarget } from '../target.js'

const TARGET = new URL('./rehearsal-target.js', import.meta.url)

/**
 * Rehearses twice (the second run finds the type feedback of the first), then collects the
 * garbage, so that the rehearsal's queues have closed their descriptors before any child is
 * forked (a forked child inherits every open descriptor).
 */
export async function rehearseInServer(): Promise<void> {
  await rehearse()
  await rehearse()
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  v8.setFlagsFromString('--no-expose-gc')
  gc()
  // Finalizers of native objects run on the next turns of the loop.
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
}

async function rehearse(): Promise<void> {
  JSON.parse(JSON.stringify({ ppid: process.pid, env: process.env, cwd: process.cwd(), execArgv: process.execArgv, fds: [] }))
  const q = new Queue()
  try {
    const packed = packHandles([q])
    const boot = v8.deserialize(v8.serialize({ name: 'rehearsal', identity: [1], args: packed.value, fds: packed.fds }))
    const [revived] = unpackHandles(boot.args) as [Queue]
    // A module URL of its own (the query), so that the loader goes all the way as for a target.
    const module = `${TARGET.href}?spare=${process.pid}`
    const fn = await resolveTarget({ kind: 'export', module, name: 'rehearsalTarget' })
    await fn(revived)
    await q.get()
    q.putSync(2)
    q.getSync()
  } finally {
    q.close()
  }
}
