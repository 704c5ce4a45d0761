/**
 * The words of a synchronisation segment that the Atomics fast paths touch, and the spin policy
 * they follow, as the Rust core defines them (`multiproc_core::sync::layout`): read from the
 * binding once, so that no offset is written twice.
 */
import { ProtocolError } from './errors.js'
import { native } from './native.js'

const raw = native.syncLayout()
const read = new Set<string>()

function value(name: string): number {
  read.add(name)
  const v = raw[name]
  if (v === undefined) throw new ProtocolError(`the binding's synchronisation layout has no ${name}`)
  return v
}

/** An `Int32Array` index for a 4-byte word at a byte offset the core names. */
function word(name: string): number {
  const offset = value(name)
  if (offset % 4 !== 0) throw new ProtocolError(`${name} (byte ${offset}) is not 4-aligned`)
  return offset / 4
}

/** A `BigUint64Array` index for an 8-byte word at a byte offset the core names. */
function u64(name: string): number {
  const offset = value(name)
  if (offset % 8 !== 0) throw new ProtocolError(`${name} (byte ${offset}) is not 8-aligned`)
  return offset / 8
}

/** Word indexes into a segment's `Int32Array` view (the record: a `BigUint64Array` index). */
export const LOCK_STATE = word('lock.state')
export const LOCK_COUNT = word('lock.count')
export const LOCK_RECORD = u64('lock.record')
export const LOCK_ID_MASK = value('lock.idMask')
export const LOCK_OWNER_CHECK_MS = value('lock.ownerCheckMs')
export const SEM_VALUE = word('semaphore.value')
export const SEM_SLEEPERS = word('semaphore.sleepers')
export const SEM_MAX = word('semaphore.max')
export const EVENT_FLAG = word('event.flag')
export const EVENT_SLEEPERS = word('event.sleepers')
export const COND_SEQ = word('condition.seq')
export const BARRIER_GEN = word('barrier.gen')

export const WAITERS_BIT = value('lock.waitersBit')

/** The spin policy, in milliseconds: the first budget, the full one, and the longest wait that means busy. */
export const SPIN_START_MS = value('spin.startNs') / 1e6
export const SPIN_MAX_MS = value('spin.maxNs') / 1e6
export const SPIN_BUSY_MS = value('spin.busyNs') / 1e6

/** The names of the core's layout read here, and all it has: a test checks that they agree. */
export function layoutNames(): { read: string[]; defined: string[] } {
  return { read: [...read].sort(), defined: Object.keys(raw).sort() }
}
