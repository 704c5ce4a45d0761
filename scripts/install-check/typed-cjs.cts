// CommonJS consumers get CommonJS declarations (dist/*.d.cts): type-checked, not run.
import multiproc = require('multiproc')

export async function squares(xs: number[]): Promise<number[]> {
  const pool = new multiproc.Pool({ processes: 2 })
  try {
    return await pool.map((x: number) => x * x, xs)
  } finally {
    pool.close()
    await pool.join()
  }
}

export function guarded(lock: multiproc.Lock, queue: multiproc.Queue<number>): void {
  lock.withLockSync(() => queue.putSync(1))
}
