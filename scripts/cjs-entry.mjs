// Writes the CommonJS entry and its types. Node ≥ 20.19 can require() the ESM build directly, so
// dist/index.cjs hands it over; CommonJS consumers get CommonJS declarations: a `.d.cts` beside
// each `.d.ts`, whose relative imports name `.cjs` files (resolved to those `.d.cts`).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'

const dist = new URL('../dist/', import.meta.url)

writeFileSync(new URL('index.cjs', dist), "'use strict'\nmodule.exports = require('./index.js')\n")

const relativeJs = /((?:from|import\()\s*['"])(\.{1,2}\/[^'"]*)\.js(['"])/g
for (const file of readdirSync(dist, { recursive: true, encoding: 'utf8' })) {
  if (!file.endsWith('.d.ts')) continue
  const source = readFileSync(new URL(file, dist), 'utf8')
  writeFileSync(new URL(file.replace(/\.d\.ts$/, '.d.cts'), dist), source.replace(relativeJs, '$1$2.cjs$3'))
}
