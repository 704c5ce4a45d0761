// A real Redis for the BullMQ tests: started on a Unix socket in a fresh directory, without
// persistence (a restart loses everything, as the tests want), and stopped by the caller. Also
// starts `multiproc worker` hosts against it.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url))

/** Throws, saying how to install it, when there is no `redis-server` on PATH. */
export function checkRedisInstalled() {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (r.error || r.status !== 0) {
    throw new Error(
      'redis-server is not installed, and the BullMQ tests start their own Redis: install it (Debian: apt-get install -y redis-server)',
    )
  }
  return r.stdout.trim()
}

/** Resolves once something answers PING on the socket, or rejects after `ms`. */
async function waitForPing(socket, ms) {
  const deadline = Date.now() + ms
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = createConnection(socket)
      c.once('error', () => resolve(false))
      c.once('connect', () => c.write('PING\r\n'))
      c.once('data', (d) => {
        c.destroy()
        resolve(d.toString().startsWith('+PONG'))
      })
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`redis-server did not answer on ${socket} within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * Starts redis-server. `{ url, socket, stop(), restart() }`: `restart()` kills it and starts a
 * new one on the same socket (everything it held is lost).
 */
export async function startRedis() {
  checkRedisInstalled()
  const dir = mkdtempSync(join(tmpdir(), 'multiproc-redis-'))
  const socket = join(dir, 'redis.sock')
  let proc
  const launch = async () => {
    proc = spawn(
      'redis-server',
      [
        '--port',
        '0',
        '--unixsocket',
        socket,
        '--unixsocketperm',
        '700',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    )
    await waitForPing(socket, 20_000)
  }
  const kill = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise((r) => proc.once('exit', r))
    proc.kill('SIGKILL')
    await exited
  }
  await launch()
  return {
    url: `unix://${socket}`,
    socket,
    get pid() {
      return proc.pid
    },
    async restart(downMs = 0) {
      await kill()
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs))
      await launch()
    },
    async stop() {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * Starts `multiproc worker` on `url`/`queue`; resolves with the child process once it says it is
 * serving. Its stderr is kept in `child.output` (and shown when `verbose`).
 */
export async function startWorkerHost({ url, queue, modules = [], processes = 2, args = [], env = {} }) {
  const argv = [CLI, 'worker', '--redis', url, '--queue', queue, '--processes', String(processes), ...args]
  for (const m of modules) argv.push('--modules', m instanceof URL ? fileURLToPath(m) : m)
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'inherit', 'pipe'], env: { ...process.env, ...env } })
  child.output = ''
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`multiproc worker did not start within 60 s:\n${child.output}`)), 60_000)
    child.stderr.on('data', (d) => {
      child.output += d
      if (process.env.MULTIPROC_TEST_VERBOSE) process.stderr.write(d)
      if (child.output.includes('multiproc worker: queue')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`multiproc worker exited (${code ?? signal}) before it served:\n${child.output}`))
    })
  })
  return child
}

/** Stops a host with `signal` (SIGTERM drains) and resolves with how it exited. */
export async function stopWorkerHost(child, signal = 'SIGTERM', ms = 30_000) {
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode }
  const exited = new Promise((r) => child.once('exit', (code, sig) => r({ code, signal: sig })))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  try {
    return await exited
  } finally {
    clearTimeout(timer)
  }
}
