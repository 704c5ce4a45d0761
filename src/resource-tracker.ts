/**
 * The resource tracker: one small helper process per top-level process tree that unlinks the
 * named shared-memory segments still registered when the tree ends, crashed or not.
 *
 * The top-level process starts it on its first named segment and keeps the write end of a pipe
 * to it; every child started afterwards inherits a copy of that end (and registers through it).
 * The tracker reads registrations until the pipe hits end-of-file, which happens only once every
 * process holding a copy has exited, then unlinks what is left. It is started through a shell
 * that exits at once, so it is nobody's child here and never appears in `activeChildren()`.
 */
import { writeSync } from 'node:fs'

import { native } from './native.js'

const ENV = 'MULTIPROC_TRACKER_FD'
const MAIN = new URL('./resource-tracker-main.js', import.meta.url)

let writeFd: number | undefined = (() => {
  const v = process.env[ENV]
  delete process.env[ENV]
  if (v === undefined) return undefined
  const fd = Number(v)
  if (!Number.isInteger(fd) || fd < 0) return undefined
  try {
    native.setCloexec(fd, true)
  } catch {
    return undefined
  }
  return fd
})()

function ensureRunning(): number {
  if (writeFd !== undefined) return writeFd
  const [r, w] = native.trackerPipe() as [number, number]
  try {
    const shell = native.NativeChild.spawn({
      program: '/bin/sh',
      // The shell starts the tracker in the background and exits: init adopts the tracker.
      args: ['-c', '"$0" "$@" </dev/null >/dev/null 2>&1 &', process.execPath, MAIN.pathname, String(r)],
      env: Object.entries(process.env).flatMap(([k, v]) => (v === undefined || k === ENV ? [] : [`${k}=${v}`])),
      inherit: [r],
      daemon: false,
    })
    shell.waitSync(10_000)
  } finally {
    native.closeFd(r)
  }
  writeFd = w
  return w
}

function send(op: 'R' | 'U', name: string): void {
  const fd = op === 'R' ? ensureRunning() : writeFd
  if (fd === undefined) return
  try {
    writeSync(fd, `${JSON.stringify({ op, name })}\n`)
  } catch (err) {
    // The tracker is gone (it never started, or was killed): nothing can be registered any more.
    if (op === 'R') throw err
  }
}

/** Unlink `name` when this process tree ends, unless it is unregistered first. */
export function register(name: string): void {
  send('R', name)
}

export function unregister(name: string): void {
  send('U', name)
}

/** @internal Registers through the tracker pipe `fd` from now on (a forked child's, renumbered). */
export function adoptTracker(fd: number): void {
  writeFd = fd
}

/** What a child process must inherit to register through the same tracker. */
export function trackerInheritance(): { env: Record<string, string>; fds: number[] } {
  if (writeFd === undefined) return { env: {}, fds: [] }
  return { env: { [ENV]: String(writeFd) }, fds: [writeFd] }
}
