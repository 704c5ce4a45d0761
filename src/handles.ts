/**
 * Objects that stand for shared resources (Queue, Connection, …) travel to another process as
 * handles: their descriptors go with them (inherited by a new child, or passed over a Unix socket
 * to a running pool worker) and each is revived there as a live object. The arguments of a
 * `Process` and of pool tasks are walked for such objects before they are serialised.
 */
import { randomBytes } from 'node:crypto'

import { fromNative, InvalidStateError, ProtocolError, TimeoutError } from './errors.js'
import { native } from './native.js'

/** What a handle becomes on the wire: its type, plain data, and the descriptors it needs. */
export interface HandleDescriptor {
  type: string
  data: Record<string, unknown>
  fds: number[]
}

/** Implemented by every class whose instances can be passed to another process. */
export const toHandle = Symbol.for('multiproc.toHandle')

export interface Transferable {
  [toHandle](): HandleDescriptor
}

const MARK = '__multiproc_handle__'

/** A name for each shared object this process passes on, unique across processes. */
const keys = new WeakMap<object, string>()
// Made again when `process.pid` changes: a child forked by the fork server starts with the server's.
let keyPrefix = ''
let keyPid = -1
let nextKey = 0
function keyOf(v: object): string {
  let key = keys.get(v)
  if (key === undefined) {
    if (keyPid !== process.pid) {
      keyPid = process.pid
      keyPrefix = `${process.pid}.${Date.now().toString(36)}.`
    }
    key = keyPrefix + nextKey++
    keys.set(v, key)
  }
  return key
}
type Reviver = (data: Record<string, unknown>, fds: number[]) => unknown
const revivers = new Map<string, Reviver>()

/** Registers how a handle type is revived in the receiving process. */
export function registerHandle(type: string, revive: Reviver): void {
  revivers.set(type, revive)
}

function isTransferable(v: unknown): v is Transferable {
  return typeof v === 'object' && v !== null && typeof (v as Partial<Transferable>)[toHandle] === 'function'
}

function isPlain(v: object): boolean {
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/** Whether `value` holds a handle anywhere a packing walk would look (no copy is made). */
export function holdsHandles(value: unknown, seen?: Set<object>): boolean {
  if (typeof value !== 'object' || value === null) return false
  if (isTransferable(value)) return true
  const isArray = Array.isArray(value)
  if (!isArray && !(value instanceof Map) && !(value instanceof Set) && !isPlain(value)) return false
  const visited = seen ?? new Set<object>()
  if (visited.has(value)) return false
  visited.add(value)
  if (isArray) return arrayHoldsHandles(value, visited)
  if (value instanceof Map) {
    for (const [k, x] of value) if (holdsHandles(k, visited) || holdsHandles(x, visited)) return true
    return false
  }
  if (value instanceof Set) {
    for (const x of value) if (holdsHandles(x, visited)) return true
    return false
  }
  for (const k of Object.keys(value)) if (holdsHandles((value as Record<string, unknown>)[k], visited)) return true
  return false
}

/**
 * The array case of `holdsHandles`: an indexed loop (a hole reads `undefined`, as `for…of` gives
 * it) in a function of its own, which V8 optimises within the first long array of numbers.
 */
function arrayHoldsHandles(value: unknown[], visited: Set<object>): boolean {
  for (let i = 0; i < value.length; i++) {
    const x = value[i]
    if (typeof x === 'object' && x !== null && holdsHandles(x, visited)) return true
  }
  return false
}

/** Replaces handles inside `value` (arrays, plain objects, Maps, Sets) by markers. */
export function packHandles(value: unknown): { value: unknown; fds: number[]; handles: Map<string, number[]> } {
  const fds: number[] = []
  const handles = new Map<string, number[]>()
  const seen = new Map<object, unknown>()
  const walk = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null) return v
    if (seen.has(v)) return seen.get(v)
    if (isTransferable(v)) {
      const h = v[toHandle]()
      const key = keyOf(v)
      fds.push(...h.fds)
      handles.set(key, h.fds)
      const marker = { [MARK]: h.type, data: h.data, fds: h.fds, key }
      seen.set(v, marker)
      return marker
    }
    if (Array.isArray(v)) {
      const out: unknown[] = []
      seen.set(v, out)
      for (const x of v) out.push(walk(x))
      return out
    }
    if (v instanceof Map) {
      const out = new Map()
      seen.set(v, out)
      for (const [k, x] of v) out.set(walk(k), walk(x))
      return out
    }
    if (v instanceof Set) {
      const out = new Set()
      seen.set(v, out)
      for (const x of v) out.add(walk(x))
      return out
    }
    if (isPlain(v)) {
      const out: Record<string, unknown> = {}
      seen.set(v, out)
      for (const k of Object.keys(v)) out[k] = walk((v as Record<string, unknown>)[k])
      return out
    }
    return v
  }
  const packed = walk(value)
  return { value: packed, fds: [...new Set(fds)], handles }
}

/** A handle whose descriptors this process was never sent. */
export class UnknownHandle extends Error {}

export interface UnpackOptions {
  /** The sender's descriptor numbers → ours, for descriptors passed over a socket. */
  fdMap?: Map<number, number>
  /** Objects already revived in this process, by handle key: revived once, reused after. */
  cache?: Map<string, unknown>
  /** Filled with the descriptors revivers took over. */
  used?: Set<number>
}

/** Turns markers back into live objects; one object per descriptor set, however often named. */
export function unpackHandles(value: unknown, opts: UnpackOptions = {}): unknown {
  const revived = opts.cache ?? new Map<string, unknown>()
  const seen = new Set<object>()
  const walk = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null || seen.has(v)) return v
    const mark = (v as Record<string, unknown>)[MARK]
    if (typeof mark === 'string') {
      const { data, fds, key } = v as unknown as { data: Record<string, unknown>; fds: number[]; key?: string }
      const id = key ?? `${mark}:${fds.join(',')}`
      if (!revived.has(id)) {
        const revive = revivers.get(mark)
        if (!revive) throw new ProtocolError(`no reviver for handle type ${mark}`)
        const ours = opts.fdMap ? fds.map((f) => opts.fdMap?.get(f)) : fds
        if (ours.some((f) => f === undefined)) throw new UnknownHandle(`handle ${id} was not sent here`)
        for (const f of ours) opts.used?.add(f as number)
        revived.set(id, revive(data, ours as number[]))
      }
      return revived.get(id)
    }
    seen.add(v)
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) v[i] = walk(v[i])
    } else if (v instanceof Map) {
      const entries = [...v].map(([k, x]) => [walk(k), walk(x)] as const)
      v.clear()
      for (const [k, x] of entries) v.set(k, x)
    } else if (v instanceof Set) {
      const items = [...v].map(walk)
      v.clear()
      for (const x of items) v.add(x)
    } else if (isPlain(v)) {
      for (const k of Object.keys(v)) (v as Record<string, unknown>)[k] = walk((v as Record<string, unknown>)[k])
    }
    return v
  }
  return walk(value)
}

/**
 * The pool's side channel for descriptors: a packet socket pair whose far end a worker inherits.
 * Each batch is tagged with the chunk it belongs to, so a worker skips batches of chunks that
 * were taken back before it saw them.
 */
export class FdCarrier implements Transferable {
  readonly #ours: number
  #theirs: number | undefined

  constructor() {
    let pair: [number, number]
    try {
      pair = native.packetPair() as [number, number]
    } catch (err) {
      throw fromNative(err)
    }
    const [ours, theirs] = pair
    this.#ours = ours
    this.#theirs = theirs
  }

  /** Sends copies of `fds` tagged `tag`. */
  send(tag: number, fds: number[]): void {
    native.sendFds(this.#ours, tag, fds)
  }

  /** Closes the far end here once the worker holds it. */
  releaseTheirs(): void {
    if (this.#theirs !== undefined) native.closeFd(this.#theirs)
    this.#theirs = undefined
  }

  close(): void {
    this.releaseTheirs()
    native.closeFd(this.#ours)
  }

  [toHandle](): HandleDescriptor {
    if (this.#theirs === undefined) throw new InvalidStateError('the carrier was already handed over')
    return { type: 'FdCarrier', data: {}, fds: [this.#theirs] }
  }
}

/** The worker's end: receives the batch tagged `tag`, closing older batches it finds first. */
export function receiveFds(sock: number, tag: number, timeoutMs: number): number[] {
  for (;;) {
    const got = native.recvFds(sock, timeoutMs) as number[] | null
    if (got === null) throw new TimeoutError(`the descriptors for task ${tag} did not arrive within ${timeoutMs} ms`)
    const [t, ...fds] = got
    if (t === tag) return fds
    for (const f of fds) native.closeFd(f)
  }
}

registerHandle('FdCarrier', (_data, [fd]) => fd)

/** A unique id for a shared object: the Pool revives each one once per worker by it. */
export function newId(): string {
  return randomBytes(16).toString('hex')
}

/**
 * Objects revived in this process, by id: a second handle of the same object (a Lock passed
 * both alone and inside a Condition) gives the same live object. The descriptor it came with is
 * closed unless it is the very one the live object uses (same number, same boot message).
 */
const revived = new Map<string, WeakRef<object>>()

export function reviveOnce<T extends object>(id: unknown, fd: number, fdOf: (o: T) => number, make: () => T): T {
  if (typeof id === 'string') {
    const live = revived.get(id)?.deref() as T | undefined
    if (live) {
      if (fdOf(live) !== fd) native.closeFd(fd)
      return live
    }
  }
  const obj = make()
  if (typeof id === 'string') revived.set(id, new WeakRef(obj))
  return obj
}
