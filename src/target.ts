/**
 * How a child finds the function to run. The parent describes the target; the child resolves
 * it: an export of a module (named, or found by identity among the given modules' exports, or by
 * name and source among those the parent cannot load), else the function's own source compiled
 * in the child. A function sent as source that
 * reaches for an outer variable fails with a `TargetError` that names it and shows the fixes.
 */
import { createRequire } from 'node:module'
import { isAbsolute } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

import { TargetError, typeError } from './errors.js'

/** A function a child can run: it takes any arguments, and may return a promise. */
// biome-ignore lint/suspicious/noExplicitAny: targets take any arguments
export type TargetFunction = (...args: any[]) => unknown

/** The key of a `ModuleTarget`'s type-only member: no value ever has it. */
declare const signature: unique symbol

/**
 * An export of a module, by URL or path, and its name (default: `'default'`). `F` is the type
 * of the exported function, for the type checker only: a plain `{ module, name }` has
 * `(...args: any[]) => unknown`; `ExportOf` gives the real one.
 */
export interface ModuleTarget<F = TargetFunction> {
  /** The module's URL (`new URL('./tasks.js', import.meta.url)`), file URL string or path. */
  module: string | URL
  /** The export's name; default `'default'`. */
  name?: string
  /** Never set: it carries the function's type to the calls that take the target. */
  readonly [signature]?: F
}

/** A function run in a child with arguments `A`, returning `R` (or a promise of it), or a `ModuleTarget` of one. */
// biome-ignore lint/suspicious/noExplicitAny: by default a target takes any arguments
export type Target<A extends unknown[] = any[], R = unknown> = ((...args: A) => R) | ModuleTarget<(...args: A) => R>

/** The names of a module's exports that are functions. */
export type ExportedFunctionName<M> = { [K in keyof M]: M[K] extends TargetFunction ? K : never }[keyof M] & string

/**
 * A `{ module, name }` target typed as the export `N` of the module whose type is `M`, so that
 * pool calls and `Process` check its arguments and infer its result:
 *
 * ```ts
 * import type * as tasks from './tasks.js'
 * const square: ExportOf<typeof tasks, 'square'> = { module: new URL('./tasks.js', import.meta.url), name: 'square' }
 * const squares = await pool.map(square, [1, 2, 3]) // number[]
 * ```
 */
export interface ExportOf<M, N extends ExportedFunctionName<M>> extends ModuleTarget<M[N]> {
  name: N
}

export type TargetSpec =
  | { kind: 'export'; module: string; name: string }
  | { kind: 'function'; name: string; source: string; modules: string[] }

/** A module reference as a URL string the child can `import()`. */
export function moduleHref(m: string | URL): string {
  if (m instanceof URL) return m.href
  if (typeof m !== 'string') throw typeError('a module must be a URL or a path')
  if (/^[a-z][a-z0-9+.-]*:/i.test(m) && !/^[a-z]:[\\/]/i.test(m)) return m
  return pathToFileURL(isAbsolute(m) ? m : `${process.cwd()}/${m}`).href
}

/**
 * Marks a target that is already described (a spec that arrived from elsewhere, as a remote
 * worker host receives it): it is used as it is, neither looked up nor compiled here.
 */
export const describedTarget = Symbol('multiproc.describedTarget')

export function describeTarget(target: Target, modules: (string | URL)[] = []): TargetSpec {
  if (typeof target === 'object' && target !== null && describedTarget in target) {
    return (target as unknown as { [describedTarget]: TargetSpec })[describedTarget]
  }
  if (typeof target === 'function') {
    const source = Function.prototype.toString.call(target)
    if (/\{\s*\[native code\]\s*\}$/.test(source)) {
      throw new TargetError(`${target.name || 'the target'} is a built-in or bound function: pass { module, name } instead`)
    }
    // Found by identity among the modules this process can load; the child then imports that
    // export. Modules this process cannot load (its own main module, say) are left to the child,
    // which finds the function there by name and source.
    const unloaded: string[] = []
    for (const m of modules) {
      const href = moduleHref(m)
      let found: { module: string; name: string } | undefined
      try {
        found = findExport(target, [href])
      } catch {
        unloaded.push(href)
        continue
      }
      if (found) return { kind: 'export', ...found }
    }
    return { kind: 'function', name: target.name, source, modules: unloaded }
  }
  if (typeof target === 'object' && target !== null && 'module' in target) {
    return { kind: 'export', module: moduleHref(target.module), name: target.name ?? 'default' }
  }
  throw typeError('target must be a function or { module, name }')
}

/** In the child: the function a spec names. */
export async function resolveTarget(spec: TargetSpec): Promise<TargetFunction> {
  if (spec.kind === 'export') {
    let mod: Record<string, unknown>
    try {
      mod = await import(spec.module)
    } catch (err) {
      throw new TargetError(`cannot import ${spec.module}: ${(err as Error)?.message ?? err}`, { cause: err })
    }
    const fn = mod[spec.name]
    if (typeof fn !== 'function') throw new TargetError(`${spec.module} has no exported function named ${spec.name}`)
    return fn as TargetFunction
  }
  for (const m of spec.modules) {
    let mod: Record<string, unknown>
    try {
      mod = await import(m)
    } catch (err) {
      throw new TargetError(`cannot import ${m}: ${(err as Error)?.message ?? err}`, { cause: err })
    }
    for (const [key, value] of Object.entries(mod)) {
      if (
        typeof value === 'function' &&
        (key === spec.name || value.name === spec.name) &&
        Function.prototype.toString.call(value) === spec.source
      ) {
        return value as TargetFunction
      }
    }
  }
  return compileSource(spec.name, spec.source)
}

const compiled = new Map<string, TargetFunction>()

/** Compiles a function from its source, once per process. */
export function compileSource(name: string, source: string): TargetFunction {
  const cached = compiled.get(source)
  if (cached) return cached
  let fn: unknown
  try {
    fn = new Function(`return (${source})`)()
  } catch {
    // Method shorthand (`name(x) { … }`, `async name() {}`) is not an expression on its own.
    try {
      fn = new Function(`return ({ ${source} })`)()
      fn = (fn as Record<string, unknown>)[name]
    } catch (err) {
      throw new TargetError(`cannot compile the source of ${name || 'the target'}: ${(err as Error).message}`)
    }
  }
  if (typeof fn !== 'function') throw new TargetError(`the source of ${name || 'the target'} is not a function`)
  const wrapped = guardOuterReferences(name, fn as TargetFunction)
  compiled.set(source, wrapped)
  return wrapped
}

function outerReferenceError(name: string, err: unknown): unknown {
  if (!(err instanceof ReferenceError)) return err
  const m = /^(\S+) is not defined/.exec(err.message)
  if (!m) return err
  const variable = m[1]
  const fname = name || 'the target'
  return new TargetError(
    `${fname} was sent to the child as source and uses \`${variable}\`, which is not defined there ` +
      '(a function sent as source cannot see the variables or imports around it). Fix it either way:\n' +
      `  - export ${fname} from a module and pass it with { module: new URL('./file.js', import.meta.url), name: '${fname}' }, ` +
      'or list that module in `modules`;\n' +
      `  - or pass \`${variable}\` as an argument instead of reaching for it.`,
    { cause: err },
  )
}

function guardOuterReferences(name: string, fn: TargetFunction): TargetFunction {
  return function (this: unknown, ...args: unknown[]) {
    let r: unknown
    try {
      r = fn.apply(this, args)
    } catch (err) {
      throw outerReferenceError(name, err)
    }
    if (r && typeof (r as Promise<unknown>).then === 'function') {
      return (r as Promise<unknown>).then(undefined, (err) => {
        throw outerReferenceError(name, err)
      })
    }
    return r
  }
}

/**
 * Where a value (a serializer, say) is exported among `modules`, found by identity. The modules
 * are loaded synchronously (`require` of ES modules, Node ≥ 20.19).
 */
export function findExport(value: unknown, modules: (string | URL)[]): { module: string; name: string } | undefined {
  const require = createRequire(import.meta.url)
  for (const m of modules) {
    const href = moduleHref(m)
    let mod: Record<string, unknown>
    try {
      mod = require(href.startsWith('file:') ? fileURLToPath(href) : href)
    } catch (err) {
      throw new TargetError(`cannot load ${href}: ${(err as Error)?.message ?? err}`, { cause: err })
    }
    for (const [name, v] of Object.entries(mod)) if (v === value) return { module: href, name }
  }
  return undefined
}
