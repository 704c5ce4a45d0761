/** The tasks of word-count.ts: a module of plain exported functions that pool workers import. */
import { readFile } from 'node:fs/promises'

/** How often each word occurs in one text file (words: runs of letters, with inner apostrophes, lower-cased). */
export async function countWords(path: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  for (const word of (await readFile(path, 'utf8')).toLowerCase().match(/\p{L}+(?:['’]\p{L}+)*/gu) ?? []) {
    counts.set(word, (counts.get(word) ?? 0) + 1)
  }
  return counts
}
