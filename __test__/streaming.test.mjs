// Messages larger than the ring, in situations where waiting goes wrong easily: close() while one
// is streaming (the stream must still finish, since a closed queue drains, and the waiting process
// must stay responsive and idle), and non-blocking puts of one (they must not block).
// Each scenario runs in its own node (fixtures/run-streaming.mjs): if a wait spins without
// yielding or blocks the thread, only an outside timeout can end it.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { checkNoLeaks, fixtureUrl } from './helpers.mjs'

checkNoLeaks(test)

function run(mode) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [fileURLToPath(fixtureUrl('run-streaming.mjs')), mode],
      { timeout: 8000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => resolve({ err, stdout, stderr }),
    )
  })
}

test('close() while this process streams a large put: the event loop runs, the put completes once drained', async (t) => {
  const { err, stdout, stderr } = await run('put')
  t.falsy(err, `the scenario did not finish (event loop starved?): ${err?.message} ${stderr}`)
  const r = JSON.parse(stdout)
  t.log(r)
  // The put settles once its last byte is in the ring, the get once it has read it: either order.
  t.deepEqual(r.events[0], 'timer')
  t.deepEqual(r.events.slice(1, 3).sort(), ['get: 8388608 bytes', 'put: undefined'])
  t.deepEqual(r.events.slice(3), ['get after drain: EOFError'])
  t.true(r.cpuMs < r.wallMs / 2, `${r.cpuMs} ms of CPU in ${r.wallMs} ms while waiting for a reader`)
})

test('close() while this process is reading a stalled large message: the event loop runs, the get completes', async (t) => {
  const { err, stdout, stderr } = await run('get')
  t.falsy(err, `the scenario did not finish: ${err?.message} ${stderr}`)
  const r = JSON.parse(stdout)
  t.log(r)
  t.deepEqual(
    r.events,
    ['timer', 'get: 8388608 bytes', 'get after drain: EOFError'],
    'the 300 ms timer fires while the get waits for the stalled producer',
  )
  t.true(r.cpuMs < r.wallMs / 2, `${r.cpuMs} ms of CPU in ${r.wallMs} ms while waiting for the producer`)
})

test('putNowait of a message larger than the ring, with nobody reading, does not block', async (t) => {
  const { err, stdout, stderr } = await run('putNowait')
  t.falsy(err, `putNowait blocked the thread: ${err?.message} ${stderr}`)
  const r = JSON.parse(stdout)
  for (const [how, outcome] of Object.entries(r)) t.true(outcome === 'Full' || outcome === 'returned', `${how}: ${outcome}`)
})
