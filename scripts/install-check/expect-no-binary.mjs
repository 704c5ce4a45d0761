// Loads multiproc by `import` or `require` (argv[2]) and expects ERR_MULTIPROC_NO_BINARY with a
// message holding every further argument; prints the message.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

const [how, ...wanted] = process.argv.slice(2)
const load = how === 'require' ? async () => createRequire(import.meta.url)('multiproc') : () => import('multiproc')
const err = await load().then(
  () => assert.fail(`${how}('multiproc') loaded`),
  (e) => e,
)
assert.equal(err.code, 'ERR_MULTIPROC_NO_BINARY', err.stack)
for (const text of wanted) assert.ok(err.message.includes(text), `"${text}" is not in: ${err.message}`)
console.log(`${how}: ${err.message}`)
