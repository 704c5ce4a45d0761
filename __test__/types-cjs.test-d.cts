// The CommonJS declarations (dist/*.d.cts, what `require('multiproc')` is typed by) give the
// same inferred types as the ES-module ones; compiled by `npm run test:types`, never run.
import { type AsyncResult, type Pool, Process } from '../dist/index.cjs'

type Equal<X, Y> = (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? true : false
function check<T extends true>(): T | undefined {
  return undefined
}

const square = (x: number): number => x * x

export async function typed(pool: Pool): Promise<void> {
  const squares = await pool.map(square, [1, 2])
  check<Equal<typeof squares, number[]>>()
  const r = pool.applyAsync(async (s: string) => s.length, ['abc'])
  check<Equal<typeof r, AsyncResult<number>>>()
  // @ts-expect-error a string where square takes a number
  await pool.map(square, ['a'])
  // @ts-expect-error args left out of a target that takes some
  new Process({ target: square })
}
