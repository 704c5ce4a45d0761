#!/usr/bin/env node
/**
 * `multiproc demo` runs the showcase; `multiproc bench` runs the benchmarks; `multiproc worker`
 * runs a remote worker host for pools on the BullMQ backend (`multiproc/bullmq`).
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { demo } from './demo.js'

const usage = `usage: multiproc <command>

commands:
  demo [--limit N]   count primes on every core, with progress, and show the speed-up
  bench [ipc|pool|sync]  run the benchmarks (bench/, in a clone of the repository; all by default)
  worker --redis URL --queue NAME --modules FILE [--modules FILE …] [--processes N]
         run tasks of pools on the BullMQ backend (multiproc/bullmq), on N local processes
         (default: the number of CPUs); SIGTERM or SIGINT finishes the running jobs and exits
    --prefix P               BullMQ's key prefix (default bull; the pools must use the same)
    --lock-duration MS       a running job's lock, renewed every half of it (default 10000)
    --stalled-interval MS    how often jobs of dead hosts are looked for (default 5000); a job
                             whose host died runs again elsewhere within about both together
    --allow-source           also run functions sent as source and exports of unlisted modules
    --reply-ttl S            seconds a reply is kept for a pool that stopped reading (default 86400)`

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    limit: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
    redis: { type: 'string' },
    queue: { type: 'string' },
    modules: { type: 'string', multiple: true },
    processes: { type: 'string' },
    prefix: { type: 'string' },
    'lock-duration': { type: 'string' },
    'stalled-interval': { type: 'string' },
    'allow-source': { type: 'boolean' },
    'reply-ttl': { type: 'string' },
  },
})

/** A positive integer option, or its default; exits with a message otherwise. */
function positive(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback
  const n = Number(v)
  if (!(Number.isInteger(n) && n > 0)) {
    console.error(`--${name} must be a positive integer`)
    process.exit(2)
  }
  return n
}

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
} else if (command === 'worker') {
  if (!values.redis || !values.queue) {
    console.error(`multiproc worker needs --redis URL and --queue NAME\n\n${usage}`)
    process.exit(2)
  }
  const { cpuCount } = await import('./process.js')
  const { runWorkerHost } = await import('./bullmq-worker-host.js')
  let code: number
  try {
    code = await runWorkerHost({
      connection: values.redis,
      queue: values.queue,
      prefix: values.prefix ?? 'bull',
      modules: (values.modules ?? []).flatMap((m) => m.split(',')).filter((m) => m !== ''),
      processes: positive('processes', values.processes, cpuCount()),
      lockDuration: positive('lock-duration', values['lock-duration'], 10_000),
      stalledInterval: positive('stalled-interval', values['stalled-interval'], 5_000),
      allowSource: values['allow-source'] ?? false,
      replyTtl: positive('reply-ttl', values['reply-ttl'], 86_400),
      log: (line) => console.error(line),
    })
  } catch (err) {
    console.error(`multiproc worker: ${(err as Error)?.message ?? err}`)
    code = 1
  }
  process.exit(code)
} else {
  console.error(`unknown command: ${command}\n\n${usage}`)
  process.exit(2)
}
