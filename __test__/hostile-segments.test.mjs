// A hostile child scribbles over the shared memory of every kind of object it was handed (Queue,
// JoinableQueue, SimpleQueue, both rings of a Pipe, Lock, RLock, Semaphore, BoundedSemaphore,
// Event, Condition, Barrier, Value, RawArray, SharedArray, SharedMemory): random garbage and
// targeted bad values (indices out of range, frame lengths beyond the ring, streams nobody
// finishes, owner fields naming dead, recycled, foreign or our own ids, bad headers). Then the
// process that made the objects uses each one — sync and async calls, each with a timeout — and
// every call must end with a value or a typed error (a package class, TypeError or RangeError,
// with a string `code`); none may hang, none may crash it. A case whose header a newcomer reads
// is also handed to a fresh child, which must end too.
//
// corrupt.test.mjs covers corruption made by the same process (frame headers, head/tail, payload,
// kinds) and the magic and capacity words seen by a child; this file adds the child as the
// attacker, every other kind of segment, the lock and stream words, and the remaining header words.
//
// The victim is fixtures/hostile-parent.mjs, run as its own program: a blocking call that hangs
// (or a crash) can only be seen from outside. It reports each call as a JSON line; a run that
// stops (no line for a while, or an exit by a signal) is recorded against the call it was in,
// and resumed from the next case.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import avaTest from 'ava'

import { checkNoLeaks, fixtureUrl, isDead, throttled, within } from './helpers.mjs'

const test = throttled(avaTest)

checkNoLeaks(test)

const VICTIM = fileURLToPath(fixtureUrl('hostile-parent.mjs'))
/**
 * No line from the victim for this long: it hangs in a blocking call. Longer than the victim's
 * own bound on starting a child (a Node boot, seconds on a loaded machine).
 */
const SILENCE_MS = 30000

/** Runs the victim once; resolves with its lines, how it ended, and the tail of its stderr. */
function runVictim(kind, group, from) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VICTIM, kind, group, String(from)], { stdio: ['ignore', 'pipe', 'pipe'] })
    const lines = []
    let buf = ''
    let stderr = ''
    let hung = false
    let timer
    const arm = () => {
      clearTimeout(timer)
      timer = setTimeout(() => {
        hung = true
        // The victim alone: its daemon children die with it, and its resource tracker (which
        // unlinks what it leaves in /dev/shm) must outlive it.
        child.kill('SIGKILL')
      }, SILENCE_MS)
    }
    arm()
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (d) => {
      buf += d
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(JSON.parse(buf.slice(0, i)))
        buf = buf.slice(i + 1)
      }
      arm()
    })
    child.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-3000)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ lines, code, signal, hung, stderr })
    })
  })
}

/** Is an error as the contract wants: a package class, TypeError or RangeError, with a string code? */
const typedOrDocumented = (kind, e) => e.typed || (kind === 'SharedMemory' && /^E[A-Z]+$/.test(e.code ?? ''))

/**
 * Runs every case of `kind` in `group` (resuming after a stop); returns the problems found, one
 * line each, and the pids of every child the victim started.
 */
/** The error a dead victim printed: its first line that names one, and where it was thrown. */
function lastError(stderr) {
  const lines = stderr.trim().split('\n')
  const first = lines.findIndex((l) => /^\w*(Error|Exception)\b|^Uncaught|^node:/.test(l.trim()))
  const picked = first === -1 ? lines.slice(-3) : lines.slice(first, first + 3)
  return picked.join(' | ').slice(0, 600)
}

async function attack(t, kind, group) {
  const problems = []
  const children = []
  let names
  let from = 0
  let calls = 0
  /** Truncations the kernel refused, in the first run (which attempts every case). */
  let refused
  for (;;) {
    const run = await runVictim(kind, group, from)
    names ??= run.lines.find((l) => l.cases)?.cases
    if (!names) {
      problems.push(`the victim did not start (exit ${run.code}, ${run.signal}): ${run.stderr}`)
      break
    }
    let last
    for (const l of run.lines) {
      if (l.child) children.push(l.child)
      if (l.refused !== undefined) refused ??= l.refused
      if (l.c === undefined) continue
      const where = `${names[l.c]} → ${l.op}`
      if (l.start) {
        last = l
        continue
      }
      last = undefined
      calls++
      if (l.hung) problems.push(`${where}: still pending ${l.hung} ms after its timeout`)
      else if (!l.ok && !typedOrDocumented(kind, l.error))
        problems.push(`${where}: untyped ${l.error.name} (code ${l.error.code}): ${l.error.message}`)
      else if (l.ok && l.value?.start && !l.value.start.typed)
        problems.push(`${where}: start() failed untyped: ${JSON.stringify(l.value.start)}`)
      else if (l.ok && typeof l.value === 'object' && l.value !== null && 'exitCode' in l.value && l.value.exitCode === null)
        problems.push(`${where}: the new child did not end within 20 s`)
    }
    if (run.lines.some((l) => l.done) && run.code === 0) break
    const how = run.hung
      ? `hung (no progress for ${SILENCE_MS} ms)`
      : `the victim died (exit ${run.code}, signal ${run.signal}): ${lastError(run.stderr)}`
    if (!last) {
      problems.push(`${kind} ${group} from case ${from} (${names[from]}): ${how}, outside any call`)
      break
    }
    problems.push(`${names[last.c]} → ${last.op}: ${how}`)
    from = last.c + 1
    if (from >= names.length) break
  }
  t.log(`${names?.length ?? 0} cases, ${calls} calls that ended`)
  if (group === 'truncate' && names && refused !== names.length)
    problems.push(`${kind}: ${names.length - (refused ?? 0)} of ${names.length} truncations were allowed (segments must be sealed)`)
  // Every child the victim started is gone (daemons die with it; the others were joined).
  await within(
    10000,
    (async () => {
      while (!children.every(isDead)) await new Promise((r) => setTimeout(r, 20))
    })(),
    'the children of the victim to be gone',
  ).catch(() => problems.push(`children of the victim left: ${children.filter((p) => !isDead(p))}`))
  return problems
}

const KINDS = [
  'Queue',
  'JoinableQueue',
  'SimpleQueue',
  'Pipe',
  'Lock',
  'RLock',
  'Semaphore',
  'BoundedSemaphore',
  'Event',
  'Condition',
  'Barrier',
  'Value',
  'RawArray',
  'SharedArray',
  'SharedMemory',
]

for (const kind of KINDS) {
  test.serial(`${kind}: a child scribbles over its segments; every later call ends with a value or a typed error`, async (t) => {
    t.timeout(600_000)
    t.deepEqual(await attack(t, kind, 'scribble'), [])
  })
}

// Shrinking a memory file under the mappings of other processes would make the next access past
// the new end a SIGBUS in every process that maps it: the package seals its memory files at
// their size, so the truncation is refused (asserted) and the victim's calls go on.
for (const kind of ['Queue', 'Pipe', 'Lock', 'Event', 'Value', 'SharedArray']) {
  test.serial(`${kind}: a child truncates its segment; the victim's calls end and it does not crash`, async (t) => {
    t.timeout(600_000)
    t.deepEqual(await attack(t, kind, 'truncate'), [])
  })
}
