/**
 * The child runtime, shared by spawned and forked children: reads the boot message from the
 * control socket, revives the handles in its arguments, signals readiness, runs the target and
 * exits with its status (1 and the stack on stderr if it throws, as Python does).
 */
import { readSync, writeSync } from 'node:fs'
import v8 from 'node:v8'

import '../queue.js'
import '../connection.js'
import '../synchronize.js'
import '../sharedctypes.js'
import '../shared-memory.js'
import '../proxy.js'
import { unpackHandles } from '../handles.js'
import { native } from '../native.js'
import { activeChildren, type Boot, setIdentity, whileBootstrapping } from '../process.js'
import { resolveTarget } from '../target.js'

function readExactly(fd: number, n: number): Buffer {
  const buf = Buffer.alloc(n)
  let off = 0
  while (off < n) {
    const got = readSync(fd, buf, off, n - off, null)
    if (got === 0) process.exit(1) // the parent went away before we started
    off += got
  }
  return buf
}

/** How the child came to be: spawned (descriptors at the parent's numbers) or forked. */
export interface ChildStart {
  /** The control socket. */
  fd: number
  /** The parent's descriptor numbers → ours (forked children receive theirs renumbered). */
  fdMap?: Map<number, number>
  /** Forked: the parent's death is watched through a lifeline, not the parent-death signal. */
  forked: boolean
}

async function main(start: ChildStart): Promise<number> {
  const { fd } = start
  native.setCloexec(fd, true)
  const len = readExactly(fd, 4).readUInt32LE(0)
  const boot = v8.deserialize(readExactly(fd, len)) as Boot
  if (boot.daemon && !start.forked) native.dieWithParent(boot.parentPid)
  for (const f of boot.fds) native.setCloexec(start.fdMap?.get(f) ?? f, true)
  setIdentity(boot.name, boot.identity, boot.daemon, boot.parentPid, boot.parentName)
  const args = unpackHandles(boot.args, start.fdMap ? { fdMap: start.fdMap } : {}) as unknown[]
  // The one byte that says we run; the socket stays open (and unwatched) until we exit, when
  // its hang-up tells the parent.
  writeSync(fd, 'R')
  let code = 0
  try {
    const fn = await whileBootstrapping(() => resolveTarget(boot.target))
    await fn(...args)
  } catch (err) {
    process.stderr.write(`Process ${boot.name}:\n${err instanceof Error ? (err.stack ?? String(err)) : String(err)}\n`)
    code = 1
  }
  // As Python does at exit: wait for our own non-daemon children.
  for (const child of activeChildren()) if (!child.daemon) await child.join()
  return code
}

/** Runs the child to its end; never returns. */
export function runChild(start: ChildStart): void {
  main(start).then(
    (code) => process.exit(typeof process.exitCode === 'number' && process.exitCode !== 0 ? process.exitCode : code),
    (err) => {
      process.stderr.write(`${err?.stack ?? err}\n`)
      process.exit(1)
    },
  )
}
