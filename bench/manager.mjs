#!/usr/bin/env node
/**
 * Manager benchmark (`node bench/manager.mjs`): the round trip of a manager dict `set` and `get`
 * (one call each, awaited one after the other) against CPython's `multiprocessing.Manager()`
 * dict, measured in the same run on this machine.
 *
 * Rows: the process that started the manager (its calls go through a shared-memory pipe), a
 * child that received the proxy as a Process argument (it gets a shared-memory link of its own),
 * a child that connected by address alone (the manager's Unix socket), and CPython's
 * `d[k] = v` / `d[k]` from the process that started its manager.
 *
 * Prints a table and writes bench/results/manager-latest.md.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'

import { Manager, Process, parentProcess, Queue } from '../dist/index.js'

const CONFIG = { warmup: 2_000, rounds: 20_000, maxSeconds: 4 }
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))

function summary(samples) {
  const s = Float64Array.from(samples).sort()
  const at = (p) => s[Math.min(s.length - 1, Math.floor(s.length * p))]
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length
  return { n: samples.length, mean, p50: at(0.5), p90: at(0.9), p99: at(0.99) }
}

/** Times each `set` and each `get` (µs); stops early after `maxSeconds`. */
export async function measure(d, config) {
  for (let i = 0; i < config.warmup; i++) {
    await d.set('k', i)
    await d.get('k')
  }
  const samples = []
  const until = performance.now() + config.maxSeconds * 1000
  for (let i = 0; i < config.rounds && performance.now() < until; i++) {
    let t = performance.now()
    await d.set('k', i)
    samples.push((performance.now() - t) * 1000)
    t = performance.now()
    if ((await d.get('k')) !== i) throw new Error('wrong value read back')
    samples.push((performance.now() - t) * 1000)
  }
  return summary(samples)
}

/** In a child: the same loop over a proxy it was passed; the result goes back on `out`. */
export async function childMeasure(d, config, out) {
  await out.put(await measure(d, config))
}

/** In a child: the same loop over the named dict of the manager at `address`, reached by socket. */
export async function childConnect(address, authkey, config, out) {
  const m = await Manager.connect({ address, authkey })
  await out.put(await measure(await m.dict({ name: 'bench' }), config))
}

const PY = `
import json, sys, time, multiprocessing as mp
cfg = json.loads(sys.argv[1])
if __name__ == '__main__':
    with mp.Manager() as m:
        d = m.dict()
        for i in range(cfg['warmup']):
            d['k'] = i; d['k']
        samples = []
        until = time.perf_counter() + cfg['maxSeconds']
        for i in range(cfg['rounds']):
            if time.perf_counter() >= until: break
            t = time.perf_counter(); d['k'] = i; samples.append((time.perf_counter() - t) * 1e6)
            t = time.perf_counter(); v = d['k']; samples.append((time.perf_counter() - t) * 1e6)
            assert v == i
        samples.sort()
        at = lambda p: samples[min(len(samples) - 1, int(len(samples) * p))]
        print(json.dumps({'n': len(samples), 'mean': sum(samples) / len(samples), 'p50': at(0.5), 'p90': at(0.9), 'p99': at(0.99)}))
`

function python() {
  try {
    const out = execFileSync('python3', ['-c', PY, JSON.stringify(CONFIG)], { encoding: 'utf8', timeout: 120_000 })
    return { ok: true, ...JSON.parse(out.trim().split('\n').pop()) }
  } catch (err) {
    return { ok: false, error: String(err.message).split('\n')[0] }
  }
}

function pythonVersion() {
  try {
    return execFileSync('python3', ['--version'], { encoding: 'utf8' }).trim()
  } catch {
    return 'no python3'
  }
}

const fmt = (x) => (x === undefined ? '—' : x < 10 ? x.toFixed(2) : x.toFixed(1))

async function main() {
  const load0 = os.loadavg()
  const m = await Manager.start()
  const d = await m.dict({ name: 'bench' })
  process.stderr.write('manager: the starting process …\n')
  const here = await measure(d, CONFIG)
  const out = new Queue()
  const inChild = async (target, args) => {
    const p = new Process({ target, args: [...args, CONFIG, out], modules: [import.meta.url] })
    await p.start()
    const r = await out.get({ timeout: 120_000 })
    await p.join()
    return r
  }
  process.stderr.write('manager: a child given the proxy …\n')
  const child = await inChild(childMeasure, [d])
  process.stderr.write('manager: a child connected by address …\n')
  const socket = await inChild(childConnect, [m.address, m.authkey])
  out.close()
  await m.shutdown()
  process.stderr.write('CPython …\n')
  const py = python()
  const load1 = os.loadavg()
  const rows = [
    ['multiproc Manager dict, starting process (shared-memory pipe)', here],
    ['multiproc Manager dict, child given the proxy as an argument (its own shared-memory link)', child],
    ['multiproc Manager dict, child connected by address (Unix socket)', socket],
    ['CPython multiprocessing.Manager() dict', py.ok ? py : undefined],
  ]
  const ratio = (r) => (py.ok && r ? py.p50 / r.p50 : undefined)
  const lines = [
    '| call (one `set` or `get`, awaited) | µs p50 | p90 | p99 | mean | CPython p50 ÷ this p50 |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      ([name, r]) =>
        `| ${name} | ${fmt(r?.p50)} | ${fmt(r?.p90)} | ${fmt(r?.p99)} | ${fmt(r?.mean)} | ${r === py || !r ? '' : `${fmt(ratio(r))}×`} |`,
    ),
  ]
  if (!py.ok) lines.push('', `CPython: ${py.error}`)
  const machine = [
    `${os.cpus()[0]?.model ?? 'cpu'}, ${os.availableParallelism()} logical cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `Node ${process.version}, ${pythonVersion()}, Linux ${os.release()}`,
    `load average ${load0.map((x) => x.toFixed(2)).join(' ')} at the start, ${load1.map((x) => x.toFixed(2)).join(' ')} at the end`,
  ]
  const md = `# Manager dict round trip\n\n${lines.join('\n')}\n\n${machine.map((l) => `- ${l}`).join('\n')}\n\n${
    CONFIG.rounds
  } set + get pairs after ${CONFIG.warmup} of warm-up (at most ${CONFIG.maxSeconds} s a row).\n`
  console.log(lines.join('\n'))
  console.log(machine.join('\n'))
  mkdirSync(RESULTS, { recursive: true })
  writeFileSync(new URL('./results/manager-latest.md', import.meta.url), md)
}

if (!parentProcess()) await main()
