/**
 * The Node flags a child runs with. A child inherits the parent's `execArgv` (so `--import tsx`
 * and heap limits carry over) minus every flag that would make it run something other than its
 * entry point: `node -e "…new Pool()…"` would otherwise run the program again in every worker,
 * each starting its own pool, without end. Inspector ports are not inherited either (the child
 * would fight the parent for them).
 */
import { rangeError, typeError } from './errors.js'

/** Flags that replace or wrap the program, or make Node do something else than run it. */
const PROGRAM_FLAGS = new Set([
  '-e',
  '--eval',
  '-p',
  '--print',
  '-i',
  '--interactive',
  '-c',
  '--check',
  '--input-type',
  '--test',
  '--watch',
  '--run',
  '--prof-process',
  '--completion-bash',
  '-h',
  '--help',
  '-v',
  '--version',
  '--v8-options',
])

/** Dropped flags that take their value as the next argument when not written `--flag=value`. */
const TAKES_VALUE = new Set([
  '-e',
  '--eval',
  '-p',
  '--print',
  '--input-type',
  '--run',
  '--inspect-port',
  '--debug-port',
  '--watch-path',
  '--watch-kill-signal',
  '--test-name-pattern',
  '--test-skip-pattern',
  '--test-reporter',
  '--test-reporter-destination',
  '--test-concurrency',
  '--test-timeout',
  '--test-shard',
  '--test-isolation',
  '--test-global-setup',
  '--test-coverage-include',
  '--test-coverage-exclude',
  '--test-coverage-branches',
  '--test-coverage-functions',
  '--test-coverage-lines',
])

function flagName(arg: string): string {
  const eq = arg.indexOf('=')
  return eq < 0 ? arg : arg.slice(0, eq)
}

/** Whether a flag must not reach a child, and whether the next argument is its value. */
function classify(arg: string): { drop: boolean; value: boolean } {
  const name = flagName(arg)
  const separate = !arg.includes('=')
  // Combined short flags such as `-pe` carry the program as the next argument.
  if (/^-[a-zA-Z]{2,}$/.test(arg) && /[epic]/.test(arg)) return { drop: true, value: /[ep]/.test(arg) }
  const drop =
    PROGRAM_FLAGS.has(name) ||
    name.startsWith('--test-') ||
    name.startsWith('--experimental-test-') ||
    name.startsWith('--watch-') ||
    name.startsWith('--inspect') ||
    name === '--debug-port'
  return { drop, value: drop && separate && TAKES_VALUE.has(name) }
}

/** The parent's `execArgv` as a child should get it. */
export function inheritableExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const out: string[] = []
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i] as string
    const { drop, value } = classify(arg)
    if (!drop) out.push(arg)
    else if (value) i++
  }
  return out
}

/** Validates an `execArgv` option given by the user: strings only, none that replaces the program. */
export function checkExecArgv(execArgv: unknown): string[] {
  if (!Array.isArray(execArgv) || !execArgv.every((a) => typeof a === 'string')) {
    throw typeError('execArgv must be an array of strings')
  }
  for (const arg of execArgv as string[]) {
    if (classify(arg).drop) {
      throw Object.assign(rangeError(`execArgv must not contain ${flagName(arg)}: the child would not run its target`), {
        code: 'ERR_INVALID_ARG_VALUE',
      })
    }
  }
  return execArgv as string[]
}

/** Whether `execArgv` sets the V8 heap limit (`--max-old-space-size=…`, also written with `_`). */
export function setsHeapLimit(execArgv: readonly string[]): boolean {
  return execArgv.some((arg) => flagName(arg).replaceAll('_', '-') === '--max-old-space-size')
}

/** `execArgv` with its heap limit, if any, replaced by `mib` MiB (V8 takes the last one given anyway). */
export function withHeapLimit(execArgv: readonly string[], mib: number | undefined): string[] {
  if (mib === undefined) return [...execArgv]
  const kept = execArgv.filter((arg) => !setsHeapLimit([arg]))
  return [...kept, `--max-old-space-size=${mib}`]
}
