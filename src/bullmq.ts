/**
 * `multiproc/bullmq`: the Pool over BullMQ on Redis. `new Pool({ backend: bullmq({ connection,
 * queue }) })` runs its tasks on remote worker hosts (`npx multiproc worker --redis URL --queue
 * NAME --modules ./tasks.js`), with the same API, results, errors, progress and timeouts as a
 * local pool. `bullmq` and `ioredis` are optional peer dependencies, loaded only here.
 */
import type { Connection } from './bullmq-peers.js'
import { rangeError, typeError } from './errors.js'
import { type BullmqBackendOptions, bullmqBackend } from './pool-bullmq-link.js'
import type { Backend } from './pool-link.js'
import { checkInteger, checkOptions, checkString } from './validate.js'

export type { Connection } from './bullmq-peers.js'
export type { BullmqBackendOptions } from './pool-bullmq-link.js'
export type { Backend } from './pool-link.js'

const DEFAULT_MIN_CHUNKSIZE = 8
const DEFAULT_RECONNECT_TIMEOUT_MS = 30_000
/** What BullMQ accepts in a queue name: no `:`, the separator of its keys. */
const QUEUE_NAME = /^[^:\s]+$/

/**
 * A backend for `new Pool({ backend })` whose workers are remote hosts serving the BullMQ queue
 * `queue` on the Redis server `connection` (a URL such as `redis://127.0.0.1:6379`, or ioredis
 * options). The pool's `processes` is how many slots it keeps busy (its chunks in flight); give it
 * about the number of worker processes the hosts run together.
 */
export function bullmq(options: BullmqBackendOptions): Backend {
  checkOptions('bullmq options', options)
  if (typeof options !== 'object' || options === null) throw typeError('bullmq options must be an object')
  const connection = checkConnection(options.connection)
  const queue = checkString('queue', options.queue)
  if (!QUEUE_NAME.test(queue)) throw rangeError(`queue must be a non-empty name without ':' or spaces, got ${JSON.stringify(queue)}`)
  const prefix = options.prefix === undefined ? 'bull' : checkString('prefix', options.prefix)
  if (prefix === '') throw rangeError('prefix must not be empty')
  const minChunksize = options.minChunksize === undefined ? DEFAULT_MIN_CHUNKSIZE : checkInteger('minChunksize', options.minChunksize, 1)
  const reconnectTimeout =
    options.reconnectTimeout === undefined
      ? DEFAULT_RECONNECT_TIMEOUT_MS
      : checkInteger('reconnectTimeout', options.reconnectTimeout, 0, 2 ** 31 - 1)
  return bullmqBackend({ connection, queue, prefix, minChunksize, reconnectTimeout })
}

function checkConnection(v: unknown): Connection {
  if (typeof v === 'string') {
    if (!/^(rediss?|unix):\/\//.test(v))
      throw rangeError(`connection must be a redis://, rediss:// or unix:// URL, got ${JSON.stringify(v)}`)
    return v
  }
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Connection
  throw typeError('connection must be a Redis URL or an object of ioredis options')
}
