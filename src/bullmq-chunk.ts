/**
 * What a worker host's pool processes run for each job (`multiproc worker`): the chunk's task
 * itself, in this process, and its reply pushed from here straight onto the pool's reply list.
 * The host's own event loop only takes jobs and keeps their locks; neither the items nor the
 * results pass through it, and the reply reaches the pool one process hop sooner.
 */
import type { Redis as IORedis } from 'ioredis'

import { type Connection, connect, unrefSocket } from './bullmq-peers.js'
import { decodePayload, encodeReply, type FailedBody, type ReplyHeader, ReplyKind } from './bullmq-wire.js'
import { SerializationError, TargetError } from './errors.js'
import { holdsHandles } from './handles.js'
import { trustArray } from './plain.js'
import { toRecord } from './remote-error.js'
import { resolveTarget, type TargetFunction, type TargetSpec } from './target.js'

/** A job as the host hands it to one of its processes. */
export interface RemoteChunk {
  connection: Connection
  replyKey: string
  replyTtl: number
  jobId: string
  spec: TargetSpec
  star: boolean
  kind: number
  payload: string
}

/** This process's client, one per server, made on first use. */
const clients = new Map<string, IORedis>()
const targets = new Map<string, Promise<TargetFunction>>()

function clientFor(connection: Connection): IORedis {
  const key = JSON.stringify(connection)
  let client = clients.get(key)
  if (!client) {
    client = connect(connection, { connectionName: `multiproc-task-${process.pid}` })
    client.on('error', () => {})
    // Its socket must not keep the process alive once the pool has nothing for it.
    unrefSocket(client)
    clients.set(key, client)
  }
  return client
}

function targetOf(spec: TargetSpec): Promise<TargetFunction> {
  const key = JSON.stringify(spec)
  let fn = targets.get(key)
  if (!fn) {
    fn = resolveTarget(spec)
    targets.set(key, fn)
    fn.catch(() => targets.delete(key))
  }
  return fn
}

async function runItems(fn: TargetFunction, items: unknown[], star: boolean): Promise<unknown[]> {
  const out = trustArray(new Array<unknown>(items.length))
  for (let i = 0; i < items.length; i++) {
    let r = star ? fn(...(items[i] as unknown[])) : fn(items[i])
    if (typeof (r as PromiseLike<unknown> | null)?.then === 'function') r = await r
    out[i] = r
  }
  return out
}

function failed(header: ReplyHeader, err: unknown, wrapped: boolean): Buffer {
  return encodeReply({ ...header, k: ReplyKind.Failed }, { record: toRecord(err), wrapped } satisfies FailedBody)
}

/** Runs the chunk: its reply, whatever happens. */
async function replyOf(chunk: RemoteChunk): Promise<Buffer> {
  const header: ReplyHeader = { j: chunk.jobId, k: ReplyKind.Done }
  let fn: TargetFunction
  try {
    fn = await targetOf(chunk.spec)
  } catch (err) {
    return failed(header, err, false)
  }
  let values: unknown[]
  try {
    const items = decodePayload(chunk.kind, chunk.payload) as unknown[]
    values = await runItems(fn, items, chunk.star)
    if (holdsHandles(values)) throw new SerializationError('a task cannot return a Queue, Connection or other handle')
  } catch (err) {
    // A source-sent target that reaches for an outer variable fails as a TargetError, unwrapped.
    return failed(header, err, !(err instanceof TargetError || err instanceof SerializationError))
  }
  try {
    return encodeReply(header, values)
  } catch (err) {
    return failed(header, err, false)
  }
}

/** Runs a chunk and sends its reply; resolves once the reply is in Redis. */
export async function runRemoteChunk(chunk: RemoteChunk): Promise<null> {
  const reply = await replyOf(chunk)
  const key = chunk.replyKey
  // A pipeline, not a transaction: the pool's blocking pop wakes at the push.
  const results = await clientFor(chunk.connection).pipeline().lpush(key, reply).expire(key, chunk.replyTtl).exec()
  const error = results?.find(([e]) => e)?.[0]
  if (error) throw error
  return null
}
