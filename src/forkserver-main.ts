/**
 * The fork server process (see `forkserver.ts`): imports the package and the preload list,
 * rehearses a child's start (see `child/rehearsal.ts`), then serves requests until the program
 * that started it ends. `forkserverServe` returns in
 * every forked child, a spare: it warms up, waits for its request and becomes that child.
 */
import { writeSync } from 'node:fs'

import './index.js'
import './pool-worker.js'
import { becomeForkedChild, prepareSpare } from './child/forked.js'
import { rehearseInServer } from './child/rehearsal.js'
import { native } from './native.js'

const [listener, lifeline, ready, ...preload] = process.argv.slice(2)

async function warm(): Promise<void> {
  for (const href of preload) {
    try {
      await import(href)
    } catch (err) {
      // As Python's forkserver: a preload that fails is skipped (the child imports what it needs).
      writeSync(2, `multiproc fork server: cannot preload ${href}: ${(err as Error)?.stack ?? err}\n`)
    }
  }
}

async function main(): Promise<void> {
  await warm()
  try {
    await rehearseInServer()
  } catch (err) {
    // Only slower children without it.
    writeSync(2, `multiproc fork server: the rehearsal failed: ${(err as Error)?.stack ?? err}\n`)
  }
  // Serving from now on: the program's pools fork their workers (see `forkserverBooting`).
  native.closeFd(Number(ready))
  const spare = native.forkserverServe(Number(listener), Number(lifeline))
  // The server returns here when its program is gone; a spare, with the descriptor its request comes on.
  if (spare === null) return native.exitNow(0)
  await prepareSpare()
  const request = native.forkserverTakeRequest(spare)
  if (request === null) return native.exitNow(0)
  becomeForkedChild(request)
}

main()
