// Writes the CommonJS entries and their types. Node ≥ 20.19 can require() the ESM build directly, so
// dist/index.cjs (and dist/bullmq.cjs) hand it over; CommonJS consumers get CommonJS declarations: a `.d.cts` beside
// each `.d.ts`, whose relative imports name `.cjs` files (resolved to those `.d.cts`).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'

const dist = new URL('../dist/', import.meta.url)

// The package's entry points: the main one and `multiproc/bullmq`.
for (const entry of ['index', 'bullmq']) {
  writeFileSync(new URL(`${entry}.cjs`, dist), `'use strict'\nmodule.exports = require('./${entry}.js')\n`)
}

const relativeJs = /((?:from|import\()\s*['"])(\.{1,2}\/[^'"]*)\.js(['"])/g
for (const file of readdirSync(dist, { recursive: true, encoding: 'utf8' })) {
  if (!file.endsWith('.d.ts')) continue
  const source = readFileSync(new URL(file, dist), 'utf8')
  writeFileSync(new URL(file.replace(/\.d\.ts$/, '.d.cts'), dist), source.replace(relativeJs, '$1$2.cjs$3'))
}
