/**
 * The entry point of every child process: reads its boot message from the control socket,
 * revives the handles in its arguments, signals readiness, runs the target and exits with its
 * status (1 and the stack on stderr if it throws, as Python does).
 */
import { readSync } from 'node:fs'
import net from 'node:net'
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

async function main(): Promise<number> {
  const fd = Number(process.env.MULTIPROC_CONTROL_FD)
  delete process.env.MULTIPROC_CONTROL_FD
  native.setCloexec(fd, true)
  const len = readExactly(fd, 4).readUInt32LE(0)
  const boot = v8.deserialize(readExactly(fd, len)) as Boot
  if (boot.daemon) native.dieWithParent(boot.parentPid)
  for (const f of boot.fds) native.setCloexec(f, true)
  setIdentity(boot.name, boot.identity, boot.daemon, boot.parentPid, boot.parentName)
  const args = unpackHandles(boot.args) as unknown[]
  const control = new net.Socket({ fd, readable: true, writable: true })
  control.on('error', () => {})
  control.unref()
  control.write('R')
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

main().then(
  (code) => process.exit(typeof process.exitCode === 'number' && process.exitCode !== 0 ? process.exitCode : code),
  (err) => {
    process.stderr.write(`${err?.stack ?? err}\n`)
    process.exit(1)
  },
)
