/**
 * Start methods (Python's `set_start_method`): how a new child process comes to life. `spawn`
 * runs a fresh `process.execPath`; `forkserver` asks a warm server process to fork a copy of
 * itself (Linux). The choice made in the top-level program is passed down, so children start
 * their own children the same way and through the same server.
 */
import { InvalidStateError, rangeError, typeError } from './errors.js'
import { moduleHref } from './target.js'
import { checkOptions } from './validate.js'

/** The ways a child process can be started. */
export type StartMethod = 'spawn' | 'forkserver'

const METHODS: readonly StartMethod[] = process.platform === 'linux' ? ['spawn', 'forkserver'] : ['spawn']

/** What a child inherits of its parent's choices (an environment variable, read once). */
export interface Inherited {
  method: StartMethod | null
  preload: string[]
  /** The server this program tree uses: its address and the Node flags it runs with. */
  server: { address: string; execArgv: string[] } | null
}

/** @internal The environment variable that carries {@link Inherited} to a child. */
export const START_ENV = 'MULTIPROC_START'

function readInherited(): Inherited {
  const raw = process.env[START_ENV]
  delete process.env[START_ENV]
  const none: Inherited = { method: null, preload: [], server: null }
  if (raw === undefined) return none
  try {
    const v = JSON.parse(raw) as Partial<Inherited>
    return {
      method: v.method && METHODS.includes(v.method) ? v.method : null,
      preload: Array.isArray(v.preload) ? v.preload.filter((p) => typeof p === 'string') : [],
      server:
        v.server && typeof v.server.address === 'string' && Array.isArray(v.server.execArgv)
          ? { address: v.server.address, execArgv: v.server.execArgv.map(String) }
          : null,
    }
  } catch {
    return none
  }
}

let inherited = readInherited()
/** Set by `setStartMethod` in this process (an inherited choice is only a default). */
let chosen: StartMethod | null = null
let preload: string[] = inherited.preload
const listeners: ((method: StartMethod) => void)[] = []

/** @internal Reads the inherited choices again: a forked child gets its environment after import. */
export function reloadInherited(): void {
  inherited = readInherited()
  preload = inherited.preload
  chosen = null
}

/** @internal The choices this process inherited. */
export function inheritedChoices(): Inherited {
  return inherited
}

/** @internal Runs `fn` whenever `setStartMethod` picks a method (the fork server starts on it). */
export function onStartMethodSet(fn: (method: StartMethod) => void): void {
  listeners.push(fn)
}

/** @internal Validates a `startMethod` option: one of {@link getAllStartMethods}. */
export function checkStartMethod(name: string, v: unknown): StartMethod {
  if (typeof v !== 'string') throw typeError(`${name} must be a string naming a start method, not ${typeof v}`)
  if (!(METHODS as readonly string[]).includes(v)) {
    const known = v === 'forkserver' || v === 'spawn'
    throw Object.assign(
      rangeError(
        known
          ? `${name} '${v}' is not available on ${process.platform} (available: ${METHODS.join(', ')})`
          : `${name} must be one of ${METHODS.map((m) => `'${m}'`).join(', ')}, got '${v}'${v === 'fork' ? " (a plain fork of a Node process is unsafe: use 'forkserver')" : ''}`,
      ),
      { code: 'ERR_INVALID_ARG_VALUE' },
    )
  }
  return v as StartMethod
}

/**
 * Sets how this program starts its children, as Python's `set_start_method`. Setting it a
 * second time throws `InvalidStateError` (Python's `RuntimeError`) unless `force` is true;
 * `setStartMethod(null, { force: true })` goes back to the default. `'forkserver'` starts the
 * server at once, in the background, so that its boot overlaps the program's own start.
 */
export function setStartMethod(method: StartMethod | null, opts?: { force?: boolean }): void {
  const o = checkOptions('setStartMethod options', opts)
  if (o.force !== undefined && typeof o.force !== 'boolean') throw typeError('force must be a boolean')
  if (method === null) {
    if (!o.force) throw typeError('setStartMethod(null) needs { force: true } (it resets the start method)')
    chosen = null
    return
  }
  const m = checkStartMethod('method', method)
  if (chosen !== null && !o.force) {
    throw new InvalidStateError(`the start method is already set to '${chosen}': pass { force: true } to change it`)
  }
  chosen = m
  for (const fn of listeners) fn(m)
}

/** The start method new children use unless told otherwise: set, inherited, or `'spawn'`. */
export function getStartMethod(): StartMethod {
  return chosen ?? inherited.method ?? 'spawn'
}

/** @internal Whether a start method was chosen (set here or inherited) rather than defaulted. */
export function startMethodChosen(): boolean {
  return chosen !== null || inherited.method !== null
}

/** The start methods this platform supports, the default first: `['spawn', 'forkserver']` on Linux. */
export function getAllStartMethods(): StartMethod[] {
  return [...METHODS]
}

/**
 * Modules (URLs or paths) the fork server imports before it forks, so that every forked child
 * has them loaded already. Takes effect when the server next starts (set it before
 * `setStartMethod('forkserver')`). Preloaded modules must not create multiproc objects or
 * start timers or servers at import: everything they do is done once, in the server.
 */
export function setForkserverPreload(modules: (string | URL)[]): void {
  if (!Array.isArray(modules)) throw typeError('setForkserverPreload takes an array of module URLs or paths')
  preload = modules.map((m) => moduleHref(m))
}

/** @internal The modules the fork server imports before forking. */
export function forkserverPreload(): string[] {
  return preload
}
