// Aggregates a large CSV on all cores: the file is cut into byte ranges on line boundaries, each
// worker sums its ranges, the parent merges the partial sums.
//
//   node examples/csv-aggregate.mjs [file.csv] [--rows 1000000]
//
// The CSV has the header `region,product,units,price_cents`. Without a file, one of `--rows` rows
// is generated in a temporary directory (and removed afterwards). Prints, per region, the number
// of rows, the units sold and the revenue. Shows: `pool.starmap` over plain descriptions of the work
// (a path and two offsets), never over the data itself, so nothing large crosses between processes.

import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { mkdtemp, open, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Pool, parentProcess } from 'multiproc'

const CHUNK_BYTES = 4 << 20

/** Runs in a worker: `{ region: [rows, units, cents] }` over the lines in bytes [start, end). */
export async function aggregate(path, start, end) {
  const file = await open(path)
  try {
    const bytes = Buffer.alloc(end - start)
    await file.read(bytes, 0, bytes.length, start)
    const totals = {}
    for (const line of bytes.toString('utf8').split('\n')) {
      if (line === '') continue
      const [region, , units, cents] = line.split(',')
      const t = (totals[region] ??= [0, 0, 0])
      t[0] += 1
      t[1] += Number(units)
      t[2] += Number(units) * Number(cents)
    }
    return totals
  } finally {
    await file.close()
  }
}

/** Byte ranges of about CHUNK_BYTES that start right after a newline, the header left out. */
async function lineAlignedRanges(path) {
  const { size } = await stat(path)
  const file = await open(path)
  try {
    const probe = Buffer.alloc(64 << 10)
    const nextLineStart = async (pos) => {
      for (; pos < size; pos += probe.length) {
        const { bytesRead } = await file.read(probe, 0, probe.length, pos)
        const nl = probe.subarray(0, bytesRead).indexOf(10)
        if (nl >= 0) return pos + nl + 1
      }
      return size
    }
    const ranges = []
    for (let start = await nextLineStart(0); start < size; ) {
      const end = await nextLineStart(Math.min(size, start + CHUNK_BYTES))
      ranges.push([path, start, end])
      start = end
    }
    return ranges
  } finally {
    await file.close()
  }
}

/** A CSV of `rows` pseudo-random sales (the same file for the same number of rows). */
async function generate(path, rows) {
  const regions = ['north', 'south', 'east', 'west', 'central']
  const products = ['apples', 'pears', 'plums', 'figs']
  let seed = 42
  const random = (n) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return (seed >>> 8) % n
  }
  const out = createWriteStream(path)
  out.write('region,product,units,price_cents\n')
  for (let i = 0; i < rows; i++) {
    const line = `${regions[random(5)]},${products[random(4)]},${1 + random(100)},${50 + random(1000)}\n`
    if (!out.write(line)) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')
}

if (!parentProcess()) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { rows: { type: 'string', default: '1000000' } } })
  let path = positionals[0]
  const scratch = path ? null : await mkdtemp(join(tmpdir(), 'csv-aggregate-'))
  try {
    if (!path) {
      path = join(scratch, 'sales.csv')
      await generate(path, Number(values.rows))
    }
    const started = performance.now()
    const pool = new Pool({ modules: [import.meta.url] })
    let partials
    try {
      partials = await pool.starmap(aggregate, await lineAlignedRanges(path), { chunksize: 1 })
    } finally {
      pool.close()
      await pool.join()
    }
    const totals = {}
    for (const part of partials) {
      for (const [region, [rows, units, cents]] of Object.entries(part)) {
        const t = (totals[region] ??= [0, 0, 0])
        t[0] += rows
        t[1] += units
        t[2] += cents
      }
    }
    console.log(`${path}: ${partials.length} chunks on ${pool.processes} processes, ${(performance.now() - started).toFixed(0)} ms`)
    console.log('region      rows       units        revenue')
    for (const region of Object.keys(totals).sort()) {
      const [rows, units, cents] = totals[region]
      const revenue = `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`
      console.log(`${region.padEnd(8)} ${String(rows).padStart(7)} ${String(units).padStart(11)} ${revenue.padStart(14)}`)
    }
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true })
  }
}
