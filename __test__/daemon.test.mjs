import { spawn } from 'node:child_process'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { checkNoLeaks, fixtureUrl, isDead, procStat, within } from './helpers.mjs'

checkNoLeaks(test)

/** Collects a child's stdout and resolves lines as they come. */
function lineReader(stream) {
  let buf = ''
  const waiters = []
  const lines = []
  stream.setEncoding('utf8')
  stream.on('data', (chunk) => {
    buf += chunk
    let i = buf.indexOf('\n')
    while (i >= 0) {
      lines.push(buf.slice(0, i))
      buf = buf.slice(i + 1)
      i = buf.indexOf('\n')
    }
    for (const w of waiters.splice(0)) w()
  })
  stream.on('end', () => {
    for (const w of waiters.splice(0)) w()
  })
  return {
    async next(match) {
      for (;;) {
        const found = lines.find(match)
        if (found !== undefined) return found
        if (stream.readableEnded) throw new Error(`stream ended before a matching line; got ${JSON.stringify(lines)}`)
        await new Promise((r) => waiters.push(r))
      }
    },
  }
}

test.serial('daemon children die with a SIGKILLed parent; a non-daemon child runs on and sees it gone', async (t) => {
  const parent = spawn(process.execPath, [fileURLToPath(fixtureUrl('daemon-parent.mjs'))], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => parent.once('exit', (code, signal) => resolve({ code, signal })))
  const out = lineReader(parent.stdout)
  let info
  try {
    info = JSON.parse(
      await within(
        20000,
        out.next((l) => l.startsWith('{')),
        'the parent reporting its children',
      ),
    )
  } catch (err) {
    parent.kill('SIGKILL')
    throw err
  }
  t.is(info.self, parent.pid)
  t.is(info.daemons.length, 3)
  for (const pid of [...info.daemons, info.watcher]) {
    const st = procStat(pid)
    t.truthy(st, `child ${pid} runs before the parent is killed`)
    t.is(st?.ppid, parent.pid, `child ${pid} is the parent's child`)
  }

  parent.kill('SIGKILL')
  t.deepEqual(await within(5000, exited, 'the parent exiting'), { code: null, signal: 'SIGKILL' })

  // Daemons: gone (or zombies awaiting their new reaper) within 1 s; poll for up to 2 s.
  const killedAt = performance.now()
  let alive = info.daemons
  while (alive.length > 0 && performance.now() - killedAt < 2000) {
    await delay(20)
    alive = alive.filter((pid) => !isDead(pid))
  }
  t.deepEqual(
    alive.map((pid) => ({ pid, ...procStat(pid) })),
    [],
    'daemon children outlived their SIGKILLed parent',
  )
  t.log(`daemon children gone ${(performance.now() - killedAt).toFixed(0)} ms after the parent's death was seen`)
  for (const pid of alive) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }

  // The non-daemon child runs on (Python semantics) and sees parentProcess().isAlive() turn false.
  const line = await within(
    10000,
    out.next((l) => l.startsWith('watcher')),
    'the watcher noticing its parent died',
  )
  t.is(line, `watcher saw parent ${info.self} die`)
  const watcherGone = performance.now()
  while (!isDead(info.watcher) && performance.now() - watcherGone < 5000) await delay(20)
  if (!isDead(info.watcher)) {
    process.kill(info.watcher, 'SIGKILL')
    t.fail('the watcher did not exit after reporting')
  }
})
