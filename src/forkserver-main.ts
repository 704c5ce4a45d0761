/**
 * The fork server process (see `forkserver.ts`): imports the package and the preload list,
 * then serves requests until the program that started it ends. `forkserverServe` returns in
 * every forked child, which then becomes the child it was asked for.
 */
import { writeSync } from 'node:fs'

import './index.js'
import './pool-worker.js'
import { becomeForkedChild } from './child/forked.js'
import { native } from './native.js'

const [listener, lifeline, ...preload] = process.argv.slice(2)

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

warm().then(() => {
  const request = native.forkserverServe(Number(listener), Number(lifeline))
  if (request === null) native.exitNow(0)
  else becomeForkedChild(request)
})
