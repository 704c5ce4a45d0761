// The most frequent words of a set of text files, counted on all cores: a TypeScript program.
//
//   npm run example:typescript -- [file …]   (compiles this folder with tsc, then runs it)
//
// Without files it counts the words of the repository's Markdown documents. Prints the ten most
// frequent words. Shows: task functions in a module of their own (tasks.ts, listed in `modules`),
// typed results (a Map per file survives the trip between processes as it is), and a pool closed
// in a `finally`.
import { readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { Pool } from 'multiproc'
import { countWords } from './tasks.js'

async function markdownFiles(): Promise<string[]> {
  const root = fileURLToPath(new URL('../../../', import.meta.url)) // from examples/typescript/dist/
  const top = (await readdir(root)).filter((f) => f.endsWith('.md')).map((f) => root + f)
  const docs = (await readdir(`${root}docs`)).filter((f) => f.endsWith('.md')).map((f) => `${root}docs/${f}`)
  return [...top, ...docs]
}

const files = process.argv.length > 2 ? process.argv.slice(2) : await markdownFiles()
// A pool that lives in a program's main module needs no `parentProcess()` guard as long as its
// workers never import that module: here they import tasks.js only.
const pool = new Pool({ modules: [new URL('./tasks.js', import.meta.url)] })
try {
  const perFile: Map<string, number>[] = await pool.map(countWords, files)
  const total = new Map<string, number>()
  for (const counts of perFile) for (const [word, n] of counts) total.set(word, (total.get(word) ?? 0) + n)
  const top = [...total].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 10)
  console.log(
    `${files.length} file${files.length === 1 ? '' : 's'}, ${[...total.values()].reduce((a, b) => a + b, 0)} words, ${total.size} distinct`,
  )
  for (const [word, n] of top) console.log(`${String(n).padStart(7)}  ${word}`)
} finally {
  pool.close()
  await pool.join()
}
