// The ava suite with every process started by the fork server (MULTIPROC_START), less the files
// that do not pass that way yet (docs/design.md, "Start methods and the fork server", lists why).
// forkserver.test.mjs runs in the default suite: it chooses its start methods itself.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'

const NOT_YET = new Set([
  'abandon.test.mjs',
  'death.test.mjs',
  'manager.test.mjs',
  'pool-fault-matrix.test.mjs',
  'pool-faults.test.mjs',
  'pool.test.mjs',
  'forkserver.test.mjs',
])
const files = readdirSync(new URL('../__test__/', import.meta.url))
  .filter((f) => f.endsWith('.test.mjs') && !NOT_YET.has(f))
  .map((f) => `__test__/${f}`)
const run = spawnSync('npx', ['ava', ...files], {
  stdio: 'inherit',
  env: { ...process.env, MULTIPROC_START: JSON.stringify({ method: 'forkserver' }) },
})
process.exit(run.status ?? 1)
