/**
 * JS values ⇄ bytes. The default is V8's structured clone (Maps, Sets, Dates, BigInts, typed
 * arrays and cycles survive), with a faster exact path for plain data (`plain.ts`); `Buffer`,
 * `Uint8Array` and `ArrayBuffer` take a raw path that copies their bytes and nothing else. A
 * queue, pipe or pool may bring its own serializer.
 */
import v8 from 'node:v8'

import { SerializationError, typeError } from './errors.js'
import { holdsHandles, packHandles, unpackHandles } from './handles.js'
import { decodePlain, encodePlain } from './plain.js'

/** A pluggable serializer: `serialize` must return bytes that `deserialize` turns back. */
export interface Serializer {
  /** Turns a value into bytes. */
  serialize(value: unknown): Uint8Array
  /** Turns bytes made by `serialize` back into the value. */
  deserialize(bytes: Uint8Array): unknown
}

/** How a message's bytes are to be read; travels in the frame header. */
export enum Kind {
  Clone = 0,
  Buffer = 1,
  Uint8Array = 2,
  ArrayBuffer = 3,
  Custom = 4,
  /** Plain data in `plain.ts`'s encoding: what structured clone would give, only faster. */
  Plain = 5,
  /** Structured clone of a value whose handles (manager proxies) were replaced by markers. */
  Handles = 6,
}

export interface Encoded {
  kind: Kind
  bytes: Uint8Array
}

/** `scratch`: the caller hands the bytes on before encoding anything else (they may be reused). */
export function encode(value: unknown, serializer?: Serializer, scratch = false): Encoded {
  if (serializer) {
    let bytes: Uint8Array
    try {
      bytes = serializer.serialize(value)
    } catch (err) {
      throw new SerializationError(`the serializer failed: ${(err as Error)?.message ?? err}`, { cause: err })
    }
    if (!(bytes instanceof Uint8Array)) throw new SerializationError('a serializer must return a Uint8Array')
    return { kind: Kind.Custom, bytes }
  }
  if (Buffer.isBuffer(value)) return { kind: Kind.Buffer, bytes: value }
  if (value instanceof Uint8Array && value.constructor === Uint8Array) return { kind: Kind.Uint8Array, bytes: value }
  if (value instanceof ArrayBuffer) return { kind: Kind.ArrayBuffer, bytes: new Uint8Array(value) }
  let plain: Buffer | undefined
  try {
    plain = encodePlain(value, scratch)
  } catch (err) {
    throw new SerializationError(`cannot serialize ${describe(value)}: ${(err as Error)?.message ?? err}`, { cause: err })
  }
  if (plain) return { kind: Kind.Plain, bytes: plain }
  if (holdsHandles(value)) return { kind: Kind.Handles, bytes: cloneBytes(handlesOnly(value)) }
  return { kind: Kind.Clone, bytes: cloneBytes(value) }
}

/**
 * A message may carry handles that need no descriptor (manager proxies: an address and an id);
 * a handle that needs descriptors (a Queue, Connection, lock, shared memory) cannot be put into a
 * message, which has no side channel for them: that fails at once, saying what to do instead.
 */
function handlesOnly(value: unknown): unknown {
  const packed = packHandles(value)
  if (packed.fds.length > 0) {
    throw Object.assign(
      typeError(
        'a Queue, Connection, lock, Value or SharedMemory cannot travel inside a message (its descriptors have no way there): ' +
          'pass it as an argument of the Process or pool task instead, or use a manager object (manager.Queue(), manager.Lock(), …), whose proxies do travel in messages',
      ),
      { code: 'ERR_HANDLE_IN_MESSAGE' },
    )
  }
  return packed.value
}

function cloneBytes(value: unknown): Uint8Array {
  try {
    return v8.serialize(value)
  } catch (err) {
    throw new SerializationError(`cannot serialize ${describe(value)}: ${(err as Error)?.message ?? err}`, { cause: err })
  }
}

function describe(value: unknown): string {
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`
  if (typeof value === 'symbol') return 'a symbol'
  if (typeof value !== 'object' || value === null) return `a value of type ${typeof value}`
  const what = Array.isArray(value) ? 'an array' : 'an object'
  let path: ReturnType<typeof uncloneablePath>
  try {
    path = uncloneablePath(value, '', 0, { left: 1000 })
  } catch {
    // A getter that throws, a proxy that refuses: the message goes without the path.
  }
  return path === undefined ? what : `${what} (${path.where || 'it'} is ${path.what}, which does not cross processes)`
}

/** Where, inside `value`, the first function or symbol is (a short search: for the message only). */
function uncloneablePath(
  value: unknown,
  where: string,
  depth: number,
  budget: { left: number },
): { where: string; what: string } | undefined {
  if (typeof value === 'function') return { where, what: `function ${value.name || '(anonymous)'}` }
  if (typeof value === 'symbol') return { where, what: 'a symbol' }
  if (typeof value !== 'object' || value === null || depth > 8 || --budget.left < 0) return undefined
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return undefined
  const entries: [string, unknown][] =
    value instanceof Map
      ? [...value.entries()].map(([k, v]) => [`.get(${String(k)})`, v])
      : value instanceof Set
        ? [...value].map((v, i) => [`[set ${i}]`, v])
        : Array.isArray(value)
          ? value.map((v, i) => [`[${i}]`, v])
          : Object.entries(value).map(([k, v]) => [`.${k}`, v])
  for (const [key, inner] of entries) {
    const found = uncloneablePath(inner, where + key, depth + 1, budget)
    if (found) return found
  }
  return undefined
}

/**
 * Turns bytes back into a value. Unless `owned`, `bytes` is a view of a reused buffer and what is
 * kept is copied; an `owned` Buffer is handed out as it is.
 */
export function decode(kind: number, bytes: Buffer, serializer: Serializer | undefined, owned: boolean): unknown {
  try {
    switch (kind) {
      case Kind.Clone:
        // V8 hands out typed arrays as views of the bytes it reads: they must be ours to keep.
        return v8.deserialize(owned ? bytes : copyOf(bytes))
      case Kind.Buffer:
        return owned ? bytes : copyOf(bytes)
      case Kind.Uint8Array:
        return owned ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes)
      case Kind.ArrayBuffer:
        return owned && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
          ? bytes.buffer
          : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
      case Kind.Plain:
        return decodePlain(bytes)
      case Kind.Handles:
        return unpackHandles(v8.deserialize(owned ? bytes : copyOf(bytes)))
      case Kind.Custom:
        if (!serializer) throw new SerializationError('the message was encoded by a custom serializer, and none is set here')
        // Its own copy: user code may receive again (into the shared scratch buffer) meanwhile.
        return serializer.deserialize(owned ? bytes : copyOf(bytes))
      default:
        throw new SerializationError(`unknown message kind ${kind}`)
    }
  } catch (err) {
    throw new SerializationError(`cannot deserialize a message: ${(err as Error)?.message ?? err}`, { cause: err })
  }
}

function copyOf(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(bytes.length)
  bytes.copy(out)
  return out
}
