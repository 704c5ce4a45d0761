/**
 * What a pool and its remote workers exchange through Redis (`multiproc/bullmq`). A chunk is one
 * BullMQ job whose data (JSON, as BullMQ stores it) holds the target's description and the items
 * encoded as the pool encodes them locally (structured clone or its exact plain-data form), in
 * base64. A worker answers on the pool's own reply list, not through BullMQ's return value: the
 * reply is binary, read once by the pool (a list pop removes it) and never copied into BullMQ's
 * event stream.
 */
import { ProtocolError } from './errors.js'
import type { ErrorRecord } from './remote-error.js'
import { decode, type Encoded, encode } from './serialize.js'
import type { TargetSpec } from './target.js'

/** The version of this format; a worker refuses jobs of another. */
export const WIRE_VERSION = 1

/** The BullMQ job name of a pool chunk. */
export const JOB_NAME = 'multiproc-chunk'

/** What a pool's workers share beyond the target: run once per process (Pool's `initializer`, `maxTasksPerChild`). */
export interface RemoteSetup {
  initializer: TargetSpec | null
  initargs: unknown[]
  maxTasks: number
}

/** A chunk's job data. */
export interface JobData {
  /** {@link WIRE_VERSION} */
  v: number
  /** The reply list's key. */
  r: string
  t: TargetSpec
  /** Each item is an array of arguments (`starmap`). */
  s: boolean
  /** The items' encoding (`Kind` of serialize.ts) and their bytes in base64. */
  k: number
  p: string
  /** The setup, encoded like the items, when it is not the default one. */
  u?: string | undefined
  /** The setup's encoding. */
  uk?: number | undefined
}

/** What a reply says. */
export enum ReplyKind {
  Done = 0,
  Failed = 1,
  /** The process running the chunk died (twice: it was retried once), or its host stopped renewing the job's lock. */
  Exited = 2,
  InitFailed = 3,
}

/** A reply's header: which job it answers and, for `Exited`, how the process ended. */
export interface ReplyHeader {
  j: string
  k: ReplyKind
  exitCode?: number | null
  signal?: string | null
  /** `Exited` because the job's lock expired twice (its host was killed or cut off). */
  stalled?: boolean
  /** Where it ran: `hostname pid`. */
  at?: string
}

/** The body of a `Failed` reply. */
export interface FailedBody {
  record: ErrorRecord
  /** The task threw it (the call sees a `RemoteError`); else it came from multiproc itself. */
  wrapped: boolean
}

export function encodePayload(value: unknown): { kind: number; base64: string } {
  const e = encode(value)
  return { kind: e.kind, base64: Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength).toString('base64') }
}

export function decodePayload(kind: number, base64: string): unknown {
  return decode(kind, Buffer.from(base64, 'base64'), undefined, true)
}

/** A reply: `[u32 header length][header JSON][u8 body kind][body]`. */
export function encodeReply(header: ReplyHeader, body?: unknown): Buffer {
  const head = Buffer.from(JSON.stringify(header))
  const e: Encoded | undefined = body === undefined ? undefined : encode(body)
  const out = Buffer.allocUnsafe(5 + head.length + (e ? e.bytes.byteLength : 0))
  out.writeUInt32LE(head.length, 0)
  head.copy(out, 4)
  out[4 + head.length] = e ? e.kind : 255
  if (e) out.set(e.bytes, 5 + head.length)
  return out
}

/** The header alone (the body is decoded apart: a body that cannot be decoded still says whose it was). */
export function replyHeader(buf: Buffer): ReplyHeader {
  const len = buf.length >= 4 ? buf.readUInt32LE(0) : -1
  if (len < 0 || 5 + len > buf.length) throw new ProtocolError(`a reply of ${buf.length} bytes is too short for its header`)
  let header: ReplyHeader
  try {
    header = JSON.parse(buf.toString('utf8', 4, 4 + len))
  } catch (err) {
    throw new ProtocolError(`a reply's header is not JSON: ${(err as Error).message}`)
  }
  if (typeof header?.j !== 'string' || typeof header.k !== 'number') throw new ProtocolError('a reply has no job id or kind')
  return header
}

/** The body of a reply whose header is `header`; throws `SerializationError` when it cannot be decoded. */
export function replyBody(buf: Buffer): unknown {
  const len = buf.readUInt32LE(0)
  const kind = buf[4 + len] as number
  if (kind === 255) return undefined
  return decode(kind, buf.subarray(5 + len), undefined, true)
}

/** The keys and channels of one queue's pools and workers. */
export class WireKeys {
  constructor(
    readonly prefix: string,
    readonly queue: string,
  ) {}

  /** The list a pool reads its replies from. */
  replies(clientId: string): string {
    return `${this.prefix}:${this.queue}:multiproc:replies:${clientId}`
  }

  /** Where pools announce the jobs they gave up on (timeout, abort, terminate). */
  get cancel(): string {
    return `${this.prefix}:${this.queue}:multiproc:cancel`
  }

  /** BullMQ's hash of a job. */
  job(jobId: string): string {
    return `${this.prefix}:${this.queue}:${jobId}`
  }
}

/** A job id from the pool, the chunk, and how often that chunk has been sent (re-adding an existing id is a no-op). */
export function jobIdOf(clientId: string, chunkId: number, sending: number): string {
  return `mp.${clientId}.${chunkId}.${sending}`
}
