// Hashes every file of a directory tree on all cores, with a progress bar.
//
//   node examples/hash-tree.mjs [directory] [--algorithm sha256]
//
// Prints one `<hex digest>  <path>` line per file, sorted by path, in the format `sha256sum -c`
// checks; the progress bar goes to stderr. Shows: a Pool whose target is an exported function of
// this very file (`modules: [import.meta.url]`), the `if (!parentProcess())` guard that keeps
// workers from running the main program, and `onProgress`.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { cpuCount, Pool, parentProcess } from 'multiproc'

/** Runs in a worker: the digest of one file, streamed (a large file never sits in memory). */
export async function hashFile(path, algorithm) {
  const hash = createHash(algorithm)
  for await (const piece of createReadStream(path)) hash.update(piece)
  return hash.digest('hex')
}

/** Every regular file under `dir`, symbolic links not followed. */
async function listFiles(dir) {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  // `parentPath` is Node ≥ 20.12's name for it; `path` the older one.
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name))
}

/** One line on stderr, redrawn in place on a terminal; elsewhere only the last state is printed. */
function progressBar(total) {
  const started = performance.now()
  const line = (done) => {
    const width = 30
    const filled = total === 0 ? width : Math.round((done / total) * width)
    const seconds = ((performance.now() - started) / 1000).toFixed(1)
    return `${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${done}/${total} files, ${seconds} s`
  }
  return {
    update: (done) => process.stderr.isTTY && process.stderr.write(`\r${line(done)}`),
    stop: (done) => process.stderr.write(process.stderr.isTTY ? `\r${line(done)}\n` : `${line(done)}\n`),
  }
}

if (!parentProcess()) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { algorithm: { type: 'string', default: 'sha256' } },
  })
  const root = positionals[0] ?? '.'
  const files = (await listFiles(root)).sort()
  const bar = progressBar(files.length)

  const pool = new Pool({ processes: cpuCount(), modules: [import.meta.url] })
  try {
    const digests = await pool.starmap(
      hashFile,
      files.map((file) => [file, values.algorithm]),
      // Small chunks keep the bar moving; a chunk is one message each way however many files it holds.
      { chunksize: 4, onProgress: ({ done }) => bar.update(done) },
    )
    bar.stop(files.length)
    for (const [i, file] of files.entries()) console.log(`${digests[i]}  ${file}`)
  } finally {
    // Node ≥ 24: `await using pool = new Pool(…)` does these two lines.
    pool.close()
    await pool.join()
  }
}
