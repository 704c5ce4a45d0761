// Containers whose seccomp profile refuses a system call the package uses: `futex_waitv` (the
// waker thread's wait on every armed word; also missing on kernels before 5.16) and
// `pidfd_open` (watching children; refused with EPERM by older Docker profiles). A small C
// program installs a real seccomp filter refusing one call and runs a Node program under it: the
// package must fall back and work, and an idle async wait must not spin.
import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { checkNoLeaks } from './helpers.mjs'

checkNoLeaks(test)

const SOURCE = fileURLToPath(new URL('./fixtures/seccomp-deny.c', import.meta.url))
const PROGRAM = fileURLToPath(new URL('./fixtures/seccomp-idle.mjs', import.meta.url))
const NR = { x64: { futex_waitv: 449, pidfd_open: 434 }, arm64: { futex_waitv: 449, pidfd_open: 434 } }[process.arch]
const ERRNO = { ENOSYS: 38, EPERM: 1 }

const dir = mkdtempSync(join(tmpdir(), 'multiproc-seccomp-'))
const deny = join(dir, 'deny')
test.before(() => execFileSync('cc', ['-O2', '-o', deny, SOURCE]))
test.after.always(() => rmSync(dir, { recursive: true, force: true }))

/** Runs the fixture with system call `call` refused with `errno`; resolves with its JSON line. */
function runRefusing(call, errno) {
  return new Promise((resolve, reject) => {
    execFile(deny, [String(NR[call]), String(ERRNO[errno]), process.execPath, PROGRAM], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${call} refused with ${errno}: ${err.message}\n${stderr}`))
      else resolve(JSON.parse(stdout.trim().split('\n').at(-1)))
    })
  })
}

const works = (t, r) => {
  t.is(r.got, 'from the child')
  t.is(r.exitCode, 0)
  t.deepEqual(r.squared, [1, 4, 9])
}

test('futex_waitv refused (ENOSYS): everything works, and an idle wait sleeps instead of spinning', async (t) => {
  const r = await runRefusing('futex_waitv', 'ENOSYS')
  works(t, r)
  t.log(`idle get of ${r.idle.wallMs.toFixed(0)} ms cost ${r.idle.cpuMs.toFixed(1)} ms of CPU`)
  // Spinning costs a whole core (the wall time); the fallback looks at the words every millisecond.
  t.true(r.idle.cpuMs < r.idle.wallMs * 0.25, `${r.idle.cpuMs} ms of CPU in ${r.idle.wallMs} ms`)
})

test('futex_waitv refused (EPERM): the same', async (t) => {
  works(t, await runRefusing('futex_waitv', 'EPERM'))
})

test('pidfd_open refused (EPERM, older container profiles): children are watched by pid instead', async (t) => {
  works(t, await runRefusing('pidfd_open', 'EPERM'))
})

test('pidfd_open missing (ENOSYS, kernels before 5.3): the same', async (t) => {
  works(t, await runRefusing('pidfd_open', 'ENOSYS'))
})
