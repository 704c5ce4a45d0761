import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { checkNoLeaks, fixtureUrl } from './helpers.mjs'

checkNoLeaks(test)

test('a process whose waits are all over exits by itself: nothing of ours holds the event loop', async (t) => {
  const started = performance.now()
  const { err, stdout, stderr } = await new Promise((resolve) => {
    execFile(process.execPath, [fileURLToPath(fixtureUrl('exits.mjs'))], { timeout: 15000, killSignal: 'SIGKILL' }, (err, stdout, stderr) =>
      resolve({ err, stdout, stderr }),
    )
  })
  t.falsy(err, `the script did not exit on its own: ${err?.message} ${stderr}`)
  t.deepEqual(stdout.trim().split('\n'), ['late', 'x', 'TimeoutError', 'done'])
  t.log(`exited after ${(performance.now() - started).toFixed(0)} ms`)
})
