// Writes the CommonJS entry: Node ≥ 20.19 can require() the ESM build directly.
import { writeFileSync } from 'node:fs'

writeFileSync(new URL('../dist/index.cjs', import.meta.url), "'use strict'\nmodule.exports = require('./index.js')\n")
writeFileSync(new URL('../dist/index.d.cts', import.meta.url), "export * from './index.js'\n")
