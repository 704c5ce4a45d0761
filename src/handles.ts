/**
 * Objects that stand for shared resources (Queue, Connection, …) travel to a child process as
 * handles: their descriptors are inherited and each is revived there as a live object. The
 * arguments of a `Process` are walked for such objects before they are serialised.
 */

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

/** Replaces handles inside `value` (arrays, plain objects, Maps, Sets) by markers. */
export function packHandles(value: unknown): { value: unknown; fds: number[] } {
  const fds: number[] = []
  const seen = new Map<object, unknown>()
  const walk = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null) return v
    if (seen.has(v)) return seen.get(v)
    if (isTransferable(v)) {
      const h = v[toHandle]()
      fds.push(...h.fds)
      const marker = { [MARK]: h.type, data: h.data, fds: h.fds }
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
  return { value: packed, fds: [...new Set(fds)] }
}

/** Turns markers back into live objects; one object per descriptor set, however often named. */
export function unpackHandles(value: unknown): unknown {
  const revived = new Map<string, unknown>()
  const seen = new Set<object>()
  const walk = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null || seen.has(v)) return v
    const mark = (v as Record<string, unknown>)[MARK]
    if (typeof mark === 'string') {
      const { data, fds } = v as unknown as { data: Record<string, unknown>; fds: number[] }
      const id = `${mark}:${fds.join(',')}`
      if (!revived.has(id)) {
        const revive = revivers.get(mark)
        if (!revive) throw new Error(`no reviver for handle type ${mark}`)
        revived.set(id, revive(data, fds))
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
