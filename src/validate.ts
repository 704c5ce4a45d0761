/**
 * Argument checks shared by the public constructors and methods: a wrong type is a `TypeError`
 * (`ERR_INVALID_ARG_TYPE`), a value out of range a `RangeError` (`ERR_OUT_OF_RANGE`), as Node's
 * own APIs throw them.
 */
import { rangeError, typeError } from './errors.js'

/** An integer in `[min, max]`. */
export function checkInteger(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number') throw typeError(`${name} must be a number, not ${describe(v)}`)
  if (!Number.isInteger(v) || v < min || v > max) {
    throw rangeError(`${name} must be an integer from ${min} to ${max}, got ${v}`)
  }
  return v
}

/** An options object, or `undefined` (then `{}`). */
export function checkOptions<T extends object>(what: string, v: T | undefined): T {
  if (v === undefined) return {} as T
  if (typeof v !== 'object' || v === null) throw typeError(`${what} must be an object, not ${describe(v)}`)
  return v
}

export function checkString(name: string, v: unknown): string {
  if (typeof v !== 'string') throw typeError(`${name} must be a string, not ${describe(v)}`)
  return v
}

export function checkBoolean(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw typeError(`${name} must be a boolean, not ${describe(v)}`)
  return v
}

export function checkFunction<F>(name: string, v: unknown): F {
  if (typeof v !== 'function') throw typeError(`${name} must be a function, not ${describe(v)}`)
  return v as F
}

/** A plain record of strings (an environment). */
export function checkStringRecord(name: string, v: unknown): Record<string, string> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw typeError(`${name} must be an object of strings, not ${describe(v)}`)
  for (const [k, s] of Object.entries(v)) {
    if (typeof s !== 'string') throw typeError(`${name}.${k} must be a string, not ${describe(s)}`)
  }
  return v as Record<string, string>
}

/** `block`, where a blocking call takes it: a boolean or absent. */
export function checkBlock(o: { block?: unknown }): void {
  if (o.block !== undefined) checkBoolean('block', o.block)
}

/** A `serializer` option: absent, or an object with `serialize` and `deserialize` methods. */
export function checkSerializer(v: unknown): void {
  if (v === undefined) return
  const s = v as { serialize?: unknown; deserialize?: unknown } | null
  if (typeof s !== 'object' || s === null || typeof s.serialize !== 'function' || typeof s.deserialize !== 'function') {
    throw typeError('serializer must be an object with serialize() and deserialize() methods')
  }
}

/** The largest ring a queue or pipe may have. */
export const MAX_CAPACITY_BYTES = 1 << 30

/** A ring size in bytes: at least 1 (rounded up to a page-sized power of two), at most 1 GiB. */
export function checkCapacity(v: unknown): number {
  return checkInteger('capacityBytes', v, 1, MAX_CAPACITY_BYTES)
}

/** The largest `maxOldSpaceSize` (MiB, 1 PiB): V8 takes the flag as a size and larger numbers wrap around. */
export const MAX_OLD_SPACE_SIZE = 2 ** 30

/**
 * A Pool's `maxQueue`: an integer from 0, `Infinity` or absent (no limit: `Infinity`), or
 * `'auto'` (`processes` squared, as piscina).
 */
export function checkMaxQueue(v: unknown, processes: number): number {
  if (v === undefined || v === null || v === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY
  if (v === 'auto') return processes * processes
  if (typeof v === 'string') {
    throw Object.assign(typeError(`maxQueue must be a number or 'auto', not ${describe(v)}`), { code: 'ERR_INVALID_ARG_VALUE' })
  }
  return checkInteger('maxQueue', v, 0)
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}…` : v)}`
  return typeof v
}
