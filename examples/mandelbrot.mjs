// Renders the Mandelbrot set tile by tile on all cores and writes it as a PGM image; stops
// cleanly on Ctrl-C or after `--timeout` milliseconds.
//
//   node examples/mandelbrot.mjs [--size 2048] [--tile 128] [--out mandelbrot.pgm] [--timeout ms]
//
// Prints where the image went (any image viewer opens .pgm), or, when stopped, how many tiles
// were done. Shows: `pool.imapUnordered` over an async generator (tiles are described only as
// workers free up: the input is pulled lazily), results taken in whatever order they finish, and
// an `AbortSignal` that ends the call: the workers busy with it are killed and replaced, and the
// loop rejects with `AbortError`.
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { AbortError, Pool, parentProcess, WorkerExitedError } from 'multiproc'

const MAX_ITERATIONS = 500

/** Runs in a worker: one tile's gray levels, a row after another (the set itself is black). */
export function renderTile({ x0, y0, width, height, size }) {
  const pixels = new Uint8Array(width * height)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const cr = ((x0 + x) / size) * 3 - 2.2 // the picture spans [-2.2, 0.8] × [-1.5, 1.5]
      const ci = ((y0 + y) / size) * 3 - 1.5
      let [zr, zi, i] = [0, 0, 0]
      for (; i < MAX_ITERATIONS && zr * zr + zi * zi <= 4; i++) [zr, zi] = [zr * zr - zi * zi + cr, 2 * zr * zi + ci]
      pixels[y * width + x] = i === MAX_ITERATIONS ? 0 : 255 - Math.floor((255 * Math.sqrt(i)) / Math.sqrt(MAX_ITERATIONS))
    }
  }
  return { x0, y0, width, height, pixels }
}

/** The tiles of a `size` × `size` picture. Async, as a real source would be (files, a database). */
async function* tiles(size, tile) {
  for (let y0 = 0; y0 < size; y0 += tile) {
    for (let x0 = 0; x0 < size; x0 += tile) {
      yield { x0, y0, width: Math.min(tile, size - x0), height: Math.min(tile, size - y0), size }
    }
  }
}

if (!parentProcess()) {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '2048' },
      tile: { type: 'string', default: '128' },
      out: { type: 'string', default: join(tmpdir(), 'mandelbrot.pgm') },
      timeout: { type: 'string' },
    },
  })
  const [size, tile] = [Number(values.size), Number(values.tile)]
  const total = Math.ceil(size / tile) ** 2

  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort())
  const signals = [stop.signal]
  if (values.timeout !== undefined) signals.push(AbortSignal.timeout(Number(values.timeout)))
  const signal = signals.length > 1 ? AbortSignal.any(signals) : stop.signal

  const image = new Uint8Array(size * size)
  let done = 0
  const pool = new Pool({ modules: [import.meta.url] })
  try {
    console.log(`rendering ${size}×${size} in ${total} tiles on ${pool.processes} processes (Ctrl-C stops)`)
    for await (const t of pool.imapUnordered(renderTile, tiles(size, tile), { signal })) {
      for (let y = 0; y < t.height; y++) image.set(t.pixels.subarray(y * t.width, (y + 1) * t.width), (t.y0 + y) * size + t.x0)
      done++
    }
    await writeFile(values.out, Buffer.concat([Buffer.from(`P5\n${size} ${size}\n255\n`), image]))
    console.log(`wrote ${values.out} (${total} tiles)`)
  } catch (err) {
    // Ctrl-C in a terminal signals the whole foreground process group, workers included, so one
    // of them may die of SIGINT before our abort lands.
    const interrupted = err instanceof WorkerExitedError && err.signal === 'SIGINT'
    if (!(err instanceof AbortError || interrupted)) throw err
    console.log(`stopped: ${done} of ${total} tiles were done`)
    process.exitCode = stop.signal.aborted || interrupted ? 130 : 0 // 130: the shell's code for Ctrl-C
  } finally {
    pool.close()
    await pool.join()
  }
}
