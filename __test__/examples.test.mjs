// The programs in examples/: each runs as a user would run it (`node examples/<name>.mjs …`, in
// a process group of its own), must exit 0 (130 after Ctrl-C), leave no process of its group
// behind, and print what it claims, checked against the same computation done here, in this
// process, one item after another.
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { checkNoLeaks } from './helpers.mjs'

checkNoLeaks(test)

const root = fileURLToPath(new URL('..', import.meta.url))
const RUN_MS = 120_000 // watchdog for one example run; the machine may be loaded

/** Pids of the live processes (zombies excluded) whose process group is `pgid`. */
function processGroup(pgid) {
  const pids = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue
    }
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') pids.push(Number(entry))
  }
  return pids
}

/**
 * Runs `node examples/<file> ...args` from the repository's root in a new process group, and
 * resolves with its exit and output once it has exited and every process of its group is gone.
 * `interruptWhen(stdout)` returning true sends SIGINT to the whole group, as Ctrl-C in a terminal
 * does.
 */
async function runExample(t, file, args = [], { interruptWhen } = {}) {
  const child = spawn(process.execPath, [join('examples', file), ...args], {
    cwd: root,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  let interrupted = false
  child.stdout.on('data', (d) => {
    stdout += d
    if (interruptWhen && !interrupted && interruptWhen(stdout)) {
      interrupted = true
      process.kill(-child.pid, 'SIGINT')
    }
  })
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const watchdog = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), RUN_MS)
  const [code, signal] = await new Promise((resolve) => child.on('close', (c, s) => resolve([c, s])))
  clearTimeout(watchdog)
  let left = processGroup(child.pid)
  for (const deadline = Date.now() + 10_000; left.length > 0 && Date.now() < deadline; left = processGroup(child.pid)) await delay(50)
  for (const pid of left) process.kill(pid, 'SIGKILL')
  t.deepEqual(left, [], `${file} left processes behind`)
  if (code !== 0 && !interruptWhen) t.log(`${file} exited with ${code ?? signal}; stderr:\n${stderr}`)
  return { code, signal, stdout, stderr, interrupted }
}

function scratchDir(t, name) {
  const dir = mkdtempSync(join(tmpdir(), `multiproc-example-${name}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

test.serial('hash-tree: the digest of every file of a tree, with a progress bar', async (t) => {
  const dir = scratchDir(t, 'hash')
  const expected = new Map()
  let seed = 7
  for (let i = 0; i < 60; i++) {
    const sub = join(dir, `d${i % 4}`, i % 3 === 0 ? 'deeper' : '')
    mkdirSync(sub, { recursive: true })
    const size = [0, 1, 1000, 65_537, 1_500_000][i % 5]
    const bytes = Buffer.alloc(size)
    for (let j = 0; j < size; j++) bytes[j] = seed = (seed * 1103515245 + 12345) & 0xff
    const path = join(sub, `file ${i}.bin`)
    writeFileSync(path, bytes)
    expected.set(path, createHash('sha256').update(bytes).digest('hex'))
  }
  const { code, stdout, stderr } = await runExample(t, 'hash-tree.mjs', [dir])
  t.is(code, 0)
  const lines = stdout.trimEnd().split('\n')
  t.is(lines.length, expected.size)
  // `<digest>  <path>` lines, sorted by path
  t.deepEqual(
    lines,
    [...expected.keys()].sort().map((path) => `${expected.get(path)}  ${path}`),
  )
  t.regex(stderr, /60\/60 files/)

  const md5 = await runExample(t, 'hash-tree.mjs', [dir, '--algorithm', 'md5'])
  const first = [...expected.keys()].sort()[0]
  t.true(md5.stdout.startsWith(`${createHash('md5').update(readFileSync(first)).digest('hex')}  ${first}\n`))
})

/** The example's table: region → [rows, units, revenue as printed]. */
function parseTable(stdout) {
  const table = new Map()
  for (const line of stdout.split('\n').slice(2)) {
    const [region, rows, units, revenue] = line.trim().split(/\s+/)
    if (region) table.set(region, [Number(rows), Number(units), revenue])
  }
  return table
}

test.serial('csv-aggregate: per-region totals of a CSV split into line-aligned chunks', async (t) => {
  const dir = scratchDir(t, 'csv')
  const path = join(dir, 'sales.csv')
  const totals = new Map()
  const lines = ['region,product,units,price_cents']
  // Enough rows for several 4 MiB chunks, so that chunk edges fall inside lines.
  for (let i = 0; i < 600_000; i++) {
    const region = ['amber', 'blue', 'cyan', 'dun', 'ecru', 'fawn', 'gray'][(i * 7919) % 7]
    const units = 1 + ((i * 31) % 97)
    const cents = 1 + ((i * 131) % 9973)
    lines.push(`${region},product-${i % 13},${units},${cents}`)
    const tot = totals.get(region) ?? [0, 0, 0]
    totals.set(region, [tot[0] + 1, tot[1] + units, tot[2] + units * cents])
  }
  writeFileSync(path, `${lines.join('\n')}\n`)
  t.true(statSync(path).size > 3 * (4 << 20))
  const { code, stdout } = await runExample(t, 'csv-aggregate.mjs', [path])
  t.is(code, 0)
  t.regex(stdout.split('\n')[0], /: [4-9] chunks on \d+ processes/)
  const expected = new Map(
    [...totals]
      .sort()
      .map(([region, [rows, units, cents]]) => [
        region,
        [rows, units, `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`],
      ]),
  )
  t.deepEqual(parseTable(stdout), expected)

  // Without a file: a generated one, whose rows add up, in a directory that is gone afterwards.
  const generated = await runExample(t, 'csv-aggregate.mjs', ['--rows', '20000'])
  t.is(generated.code, 0)
  const table = parseTable(generated.stdout)
  t.deepEqual([...table.keys()], ['central', 'east', 'north', 'south', 'west'])
  t.is(
    [...table.values()].reduce((sum, [rows]) => sum + rows, 0),
    20_000,
  )
  const csv = generated.stdout.slice(0, generated.stdout.indexOf(':'))
  t.throws(() => statSync(csv), { code: 'ENOENT' })
})

test.serial('pipeline: a producer, three consumers and a JoinableQueue', async (t) => {
  const count = 30_000
  let total = 0
  let longest = { n: 1, steps: 0 }
  for (let n = 1; n <= count; n++) {
    let steps = 0
    for (let x = n; x !== 1; x = x % 2 === 0 ? x / 2 : 3 * x + 1) steps++
    total += steps
    if (steps > longest.steps) longest = { n, steps }
  }
  const { code, stdout } = await runExample(t, 'pipeline.mjs', ['--count', String(count), '--consumers', '3'])
  t.is(code, 0)
  const handled = [...stdout.matchAll(/^consumer-\d \(pid \d+\) handled (\d+) jobs$/gm)].map((m) => Number(m[1]))
  t.true(handled.length >= 1 && handled.length <= 3)
  t.is(
    handled.reduce((a, b) => a + b, 0),
    count,
    'every job was handled exactly once',
  )
  t.true(
    stdout.includes(`${count} jobs, ${total} Collatz steps in all; the longest chain starts at ${longest.n} (${longest.steps} steps)`),
    stdout,
  )
})

test.serial('matrix: power iteration in shared memory, processes kept in step by a Barrier', async (t) => {
  // 125 rows on 3 processes: bands of 42, 42 and 41.
  const [n, steps] = [125, 40]
  const a = new Float64Array(n * n)
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = 1 / (1 + Math.abs(i - j)) + 1 / (1 + i + j)
  let x = new Float64Array(n).fill(1 / Math.sqrt(n))
  let norm = 0
  for (let step = 0; step < steps; step++) {
    const y = new Float64Array(n)
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) y[i] += a[i * n + j] * x[j]
    norm = 0
    for (let i = 0; i < n; i++) norm += y[i] * y[i]
    norm = Math.sqrt(norm)
    x = y.map((v) => v / norm)
  }
  const { code, stdout } = await runExample(t, 'matrix.mjs', ['--size', String(n), '--steps', String(steps), '--processes', '3'])
  t.is(code, 0)
  t.regex(stdout, /^125×125 matrix, 40 steps on 3 processes: \d+ ms$/m)
  // The same operations in the same order: the very same double.
  t.true(stdout.includes(`largest eigenvalue ≈ ${norm}\n`), stdout)
})

const python = spawnSync('python3', ['--version'], { encoding: 'utf8' })
const withPython = python.error ? test.skip : test
withPython.serial(
  `python-shm: CPython sorts doubles in a segment Node created${python.error ? ' (skipped: python3 is not on PATH)' : ''}`,
  async (t) => {
    const count = 100_001
    const values = Float64Array.from({ length: count }, (_, i) => Math.sin(i) * 1000).sort()
    const sum = values.reduce((a, b) => a + b, 0)
    const { code, stdout } = await runExample(t, 'python-shm.mjs', ['--count', String(count)])
    t.is(code, 0)
    t.regex(stdout, new RegExp(`^python 3\\.\\d+\\.\\d+\\S*: sorted ${count} doubles in segment mp-[0-9a-f]+$`, 'm'))
    const m = /^node: min (\S+), median (\S+), max (\S+), sum (\S+)$/m.exec(stdout)
    t.truthy(m, stdout)
    t.deepEqual(m.slice(1, 4).map(Number), [values[0], values[(count - 1) / 2], values[count - 1]])
    // Python's sum is math.fsum (exact, then rounded); ours adds in order.
    t.true(Math.abs(Number(m[4]) - sum) < 1e-6, `${m[4]} against ${sum}`)
  },
)

/** The example's picture, one pixel after another. */
function mandelbrot(size) {
  const image = new Uint8Array(size * size)
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      const cr = (px / size) * 3 - 2.2
      const ci = (py / size) * 3 - 1.5
      let zr = 0
      let zi = 0
      let i = 0
      while (i < 500 && zr * zr + zi * zi <= 4) {
        const r = zr * zr - zi * zi + cr
        zi = 2 * zr * zi + ci
        zr = r
        i++
      }
      image[py * size + px] = i === 500 ? 0 : 255 - Math.floor((255 * Math.sqrt(i)) / Math.sqrt(500))
    }
  }
  return image
}

test.serial('mandelbrot: imapUnordered over an async generator writes the whole picture', async (t) => {
  const out = join(scratchDir(t, 'mandelbrot'), 'm.pgm')
  const { code, stdout } = await runExample(t, 'mandelbrot.mjs', ['--size', '300', '--tile', '64', '--out', out])
  t.is(code, 0)
  t.regex(stdout, /^rendering 300×300 in 25 tiles on \d+ processes/)
  t.true(stdout.includes(`wrote ${out} (25 tiles)`), stdout)
  const header = Buffer.from('P5\n300 300\n255\n')
  const pgm = readFileSync(out)
  t.deepEqual(pgm.subarray(0, header.length), header)
  t.true(Buffer.from(mandelbrot(300)).equals(pgm.subarray(header.length)), 'the pixels differ from a sequential render')
})

test.serial('mandelbrot: an AbortSignal.timeout stops the call; the program exits 0 and says how far it got', async (t) => {
  const out = join(scratchDir(t, 'mandelbrot-timeout'), 'm.pgm')
  const { code, stdout } = await runExample(t, 'mandelbrot.mjs', ['--size', '4096', '--tile', '128', '--timeout', '300', '--out', out])
  t.is(code, 0, stdout)
  const m = /^stopped: (\d+) of 1024 tiles were done$/m.exec(stdout)
  t.truthy(m, stdout)
  t.true(Number(m[1]) < 1024)
  t.throws(() => statSync(out), { code: 'ENOENT' }, 'no image is written when stopped')
})

test.serial('mandelbrot: Ctrl-C (SIGINT to the whole process group) stops it with exit code 130', async (t) => {
  const out = join(scratchDir(t, 'mandelbrot-sigint'), 'm.pgm')
  const { code, stdout, interrupted } = await runExample(t, 'mandelbrot.mjs', ['--size', '4096', '--out', out], {
    interruptWhen: (s) => s.includes('Ctrl-C stops'),
  })
  t.true(interrupted)
  t.is(code, 130, stdout)
  t.regex(stdout, /^stopped: \d+ of 1024 tiles were done$/m)
})

test.serial('typescript/word-count: compiled with tsc, counts the words of text files on a pool', async (t) => {
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'examples/typescript')], {
    encoding: 'utf8',
  })
  t.is(tsc.status, 0, tsc.stdout + tsc.stderr)
  const dir = scratchDir(t, 'words')
  const texts = ["It's the pool's job: the pool runs the tasks.", 'Élan, élan! The TASKS run; it ends.', '', 'the']
  const files = texts.map((text, i) => {
    const path = join(dir, `t${i}.txt`)
    writeFileSync(path, text)
    return path
  })
  const { code, stdout } = await runExample(t, 'typescript/dist/word-count.js', files)
  t.is(code, 0)
  const words = texts.flatMap((s) => s.toLowerCase().match(/\p{L}+(?:['’]\p{L}+)*/gu) ?? [])
  t.is(stdout.split('\n')[0], `4 files, ${words.length} words, ${new Set(words).size} distinct`)
  t.deepEqual(stdout.split('\n').slice(1, 4), ['      5  the', '      2  tasks', '      2  élan'])
})
