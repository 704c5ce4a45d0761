// Exchanges data with a CPython process through shared memory: Node writes a million doubles
// into a SharedMemory segment, a Python script attaches to it by name and sorts them in place,
// and Node reads the result. Nothing is copied through a pipe.
//
//   node examples/python-shm.mjs [--count 1000000] [--python python3]
//
// Prints what Python reports, then the smallest value, the median and the largest, read from the
// segment. Shows: `new SharedMemory({ size })` (a named POSIX segment, mode 0600, that
// `multiprocessing.shared_memory.SharedMemory(name=…)` attaches to), `.buf` viewed as a
// Float64Array, and `unlink()`/`close()` by its owner.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { SharedMemory } from 'multiproc'

const { values } = parseArgs({ options: { count: { type: 'string', default: '1000000' }, python: { type: 'string', default: 'python3' } } })
const count = Number(values.count)

const shm = new SharedMemory({ size: (count + 1) * Float64Array.BYTES_PER_ELEMENT })
try {
  const doubles = new Float64Array(shm.buf.buffer, shm.buf.byteOffset, count + 1)
  for (let i = 0; i < count; i++) doubles[i] = Math.sin(i) * 1000

  const script = fileURLToPath(new URL('./python-peer.py', import.meta.url))
  const python = promisify(execFile)(values.python, [script, shm.name, String(count)])
  const { stdout } = await python.catch((err) => {
    throw err.code === 'ENOENT' ? new Error(`${values.python} was not found: pass --python <path of a CPython ≥ 3.8>`) : err
  })
  process.stdout.write(stdout)

  for (let i = 1; i < count; i++) if (doubles[i - 1] > doubles[i]) throw new Error(`not sorted at ${i}`)
  const median = count % 2 ? doubles[(count - 1) / 2] : (doubles[count / 2 - 1] + doubles[count / 2]) / 2
  console.log(`node: min ${doubles[0]}, median ${median}, max ${doubles[count - 1]}, sum ${doubles[count]}`)
} finally {
  shm.unlink() // the name goes now; the memory once every process has closed it
  shm.close()
}
