// The backend the pool suites run against, chosen by MULTIPROC_TEST_POOL_BACKEND (default
// `local`). Every pool the suites (and their fixture scripts) make comes from createPool(), so
// another backend runs the same tests by setting the variable. A test that needs something only
// some backends give is declared through needs(test, capability) and skipped elsewhere.
import { Pool } from '../dist/index.js'

/** Each backend the suites know, by name: how to get it. */
const BACKENDS = {
  local: async () => (await import('../dist/pool-local-link.js')).localProcesses,
  /** The local backend with only what the link interface promises (what a remote backend gives). */
  narrow: async () => (await import('./fixtures/pool-narrow-backend.mjs')).narrow,
  /** Remote workers through BullMQ: a Redis and `multiproc worker` hosts, as `npm run test:bullmq` starts them. */
  bullmq: async () => {
    const url = process.env.MULTIPROC_TEST_REDIS
    if (!url) {
      throw new Error(
        'MULTIPROC_TEST_POOL_BACKEND=bullmq needs MULTIPROC_TEST_REDIS and worker hosts serving it: run `npm run test:bullmq`',
      )
    }
    const { bullmq } = await import('../dist/bullmq.js')
    return bullmq({ connection: url, queue: process.env.MULTIPROC_TEST_QUEUE || 'multiproc-pool-suite' })
  },
}

const name = process.env.MULTIPROC_TEST_POOL_BACKEND || 'local'
if (!Object.hasOwn(BACKENDS, name)) {
  throw new Error(`MULTIPROC_TEST_POOL_BACKEND=${name}: unknown backend (known: ${Object.keys(BACKENDS).join(', ')})`)
}

/** The backend under test. */
export const backend = await BACKENDS[name]()

/** `new Pool(opts)` on the backend under test (unless `opts` names one). */
export function createPool(opts = {}) {
  return new Pool({ backend, ...opts })
}

/**
 * `test` if the backend has every capability named (`carriesHandles`, `canTakeBack`,
 * `localProcesses`, `configuresProcesses`), else a `test` that declares its tests skipped, their titles naming what is
 * missing.
 */
export function needs(test, ...capabilities) {
  for (const c of capabilities) if (typeof backend[c] !== 'boolean') throw new Error(`no such backend capability: ${c}`)
  const missing = capabilities.filter((c) => !backend[c])
  if (missing.length === 0) return test
  const why = (title) => `${title} (needs ${missing.join(', ')})`
  const skipped = (title, ...rest) => test.skip(why(title), ...rest)
  skipped.serial = (title, ...rest) => test.serial.skip(why(title), ...rest)
  return skipped
}
