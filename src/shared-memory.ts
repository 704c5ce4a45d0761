/**
 * SharedMemory: a named POSIX shared-memory segment (Python's
 * `multiprocessing.shared_memory.SharedMemory`), attachable by name from any process, CPython's
 * included. Created segments are mode 0600 and, unless `{ track: false }`, unlinked by the
 * resource tracker when the creator's process tree ends.
 */
import { randomBytes } from 'node:crypto'

import { ClosedError, fromNative, ProcessError, rangeError, typeError } from './errors.js'
import { type HandleDescriptor, newId, registerHandle, reviveOnce, toHandle } from './handles.js'
import { native } from './native.js'
import { register, unregister } from './resource-tracker.js'
import { checkBoolean } from './validate.js'

/** Options of a `SharedMemory`: create a segment, or attach to one by name. */
export interface SharedMemoryOptions {
  /** Without a leading `/`. Absent: a unique name is generated and a segment created. */
  name?: string
  /** Bytes; required to create. Attaching ignores it. */
  size?: number
  /** Create a new segment (default: only when no name is given); attach otherwise. */
  create?: boolean
  /** Unlink the segment when this process tree ends (default true; created segments only). */
  track?: boolean
}

type Seg = ReturnType<typeof native.shmCreate>

let adopting: { seg: Seg; name: string; id: string } | undefined

/** A named block of shared memory. */
export class SharedMemory {
  readonly #name: string
  #seg: Seg | undefined
  #buf: Uint8Array | undefined
  /** A random 128-bit hex string, the same in every process the object travels to. */
  readonly id: string

  constructor(opts: SharedMemoryOptions) {
    if (adopting) {
      ;({ seg: this.#seg, name: this.#name, id: this.id } = adopting)
      adopting = undefined
    } else {
      if (typeof opts !== 'object' || opts === null) throw typeError('SharedMemory takes an options object: { name?, size, create? }')
      const { name, size, track = true } = opts
      if (opts.create !== undefined) checkBoolean('create', opts.create)
      checkBoolean('track', track)
      if (name !== undefined && typeof name !== 'string') throw typeError('name must be a string')
      const create = opts.create ?? name === undefined
      if (create) {
        if (typeof size !== 'number') throw typeError('size must be a number of bytes')
        if (!Number.isInteger(size) || size <= 0) throw rangeError(`size must be a positive integer, got ${size}`)
      } else if (name === undefined) {
        throw typeError('a name is required to attach to an existing segment')
      }
      this.#name = name ?? `mp-${randomBytes(16).toString('hex')}`
      try {
        this.#seg = create ? native.shmCreate(this.#name, size as number) : native.shmAttach(this.#name)
      } catch (err) {
        throw fromNative(err)
      }
      if (create && track) {
        try {
          register(this.#name)
        } catch (err) {
          native.shmUnlink(this.#name)
          throw new ProcessError(`cannot register the segment with the resource tracker: ${(err as Error).message}`, { cause: err })
        }
      }
      this.id = newId()
    }
    this.#buf = new Uint8Array(native.segmentView(this.#seg as Seg))
  }

  /** The name other processes attach by (no leading `/`). */
  get name(): string {
    return this.#name
  }

  /** The size in bytes (of the whole segment when attaching, as in Python). */
  get size(): number {
    return this.buf.byteLength
  }

  /** The bytes of the segment. */
  get buf(): Uint8Array {
    if (!this.#buf) throw new ClosedError(`the SharedMemory '${this.#name}' is closed`)
    return this.#buf
  }

  /** Unmaps the segment from this process; `buf` views become empty. Other processes keep it. */
  close(): void {
    const buf = this.#buf
    if (!buf) return
    this.#buf = undefined
    this.#seg = undefined
    native.viewDetach(buf.buffer as ArrayBuffer)
  }

  /** Removes the name now (the memory goes once every process has closed it). */
  unlink(): void {
    try {
      native.shmUnlink(this.#name)
    } catch (err) {
      throw fromNative(err)
    } finally {
      // Also when another process created it: the tracker of this tree may hold the name.
      unregister(this.#name)
    }
  }

  /** `using shm = …`: closes it (does not unlink). */
  [Symbol.dispose](): void {
    this.close()
  }

  /** `await using shm = …`: closes it (does not unlink). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /** @internal How the segment travels to another process. */
  [toHandle](): HandleDescriptor {
    if (!this.#seg) throw new ClosedError(`the SharedMemory '${this.#name}' is closed`)
    return { type: 'SharedMemory', data: { id: this.id, name: this.#name }, fds: [native.segmentFd(this.#seg)] }
  }

  /** @internal */
  get fd(): number {
    return this.#seg ? native.segmentFd(this.#seg) : -1
  }

  /** Python's `repr`: `SharedMemory("name", size=4096)`. */
  toString(): string {
    return `SharedMemory(${JSON.stringify(this.#name)}, size=${this.#buf?.byteLength ?? 0})`
  }
}

registerHandle('SharedMemory', (data, [fd]) =>
  reviveOnce(
    data.id,
    fd as number,
    (s: SharedMemory) => s.fd,
    () => {
      let seg: Seg
      try {
        seg = native.segmentAdopt(fd as number)
      } catch (err) {
        throw fromNative(err)
      }
      adopting = { seg, name: data.name as string, id: data.id as string }
      return new SharedMemory({})
    },
  ),
)
