// The pool suites over the BullMQ backend (`npm run test:bullmq`): a Redis of its own (a Unix
// socket, no persistence) and two `multiproc worker` hosts, then ava on the pool test files with
// MULTIPROC_TEST_POOL_BACKEND=bullmq (one test at a time: the files share one queue, which is
// FIFO, and their watchdogs are set for a pool of their own), then everything stopped. Extra arguments go to ava (a
// file list replaces the default one; `--match` narrows).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { startRedis, startWorkerHost, stopWorkerHost } from '../__test__/redis-server.mjs'

/** The pool suites that make sense without handles (the handle tests skip themselves by capability). */
const FILES = ['__test__/pool.test.mjs', '__test__/pool-faults.test.mjs', '__test__/pool-stress.test.mjs', '__test__/pool-memory.test.mjs']
const QUEUE = 'multiproc-pool-suite'

const root = fileURLToPath(new URL('..', import.meta.url))
const args = process.argv.slice(2)
const files = args.some((a) => a.endsWith('.mjs')) ? [] : FILES

const redis = await startRedis()
const hosts = []
let status = 1
try {
  for (let i = 0; i < 2; i++) {
    hosts.push(
      await startWorkerHost({
        url: redis.url,
        queue: QUEUE,
        processes: 2,
        modules: [new URL('../__test__/fixtures/pool-tasks.mjs', import.meta.url)],
        // The suites send functions by source and name fixture modules of their own.
        args: ['--allow-source', '--lock-duration', '4000', '--stalled-interval', '2000'],
      }),
    )
  }
  const ava = spawn(
    process.execPath,
    [`${root}node_modules/ava/entrypoints/cli.mjs`, '--serial', '--concurrency', '1', ...files, ...args],
    {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, MULTIPROC_TEST_POOL_BACKEND: 'bullmq', MULTIPROC_TEST_REDIS: redis.url, MULTIPROC_TEST_QUEUE: QUEUE },
    },
  )
  status = await new Promise((resolve) => ava.once('exit', (code) => resolve(code ?? 1)))
} finally {
  for (const h of hosts) {
    const how = await stopWorkerHost(h)
    if (how.code !== 0) {
      console.error(`a worker host ended with ${how.code ?? how.signal}:\n${h.output}`)
      status ||= 1
    }
  }
  await redis.stop()
}
process.exit(status)
