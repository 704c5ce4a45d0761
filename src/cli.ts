#!/usr/bin/env node
/** `multiproc demo` runs the showcase; `multiproc bench` runs the benchmarks. */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { demo } from './demo.js'

const usage = `usage: multiproc <command>

commands:
  demo [--limit N]   count primes on every core, with progress, and show the speed-up
  bench [ipc|pool|sync]  run the benchmarks (bench/, in a clone of the repository; all by default)`

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { limit: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
})

const [command] = positionals
if (values.help || !command) {
  console.log(usage)
  process.exit(command || values.help ? 0 : 2)
}
if (command === 'demo') {
  const limit = values.limit === undefined ? undefined : Number(values.limit)
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    console.error('--limit must be a positive integer')
    process.exit(2)
  }
  await demo(limit)
} else if (command === 'bench') {
  const which = positionals[1] ? [positionals[1]] : ['ipc', 'pool', 'sync']
  let status = 0
  for (const name of which) {
    if (name !== 'ipc' && name !== 'pool' && name !== 'sync') {
      console.error(`unknown benchmark: ${name} (ipc, pool or sync)`)
      process.exit(2)
    }
    const script = fileURLToPath(new URL(`../bench/${name}.mjs`, import.meta.url))
    if (!existsSync(script)) {
      console.error(
        'the benchmarks are not part of the installed package: run them from a clone of the repository (`npm ci && npm run bench`)',
      )
      process.exit(1)
    }
    status ||= spawnSync(process.execPath, [script], { stdio: 'inherit' }).status ?? 1
  }
  process.exit(status)
} else {
  console.error(`unknown command: ${command}\n\n${usage}`)
  process.exit(2)
}
