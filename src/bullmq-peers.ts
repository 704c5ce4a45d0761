/**
 * Loads the optional peer dependencies of `multiproc/bullmq` (`bullmq`, `ioredis`), only when a
 * BullMQ backend or worker host is made. Synchronous (`require` of their CommonJS builds), so the
 * subpath has no top-level await and CommonJS code can `require` it too.
 */
import { createRequire } from 'node:module'

import type * as Bullmq from 'bullmq'
import type { Redis as IORedis, RedisOptions } from 'ioredis'

import { MissingPeerError } from './errors.js'

/** The peers, as this package uses them. */
export interface Peers {
  Queue: typeof Bullmq.Queue
  Worker: typeof Bullmq.Worker
  Redis: typeof IORedis
}

/** A Redis server: a URL (`redis://host:port/db`, `rediss://…`, `unix:///path`), or ioredis options. */
export type Connection = string | RedisOptions

let peers: Peers | undefined

export function loadPeers(): Peers {
  if (peers) return peers
  const require = createRequire(import.meta.url)
  const load = <T>(name: string): T => {
    try {
      return require(name) as T
    } catch (err) {
      throw new MissingPeerError(
        `multiproc/bullmq needs the package \`${name}\`, which cannot be loaded (${(err as Error)?.message ?? err}); install it: npm i bullmq ioredis`,
        { cause: err },
      )
    }
  }
  const bullmq = load<typeof Bullmq>('bullmq')
  const ioredis = load<{ Redis: typeof IORedis }>('ioredis')
  peers = { Queue: bullmq.Queue, Worker: bullmq.Worker, Redis: ioredis.Redis }
  return peers
}

/** A new client for `connection`. Commands wait while the server is away (the caller bounds how long). */
export function connect(connection: Connection, extra: RedisOptions = {}): IORedis {
  const { Redis } = loadPeers()
  const options: RedisOptions = { maxRetriesPerRequest: null, retryStrategy: (times) => Math.min(50 * times, 1000), ...extra }
  if (typeof connection === 'string') return new Redis(connectionUrl(connection), options)
  return new Redis({ ...connection, ...options })
}

/** ioredis reads `unix:///path` only as `/path`. */
function connectionUrl(url: string): string {
  return url.startsWith('unix://') ? url.slice('unix://'.length) : url
}

/** Lets the process exit while the client's socket is open (what must finish holds the loop by other means). */
export function unrefSocket(client: IORedis): void {
  const unref = () => (client as unknown as { stream?: { unref?: () => void } }).stream?.unref?.()
  client.on('connect', unref)
  unref()
}
